//! Hostile input through a real Envoy, over HTTP/1.1 and HTTP/2: every case asserts what the
//! upstream received (or that it received nothing) and what the client got back.

use crate::common;

use std::os::unix::ffi::OsStrExt;
use std::process::Command;

use common::*;
use harness::{ClientRequest, EchoUpstream, Envoy};

const OAUTH2_PROXY: &str = r#"{"identity":{"preset":"oauth2-proxy"}}"#;

/// Every letter-case variant of `name` that `mask` selects (bit i uppercases letter i).
fn cased(name: &str, mask: u32) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| if mask >> (i % 32) & 1 == 1 { c.to_ascii_uppercase() } else { c })
        .collect()
}

#[test]
fn impersonation_headers_in_every_letter_case_and_many_copies() {
    let (upstream, envoy) = envoy_with(OAUTH2_PROXY, 2);
    let names = ["impersonate-user", "impersonate-group", "impersonate-uid", "impersonate-extra-scopes"];
    let mut request = ClientRequest::get("/").header("X-Forwarded-User", "alice");
    let mut sent = 0;
    for (index, name) in names.iter().enumerate() {
        for variant in 0..20u32 {
            let mask = variant.wrapping_mul(2_654_435_761) ^ (index as u32 * 77);
            request = request.header(cased(name, mask), format!("system:masters-{variant}"));
            sent += 1;
        }
    }
    let response = send(&envoy, &request);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        impersonation_headers(&upstream.last().unwrap()),
        vec![("impersonate-user".to_string(), "alice".to_string())]
    );
    assert_eq!(wait_stat(&envoy, "impersonation_headers_stripped_total", sent), sent);
}

#[test]
fn large_values() {
    let (upstream, envoy) = envoy_with(OAUTH2_PROXY, 1);
    let big_user = "u".repeat(8 * 1024);
    assert_refused(
        &send(&envoy, &ClientRequest::get("/").header("X-Forwarded-User", big_user.as_str())),
        400,
        "identity_malformed",
    );
    let big_group = "g".repeat(9 * 1024);
    assert_refused(
        &send(
            &envoy,
            &ClientRequest::get("/").header("X-Forwarded-User", "alice").header("X-Forwarded-Groups", big_group.as_str()),
        ),
        400,
        "identity_malformed",
    );
    assert_eq!(upstream.count(), 0);

    // Eight groups of 1000 bytes (8 KB in one header) are fine; so is an unrelated 20 KB header,
    // and a 16 KB spoofed extra is simply dropped.
    let groups: Vec<String> = (0..8).map(|i| format!("{i}{}", "x".repeat(999))).collect();
    let unrelated = vec![b'z'; 20 * 1024];
    let request = ClientRequest::get("/")
        .header("X-Forwarded-User", "alice")
        .header("X-Forwarded-Groups", groups.join(","))
        .header("X-Unrelated", unrelated.clone())
        .header("Impersonate-Extra-Huge", "h".repeat(16 * 1024));
    let response = send(&envoy, &request);
    assert_eq!(response.status, 200);
    let seen = upstream.last().unwrap();
    assert_eq!(text_values(&seen, "impersonate-group"), groups);
    assert_eq!(values(&seen, "x-unrelated"), vec![unrelated]);
    assert!(values(&seen, "impersonate-extra-huge").is_empty());
}

#[test]
fn hostile_group_lists() {
    let (upstream, envoy) = envoy_with(OAUTH2_PROXY, 1);
    let ok = |groups: &[u8]| {
        ClientRequest::get("/").header("X-Forwarded-User", "alice").header("X-Forwarded-Groups", groups)
    };
    assert_eq!(send(&envoy, &ok(" a , b ,, ,c,a".as_bytes())).status, 200);
    assert_eq!(text_values(&upstream.last().unwrap(), "impersonate-group"), vec!["a", "b", "c"]);
    assert_eq!(send(&envoy, &ok("équipe,团队, 🚀".as_bytes())).status, 200);
    assert_eq!(
        text_values(&upstream.last().unwrap(), "impersonate-group"),
        vec!["équipe", "团队", "🚀"]
    );
    assert_eq!(send(&envoy, &ok(b",,,")).status, 200);
    assert!(values(&upstream.last().unwrap(), "impersonate-group").is_empty());
    let count = upstream.count();
    assert_refused(&send(&envoy, &ok(b"dev,system:nodes")), 403, "identity_forbidden");
    assert_refused(&send(&envoy, &ok(b"dev, SYSTEM:MASTERS")), 403, "identity_forbidden");
    assert_refused(&send(&envoy, &ok(b"dev\tops")), 400, "identity_malformed");
    assert_refused(&send(&envoy, &ok(&[b'd', 0xff, b'v'])), 400, "identity_malformed");
    assert_eq!(upstream.count(), count, "refused requests reached the upstream");
}

