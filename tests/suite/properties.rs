//! Property tests on the pure logic: no input makes it panic, stripping is complete (for a
//! request that is forwarded and for one that is refused), and a mapped identity never carries a
//! `system:` entry unless allowed.

use std::sync::atomic::{AtomicUsize, Ordering};

use kiali_header_auth::config::FilterConfig;
use kiali_header_auth::identity::{self, is_impersonation_header, is_system_identity};
use kiali_header_auth::refusal::Reason;
use kiali_header_auth::token::response;
use kiali_header_auth::token::state::SharedState;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

fn configs() -> Vec<FilterConfig> {
    [
        "",
        r#"{"identity":{"preset":"oauth2-proxy"}}"#,
        r#"{"identity":{"preset":"authentik","max_groups":3,"max_value_bytes":16}}"#,
        r#"{"identity":{"preset":"oauth2-proxy","user_prefix":"oidc:","group_prefix":"oidc:","static_groups":["viewers"]}}"#,
        r#"{"identity":{"user_header":"x-u","groups_header":"x-g","groups_separator":";","uid_header":"x-id",
            "extra_headers":{"a-b":"x-e"},"remove_identity_headers":false}}"#,
        r#"{"identity":{"preset":"oauth2-proxy","allowed_users":["alice"],"allowed_groups":["dev"]}}"#,
    ]
    .iter()
    .map(|json| FilterConfig::from_json(json.as_bytes()).unwrap())
    .collect()
}

/// Header names drawn from the interesting ones (in random letter case) and from noise.
fn header_name() -> impl Strategy<Value = Vec<u8>> {
    let known = prop_oneof![
        Just("impersonate-user".to_string()),
        Just("impersonate-group".to_string()),
        Just("impersonate-uid".to_string()),
        Just("impersonate-extra-scopes".to_string()),
        Just("impersonate-".to_string()),
        Just("x-forwarded-user".to_string()),
        Just("x-forwarded-groups".to_string()),
        Just("x-forwarded-email".to_string()),
        Just("x-authentik-username".to_string()),
        Just("x-authentik-groups".to_string()),
        Just("x-authentik-uid".to_string()),
        Just("x-u".to_string()),
        Just("x-g".to_string()),
        Just("x-e".to_string()),
        "[a-z-]{0,20}".prop_map(|s| s),
    ];
    (known, any::<u64>()).prop_map(|(name, mask)| {
        name.bytes()
            .enumerate()
            .map(|(i, b)| if mask >> (i % 64) & 1 == 1 { b.to_ascii_uppercase() } else { b })
            .collect()
    })
}

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        "[ a-zA-Z0-9:,|;.@ü-]{0,80}".prop_map(|s| s.into_bytes()),
        Just(b"system:masters".to_vec()),
        Just(b"dev, system:admin ,ops".to_vec()),
        Just(b"SYSTEM:serviceaccount:x".to_vec()),
    ]
}

/// `impersonate-*` names in random letter case, with a value no other header carries.
fn marked_impersonation_header() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let names = prop_oneof![
        Just("impersonate-user"),
        Just("impersonate-group"),
        Just("impersonate-uid"),
        Just("impersonate-extra-email"),
        Just("impersonate-extra-acme.com%2fteam"),
    ];
    (names, any::<u64>(), 0u32..1000).prop_map(|(name, mask, n)| {
        let name = name
            .bytes()
            .enumerate()
            .map(|(i, b)| if mask >> (i % 64) & 1 == 1 { b.to_ascii_uppercase() } else { b })
            .collect();
        (name, format!("client-chosen-{n:03}-KHAMARK").into_bytes())
    })
}

/// The oracle, written apart from the filter's `is_impersonation_header`: the name starts with
/// `impersonate-` in any letter case (what the API server's impersonation filter reads).
fn names_impersonation(name: &[u8]) -> bool {
    name.to_ascii_lowercase().starts_with(b"impersonate-")
}

