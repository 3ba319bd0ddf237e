//! The HTTP/1.1 server under the stand-ins: hyper's server on a current-thread tokio runtime
//! that runs on one std thread per server.
//!
//! Why hyper: it is the most used HTTP implementation in Rust, it hands header values over as
//! bytes (non-UTF-8 included) and keeps every line of a repeated header, which is what the
//! stand-ins must record. The handlers are `async` so that a token service told to hang or
//! to delay only parks its own request. Dropping the server stops the accept loop and drops
//! the runtime, which closes every open connection (a hanging request included).

use crate::message::RawRequest;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};
use tokio::sync::oneshot;

/// Largest request body a stand-in accepts; a larger one is answered with 413.
pub const MAX_BODY: usize = 1024 * 1024;
/// Most header lines a stand-in reads in one request (hyper's default is 100).
pub const MAX_HEADERS: usize = 1000;
/// How long a connection may take to send a request head.
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

pub type ReplyFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;
/// Handler: the whole request (body read) to the reply.
pub type Handler = Arc<dyn Fn(RawRequest) -> ReplyFuture + Send + Sync>;

pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` (port 0: any free port) and starts serving. Tests and the demo bind
    /// 127.0.0.1 (`([127, 0, 0, 1], port)`); only the docker-compose stand-ins bind elsewhere.
    pub fn start_at(addr: impl Into<SocketAddr>, handler: Handler) -> io::Result<Server> {
        let listener = std::net::TcpListener::bind(addr.into())?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("http-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(accept_loop(listener, handler, stopped));
                // Dropping the runtime drops every connection task, which closes its socket.
                drop(runtime);
            })?;
        Ok(Server { addr, stop: Some(stop), thread: Some(thread) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: std::net::TcpListener, handler: Handler, mut stopped: oneshot::Receiver<()>) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
    loop {
        let stream = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| respond(request, handler.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT)
                // Envoy forwards more header lines than it accepts (groups the filter adds).
                .max_headers(MAX_HEADERS)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Returned to hyper to close the connection without a response.
fn close_connection() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "stand-in closes the connection without answering")
}

async fn respond(request: hyper::Request<Incoming>, handler: Handler) -> io::Result<hyper::Response<Full<Bytes>>> {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(e) if e.is::<LengthLimitError>() => {
            return Ok(response(413, vec![], format!("request body larger than {MAX_BODY} bytes\n").into_bytes()));
        }
        // The peer closed or sent a malformed body: nobody to answer.
        Err(_) => return Err(close_connection()),
    };
    let recorded = RawRequest {
        method: parts.method.to_string(),
        path: parts.uri.to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().as_bytes().to_vec(), value.as_bytes().to_vec()))
            .collect(),
        body,
        received_at: SystemTime::now(),
    };
    match handler(recorded).await {
        Reply::Respond { status, headers, body } => Ok(response(status, headers, body)),
        Reply::Close => Err(close_connection()),
    }
}

fn response(status: u16, headers: Vec<(String, Vec<u8>)>, body: Vec<u8>) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in headers {
        // Handlers only set names and values they wrote themselves; a bad one is a harness bug.
        match (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(&value)) {
            (Ok(name), Ok(value)) => {
                response.headers_mut().append(name, value);
            }
            _ => panic!("stand-in reply header {name:?} is not a valid HTTP header"),
        }
    }
    response
}
