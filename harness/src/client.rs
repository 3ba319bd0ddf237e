//! Raw HTTP/1.1 client: writes exactly the header bytes it is given (names and values
//! verbatim, duplicates kept, non-UTF-8 allowed: what a normal client refuses to send) and
//! reads the full response, parsed with `httparse`.

use crate::message::Response;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

/// Default connect/read/write timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A request to send. Build with [`ClientRequest::get`] / [`ClientRequest::post`] / [`ClientRequest::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRequest {
    pub method: String,
    pub path: String,
    /// Headers written verbatim, in order, after the automatic `Host`.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// Value of the automatic `Host` header (`None`: no automatic `Host`). Default `localhost`.
    /// Not written when `headers` already contains a `Host`.
    pub host: Option<Vec<u8>>,
    pub body: Option<Vec<u8>>,
    /// When false (default) `Connection: close` is added (unless a `Connection` header is given).
    pub keep_alive: bool,
    pub timeout: Duration,
}

impl ClientRequest {
    pub fn new(method: &str, path: &str) -> Self {
        ClientRequest {
            method: method.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
            host: Some(b"localhost".to_vec()),
            body: None,
            keep_alive: false,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    pub fn post(path: &str) -> Self {
        Self::new("POST", path)
    }

    /// Appends a header, written exactly as given (duplicates kept).
    pub fn header(mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.as_ref().to_vec(), value.as_ref().to_vec()));
        self
    }

    /// Sets the automatic `Host` header value.
    pub fn host(mut self, host: impl AsRef<[u8]>) -> Self {
        self.host = Some(host.as_ref().to_vec());
        self
    }

    /// Sends no automatic `Host` header.
    pub fn no_host(mut self) -> Self {
        self.host = None;
        self
    }

    /// Sets the body; `Content-Length` is added unless a `Content-Length` or
    /// `Transfer-Encoding` header was given.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    pub fn keep_alive(mut self, keep_alive: bool) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn has(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
    }

    /// The exact bytes that will be written.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        if let Some(h) = &self.host {
            if !self.has("host") {
                out.extend_from_slice(b"Host: ");
                out.extend_from_slice(h);
                out.extend_from_slice(b"\r\n");
            }
        }
        for (n, v) in &self.headers {
            out.extend_from_slice(n);
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        let body_len = self.body.as_ref().map(Vec::len);
        let needs_length = body_len.is_some() || matches!(self.method.as_str(), "POST" | "PUT" | "PATCH");
        if needs_length && !self.has("content-length") && !self.has("transfer-encoding") {
            out.extend_from_slice(format!("Content-Length: {}\r\n", body_len.unwrap_or(0)).as_bytes());
        }
        if !self.keep_alive && !self.has("connection") {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if let Some(b) = &self.body {
            out.extend_from_slice(b);
        }
        out
    }
}

fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Opens a connection, writes the request, reads the full response, closes.
pub fn send(addr: SocketAddr, req: &ClientRequest) -> io::Result<Response> {
    let mut stream = connect(addr, req.timeout)?;
    stream.write_all(&req.to_bytes())?;
    let (resp, _) = ResponseReader::new(stream.try_clone()?).read(req.method == "HEAD")?;
    let _ = stream.shutdown(Shutdown::Both);
    Ok(resp)
}

/// Writes arbitrary bytes on a new connection and returns everything the peer sent
/// back until it closed (or the timeout passed). For malformed-input tests.
pub fn send_raw(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let mut stream = connect(addr, timeout)?;
    stream.write_all(bytes)?;
    let _ = stream.shutdown(Shutdown::Write);
    let mut received = Vec::new();
    // On a timeout or reset, what arrived before it is the answer.
    match stream.take(MAX_BODY as u64).read_to_end(&mut received) {
        Err(e) if !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::ConnectionReset) => Err(e),
        _ => Ok(received),
    }
}

/// Convenience: `GET path` with `Connection: close`.
pub fn get(addr: SocketAddr, path: &str) -> io::Result<Response> {
    send(addr, &ClientRequest::get(path))
}

/// A keep-alive connection. Requests are sent with keep-alive; if the server answers
/// with `Connection: close` (or closes), the next `send` reconnects.
pub struct Connection {
    addr: SocketAddr,
    timeout: Duration,
    stream: Option<(TcpStream, ResponseReader)>,
    connects: u64,
}

impl Connection {
    pub fn open(addr: SocketAddr) -> io::Result<Connection> {
        Self::open_with_timeout(addr, DEFAULT_TIMEOUT)
    }

