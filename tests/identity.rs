//! Job 2 end to end: trusted identity headers become impersonation headers; everything doubtful
//! is refused before the upstream sees it.

mod common;

use common::*;
use harness::ClientRequest;

const OAUTH2_PROXY: &str = r#"{"identity":{"preset":"oauth2-proxy"}}"#;

fn alice() -> ClientRequest {
    ClientRequest::get("/api/namespaces")
        .header("X-Forwarded-User", "alice")
        .header("X-Forwarded-Groups", "dev, ops,,dev,qa ")
        .header("X-Forwarded-Email", "alice@example.com")
}

#[test]
fn maps_oauth2_proxy_identity_exactly() {
    let (upstream, envoy) = envoy_with(OAUTH2_PROXY, 1);
    let request = alice()
        .header("Impersonate-User", "system:admin")
        .header("impersonate-group", "system:masters")
        .header("Authorization", "Bearer from-oauth2-proxy");
    let response = send(&envoy, &request);
    assert_eq!(response.status, 200, "{}", response.text());

    let seen = upstream.last().expect("upstream got the request");
    assert_eq!(
        impersonation_headers(&seen),
        vec![
            ("impersonate-user".to_string(), "alice".to_string()),
            ("impersonate-group".to_string(), "dev".to_string()),
            ("impersonate-group".to_string(), "ops".to_string()),
            ("impersonate-group".to_string(), "qa".to_string()),
            ("impersonate-extra-email".to_string(), "alice@example.com".to_string()),
        ]
    );
    // Map-identity mode keeps the Authorization the authenticating proxy sent.
    assert_eq!(text_values(&seen, "authorization"), vec!["Bearer from-oauth2-proxy"]);
    // The source identity headers are removed after mapping.
    for name in ["x-forwarded-user", "x-forwarded-groups", "x-forwarded-email"] {
        assert!(values(&seen, name).is_empty(), "{name} reached the upstream");
    }
    assert_eq!(wait_stat(&envoy, "forwarded_total", 1), 1);
    assert_eq!(stat(&envoy, "impersonation_headers_stripped_total"), 2);
}

#[test]
fn prefixes_static_groups_uid_extras_and_kept_sources() {
    let config = r#"{"identity":{"user_header":"x-user","groups_header":"x-groups","groups_separator":";",
        "uid_header":"x-uid","extra_headers":{"acme.com/Team":"x-team","scopes":"x-scopes"},
        "user_prefix":"oidc:","group_prefix":"oidc:","static_groups":["kiali-viewers"],
        "remove_identity_headers":false}}"#;
    let (upstream, envoy) = envoy_with(config, 1);
    let request = ClientRequest::get("/")
        .header("x-user", "bob")
        .header("x-groups", "a;b")
        .header("x-groups", "c;a")
        .header("x-uid", "42")
        .header("x-team", "blue")
        .header("x-scopes", "read")
        .header("x-scopes", "write");
    assert_eq!(send(&envoy, &request).status, 200);
    let seen = upstream.last().unwrap();
    assert_eq!(
        impersonation_headers(&seen),
        vec![
            ("impersonate-user".to_string(), "oidc:bob".to_string()),
            ("impersonate-group".to_string(), "oidc:a".to_string()),
            ("impersonate-group".to_string(), "oidc:b".to_string()),
            ("impersonate-group".to_string(), "oidc:c".to_string()),
            ("impersonate-group".to_string(), "kiali-viewers".to_string()),
            ("impersonate-uid".to_string(), "42".to_string()),
            // The API server lowercases and percent-decodes the key: acme.com/team.
            ("impersonate-extra-acme.com%2fteam".to_string(), "blue".to_string()),
            ("impersonate-extra-scopes".to_string(), "read".to_string()),
            ("impersonate-extra-scopes".to_string(), "write".to_string()),
        ]
    );
    let extra_name = seen
        .headers
        .iter()
        .find(|(n, _)| n.to_ascii_lowercase().starts_with(b"impersonate-extra-acme"))
        .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
        .unwrap();
    assert_eq!(
        kiali_header_auth::extra_key::decode_extra_key_like_apiserver(&extra_name["impersonate-extra-".len()..]).as_deref(),
        Some("acme.com/team")
    );
    assert_eq!(text_values(&seen, "x-user"), vec!["bob"]);
}

