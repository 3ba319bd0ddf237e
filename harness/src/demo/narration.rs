//! The lines `make run` prints while it runs: one per request that reached the stand-in
//! Kiali, one per token the stand-in token service issued, one per request Envoy answered
//! itself (a refusal by the filter, with its reason), read from Envoy's JSON access log.

use crate::message::RawRequest;
use crate::token_service::IssuedToken;
use crate::time::rfc3339;
use serde_json::Value;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

/// Enough of a token to tell tokens apart; the demo never prints a whole one.
fn short(token: &str) -> String {
    match token.char_indices().nth(12) {
        Some((end, _)) => format!("{}...", &token[..end]),
        None => token.to_string(),
    }
}

/// `kiali    GET /path  user=alice groups=[dev, ops]  bearer=...`, where the bearer is
/// judged by `issued` (whether the token service issued that token).
pub fn kiali_line(req: &RawRequest, issued: impl Fn(&str) -> bool) -> String {
    let user = req.header_str("impersonate-user").unwrap_or_else(|| "(none)".into());
    let groups: Vec<String> = req
        .headers_named("impersonate-group")
        .iter()
        .map(|g| String::from_utf8_lossy(g).into_owned())
        .collect();
    let bearer = match req.header_str("authorization").as_deref().map(|v| v.strip_prefix("Bearer ")) {
        None => "no Authorization".to_string(),
        Some(None) => "Authorization is not a bearer".to_string(),
        Some(Some(token)) if issued(token) => format!("bearer=the issued token {}", short(token)),
        Some(Some(token)) => format!("bearer={} NOT issued by the token service", short(token)),
    };
    format!("kiali    {} {}  user={user} groups=[{}]  {bearer}", req.method, req.path, groups.join(", "))
}

/// `tokens   issued kha-1-... for <subject>, expires <time>`.
pub fn token_line(token: &IssuedToken) -> String {
    format!("tokens   issued {} for {}, expires {}", short(&token.token), token.subject, rfc3339(token.expires_at))
}

/// A line for an access-log entry Envoy answered itself; `None` for requests that went
/// through to Kiali (their `kiali` line says more) and for lines that are not access-log JSON.
pub fn access_line(line: &str) -> Option<String> {
    if !line.starts_with('{') {
        return None;
    }
    let entry: Value = serde_json::from_str(line).ok()?;
    let text = |key: &str| entry.get(key).and_then(Value::as_str).unwrap_or("-").to_string();
    let status = entry.get("status")?;
    let request = format!("{} {}", text("method"), text("path"));
    match (entry.get("reason").and_then(Value::as_str), text("details").as_str()) {
        (_, "via_upstream") => None,
        (Some(reason), _) => Some(format!("refused  {status} {reason}  {request}")),
        (None, details) => Some(format!("envoy    {status} {details}  {request}")),
    }
}

/// Reads the lines appended to a file since the last call (Envoy's log, which holds the
/// access log because Envoy's stdout and stderr both go there).
pub struct LogTail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl LogTail {
    pub fn new(path: PathBuf) -> LogTail {
        LogTail { path, offset: 0, partial: Vec::new() }
    }

    /// Complete lines appended since the last call (at most 1 MiB of them per call).
    pub fn new_lines(&mut self) -> Vec<String> {
        let Ok(mut file) = std::fs::File::open(&self.path) else { return Vec::new() };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let before = self.partial.len();
        let read = file.take(1 << 20).read_to_end(&mut self.partial).unwrap_or(0);
        self.offset += read as u64;
        let Some(end) = self.partial[before..].iter().rposition(|b| *b == b'\n').map(|i| before + i + 1) else {
            return Vec::new();
        };
        let complete: Vec<u8> = self.partial.drain(..end).collect();
        String::from_utf8_lossy(&complete).lines().map(str::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> RawRequest {
        RawRequest {
            method: "GET".into(),
            path: "/kiali/api".into(),
            headers: headers.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec())).collect(),
            ..RawRequest::default()
        }
    }

    #[test]
    fn kiali_lines_name_user_groups_and_bearer() {
        let seen = request(&[
            ("impersonate-user", "alice"),
            ("impersonate-group", "dev"),
            ("impersonate-group", "ops"),
            ("authorization", "Bearer kha-1-0123456789abcdef"),
        ]);
        assert_eq!(
            kiali_line(&seen, |t| t == "kha-1-0123456789abcdef"),
            "kiali    GET /kiali/api  user=alice groups=[dev, ops]  bearer=the issued token kha-1-012345..."
        );
        assert!(kiali_line(&seen, |_| false).ends_with("bearer=kha-1-012345... NOT issued by the token service"));
        assert!(kiali_line(&request(&[]), |_| true).ends_with("user=(none) groups=[]  no Authorization"));
    }

    #[test]
    fn access_lines_report_what_envoy_answered_itself() {
        let refused = r#"{"details":"kiali_header_auth","method":"GET","path":"/x","reason":"identity_missing","status":401,"user":null}"#;
        assert_eq!(access_line(refused).as_deref(), Some("refused  401 identity_missing  GET /x"));
        let reset = r#"{"details":"upstream_reset_before_response_started","method":"GET","path":"/y","reason":null,"status":503}"#;
        assert_eq!(access_line(reset).as_deref(), Some("envoy    503 upstream_reset_before_response_started  GET /y"));
        assert_eq!(access_line(r#"{"details":"via_upstream","status":200}"#), None);
        assert_eq!(access_line("[2026-12-03 07:49:52.535][14494][info][main] exiting"), None);
        assert_eq!(access_line("{not json"), None);
    }

    #[test]
    fn the_tail_returns_complete_lines_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut tail = LogTail::new(path.clone());
        assert!(tail.new_lines().is_empty());
        std::fs::write(&path, "one\ntw").unwrap();
        assert_eq!(tail.new_lines(), vec!["one"]);
        std::fs::write(&path, "one\ntwo\nthree\n").unwrap();
        assert_eq!(tail.new_lines(), vec!["two", "three"]);
        assert!(tail.new_lines().is_empty());
    }
}
