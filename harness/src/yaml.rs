//! `harness::yaml`: YAML as kubectl reads it, the rules of `tests/suite/manifests/yaml.rs` returning errors
//! instead of panicking (the command line reads untrusted input with it). YAML 1.1 typing of
//! plain (unquoted) scalars, as go-yaml v2 does
//! under `sigs.k8s.io/yaml` (and PyYAML, and Envoy's yaml-cpp loader). serde_yaml follows YAML
//! 1.2, where `sha256: 0000…` stays a string; kubectl sends the number 0 to the API server.
//!
//! yaml-rust2 reports each scalar's style; this module types the plain ones itself and records
//! every plain scalar that did not become a string, so a schema error at that spot can say why.

use std::collections::BTreeMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One YAML document as the JSON the API server receives.
pub struct Document {
    pub value: Value,
    /// JSON pointer -> the unquoted text YAML 1.1 typed as something other than a string.
    pub retyped: BTreeMap<String, Retyped>,
}

#[derive(Clone, Debug)]
pub struct Retyped {
    pub text: String,
    pub line: usize,
    pub became: &'static str,
}

/// Every non-empty document of a multi-document YAML text, or why it is not YAML kubectl accepts.
pub fn documents(text: &str) -> Result<Vec<Document>, String> {
    let mut builder = Builder::default();
    Parser::new_from_str(text)
        .load(&mut builder, true)
        .map_err(|e| format!("not valid YAML: {e}"))?;
    if let Some(error) = builder.error {
        return Err(error);
    }
    Ok(builder
        .documents
        .into_iter()
        .filter(|d| !d.value.is_null())
        .collect())
}

/// How YAML 1.1 (go-yaml v2's resolver) types a plain scalar.
pub fn resolve_plain(text: &str) -> Value {
    typed_plain(text).0
}

const STRING: &str = "a string";
const FLOAT: &str = "a float";

/// The JSON value of a plain scalar and the YAML 1.1 type it has.
fn typed_plain(text: &str) -> (Value, &'static str) {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return (Value::Null, "null"),
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => {
            return (Value::Bool(true), "a boolean")
        }
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE" => {
            return (Value::Bool(false), "a boolean")
        }
        _ => {}
    }
    let Some(&first) = text.as_bytes().first() else {
        return (Value::String(String::new()), STRING);
    };
    if !(first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'.')) {
        return (Value::String(text.to_string()), STRING);
    }
    let plain = text.replace('_', "");
    if let Some(integer) = parse_go_int(&plain) {
        return (Value::Number(integer), "an integer");
    }
    if is_yaml_float(&plain) {
        if let Some(number) = plain.parse::<f64>().ok().and_then(Number::from_f64) {
            return (Value::Number(number), FLOAT);
        }
    }
    let special = plain.trim_start_matches(['+', '-']).to_ascii_lowercase();
    if special == ".inf" || special == ".nan" {
        // Not representable in JSON: kept as text here, but reported as the float it is.
        return (Value::String(text.to_string()), FLOAT);
    }
    (Value::String(text.to_string()), STRING)
}

/// Go's `strconv.ParseInt(s, 0, 64)` then `ParseUint`: sign, then 0x / 0o / 0b prefixes, a
/// leading 0 for octal, decimal otherwise.
fn parse_go_int(text: &str) -> Option<Number> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let lower = digits.to_ascii_lowercase();
    let (radix, body) = if let Some(rest) = lower.strip_prefix("0x") {
        (16, rest.to_string())
    } else if let Some(rest) = lower.strip_prefix("0o") {
        (8, rest.to_string())
    } else if let Some(rest) = lower.strip_prefix("0b") {
        (2, rest.to_string())
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string())
    } else {
        (10, lower)
    };
    if body.is_empty() || body.starts_with(['+', '-']) {
        return None;
    }
    let magnitude = u64::from_str_radix(&body, radix).ok()?;
    if negative {
        let value = i64::try_from(magnitude).ok()?;
        Some(Number::from(-value))
    } else {
        Some(Number::from(magnitude))
    }
}

/// go-yaml v2's float syntax: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_float(text: &str) -> bool {
    let body = text.strip_prefix(['+', '-']).unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", fraction)) => digits(fraction),
        Some((whole, fraction)) => digits(whole) && (fraction.is_empty() || digits(fraction)),
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

enum Frame {
    Sequence {
        items: Vec<Value>,
        anchor: usize,
    },
    Mapping {
        fields: Map<String, Value>,
        /// A key waiting for its value.
        key: Option<String>,
        /// Values of `<<` merge keys, applied at the end (explicit keys win).
        merges: Vec<Value>,
        anchor: usize,
    },
}

#[derive(Default)]
struct Builder {
    documents: Vec<Document>,
    stack: Vec<Frame>,
    anchors: BTreeMap<usize, Value>,
    retyped: BTreeMap<String, Retyped>,
    error: Option<String>,
}

impl Builder {
    /// The JSON pointer of the node about to be added.
    fn pointer(&self) -> String {
        let mut pointer = String::new();
        for frame in &self.stack {
            pointer.push('/');
            match frame {
                Frame::Sequence { items, .. } => pointer.push_str(&items.len().to_string()),
                Frame::Mapping { key, .. } => {
                    pointer.push_str(&escape_pointer(key.as_deref().unwrap_or("")))
                }
            }
        }
        pointer
    }