#[test]
fn auth_request_and_authentik_presets() {
    let (upstream, envoy) = envoy_with(r#"{"identity":{"preset":"oauth2-proxy-auth-request"}}"#, 1);
    let request = ClientRequest::get("/")
        .header("X-Auth-Request-User", "carol")
        .header("X-Auth-Request-Groups", "g1,g2")
        .header("X-Auth-Request-Email", "carol@example.com");
    assert_eq!(send(&envoy, &request).status, 200);
    assert_eq!(
        impersonation_headers(&upstream.last().unwrap()),
        vec![
            ("impersonate-user".to_string(), "carol".to_string()),
            ("impersonate-group".to_string(), "g1".to_string()),
            ("impersonate-group".to_string(), "g2".to_string()),
            ("impersonate-extra-email".to_string(), "carol@example.com".to_string()),
        ]
    );
    drop(envoy);

    let (upstream, envoy) = envoy_with(r#"{"identity":{"preset":"authentik"}}"#, 1);
    let request = ClientRequest::get("/")
        .header("X-authentik-username", "dave")
        .header("X-authentik-groups", "admins|devs")
        .header("X-authentik-uid", "c0ffee");
    assert_eq!(send(&envoy, &request).status, 200);
    assert_eq!(
        impersonation_headers(&upstream.last().unwrap()),
        vec![
            ("impersonate-user".to_string(), "dave".to_string()),
            ("impersonate-group".to_string(), "admins".to_string()),
            ("impersonate-group".to_string(), "devs".to_string()),
            ("impersonate-uid".to_string(), "c0ffee".to_string()),
        ]
    );
}

#[test]
fn refusals_never_reach_the_upstream() {
    let (upstream, envoy) = envoy_with(
        r#"{"identity":{"preset":"oauth2-proxy","max_groups":5}}"#,
        2,
    );
    let long = "a".repeat(1025);
    let cases: Vec<(ClientRequest, u16, &str)> = vec![
        (ClientRequest::get("/"), 401, "identity_missing"),
        (ClientRequest::get("/").header("X-Forwarded-User", ""), 401, "identity_missing"),
        (
            ClientRequest::get("/").header("Impersonate-User", "alice"),
            401,
            "identity_missing",
        ),
        (
            ClientRequest::get("/").header("X-Forwarded-User", "system:admin"),
            403,
            "identity_forbidden",
        ),
        (
            ClientRequest::get("/").header("X-Forwarded-User", "System:serviceaccount:kube-system:default"),
            403,
            "identity_forbidden",
        ),
        (
            ClientRequest::get("/")
                .header("X-Forwarded-User", "alice")
                .header("X-Forwarded-Groups", "dev,system:masters"),
            403,
            "identity_forbidden",
        ),
        (
            ClientRequest::get("/")
                .header("X-Forwarded-User", "alice")
                .header("X-Forwarded-User", "bob"),
            400,
            "identity_malformed",
        ),
        (
            ClientRequest::get("/").header("X-Forwarded-User", [b'a', 0xc3, 0x28]),
            400,
            "identity_malformed",
        ),
        (
            ClientRequest::get("/").header("X-Forwarded-User", long.as_str()),
            400,
            "identity_malformed",
        ),
        (
            ClientRequest::get("/")
                .header("X-Forwarded-User", "alice")
                .header("X-Forwarded-Groups", "a,b,c,d,e,f"),
            400,
            "identity_malformed",
        ),
        (
            ClientRequest::get("/")
                .header("X-Forwarded-User", "alice")
                .header("X-Forwarded-Email", [0xffu8, 0xfe]),
            400,
            "identity_malformed",
        ),
    ];
    let total = cases.len() as u64;
    for (request, status, reason) in &cases {
        let response = send(&envoy, request);
        assert_refused(&response, *status, reason);
        assert_eq!(
            response.header("x-kiali-header-auth-reason").as_deref(),
            Some(*reason)
        );
    }
    assert_eq!(upstream.count(), 0, "a refused request reached the upstream");
    // A clean request still passes afterwards, on every worker.
    for _ in 0..4 {
        assert_eq!(send(&envoy, &alice()).status, 200);
    }
    assert_eq!(upstream.count(), 4);
    assert_eq!(wait_stat(&envoy, "refused.identity_missing", 3), 3);
    assert_eq!(wait_stat(&envoy, "refused.identity_forbidden", 3), 3);
    assert_eq!(wait_stat(&envoy, "refused.identity_malformed", 5), 5);
    assert_eq!(wait_stat(&envoy, "requests_total", total + 4), total + 4);
}

#[test]
fn five_group_limit_passes_exactly() {
    let (upstream, envoy) = envoy_with(r#"{"identity":{"preset":"oauth2-proxy","max_groups":5}}"#, 1);
    let request = ClientRequest::get("/")
        .header("X-Forwarded-User", "alice")
        .header("X-Forwarded-Groups", "a,b,c,d,e,a");
    assert_eq!(send(&envoy, &request).status, 200);
    assert_eq!(values(&upstream.last().unwrap(), "impersonate-group").len(), 5);
}

#[test]
fn trusted_peers_by_source_address() {
    let (upstream, envoy) = envoy_with(
        r#"{"identity":{"preset":"oauth2-proxy"},"trusted_peers":{"source_cidrs":["127.0.0.0/8"]}}"#,
        1,
    );
    assert_eq!(send(&envoy, &alice()).status, 200);
    assert_eq!(upstream.count(), 1);
    drop(envoy);

    let (upstream, envoy) = envoy_with(
        r#"{"identity":{"preset":"oauth2-proxy"},"trusted_peers":{"source_cidrs":["10.0.0.0/8"],
            "principals":["spiffe://cluster.local/ns/auth/sa/oauth2-proxy"]}}"#,
        1,
    );
    let response = send(&envoy, &alice());
    assert_refused(&response, 403, "untrusted_peer");
    assert_eq!(upstream.count(), 0);
    assert_eq!(wait_stat(&envoy, "refused.untrusted_peer", 1), 1);
}

#[test]
fn access_log_shows_the_impersonated_user() {
    let log_wait = std::time::Duration::from_secs(10);
    // By default the access log reads the user from the request header the filter set; no filter
    // state is set (it costs a host call per request).
    let upstream = harness::EchoUpstream::start();
    let config = harness::EnvoyConfig::proxy(upstream.addr())
        .access_log(true)
        .filter(wasm_filter(OAUTH2_PROXY));
    let envoy = harness::Envoy::start(&config);
    assert_eq!(send(&envoy, &alice().header("Impersonate-User", "admin")).status, 200);
    assert_eq!(text_values(&upstream.last().unwrap(), "impersonate-user"), vec!["alice"]);
    // A refused request never shows the user the client chose.
    let spoofed = ClientRequest::get("/nobody").header("Impersonate-User", "admin");
    assert_refused(&send(&envoy, &spoofed), 401, "identity_missing");
    assert!(
        envoy.wait_for_log("ACCESS GET /api/namespaces 200 user=alice state=-", log_wait),
        "{}",
        envoy.log()
    );
    assert!(envoy.wait_for_log("ACCESS GET /nobody 401 user=- state=-", log_wait), "{}", envoy.log());
    drop(envoy);

    // Asked for in the configuration, the filter state carries the user too.
    let with_state = r#"{"identity":{"preset":"oauth2-proxy"},"access_log_filter_state":true}"#;
    let config = harness::EnvoyConfig::proxy(upstream.addr())
        .access_log(true)
        .filter(wasm_filter(with_state));
    let envoy = harness::Envoy::start(&config);
    assert_eq!(send(&envoy, &alice()).status, 200);
    assert!(
        envoy.wait_for_log("ACCESS GET /api/namespaces 200 user=alice state=alice", log_wait),
        "{with_state}\n{}",
        envoy.log()
    );
}
