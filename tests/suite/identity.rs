//! Job 2 end to end: trusted identity headers become impersonation headers; everything doubtful
//! is refused before the upstream sees it.

use crate::common;

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
        "uid_header":"x-uid","extra_headers":{"acme.com-Team":"x-team","scopes":"x-scopes"},
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
            // Kubernetes lowercases extra keys; the filter sends them lowercase.
            ("impersonate-extra-acme.com-team".to_string(), "blue".to_string()),
            ("impersonate-extra-scopes".to_string(), "read".to_string()),
            ("impersonate-extra-scopes".to_string(), "write".to_string()),
        ]
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

/// Envoy with `set_filter_state` recording the direct peer, then the filter, in front of a
/// fresh echo upstream; `use_remote_address` as given (None: Envoy's default, false).
fn envoy_with_direct_peer(plugin_config: &str, use_remote_address: Option<bool>) -> (harness::EchoUpstream, harness::Envoy) {
    let upstream = harness::EchoUpstream::start();
    let mut config = harness::EnvoyConfig::proxy(upstream.addr())
        .filter(harness::Filter::direct_peer())
        .add_filter(wasm_filter(plugin_config));
    if let Some(on) = use_remote_address {
        config = config.use_remote_address(on);
    }
    let envoy = harness::Envoy::start(&config);
    (upstream, envoy)
}

#[test]
fn trusted_peers_by_source_address() {
    let (upstream, envoy) = envoy_with_direct_peer(
        r#"{"identity":{"preset":"oauth2-proxy"},"trusted_peers":{"source_cidrs":["127.0.0.0/8"]}}"#,
        None,
    );
    assert_eq!(send(&envoy, &alice()).status, 200);
    assert_eq!(upstream.count(), 1);
    drop(envoy);

    let (upstream, envoy) = envoy_with_direct_peer(
        r#"{"identity":{"preset":"oauth2-proxy"},"trusted_peers":{"source_cidrs":["10.0.0.0/8"],
            "principals":["spiffe://cluster.local/ns/auth/sa/oauth2-proxy"]}}"#,
        None,
    );
    let response = send(&envoy, &alice());
    assert_refused(&response, 403, "untrusted_peer");
    assert_eq!(upstream.count(), 0);
    assert_eq!(wait_stat(&envoy, "refused.untrusted_peer", 1), 1);
}

/// Defect 1 of issue 19: with `use_remote_address: false` (Envoy's default) `source.address` is
/// the last `X-Forwarded-For` entry, which the client writes. The filter decides on the direct
/// TCP peer instead, under either setting and in both directions.
#[test]
fn a_forged_x_forwarded_for_never_moves_the_trusted_peer_decision() {
    for use_remote_address in [None, Some(false), Some(true)] {
        // The client (127.0.0.1) claims to come from inside the trusted range: refused.
        let (upstream, envoy) = envoy_with_direct_peer(
            r#"{"identity":{"preset":"oauth2-proxy"},"trusted_peers":{"source_cidrs":["10.0.0.0/8"]}}"#,
            use_remote_address,
        );
        let forged = alice().header("X-Forwarded-For", "10.1.2.3");
        assert_refused(&send(&envoy, &forged), 403, "untrusted_peer");
        let forged_list = alice().header("X-Forwarded-For", "192.0.2.1, 10.1.2.3");
        assert_refused(&send(&envoy, &forged_list), 403, "untrusted_peer");
        assert_eq!(upstream.count(), 0, "use_remote_address {use_remote_address:?}");
        drop(envoy);

        // A trusted proxy on 127.0.0.1 that appends the browser's address (as oauth2-proxy
        // does) stays trusted.
        let (upstream, envoy) = envoy_with_direct_peer(
            r#"{"identity":{"preset":"oauth2-proxy"},"trusted_peers":{"source_cidrs":["127.0.0.1"]}}"#,
            use_remote_address,
        );
        let appended = alice().header("X-Forwarded-For", "203.0.113.9");
        let response = send(&envoy, &appended);
        assert_eq!(response.status, 200, "use_remote_address {use_remote_address:?}: {}", response.text());
        assert_eq!(text_values(&upstream.last().unwrap(), "impersonate-user"), vec!["alice"]);
    }
}

