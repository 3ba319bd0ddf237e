//! The RBAC self-check end to end: after each new token generation the filter asks the API server
//! stand-in (SelfSubjectAccessReview, with the new token as bearer) whether that token may
//! impersonate what the configuration maps; logs and counts the answers; and in `enforce` mode
//! refuses with 503 `rbac_denied` while a needed permission is denied.

use crate::common;

use std::time::Duration;

use common::*;
use harness::ssar::ImpersonateRule;
use harness::{Behavior, ClientRequest, EchoUpstream, Envoy, EnvoyConfig, TokenService};

const TOKEN_CLUSTER: &str = "outbound|443||kubernetes.default.svc.cluster.local";
const SUBJECT: &str = "system:serviceaccount:kiali-auth:kiali-impersonator";

/// No `credential_env`: the TokenRequest goes out without a bootstrap credential (the stand-in
/// here does not require one; tests/suite/bootstrap_rotation.rs covers the injected credential).
fn config(rbac_check: Option<&str>) -> String {
    let mode = rbac_check
        .map(|m| format!(r#","rbac_check":"{m}""#))
        .unwrap_or_default();
    format!(
        r#"{{"identity":{{"preset":"oauth2-proxy"}},
            "token_source":{{"type":"kubernetes_token_request","cluster":"{TOKEN_CLUSTER}",
              "namespace":"kiali-auth","service_account":"kiali-impersonator",
              "timeout_ms":1000,"retry_initial_ms":100,"retry_max_ms":400}}{mode}}}"#
    )
}

struct Setup {
    upstream: EchoUpstream,
    tokens: TokenService,
    envoy: Envoy,
}

fn start(
    rbac_check: Option<&str>,
    rules: Option<Vec<ImpersonateRule>>,
    lifetime: Duration,
    workers: u32,
) -> Setup {
    let tokens = TokenService::start();
    tokens.set_behavior(Behavior::Issue { lifetime });
    tokens.reviews().set_rules(rules);
    let upstream = EchoUpstream::start();
    let envoy = Envoy::start(
        &EnvoyConfig::proxy(upstream.addr())
            .concurrency(workers)
            .token_cluster(TOKEN_CLUSTER, tokens.addr())
            .filter(wasm_filter(&config(rbac_check))),
    );
    Setup {
        upstream,
        tokens,
        envoy,
    }
}

fn alice() -> ClientRequest {
    ClientRequest::get("/api/namespaces")
        .header("X-Forwarded-User", "alice")
        .header("X-Forwarded-Groups", "dev,ops")
        .header("X-Forwarded-Email", "alice@example.com")
}

fn without_groups() -> Vec<ImpersonateRule> {
    ImpersonateRule::oauth2_proxy_preset()
        .into_iter()
        .filter(|rule| rule.resource != "groups")
        .collect()
}

#[test]
fn allowed_permissions_are_checked_with_the_new_token_and_counted() {
    let s = start(
        None,
        Some(ImpersonateRule::oauth2_proxy_preset()),
        Duration::from_secs(3600),
        2,
    );
    assert_eq!(send(&s.envoy, &alice()).status, 200);
    assert_eq!(wait_stat(&s.envoy, "rbac_check.allowed", 3), 3);
    assert_eq!(stat(&s.envoy, "rbac_check.denied"), 0);
    assert_eq!(stat(&s.envoy, "rbac_check.error"), 0);

    let issued = s.tokens.issued();
    assert_eq!(issued.len(), 1);
    let reviews = s.tokens.reviews().reviews();
    let mut asked: Vec<(String, String)> = reviews
        .iter()
        .map(|r| (r.api_group.clone(), r.resource.clone()))
        .collect();
    asked.sort();
    assert_eq!(
        asked,
        [
            ("".to_string(), "groups".to_string()),
            ("".to_string(), "users".to_string()),
            (
                "authentication.k8s.io".to_string(),
                "userextras/email".to_string()
            ),
        ],
        "one review per needed permission, once per generation (not per worker or request)"
    );
    for review in &reviews {
        assert_eq!(review.verb, "impersonate");
        assert_eq!(
            review.bearer.as_deref(),
            Some(issued[0].token.as_str()),
            "asks as the issued token"
        );
        assert_eq!(review.allowed, Some(true));
    }
    assert!(s.envoy.wait_for_log(
        "RBAC self-check of token generation 1: 3 allowed, 0 denied",
        Duration::from_secs(5)
    ));
    assert!(
        !s.envoy.log().contains(&issued[0].token),
        "the log never holds the token"
    );
    for _ in 0..5 {
        assert_eq!(send(&s.envoy, &alice()).status, 200);
    }
    assert_eq!(
        s.tokens.reviews().reviews().len(),
        3,
        "not re-checked per request"
    );
}