struct CurlResponse {
    status: u16,
    body: String,
    http_version: String,
}

/// Sends a request with curl over HTTP/2 (prior knowledge, h2c), headers as raw bytes.
fn curl_h2(envoy: &Envoy, headers: &[(&str, &[u8])]) -> CurlResponse {
    let mut command = Command::new("curl");
    command.args(["-s", "--http2-prior-knowledge", "-o", "-", "-w", "\n%{http_code} %{http_version}"]);
    for (name, value) in headers {
        let mut header = format!("{name}: ").into_bytes();
        header.extend_from_slice(value);
        command.arg("-H").arg(std::ffi::OsStr::from_bytes(&header));
    }
    command.arg(format!("http://{}/api/namespaces", envoy.addr()));
    let output = command.output().expect("curl (make test installs it)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, trailer) = text.rsplit_once('\n').unwrap_or(("", &text));
    let mut parts = trailer.split_whitespace();
    CurlResponse {
        status: parts.next().and_then(|s| s.parse().ok()).unwrap_or(0),
        http_version: parts.next().unwrap_or("").to_string(),
        body: body.to_string(),
    }
}

#[test]
fn http2_clients_get_the_same_protection() {
    let (upstream, envoy) = envoy_with(OAUTH2_PROXY, 2);
    let response = curl_h2(
        &envoy,
        &[
            ("X-Forwarded-User", b"alice"),
            ("X-Forwarded-Groups", b"dev,ops"),
            ("Impersonate-User", b"system:admin"),
            ("IMPERSONATE-GROUP", b"system:masters"),
            ("impersonate-extra-x", b"y"),
            ("X-Bytes", &[0x80, 0xfe, b'o', b'k']),
        ],
    );
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.http_version, "2");
    let seen = upstream.last().unwrap();
    assert_eq!(
        impersonation_headers(&seen),
        vec![
            ("impersonate-user".to_string(), "alice".to_string()),
            ("impersonate-group".to_string(), "dev".to_string()),
            ("impersonate-group".to_string(), "ops".to_string()),
        ]
    );
    assert_eq!(values(&seen, "x-bytes"), vec![vec![0x80, 0xfe, b'o', b'k']]);

    let count = upstream.count();
    let duplicate = curl_h2(&envoy, &[("X-Forwarded-User", b"alice"), ("x-forwarded-user", b"bob")]);
    assert_eq!(duplicate.status, 400, "{}", duplicate.body);
    let body: serde_json::Value = serde_json::from_str(&duplicate.body).unwrap();
    assert_eq!(body["reason"], "identity_malformed");
    let missing = curl_h2(&envoy, &[("Impersonate-User", b"alice")]);
    assert_eq!(missing.status, 401);
    let non_utf8 = curl_h2(&envoy, &[("X-Forwarded-User", &[0xc3, 0x28])]);
    assert_eq!(non_utf8.status, 400);
    assert_eq!(upstream.count(), count);
}

#[test]
fn envoy_keeps_serving_after_a_storm_of_bad_requests() {
    let upstream = EchoUpstream::start();
    let config = harness::EnvoyConfig::proxy(upstream.addr())
        .concurrency(2)
        .filter(wasm_filter(OAUTH2_PROXY));
    let envoy = Envoy::start(&config);
    let mut refused = 0;
    for index in 0..300u32 {
        let bytes: Vec<u8> = (0..(index % 40)).map(|i| ((i * 37 + index) % 256) as u8).collect();
        let request = ClientRequest::get("/")
            .header("X-Forwarded-User", bytes.clone())
            .header("X-Forwarded-Groups", bytes.clone())
            .header(cased("impersonate-group", index), bytes);
        let response = send(&envoy, &request);
        assert!(matches!(response.status, 200 | 400 | 401 | 403), "{}", response.status);
        if response.status != 200 {
            refused += 1;
        }
    }
    assert!(refused > 0);
    for _ in 0..10 {
        assert_eq!(send(&envoy, &ClientRequest::get("/").header("X-Forwarded-User", "ok")).status, 200);
    }
    assert_eq!(upstream.count() as u64, 300 - refused + 10);
    assert!(upstream.requests().iter().all(|r| {
        impersonation_headers(r)
            .iter()
            .all(|(name, value)| name != "impersonate-group" || !value.to_ascii_lowercase().starts_with("system:"))
    }));
    assert!(!envoy.log().contains("panicked"), "a VM panicked:\n{}", envoy.log());
}
