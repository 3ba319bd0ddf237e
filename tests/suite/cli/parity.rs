//! `explain` and the filter in a real Envoy, fed the same requests, must agree: the same refusal
//! (status, reason, body) or the same `Impersonate-*` lines, in order, with the identity source
//! headers gone. Full impersonation is left out: the bearer is a placeholder in `explain`.

use super::*;

/// What runs before the filter in Envoy.
#[derive(Clone, Copy)]
enum Chain {
    Plain,
    /// `set_filter_state` with the direct peer (trusted_peers.source_cidrs, source_address extra).
    DirectPeer,
    /// jwt_authn (missing tokens allowed, as Istio) and the direct peer.
    Jwt,
}

struct Case {
    name: &'static str,
    config: &'static str,
    chain: Chain,
    headers: &'static [(&'static str, &'static str)],
    /// JWT claims (besides iss, aud, iat, exp), for Chain::Jwt.
    claims: Option<Value>,
}

const OAUTH2: &str = r#"{"identity": {"preset": "oauth2-proxy"}}"#;
const HOSTS: &str = r#"{"identity": {"preset": "oauth2-proxy"}, "upstream_hosts": ["kiali.example"]}"#;
const CIDRS_OTHER: &str = r#"{"identity": {"preset": "oauth2-proxy"}, "trusted_peers": {"source_cidrs": ["10.0.0.0/8"]}}"#;
const CIDRS_LOCAL: &str = r#"{"identity": {"preset": "oauth2-proxy", "static_groups": ["kiali-users"]}, "trusted_peers": {"source_cidrs": ["127.0.0.0/8"]}}"#;
const PRINCIPALS: &str = r#"{"identity": {"preset": "oauth2-proxy"}, "trusted_peers": {"principals": ["spiffe://cluster.local/ns/a/sa/b"]}}"#;
const LOGOUT: &str = r#"{"identity": {"preset": "oauth2-proxy"}, "logout": {"path": "/kiali/logout", "redirect": "/oauth2/sign_out?rd=%2Fkiali%2F"}}"#;
const JWT: &str = r#"{"identity": {"jwt": {"user_claim": "email", "groups_claim": "groups", "uid_claim": "sub",
    "extra_claims": {"team": "team"}}, "user_prefix": "oidc:", "audit_extras": {"client-address": "source_address"}}}"#;

