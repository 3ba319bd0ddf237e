//! `EchoUpstream`: stand-in for Kiali. Records every request and echoes it back as JSON.

use crate::message::RawRequest;
use crate::server::{Reply, Server};
use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

type Watchers = Arc<Mutex<Vec<Sender<RawRequest>>>>;

pub struct EchoUpstream {
    // Declared first so it is dropped (threads joined) before the recording.
    server: Server,
    requests: Arc<Mutex<Vec<RawRequest>>>,
    keep_at_most: Arc<AtomicUsize>,
    watchers: Watchers,
}

/// The JSON body the upstream answers with for `req`:
/// `{"method":..,"path":..,"headers":[[name, value],...]}` (keys in that order; names as
/// received, i.e. lowercase; values lossily decoded as UTF-8).
pub fn echo_body(req: &RawRequest) -> Vec<u8> {
    // A struct, so that serde writes the keys in this order.
    #[derive(serde::Serialize)]
    struct Echo<'a> {
        method: &'a str,
        path: &'a str,
        headers: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    }
    let headers = req.headers.iter().map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v)));
    let echo = Echo { method: &req.method, path: &req.path, headers: headers.collect() };
    serde_json::to_vec(&echo).unwrap_or_default()
}

impl EchoUpstream {
    /// Starts on a free port of 127.0.0.1. Panics if it cannot bind.
    pub fn start() -> EchoUpstream {
        Self::start_at(([127, 0, 0, 1], 0)).expect("start EchoUpstream")
    }

    /// Starts on `addr`, such as `([127, 0, 0, 1], port)` (the docker-compose stand-ins bind 0.0.0.0).
    pub fn start_at(addr: impl Into<SocketAddr>) -> io::Result<EchoUpstream> {
        let requests: Arc<Mutex<Vec<RawRequest>>> = Arc::default();
        let keep_at_most = Arc::new(AtomicUsize::new(usize::MAX));
        let watchers: Watchers = Arc::default();
        let (rec, limit, watching) = (requests.clone(), keep_at_most.clone(), watchers.clone());
        let server = Server::start_at(
            addr,
            Arc::new(move |req: RawRequest| {
                let reply = Reply::Respond {
                    status: 200,
                    headers: vec![("content-type".into(), b"application/json".to_vec())],
                    body: echo_body(&req),
                };
                watching.lock().unwrap_or_else(|e| e.into_inner()).retain(|w| w.send(req.clone()).is_ok());
                let mut recorded = rec.lock().unwrap_or_else(|e| e.into_inner());
                recorded.push(req);
                let limit = limit.load(Ordering::Relaxed);
                if recorded.len() > limit {
                    // Drop the oldest half at once, so trimming stays cheap under load.
                    let excess = recorded.len() - limit / 2;
                    recorded.drain(..excess);
                }
                Box::pin(std::future::ready(reply))
            }),
        )?;
        Ok(EchoUpstream { server, requests, keep_at_most, watchers })
    }

    /// Every request received from now on is also sent to `watcher` (the demo prints them).
    pub fn watch(&self, watcher: Sender<RawRequest>) {
        self.watchers.lock().unwrap_or_else(|e| e.into_inner()).push(watcher);
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Bounds the recording for long-running stand-ins (`make run`, docker-compose): beyond
    /// `limit` requests the oldest are forgotten. Tests keep everything (the default).
    pub fn keep_at_most(&self, limit: usize) {
        self.keep_at_most.store(limit.max(2), Ordering::Relaxed);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RawRequest> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The most recent request, if any.
    pub fn last(&self) -> Option<RawRequest> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).last().cloned()
    }

    pub fn clear(&self) {
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use crate::client::{self, ClientRequest, Connection};
    use std::time::Duration;

    #[test]
    fn echoes_and_records_raw_headers_on_one_connection() {
        let up = EchoUpstream::start();
        let mut connection = Connection::open(up.addr()).unwrap();
        let request = ClientRequest::post("/api/x?y=1")
            .header("Impersonate-Group", "a")
            .header("IMPERSONATE-GROUP", "b")
            .header("X-Bin", [0xC3u8, 0x28, 0xFF])
            .body("{}");
        for _ in 0..3 {
            let response = connection.send(&request);
            assert_eq!(response.header("content-type").as_deref(), Some("application/json"));
            let echoed = response.text();
            let start = r#"{"method":"POST","path":"/api/x?y=1","headers":[["host","localhost"],"#;
            assert!(echoed.starts_with(start), "{echoed}");
            let v = response.json();
            assert_eq!(v["headers"][1], json!(["impersonate-group", "a"]));
            assert_eq!(v["headers"][2], json!(["impersonate-group", "b"]));
            assert_eq!(v["headers"][3][1], "\u{FFFD}(\u{FFFD}");
        }
        assert_eq!(connection.connects(), 1);
        let last = up.last().unwrap();
        assert_eq!(last.headers_named("impersonate-group"), vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!((last.header("x-bin").unwrap(), last.body), (vec![0xC3, 0x28, 0xFF], b"{}".to_vec()));
        // Garbage gets hyper's 400 and a close, and the server keeps serving.
        let raw = client::send_raw(up.addr(), b"\x00\x01garbage\r\n\r\n", Duration::from_secs(5)).unwrap();
        assert!(raw.starts_with(b"HTTP/1.1 400"), "{:?}", String::from_utf8_lossy(&raw));
        assert_eq!(client::get(up.addr(), "/after").unwrap().status, 200);
        assert_eq!(up.count(), 4);
        up.clear();
        assert_eq!(up.count(), 0);
    }

    #[test]
    fn recording_can_be_bounded() {
        let up = EchoUpstream::start();
        up.keep_at_most(10);
        let mut connection = Connection::open(up.addr()).unwrap();
        for index in 0..25 {
            assert_eq!(connection.send(&ClientRequest::get(&format!("/{index}"))).status, 200);
        }
        let kept = up.requests();
        assert!(kept.len() <= 10 && kept.len() >= 5, "{}", kept.len());
        assert_eq!(kept.last().unwrap().path, "/24");
    }
}
