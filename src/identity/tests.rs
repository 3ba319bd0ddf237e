use super::*;
use crate::config::FilterConfig;

fn cfg(json: &str) -> FilterConfig {
    FilterConfig::from_json(json.as_bytes()).unwrap()
}

fn oauth2_proxy() -> FilterConfig {
    cfg(r#"{"identity":{"preset":"oauth2-proxy"}}"#)
}

fn headers<'a>(list: &'a [(&'a str, &'a [u8])]) -> Vec<Header<'a>> {
    list.iter().map(|(n, v)| (n.as_bytes(), *v)).collect()
}

fn added(plan: &Plan<'_, '_>) -> Vec<(String, String)> {
    plan.add
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn groups<'p>(plan: &'p Plan<'_, '_>) -> Vec<&'p str> {
    plan.add
        .iter()
        .filter(|(name, _)| *name == IMPERSONATE_GROUP)
        .map(|(_, value)| value.as_ref())
        .collect()
}

fn removed(plan: &Plan<'_, '_>) -> Vec<String> {
    plan.remove
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect()
}

fn refusal(config: &FilterConfig, list: &[(&str, &[u8])]) -> Refusal {
    match plan(config, &headers(list)) {
        Ok(plan) => panic!("expected a refusal, got {plan:?}"),
        Err(refusal) => refusal,
    }
}

#[test]
fn strip_only_removes_every_impersonation_header_in_any_case() {
    let config = cfg("");
    let list: &[(&str, &[u8])] = &[
        ("Impersonate-User", b"admin"),
        ("IMPERSONATE-GROUP", b"system:masters"),
        ("impersonate-group", b"other"),
        ("impersonate-uid", b"1"),
        ("Impersonate-Extra-Scopes", b"x"),
        ("x-other", &[0xff, 0xfe]),
        ("authorization", b"Bearer user"),
        ("impersonate", b"not a prefix match"),
    ];
    let plan = plan(&config, &headers(list)).unwrap();
    assert_eq!(plan.stripped_impersonation_headers, 5);
    assert_eq!(
        removed(&plan),
        vec!["Impersonate-User", "IMPERSONATE-GROUP", "impersonate-uid", "Impersonate-Extra-Scopes"]
    );
    assert!(plan.add.is_empty());
    assert_eq!(plan.user(), None);
}

#[test]
fn maps_oauth2_proxy_identity() {
    let config = oauth2_proxy();
    let list: &[(&str, &[u8])] = &[
        ("impersonate-user", b"evil"),
        ("x-forwarded-user", b"alice"),
        ("x-forwarded-groups", b"dev, ops,,dev , qa"),
        ("x-forwarded-email", b"alice@example.com"),
    ];
    let plan = plan(&config, &headers(list)).unwrap();
    assert_eq!(
        added(&plan),
        vec![
            ("impersonate-user".into(), "alice".into()),
            ("impersonate-group".into(), "dev".into()),
            ("impersonate-group".into(), "ops".into()),
            ("impersonate-group".into(), "qa".into()),
            ("impersonate-extra-email".into(), "alice@example.com".into()),
        ]
    );
    assert_eq!(
        removed(&plan),
        vec!["impersonate-user", "x-forwarded-user", "x-forwarded-groups", "x-forwarded-email"]
    );
    assert_eq!(plan.user(), Some("alice"));
}

#[test]
fn repeated_group_headers_are_concatenated_and_static_groups_appended() {
    let config = cfg(
        r#"{"identity":{"preset":"oauth2-proxy","group_prefix":"oidc:","user_prefix":"oidc:",
            "static_groups":["kiali-users","oidc:dev"],"remove_identity_headers":false}}"#,
    );
    let list: &[(&str, &[u8])] = &[
        ("x-forwarded-user", b" bob "),
        ("x-forwarded-groups", b"dev"),
        ("x-forwarded-groups", b"ops,dev"),
    ];
    let plan = plan(&config, &headers(list)).unwrap();
    assert_eq!(
        added(&plan),
        vec![
            ("impersonate-user".into(), "oidc:bob".into()),
            ("impersonate-group".into(), "oidc:dev".into()),
            ("impersonate-group".into(), "oidc:ops".into()),
            ("impersonate-group".into(), "kiali-users".into()),
        ]
    );
    assert!(plan.remove.is_empty());
}

