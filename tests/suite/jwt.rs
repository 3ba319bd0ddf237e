//! Identity from a verified JWT, end to end: Envoy's own `jwt_authn` (with `local_jwks` holding a
//! key generated here) verifies the token and stores its payload in dynamic metadata; the filter
//! maps the verified claims. Every assertion is on what the upstream (and the token service)
//! actually received.

use crate::common;

use common::*;
use harness::jwt::{JwtAuthnOptions, TestIssuer};
use harness::{Behavior, ClientRequest, EchoUpstream, Envoy, EnvoyConfig, Filter, TokenService};
use serde_json::json;

const ISSUER: &str = "https://idp.test/realms/kiali";
const AUDIENCE: &str = "kiali";

/// Keycloak-shaped: user from `email`, groups from `realm_access.roles`, a claim whose name
/// holds a slash, and the client address as an audit extra.
const KEYCLOAK: &str = r#"{"identity":{"jwt":{"user_claim":"email","groups_claim":["realm_access","roles"],
    "uid_claim":"sub","extra_claims":{"email":"email","acme.com-team":"https://acme.com/team"}},
    "user_prefix":"oidc:","group_prefix":"oidc:","static_groups":["kiali-users"],
    "audit_extras":{"client-address":"source_address"}}}"#;

struct Setup {
    issuer: TestIssuer,
    upstream: EchoUpstream,
    envoy: Envoy,
}

fn start(plugin_config: &str, options: &JwtAuthnOptions) -> Setup {
    let issuer = TestIssuer::generate(ISSUER, AUDIENCE);
    let upstream = EchoUpstream::start();
    let config = EnvoyConfig::proxy(upstream.addr())
        .filter(issuer.jwt_authn_filter(options))
        .add_filter(Filter::direct_peer())
        .add_filter(wasm_filter(plugin_config));
    let envoy = Envoy::start(&config);
    Setup {
        issuer,
        upstream,
        envoy,
    }
}

fn bearer(token: &str) -> ClientRequest {
    ClientRequest::get("/api/namespaces").header("Authorization", format!("Bearer {token}"))
}

fn pair(name: &str, value: &str) -> (String, String) {
    (name.to_string(), value.to_string())
}

fn alice_claims() -> serde_json::Value {
    json!({
        "sub": "f:realm:1234",
        "email": "alice@example.com",
        "realm_access": {"roles": ["dev", "kiali, admins", "team blue"]},
        "https://acme.com/team": ["blue", "green"],
        "middle_name": null,
    })
}

#[test]
fn verified_claims_become_impersonation_headers_and_client_identity_headers_are_not_trusted() {
    let s = start(KEYCLOAK, &JwtAuthnOptions::default());
    let token = s.issuer.token(alice_claims());
    let request = bearer(&token)
        .header("X-Forwarded-User", "mallory")
        .header("X-Forwarded-Groups", "admins")
        .header("Impersonate-User", "system:admin")
        .header("impersonate-group", "system:masters")
        .header("Impersonate-Extra-Email", "mallory@example.com");
    let response = send(&s.envoy, &request);
    assert_eq!(response.status, 200, "{}", response.text());

    let seen = s.upstream.last().expect("the upstream got the request");
    let mut headers = impersonation_headers(&seen);
    let address = headers.pop().expect("the audit extra is last");
    // The direct peer's address, without the port.
    assert_eq!(address, pair("impersonate-extra-client-address", "127.0.0.1"));
    assert_eq!(
        headers,
        vec![
            pair("impersonate-user", "oidc:alice@example.com"),
            // One header per group: the comma and the space stay inside their group.
            pair("impersonate-group", "oidc:dev"),
            pair("impersonate-group", "oidc:kiali, admins"),
            pair("impersonate-group", "oidc:team blue"),
            pair("impersonate-group", "kiali-users"),
            pair("impersonate-uid", "f:realm:1234"),
            pair("impersonate-extra-acme.com-team", "blue"),
            pair("impersonate-extra-acme.com-team", "green"),
            pair("impersonate-extra-email", "alice@example.com"),
        ]
    );
    // X-Forwarded-* is not identity in JWT mode: passed along untouched, never mapped.
    assert_eq!(text_values(&seen, "x-forwarded-user"), vec!["mallory"]);
    // jwt_authn (forward: false, Istio's default) removed the user's token.
    assert!(values(&seen, "authorization").is_empty());
    assert_eq!(wait_stat(&s.envoy, "impersonation_headers_stripped_total", 3), 3);
}

