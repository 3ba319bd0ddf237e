//! Property tests on the JWT claim path: no metadata bytes and no payload make it panic, a
//! refusal is always one of the identity reasons, and a mapped identity is exactly the verified
//! claims (one header per group, nothing split, nothing `system:`, no control characters).

use kiali_header_auth::config::FilterConfig;
use kiali_header_auth::identity::metadata::encode;
use kiali_header_auth::identity::{self, claims, is_system_identity, RequestProperties};
use kiali_header_auth::refusal::Reason;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::{json, Map, Value};

const NAMESPACE: &str = "envoy.filters.http.jwt_authn";

fn config() -> FilterConfig {
    FilterConfig::from_json(
        br#"{"identity":{"jwt":{"user_claim":"email","groups_claim":["realm_access","roles"],
            "uid_claim":"sub","extra_claims":{"team":"https://acme.com/team"}},
            "group_prefix":"oidc:","max_groups":20,"max_value_bytes":64}}"#,
    )
    .unwrap()
}

fn properties(metadata: Vec<u8>) -> RequestProperties {
    RequestProperties {
        dynamic_metadata: Some(metadata),
        ..RequestProperties::default()
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ a-zA-Z0-9:,|;.@ü/-]{0,20}",
        any::<String>(),
        Just("system:masters".to_string()),
        Just("SYSTEM:admin".to_string()),
        Just("a, b".to_string()),
    ]
}

/// Any JSON value, claim names favoured as keys so that paths are hit.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-1e9f64..1e9).prop_map(|n| json!(n)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            Just("email".to_string()),
            Just("sub".to_string()),
            Just("realm_access".to_string()),
            Just("roles".to_string()),
            Just("https://acme.com/team".to_string()),
            "[a-z]{1,6}",
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key, inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Payloads shaped like the configured claims (so most map), or anything at all.
fn payload() -> impl Strategy<Value = Value> {
    let groups = prop_oneof![
        4 => proptest::collection::vec(text().prop_map(Value::String), 0..8).prop_map(Value::Array),
        1 => json_value(),
    ];
    // Mostly well-typed, sometimes anything.
    let string_or_any = || prop_oneof![4 => "[a-z0-9:@.-]{1,12}".prop_map(Value::String), 1 => json_value()];
    prop_oneof![
        4 => (text(), groups, string_or_any(), string_or_any()).prop_map(|(email, roles, sub, team)| {
            json!({"email": email, "realm_access": {"roles": roles}, "sub": sub, "https://acme.com/team": team})
        }),
        1 => json_value(),
    ]
}

#[test]
fn most_shaped_payloads_map() {
    let runner_config = ProptestConfig::with_cases(256);
    let mut runner = proptest::test_runner::TestRunner::new(runner_config);
    let config = config();
    let mut mapped = 0;
    for _ in 0..256 {
        let payload = payload().new_tree(&mut runner).unwrap().current();
        let bytes = encode::metadata(NAMESPACE, "payload", &payload);
        if identity::plan_with_properties(&config, &[], &properties(bytes)).is_ok() {
            mapped += 1;
        }
    }
    assert!(mapped > 40, "only {mapped} of 256 generated payloads mapped");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes_are_refused_or_mapped_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let config = config();
        if let Err(refusal) = identity::plan_with_properties(&config, &[], &properties(bytes)) {
            prop_assert!(matches!(
                refusal.reason,
                Reason::IdentityMissing | Reason::IdentityMalformed | Reason::IdentityForbidden | Reason::EmailUnverified
            ));
        };
    }

    #[test]
    fn damaged_encodings_never_panic(payload in payload(), cut in any::<prop::sample::Index>(), flip in any::<u8>()) {
        let config = config();
        let mut bytes = encode::metadata(NAMESPACE, "payload", &payload);
        if !bytes.is_empty() {
            let at = cut.index(bytes.len());
            bytes[at] ^= flip;
            let _ = identity::plan_with_properties(&config, &[], &properties(bytes.clone()));
            bytes.truncate(at);
            let _ = identity::plan_with_properties(&config, &[], &properties(bytes));
        }
    }

    #[test]
    fn a_mapped_identity_is_exactly_the_verified_claims(payload in payload()) {
        let config = config();
        let jwt = config.identity.as_ref().and_then(|i| i.jwt.as_ref()).unwrap();
        let bytes = encode::metadata(NAMESPACE, "payload", &payload);
        let extracted = claims::extract(jwt, Some(&bytes));
        let planned = identity::plan_with_properties(&config, &[], &properties(bytes.clone()));
        match (&extracted, &planned) {
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (Ok(_), Err(_)) => {} // the value checks refused it
            (Err(refusal), Ok(_)) => prop_assert!(false, "extraction refused {refusal:?} but the plan mapped"),
            (Ok(claims), Ok(plan)) => {
                let users: Vec<String> = plan.add.iter().filter(|(n, _)| *n == "impersonate-user").map(|(_, v)| v.to_string()).collect();
                // Claims are trimmed exactly as Go's header reader will trim them.
                prop_assert_eq!(users, vec![identity::trim_like_go(claims.user).to_string()]);
                let groups: Vec<String> = plan.add.iter().filter(|(n, _)| *n == "impersonate-group").map(|(_, v)| v.to_string()).collect();
                let mut expected: Vec<String> = Vec::new();
                for group in &claims.groups {
                    let group = identity::trim_like_go(group);
                    let blank = group.is_empty();
                    let group = format!("oidc:{group}");
                    if !blank && !expected.contains(&group) {
                        expected.push(group);
                    }
                }
                prop_assert_eq!(groups, expected);
                for (name, value) in &plan.add {
                    prop_assert!(!value.chars().any(char::is_control));
                    // What Kiali and the API server read (Go trims spaces and tabs) is exactly
                    // what the filter checked: no value carries anything Go would trim.
                    prop_assert_eq!(identity::trim_like_go(value), value.as_ref());
                    // The uid and extras are not RBAC subjects; users and groups are.
                    if *name == "impersonate-user" || *name == "impersonate-group" {
                        prop_assert!(!is_system_identity(value));
                    }
                    prop_assert!(value.len() <= 64 + "oidc:".len());
                }
            }
        }
    }

    #[test]
    fn string_groups_travel_one_per_header_trimmed_as_go_reads_them(
        user in "[a-z]{1,10}",
        groups in proptest::collection::vec("[a-zA-Z0-9][ a-zA-Z0-9,;|.@ü-]{0,19}", 0..10),
    ) {
        let config = config();
        let payload = json!({"email": user, "realm_access": {"roles": groups}});
        let plan = identity::plan_with_properties(&config, &[], &properties(encode::metadata(NAMESPACE, "payload", &payload)))
            .expect("plain groups map");
        let mapped: Vec<String> = plan.add.iter().filter(|(n, _)| *n == "impersonate-group").map(|(_, v)| v.to_string()).collect();
        let mut expected: Vec<String> = Vec::new();
        for group in &groups {
            let group = format!("oidc:{}", identity::trim_like_go(group));
            if !expected.contains(&group) {
                expected.push(group);
            }
        }
        prop_assert_eq!(mapped, expected);
    }
}
