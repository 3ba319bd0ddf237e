use super::*;

fn parse(json: &str) -> Result<FilterConfig, ConfigError> {
    FilterConfig::from_json(json.as_bytes())
}

fn error(json: &str) -> ConfigError {
    match parse(json) {
        Ok(_) => panic!("expected {json} to be rejected"),
        Err(error) => error,
    }
}

#[test]
fn empty_configuration_is_strip_only() {
    for text in ["", "  \n", "{}"] {
        let config = parse(text).unwrap();
        assert_eq!(config.mode(), Mode::StripOnly);
        assert!(config.identity.is_none() && config.token_source.is_none());
    }
}

#[test]
fn oauth2_proxy_preset_fills_headers() {
    let config = parse(r#"{"identity":{"preset":"oauth2-proxy"}}"#).unwrap();
    assert_eq!(config.mode(), Mode::MapIdentity);
    let identity = config.identity.unwrap();
    assert_eq!(identity.user_header, "x-forwarded-user");
    assert_eq!(identity.groups_header.as_deref(), Some("x-forwarded-groups"));
    assert_eq!(identity.groups_separator, ",");
    assert_eq!(identity.uid_header, None);
    assert_eq!(
        identity.extras,
        vec![ExtraMapping {
            key: "email".into(),
            source_header: "x-forwarded-email".into(),
            output_header: "impersonate-extra-email".into()
        }]
    );
    assert_eq!(identity.max_groups, DEFAULT_MAX_GROUPS);
    assert!(identity.remove_identity_headers);
    assert!(!identity.allow_system_identities);
}

#[test]
fn explicit_fields_override_the_preset() {
    let config = parse(
        r#"{"identity":{"preset":"oauth2-proxy-auth-request","user_header":"X-Custom-User",
            "groups_header":null,"extra_headers":{"Acme.com-Team":"x-team"},"uid_header":"x-uid"}}"#,
    )
    .unwrap();
    let identity = config.identity.unwrap();
    assert_eq!(identity.user_header, "x-custom-user");
    assert_eq!(identity.groups_header, None);
    assert_eq!(identity.uid_header.as_deref(), Some("x-uid"));
    assert_eq!(identity.extras.len(), 1);
    assert_eq!(identity.extras[0].key, "acme.com-team");
    assert_eq!(identity.extras[0].output_header, "impersonate-extra-acme.com-team");
}

