//! Job 1 end to end: client impersonation headers never reach the upstream (strip-only mode).

use crate::common;

use common::*;
use harness::ClientRequest;

const NON_UTF8: &[u8] = &[b'v', 0xc3, 0x28, 0xff, b'!'];

#[test]
fn drops_every_impersonation_header_and_keeps_everything_else() {
    let (upstream, envoy) = envoy_with("", 1);
    let request = ClientRequest::get("/api/namespaces?x=1")
        .header("Impersonate-User", "system:admin")
        .header("IMPERSONATE-GROUP", "system:masters")
        .header("IMPERSONATE-GROUP", "cluster-admins")
        .header("impersonate-uid", "0")
        .header("Impersonate-Extra-Scopes", "all")
        .header("iMpErSoNaTe-ExTrA-acme.com%2Fteam", "blue")
        .header("X-Non-Utf8", NON_UTF8)
        .header("Authorization", "Bearer users-own-oidc-token")
        .header("X-Forwarded-User", "alice")
        .header("Impersonation-Note", "not an impersonate- header");
    let response = send(&envoy, &request);
    assert_eq!(response.status, 200, "{}", response.text());

    let received = upstream.requests();
    assert_eq!(received.len(), 1);
    let seen = &received[0];
    assert!(
        impersonation_headers(seen).is_empty(),
        "upstream saw {:?}",
        impersonation_headers(seen)
    );
    assert_eq!(values(seen, "x-non-utf8"), vec![NON_UTF8.to_vec()]);
    // Strip-only mode leaves the user's own token and every other header alone.
    assert_eq!(text_values(seen, "authorization"), vec!["Bearer users-own-oidc-token"]);
    assert_eq!(text_values(seen, "x-forwarded-user"), vec!["alice"]);
    assert_eq!(text_values(seen, "impersonation-note"), vec!["not an impersonate- header"]);
    assert_eq!(seen.path, "/api/namespaces?x=1");

    // Envoy and the VM keep serving after the non-UTF-8 value.
    for _ in 0..5 {
        let again = send(
            &envoy,
            &ClientRequest::get("/again").header("impersonate-user", "x").header("x-bytes", [0x80u8, 0xfe]),
        );
        assert_eq!(again.status, 200);
    }
    assert_eq!(upstream.count(), 6);
    assert!(upstream.requests().iter().all(|r| impersonation_headers(r).is_empty()));

    assert_eq!(wait_stat(&envoy, "requests_total", 6), 6);
    assert_eq!(wait_stat(&envoy, "impersonation_headers_stripped_total", 11), 11);
    assert_eq!(stat(&envoy, "requests_with_impersonation_headers_total"), 6);
    assert_eq!(stat(&envoy, "forwarded_total"), 6);
}

#[test]
fn many_copies_and_a_request_without_any() {
    let (upstream, envoy) = envoy_with("{}", 2);
    // Envoy refuses more than 100 header lines by default (431); 90 copies stay under it.
    let mut request = ClientRequest::get("/many");
    for index in 0..90 {
        request = request.header("Impersonate-Group", format!("g{index}"));
    }
    let response = send(&envoy, &request);
    assert_eq!(response.status, 200);
    let clean = send(&envoy, &ClientRequest::get("/clean").header("x-a", "b"));
    assert_eq!(clean.status, 200);
    let received = upstream.requests();
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(|r| impersonation_headers(r).is_empty()));
    assert_eq!(text_values(&received[1], "x-a"), vec!["b"]);
    assert_eq!(wait_stat(&envoy, "impersonation_headers_stripped_total", 90), 90);
}
