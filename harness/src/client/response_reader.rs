//! Reads HTTP/1.1 responses from a connection with `httparse`: the head, then the body by
//! `Content-Length`, chunked coding or until the peer closes.

use crate::message::Response;
use std::io::{self, Read};
use std::net::TcpStream;

/// Largest response head the client accepts.
const MAX_HEAD: usize = 64 * 1024;
/// Largest response body the client accepts.
pub const MAX_BODY: usize = 16 * 1024 * 1024;
/// Most header lines in a response head.
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
pub struct ResponseReader<R = TcpStream> {
    stream: R,
    buf: Vec<u8>,
}

impl<R: Read> ResponseReader<R> {
    pub fn new(stream: R) -> Self {
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
    pub fn read(&mut self, head_request: bool) -> io::Result<(Response, bool)> {
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
}
