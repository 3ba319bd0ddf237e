//! Raw HTTP/1.1 message parsing and writing shared by the client and the stand-in servers.
//!
//! Header names are kept exactly as received (case preserved) and values are raw bytes
//! (they may be non-UTF-8). Every parse error is an `io::Error` (mostly `InvalidData`);
//! nothing here panics on malformed input.

use std::io::{self, Read, Write};

/// Maximum size of a request/response head (start line + headers).
pub const MAX_HEAD: usize = 64 * 1024;
/// Maximum request body accepted by the servers.
pub const MAX_BODY: usize = 1024 * 1024;
/// Maximum response body accepted by the client.
pub const MAX_CLIENT_BODY: usize = 16 * 1024 * 1024;
/// Maximum number of requests served on one keep-alive connection.
pub const MAX_REQUESTS_PER_CONNECTION: usize = 10_000;

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn eq_ignore_case(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// A request as received by a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRequest {
    pub method: String,
    /// The request target as sent (path plus query), lossily decoded.
    pub path: String,
    /// Header (name, value) pairs in order, names as received, values as raw bytes.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    /// When the whole request had been read.
    pub received_at: std::time::SystemTime,
}

impl Default for RawRequest {
    fn default() -> Self {
        RawRequest {
            method: String::new(),
            path: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
            received_at: std::time::UNIX_EPOCH,
        }
    }
}

impl RawRequest {
    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<Vec<u8>> {
        self.headers
            .iter()
            .find(|(n, _)| eq_ignore_case(n, name))
            .map(|(_, v)| v.clone())
    }

    /// First value of a header, lossily decoded as UTF-8.
    pub fn header_str(&self, name: &str) -> Option<String> {
        self.header(name).map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    /// All values of a header (case-insensitive name), in order.
    pub fn headers_named(&self, name: &str) -> Vec<Vec<u8>> {
        self.headers
            .iter()
            .filter(|(n, _)| eq_ignore_case(n, name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Whether a header with this name (case-insensitive) is present.
    pub fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| eq_ignore_case(n, name))
    }

    /// The path without the query string.
    pub fn path_only(&self) -> &str {
        self.path.split(['?', '#']).next().unwrap_or("")
    }

    /// The query string (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.path.split_once('?').map(|(_, q)| q.split('#').next().unwrap_or(""))
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body lossily decoded as UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A response as received by the client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header (name, value) pairs in order, names as received (lossily decoded).
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    /// First value of a header (case-insensitive), lossily decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// All raw values of a header (case-insensitive), in order.
    pub fn headers_named(&self, name: &str) -> Vec<Vec<u8>> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The body parsed as JSON. Panics (with the status and body) if it is not JSON:
    /// this is a test helper; use [`Response::try_json`] to handle the error.
    pub fn json(&self) -> serde_json::Value {
        match self.try_json() {
            Ok(v) => v,
            Err(e) => panic!(
                "response body is not JSON ({e}): status {} body {:?}",
                self.status,
                self.text()
            ),
        }
    }

    pub fn try_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The body lossily decoded as UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A buffered reader that keeps unconsumed bytes between messages (keep-alive, pipelining).
pub struct Reader<R> {
    inner: R,
    buf: Vec<u8>,
}

impl<R: Read> Reader<R> {
    pub fn new(inner: R) -> Self {
        Reader { inner, buf: Vec::with_capacity(8192) }
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Bytes read from the peer but not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Reads more bytes into the buffer; returns how many (0 = EOF).
    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 8192];
        loop {
            match self.inner.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads a message head (start line and header lines), without the blank line.
    /// Leading empty lines are skipped. `Ok(None)` on a clean EOF before any byte.
    pub fn read_head(&mut self, limit: usize) -> io::Result<Option<Vec<u8>>> {
        let mut scanned = 0;
        loop {
            // Skip leading CR/LF (robustness, RFC 9112 section 2.2).
            let lead = self.buf.iter().take_while(|c| matches!(c, b'\r' | b'\n')).count();
            if lead > 0 {
                self.buf.drain(..lead);
                scanned = 0;
            }
            // Look for "\n\r\n" or "\n\n".
            let mut i = scanned;
            while i < self.buf.len() {
                if self.buf[i] == b'\n' {
                    if i > limit {
                        return Err(invalid(format!("message head larger than {limit} bytes")));
                    }
                    let rest = &self.buf[i + 1..];
                    if rest.first() == Some(&b'\n') {
                        let head = self.buf[..i].to_vec();
                        self.buf.drain(..i + 2);
                        return Ok(Some(head));
                    }
                    if rest.starts_with(b"\r\n") {
                        let head = self.buf[..i].to_vec();
                        self.buf.drain(..i + 3);
                        return Ok(Some(head));
                    }
                    if rest.len() < 2 {
                        break; // need more bytes to decide
                    }
                }
                i += 1;
            }
            scanned = i;
            if self.buf.len() > limit {
                return Err(invalid(format!("message head larger than {limit} bytes")));
            }
            if self.fill()? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "EOF inside message head"));
            }
        }
    }

    /// Reads one line (without the line terminator).
    pub fn read_line(&mut self, limit: usize) -> io::Result<Vec<u8>> {
        let mut scanned = 0;
        loop {
            if let Some(p) = self.buf[scanned..].iter().position(|c| *c == b'\n') {
                let end = scanned + p;
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            scanned = self.buf.len();
            if self.buf.len() > limit {
                return Err(invalid("line too long"));
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "EOF inside line"));
            }
        }
    }