#[test]
fn a_missing_group_permission_is_logged_and_counted_but_not_enforced_by_default() {
    let s = start(None, Some(without_groups()), Duration::from_secs(3600), 1);
    assert_eq!(send(&s.envoy, &alice()).status, 200);
    assert_eq!(wait_stat(&s.envoy, "rbac_check.denied", 1), 1);
    assert_eq!(wait_stat(&s.envoy, "rbac_check.allowed", 2), 2);
    let line = format!("RBAC self-check: {SUBJECT} may not impersonate groups");
    assert!(
        s.envoy.wait_for_log(&line, Duration::from_secs(5)),
        "{}",
        s.envoy.log()
    );
    let log = s.envoy.log();
    let logged = log.lines().find(|l| l.contains(&line)).unwrap();
    assert!(
        logged.contains(r#"{apiGroups: [""], resources: ["groups"], verbs: ["impersonate"]}"#),
        "names the ClusterRole rule: {logged}"
    );
    assert!(logged.contains("requests continue"), "{logged}");
    assert!(!log.contains("may not impersonate users"), "{log}");
    for _ in 0..5 {
        assert_eq!(send(&s.envoy, &alice()).status, 200);
    }
    assert_eq!(s.upstream.count(), 6);
}

#[test]
fn enforce_mode_refuses_on_every_worker_until_a_new_generation_is_allowed() {
    // 3-second tokens: a new generation (and a new check) about every two seconds.
    let s = start(
        Some("enforce"),
        Some(without_groups()),
        Duration::from_secs(3),
        2,
    );
    let _ = send(&s.envoy, &alice());
    wait_stat(&s.envoy, "rbac_check.denied", 1);
    // Every worker copies the shared verdict within a tick.
    std::thread::sleep(Duration::from_millis(600));
    let forwarded_before = s.upstream.count();
    for _ in 0..20 {
        let response = send(&s.envoy, &alice());
        assert_refused(&response, 503, "rbac_denied");
        assert!(
            response.json()["error"]
                .as_str()
                .unwrap()
                .contains("may not impersonate groups"),
            "{}",
            response.text()
        );
    }
    assert_eq!(
        s.upstream.count(),
        forwarded_before,
        "nothing reached Kiali while denied"
    );
    assert!(wait_stat(&s.envoy, "refused.rbac_denied", 20) >= 20);
    assert!(s
        .envoy
        .log()
        .contains(r#"rbac_check is "enforce": requests get 503 rbac_denied"#));

    // The administrator grants the rule; the next token generation is checked and allowed.
    s.tokens
        .reviews()
        .set_rules(Some(ImpersonateRule::oauth2_proxy_preset()));
    assert!(
        eventually(Duration::from_secs(10), || send(&s.envoy, &alice()).status
            == 200),
        "the next generation's check lifts the refusal: {:?}",
        filter_stats(&s.envoy)
    );
    std::thread::sleep(Duration::from_millis(600));
    for _ in 0..20 {
        assert_eq!(send(&s.envoy, &alice()).status, 200);
    }
    assert!(stat(&s.envoy, "rbac_check.allowed") >= 5);
}

#[test]
fn an_api_error_is_reported_and_never_refuses_even_in_enforce_mode() {
    let s = start(Some("enforce"), None, Duration::from_secs(3600), 1);
    s.tokens.reviews().set_failure(Some((
        500,
        "InternalError",
        "Internal error occurred: authorizer unavailable",
    )));
    assert_eq!(send(&s.envoy, &alice()).status, 200);
    assert_eq!(wait_stat(&s.envoy, "rbac_check.error", 3), 3);
    assert_eq!(stat(&s.envoy, "rbac_check.denied"), 0);
    assert!(s
        .envoy
        .wait_for_log("could not ask whether", Duration::from_secs(5)));
    assert!(s.envoy.log().contains("HTTP 500"), "{}", s.envoy.log());
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        assert_eq!(send(&s.envoy, &alice()).status, 200);
    }
}

#[test]
fn off_sends_no_review() {
    let s = start(Some("off"), Some(Vec::new()), Duration::from_secs(3600), 1);
    assert_eq!(send(&s.envoy, &alice()).status, 200);
    wait_stat(&s.envoy, "token_fetch.success", 1);
    std::thread::sleep(Duration::from_millis(500));
    assert!(s.tokens.reviews().reviews().is_empty());
    assert_eq!(send(&s.envoy, &alice()).status, 200);
}

#[test]
fn a_fixed_cluster_role_lifts_the_refusal_without_a_new_token() {
    // One-hour tokens: no new generation during the test; the re-check while denied does it.
    let s = start(
        Some("enforce"),
        Some(without_groups()),
        Duration::from_secs(3600),
        2,
    );
    let _ = send(&s.envoy, &alice());
    wait_stat(&s.envoy, "rbac_check.denied", 1);
    std::thread::sleep(Duration::from_millis(600));
    assert_refused(&send(&s.envoy, &alice()), 503, "rbac_denied");

    s.tokens
        .reviews()
        .set_rules(Some(ImpersonateRule::oauth2_proxy_preset()));
    assert!(
        eventually(Duration::from_secs(45), || send(&s.envoy, &alice()).status
            == 200),
        "re-checked within 30 s: {:?}",
        filter_stats(&s.envoy)
    );
    std::thread::sleep(Duration::from_millis(600));
    for _ in 0..10 {
        assert_eq!(send(&s.envoy, &alice()).status, 200);
    }
    assert_eq!(s.tokens.issued().len(), 1, "the same token generation");
    assert_eq!(
        s.tokens.reviews().reviews().len(),
        6,
        "one check at the fetch, one re-check claimed by a single worker"
    );
    assert_eq!(stat(&s.envoy, "rbac_check.allowed"), 5);
}
