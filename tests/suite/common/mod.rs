//! Shared helpers for the end-to-end tests: each test starts its own Envoy with the built wasm.
#![allow(dead_code)]

pub mod chain;
pub mod mtls;
pub mod tokens;

use std::time::{Duration, Instant};

use harness::RawRequest;
use harness::{ClientRequest, EchoUpstream, Envoy, EnvoyConfig, Filter, Response};

pub const STAT: &str = "wasmcustom.kiali_header_auth.";

pub fn wasm_filter(plugin_config: &str) -> Filter {
    Filter::Wasm {
        plugin_config: plugin_config.to_string(),
        vm_env: Vec::new(),
        fail_open: false,
    }
}

/// Envoy with the filter in front of a fresh echo upstream.
pub fn envoy_with(plugin_config: &str, workers: u32) -> (EchoUpstream, Envoy) {
    let upstream = EchoUpstream::start();
    let config = EnvoyConfig::proxy(upstream.addr())
        .concurrency(workers)
        .filter(wasm_filter(plugin_config));
    let envoy = Envoy::start(&config);
    (upstream, envoy)
}

pub fn send(envoy: &Envoy, request: &ClientRequest) -> Response {
    harness::client::send(envoy.addr(), request).expect("request through Envoy")
}

/// Every value of `name` (case-insensitive) the upstream received, in order.
pub fn values(request: &RawRequest, name: &str) -> Vec<Vec<u8>> {
    request
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| v.clone())
        .collect()
}

pub fn text_values(request: &RawRequest, name: &str) -> Vec<String> {
    values(request, name)
        .into_iter()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .collect()
}

/// The bearer of the one `Authorization` line a forwarded request carries (fails the test on
/// none, several, or another scheme).
pub fn bearer_of(request: &RawRequest) -> String {
    let values = text_values(request, "authorization");
    assert_eq!(values.len(), 1, "exactly one Authorization: {values:?}");
    values[0]
        .strip_prefix("Bearer ")
        .unwrap_or_else(|| panic!("not a bearer: {}", values[0]))
        .to_string()
}

pub fn impersonation_headers(request: &RawRequest) -> Vec<(String, String)> {
    request
        .headers
        .iter()
        .filter(|(n, _)| n.to_ascii_lowercase().starts_with(b"impersonate-"))
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).to_ascii_lowercase(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

/// A filter stat's value. A stat Envoy does not report fails the test: a renamed metric must not
/// read as 0 and pass every `== 0` check (issue 22).
pub fn stat(envoy: &Envoy, name: &str) -> u64 {
    envoy
        .stat(&format!("{STAT}{name}"))
        .unwrap_or_else(|| panic!("Envoy reports no stat {STAT}{name}: {:?}", filter_stats(envoy)))
}

/// Waits until a filter stat reaches `min` (stats are flushed asynchronously by Envoy's workers).
pub fn wait_stat(envoy: &Envoy, name: &str, min: u64) -> u64 {
    envoy
        .wait_for_stat(&format!("{STAT}{name}"), min, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("stat {name} never reached {min}: {:?}", filter_stats(envoy)))
}

pub fn filter_stats(envoy: &Envoy) -> Vec<(String, u64)> {
    envoy
        .stats()
        .into_iter()
        .filter(|(k, _)| k.starts_with(STAT))
        .collect()
}

/// Asserts a refusal: status, JSON body with the stable reason, content type.
pub fn assert_refused(response: &Response, status: u16, reason: &str) {
    assert_eq!(response.status, status, "body: {}", response.text());
    assert_eq!(
        response.header("content-type").as_deref(),
        Some("application/json")
    );
    let body = response.json();
    assert_eq!(body["reason"], reason, "body: {body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "body: {body}"
    );
}

pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}