    /// Reads exactly `n` bytes.
    pub fn read_exact_vec(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "EOF inside body"));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Reads a chunked body (trailers are read and discarded).
    pub fn read_chunked(&mut self, limit: usize) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        for _ in 0..1_000_000 {
            let line = self.read_line(4096)?;
            let size_part = line.split(|c| *c == b';').next().unwrap_or(&[]);
            let size_str = std::str::from_utf8(trim_ows(size_part)).map_err(|_| invalid("bad chunk size"))?;
            if size_str.is_empty() || size_str.len() > 15 {
                return Err(invalid("bad chunk size"));
            }
            let size = usize::from_str_radix(size_str, 16).map_err(|_| invalid("bad chunk size"))?;
            if size == 0 {
                // Trailer section.
                for _ in 0..1000 {
                    if self.read_line(MAX_HEAD)?.is_empty() {
                        return Ok(body);
                    }
                }
                return Err(invalid("too many trailers"));
            }
            if body.len() + size > limit {
                return Err(invalid(format!("body larger than {limit} bytes")));
            }
            let data = self.read_exact_vec(size)?;
            body.extend_from_slice(&data);
            let crlf = self.read_line(2)?;
            if !crlf.is_empty() {
                return Err(invalid("missing CRLF after chunk"));
            }
        }
        Err(invalid("too many chunks"))
    }

    /// Reads until EOF.
    pub fn read_to_end_limited(&mut self, limit: usize) -> io::Result<Vec<u8>> {
        loop {
            if self.buf.len() > limit {
                return Err(invalid(format!("body larger than {limit} bytes")));
            }
            if self.fill()? == 0 {
                return Ok(std::mem::take(&mut self.buf));
            }
        }
    }
}

fn split_lines(head: &[u8]) -> Vec<&[u8]> {
    head.split(|c| *c == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect()
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Parses header lines into (name, value) pairs.
pub fn parse_header_lines(lines: &[&[u8]]) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut headers = Vec::with_capacity(lines.len());
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if matches!(line[0], b' ' | b'\t') {
            return Err(invalid("obsolete line folding"));
        }
        let colon = line.iter().position(|c| *c == b':').ok_or_else(|| invalid("header line without colon"))?;
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|c| is_tchar(*c)) {
            return Err(invalid("bad header name"));
        }
        let value = trim_ows(&line[colon + 1..]);
        if value.iter().any(|c| matches!(c, b'\r' | b'\n' | 0)) {
            return Err(invalid("bad header value"));
        }
        headers.push((name.to_vec(), value.to_vec()));
    }
    Ok(headers)
}

