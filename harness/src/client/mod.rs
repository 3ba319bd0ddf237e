//! Raw HTTP/1.1 client: writes exactly the header bytes it is given (names and values
//! verbatim, duplicates kept, non-UTF-8 allowed: what a normal client refuses to send) and
//! reads the full response, parsed with `httparse`.

mod response_reader;

use crate::message::Response;
use response_reader::{ResponseReader, MAX_BODY};
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
    /// Value of the automatic `Host` header, `localhost` by default. Not written when
    /// `headers` already contains a `Host`.
    pub host: Vec<u8>,
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
            host: b"localhost".to_vec(),
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
        self.host = host.as_ref().to_vec();
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
        let mut out = [self.method.as_bytes(), b" ", self.path.as_bytes(), b" HTTP/1.1\r\n"].concat();
        let host = (b"Host".to_vec(), self.host.clone());
        let automatic_host = (!self.has("host")).then_some(&host);
        for (name, value) in automatic_host.into_iter().chain(&self.headers) {
            out.extend([name.as_slice(), b": ", value, b"\r\n"].concat());
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
        out.extend(self.body.iter().flatten());
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
    stream: Option<(TcpStream, ResponseReader)>,
    connects: u64,
}

impl Connection {
    pub fn open(addr: SocketAddr) -> io::Result<Connection> {
        let mut c = Connection { addr, stream: None, connects: 0 };
        c.ensure()?;
        Ok(c)
    }

    fn ensure(&mut self) -> io::Result<&mut (TcpStream, ResponseReader)> {
        if self.stream.is_none() {
            let s = connect(self.addr, DEFAULT_TIMEOUT)?;
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
        // After an error, or an answer that ends the connection, the next request reconnects.
        if !matches!(result, Ok((_, true))) {
            self.close();
        }
        result.map(|(response, _)| response)
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let e = ClientRequest::post("/t").header("Connection", "keep-alive");
        let keep_alive = b"POST /t HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(e.to_bytes(), keep_alive.to_vec());
    }
}