/// Without the `set_filter_state` entry the filter cannot learn the direct peer: it refuses
/// rather than fall back to `source.address`.
#[test]
fn without_the_direct_peer_the_address_check_refuses() {
    let (upstream, envoy) =
        envoy_with(r#"{"identity":{"preset":"oauth2-proxy"},"trusted_peers":{"source_cidrs":["127.0.0.0/8"]}}"#, 1);
    let response = send(&envoy, &alice());
    assert_refused(&response, 403, "untrusted_peer");
    assert!(response.json()["error"].as_str().unwrap_or_default().contains("set_filter_state"), "{}", response.text());
    assert_eq!(upstream.count(), 0);

    let (upstream, envoy) = envoy_with(
        r#"{"identity":{"preset":"oauth2-proxy","audit_extras":{"client-address":"source_address"}}}"#,
        1,
    );
    assert_refused(&send(&envoy, &alice()), 403, "untrusted_peer");
    assert_eq!(upstream.count(), 0);
}

/// The `source_address` audit extra is the direct peer's address (no port), whatever the
/// client wrote in `X-Forwarded-For`.
#[test]
fn the_source_address_audit_extra_is_the_direct_peer() {
    for use_remote_address in [None, Some(true)] {
        let (upstream, envoy) = envoy_with_direct_peer(
            r#"{"identity":{"preset":"oauth2-proxy","audit_extras":{"client-address":"source_address"}}}"#,
            use_remote_address,
        );
        let forged = alice().header("X-Forwarded-For", "10.1.2.3");
        assert_eq!(send(&envoy, &forged).status, 200);
        assert_eq!(
            text_values(&upstream.last().unwrap(), "impersonate-extra-client-address"),
            vec!["127.0.0.1"],
            "use_remote_address {use_remote_address:?}"
        );
    }
}

#[test]
fn the_harness_and_the_filter_agree_on_the_direct_peer_key() {
    assert_eq!(harness::envoy::DIRECT_PEER_FILTER_STATE, kiali_header_auth::identity::DIRECT_PEER_FILTER_STATE);
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

// ---- What the API server finally believes, through stand-ins of Kiali and the API server ----

use common::chain::{user, Chain};

#[test]
fn the_api_server_believes_the_mapped_identity_not_the_client() {
    let chain = Chain::start(r#""identity":{"preset":"oauth2-proxy"}"#, Vec::new());
    let request = alice()
        .header("Impersonate-User", "system:admin")
        .header("impersonate-group", "system:masters")
        .header("Impersonate-Extra-Scopes", "admin")
        .header("Authorization", "Bearer the-clients-own");
    let response = send(&chain.envoy, &request);
    assert_eq!(
        chain.believed(&response),
        user("alice", &["dev", "ops", "qa"], &[("email", &["alice@example.com"])])
    );
    // Kiali received the issued impersonator token, not the client's.
    let seen = chain.kiali.last().expect("Kiali got the request");
    let bearer = text_values(&seen, "authorization");
    assert_eq!(bearer.len(), 1);
    assert!(chain.tokens.is_valid_now(bearer[0].trim_start_matches("Bearer ")), "{bearer:?}");
}

/// Defect 3 of issue 19: an extra key reaches the API server as configured, through Kiali and
/// client-go; the API server grants it only with `userextras/<that key>`.
#[test]
fn an_extra_key_reaches_the_api_server_as_configured() {
    use harness::apiserver::{ImpersonationRules, PolicyRule};
    let fields = r#""identity":{"preset":"oauth2-proxy","extra_headers":{"Acme.com-Team":"x-team","email":"x-forwarded-email"}}"#;
    let granted = ImpersonationRules::from_rules(vec![
        PolicyRule::impersonate(&[""], &["users", "groups"]),
        PolicyRule::impersonate(&["authentication.k8s.io"], &["userextras/email", "userextras/acme.com-team"]),
    ]);
    let chain = Chain::start_with_rules(fields, Vec::new(), Some(granted));
    let response = send(&chain.envoy, &alice().header("X-Team", "blue"));
    assert_eq!(
        chain.believed(&response),
        user("alice", &["dev", "ops", "qa"], &[("acme.com-team", &["blue"]), ("email", &["alice@example.com"])])
    );
    drop(chain);

    // The deployed ClusterRole grants no such key: the API server refuses the whole request,
    // naming the attribute RBAC checked.
    let chain = Chain::start(fields, Vec::new());
    let response = send(&chain.envoy, &alice().header("X-Team", "blue"));
    assert_eq!(response.status, 200, "Kiali answered: {}", response.text());
    let exchange = chain.kiali.last_exchange().expect("Kiali asked the API server");
    assert_eq!(exchange.apiserver_status, Some(403), "{}", exchange.apiserver);
    assert!(exchange.apiserver.to_string().contains("userextras/acme.com-team"), "{}", exchange.apiserver);
}

/// Values reach the API server as Go reads them: with spaces around, and groups one per line
/// (a comma inside a header group list splits, a comma never merges two lines).
#[test]
fn the_api_server_sees_trimmed_values_and_one_group_per_line() {
    let chain = Chain::start(r#""identity":{"preset":"oauth2-proxy","group_prefix":"sso:","static_groups":["viewers"]}"#, Vec::new());
    let request = ClientRequest::get("/api/namespaces")
        .header("X-Forwarded-User", "  bob  ")
        .header("X-Forwarded-Groups", " dev , ops")
        .header("X-Forwarded-Groups", "qa");
    let response = send(&chain.envoy, &request);
    assert_eq!(chain.believed(&response), user("bob", &["sso:dev", "sso:ops", "sso:qa", "viewers"], &[]));
}

/// Defect 5 of issue 19: attached where it also sees other services' traffic (a waypoint, a
/// shared gateway), the filter would hand the impersonator's token to every backend. With
/// `upstream_hosts` a request for another authority is refused before any identity or token is
/// added, and the client's impersonation headers are still dropped.
#[test]
fn upstream_hosts_keeps_the_token_to_the_listed_hosts() {
    let chain = Chain::start(
        r#""identity":{"preset":"oauth2-proxy"},"upstream_hosts":["kiali.istio-system.svc.cluster.local","kiali.example.com:443"]"#,
        Vec::new(),
    );
    for host in ["kiali.istio-system.svc.cluster.local", "KIALI.istio-system.svc.cluster.local:20001", "kiali.example.com:443"] {
        let response = send(&chain.envoy, &alice().host(host));
        assert_eq!(chain.believed(&response).name, "alice", "{host}");
    }
    let forwarded = chain.kiali.count();
    for host in ["prometheus.istio-system.svc.cluster.local", "kiali.example.com", "kiali.example.com:8443", "localhost"] {
        let response = send(&chain.envoy, &alice().host(host).header("Impersonate-User", "system:admin"));
        assert_refused(&response, 403, "upstream_not_allowed");
    }
    assert_eq!(chain.kiali.count(), forwarded, "no refused request reached the upstream");
    assert_eq!(wait_stat(&chain.envoy, "refused.upstream_not_allowed", 4), 4);
}

/// Issue 23, item 2: only listed users, or members of listed groups, reach Kiali; others get
/// 403 `identity_not_allowed` before any token is attached.
#[test]
fn allowed_users_and_groups_gate_who_reaches_kiali() {
    let chain = Chain::start(
        r#""identity":{"preset":"oauth2-proxy","static_groups":["viewers"],"allowed_users":["carol"],"allowed_groups":["ops","viewers"]}"#,
        Vec::new(),
    );
    let response = send(&chain.envoy, &alice());
    assert_eq!(chain.believed(&response).name, "alice");
    let carol = ClientRequest::get("/").header("X-Forwarded-User", "carol");
    assert_eq!(chain.believed(&send(&chain.envoy, &carol)).name, "carol");
    let forwarded = chain.kiali.count();
    // bob is in dev only; `viewers` is added by the configuration to everyone and admits no one.
    let bob = ClientRequest::get("/").header("X-Forwarded-User", "bob").header("X-Forwarded-Groups", "dev");
    assert_refused(&send(&chain.envoy, &bob.header("Impersonate-Group", "ops")), 403, "identity_not_allowed");
    assert_eq!(chain.kiali.count(), forwarded);
    assert_eq!(wait_stat(&chain.envoy, "refused.identity_not_allowed", 1), 1);
}

/// Issue 23, item 3: the logout path never reaches Kiali; the reply sends the browser to the
/// proxy's sign-out and expires every Kiali session cookie on Kiali's web root.
#[test]
fn logout_redirects_and_expires_kialis_session_cookies() {
    let chain = Chain::start(
        r#""identity":{"preset":"oauth2-proxy"},"logout":{"path":"/kiali/logout","redirect":"/oauth2/sign_out?rd=%2Fkiali%2F","web_root":"/kiali"}"#,
        Vec::new(),
    );
    let request = ClientRequest::get("/kiali/logout?from=menu")
        .header("X-Forwarded-User", "alice")
        .header("Cookie", "kiali-token-chunks=2; kiali-token=a; kiali-token-1=b; _oauth2_proxy=keep");
    let response = send(&chain.envoy, &request);
    assert_eq!(response.status, 302, "{}", response.text());
    assert_eq!(response.header("location").as_deref(), Some("/oauth2/sign_out?rd=%2Fkiali%2F"));
    let cookies: Vec<String> = response
        .headers_named("set-cookie")
        .iter()
        .map(|value| String::from_utf8_lossy(value).into_owned())
        .collect();
    for name in ["kiali-token", "kiali-token-aes", "kiali-token-chunks", "kiali-token-1"] {
        let expected = format!("{name}=; Path=/kiali; Max-Age=0; HttpOnly; SameSite=Strict");
        assert!(cookies.contains(&expected), "{name} not expired: {cookies:?}");
    }
    assert!(!cookies.iter().any(|cookie| cookie.starts_with("_oauth2_proxy")), "{cookies:?}");
    assert_eq!(chain.kiali.count(), 0, "the logout never reaches Kiali");
    // Any other path is forwarded as before.
    assert_eq!(chain.believed(&send(&chain.envoy, &alice())).name, "alice");
}

/// Defect 3 of issue 19, second half: the RBAC self-check asks about exactly the extra keys the
/// API server decodes through Kiali and client-go, so "allowed" there means allowed here.
#[test]
fn the_rbac_self_check_asks_about_the_keys_the_api_server_sees() {
    use harness::apiserver::{ImpersonationRules, PolicyRule};
    let fields = r#""identity":{"preset":"oauth2-proxy","extra_headers":{"Acme.com-Team":"x-team","email":"x-forwarded-email"}},"rbac_check":"warn""#;
    let granted = ImpersonationRules::from_rules(vec![
        PolicyRule::impersonate(&[""], &["users", "groups"]),
        PolicyRule::impersonate(&["authentication.k8s.io"], &["userextras/email", "userextras/acme.com-team"]),
    ]);
    let chain = Chain::start_with_rules(fields, Vec::new(), Some(granted));
    let believed = chain.believed(&send(&chain.envoy, &alice().header("X-Team", "blue")));
    assert_eq!(wait_stat(&chain.envoy, "rbac_check.allowed", 4), 4);
    let asked: Vec<String> = chain
        .tokens
        .reviews()
        .reviews()
        .iter()
        .filter(|review| review.api_group == "authentication.k8s.io")
        .map(|review| review.resource.clone())
        .collect();
    let seen: Vec<String> = believed.extra.keys().map(|key| format!("userextras/{key}")).collect();
    assert_eq!(seen, vec!["userextras/acme.com-team", "userextras/email"]);
    for resource in &seen {
        assert!(asked.contains(resource), "the self-check never asked about {resource}: {asked:?}");
    }
}

/// `common::stat` fails on a stat Envoy does not report, so a renamed metric cannot pass an
/// `== 0` check by being absent.
#[test]
#[should_panic(expected = "Envoy reports no stat")]
fn a_missing_stat_fails_the_test_instead_of_reading_zero() {
    let (_upstream, envoy) = envoy_with(OAUTH2_PROXY, 1);
    assert_eq!(send(&envoy, &alice()).status, 200);
    assert_eq!(wait_stat(&envoy, "forwarded_total", 1), 1);
    let _ = stat(&envoy, "no_such_metric_total");
}