/// How the body of a message is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

fn body_kind(headers: &[(Vec<u8>, Vec<u8>)], is_request: bool) -> io::Result<BodyKind> {
    let te: Vec<&Vec<u8>> = headers
        .iter()
        .filter(|(n, _)| eq_ignore_case(n, "transfer-encoding"))
        .map(|(_, v)| v)
        .collect();
    if !te.is_empty() {
        let last = te
            .last()
            .and_then(|v| v.split(|c| *c == b',').next_back())
            .map(trim_ows)
            .unwrap_or(&[]);
        if eq_ignore_case(last, "chunked") {
            return Ok(BodyKind::Chunked);
        }
        if is_request {
            return Err(invalid("unsupported transfer-encoding"));
        }
        return Ok(BodyKind::UntilClose);
    }
    let mut len: Option<usize> = None;
    for (n, v) in headers {
        if eq_ignore_case(n, "content-length") {
            for part in v.split(|c| *c == b',') {
                let s = std::str::from_utf8(trim_ows(part)).map_err(|_| invalid("bad content-length"))?;
                if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) || s.len() > 18 {
                    return Err(invalid("bad content-length"));
                }
                let l: usize = s.parse().map_err(|_| invalid("bad content-length"))?;
                if len.is_some_and(|old| old != l) {
                    return Err(invalid("conflicting content-length"));
                }
                len = Some(l);
            }
        }
    }
    Ok(match len {
        Some(l) => BodyKind::Length(l),
        None if is_request => BodyKind::None,
        None => BodyKind::UntilClose,
    })
}

fn connection_has(headers: &[(Vec<u8>, Vec<u8>)], token: &str) -> bool {
    headers
        .iter()
        .filter(|(n, _)| eq_ignore_case(n, "connection"))
        .flat_map(|(_, v)| v.split(|c| *c == b','))
        .any(|t| eq_ignore_case(trim_ows(t), token))
}

/// A parsed request head, before its body is read.
#[derive(Clone, Debug)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    /// Minor version: `HTTP/1.<minor>`.
    pub minor_version: u8,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: BodyKind,
    /// Whether the connection may be reused after this request.
    pub keep_alive: bool,
    pub expect_continue: bool,
}

/// Parses a request head (as returned by [`Reader::read_head`]).
pub fn parse_request_head(head: &[u8]) -> io::Result<RequestHead> {
    let lines = split_lines(head);
    let start = lines.first().ok_or_else(|| invalid("empty request"))?;
    let mut parts = start.split(|c| *c == b' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) => (m, t, v),
        _ => return Err(invalid("bad request line")),
    };
    if method.is_empty() || !method.iter().all(|c| is_tchar(*c)) {
        return Err(invalid("bad method"));
    }
    if target.is_empty() || target.iter().any(|c| c.is_ascii_control()) {
        return Err(invalid("bad request target"));
    }
    let minor_version = match version {
        b"HTTP/1.1" => 1,
        b"HTTP/1.0" => 0,
        _ => return Err(invalid("unsupported HTTP version")),
    };
    let headers = parse_header_lines(&lines[1..])?;
    let body = body_kind(&headers, true)?;
    let keep_alive = if minor_version == 1 {
        !connection_has(&headers, "close")
    } else {
        connection_has(&headers, "keep-alive")
    };
    let expect_continue = headers
        .iter()
        .any(|(n, v)| eq_ignore_case(n, "expect") && eq_ignore_case(trim_ows(v), "100-continue"));
    Ok(RequestHead {
        method: String::from_utf8_lossy(method).into_owned(),
        path: String::from_utf8_lossy(target).into_owned(),
        minor_version,
        headers,
        body,
        keep_alive,
        expect_continue,
    })
}

