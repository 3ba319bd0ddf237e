//! Encoding of `Impersonate-Extra-<key>` header names.
//!
//! Kubernetes' client-go (`transport/round_trippers.go`, `headerKeyEscape`) percent-encodes every
//! byte of the key that is not a legal HTTP header-name byte (the RFC 7230 token table copied from
//! `net/http/lex.go`), and also `%` itself because `url.PathUnescape` rejects a `%` not followed by
//! two hex digits. The API server's impersonation filter
//! (`staging/src/k8s.io/apiserver/pkg/endpoints/filters/impersonation.go`) takes the header suffix,
//! lowercases it (`strings.ToLower`) and decodes it with `unescapeExtraKey` (`url.PathUnescape`).
//! So a key such as `acme.com/project` travels as `Impersonate-Extra-acme.com%2Fproject`.

use crate::config::is_token_byte;

pub fn encode_extra_key(key: &str) -> String {
    let mut encoded = String::with_capacity(key.len());
    for byte in key.bytes() {
        if is_token_byte(byte) && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            encoded.push('%');
            encoded.push(char::from(HEX[usize::from(byte >> 4)]));
            encoded.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    encoded
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// The inverse, as the API server applies it (lowercase, then percent-decode); used by tests to
/// prove the round trip.
pub fn decode_extra_key_like_apiserver(suffix: &str) -> Option<String> {
    let lower = suffix.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = bytes.get(index + 1..index + 3)?;
            let text = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(text, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_of_encodings() {
        let table = [
            ("email", "email"),
            ("scopes", "scopes"),
            ("acme.com/project", "acme.com%2Fproject"),
            ("a b", "a%20b"),
            ("100%", "100%25"),
            ("key:with:colons", "key%3Awith%3Acolons"),
            ("ünï", "%C3%BCn%C3%AF"),
            ("Ü", "%C3%9C"),
            ("a\"b", "a%22b"),
            ("tilde~pipe|", "tilde~pipe|"),
            ("(x)", "%28x%29"),
            ("a=b,c;d", "a%3Db%2Cc%3Bd"),
        ];
        for (key, expected) in table {
            assert_eq!(encode_extra_key(key), expected, "key {key:?}");
        }
    }

    #[test]
    fn apiserver_decoding_round_trips_lowercase_keys() {
        for key in ["email", "acme.com/project", "100%", "a b/c", "ünï", "Ü", "x%2fy"] {
            let encoded = encode_extra_key(key);
            assert!(encoded.bytes().all(is_token_byte), "{encoded} is a legal header name");
            assert_eq!(decode_extra_key_like_apiserver(&encoded).as_deref(), Some(key));
        }
    }
}
