//! Reads a verified JWT payload out of the request's dynamic metadata, as Envoy hands it over.
//!
//! # What `proxy_get_property` returns (measured with Envoy 1.40)
//!
//! - `["metadata"]`: the whole `envoy.config.core.v3.Metadata` message, protobuf-encoded. Every
//!   claim keeps its JSON type (string, number, bool, null, object, array).
//! - Any deeper path (`["metadata", "filter_metadata", <namespace>, <key>, ...]`) goes through
//!   CEL, which unwraps the `google.protobuf.Struct`: a string comes back as its bytes, a number
//!   as 8 bytes of an `f64`, a bool as 1 byte, an object or a list as proxy-wasm serialized pairs
//!   (a list as pairs with empty values). The type is lost (the string `"abc..."` and the list
//!   `["abc..."]` can read the same), and a `null` anywhere below the path fails the whole read
//!   with `SerializationFailure` (status 3), so one `"middle_name": null` in a token would hide
//!   every claim.
//!
//! So the filter reads `["metadata"]`, the narrowest path that keeps the types, and decodes the
//! few protobuf messages involved here. Only the payload is decoded, lazily along the claim paths;
//! other namespaces and `typed_filter_metadata` are skipped without being parsed.
//!
//! The messages (field number: type):
//! - `Metadata`: 1 `filter_metadata` map<string, Struct>; 2 `typed_filter_metadata` (skipped).
//! - map entry: 1 key (string), 2 value (message).
//! - `Struct`: 1 `fields` map<string, Value>.
//! - `Value`: 1 null (enum), 2 number (double), 3 string, 4 bool, 5 Struct, 6 ListValue (a oneof:
//!   the last one present wins, as protobuf parsers do; none present reads as null).
//! - `ListValue`: 1 repeated Value.

use std::fmt;

/// The metadata bytes are not the protobuf Envoy writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError;

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the dynamic metadata is not valid protobuf")
    }
}

/// One `google.protobuf.Value`, decoded one level deep: objects and lists stay views on the bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'m> {
    Null,
    Number(f64),
    String(&'m str),
    Bool(bool),
    Object(Object<'m>),
    List(List<'m>),
}

impl Value<'_> {
    /// The JSON name of the type, for refusal messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Bool(_) => "a boolean",
            Value::Object(_) => "an object",
            Value::List(_) => "an array",
        }
    }
}

/// A `google.protobuf.Struct`, still encoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Object<'m>(&'m [u8]);

/// A `google.protobuf.ListValue`, still encoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct List<'m>(&'m [u8]);

/// The payload stored under `key` in the metadata `namespace`: `Ok(None)` when either is absent.
pub fn payload<'m>(
    metadata: &'m [u8],
    namespace: &str,
    key: &str,
) -> Result<Option<Value<'m>>, DecodeError> {
    let Some(structure) = map_lookup(metadata, 1, namespace)? else {
        return Ok(None);
    };
    Object(structure).get(key)
}

impl<'m> Object<'m> {
    /// The field `key`; the last entry wins if the map repeats it, as protobuf parsers do.
    pub fn get(&self, key: &str) -> Result<Option<Value<'m>>, DecodeError> {
        map_lookup(self.0, 1, key)?.map(decode_value).transpose()
    }
}

impl<'m> List<'m> {
    /// The elements in order; stops at the first malformed one with an error.
    pub fn items(&self) -> impl Iterator<Item = Result<Value<'m>, DecodeError>> + 'm {
        Fields::new(self.0).filter_map(|field| match field {
            Err(error) => Some(Err(error)),
            Ok((1, Field::Bytes(bytes))) => Some(decode_value(bytes)),
            Ok((1, _)) => Some(Err(DecodeError)),
            Ok(_) => None,
        })
    }
}

/// Finds `key` in the map field `number` of a message; returns the entry's encoded value.
fn map_lookup<'m>(message: &'m [u8], number: u32, key: &str) -> Result<Option<&'m [u8]>, DecodeError> {
    let mut found = None;
    for field in Fields::new(message) {
        let (field_number, field) = field?;
        if field_number != number {
            continue;
        }
        let Field::Bytes(entry) = field else {
            return Err(DecodeError);
        };
        let mut entry_key: &[u8] = &[];
        let mut entry_value: &[u8] = &[];
        for part in Fields::new(entry) {
            match part? {
                (1, Field::Bytes(bytes)) => entry_key = bytes,
                (2, Field::Bytes(bytes)) => entry_value = bytes,
                (1 | 2, _) => return Err(DecodeError),
                _ => {}
            }
        }
        if entry_key == key.as_bytes() {
            found = Some(entry_value);
        }
    }
    Ok(found)
}