/// Reads the body of a request whose head was parsed.
pub fn read_request_body<R: Read>(reader: &mut Reader<R>, head: &RequestHead, limit: usize) -> io::Result<Vec<u8>> {
    match head.body {
        BodyKind::None | BodyKind::UntilClose => Ok(Vec::new()),
        BodyKind::Length(n) if n > limit => Err(invalid(format!("body larger than {limit} bytes"))),
        BodyKind::Length(n) => reader.read_exact_vec(n),
        BodyKind::Chunked => reader.read_chunked(limit),
    }
}

/// Reads a whole request (no `100 Continue` handling). `Ok(None)` on clean EOF.
pub fn read_request<R: Read>(reader: &mut Reader<R>) -> io::Result<Option<(RawRequest, RequestHead)>> {
    let Some(head_bytes) = reader.read_head(MAX_HEAD)? else {
        return Ok(None);
    };
    let head = parse_request_head(&head_bytes)?;
    let body = read_request_body(reader, &head, MAX_BODY)?;
    Ok(Some((
        RawRequest {
            method: head.method.clone(),
            path: head.path.clone(),
            headers: head.headers.clone(),
            body,
            received_at: std::time::SystemTime::now(),
        },
        head,
    )))
}

/// Reads one final response (1xx interim responses other than 101 are skipped).
/// Returns the response and whether the connection may be reused.
pub fn read_response<R: Read>(reader: &mut Reader<R>, head_request: bool, limit: usize) -> io::Result<(Response, bool)> {
    for _ in 0..100 {
        let head = reader
            .read_head(MAX_HEAD)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed before a response"))?;
        let lines = split_lines(&head);
        let start = lines.first().copied().unwrap_or(&[]);
        let mut parts = start.splitn(3, |c| *c == b' ');
        let version = parts.next().unwrap_or(&[]);
        let code = parts.next().unwrap_or(&[]);
        let minor = match version {
            b"HTTP/1.1" => 1,
            b"HTTP/1.0" => 0,
            _ => return Err(invalid(format!("bad status line {:?}", String::from_utf8_lossy(start)))),
        };
        if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
            return Err(invalid("bad status code"));
        }
        let status: u16 = std::str::from_utf8(code).ok().and_then(|s| s.parse().ok()).ok_or_else(|| invalid("bad status code"))?;
        let headers = parse_header_lines(&lines[1..])?;
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let mut kind = body_kind(&headers, false)?;
        if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
            kind = BodyKind::None;
        }
        let body = match kind {
            BodyKind::None => Vec::new(),
            BodyKind::Length(n) if n > limit => return Err(invalid("response body too large")),
            BodyKind::Length(n) => reader.read_exact_vec(n)?,
            BodyKind::Chunked => reader.read_chunked(limit)?,
            BodyKind::UntilClose => reader.read_to_end_limited(limit)?,
        };
        let reusable = kind != BodyKind::UntilClose
            && if minor == 1 { !connection_has(&headers, "close") } else { connection_has(&headers, "keep-alive") };
        let headers = headers
            .into_iter()
            .map(|(n, v)| (String::from_utf8_lossy(&n).into_owned(), v))
            .collect();
        return Ok((Response { status, headers, body }, reusable));
    }
    Err(invalid("too many interim responses"))
}