#[test]
fn requests_without_a_valid_token_never_reach_the_upstream() {
    let s = start(KEYCLOAK, &JwtAuthnOptions::default());

    // No token: RequestAuthentication semantics let it through jwt_authn; the filter refuses.
    let response = send(&s.envoy, &ClientRequest::get("/").header("X-Forwarded-User", "alice"));
    assert_refused(&response, 401, "identity_missing");

    let now = harness::jwt::unix_now();
    let other_key = TestIssuer::generate(ISSUER, AUDIENCE);
    let mut claims = s.issuer.claims(alice_claims());
    claims["exp"] = json!(now - 600);
    claims["iat"] = json!(now - 1200);
    let expired = s.issuer.sign(&claims);
    let wrong_signature = other_key.token(alice_claims());
    let mut wrong_issuer = s.issuer.claims(alice_claims());
    wrong_issuer["iss"] = json!("https://evil.test");
    let wrong_issuer = s.issuer.sign(&wrong_issuer);
    let mut wrong_audience = s.issuer.claims(alice_claims());
    wrong_audience["aud"] = json!("another-app");
    let wrong_audience = s.issuer.sign(&wrong_audience);
    let valid = s.issuer.token(alice_claims());
    let tampered = {
        let parts: Vec<&str> = valid.split('.').collect();
        let forged = s.issuer.token(json!({"email": "admin@example.com"}));
        format!("{}.{}.{}", parts[0], forged.split('.').nth(1).unwrap_or_default(), parts[2])
    };
    for (label, token) in [
        ("expired", expired),
        ("wrong signature", wrong_signature),
        ("wrong issuer", wrong_issuer),
        ("wrong audience", wrong_audience),
        ("tampered payload", tampered),
        ("not a JWT", "not.a.jwt".to_string()),
    ] {
        let response = send(&s.envoy, &bearer(&token).header("X-Forwarded-User", "alice"));
        // jwt_authn answers 401, or 403 for an audience it does not accept.
        assert!([401, 403].contains(&response.status), "{label}: {} {}", response.status, response.text());
        assert!(!response.text().contains("\"reason\""), "{label}: refused by jwt_authn, not the filter");
    }
    assert_eq!(s.upstream.count(), 0, "the upstream saw nothing");
    assert_eq!(s.envoy.stat("http.ingress.jwt_authn.denied"), Some(6));
    // The same Envoy forwards a valid token.
    assert_eq!(send(&s.envoy, &bearer(&s.issuer.token(alice_claims()))).status, 200);
    assert_eq!(s.upstream.count(), 1);
}

#[test]
fn wrong_claim_types_and_system_identities_are_refused() {
    // Not `sub`: jwt_authn itself refuses a token whose registered claims (`sub`, `iss`, `aud`,
    // `exp`...) have the wrong type.
    let s = start(
        r#"{"identity":{"jwt":{"user_claim":"username","groups_claim":"groups","uid_claim":"uid"}}}"#,
        &JwtAuthnOptions::default(),
    );
    let cases = [
        (json!({"username": 42}), 400, "identity_malformed"),
        (json!({"username": ["alice"]}), 400, "identity_malformed"),
        (json!({"username": {"name": "alice"}}), 400, "identity_malformed"),
        (json!({"username": "alice", "groups": [1, 2]}), 400, "identity_malformed"),
        (json!({"username": "alice", "groups": {"dev": true}}), 400, "identity_malformed"),
        (json!({"username": "alice", "uid": 7}), 400, "identity_malformed"),
        (json!({"username": "alice\u{1}"}), 400, "identity_malformed"),
        (json!({"username": "alice", "groups": ["dev", "system:masters"]}), 403, "identity_forbidden"),
        (json!({"username": "system:admin"}), 403, "identity_forbidden"),
        (json!({"username": ""}), 401, "identity_missing"),
        (json!({"username": null}), 401, "identity_missing"),
        (json!({"sub": "no username claim"}), 401, "identity_missing"),
    ];
    for (claims, status, reason) in &cases {
        let response = send(&s.envoy, &bearer(&s.issuer.token(claims.clone())));
        assert_refused(&response, *status, reason);
    }
    assert_eq!(s.upstream.count(), 0);

    // A single string is one group, even with a comma in it.
    let token = s.issuer.token(json!({"username": "bob", "groups": "ops,dev"}));
    let response = send(&s.envoy, &bearer(&token));
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        impersonation_headers(&s.upstream.last().unwrap()),
        vec![pair("impersonate-user", "bob"), pair("impersonate-group", "ops,dev")]
    );
}