#[test]
fn every_preset_parses() {
    for name in PRESET_NAMES {
        let config = parse(&format!(r#"{{"identity":{{"preset":"{name}"}}}}"#)).unwrap();
        assert!(config.identity.is_some(), "{name}");
    }
    let authentik = parse(r#"{"identity":{"preset":"authentik"}}"#).unwrap().identity.unwrap();
    assert_eq!(authentik.groups_separator, "|");
    assert_eq!(authentik.uid_header.as_deref(), Some("x-authentik-uid"));
}

#[test]
fn unknown_fields_are_named() {
    let err = error(r#"{"identty":{}}"#);
    assert_eq!(err.field, "identty");
    assert!(err.message.contains("unknown field `identty`"), "{err}");
    let err = error(r#"{"identity":{"preset":"oauth2-proxy","user_headr":"x"}}"#);
    assert_eq!(err.field, "identity.user_headr");
    assert!(err.message.contains("remove it or fix its spelling"), "{err}");
    let err = error(r#"{"identity":{"preset":"oauth2-proxy"},"token_source":{"type":"kubernetes_token_request","cluster":"c","namespace":"n","service_account":"s","audience":"x"}}"#);
    assert!(err.to_string().contains("audience"), "{err}");
}

#[test]
fn wrong_types_name_the_field() {
    let err = error(r#"{"identity":{"preset":"oauth2-proxy","max_groups":"many"}}"#);
    assert_eq!(err.field, "identity.max_groups");
    let err = error(r#"{"max_request_wait_ms":-1}"#);
    assert_eq!(err.field, "max_request_wait_ms");
    let err = error(r#"[1,2]"#);
    assert!(err.to_string().starts_with("invalid plugin configuration"));
    let err = error(r#"{} trailing"#);
    assert!(err.message.contains("trailing"), "{err}");
}

#[test]
fn invalid_values_are_rejected_with_their_field() {
    let cases = [
        (r#"{"identity":{}}"#, "identity.user_header"),
        (r#"{"identity":{"preset":"nope"}}"#, "identity.preset"),
        (r#"{"identity":{"user_header":"bad header"}}"#, "identity.user_header"),
        (r#"{"identity":{"user_header":"Impersonate-User"}}"#, "identity.user_header"),
        (r#"{"identity":{"user_header":"authorization"}}"#, "identity.user_header"),
        (r#"{"identity":{"preset":"oauth2-proxy","groups_separator":""}}"#, "identity.groups_separator"),
        (r#"{"identity":{"preset":"oauth2-proxy","max_groups":0}}"#, "identity.max_groups"),
        (r#"{"identity":{"preset":"oauth2-proxy","max_groups":100000}}"#, "identity.max_groups"),
        (r#"{"identity":{"preset":"oauth2-proxy","max_value_bytes":1}}"#, "identity.max_value_bytes"),
        (r#"{"identity":{"preset":"oauth2-proxy","static_groups":["system:masters"]}}"#, "identity.static_groups[0]"),
        (r#"{"identity":{"preset":"oauth2-proxy","static_groups":["ok",""]}}"#, "identity.static_groups[1]"),
        (r#"{"identity":{"preset":"oauth2-proxy","extra_headers":{"":"x-a"}}}"#, "identity.extra_headers."),
        (r#"{"identity":{"preset":"oauth2-proxy","extra_headers":{"a":"x-a","A":"x-b"}}}"#, "identity.extra_headers.a"),
        (r#"{"identity":{"preset":"oauth2-proxy","uid_header":"x-forwarded-user"}}"#, "identity.uid_header"),
        (r#"{"identity":{"preset":"oauth2-proxy","user_prefix":"a\u0001"}}"#, "identity.user_prefix"),
        (r#"{"trusted_peers":{}}"#, "trusted_peers"),
        (r#"{"trusted_peers":{"source_cidrs":["10.0.0.0/40"]}}"#, "trusted_peers.source_cidrs[0]"),
        (r#"{"trusted_peers":{"principals":[" "]}}"#, "trusted_peers.principals[0]"),
        (r#"{"max_request_wait_ms":0}"#, "max_request_wait_ms"),
        (r#"{"max_waiting_requests":0}"#, "max_waiting_requests"),
    ];
    for (json, field) in cases {
        let err = error(json);
        assert_eq!(err.field, field, "{json}: {err}");
        assert!(err.to_string().contains(field), "{err}");
    }
}

const K8S: &str = r#""type":"kubernetes_token_request","cluster":"outbound|443||kubernetes.default.svc.cluster.local","namespace":"kiali-auth","service_account":"kiali-impersonator""#;

#[test]
fn kubernetes_token_source_defaults() {
    let config = parse(&format!(
        r#"{{"identity":{{"preset":"oauth2-proxy"}},"token_source":{{{K8S}}}}}"#
    ))
    .unwrap();
    assert_eq!(config.mode(), Mode::FullImpersonation);
    let source = config.token_source.unwrap();
    assert_eq!(source.authority, "kubernetes.default.svc");
    assert_eq!(source.timeout, Duration::from_millis(2000));
    assert_eq!(
        source.kind,
        TokenSourceKind::KubernetesTokenRequest {
            namespace: "kiali-auth".into(),
            service_account: "kiali-impersonator".into(),
            audiences: vec![],
            expiration_seconds: 600,
            credential_env: None,
        }
    );
    assert_eq!(config.max_request_wait, Duration::from_millis(5000));
    assert!(source.cache_key().starts_with("kiali-header-auth/v1/token/"));
}

#[test]
fn token_source_without_identity_is_refused() {
    let err = error(&format!(r#"{{"token_source":{{{K8S}}}}}"#));
    assert_eq!(err.field, "token_source");
    assert!(err.message.contains("identity"), "{err}");
}

#[test]
fn token_source_values_are_checked() {
    let with = |extra: &str| {
        error(&format!(
            r#"{{"identity":{{"preset":"oauth2-proxy"}},"token_source":{{{K8S},{extra}}}}}"#
        ))
    };
    assert_eq!(with(r#""expiration_seconds":60"#).field, "token_source.expiration_seconds");
    assert_eq!(with(r#""credential_env":"9BAD""#).field, "token_source.credential_env");
    assert_eq!(with(r#""timeout_ms":0"#).field, "token_source.timeout_ms");
    assert_eq!(with(r#""retry_initial_ms":5"#).field, "token_source.retry_initial_ms");
    assert_eq!(with(r#""retry_initial_ms":1000,"retry_max_ms":500"#).field, "token_source.retry_max_ms");
    assert_eq!(with(r#""audiences":[""]"#).field, "token_source.audiences[0]");
    let err = error(
        r#"{"identity":{"preset":"oauth2-proxy"},"token_source":{"type":"kubernetes_token_request","cluster":"c","namespace":"Bad_NS","service_account":"s"}}"#,
    );
    assert_eq!(err.field, "token_source.namespace");
    let err = error(
        r#"{"identity":{"preset":"oauth2-proxy"},"token_source":{"type":"mystery","cluster":"c"}}"#,
    );
    assert_eq!(err.field, "token_source.type");
    assert!(err.message.contains("mystery"), "{err}");
}

#[test]
fn oauth2_source_parses() {
    let config = parse(
        r#"{"identity":{"preset":"oauth2-proxy"},"token_source":{"type":"oauth2_client_credentials",
            "cluster":"idp","authority":"idp.example","token_path":"/token","client_id":"kiali",
            "client_secret_env":"CLIENT_SECRET","scope":"","audience":"k8s"}}"#,
    )
    .unwrap();
    let source = config.token_source.unwrap();
    assert_eq!(source.type_name(), "oauth2_client_credentials");
    assert_eq!(
        source.kind,
        TokenSourceKind::OAuth2ClientCredentials {
            token_path: "/token".into(),
            client_id: "kiali".into(),
            client_secret_env: "CLIENT_SECRET".into(),
            scope: None,
            audience: Some("k8s".into()),
        }
    );
    let err = error(
        r#"{"identity":{"preset":"oauth2-proxy"},"token_source":{"type":"oauth2_client_credentials",
            "cluster":"idp","authority":"idp.example","token_path":"token","client_id":"kiali",
            "client_secret_env":"S"}}"#,
    );
    assert_eq!(err.field, "token_source.token_path");
}

#[test]
fn issue_example_configuration_is_valid() {
    let config = parse(
        r#"{
  "identity": {
    "preset": "oauth2-proxy",
    "user_header": "x-forwarded-user",
    "groups_header": "x-forwarded-groups",
    "groups_separator": ",",
    "uid_header": null,
    "extra_headers": { "email": "x-forwarded-email" },
    "user_prefix": "",
    "group_prefix": "",
    "static_groups": [],
    "allow_system_identities": false,
    "max_groups": 100,
    "remove_identity_headers": true
  },
  "trusted_peers": { "principals": ["spiffe://cluster.local/ns/auth/sa/oauth2-proxy"], "source_cidrs": [] },
  "token_source": {
    "type": "kubernetes_token_request",
    "cluster": "outbound|443||kubernetes.default.svc.cluster.local",
    "authority": "kubernetes.default.svc",
    "namespace": "kiali-auth",
    "service_account": "kiali-impersonator",
    "audiences": [],
    "expiration_seconds": 600,
    "credential_env": "TOKEN_REQUESTER_BEARER",
    "timeout_ms": 2000
  },
  "max_request_wait_ms": 5000
}"#,
    )
    .unwrap();
    assert_eq!(config.mode(), Mode::FullImpersonation);
    assert!(config.trusted_peers.is_some());
}

#[test]
fn fields_of_the_other_source_type_are_rejected() {
    let err = error(&format!(
        r#"{{"identity":{{"preset":"oauth2-proxy"}},"token_source":{{{K8S},"client_id":"x"}}}}"#
    ));
    assert_eq!(err.field, "token_source.client_id");
    let err = error(
        r#"{"identity":{"preset":"oauth2-proxy"},"token_source":{"type":"oauth2_client_credentials",
            "cluster":"idp","authority":"a","token_path":"/t","client_id":"c","client_secret_env":"S",
            "namespace":"n"}}"#,
    );
    assert_eq!(err.field, "token_source.namespace");
    let err = error(r#"{"identity":{"preset":"oauth2-proxy"},"token_source":{"cluster":"c"}}"#);
    assert_eq!(err.field, "token_source.type");
    let err = error(
        r#"{"identity":{"preset":"oauth2-proxy"},"token_source":{"type":"kubernetes_token_request","cluster":"c","namespace":"n"}}"#,
    );
    assert_eq!(err.field, "token_source.service_account");
}

#[test]
fn missing_fields_and_nested_type_errors_name_the_path() {
    let err = error(r#"{"trusted_peers":{"source_cidrs":["10.0.0.0/8", 7]}}"#);
    assert_eq!(err.field, "trusted_peers.source_cidrs[1]");
    let err = error("{\n  \"identity\": {\n    \"static_groups\": \"dev\"\n  }\n}");
    assert_eq!(err.field, "identity.static_groups");
    let err = error(r#"{"identity": {"preset": "oauth2-proxy"}"#);
    assert_eq!(err.field, "");
    assert!(err.message.contains("not valid JSON"), "{err}");
}

#[test]
fn jwt_identity_defaults_and_the_issue_example() {
    let config = parse(r#"{"identity":{"jwt":{}}}"#).unwrap();
    assert_eq!(config.mode(), Mode::MapIdentity);
    let identity = config.identity.unwrap();
    let jwt = identity.jwt.unwrap();
    assert_eq!(jwt.metadata_namespace, "envoy.filters.http.jwt_authn");
    assert_eq!(jwt.payload_key, "payload");
    assert_eq!(jwt.user_claim.keys, vec!["sub"]);
    assert_eq!((jwt.groups_claim, jwt.uid_claim), (None, None));
    assert!(jwt.extra_claims.is_empty() && identity.audit_extras.is_empty());
    // No header is read or removed in JWT mode.
    assert_eq!((identity.user_header.as_str(), identity.groups_header), ("", None));
    assert!(identity.extras.is_empty() && !identity.remove_identity_headers);

    let config = parse(
        r#"{ "identity": { "jwt": {
       "metadata_namespace": "envoy.filters.http.jwt_authn",
       "payload_key": "verified",
       "user_claim": "email",
       "groups_claim": "groups",
       "uid_claim": "sub",
       "extra_claims": { "email": "email" } },
     "user_prefix": "oidc:", "group_prefix": "oidc:" } }"#,
    )
    .unwrap();
    let identity = config.identity.unwrap();
    let jwt = identity.jwt.unwrap();
    assert_eq!(jwt.payload_key, "verified");
    assert_eq!(jwt.user_claim.display, "email");
    assert_eq!(jwt.groups_claim.unwrap().keys, vec!["groups"]);
    assert_eq!(
        jwt.extra_claims,
        vec![ExtraClaim {
            key: "email".into(),
            claim: ClaimPath { keys: vec!["email".into()], display: "email".into() },
            output_header: "impersonate-extra-email".into(),
        }]
    );
    assert_eq!(identity.user_prefix, "oidc:");
}

#[test]
fn jwt_claims_are_keys_or_paths() {
    let config = parse(
        r#"{"identity":{"jwt":{"groups_claim":["realm_access","roles"],
            "user_claim":"https://example.com/user.name","extra_claims":{"Acme.com-Team":["org","team"]}}}}"#,
    )
    .unwrap();
    let jwt = config.identity.unwrap().jwt.unwrap();
    assert_eq!(jwt.user_claim.keys, vec!["https://example.com/user.name"]);
    let groups = jwt.groups_claim.unwrap();
    assert_eq!(groups.keys, vec!["realm_access", "roles"]);
    assert_eq!(groups.display, "realm_access.roles");
    assert_eq!(jwt.extra_claims[0].key, "acme.com-team");
    assert_eq!(jwt.extra_claims[0].output_header, "impersonate-extra-acme.com-team");
}

#[test]
fn jwt_and_header_fields_are_mutually_exclusive() {
    let err = error(r#"{"identity":{"preset":"oauth2-proxy","jwt":{}}}"#);
    assert_eq!(err.field, "identity.jwt");
    assert!(err.message.contains("identity.preset"), "{err}");
    let err = error(r#"{"identity":{"jwt":{},"user_header":"x-user","groups_header":null,"remove_identity_headers":true}}"#);
    assert_eq!(err.field, "identity.jwt");
    for field in ["identity.user_header", "identity.groups_header", "identity.remove_identity_headers"] {
        assert!(err.message.contains(field), "{err}");
    }
}

#[test]
fn invalid_jwt_and_audit_values_are_rejected_with_their_field() {
    let cases = [
        (r#"{"identity":{"jwt":{"user_claim":[]}}}"#, "identity.jwt.user_claim"),
        (r#"{"identity":{"jwt":{"user_claim":["a",""]}}}"#, "identity.jwt.user_claim"),
        (r#"{"identity":{"jwt":{"groups_claim":"a\u0001"}}}"#, "identity.jwt.groups_claim"),
        (r#"{"identity":{"jwt":{"uid_claim":7}}}"#, "identity.jwt.uid_claim"),
        (r#"{"identity":{"jwt":{"groups_claim":["a",7]}}}"#, "identity.jwt.groups_claim[1]"),
        (r#"{"identity":{"jwt":{"metadata_namespace":" "}}}"#, "identity.jwt.metadata_namespace"),
        (r#"{"identity":{"jwt":{"payload_key":""}}}"#, "identity.jwt.payload_key"),
        (r#"{"identity":{"jwt":{"extra_claims":{"a":"x","A":"y"}}}}"#, "identity.jwt.extra_claims.a"),
        (r#"{"identity":{"jwt":{"extra_claims":{"":"x"}}}}"#, "identity.jwt.extra_claims."),
        (r#"{"identity":{"jwt":{"issuer":"x"}}}"#, "identity.jwt.issuer"),
        (r#"{"identity":{"jwt":{},"audit_extras":{"peer":"source_ip"}}}"#, "identity.audit_extras.peer"),
        (r#"{"identity":{"jwt":{},"audit_extras":{"a/b":"source_address"}}}"#, "identity.audit_extras.a/b"),
        (r#"{"identity":{"jwt":{},"audit_extras":{"100%":"source_address"}}}"#, "identity.audit_extras.100%"),
        (r#"{"identity":{"jwt":{"extra_claims":{"peer":"p"}},"audit_extras":{"Peer":"source_principal"}}}"#, "identity.audit_extras.Peer"),
        (r#"{"identity":{"preset":"oauth2-proxy","audit_extras":{"email":"source_address"}}}"#, "identity.audit_extras.email"),
    ];
    for (json, field) in cases {
        let err = error(json);
        assert_eq!(err.field, field, "{json}: {err}");
    }
}

#[test]
fn audit_extras_work_with_both_sources() {
    let config = parse(
        r#"{"identity":{"preset":"oauth2-proxy","audit_extras":{"Peer":"source_principal","client-address":"source_address"}}}"#,
    )
    .unwrap();
    assert_eq!(
        config.identity.unwrap().audit_extras,
        vec![
            AuditExtra {
                key: "client-address".into(),
                fact: ConnectionFact::SourceAddress,
                output_header: "impersonate-extra-client-address".into(),
            },
            AuditExtra {
                key: "peer".into(),
                fact: ConnectionFact::SourcePrincipal,
                output_header: "impersonate-extra-peer".into(),
            },
        ]
    );
    let config = parse(r#"{"identity":{"jwt":{},"audit_extras":{"peer":"source_principal"}}}"#).unwrap();
    assert_eq!(config.identity.unwrap().audit_extras.len(), 1);
}

#[test]
fn what_a_configuration_may_send_covers_both_sources_and_audit_extras() {
    let identity = parse(r#"{"identity":{"preset":"authentik","audit_extras":{"peer":"source_principal"}}}"#)
        .unwrap()
        .identity
        .unwrap();
    assert!(identity.may_send_groups() && identity.may_send_uid());
    assert_eq!(identity.extra_keys(), vec!["email", "peer"]);
    let identity = parse(r#"{"identity":{"jwt":{"extra_claims":{"team":"t"}},"audit_extras":{"client-address":"source_address"}}}"#)
        .unwrap()
        .identity
        .unwrap();
    assert!(!identity.may_send_groups() && !identity.may_send_uid());
    assert_eq!(identity.extra_keys(), vec!["team", "client-address"]);
    let identity = parse(r#"{"identity":{"jwt":{"groups_claim":"g","uid_claim":"sub"}}}"#)
        .unwrap()
        .identity
        .unwrap();
    assert!(identity.may_send_groups() && identity.may_send_uid());
}

#[test]
fn filter_state_for_access_logs_is_off_unless_asked_for() {
    let default = parse(r#"{"identity":{"preset":"oauth2-proxy"}}"#).unwrap();
    assert!(!default.access_log_filter_state, "one host call per request only when asked for");
    let asked = parse(r#"{"identity":{"preset":"oauth2-proxy"},"access_log_filter_state":true}"#).unwrap();
    assert!(asked.access_log_filter_state);
    let err = error(r#"{"access_log_filter_state":"yes"}"#);
    assert_eq!(err.field, "access_log_filter_state", "{err}");
}

#[test]
fn values_go_would_trim_are_refused_where_they_would_change_an_identity() {
    for (config, field) in [
        (r#"{"identity":{"preset":"oauth2-proxy","user_prefix":" x:"}}"#, "identity.user_prefix"),
        (r#"{"identity":{"preset":"oauth2-proxy","group_prefix":"\tsso:"}}"#, "identity.group_prefix"),
        (r#"{"identity":{"preset":"oauth2-proxy","static_groups":[" system:masters"]}}"#, "identity.static_groups[0]"),
    ] {
        assert_eq!(error(config).field, field, "{config}");
    }
    // A prefix may end with a space: the value after it is never empty.
    assert!(parse(r#"{"identity":{"preset":"oauth2-proxy","user_prefix":"sso: "}}"#).is_ok());
}

#[test]
fn extra_keys_kiali_cannot_carry_are_refused_everywhere() {
    for (config, field) in [
        (r#"{"identity":{"user_header":"x-user","extra_headers":{"acme.com/team":"x-team"}}}"#, "identity.extra_headers.acme.com/team"),
        (r#"{"identity":{"user_header":"x-user","extra_headers":{"100%":"x-team"}}}"#, "identity.extra_headers.100%"),
        (r#"{"identity":{"jwt":{"extra_claims":{"acme.com/team":"team"}}}}"#, "identity.jwt.extra_claims.acme.com/team"),
        (r#"{"identity":{"jwt":{"extra_claims":{"a b":"team"}}}}"#, "identity.jwt.extra_claims.a b"),
        (r#"{"identity":{"jwt":{},"audit_extras":{"a/b":"source_address"}}}"#, "identity.audit_extras.a/b"),
    ] {
        let error = error(config);
        assert_eq!(error.field, field, "{config}");
        assert!(error.message.contains("Kiali"), "{error}");
    }
}

#[test]
fn email_verified_only_with_the_email_claim() {
    let jwt = |config: &str| parse(config).map(|c| c.identity.unwrap().jwt.unwrap().email_verified);
    assert_eq!(jwt(r#"{"identity":{"jwt":{"user_claim":"email"}}}"#).unwrap(), Some(EmailVerified::IfPresent));
    assert_eq!(
        jwt(r#"{"identity":{"jwt":{"user_claim":"email","email_verified":"required"}}}"#).unwrap(),
        Some(EmailVerified::Required)
    );
    assert_eq!(jwt(r#"{"identity":{"jwt":{}}}"#).unwrap(), None);
    assert_eq!(error(r#"{"identity":{"jwt":{"email_verified":"required"}}}"#).field, "identity.jwt.email_verified");
    assert_eq!(
        error(r#"{"identity":{"jwt":{"user_claim":"email","email_verified":"yes"}}}"#).field,
        "identity.jwt.email_verified"
    );
}

#[test]
fn upstream_hosts_are_validated() {
    assert!(parse(r#"{"upstream_hosts":["kiali.istio-system.svc.cluster.local","kiali.example.com:443"]}"#)
        .unwrap()
        .upstream_hosts
        .is_some());
    assert_eq!(error(r#"{"upstream_hosts":[]}"#).field, "upstream_hosts");
    assert_eq!(error(r#"{"upstream_hosts":["ok","https://kiali"]}"#).field, "upstream_hosts[1]");
}

#[test]
fn allow_lists_are_validated() {
    assert!(parse(r#"{"identity":{"preset":"oauth2-proxy","allowed_groups":[" ops "]}}"#).unwrap().identity.unwrap().allowed.is_some());
    assert_eq!(error(r#"{"identity":{"preset":"oauth2-proxy","allowed_users":[]}}"#).field, "identity.allowed_users");
    assert_eq!(error(r#"{"identity":{"preset":"oauth2-proxy","allowed_groups":["ok",""]}}"#).field, "identity.allowed_groups[1]");
}

#[test]
fn logout_is_validated() {
    let logout = parse(r#"{"logout":{"path":"/kiali/logout","redirect":"/oauth2/sign_out?rd=%2Fkiali%2F"}}"#)
        .unwrap()
        .logout
        .unwrap();
    assert_eq!(logout.web_root, "/kiali");
    assert_eq!(error(r#"{"logout":{"path":"kiali/logout","redirect":"/x"}}"#).field, "logout.path");
    assert_eq!(error(r#"{"logout":{"path":"/l","redirect":"/x","web_root":"/a b"}}"#).field, "logout.web_root");
    assert_eq!(error(r#"{"logout":{"path":"/l","redirect":"/x\r\nSet-Cookie: a=b"}}"#).field, "logout.redirect");
    assert_eq!(error(r#"{"logout":{"path":"/l"}}"#).field, "logout.redirect");
}
