use super::*;
use crate::config::{FilterConfig, RbacCheckMode};

fn identity(json: &str) -> IdentityConfig {
    FilterConfig::from_json(format!(r#"{{"identity":{json}}}"#).as_bytes())
        .unwrap()
        .identity
        .unwrap()
}

fn resources(identity: &IdentityConfig) -> Vec<String> {
    needed_permissions(identity)
        .iter()
        .map(Permission::rbac_resource)
        .collect()
}

#[test]
fn needed_permissions_follow_what_the_configuration_maps() {
    assert_eq!(
        resources(&identity(r#"{"preset":"oauth2-proxy"}"#)),
        ["users", "groups", "userextras/email"]
    );
    assert_eq!(
        resources(&identity(r#"{"preset":"authentik"}"#)),
        ["users", "groups", "uids", "userextras/email"]
    );
    assert_eq!(
        resources(&identity(
            r#"{"user_header":"x-user","extra_headers":{"Acme.com-Team":"x-team","scopes":"x-scopes"}}"#
        )),
        ["users", "userextras/acme.com-team", "userextras/scopes"]
    );
    // Static groups are sent as Impersonate-Group even without a groups header.
    assert_eq!(
        resources(&identity(
            r#"{"user_header":"x-user","static_groups":["kiali-users"]}"#
        )),
        ["users", "groups"]
    );
}

#[test]
fn needed_permissions_of_a_jwt_identity_and_audit_extras() {
    let jwt = identity(
        r#"{"jwt":{"user_claim":"email","groups_claim":["realm_access","roles"],"uid_claim":"sub",
            "extra_claims":{"acme.com-team":"https://acme.com/team"}},
            "audit_extras":{"client-address":"source_address"}}"#,
    );
    assert_eq!(
        resources(&jwt),
        [
            "users",
            "groups",
            "uids",
            "userextras/acme.com-team",
            "userextras/client-address"
        ]
    );
    let user_only = identity(r#"{"jwt":{"user_claim":"email"}}"#);
    assert_eq!(resources(&user_only), ["users"]);
}

#[test]
fn review_bodies_ask_what_the_impersonation_filter_checks() {
    let needed = needed_permissions(&identity(r#"{"preset":"authentik"}"#));
    let bodies: Vec<serde_json::Value> = needed
        .iter()
        .map(|p| serde_json::from_slice(&p.review_body()).unwrap())
        .collect();
    let attributes = |i: usize| bodies[i]["spec"]["resourceAttributes"].clone();
    assert_eq!(bodies[0]["apiVersion"], "authorization.k8s.io/v1");
    assert_eq!(bodies[0]["kind"], "SelfSubjectAccessReview");
    assert_eq!(
        attributes(0),
        serde_json::json!({"verb":"impersonate","group":"","resource":"users"})
    );
    assert_eq!(
        attributes(1),
        serde_json::json!({"verb":"impersonate","group":"","resource":"groups"})
    );
    assert_eq!(
        attributes(2),
        serde_json::json!({"verb":"impersonate","group":"authentication.k8s.io","resource":"uids"})
    );
    assert_eq!(
        attributes(3),
        serde_json::json!({"verb":"impersonate","group":"authentication.k8s.io",
            "resource":"userextras","subresource":"email"})
    );
}

#[test]
fn granting_rules_are_valid_yaml_flow() {
    let needed = needed_permissions(&identity(r#"{"preset":"oauth2-proxy"}"#));
    assert_eq!(
        needed[1].granting_rule(),
        r#"{apiGroups: [""], resources: ["groups"], verbs: ["impersonate"]}"#
    );
    assert_eq!(
        needed[2].granting_rule(),
        r#"{apiGroups: ["authentication.k8s.io"], resources: ["userextras/email"], verbs: ["impersonate"]}"#
    );
}

#[test]
fn parses_allowed_denied_and_errors() {
    let allowed = br#"{"kind":"SelfSubjectAccessReview","status":{"allowed":true}}"#;
    assert_eq!(parse_review(Some(201), allowed), Outcome::Allowed);
    let denied = br#"{"status":{"allowed":false,"reason":"no RBAC policy matched"}}"#;
    assert_eq!(
        parse_review(Some(201), denied),
        Outcome::Denied {
            reason: "no RBAC policy matched".into()
        }
    );
    // An answer without `allowed` is a denial, as in the API (the field is omitted when false).
    assert_eq!(
        parse_review(Some(200), br#"{"status":{}}"#),
        Outcome::Denied {
            reason: String::new()
        }
    );
    let undecided = br#"{"status":{"allowed":false,"evaluationError":"webhook timed out"}}"#;
    assert!(matches!(
        parse_review(Some(201), undecided),
        Outcome::Error { .. }
    ));

    let forbidden = br#"{"kind":"Status","reason":"Forbidden","message":"nope","code":403}"#;
    match parse_review(Some(403), forbidden) {
        Outcome::Error { detail } => {
            assert!(
                detail.contains("HTTP 403") && detail.contains("Forbidden"),
                "{detail}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(parse_review(None, b""), Outcome::Error { .. }));
    assert!(matches!(
        parse_review(Some(201), b"{not json"),
        Outcome::Error { .. }
    ));
    assert!(matches!(
        parse_review(Some(201), br#"{"kind":"X"}"#),
        Outcome::Error { .. }
    ));
}

#[test]
fn a_check_completes_once_every_permission_has_one_answer() {
    let needed = needed_permissions(&identity(r#"{"preset":"oauth2-proxy"}"#));
    let mut check = Check::new(7, needed);
    assert!(!check.is_complete());
    assert!(check.record(0, Outcome::Allowed));
    assert!(
        !check.record(
            0,
            Outcome::Denied {
                reason: String::new()
            }
        ),
        "second answer ignored"
    );
    assert!(!check.record(9, Outcome::Allowed), "unknown index ignored");
    assert!(check.record(
        1,
        Outcome::Denied {
            reason: "no".into()
        }
    ));
    assert!(!check.is_complete());
    assert!(check.record(2, Outcome::Error { detail: "x".into() }));
    assert!(check.is_complete());
    let verdict = check.verdict(1000);
    assert_eq!(verdict.generation, 7);
    assert_eq!(verdict.denied, ["groups"], "errors are not denials");
    assert_eq!(Verdict::decode(&verdict.encode()), verdict);
    let detail = verdict.refusal_detail().unwrap();
    assert!(detail.contains("may not impersonate groups"), "{detail}");
    assert!(!verdict.recheck_due(1000 + RECHECK_WHILE_DENIED_MS - 1));
    assert!(verdict.recheck_due(1000 + RECHECK_WHILE_DENIED_MS));
}

#[test]
fn an_unchecked_or_denied_verdict_is_claimed_once() {
    let unchecked = Verdict::default();
    assert!(unchecked.needs_check(5));
    let claimed = unchecked.claimed(5, 1);
    assert!(
        !claimed.needs_check(5 + RECHECK_WHILE_DENIED_MS * 10),
        "claimed and clean"
    );
    let denied = Verdict {
        generation: 3,
        checked_at_ms: 1000,
        denied: vec!["groups".into()],
        claimed_generation: 3,
    };
    assert!(!denied.needs_check(1000 + RECHECK_WHILE_DENIED_MS - 1));
    assert!(denied.needs_check(1000 + RECHECK_WHILE_DENIED_MS));
    let claimed = denied.claimed(1000 + RECHECK_WHILE_DENIED_MS, 3);
    assert_eq!(
        claimed.denied, denied.denied,
        "the denial holds until the check answers"
    );
    assert!(!claimed.needs_check(1000 + RECHECK_WHILE_DENIED_MS + 1));
}

#[test]
fn a_new_generation_is_claimed_by_one_worker_only() {
    // A tick on another worker saw the new token first and claimed its check.
    let claimed_by_tick = Verdict::default().claimed(5, 1);
    assert_eq!(claimed_by_tick.claim_new_generation(6, 1), None);
    // Rotation: a newer token is checked even while an older one is being re-checked.
    let renewed = claimed_by_tick
        .claim_new_generation(7, 2)
        .expect("generation 2 is new");
    assert_eq!(renewed.claimed_generation, 2);
    assert_eq!(renewed.claim_new_generation(8, 2), None);
    // A verdict from before the field existed still decodes and is claimable.
    let old = Verdict::decode(br#"{"generation":1,"checked_at_ms":9,"denied":[]}"#);
    assert!(old.claim_new_generation(10, 1).is_some());
    // A finished check counts as its generation having been taken on.
    let check = Check::new(4, Vec::new());
    assert_eq!(check.verdict(11).claim_new_generation(12, 4), None);
}

#[test]
fn verdict_keys_differ_by_needed_permissions() {
    let oauth2 = needed_permissions(&identity(r#"{"preset":"oauth2-proxy"}"#));
    let authentik = needed_permissions(&identity(r#"{"preset":"authentik"}"#));
    let key = verdict_key("kiali-header-auth/v1/token/1", &oauth2);
    assert!(
        key.starts_with("kiali-header-auth/v1/token/1/rbac/"),
        "{key}"
    );
    assert_eq!(key, verdict_key("kiali-header-auth/v1/token/1", &oauth2));
    assert_ne!(key, verdict_key("kiali-header-auth/v1/token/1", &authentik));
}

#[test]
fn an_unreadable_or_clean_verdict_refuses_nothing() {
    assert_eq!(Verdict::decode(b"garbage").refusal_detail(), None);
    let clean = Verdict {
        generation: 1,
        checked_at_ms: 0,
        denied: Vec::new(),
        claimed_generation: 0,
    };
    assert_eq!(clean.refusal_detail(), None);
    assert!(!clean.recheck_due(u64::MAX));
}

#[test]
fn report_lines_name_the_permission_and_the_rule() {
    let needed = needed_permissions(&identity(r#"{"preset":"oauth2-proxy"}"#));
    let subject = "system:serviceaccount:kiali-auth:kiali-impersonator";
    assert_eq!(
        report_line(&needed[0], &Outcome::Allowed, subject, false),
        None
    );
    let line = report_line(
        &needed[1],
        &Outcome::Denied {
            reason: "RBAC: \"x\"\n".into(),
        },
        subject,
        true,
    )
    .unwrap();
    assert!(line.contains("may not impersonate groups"), "{line}");
    assert!(
        line.contains(r#"{apiGroups: [""], resources: ["groups"], verbs: ["impersonate"]}"#),
        "{line}"
    );
    assert!(line.contains(subject), "{line}");
    assert!(line.contains("503 rbac_denied"), "{line}");
    assert!(!line.contains('\n'), "authorizer text is escaped: {line}");
    let line = report_line(
        &needed[2],
        &Outcome::Error {
            detail: "HTTP 500".into(),
        },
        subject,
        false,
    )
    .unwrap();
    assert!(
        line.contains("could not ask") && line.contains("userextras/email"),
        "{line}"
    );
}

#[test]
fn mode_defaults_and_checks() {
    let k8s = r#""token_source":{"type":"kubernetes_token_request","cluster":"k","namespace":"a","service_account":"b"}"#;
    let oauth = r#""token_source":{"type":"oauth2_client_credentials","cluster":"i","authority":"i",
        "token_path":"/t","client_id":"c","client_secret_env":"S"}"#;
    let parse = |rest: &str| {
        FilterConfig::from_json(
            format!(r#"{{"identity":{{"preset":"oauth2-proxy"}},{rest}}}"#).as_bytes(),
        )
    };
    assert_eq!(parse(k8s).unwrap().rbac_check, RbacCheckMode::Warn);
    assert_eq!(parse(oauth).unwrap().rbac_check, RbacCheckMode::Off);
    assert_eq!(
        parse(&format!(r#"{k8s},"rbac_check":"enforce""#))
            .unwrap()
            .rbac_check,
        RbacCheckMode::Enforce
    );
    assert_eq!(
        parse(&format!(r#"{k8s},"rbac_check":"off""#))
            .unwrap()
            .rbac_check,
        RbacCheckMode::Off
    );
    assert_eq!(
        parse(&format!(r#"{oauth},"rbac_check":"off""#))
            .unwrap()
            .rbac_check,
        RbacCheckMode::Off
    );
    let error = parse(&format!(r#"{k8s},"rbac_check":"strict""#)).unwrap_err();
    assert_eq!(error.field, "rbac_check");
    assert!(error.message.contains("off, warn, enforce"), "{error}");
    let error = parse(&format!(r#"{oauth},"rbac_check":"warn""#)).unwrap_err();
    assert_eq!(error.field, "rbac_check");
    assert!(
        error.message.contains("kubernetes_token_request"),
        "{error}"
    );
    let error = FilterConfig::from_json(br#"{"rbac_check":"enforce"}"#).unwrap_err();
    assert_eq!(error.field, "rbac_check");
    assert_eq!(
        FilterConfig::from_json(br#"{}"#).unwrap().rbac_check,
        RbacCheckMode::Off
    );
}