#[test]
fn payload_key_and_oauth2_proxy_access_token_header() {
    let options = JwtAuthnOptions {
        allow_missing: false,
        payload_key: "verified".to_string(),
        from_forwarded_access_token: true,
    };
    let s = start(
        r#"{"identity":{"jwt":{"payload_key":"verified","user_claim":"preferred_username"}}}"#,
        &options,
    );
    let token = s.issuer.token(json!({"preferred_username": "carol"}));
    let response = send(
        &s.envoy,
        &ClientRequest::get("/").header("X-Forwarded-Access-Token", &token),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        impersonation_headers(&s.upstream.last().unwrap()),
        vec![pair("impersonate-user", "carol")]
    );
    // Without `allow_missing`, jwt_authn itself refuses a request with no token.
    let response = send(&s.envoy, &ClientRequest::get("/"));
    assert_eq!(response.status, 401);
    assert_eq!(s.upstream.count(), 1);
}

#[test]
fn full_impersonation_with_jwt_identity() {
    use crate::common::tokens::TOKEN_CLUSTER;
    let tokens = TokenService::start();
    tokens.set_behavior(Behavior::default());
    let plugin_config = format!(
        r#"{{"identity":{{"jwt":{{"user_claim":"email","groups_claim":"groups"}}}},
            "token_source":{{"type":"kubernetes_token_request","cluster":"{TOKEN_CLUSTER}",
              "namespace":"kiali-auth","service_account":"kiali-impersonator","timeout_ms":1000}}}}"#
    );
    let issuer = TestIssuer::generate(ISSUER, AUDIENCE);
    // The token source as users deploy it: the credential injector adds the bootstrap token.
    let setup = crate::common::tokens::start_injected_with(&plugin_config, tokens, 1, |mut config| {
        config.filters.insert(0, issuer.jwt_authn_filter(&JwtAuthnOptions::default()));
        config
    });
    let (envoy, upstream, tokens) = (&setup.envoy, &setup.upstream, &setup.tokens);

    let token = issuer.token(json!({"email": "dana@example.com", "groups": ["ops"]}));
    let response = send(envoy, &bearer(&token));
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = upstream.last().expect("forwarded");
    assert_eq!(
        impersonation_headers(&seen),
        vec![pair("impersonate-user", "dana@example.com"), pair("impersonate-group", "ops")]
    );
    let sa_token = bearer_of(&seen);
    assert!(tokens.is_valid_now(&sa_token), "the issued ServiceAccount token, not the user's JWT");
    assert_ne!(sa_token, token);
    assert_eq!(tokens.count(), 1);

    let response = send(envoy, &ClientRequest::get("/").header("X-Forwarded-User", "dana@example.com"));
    assert_refused(&response, 401, "identity_missing");
    assert_eq!(upstream.count(), 1, "no token reaches Kiali without a verified JWT");
}