#[test]
fn uid_and_custom_extras() {
    let config = cfg(
        r#"{"identity":{"user_header":"x-user","uid_header":"x-uid",
            "extra_headers":{"acme.com-team":"x-team","scopes":"x-scopes"}}}"#,
    );
    let list: &[(&str, &[u8])] = &[
        ("x-user", b"carol"),
        ("x-uid", b"1234"),
        ("x-team", b"blue"),
        ("x-scopes", b"read"),
        ("x-scopes", b"write"),
    ];
    let plan = plan(&config, &headers(list)).unwrap();
    assert_eq!(
        added(&plan),
        vec![
            ("impersonate-user".into(), "carol".into()),
            ("impersonate-uid".into(), "1234".into()),
            ("impersonate-extra-acme.com-team".into(), "blue".into()),
            ("impersonate-extra-scopes".into(), "read".into()),
            ("impersonate-extra-scopes".into(), "write".into()),
        ]
    );
}

#[test]
fn missing_or_empty_user_is_401() {
    let config = oauth2_proxy();
    let r = refusal(&config, &[("x-forwarded-groups", b"dev")]);
    assert_eq!(r.reason, Reason::IdentityMissing);
    let r = refusal(&config, &[("x-forwarded-user", b"   ")]);
    assert_eq!(r.reason, Reason::IdentityMissing);
    // A spoofed impersonate-user never stands in for the trusted identity.
    let r = refusal(&config, &[("impersonate-user", b"alice")]);
    assert_eq!(r.reason, Reason::IdentityMissing);
}