    pub fn open_with_timeout(addr: SocketAddr, timeout: Duration) -> io::Result<Connection> {
        let mut c = Connection { addr, timeout, stream: None, connects: 0 };
        c.ensure()?;
        Ok(c)
    }

    fn ensure(&mut self) -> io::Result<&mut (TcpStream, ResponseReader)> {
        if self.stream.is_none() {
            let s = connect(self.addr, self.timeout)?;
            let r = ResponseReader::new(s.try_clone()?);
            self.connects += 1;
            return Ok(self.stream.insert((s, r)));
        }
        self.stream.as_mut().ok_or_else(|| io::Error::other("not connected"))
    }

    /// Sends a request on this connection (forcing keep-alive). Panics on I/O errors:
    /// use [`Connection::try_send`] to handle them.
    pub fn send(&mut self, req: &ClientRequest) -> Response {
        match self.try_send(req) {
            Ok(r) => r,
            Err(e) => panic!("request {} {} to {} failed: {e}", req.method, req.path, self.addr),
        }
    }

    pub fn try_send(&mut self, req: &ClientRequest) -> io::Result<Response> {
        let mut req = req.clone();
        req.keep_alive = true;
        let result = self.ensure().and_then(|(stream, reader)| {
            stream.write_all(&req.to_bytes())?;
            reader.read(req.method == "HEAD")
        });
        match result {
            Ok((resp, reusable)) => {
                if !reusable {
                    self.close();
                }
                Ok(resp)
            }
            Err(e) => {
                self.close();
                Err(e)
            }
        }
    }

    /// Whether a TCP connection is currently open.
    pub fn is_open(&self) -> bool {
        self.stream.is_some()
    }

    /// How many TCP connections were opened so far (1 if keep-alive always held).
    pub fn connects(&self) -> u64 {
        self.connects
    }

    pub fn close(&mut self) {
        if let Some((s, _)) = self.stream.take() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
    }
}

/// Largest response head and body the client accepts.
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;
const MAX_HEADERS: usize = 256;

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// A response head as httparse read it, copied out of the read buffer.
struct Head {
    length: usize,
    minor_version: u8,
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }

    /// Whether a comma-separated header (`Connection`, `Transfer-Encoding`) lists `token`
    /// (`last`: only as its final element).
    fn lists(&self, name: &str, token: &str, last: bool) -> bool {
        let mut tokens = self.values(name).flat_map(|v| v.split(|c| *c == b',')).map(|t| t.trim_ascii());
        if last {
            tokens.last().is_some_and(|t| t.eq_ignore_ascii_case(token.as_bytes()))
        } else {
            tokens.any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
        }
    }

    fn parse(buf: &[u8]) -> io::Result<Option<Head>> {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut slots);
        let httparse::Status::Complete(length) = response.parse(buf).map_err(invalid)? else {
            return Ok(None);
        };
        Ok(Some(Head {
            length,
            minor_version: response.version.unwrap_or(1),
            status: response.code.unwrap_or(0),
            headers: response.headers.iter().map(|h| (h.name.to_string(), h.value.to_vec())).collect(),
        }))
    }
}

/// Reads responses from one connection, keeping bytes that belong to the next one.
struct ResponseReader<R = TcpStream> {
    stream: R,
    buf: Vec<u8>,
}

impl<R: Read> ResponseReader<R> {
    fn new(stream: R) -> Self {
        ResponseReader { stream, buf: Vec::with_capacity(8192) }
    }

    /// Reads more bytes; an error if the peer closed first.
    fn fill(&mut self, what: &str) -> io::Result<()> {
        let mut chunk = [0u8; 8192];
        let n = loop {
            match self.stream.read(&mut chunk) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("connection closed inside {what}")));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn take(&mut self, n: usize, what: &str) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            self.fill(what)?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Reads one final response (interim 1xx responses are skipped). Returns it and
    /// whether the connection may carry another request.
    fn read(&mut self, head_request: bool) -> io::Result<(Response, bool)> {
        for _ in 0..100 {
            let head = loop {
                if let Some(head) = Head::parse(&self.buf)? {
                    break head;
                }
                if self.buf.len() > MAX_HEAD {
                    return Err(invalid("response head larger than 64 KiB"));
                }
                self.fill("a response head")?;
            };
            self.buf.drain(..head.length);
            if (100..200).contains(&head.status) && head.status != 101 {
                continue;
            }
            let no_body = head_request || matches!(head.status, 100..=199 | 204 | 304);
            let mut until_close = false;
            let body = if no_body {
                Vec::new()
            } else if head.values("transfer-encoding").next().is_some() {
                until_close = !head.lists("transfer-encoding", "chunked", true);
                if until_close { self.read_to_close()? } else { self.read_chunked()? }
            } else if let Some(length) = head.values("content-length").next() {
                let length = std::str::from_utf8(length).ok().and_then(|l| l.trim().parse::<usize>().ok());
                match length {
                    Some(n) if n <= MAX_BODY => self.take(n, "a response body")?,
                    _ => return Err(invalid("bad or too large content-length")),
                }
            } else {
                until_close = true;
                self.read_to_close()?
            };
            let reusable = !until_close
                && if head.minor_version == 1 { !head.lists("connection", "close", false) } else { head.lists("connection", "keep-alive", false) };
            return Ok((Response { status: head.status, headers: head.headers, body }, reusable));
        }
        Err(invalid("too many interim responses"))
    }

    fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let (consumed, size) = loop {
                match httparse::parse_chunk_size(&self.buf).map_err(|_| invalid("bad chunk size"))? {
                    httparse::Status::Complete(found) => break found,
                    httparse::Status::Partial => self.fill("a chunk size")?,
                }
            };
            self.buf.drain(..consumed);
            if size == 0 {
                return self.skip_trailers().map(|()| body);
            }
            if body.len() as u64 + size > MAX_BODY as u64 {
                return Err(invalid("response body larger than 16 MiB"));
            }
            body.extend(self.take(size as usize, "a chunk")?);
            if self.take(2, "a chunk")? != b"\r\n" {
                return Err(invalid("missing CRLF after a chunk"));
            }
        }
    }

    fn skip_trailers(&mut self) -> io::Result<()> {
        loop {
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            if let httparse::Status::Complete((length, _)) = httparse::parse_headers(&self.buf, &mut slots).map_err(invalid)? {
                self.buf.drain(..length);
                return Ok(());
            }
            self.fill("the trailers")?;
        }
    }

    fn read_to_close(&mut self) -> io::Result<Vec<u8>> {
        let mut rest = std::mem::take(&mut self.buf);
        (&mut self.stream).take((MAX_BODY - rest.len().min(MAX_BODY)) as u64).read_to_end(&mut rest)?;
        Ok(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_read_one_after_the_other() {
        let input: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\nx-a: \xff\r\n\r\nok\
HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nhi\r\n1\r\n!\r\n0\r\nT: 1\r\n\r\n\
HTTP/1.0 500 Oops\r\n\r\nuntil close";
        let mut reader = ResponseReader::new(input);
        let (a, reusable) = reader.read(false).unwrap();
        assert_eq!((a.status, a.body.as_slice(), reusable), (200, b"ok".as_slice(), true));
        assert_eq!(a.headers_named("X-A"), vec![b"1".to_vec(), vec![0xff]]);
        assert_eq!(a.headers[0].0, "Content-Length");
        assert_eq!(reader.read(false).unwrap().0.status, 204);
        assert_eq!(reader.read(false).unwrap().0.body, b"hi!");
        let (d, reusable) = reader.read(false).unwrap();
        assert_eq!((d.status, d.text().as_str(), reusable), (500, "until close", false));
        assert_eq!(reader.read(false).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        for bad in [&b"HTTP/1.1 20 OK\r\n\r\n"[..], b"junk\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"] {
            assert_eq!(ResponseReader::new(bad).read(false).unwrap_err().kind(), io::ErrorKind::InvalidData);
        }
        let bad_chunk: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n";
        assert!(ResponseReader::new(bad_chunk).read(false).is_err());
        let head: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(ResponseReader::new(head).read(true).unwrap().0.body, b"");
    }

    #[test]
    fn request_bytes_are_verbatim() {
        let r = ClientRequest::get("/p?q=1")
            .host("example")
            .header("IMPERSONATE-GROUP", "a")
            .header("IMPERSONATE-GROUP", "b")
            .header("X-Bin", [0xC3u8, 0x28, 0x20, 0xFF]);
        assert_eq!(
            r.to_bytes(),
            b"GET /p?q=1 HTTP/1.1\r\nHost: example\r\nIMPERSONATE-GROUP: a\r\nIMPERSONATE-GROUP: b\r\nX-Bin: \xc3\x28 \xff\r\nConnection: close\r\n\r\n".to_vec()
        );
        let p = ClientRequest::post("/t").body("abc").keep_alive(true).header("host", "h2");
        assert_eq!(p.to_bytes(), b"POST /t HTTP/1.1\r\nhost: h2\r\nContent-Length: 3\r\n\r\nabc".to_vec());
        let e = ClientRequest::post("/t").no_host().header("Connection", "keep-alive");
        assert_eq!(e.to_bytes(), b"POST /t HTTP/1.1\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n".to_vec());
    }
}