/// The JWT-mode examples in deploy/ are valid configurations, and the impersonation ClusterRole
/// allows every extra key they send (the API server refuses the whole request otherwise).
#[test]
fn deploy_examples_configure_jwt_mode_and_the_role_allows_their_extras() {
    use kiali_header_auth::config::{FilterConfig, Mode};
    let root = harness::paths::repo_root();
    let read_yaml = |path: &str| -> Vec<serde_yaml::Value> {
        let text = std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_yaml::Deserializer::from_str(&text)
            .map(|doc| serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{path}: {e}")))
            .collect()
    };

    let plugin = &read_yaml("deploy/components/jwt/jwt-wasmplugin.yaml")[0];
    assert_eq!(plugin["spec"]["phase"].as_str(), Some("AUTHZ"), "jwt_authn runs before AUTHZ only");
    let istio_config = serde_json::to_string(&plugin["spec"]["pluginConfig"]).unwrap();
    let envoy_bootstrap = std::fs::read_to_string(root.join("deploy/envoy/envoy-jwt.yaml")).unwrap();
    let envoy_config = {
        let start = envoy_bootstrap.find("value: |").expect("the plugin configuration");
        let json: String = envoy_bootstrap[start + "value: |".len()..]
            .lines()
            .skip(1)
            .take_while(|line| line.trim_start().starts_with(['{', '}', '"']) || line.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        json
    };
    let jwt_authn_at = envoy_bootstrap.find("jwt_authn.v3.JwtAuthentication").expect("jwt_authn");
    let wasm_at = envoy_bootstrap.find("filters.http.wasm.v3.Wasm").expect("the wasm filter");
    assert!(jwt_authn_at < wasm_at, "jwt_authn must come before the wasm filter");

    let role = read_yaml("deploy/02-impersonator.yaml")
        .into_iter()
        .find(|doc| doc["kind"].as_str() == Some("ClusterRole"))
        .expect("the impersonation ClusterRole");
    let granted: Vec<String> = role["rules"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|rule| rule["resources"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|resource| resource.as_str().map(str::to_string))
        .collect();

    for (origin, json) in [("jwt-wasmplugin.yaml", istio_config), ("envoy-jwt.yaml", envoy_config)] {
        let config = FilterConfig::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("{origin}: {e}\n{json}"));
        assert_eq!(config.mode(), Mode::FullImpersonation, "{origin}");
        let identity = config.identity.as_ref().unwrap();
        let jwt = identity.jwt.as_ref().unwrap_or_else(|| panic!("{origin} is in JWT mode"));
        let keys = jwt
            .extra_claims
            .iter()
            .map(|extra| &extra.key)
            .chain(identity.audit_extras.iter().map(|extra| &extra.key));
        for key in keys {
            let resource = format!("userextras/{key}");
            assert!(granted.contains(&resource), "{origin} sends extra {key:?}; the ClusterRole lacks {resource}");
        }
    }
}

/// `envoy-jwt.yaml` (make run, JWT mode) trusts exactly the demo issuer's key, so the tokens
/// `demo-token` prints are accepted there.
#[test]
fn the_demo_bootstrap_holds_the_demo_issuers_key() {
    let text = std::fs::read_to_string(harness::paths::repo_root().join("envoy-jwt.yaml")).unwrap();
    let demo = TestIssuer::demo();
    assert!(text.contains(&format!("inline_string: '{}'", demo.jwks())), "envoy-jwt.yaml has another JWKS");
    assert!(text.contains(&format!("issuer: {}", demo.issuer)));
}

/// The demo bootstrap, run as `make run` would (ports aside), accepts a demo token.
#[test]
fn the_demo_bootstrap_accepts_a_demo_token() {
    let demo = TestIssuer::demo();
    let upstream = EchoUpstream::start();
    let tokens = TokenService::start();
    let text = std::fs::read_to_string(harness::paths::repo_root().join("envoy-jwt.yaml"))
        .unwrap()
        .replace("port_value: 18080", &format!("port_value: {}", upstream.addr().port()))
        .replace("port_value: 18443", &format!("port_value: {}", tokens.addr().port()));
    let listener = harness::ports::free_port();
    let admin = harness::ports::free_port();
    let text = text
        .replace("port_value: 10000", &format!("port_value: {listener}"))
        .replace("port_value: 9901", &format!("port_value: {admin}"))
        .replace(
            "filename: target/wasm32-wasip1/release/kiali_header_auth.wasm",
            &format!("filename: {}", harness::paths::wasm_path().display()),
        );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("envoy-jwt.yaml");
    std::fs::write(&path, text).unwrap();
    let envoy = Envoy::spawn(harness::envoy::Launch::new(&path, listener, admin)).unwrap();
    envoy.wait_ready(std::time::Duration::from_secs(30), None).unwrap();

    let response = send(&envoy, &bearer(&demo.demo_token(harness::jwt::demo_claims())));
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = upstream.last().expect("forwarded to the stand-in Kiali");
    assert_eq!(text_values(&seen, "impersonate-user"), vec!["alice@example.com"]);
    assert_eq!(text_values(&seen, "impersonate-group"), vec!["dev", "ops", "team, with comma"]);
}

/// `source_principal` needs a downstream mTLS peer (see `common::mtls`). The trusted-peer check
/// reads the same principal, so it is tested here too.
#[test]
fn audit_extras_carry_the_mtls_peer_principal_and_the_client_address() {
    const SPIFFE: &str = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account";
    let issuer = TestIssuer::generate(ISSUER, AUDIENCE);
    let upstream = EchoUpstream::start();
    let plugin_config = format!(
        r#"{{"identity":{{"jwt":{{}},"audit_extras":{{"peer":"source_principal","client-address":"source_address"}}}},
            "trusted_peers":{{"principals":["{SPIFFE}"]}}}}"#
    );
    let config = EnvoyConfig::proxy(upstream.addr())
        .filter(issuer.jwt_authn_filter(&JwtAuthnOptions::default()))
        .add_filter(Filter::direct_peer())
        .add_filter(wasm_filter(&plugin_config));
    let mtls = common::mtls::MtlsEnvoy::start(&config, SPIFFE);

    let authorization = format!("Bearer {}", issuer.token(json!({"sub": "erin"})));
    let headers = [("Authorization", authorization.as_str())];
    assert_eq!(mtls.get("/api/namespaces", &headers, true), "200", "{}", mtls.envoy.log());
    let seen = upstream.last().expect("forwarded");
    let mut mapped = impersonation_headers(&seen);
    let address = mapped.remove(1);
    assert_eq!(address, pair("impersonate-extra-client-address", "127.0.0.1"));
    assert_eq!(
        mapped,
        vec![pair("impersonate-user", "erin"), pair("impersonate-extra-peer", SPIFFE)]
    );
    // Without a client certificate the TLS handshake fails: nothing reaches anyone.
    assert_ne!(mtls.get("/api/namespaces", &headers, false), "200");
    assert_eq!(upstream.count(), 1);
}

