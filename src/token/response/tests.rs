use super::*;
use crate::config::TokenSourceKind;

fn k8s() -> TokenSourceKind {
    TokenSourceKind::KubernetesTokenRequest {
        namespace: "n".into(),
        service_account: "s".into(),
        audiences: vec![],
        expiration_seconds: 600,
        credential_env: None,
    }
}

fn oauth2() -> TokenSourceKind {
    TokenSourceKind::OAuth2ClientCredentials {
        token_path: "/t".into(),
        client_id: "c".into(),
        client_secret_env: "S".into(),
        scope: None,
        audience: None,
    }
}

// 2026-11-24T10:00:00Z
const NOW_MS: u64 = 1_795_514_400_000;

#[test]
fn rfc3339_parsing() {
    assert_eq!(parse_rfc3339_ms("2026-11-24T10:00:00Z"), Some(NOW_MS));
    assert_eq!(parse_rfc3339_ms("2026-11-24T10:00:00.250Z"), Some(NOW_MS + 250));
    assert_eq!(parse_rfc3339_ms("2026-11-24T11:00:00+01:00"), Some(NOW_MS));
    assert_eq!(parse_rfc3339_ms("2026-11-24T09:30:00-00:30"), Some(NOW_MS));
    assert_eq!(parse_rfc3339_ms("yesterday"), None);
    assert_eq!(parse_rfc3339_ms("2026-11-24T10:00:00+25:00"), None);
    assert_eq!(parse_rfc3339_ms(""), None);
    assert_eq!(parse_rfc3339_ms("ü-11-24T10:00:00"), None);
}

#[test]
fn token_request_success_honours_returned_expiry() {
    let body = br#"{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1",
        "spec":{"expirationSeconds":600},
        "status":{"token":"abc.def","expirationTimestamp":"2026-11-24T10:00:03Z"}}"#;
    let token = parse(&k8s(), Some(201), body, NOW_MS).unwrap();
    assert_eq!(token.token, "abc.def");
    assert_eq!(token.expires_at_ms, NOW_MS + 3000);
    assert_eq!(token.expiry_source, ExpirySource::Response);
}

#[test]
fn token_request_without_expiry_falls_back_to_jwt_then_default() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let jwt = format!(
        "eyJhbGciOiJSUzI1NiJ9.{}.c2ln",
        URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{}}}"#, NOW_MS / 1000 + 60))
    );
    let body = format!(r#"{{"status":{{"token":"{jwt}"}}}}"#);
    let token = parse(&k8s(), Some(201), body.as_bytes(), NOW_MS).unwrap();
    assert_eq!(token.expires_at_ms, NOW_MS + 60_000);
    assert_eq!(token.expiry_source, ExpirySource::JwtClaim);

    let body = br#"{"status":{"token":"opaque","expirationTimestamp":"garbage"}}"#;
    let token = parse(&k8s(), Some(201), body, NOW_MS).unwrap();
    assert_eq!(token.expires_at_ms, NOW_MS + DEFAULT_LIFETIME_MS);
    assert_eq!(token.expiry_source, ExpirySource::Default);
}

#[test]
fn token_request_failures() {
    let status = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
        "message":"serviceaccounts \"x\" is forbidden","reason":"Forbidden","code":403}"#;
    let err = parse(&k8s(), Some(403), status, NOW_MS).unwrap_err();
    assert_eq!(err.failure, FetchFailure::HttpStatus);
    assert!(err.detail.contains("Forbidden") && err.detail.contains("403"), "{}", err.detail);

    let err = parse(&k8s(), Some(500), b"<html>", NOW_MS).unwrap_err();
    assert_eq!(err.failure, FetchFailure::HttpStatus);

    let err = parse(&k8s(), None, b"", NOW_MS).unwrap_err();
    assert_eq!(err.failure, FetchFailure::Transport);

    for body in [&b"{not json"[..], br#"{"status":{}}"#, br#"{"status":{"token":""}}"#, br#"{}"#, b""] {
        let err = parse(&k8s(), Some(201), body, NOW_MS).unwrap_err();
        assert_eq!(err.failure, FetchFailure::Malformed, "{body:?}");
    }

    let past = br#"{"status":{"token":"t","expirationTimestamp":"2026-11-24T09:00:00Z"}}"#;
    let err = parse(&k8s(), Some(201), past, NOW_MS).unwrap_err();
    assert_eq!(err.failure, FetchFailure::Expired);

    let bad_token = br#"{"status":{"token":"a b\r\nx","expirationTimestamp":"2026-11-24T11:00:00Z"}}"#;
    let err = parse(&k8s(), Some(201), bad_token, NOW_MS).unwrap_err();
    assert_eq!(err.failure, FetchFailure::Malformed);
}

#[test]
fn errors_never_contain_the_token() {
    let body = br#"{"status":{"token":"SECRET-TOKEN","expirationTimestamp":"2020-01-01T00:00:00Z"}}"#;
    let err = parse(&k8s(), Some(201), body, NOW_MS).unwrap_err();
    assert!(!err.detail.contains("SECRET-TOKEN"));
    let body = br#"{"access_token":"SECRET-TOKEN","expires_in":"x y"}"#;
    let ok = parse(&oauth2(), Some(200), body, NOW_MS).unwrap();
    assert_eq!(ok.expiry_source, ExpirySource::Default);
}

#[test]
fn oauth2_responses() {
    let ok = parse(&oauth2(), Some(200), br#"{"access_token":"tok","token_type":"Bearer","expires_in":300}"#, NOW_MS).unwrap();
    assert_eq!(ok.expires_at_ms, NOW_MS + 300_000);
    let ok = parse(&oauth2(), Some(200), br#"{"access_token":"tok","expires_in":"120"}"#, NOW_MS).unwrap();
    assert_eq!(ok.expires_at_ms, NOW_MS + 120_000);
    let err = parse(&oauth2(), Some(401), br#"{"error":"invalid_client"}"#, NOW_MS).unwrap_err();
    assert_eq!(err.failure, FetchFailure::HttpStatus);
    assert!(err.detail.contains("invalid_client"));
    let err = parse(&oauth2(), Some(200), br#"{"token_type":"Bearer"}"#, NOW_MS).unwrap_err();
    assert_eq!(err.failure, FetchFailure::Malformed);
}

#[test]
fn envoy_local_replies_are_transport_failures() {
    let body = b"upstream connect error or disconnect/reset before headers. reset reason: connection failure";
    for kind in [k8s(), oauth2()] {
        let err = parse(&kind, Some(503), body, NOW_MS).unwrap_err();
        assert_eq!(err.failure, FetchFailure::Transport);
        assert!(err.detail.contains("could not be reached"), "{}", err.detail);
        let err = parse(&kind, Some(504), b"upstream request timeout", NOW_MS).unwrap_err();
        assert_eq!(err.failure, FetchFailure::Transport);
    }
    let err = parse(&k8s(), Some(503), b"service unavailable", NOW_MS).unwrap_err();
    assert_eq!(err.failure, FetchFailure::HttpStatus);
}