#[test]
fn system_identities_are_403_after_prefixing() {
    let config = oauth2_proxy();
    for (header, value) in [
        ("x-forwarded-user", "system:admin"),
        ("x-forwarded-user", "SYSTEM:serviceaccount:kube-system:default"),
    ] {
        let r = refusal(&config, &[(header, value.as_bytes())]);
        assert_eq!(r.reason, Reason::IdentityForbidden, "{value}");
    }
    let r = refusal(
        &config,
        &[("x-forwarded-user", b"alice"), ("x-forwarded-groups", b"dev,system:masters")],
    );
    assert_eq!(r.reason, Reason::IdentityForbidden);
    assert!(r.detail.contains("system:masters"));

    let prefixed = cfg(r#"{"identity":{"preset":"oauth2-proxy","user_prefix":"oidc:","group_prefix":"oidc:"}}"#);
    let plan = plan(
        &prefixed,
        &headers(&[("x-forwarded-user", b"system:admin"), ("x-forwarded-groups", b"system:masters")]),
    )
    .unwrap();
    assert_eq!(plan.user(), Some("oidc:system:admin"));

    let allowed = cfg(r#"{"identity":{"preset":"oauth2-proxy","allow_system_identities":true}}"#);
    assert!(plan_ok(&allowed, &[("x-forwarded-user", b"system:admin")]));
}

fn plan_ok(config: &FilterConfig, list: &[(&str, &[u8])]) -> bool {
    plan(config, &headers(list)).is_ok()
}

#[test]
fn malformed_values_are_400() {
    let config = oauth2_proxy();
    let long = vec![b'a'; 1025];
    let cases: Vec<Vec<(&str, &[u8])>> = vec![
        vec![("x-forwarded-user", b"alice"), ("x-forwarded-user", b"bob")],
        vec![("x-forwarded-user", &[0xc3, 0x28])],
        vec![("x-forwarded-user", b"al\x01ice")],
        vec![("x-forwarded-user", b"al\tice")],
        vec![("x-forwarded-user", &long)],
        vec![("x-forwarded-user", b"alice"), ("x-forwarded-groups", &long)],
        vec![("x-forwarded-user", b"alice"), ("x-forwarded-groups", &[0xff])],
        vec![("x-forwarded-user", b"alice"), ("x-forwarded-email", &[0x80])],
    ];
    for case in cases {
        let r = refusal(&config, &case);
        assert_eq!(r.reason, Reason::IdentityMalformed, "{case:?}");
    }
    let exactly_limit = vec![b'a'; 1024];
    assert!(plan_ok(&config, &[("x-forwarded-user", &exactly_limit)]));
}

#[test]
fn unicode_is_fine() {
    let config = oauth2_proxy();
    let list: &[(&str, &[u8])] = &[
        ("x-forwarded-user", "zoë".as_bytes()),
        ("x-forwarded-groups", "équipe,团队".as_bytes()),
    ];
    let plan = plan(&config, &headers(list)).unwrap();
    assert_eq!(
        added(&plan)[1..],
        [
            ("impersonate-group".to_string(), "équipe".to_string()),
            ("impersonate-group".to_string(), "团队".to_string())
        ]
    );
}

#[test]
fn too_many_groups_is_400_but_the_limit_itself_passes() {
    let config = cfg(r#"{"identity":{"preset":"oauth2-proxy","max_groups":3}}"#);
    assert!(plan_ok(&config, &[("x-forwarded-user", b"a"), ("x-forwarded-groups", b"a,b,c,a,b")]));
    let r = refusal(&config, &[("x-forwarded-user", b"a"), ("x-forwarded-groups", b"a,b,c,d")]);
    assert_eq!(r.reason, Reason::IdentityMalformed);
}

#[test]
fn uid_must_be_single() {
    let config = cfg(r#"{"identity":{"preset":"authentik"}}"#);
    let r = refusal(
        &config,
        &[("x-authentik-username", b"a"), ("x-authentik-uid", b"1"), ("x-authentik-uid", b"2")],
    );
    assert_eq!(r.reason, Reason::IdentityMalformed);
    let plan = plan(
        &config,
        &headers(&[("x-authentik-username", b"a"), ("x-authentik-groups", b"x|y"), ("x-authentik-uid", b"1")]),
    )
    .unwrap();
    assert_eq!(plan.add.len(), 4);
}

#[test]
fn system_check_is_safe_on_multibyte_characters() {
    // Found by the property test: slicing at byte 7 inside a multi-byte character panicked.
    assert!(!is_system_identity("oidc:sü"));
    assert!(!is_system_identity("systemü"));
    assert!(!is_system_identity("sü"));
    assert!(is_system_identity("SyStEm:x"));
    let config = cfg(r#"{"identity":{"preset":"oauth2-proxy","user_prefix":"oidc:"}}"#);
    assert!(plan_ok(&config, &[("x-forwarded-user", "sü: .C .".as_bytes())]));
}

mod jwt_mode {
    use super::*;
    use serde_json::json;

    const KEYCLOAK: &str = r#"{"identity":{"jwt":{"user_claim":"email","groups_claim":["realm_access","roles"],
        "uid_claim":"sub","extra_claims":{"scopes":"scope"}},
        "user_prefix":"oidc:","group_prefix":"oidc:","static_groups":["kiali-users"],
        "audit_extras":{"peer":"source_principal","client-address":"source_address"}}}"#;

    fn with_payload(payload: serde_json::Value) -> RequestProperties {
        RequestProperties {
            dynamic_metadata: Some(metadata::encode::metadata(
                "envoy.filters.http.jwt_authn",
                "payload",
                &payload,
            )),
            ..RequestProperties::default()
        }
    }

    fn jwt_refusal(config: &FilterConfig, payload: serde_json::Value) -> Refusal {
        match plan_with_properties(config, &[], &with_payload(payload)) {
            Ok(plan) => panic!("expected a refusal, got {plan:?}"),
            Err(refusal) => refusal,
        }
    }

    #[test]
    fn maps_claims_strips_impersonation_and_ignores_forwarded_headers() {
        let config = cfg(KEYCLOAK);
        let list: &[(&str, &[u8])] = &[
            ("x-forwarded-user", b"mallory"),
            ("Impersonate-User", b"system:admin"),
            ("impersonate-group", b"system:masters"),
        ];
        let mut properties = with_payload(json!({
            "email": "alice@example.com", "sub": "f:1234",
            "realm_access": {"roles": ["dev", "a, b", "with space", "dev", ""]},
            "scope": ["read", "write"],
        }));
        properties.source_address = Some(b"10.1.2.3:4567".to_vec());
        let plan = plan_with_properties(&config, &headers(list), &properties).unwrap();
        assert_eq!(
            added(&plan),
            vec![
                ("impersonate-user".into(), "oidc:alice@example.com".into()),
                ("impersonate-group".into(), "oidc:dev".into()),
                ("impersonate-group".into(), "oidc:a, b".into()),
                ("impersonate-group".into(), "oidc:with space".into()),
                ("impersonate-group".into(), "kiali-users".into()),
                ("impersonate-uid".into(), "f:1234".into()),
                ("impersonate-extra-scopes".into(), "read".into()),
                ("impersonate-extra-scopes".into(), "write".into()),
                // No principal without mTLS: no `peer` extra. The address without its port.
                ("impersonate-extra-client-address".into(), "10.1.2.3".into()),
            ]
        );
        assert_eq!(removed(&plan), vec!["Impersonate-User", "impersonate-group"]);
        assert_eq!(plan.stripped_impersonation_headers, 2);
        assert_eq!(plan.user(), Some("oidc:alice@example.com"));
    }

    #[test]
    fn without_properties_jwt_mode_refuses_as_missing() {
        let config = cfg(KEYCLOAK);
        let list: &[(&str, &[u8])] = &[("x-forwarded-user", b"alice")];
        assert_eq!(refusal(&config, list).reason, Reason::IdentityMissing);
    }

    #[test]
    fn the_same_rules_as_headers_apply_to_claims() {
        // Without a prefix a `system:` user or group from the IdP is refused.
        let plain = cfg(r#"{"identity":{"jwt":{"groups_claim":"groups"}}}"#);
        assert_eq!(jwt_refusal(&plain, json!({"sub": "system:admin"})).reason, Reason::IdentityForbidden);
        assert_eq!(
            jwt_refusal(&plain, json!({"sub": "bob", "groups": ["dev", "System:Masters"]})).reason,
            Reason::IdentityForbidden
        );
        assert_eq!(jwt_refusal(&plain, json!({"sub": ""})).reason, Reason::IdentityMissing);
        assert_eq!(jwt_refusal(&plain, json!({"sub": "a\nb"})).reason, Reason::IdentityMalformed);
        assert_eq!(
            jwt_refusal(&plain, json!({"sub": "a", "groups": ["ok", "bad\u{7}"]})).reason,
            Reason::IdentityMalformed
        );
        assert_eq!(jwt_refusal(&plain, json!({"sub": "x".repeat(1025)})).reason, Reason::IdentityMalformed);
        let many: Vec<String> = (0..101).map(|i| format!("g{i}")).collect();
        let refusal = jwt_refusal(&plain, json!({"sub": "a", "groups": many}));
        assert_eq!(refusal.reason, Reason::IdentityMalformed);
        assert!(refusal.detail.contains("the `groups` claim lists more than 100 groups"), "{refusal:?}");
    }

    #[test]
    fn audit_extras_in_header_mode_use_the_properties_only_when_configured() {
        let config = cfg(r#"{"identity":{"preset":"oauth2-proxy","audit_extras":{"peer":"source_principal"}}}"#);
        let list: &[(&str, &[u8])] = &[("x-forwarded-user", b"alice")];
        let properties = RequestProperties {
            source_principal: Some(b"spiffe://cluster.local/ns/auth/sa/oauth2-proxy".to_vec()),
            ..RequestProperties::default()
        };
        let plan = plan_with_properties(&config, &headers(list), &properties).unwrap();
        assert_eq!(
            added(&plan),
            vec![
                ("impersonate-user".into(), "alice".into()),
                ("impersonate-extra-peer".into(), "spiffe://cluster.local/ns/auth/sa/oauth2-proxy".into()),
            ]
        );

        let mut asked: Vec<String> = Vec::new();
        let read = RequestProperties::read(&oauth2_proxy(), |path| {
            asked.push(path.join("."));
            None
        });
        assert!(asked.is_empty(), "header mode without audit extras reads no property");
        assert_eq!(read, RequestProperties::default());
        RequestProperties::read(&cfg(KEYCLOAK), |path| {
            asked.push(path.join("."));
            None
        });
        assert_eq!(
            asked,
            vec!["metadata", "connection.uri_san_peer_certificate", "filter_state.kiali_header_auth.direct_remote_address"]
        );
    }

    #[test]
    fn a_source_address_extra_without_the_direct_peer_is_refused() {
        let config = cfg(KEYCLOAK);
        let properties = with_payload(json!({"email": "alice@example.com"}));
        let refusal = plan_with_properties(&config, &[], &properties).unwrap_err();
        assert_eq!(refusal.reason, Reason::UntrustedPeer);
        assert!(refusal.detail.contains("set_filter_state"), "{refusal:?}");
        let mut ipv6 = with_payload(json!({"email": "alice@example.com"}));
        ipv6.source_address = Some(b"[fd00::7]:80".to_vec());
        let plan = plan_with_properties(&config, &[], &ipv6).unwrap();
        assert!(added(&plan).contains(&("impersonate-extra-client-address".into(), "fd00::7".into())));
    }

    #[test]
    fn claims_are_checked_as_go_will_read_them() {
        // Go's header reader trims spaces and tabs: " system:masters" reaches the API server as
        // system:masters, so the filter checks (and sends) the trimmed value.
        let plain = cfg(r#"{"identity":{"jwt":{"groups_claim":"groups","uid_claim":"uid"}}}"#);
        for payload in [
            json!({"sub": "  system:admin"}),
            json!({"sub": "bob", "groups": [" system:masters"]}),
            json!({"sub": "bob", "groups": ["dev", " system:masters  "]}),
        ] {
            assert_eq!(jwt_refusal(&plain, payload.clone()).reason, Reason::IdentityForbidden, "{payload}");
        }
        // A tab is a control character: refused before trimming matters.
        assert_eq!(jwt_refusal(&plain, json!({"sub": "\tsystem:admin"})).reason, Reason::IdentityMalformed);
        assert_eq!(jwt_refusal(&plain, json!({"sub": "   "})).reason, Reason::IdentityMissing);
        let plan = plan_with_properties(
            &plain,
            &[],
            &with_payload(json!({"sub": " bob ", "groups": ["  ", " dev "], "uid": " 42 "})),
        )
        .unwrap();
        assert_eq!(
            added(&plan),
            vec![
                ("impersonate-user".into(), "bob".into()),
                ("impersonate-group".into(), "dev".into()),
                ("impersonate-uid".into(), "42".into()),
            ]
        );
        // Only what Go trims: a no-break space is part of the value for Go too.
        let plan = plan_with_properties(&plain, &[], &with_payload(json!({"sub": "\u{a0}system:admin"}))).unwrap();
        assert_eq!(plan.user(), Some("\u{a0}system:admin"));
    }

    #[test]
    fn email_as_user_needs_a_verified_address() {
        let if_present = cfg(r#"{"identity":{"jwt":{"user_claim":"email"}}}"#);
        let required = cfg(r#"{"identity":{"jwt":{"user_claim":"email","email_verified":"required"}}}"#);
        let ok = |config: &FilterConfig, payload: serde_json::Value| {
            plan_with_properties(config, &[], &with_payload(payload)).map(|plan| plan.user().map(str::to_string))
        };
        let alice = "alice@example.com";
        assert_eq!(ok(&if_present, json!({"email": alice})).unwrap().as_deref(), Some(alice));
        assert_eq!(ok(&if_present, json!({"email": alice, "email_verified": true})).unwrap().as_deref(), Some(alice));
        assert_eq!(ok(&required, json!({"email": alice, "email_verified": true})).unwrap().as_deref(), Some(alice));
        for (config, payload) in [
            (&if_present, json!({"email": alice, "email_verified": false})),
            (&if_present, json!({"email": alice, "email_verified": "true"})),
            (&required, json!({"email": alice})),
            (&required, json!({"email": alice, "email_verified": false})),
        ] {
            assert_eq!(jwt_refusal(config, payload.clone()).reason, Reason::EmailUnverified, "{payload}");
        }
        // Another user claim: email_verified is not the API server's business, nor the filter's.
        let by_sub = cfg(r#"{"identity":{"jwt":{}}}"#);
        assert!(ok(&by_sub, json!({"sub": "x", "email_verified": false})).is_ok());
    }
}

#[test]
fn header_values_are_checked_as_go_will_read_them() {
    let config = oauth2_proxy();
    for list in [
        &[("x-forwarded-user", &b" system:admin"[..])][..],
        &[("x-forwarded-user", b"  system:admin ")],
        &[("x-forwarded-user", b"bob"), ("x-forwarded-groups", b"dev,  system:masters")],
        &[("x-forwarded-user", b"bob"), ("x-forwarded-groups", b" system:masters")],
    ] {
        assert_eq!(refusal(&config, list).reason, Reason::IdentityForbidden, "{list:?}");
    }
    let prefixed = cfg(r#"{"identity":{"preset":"oauth2-proxy","group_prefix":"sso:","static_groups":["  viewers "]}}"#);
    let plan = plan(&prefixed, &headers(&[("x-forwarded-user", b" bob "), ("x-forwarded-groups", b" dev ,ops ")])).unwrap();
    assert_eq!(
        added(&plan),
        vec![
            ("impersonate-user".into(), "bob".into()),
            ("impersonate-group".into(), "sso:dev".into()),
            ("impersonate-group".into(), "sso:ops".into()),
            ("impersonate-group".into(), "viewers".into()),
        ]
    );
}

#[test]
fn control_character_check_on_bytes_matches_char_is_control() {
    for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
        let text = format!("a{c}b");
        assert_eq!(has_control_characters(&text), c.is_control(), "U+{:04X}", c as u32);
    }
    // Bytes 0x80-0x9F as continuation bytes of other characters are not C1 controls.
    assert!(!has_control_characters("\u{100}\u{11F}\u{7FF}\u{2000}"));
}

#[test]
fn header_values_are_borrowed_without_prefix_and_nothing_spills() {
    let config = oauth2_proxy();
    let list = headers(&[
        ("x-forwarded-user", b"alice"),
        ("x-forwarded-groups", b"dev, ops ,kiali-viewers"),
        ("x-forwarded-email", b"alice@example.com"),
        ("impersonate-user", b"admin"),
        ("Impersonate-Group", b"system:masters"),
    ]);
    let plan = plan(&config, &list).unwrap();
    assert!(plan
        .add
        .iter()
        .all(|(_, value)| matches!(value, Cow::Borrowed(_))));
    assert!(!plan.add.spilled() && !plan.remove.spilled());
    assert_eq!(plan.user(), Some("alice"));
}

#[test]
fn prefixed_groups_are_deduplicated_before_prefixing() {
    let config = cfg(
        r#"{"identity":{"preset":"oauth2-proxy","group_prefix":"oidc:","static_groups":["oidc:dev","viewers"]}}"#,
    );
    let list = headers(&[
        ("x-forwarded-user", b"alice"),
        ("x-forwarded-groups", b"dev,ops,dev"),
        ("x-forwarded-groups", b"ops"),
    ]);
    let plan = plan(&config, &list).unwrap();
    assert_eq!(groups(&plan), ["oidc:dev", "oidc:ops", "viewers"]);
}

#[test]
fn multi_character_separator_splits_like_before() {
    let config = cfg(r#"{"identity":{"preset":"oauth2-proxy","groups_separator":"; "}}"#);
    // The header is trimmed before it is split: "a; b;c;" holds "a" and "b;c;".
    let list = headers(&[("x-forwarded-user", b"alice"), ("x-forwarded-groups", b"a; b;c; ")]);
    let plan = plan(&config, &list).unwrap();
    assert_eq!(groups(&plan), ["a", "b;c;"]);
}

/// `http::apply_edits` adds a line without Envoy's replace when its name is not among the
/// removals: sound only because every added name is an `impersonate-*` header, and every such
/// header of the request is removed.
#[test]
fn every_added_name_is_an_impersonation_header_and_every_sent_one_is_removed() {
    let config = cfg(
        r#"{"identity":{"user_header":"x-user","groups_header":"x-groups","uid_header":"x-uid",
            "extra_headers":{"email":"x-email"},"static_groups":["viewers"]}}"#,
    );
    let list: &[(&str, &[u8])] = &[
        ("x-user", b"alice"),
        ("x-groups", b"dev,ops"),
        ("x-uid", b"42"),
        ("x-email", b"alice@example.com"),
        ("IMPERSONATE-GROUP", b"system:masters"),
        ("Impersonate-Extra-Email", b"mallory@example.com"),
    ];
    let plan = plan(&config, &headers(list)).unwrap();
    assert!(plan.add.len() >= 6, "{:?}", added(&plan));
    for (name, _) in &plan.add {
        assert!(is_impersonation_header(name.as_bytes()), "{name}");
    }
    for (name, _) in list.iter().filter(|(n, _)| is_impersonation_header(n.as_bytes())) {
        assert!(plan.remove.iter().any(|r| r.eq_ignore_ascii_case(name.as_bytes())), "{name}");
    }
}

#[test]
fn allowed_users_and_groups_admit_after_prefixes_and_never_by_static_groups() {
    let config = cfg(
        r#"{"identity":{"preset":"oauth2-proxy","group_prefix":"sso:","static_groups":["everyone"],
            "allowed_users":["carol"],"allowed_groups":["sso:kiali-admins","everyone"]}}"#,
    );
    let admitted = |list: &[(&str, &[u8])]| plan(&config, &headers(list)).is_ok();
    assert!(admitted(&[("x-forwarded-user", b"alice"), ("x-forwarded-groups", b"dev,kiali-admins")]));
    assert!(admitted(&[("x-forwarded-user", b"carol")]));
    // `kiali-admins` unprefixed, a group only the configuration adds, a user who is a group name.
    for list in [
        &[("x-forwarded-user", &b"bob"[..]), ("x-forwarded-groups", b"dev")][..],
        &[("x-forwarded-user", b"bob")],
        &[("x-forwarded-user", b"sso:kiali-admins")],
    ] {
        assert_eq!(refusal(&config, list).reason, Reason::IdentityNotAllowed, "{list:?}");
    }
    let jwt = cfg(r#"{"identity":{"jwt":{"groups_claim":"groups"},"allowed_groups":["ops"]}}"#);
    let with = |payload: serde_json::Value| {
        let properties = RequestProperties {
            dynamic_metadata: Some(metadata::encode::metadata("envoy.filters.http.jwt_authn", "payload", &payload)),
            ..RequestProperties::default()
        };
        plan_with_properties(&jwt, &[], &properties).map(|_| ()).map_err(|refusal| refusal.reason)
    };
    assert_eq!(with(serde_json::json!({"sub": "dan", "groups": ["ops"]})), Ok(()));
    assert_eq!(with(serde_json::json!({"sub": "dan", "groups": ["dev"]})), Err(Reason::IdentityNotAllowed));
}