fn decode_value(message: &[u8]) -> Result<Value<'_>, DecodeError> {
    let mut value = Value::Null;
    for field in Fields::new(message) {
        value = match field? {
            (1, Field::Varint(_)) => Value::Null,
            (2, Field::Fixed64(bits)) => Value::Number(f64::from_bits(bits)),
            (3, Field::Bytes(bytes)) => {
                Value::String(std::str::from_utf8(bytes).map_err(|_| DecodeError)?)
            }
            (4, Field::Varint(flag)) => Value::Bool(flag != 0),
            (5, Field::Bytes(bytes)) => Value::Object(Object(bytes)),
            (6, Field::Bytes(bytes)) => Value::List(List(bytes)),
            (1..=6, _) => return Err(DecodeError),
            _ => value,
        };
    }
    Ok(value)
}

/// One field's payload by wire type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field<'m> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'m [u8]),
    Fixed32(u32),
}

/// The fields of one message, in order. After an error it yields nothing more.
struct Fields<'m> {
    rest: &'m [u8],
    failed: bool,
}

impl<'m> Fields<'m> {
    fn new(message: &'m [u8]) -> Self {
        Fields {
            rest: message,
            failed: false,
        }
    }

    fn next_field(&mut self) -> Result<(u32, Field<'m>), DecodeError> {
        let tag = self.varint()?;
        let number = u32::try_from(tag >> 3).map_err(|_| DecodeError)?;
        if number == 0 {
            return Err(DecodeError);
        }
        let field = match tag & 7 {
            0 => Field::Varint(self.varint()?),
            1 => Field::Fixed64(u64::from_le_bytes(self.array::<8>()?)),
            2 => {
                let length = usize::try_from(self.varint()?).map_err(|_| DecodeError)?;
                Field::Bytes(self.take(length)?)
            }
            5 => Field::Fixed32(u32::from_le_bytes(self.array::<4>()?)),
            // 3 and 4 are the deprecated groups, which none of these messages use.
            _ => return Err(DecodeError),
        };
        Ok((number, field))
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for index in 0..10 {
            let (&byte, rest) = self.rest.split_first().ok_or(DecodeError)?;
            self.rest = rest;
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError)
    }

    fn take(&mut self, length: usize) -> Result<&'m [u8], DecodeError> {
        if length > self.rest.len() {
            return Err(DecodeError);
        }
        let (taken, rest) = self.rest.split_at(length);
        self.rest = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?.try_into().map_err(|_| DecodeError)
    }
}

impl<'m> Iterator for Fields<'m> {
    type Item = Result<(u32, Field<'m>), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let field = self.next_field();
        self.failed = field.is_err();
        Some(field)
    }
}

