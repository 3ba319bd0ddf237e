//! A tiny threaded HTTP/1.1 server used by the stand-ins.
//!
//! Binds 127.0.0.1, one thread per connection (at most [`MAX_CONNECTIONS`]), bounded
//! keep-alive loops, 30 s read timeout. Dropping the server sets a stop flag, pokes the
//! listener, shuts every open connection down and joins all threads.

use crate::http1::{self, Reader, RawRequest};
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Maximum number of simultaneously open connections per server.
pub const MAX_CONNECTIONS: usize = 512;
/// Read timeout on server connections.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What a handler wants done with a request.
#[derive(Debug)]
pub enum Reply {
    Respond {
        status: u16,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
    },
    /// Close the connection without answering.
    Close,
}

impl Reply {
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply::Respond {
            status,
            headers: vec![("content-type".into(), b"application/json".to_vec())],
            body: serde_json::to_vec(value).unwrap_or_default(),
        }
    }
}

/// Handler: request and the server's stop flag (for handlers that wait).
pub type Handler = Arc<dyn Fn(&RawRequest, &AtomicBool) -> Reply + Send + Sync>;

#[derive(Default)]
struct Conns {
    streams: Vec<(u64, TcpStream)>,
    threads: Vec<JoinHandle<()>>,
}

pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Conns>>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `127.0.0.1:port` (0 for any free port) and starts serving.
    pub fn start(port: u16, handler: Handler) -> io::Result<Server> {
        Self::start_at(SocketAddr::from(([127, 0, 0, 1], port)), handler)
    }

    /// Binds `addr`; only the docker-compose stand-ins bind anything but 127.0.0.1.
    pub fn start_at(addr: SocketAddr, handler: Handler) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Conns>> = Arc::default();
        let accept = {
            let stop = stop.clone();
            let conns = conns.clone();
            std::thread::Builder::new()
                .name(format!("http-accept-{}", addr.port()))
                .spawn(move || accept_loop(listener, stop, conns, handler))?
        };
        Ok(Server { addr, stop, conns, accept: Some(accept) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stop_flag(&self) -> &Arc<AtomicBool> {
        &self.stop
    }

    /// Number of currently open connections.
    pub fn open_connections(&self) -> usize {
        lock(&self.conns).streams.len()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn accept_loop(listener: TcpListener, stop: Arc<AtomicBool>, conns: Arc<Mutex<Conns>>, handler: Handler) {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    while !stop.load(Ordering::SeqCst) {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let mut c = lock(&conns);
        c.threads.retain(|t| !t.is_finished());
        if c.streams.len() >= MAX_CONNECTIONS {
            drop(c);
            let _ = stream.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(clone) = stream.try_clone() else { continue };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        c.streams.push((id, clone));
        let (stop2, conns2, handler2) = (stop.clone(), conns.clone(), handler.clone());
        let spawned = std::thread::Builder::new().name("http-conn".into()).spawn(move || {
            serve_connection(stream, &stop2, &handler2);
            lock(&conns2).streams.retain(|(i, _)| *i != id);
        });
        match spawned {
            Ok(t) => c.threads.push(t),
            Err(_) => {
                if let Some(pos) = c.streams.iter().position(|(i, _)| *i == id) {
                    let (_, s) = c.streams.remove(pos);
                    let _ = s.shutdown(Shutdown::Both);
                }
            }
        }
    }
}

fn serve_connection(stream: TcpStream, stop: &AtomicBool, handler: &Handler) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = Reader::new(stream);
    for served in 1..=http1::MAX_REQUESTS_PER_CONNECTION {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let head = match reader.read_head(http1::MAX_HEAD) {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(e) => {
                if e.kind() == io::ErrorKind::InvalidData {
                    let _ = http1::write_response(&mut writer, 400, &[], b"bad request\n", true);
                }
                break;
            }
        };
        let head = match http1::parse_request_head(&head) {
            Ok(h) => h,
            Err(_) => {
                let _ = http1::write_response(&mut writer, 400, &[], b"bad request\n", true);
                break;
            }
        };
        if head.expect_continue && writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
            break;
        }
        let body = match http1::read_request_body(&mut reader, &head, http1::MAX_BODY) {
            Ok(b) => b,
            Err(e) => {
                if e.kind() == io::ErrorKind::InvalidData {
                    let _ = http1::write_response(&mut writer, 413, &[], b"bad or oversized body\n", true);
                }
                break;
            }
        };
        let req = RawRequest {
            method: head.method,
            path: head.path,
            headers: head.headers,
            body,
            received_at: std::time::SystemTime::now(),
        };
        let reply = catch_unwind(AssertUnwindSafe(|| handler(&req, stop))).unwrap_or(Reply::Respond {
            status: 500,
            headers: vec![],
            body: b"handler panicked\n".to_vec(),
        });
        if stop.load(Ordering::SeqCst) {
            break;
        }
        match reply {
            Reply::Close => break,
            Reply::Respond { status, headers, body } => {
                // The last response a connection may carry says so: a silent close after it races
                // with the client's next request on the connection (Envoy answers that one 503).
                let close = !head.keep_alive || served == http1::MAX_REQUESTS_PER_CONNECTION;
                if http1::write_response(&mut writer, status, &headers, &body, close).is_err() || close {
                    break;
                }
            }
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Poke the blocking accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let threads = {
            let mut c = lock(&self.conns);
            for (_, s) in &c.streams {
                let _ = s.shutdown(Shutdown::Both);
            }
            std::mem::take(&mut c.threads)
        };
        for t in threads {
            let _ = t.join();
        }
    }
}

/// Sleeps up to `total`, in small steps, returning early (false) if `stop` is set or
/// `keep_going` returns false. Returns true if the full time elapsed.
pub fn interruptible_sleep(total: Duration, stop: &AtomicBool, keep_going: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + total;
    loop {
        if stop.load(Ordering::SeqCst) || !keep_going() {
            return false;
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(10)));
    }
}
