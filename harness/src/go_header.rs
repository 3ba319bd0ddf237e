//! Go's reading of request headers, which the Kiali and API server stand-ins share: `net/textproto`
//! `reader.go` (`readMIMEHeader`, `canonicalMIMEHeaderKey`, `readContinuedLineSlice`/`trim`,
//! `validHeaderValueByte`) and `net/http` `header.go` (`Header.Get`/`Values`/`Add`/`Set`,
//! `writeSubset`). A leaf module: it imports nothing from the crate.

use std::fmt;

/// `isTokenTable` (`net/http/lex.go`, copied into textproto and into client-go as
/// `legalHeaderKeyBytes`): the bytes of an RFC 7230 token.
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Canonicalises a key that is all token bytes: upper case first and after each `-`.
fn canonicalise(key: &[u8]) -> String {
    let mut upper = true;
    let out: Vec<u8> = key
        .iter()
        .map(|&c| {
            let c = if upper { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() };
            upper = c == b'-';
            c
        })
        .collect();
    String::from_utf8_lossy(&out).into_owned()
}

/// `textproto.CanonicalMIMEHeaderKey` (used by `Header.Get`/`Values`/`Add`): a key with any
/// non-token byte (a space included) is returned unchanged.
pub fn canonical_mime_header_key(key: &str) -> String {
    if key.bytes().all(is_token_byte) {
        canonicalise(key.as_bytes())
    } else {
        key.to_string()
    }
}

/// The request Go's server refuses with `400 Bad Request` (`readMIMEHeader`'s ProtocolError).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MalformedHeader(pub String);

impl fmt::Display for MalformedHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed MIME header line: {}", self.0)
    }
}

impl std::error::Error for MalformedHeader {}

/// A header map as Go's `net/http` builds it from the header lines of a request: canonical
/// keys, values trimmed of spaces and tabs, the lines of one key in order. Keys keep the order
/// of their first line (Go's map has none). Values are decoded lossily as UTF-8.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GoHeader {
    entries: Vec<(String, Vec<String>)>,
}

impl GoHeader {
    /// `readMIMEHeader`: each (name, value) line is read as Go reads it, or the whole request
    /// is refused as Go's server does.
    pub fn read<N: AsRef<[u8]>, V: AsRef<[u8]>>(lines: &[(N, V)]) -> Result<GoHeader, MalformedHeader> {
        let mut header = GoHeader::default();
        for (name, value) in lines {
            let (name, value) = (name.as_ref(), value.as_ref());
            let malformed = || MalformedHeader(format!("{}:{}", String::from_utf8_lossy(name), String::from_utf8_lossy(value)));
            // canonicalMIMEHeaderKey(k) (the reader's version): empty or a non-token byte other
            // than a space is refused; a key with a space is accepted but not canonicalised.
            if name.is_empty() || !name.iter().all(|&b| is_token_byte(b) || b == b' ') {
                return Err(malformed());
            }
            let key = if name.contains(&b' ') { String::from_utf8_lossy(name).into_owned() } else { canonicalise(name) };
            // validHeaderValueByte: VCHAR, obs-text (0x80-0xFF), SP, HTAB; nothing else.
            if !value.iter().all(|&b| b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80) {
                return Err(malformed());
            }
            // readContinuedLineSlice's trim (trailing) and bytes.TrimLeft(v, " \t") (leading).
            let value = String::from_utf8_lossy(trim_space_tab(value)).into_owned();
            header.push(key, value);
        }
        Ok(header)
    }

    fn push(&mut self, key: String, value: String) {
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, values)) => values.push(value),
            None => self.entries.push((key, vec![value])),
        }
    }

    /// `Header.Get`: the first value of the canonicalised key, `""` if none.
    pub fn get(&self, key: &str) -> &str {
        self.values(key).first().map(String::as_str).unwrap_or("")
    }

    /// `Header.Values`: every value of the canonicalised key.
    pub fn values(&self, key: &str) -> &[String] {
        self.exact(&canonical_mime_header_key(key))
    }

    /// `r.Header[key]`: the map looked up with `key` exactly as written (no canonicalisation).
    pub fn exact(&self, key: &str) -> &[String] {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_slice()).unwrap_or(&[])
    }

    /// `Header.Add`: appends `value` under the canonicalised key.
    pub fn add(&mut self, key: &str, value: &str) {
        self.push(canonical_mime_header_key(key), value.to_string());
    }

    /// `Header.Set`: replaces every value of the canonicalised key.
    pub fn set(&mut self, key: &str, value: &str) {
        let key = canonical_mime_header_key(key);
        self.entries.retain(|(k, _)| *k != key);
        self.entries.push((key, vec![value.to_string()]));
    }

    /// `for key, values := range header`, in first-line order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// `Header.writeSubset`: one line per value, keys sorted, `\r`/`\n` turned into spaces and
    /// values trimmed (`textproto.TrimString`).
    pub fn wire_lines(&self) -> Vec<(String, String)> {
        let mut keys: Vec<&(String, Vec<String>)> = self.entries.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        let line = |v: &String| String::from_utf8_lossy(trim_space_tab(v.replace(['\r', '\n'], " ").as_bytes())).into_owned();
        keys.into_iter().flat_map(|(k, vs)| vs.iter().map(move |v| (k.clone(), line(v)))).collect()
    }
}

fn trim_space_tab(v: &[u8]) -> &[u8] {
    let is_space = |b: &u8| *b == b' ' || *b == b'\t';
    let start = v.iter().position(|b| !is_space(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !is_space(b)).map_or(start, |i| i + 1);
    &v[start..end]
}

