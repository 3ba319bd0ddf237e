//! Free TCP ports on 127.0.0.1.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static SET: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    SET.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A port that was free on 127.0.0.1 a moment ago and has not been handed out
/// before by this process.
///
/// Binding port 0 and dropping the listener is inherently racy against other
/// processes; callers that can bind themselves should bind `127.0.0.1:0` instead.
pub fn free_port() -> u16 {
    let mut set = handed_out().lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let listener = match TcpListener::bind(("127.0.0.1", 0)) {
            Ok(l) => l,
            Err(_) => continue,
        };
        let port = match listener.local_addr() {
            Ok(a) => a.port(),
            Err(_) => continue,
        };
        if set.insert(port) {
            return port;
        }
    }
    panic!("could not find a free port on 127.0.0.1");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bindable() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let unique: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len());
        assert!(ports.iter().all(|p| *p != 0));
        let l = TcpListener::bind(("127.0.0.1", ports[0])).expect("bind handed-out port");
        drop(l);
    }
}