// ---- What the API server finally believes, through stand-ins of Kiali and the API server ----

use common::chain::{user, Chain};

fn jwt_chain(issuer: &TestIssuer, identity: &str) -> Chain {
    Chain::start(
        &format!(r#""identity":{identity}"#),
        vec![issuer.jwt_authn_filter(&JwtAuthnOptions::default()), Filter::direct_peer()],
    )
}

#[test]
fn the_api_server_believes_the_verified_claims() {
    let issuer = TestIssuer::generate(ISSUER, AUDIENCE);
    let chain = jwt_chain(
        &issuer,
        r#"{"jwt":{"user_claim":"email","groups_claim":["realm_access","roles"],"extra_claims":{"email":"email"}},
            "audit_extras":{"client-address":"source_address"}}"#,
    );
    let request = bearer(&issuer.token(alice_claims()))
        .header("Impersonate-User", "system:admin")
        .header("X-Forwarded-For", "10.9.9.9");
    let response = send(&chain.envoy, &request);
    assert_eq!(
        chain.believed(&response),
        user(
            "alice@example.com",
            &["dev", "kiali, admins", "team blue"],
            &[("client-address", &["127.0.0.1"]), ("email", &["alice@example.com"])]
        )
    );
}

/// Defect 2 of issue 19: Go trims spaces around header values, so a signed `" system:masters"`
/// group reached the API server as `system:masters`. The filter checks what Go will read.
#[test]
fn signed_claims_padded_with_spaces_cannot_become_system_identities() {
    let issuer = TestIssuer::generate(ISSUER, AUDIENCE);
    let chain = jwt_chain(&issuer, r#"{"jwt":{"groups_claim":"groups","uid_claim":"uid"}}"#);
    for claims in [
        json!({"sub": "  system:admin"}),
        json!({"sub": "bob", "groups": ["dev", " system:masters"]}),
        json!({"sub": "bob", "groups": "system:masters  "}),
    ] {
        let response = send(&chain.envoy, &bearer(&issuer.token(claims.clone())));
        assert_refused(&response, 403, "identity_forbidden");
    }
    assert_eq!(chain.kiali.count(), 0, "nothing reached Kiali");
    let response = send(&chain.envoy, &bearer(&issuer.token(json!({"sub": " bob ", "groups": [" dev "]}))));
    assert_eq!(chain.believed(&response), user("bob", &["dev"], &[]));
}

/// Defect 4 of issue 19: with `email` as the user claim, a token that says the address is not
/// verified is refused, as the API server's own OIDC authenticator refuses it.
#[test]
fn an_unverified_email_is_not_a_user() {
    let issuer = TestIssuer::generate(ISSUER, AUDIENCE);
    let chain = jwt_chain(&issuer, r#"{"jwt":{"user_claim":"email"}}"#);
    let unverified = issuer.token(json!({"email": "eve@example.com", "email_verified": false}));
    assert_refused(&send(&chain.envoy, &bearer(&unverified)), 401, "email_unverified");
    let as_string = issuer.token(json!({"email": "eve@example.com", "email_verified": "true"}));
    assert_refused(&send(&chain.envoy, &bearer(&as_string)), 401, "email_unverified");
    assert_eq!(chain.kiali.count(), 0);
    assert_eq!(wait_stat(&chain.envoy, "refused.email_unverified", 2), 2);
    // Absent: accepted, as the API server accepts it.
    let silent = issuer.token(json!({"email": "dan@example.com"}));
    assert_eq!(chain.believed(&send(&chain.envoy, &bearer(&silent))), user("dan@example.com", &[], &[]));
    drop(chain);

    let chain = jwt_chain(&issuer, r#"{"jwt":{"user_claim":"email","email_verified":"required"}}"#);
    assert_refused(&send(&chain.envoy, &bearer(&silent)), 401, "email_unverified");
    let verified = issuer.token(json!({"email": "dan@example.com", "email_verified": true}));
    assert_eq!(chain.believed(&send(&chain.envoy, &bearer(&verified))), user("dan@example.com", &[], &[]));
}
