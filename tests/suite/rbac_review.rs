//! The RBAC self-check against a SelfSubjectAccessReview stand-in that answers as the API server
//! does (harness/src/ssar.rs): for the subject of the token the filter fetched, with RBAC's
//! `resourceNames`, and with `evaluationError` when another authorizer fails. What the filter
//! then logs, counts and enforces. (tests/rbac_check.rs covers the self-check's schedule.)

use crate::common;

use std::time::Duration;

use common::tokens::{start_injected, TokenSetup, TOKEN_CLUSTER};
use common::*;
use harness::apiserver::IMPERSONATOR;
use harness::ssar::ImpersonateRule;
use harness::{Behavior, ClientRequest, TokenService};

/// The token source as users deploy it, for `service_account` in kiali-auth.
fn config(service_account: &str, rbac_check: &str) -> String {
    format!(
        r#"{{"identity":{{"preset":"oauth2-proxy"}},"rbac_check":"{rbac_check}",
            "token_source":{{"type":"kubernetes_token_request","cluster":"{TOKEN_CLUSTER}",
              "namespace":"kiali-auth","service_account":"{service_account}",
              "timeout_ms":1000,"retry_initial_ms":100,"retry_max_ms":400}}}}"#
    )
}

fn token_service() -> TokenService {
    let tokens = TokenService::start();
    tokens.set_behavior(Behavior::default());
    tokens
}

fn alice() -> ClientRequest {
    ClientRequest::get("/api/namespaces")
        .header("X-Forwarded-User", "alice")
        .header("X-Forwarded-Groups", "dev,ops")
        .header("X-Forwarded-Email", "alice@example.com")
}

/// What the three reviews of the oauth2-proxy preset were answered, sorted by resource.
fn answers(s: &TokenSetup) -> Vec<(String, Option<bool>)> {
    let mut answers: Vec<(String, Option<bool>)> =
        s.tokens.reviews().reviews().into_iter().map(|r| (r.resource, r.allowed)).collect();
    answers.sort();
    answers
}

/// rest.go: a review is evaluated for the user its bearer authenticates as. The filter fetched a
/// token for a ServiceAccount that exists but is bound to no impersonation rule (the rules of
/// deploy/ are bound to kiali-impersonator): every permission is denied, and the log names that
/// ServiceAccount.
#[test]
fn reviews_are_answered_for_the_service_account_of_the_fetched_token() {
    let tokens = token_service();
    tokens.add_service_account("kiali-auth", "unbound");
    let s = start_injected(&config("unbound", "warn"), tokens, 1);
    assert_eq!(send(&s.envoy, &alice()).status, 200, "rbac_check warn: requests continue");
    assert_eq!(wait_stat(&s.envoy, "rbac_check.denied", 3), 3);
    assert_eq!(stat(&s.envoy, "rbac_check.allowed"), 0);
    let unbound = "system:serviceaccount:kiali-auth:unbound";
    let issued = s.tokens.issued();
    assert_eq!(issued[0].subject, unbound);
    for review in s.tokens.reviews().reviews() {
        assert_eq!(review.subject.as_deref(), Some(unbound), "{review:?}");
        assert_eq!(review.bearer.as_deref(), Some(issued[0].token.as_str()));
    }
    let line = format!("RBAC self-check: {unbound} may not impersonate users");
    assert!(s.envoy.wait_for_log(&line, Duration::from_secs(5)), "{}", s.envoy.log());

    // Control: the same stand-in allows the ServiceAccount the rules are bound to.
    let s = start_injected(&config("kiali-impersonator", "warn"), token_service(), 1);
    assert_eq!(send(&s.envoy, &alice()).status, 200);
    assert_eq!(wait_stat(&s.envoy, "rbac_check.allowed", 3), 3);
    assert!(s.tokens.reviews().reviews().iter().all(|r| r.subject.as_deref() == Some(IMPERSONATOR)));
}

/// RBAC's `resourceNames` (`ResourceNameMatches`): a ClusterRole that lets the impersonator
/// impersonate only named users does not grant what the filter needs (any user it maps), and the
/// filter's review (no name: "any user") is denied. In enforce mode requests are refused.
#[test]
fn a_cluster_role_limited_to_named_users_is_not_enough() {
    let tokens = token_service();
    let mut rules = ImpersonateRule::oauth2_proxy_preset();
    rules[0] = ImpersonateRule::new("", "users").named(&["alice", "bob"]);
    tokens.reviews().set_rules(Some(rules));
    let s = start_injected(&config("kiali-impersonator", "enforce"), tokens, 1);
    let _ = send(&s.envoy, &alice());
    assert_eq!(wait_stat(&s.envoy, "rbac_check.denied", 1), 1);
    assert_eq!(wait_stat(&s.envoy, "rbac_check.allowed", 2), 2);
    assert_eq!(
        answers(&s),
        [
            ("groups".to_string(), Some(true)),
            ("userextras/email".to_string(), Some(true)),
            ("users".to_string(), Some(false)),
        ]
    );
    assert!(s.tokens.reviews().reviews().iter().all(|r| r.name.is_empty()), "the filter asks about any name");
    assert!(
        s.envoy.wait_for_log(&format!("RBAC self-check: {IMPERSONATOR} may not impersonate users"), Duration::from_secs(5)),
        "{}",
        s.envoy.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_refused(&send(&s.envoy, &alice()), 503, "rbac_denied");
}

/// `evaluationError` (union.go, helpers.go): another authorizer failed and nothing allowed. The
/// filter reports that it could not decide, counts an error, not a denial, and never refuses on
/// it, even in enforce mode.
#[test]
fn an_evaluation_error_is_reported_as_undecided_not_denied() {
    let tokens = token_service();
    let rules: Vec<ImpersonateRule> =
        ImpersonateRule::oauth2_proxy_preset().into_iter().filter(|r| r.resource != "groups").collect();
    tokens.reviews().set_rules(Some(rules));
    let failure = "Post \"https://authz-webhook.example:8443/authorize\": dial tcp: connection refused";
    tokens.reviews().set_evaluation_error(Some(failure));
    let s = start_injected(&config("kiali-impersonator", "enforce"), tokens, 1);
    let _ = send(&s.envoy, &alice());
    assert_eq!(wait_stat(&s.envoy, "rbac_check.error", 1), 1);
    assert_eq!(wait_stat(&s.envoy, "rbac_check.allowed", 2), 2);
    assert_eq!(stat(&s.envoy, "rbac_check.denied"), 0);
    let groups = s.tokens.reviews().reviews().into_iter().find(|r| r.resource == "groups").expect("a groups review");
    assert_eq!((groups.allowed, groups.evaluation_error.as_str()), (Some(false), failure));
    assert!(
        s.envoy.wait_for_log("the authorizer could not decide", Duration::from_secs(5)),
        "{}",
        s.envoy.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        assert_eq!(send(&s.envoy, &alice()).status, 200);
    }
}