    fn add(&mut self, value: Value, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, value.clone());
        }
        match self.stack.last_mut() {
            None => self.documents.push(Document {
                value,
                retyped: std::mem::take(&mut self.retyped),
            }),
            Some(Frame::Sequence { items, .. }) => items.push(value),
            Some(Frame::Mapping {
                fields,
                key,
                merges,
                ..
            }) => match key.take() {
                None => {
                    // This value is a key. YAML 1.1 keys are typed too; sigs.k8s.io/yaml turns
                    // a non-string key back into text (`on:` becomes "true").
                    let text = match value {
                        Value::String(s) => s,
                        Value::Null => "null".to_string(),
                        other => other.to_string(),
                    };
                    *key = Some(text);
                }
                Some(name) if name == "<<" => merges.push(value),
                Some(name) => {
                    if fields.insert(name.clone(), value).is_some() && self.error.is_none() {
                        self.error = Some(format!("duplicate key `{name}` (kubectl refuses it)"));
                    }
                }
            },
        }
    }

    fn scalar(
        &mut self,
        text: String,
        style: TScalarStyle,
        tag: Option<Tag>,
        line: usize,
    ) -> Value {
        let is_key = matches!(self.stack.last(), Some(Frame::Mapping { key: None, .. }));
        let explicit_string = tag
            .as_ref()
            .is_some_and(|t| t.suffix == "str" || (t.handle == "!" && t.suffix.is_empty()));
        if style != TScalarStyle::Plain || explicit_string {
            return Value::String(text);
        }
        if is_key && text == "<<" {
            return Value::String(text);
        }
        let (value, became) = typed_plain(&text);
        if became != STRING {
            let mut pointer = self.pointer();
            if is_key {
                pointer.push_str(" (a key)");
            }
            self.retyped.insert(
                pointer,
                Retyped {
                    text: text.clone(),
                    line,
                    became,
                },
            );
        }
        value
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let value = self.scalar(text, style, tag, mark.line());
                self.add(value, anchor);
            }
            Event::Alias(anchor) => {
                let value = self.anchors.get(&anchor).cloned().unwrap_or(Value::Null);
                self.add(value, 0);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Sequence {
                items: Vec::new(),
                anchor,
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Mapping {
                fields: Map::new(),
                key: None,
                merges: Vec::new(),
                anchor,
            }),
            Event::SequenceEnd => {
                if let Some(Frame::Sequence { items, anchor }) = self.stack.pop() {
                    self.add(Value::Array(items), anchor);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Mapping {
                    mut fields,
                    merges,
                    anchor,
                    ..
                }) = self.stack.pop()
                {
                    for merge in merges {
                        let sources = match merge {
                            Value::Array(items) => items,
                            other => vec![other],
                        };
                        for source in sources {
                            if let Value::Object(extra) = source {
                                for (k, v) in extra {
                                    fields.entry(k).or_insert(v);
                                }
                            }
                        }
                    }
                    self.add(Value::Object(fields), anchor);
                }
            }
            Event::DocumentEnd => {
                // An empty document (`---` followed by nothing) produces no node at all.
                self.retyped.clear();
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_scalars_are_typed_like_yaml_1_1() {
        for (text, expected) in [
            ("0777", json!(511)),
            ("0x1F", json!(31)),
            ("1_000", json!(1000)),
            ("-12", json!(-12)),
            ("1e3", json!(1000.0)),
            ("0123456789", json!(123456789.0)),
            (".5", json!(0.5)),
            ("yes", json!(true)),
            ("off", json!(false)),
            ("n", json!(false)),
            ("~", Value::Null),
            ("", Value::Null),
            ("abc", json!("abc")),
            ("1.2.3", json!("1.2.3")),
            ("-", json!("-")),
            ("1e", json!("1e")),
            ("20001", json!(20001)),
        ] {
            assert_eq!(resolve_plain(text), expected, "{text:?}");
        }
        let sixty_four_zeros = "0".repeat(64);
        assert_eq!(resolve_plain(&sixty_four_zeros), json!(0));
        let digits = "1234567890".repeat(6) + "1234";
        assert!(
            resolve_plain(&digits).is_f64(),
            "too long for an integer: a float"
        );
    }

    #[test]
    fn quoted_and_tagged_scalars_stay_strings_and_retyped_ones_are_recorded() {
        let docs = documents(
            "a: '0777'\nb: \"yes\"\nc: !!str 12\nd: 0777\ne: [on, x]\n---\n---\nf: 1\n",
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(
            docs[0].value,
            json!({ "a": "0777", "b": "yes", "c": "12", "d": 511, "e": [true, "x"] })
        );
        assert_eq!(
            docs[0].retyped.keys().collect::<Vec<_>>(),
            vec!["/d", "/e/0"]
        );
        assert_eq!(docs[0].retyped["/d"].became, "an integer");
        assert_eq!(docs[0].retyped["/d"].line, 4);
        assert!(docs[1].retyped.contains_key("/f"));
    }

    #[test]
    fn anchors_merge_keys_and_non_string_keys() {
        let doc = &documents(
            "base: &b {x: 1, z: 2}\nderived:\n  <<: *b\n  z: 3\non: 1\n",
        )
        .unwrap()[0];
        assert_eq!(
            doc.value,
            json!({ "base": { "x": 1, "z": 2 }, "derived": { "x": 1, "z": 3 }, "true": 1 })
        );
    }
}
