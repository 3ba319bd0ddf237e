//! Finds the dotted path (`identity.max_groups`, `trusted_peers.source_cidrs[1]`) of the JSON
//! value at a byte offset, so configuration errors name their field. serde reports only a line
//! and column; this small scanner turns that into the path the user wrote.

enum Frame {
    Object { key: Option<String>, expecting_key: bool },
    Array { index: usize },
}

/// The path of the value being read at `offset` (0-based byte offset into `text`).
pub fn path_at(text: &[u8], offset: usize) -> String {
    let mut stack: Vec<Frame> = Vec::new();
    let end = offset.min(text.len());
    let mut at = 0;
    while at < end {
        match text[at] {
            b'"' => {
                let (value, next) = read_string(text, at + 1);
                if let Some(Frame::Object { key, expecting_key }) = stack.last_mut() {
                    if *expecting_key {
                        *key = Some(value);
                        *expecting_key = false;
                    }
                }
                at = next;
                continue;
            }
            b'{' => stack.push(Frame::Object {
                key: None,
                expecting_key: true,
            }),
            b'[' => stack.push(Frame::Array { index: 0 }),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Object { expecting_key, .. }) => *expecting_key = true,
                Some(Frame::Array { index }) => *index += 1,
                None => {}
            },
            _ => {}
        }
        at += 1;
    }
    let mut path = String::new();
    for frame in &stack {
        match frame {
            Frame::Object { key: Some(key), .. } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Object { key: None, .. } => {}
            Frame::Array { index } => {
                path.push('[');
                path.push_str(&index.to_string());
                path.push(']');
            }
        }
    }
    path
}

/// Reads a JSON string body starting after its opening quote; returns it (escapes kept simple:
/// `\"` and `\\` resolved, others copied) and the offset after the closing quote.
fn read_string(text: &[u8], mut at: usize) -> (String, usize) {
    let mut out = Vec::new();
    while at < text.len() {
        match text[at] {
            b'"' => return (String::from_utf8_lossy(&out).into_owned(), at + 1),
            b'\\' if at + 1 < text.len() => {
                out.push(text[at + 1]);
                at += 2;
            }
            byte => {
                out.push(byte);
                at += 1;
            }
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), at)
}

/// Converts serde_json's 1-based line and column to a byte offset.
pub fn offset_of(text: &[u8], line: usize, column: usize) -> usize {
    let mut current_line = 1;
    let mut line_start = 0;
    for (index, byte) in text.iter().enumerate() {
        if current_line == line {
            break;
        }
        if *byte == b'\n' {
            current_line += 1;
            line_start = index + 1;
        }
    }
    (line_start + column).min(text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str, marker: &str) -> String {
        let offset = text.find(marker).unwrap() + marker.len();
        path_at(text.as_bytes(), offset)
    }

    #[test]
    fn finds_nested_paths() {
        let text = r#"{"identity":{"preset":"x","max_groups":"many"},"trusted_peers":{"source_cidrs":["a","b"]}}"#;
        assert_eq!(path(text, r#""many""#), "identity.max_groups");
        assert_eq!(path(text, r#""preset""#), "identity.preset");
        assert_eq!(path(text, r#""b""#), "trusted_peers.source_cidrs[1]");
        assert_eq!(path(text, r#""identity""#), "identity");
        assert_eq!(path_at(b"", 0), "");
    }

    #[test]
    fn escaped_quotes_and_offsets() {
        let text = "{\n  \"a\\\"b\": {\"c\": 1}\n}";
        assert_eq!(path(text, "1"), "a\"b.c");
        assert_eq!(offset_of(b"ab\ncd", 2, 1), 4);
        assert_eq!(offset_of(b"ab", 9, 9), 2);
    }
}