fn cases() -> Vec<Case> {
    let alice = &[("X-Forwarded-User", "alice"), ("X-Forwarded-Groups", " dev, ops ,dev"), ("X-Forwarded-Email", "alice@example.com"), ("Impersonate-Group", "system:masters")];
    vec![
        Case { name: "strip-only", config: "{}", chain: Chain::Plain, headers: &[("Impersonate-User", "admin"), ("impersonate-extra-scopes", "x"), ("X-Forwarded-User", "alice")], claims: None },
        Case { name: "headers mapped", config: OAUTH2, chain: Chain::Plain, headers: alice, claims: None },
        Case { name: "no user", config: OAUTH2, chain: Chain::Plain, headers: &[("X-Forwarded-Groups", "dev")], claims: None },
        Case { name: "two users", config: OAUTH2, chain: Chain::Plain, headers: &[("X-Forwarded-User", "alice"), ("X-Forwarded-User", "bob")], claims: None },
        Case { name: "system user", config: OAUTH2, chain: Chain::Plain, headers: &[("X-Forwarded-User", " system:admin")], claims: None },
        Case { name: "other host", config: HOSTS, chain: Chain::Plain, headers: &[("Host", "grafana.example"), ("X-Forwarded-User", "alice")], claims: None },
        Case { name: "listed host", config: HOSTS, chain: Chain::Plain, headers: &[("Host", "Kiali.Example:443"), ("X-Forwarded-User", "alice")], claims: None },
        Case { name: "peer outside the CIDRs", config: CIDRS_OTHER, chain: Chain::DirectPeer, headers: alice, claims: None },
        Case { name: "no direct peer recorded", config: CIDRS_OTHER, chain: Chain::Plain, headers: alice, claims: None },
        Case { name: "peer inside the CIDRs", config: CIDRS_LOCAL, chain: Chain::DirectPeer, headers: alice, claims: None },
        Case { name: "no mTLS principal", config: PRINCIPALS, chain: Chain::Plain, headers: alice, claims: None },
        Case {
            name: "logout",
            config: LOGOUT,
            chain: Chain::Plain,
            headers: &[(":path", "/kiali/logout?x=1"), ("X-Forwarded-User", "alice"), ("Cookie", "kiali-token-chunks=3; other=1")],
            claims: None,
        },
        Case { name: "not the logout path", config: LOGOUT, chain: Chain::Plain, headers: &[(":path", "/kiali/logout/x"), ("X-Forwarded-User", "alice")], claims: None },
        Case { name: "no token", config: JWT, chain: Chain::Jwt, headers: &[("X-Forwarded-User", "mallory")], claims: None },
        Case {
            name: "verified claims",
            config: JWT,
            chain: Chain::Jwt,
            headers: &[("X-Forwarded-User", "mallory"), ("Impersonate-User", "admin")],
            claims: Some(json!({"sub": "u-1", "email": "alice@example.com", "groups": ["dev", "a, b"], "team": "blue"})),
        },
        Case {
            name: "unverified email",
            config: JWT,
            chain: Chain::Jwt,
            headers: &[],
            claims: Some(json!({"sub": "u-2", "email": "eve@example.com", "email_verified": false})),
        },
    ]
}

/// (status, reason, body) of a refusal, or the `impersonate-*` lines the upstream received and
/// which of the request's other headers reached it.
#[derive(Debug, PartialEq)]
enum Seen {
    Refused(u64, String, String),
    /// The logout path: status, `location`, every `set-cookie`.
    LoggedOut(u64, String, Vec<String>),
    Forwarded(Vec<(String, String)>, Vec<(String, bool)>),
}

fn through_envoy(envoy: &Envoy, upstream: &EchoUpstream, case: &Case, token: Option<&str>) -> Seen {
    upstream.clear();
    let path = case.headers.iter().find(|(name, _)| *name == ":path").map_or("/api/namespaces", |(_, path)| *path);
    let mut request = ClientRequest::get(path);
    for (name, value) in case.headers.iter().filter(|(name, _)| *name != ":path") {
        request = request.header(name, value);
    }
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let response = harness::client::send(envoy.addr(), &request).expect("request through Envoy");
    if response.status == 302 {
        assert_eq!(upstream.count(), 0, "{}: Kiali never sees the logout", case.name);
        let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
        return Seen::LoggedOut(
            302,
            response.header("location").unwrap_or_default(),
            response.headers_named("set-cookie").into_iter().map(text).collect(),
        );
    }
    if response.status != 200 {
        let body = response.json();
        return Seen::Refused(u64::from(response.status), body["reason"].as_str().unwrap_or("").to_string(), response.text());
    }
    let seen = upstream.last().expect("the upstream got the request");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let kept = reaching_kiali(case, |name| seen.header(name).is_some());
    Seen::Forwarded(
        seen.headers
            .iter()
            .filter(|(n, _)| n.to_ascii_lowercase().starts_with(b"impersonate-"))
            .map(|(n, v)| (text(n).to_ascii_lowercase(), text(v)))
            .collect(),
        kept,
    )
}

/// Which of the case's other headers (not `impersonate-*`, not `Host`) reach Kiali.
fn reaching_kiali(case: &Case, present: impl Fn(&str) -> bool) -> Vec<(String, bool)> {
    case.headers
        .iter()
        .map(|(name, _)| name.to_ascii_lowercase())
        .filter(|name| !name.starts_with("impersonate-") && name != "host" && !name.starts_with(':'))
        .map(|name| {
            let here = present(&name);
            (name, here)
        })
        .collect()
}