/// Standard reason phrase for a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Serializes a response. `Content-Length` is always added; `Connection: close` when `close`.
pub fn encode_response(status: u16, headers: &[(String, Vec<u8>)], body: &[u8], close: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(format!("HTTP/1.1 {} {}\r\n", status, reason_phrase(status)).as_bytes());
    for (n, v) in headers {
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// Writes a response (see [`encode_response`]).
pub fn write_response<W: Write>(w: &mut W, status: u16, headers: &[(String, Vec<u8>)], body: &[u8], close: bool) -> io::Result<()> {
    w.write_all(&encode_response(status, headers, body, close))?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &[u8]) -> Reader<&[u8]> {
        Reader::new(bytes)
    }

    #[test]
    fn parses_pipelined_requests_with_raw_headers() {
        let input: &[u8] = b"\r\nGET /a?x=1 HTTP/1.1\r\nHost: h\r\nX-Dup: 1\r\nx-dup: 2\r\nX-Bin: \xc3\x28 \xff\r\n\r\n\
POST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\n";
        let mut r = reader(input);
        let (a, ha) = read_request(&mut r).unwrap().unwrap();
        assert_eq!(a.method, "GET");
        assert_eq!(a.path, "/a?x=1");
        assert_eq!(a.path_only(), "/a");
        assert_eq!(a.query(), Some("x=1"));
        assert!(ha.keep_alive);
        assert_eq!(a.headers_named("x-dup"), vec![b"1".to_vec(), b"2".to_vec()]);
        assert_eq!(a.headers[1].0, b"X-Dup".to_vec());
        assert_eq!(a.header("x-bin").unwrap(), b"\xc3\x28 \xff".to_vec());
        let (b, _) = read_request(&mut r).unwrap().unwrap();
        assert_eq!(b.body, b"hello");
        let (c, _) = read_request(&mut r).unwrap().unwrap();
        assert_eq!(c.body, b"abcde");
        assert!(read_request(&mut r).unwrap().is_none());
    }

    #[test]
    fn bare_lf_and_http10() {
        let mut r = reader(b"GET / HTTP/1.0\nA: b\n\n");
        let (req, head) = read_request(&mut r).unwrap().unwrap();
        assert_eq!(req.header_str("a").as_deref(), Some("b"));
        assert!(!head.keep_alive);
    }

    #[test]
    fn malformed_inputs_are_errors_not_panics() {
        let cases: Vec<&[u8]> = vec![
            b"GET\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
            b"GET / HTTP/1.1\r\n: empty\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n200000\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort",
            b"GET / HTTP/1.1\r\nHost: x",
            b"\xff\xfe\xfd\r\n\r\n",
        ];
        for c in cases {
            let mut r = reader(c);
            assert!(read_request(&mut r).is_err(), "{:?}", String::from_utf8_lossy(c));
        }
        // Oversized head.
        let mut big = b"GET / HTTP/1.1\r\n".to_vec();
        while big.len() < MAX_HEAD + 10 {
            big.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        big.extend_from_slice(b"\r\n");
        assert!(read_request(&mut reader(&big)).is_err());
    }

    #[test]
    fn responses() {
        let input: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\nx-a: 2\r\n\r\nokHTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\nHTTP/1.0 500 Oops\r\n\r\nuntil close";
        let mut r = reader(input);
        let (a, reuse) = read_response(&mut r, false, 100).unwrap();
        assert_eq!((a.status, a.body.as_slice(), reuse), (200, b"ok".as_slice(), true));
        assert_eq!(a.headers_named("X-A"), vec![b"1".to_vec(), b"2".to_vec()]);
        assert_eq!(a.header("x-a").as_deref(), Some("1"));
        let (b, _) = read_response(&mut r, false, 100).unwrap();
        assert_eq!(b.status, 204);
        let (c, _) = read_response(&mut r, false, 100).unwrap();
        assert_eq!(c.body, b"hi");
        let (d, reuse) = read_response(&mut r, false, 100).unwrap();
        assert_eq!((d.status, d.text().as_str(), reuse), (500, "until close", false));
        assert!(read_response(&mut r, false, 100).is_err());
        assert!(read_response(&mut reader(b"HTTP/1.1 20 OK\r\n\r\n"), false, 100).is_err());
        assert!(read_response(&mut reader(b"junk\r\n\r\n"), false, 100).is_err());
    }

    #[test]
    fn encode() {
        let bytes = encode_response(201, &[("x".into(), b"\xff".to_vec())], b"{}", true);
        assert_eq!(
            bytes,
            b"HTTP/1.1 201 Created\r\nx: \xff\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}".to_vec()
        );
    }
}