/// An encoder for the same messages, so tests (unit, property and end-to-end) can build the bytes
/// Envoy would send from a JSON payload. Not in the filter itself.
#[cfg(not(target_arch = "wasm32"))]
pub mod encode {
    fn varint(out: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            out.push((value as u8) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    fn bytes_field(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
        varint(out, u64::from(number) << 3 | 2);
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }

    fn map_entry(key: &str, value: &[u8]) -> Vec<u8> {
        let mut entry = Vec::new();
        bytes_field(&mut entry, 1, key.as_bytes());
        bytes_field(&mut entry, 2, value);
        entry
    }

    /// `envoy.config.core.v3.Metadata` with one namespace holding `{key: payload}`.
    pub fn metadata(namespace: &str, key: &str, payload: &serde_json::Value) -> Vec<u8> {
        let mut fields = serde_json::Map::new();
        fields.insert(key.to_string(), payload.clone());
        let mut out = Vec::new();
        bytes_field(&mut out, 1, &map_entry(namespace, &structure(&fields)));
        out
    }

    /// `google.protobuf.Struct`.
    pub fn structure(fields: &serde_json::Map<String, serde_json::Value>) -> Vec<u8> {
        let mut out = Vec::new();
        for (key, value) in fields {
            bytes_field(&mut out, 1, &map_entry(key, &value_message(value)));
        }
        out
    }

    /// `google.protobuf.Value`.
    pub fn value_message(value: &serde_json::Value) -> Vec<u8> {
        use serde_json::Value as Json;
        let mut out = Vec::new();
        match value {
            Json::Null => {
                varint(&mut out, 1 << 3);
                varint(&mut out, 0);
            }
            Json::Number(number) => {
                varint(&mut out, 2 << 3 | 1);
                out.extend_from_slice(&number.as_f64().unwrap_or_default().to_le_bytes());
            }
            Json::String(text) => bytes_field(&mut out, 3, text.as_bytes()),
            Json::Bool(flag) => {
                varint(&mut out, 4 << 3);
                varint(&mut out, u64::from(*flag));
            }
            Json::Object(fields) => bytes_field(&mut out, 5, &structure(fields)),
            Json::Array(items) => {
                let mut list = Vec::new();
                for item in items {
                    bytes_field(&mut list, 1, &value_message(item));
                }
                bytes_field(&mut out, 6, &list);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The bytes Envoy 1.40 returned for `["metadata"]` with this payload set by
    /// `envoy.filters.http.set_metadata` (recorded from a probe filter).
    const RECORDED: &str = "0aea010a1c656e766f792e66696c746572732e687474702e6a77745f617574686e12c9010ac6010a077061796c6f616412ba012ab7010a0e0a016e12091100000000000045400a0b0a0373756212041a0275310a100a0365787012091100000040fc54d9410a350a1a68747470733a2f2f6578616d706c652e636f6d2f67726f757073121732150a041a0267310a061a04672c20320a051a036720330a070a017a120208000a2b0a0c7265616c6d5f616363657373121b2a190a170a05726f6c6573120e320c0a041a0272310a041a0272320a070a0162120220010a100a05656d61696c12071a056140622e63";

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn object(value: Option<Value<'_>>) -> Object<'_> {
        match value {
            Some(Value::Object(object)) => object,
            other => panic!("not an object: {other:?}"),
        }
    }

    fn strings<'m>(list: &List<'m>) -> Vec<&'m str> {
        list.items()
            .map(|item| match item.unwrap() {
                Value::String(text) => text,
                other => panic!("not a string: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn decodes_what_envoy_returned() {
        let bytes = hex(RECORDED);
        let claims = object(payload(&bytes, "envoy.filters.http.jwt_authn", "payload").unwrap());
        assert_eq!(claims.get("sub").unwrap(), Some(Value::String("u1")));
        assert_eq!(claims.get("email").unwrap(), Some(Value::String("a@b.c")));
        assert_eq!(claims.get("n").unwrap(), Some(Value::Number(42.0)));
        assert_eq!(claims.get("exp").unwrap(), Some(Value::Number(1_700_000_000.0)));
        assert_eq!(claims.get("b").unwrap(), Some(Value::Bool(true)));
        assert_eq!(claims.get("z").unwrap(), Some(Value::Null));
        assert_eq!(claims.get("absent").unwrap(), None);
        let Some(Value::List(groups)) = claims.get("https://example.com/groups").unwrap() else {
            panic!("groups is a list");
        };
        assert_eq!(strings(&groups), vec!["g1", "g, 2", "g 3"]);
        let realm = object(claims.get("realm_access").unwrap());
        let Some(Value::List(roles)) = realm.get("roles").unwrap() else {
            panic!("roles is a list");
        };
        assert_eq!(strings(&roles), vec!["r1", "r2"]);
        assert_eq!(payload(&bytes, "other", "payload").unwrap(), None);
        assert_eq!(payload(&bytes, "envoy.filters.http.jwt_authn", "verified").unwrap(), None);
        assert_eq!(payload(&[], "envoy.filters.http.jwt_authn", "payload").unwrap(), None);
    }

    #[test]
    fn encoder_round_trips_through_the_decoder() {
        let claims = json!({"sub": "x", "list": ["a", 1, null, {"k": false}], "o": {"p": 2.5}});
        let bytes = encode::metadata("ns", "payload", &claims);
        let claims = object(payload(&bytes, "ns", "payload").unwrap());
        assert_eq!(claims.get("sub").unwrap(), Some(Value::String("x")));
        let Some(Value::List(list)) = claims.get("list").unwrap() else {
            panic!()
        };
        let items: Vec<Value<'_>> = list.items().map(Result::unwrap).collect();
        assert_eq!(items.len(), 4);
        assert_eq!(items[1], Value::Number(1.0));
        assert_eq!(items[2], Value::Null);
        assert_eq!(object(Some(items[3])).get("k").unwrap(), Some(Value::Bool(false)));
        assert_eq!(object(claims.get("o").unwrap()).get("p").unwrap(), Some(Value::Number(2.5)));
    }

    #[test]
    fn malformed_bytes_are_errors_not_panics() {
        let bytes = hex(RECORDED);
        for cut in 1..bytes.len() {
            // A truncated message either still parses up to the cut or reports an error.
            let _ = payload(&bytes[..cut], "envoy.filters.http.jwt_authn", "payload")
                .map(|value| value.map(|v| v.type_name()));
        }
        assert_eq!(payload(&[0x0a, 0x05, 0x01], "ns", "k"), Err(DecodeError));
        assert_eq!(payload(&[0x0b], "ns", "k"), Err(DecodeError)); // wire type 3
        assert_eq!(payload(&[0xff; 11], "ns", "k"), Err(DecodeError)); // endless varint
        assert_eq!(payload(&[0x08, 0x01], "ns", "k"), Err(DecodeError)); // map field as varint
        // An invalid UTF-8 string value.
        let mut value = Vec::new();
        value.extend_from_slice(&[0x1a, 0x01, 0xff]);
        let mut entry = vec![0x0a, 0x01, b'k', 0x12, value.len() as u8];
        entry.extend_from_slice(&value);
        let mut structure = vec![0x0a, entry.len() as u8];
        structure.extend_from_slice(&entry);
        assert_eq!(Object(&structure).get("k"), Err(DecodeError));
    }
}