/// The headers Envoy holds after `remove_header` of each name in `removals` (every copy, any
/// letter case: header maps compare names without case).
fn after_removals<'h>(pairs: &[(&'h [u8], &'h [u8])], removals: &[&[u8]]) -> Vec<(&'h [u8], &'h [u8])> {
    pairs
        .iter()
        .filter(|(name, _)| !removals.iter().any(|r| r.eq_ignore_ascii_case(name)))
        .copied()
        .collect()
}

/// The refused case, property-checked: whatever the planner refuses, the filter's refusal path
/// (`RequestContext::refuse_unedited` in src/http.rs) removes every client `impersonate-*` header
/// it can see with `identity::collect_impersonation_headers`, so none is left for the local reply,
/// its access log, or any filter after this one; the refusal is one the planner may give (a 4xx
/// identity refusal, never a token or RBAC one), and its text, which reaches the client and the
/// log, never echoes a client's `Impersonate-*` value. The forwarded case is checked the same way:
/// after the plan's edits, the only `impersonate-*` headers are the ones the plan added.
#[test]
fn refused_or_forwarded_no_client_impersonation_header_survives() {
    let refused = AtomicUsize::new(0);
    let forwarded = AtomicUsize::new(0);
    let mut runner = TestRunner::new(ProptestConfig { cases: 2000, ..ProptestConfig::default() });
    let strategy = (
        proptest::collection::vec((header_name(), header_value()), 0..16),
        proptest::collection::vec(marked_impersonation_header(), 0..4),
        any::<proptest::sample::Index>(),
    );
    runner
        .run(&strategy, |(mut headers, marked, at)| {
            // The client's own impersonation headers, anywhere among the others.
            for (offset, header) in marked.iter().enumerate() {
                let position = (at.index(headers.len() + 1) + offset).min(headers.len());
                headers.insert(position, header.clone());
            }
            let pairs: Vec<(&[u8], &[u8])> = headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())).collect();
            let client_lines = pairs.iter().filter(|(n, _)| names_impersonation(n)).count() as u32;
            for config in configs() {
                match identity::plan(&config, &pairs) {
                    Err(refusal) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        prop_assert!(
                            matches!(
                                refusal.reason,
                                Reason::IdentityMissing | Reason::IdentityForbidden | Reason::IdentityMalformed | Reason::IdentityNotAllowed
                            ),
                            "{:?}",
                            refusal
                        );
                        prop_assert!((400..500).contains(&refusal.reason.status()));
                        let mut names = identity::Removals::new();
                        prop_assert_eq!(identity::collect_impersonation_headers(&pairs, &mut names), client_lines);
                        let left = after_removals(&pairs, &names);
                        prop_assert!(left.iter().all(|(n, _)| !names_impersonation(n)), "left: {:?}", left);
                        prop_assert_eq!(left.len(), pairs.len() - client_lines as usize, "only those were removed");
                        let body = refusal.json_body();
                        let parsed: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
                        prop_assert_eq!(parsed["reason"].as_str(), Some(refusal.reason.as_str()));
                        prop_assert!(!refusal.detail.chars().any(char::is_control));
                        prop_assert!(!body.contains("KHAMARK"), "the refusal echoes a client Impersonate-* value: {}", body);
                    }
                    Ok(plan) => {
                        forwarded.fetch_add(1, Ordering::Relaxed);
                        let left = after_removals(&pairs, &plan.remove);
                        prop_assert!(left.iter().all(|(n, _)| !names_impersonation(n)), "left: {:?}", left);
                        prop_assert!(plan.add.iter().all(|(_, v)| !v.contains("KHAMARK")), "{:?}", plan.add);
                    }
                }
            }
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
    // Both outcomes were exercised, many times.
    let (refused, forwarded) = (refused.into_inner(), forwarded.into_inner());
    assert!(refused >= 1000 && forwarded >= 1000, "refused {refused}, forwarded {forwarded}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn planner_never_panics_strips_everything_and_never_maps_system(
        headers in proptest::collection::vec((header_name(), header_value()), 0..24)
    ) {
        let pairs: Vec<(&[u8], &[u8])> = headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())).collect();
        for config in configs() {
            // The refused case: `refused_or_forwarded_no_client_impersonation_header_survives`.
            let Ok(plan) = identity::plan(&config, &pairs) else { continue };
            // Every client impersonation header is on the removal list.
            for (name, _) in &pairs {
                if is_impersonation_header(name) {
                    prop_assert!(plan.remove.iter().any(|r| r.eq_ignore_ascii_case(name)));
                }
            }
            let stripped = pairs.iter().filter(|(n, _)| is_impersonation_header(n)).count() as u32;
            prop_assert_eq!(plan.stripped_impersonation_headers, stripped);
            // What is added is clean: lowercase impersonate-* names, no system: identities,
            // no control characters.
            for (name, value) in &plan.add {
                prop_assert!(name.starts_with("impersonate-"));
                prop_assert!(!value.chars().any(char::is_control));
                // Nothing Go's header reader would trim: the API server reads what was checked.
                prop_assert_eq!(identity::trim_like_go(value), value.as_ref());
                if *name == "impersonate-user" || *name == "impersonate-group" {
                    prop_assert!(!is_system_identity(value), "{} {}", name, value);
                }
            }
            let users = plan.add.iter().filter(|(n, _)| *n == "impersonate-user").count();
            prop_assert_eq!(users, usize::from(config.identity.is_some()));
        }
    }

    #[test]
    fn config_parser_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = FilterConfig::from_json(&bytes);
    }

    #[test]
    fn config_parser_never_panics_on_json_like_text(
        text in r#"\{("(identity|token_source|trusted_peers|preset|type|max_groups|source_cidrs|x)":(\{|\[|"[a-z0-9_/:.-]{0,12}"|[0-9-]{1,6}|null|true)[,}\]]?){0,8}"#
    ) {
        if let Err(error) = FilterConfig::from_json(text.as_bytes()) {
            prop_assert!(error.to_string().starts_with("invalid plugin configuration"));
        }
    }

    #[test]
    fn token_parsers_never_panic_and_only_accept_header_safe_tokens(
        status in proptest::option::of(100u16..600),
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..128),
            r#"\{"status":\{"token":"[ -~]{0,20}","expirationTimestamp":"[0-9TZ:+.-]{0,25}"\}\}"#.prop_map(|s| s.into_bytes()),
            r#"\{"access_token":"[ -~]{0,20}","expires_in":("[0-9a-z ]{0,5}"|[0-9-]{1,12}|null|1e9|\{\})\}"#.prop_map(|s| s.into_bytes()),
        ],
        now in 0u64..4_000_000_000_000,
    ) {
        let config = FilterConfig::from_json(br#"{"identity":{"preset":"oauth2-proxy"},"token_source":{"type":"kubernetes_token_request","cluster":"c","namespace":"n","service_account":"s"}}"#).unwrap();
        let oauth = FilterConfig::from_json(br#"{"identity":{"preset":"oauth2-proxy"},"token_source":{"type":"oauth2_client_credentials","cluster":"c","authority":"a","token_path":"/t","client_id":"c","client_secret_env":"S"}}"#).unwrap();
        for config in [&config, &oauth] {
            let kind = &config.token_source.as_ref().unwrap().kind;
            if let Ok(token) = response::parse(kind, status, &body, now) {
                prop_assert!(!token.token.is_empty());
                prop_assert!(token.token.bytes().all(|b| (0x21..=0x7e).contains(&b)));
                prop_assert!(token.expires_at_ms > now);
            }
        }
    }

    #[test]
    fn shared_state_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128), now in any::<u64>()) {
        let state = SharedState::decode(&bytes);
        let _ = state.usable_token(now);
        let _ = state.needs_fetch(now);
    }

    #[test]
    fn json_path_never_panics(text in proptest::collection::vec(any::<u8>(), 0..128), offset in 0usize..200) {
        let _ = kiali_header_auth::json_path::path_at(&text, offset);
    }
}