fn through_explain(case: &Case, config_file: &Path, payload: Option<&Value>, peer: &str) -> Seen {
    let file = config_file.to_string_lossy().into_owned();
    let mut args: Vec<String> = ["explain", "--config", &file, "--output", "json"].iter().map(|s| s.to_string()).collect();
    for (name, value) in case.headers {
        args.extend(["-H".to_string(), format!("{name}: {value}")]);
    }
    if let Some(payload) = payload {
        args.extend(["--jwt-payload".to_string(), payload.to_string()]);
    }
    if matches!(case.chain, Chain::DirectPeer | Chain::Jwt) {
        args.extend(["--peer".to_string(), peer.to_string()]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run(&refs);
    assert_eq!(code(&output), 0, "{}: {}", case.name, output.stderr);
    let explained = stdout_json(&output);
    if explained["outcome"] == "logged_out" {
        return Seen::LoggedOut(
            explained["status"].as_u64().unwrap_or(0),
            explained["location"].as_str().unwrap_or("").to_string(),
            explained["set_cookie"].as_array().into_iter().flatten().filter_map(|c| c.as_str().map(String::from)).collect(),
        );
    }
    if explained["outcome"] == "refused" {
        return Seen::Refused(
            explained["status"].as_u64().unwrap_or(0),
            explained["reason"].as_str().unwrap_or("").to_string(),
            explained["body"].as_str().unwrap_or("").to_string(),
        );
    }
    let pairs = |key: &str| -> Vec<(String, String)> {
        explained[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|pair| (pair[0].as_str().unwrap_or("").to_string(), pair[1].as_str().unwrap_or("").to_string()))
            .collect()
    };
    let headers = pairs("headers");
    let kept = reaching_kiali(case, |name| headers.iter().any(|(n, _)| n == name));
    Seen::Forwarded(pairs("impersonation"), kept)
}

#[test]
fn explain_agrees_with_the_filter_in_envoy() {
    let issuer = TestIssuer::generate("https://issuer.example", "kiali");
    let dir = std::env::temp_dir().join(format!("kha-cli-parity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (mut refused, mut forwarded, mut logged_out) = (0, 0, 0);
    for (index, case) in cases().iter().enumerate() {
        let upstream = EchoUpstream::start();
        let mut config = EnvoyConfig::proxy(upstream.addr());
        match case.chain {
            Chain::Plain => {}
            Chain::DirectPeer => config = config.add_filter(Filter::direct_peer()),
            Chain::Jwt => {
                config = config.add_filter(issuer.jwt_authn_filter(&JwtAuthnOptions::default())).add_filter(Filter::direct_peer())
            }
        }
        let envoy = Envoy::start(&config.add_filter(Filter::wasm(case.config)));
        let claims = case.claims.as_ref().map(|extra| issuer.claims(extra.clone()));
        let token = claims.as_ref().map(|claims| issuer.sign(claims));
        let in_envoy = through_envoy(&envoy, &upstream, case, token.as_deref());
        let config_file = dir.join(format!("case-{index}.json"));
        std::fs::write(&config_file, case.config).expect("write the configuration");
        // The harness client connects from 127.0.0.1; the filter drops the port.
        let explained = through_explain(case, &config_file, claims.as_ref(), "127.0.0.1:40000");
        assert_eq!(explained, in_envoy, "case {:?}: explain vs Envoy\n{}", case.name, envoy.log());
        match explained {
            Seen::Refused(..) => refused += 1,
            Seen::Forwarded(..) => forwarded += 1,
            Seen::LoggedOut(_, _, ref cookies) => {
                assert!(cookies.iter().any(|c| c.starts_with("kiali-token-aes-2=")), "{cookies:?}");
                logged_out += 1
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(refused >= 7 && forwarded >= 6 && logged_out == 1, "{refused} refused, {forwarded} forwarded, {logged_out} logged out");
}
