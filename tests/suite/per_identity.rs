//! `token_source.per_identity` end to end: one token per mapped identity, shared by every
//! worker, fetched once per identity, never given to another identity, dropped when idle, and a
//! bounded set. Through a real Envoy with the credential injector (the path users deploy), on
//! what the upstream and the token service received.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::tokens::{start_injected, TokenSetup, TOKEN_CLUSTER};
use common::*;
use harness::{Behavior, ClientRequest, EchoUpstream, Envoy, TokenService};

fn config(extra: &str) -> String {
    format!(
        r#"{{"identity":{{"preset":"oauth2-proxy"}},
            "token_source":{{"type":"kubernetes_token_request","cluster":"{TOKEN_CLUSTER}",
              "namespace":"kiali-auth","service_account":"kiali-impersonator",
              "timeout_ms":1000,"retry_initial_ms":100,"retry_max_ms":400,
              "per_identity":true{extra}}}}}"#
    )
}

/// Envoy with the filter as users deploy it (the credential injector, `common::tokens`), the
/// token service issuing tokens of `lifetime`.
fn start(plugin_config: &str, lifetime: Duration, workers: u32) -> TokenSetup {
    let tokens = TokenService::start();
    tokens.set_behavior(Behavior::Issue { lifetime });
    start_injected(plugin_config, tokens, workers)
}

fn request(user: &str, groups: &str) -> ClientRequest {
    ClientRequest::get("/api/namespaces")
        .header("X-Forwarded-User", user)
        .header("X-Forwarded-Groups", groups)
        .header("Authorization", "Bearer client-chosen")
}

/// (user, groups) -> the bearers the upstream saw for that identity.
fn bearers_by_identity(upstream: &EchoUpstream) -> BTreeMap<(String, Vec<String>), BTreeSet<String>> {
    let mut seen: BTreeMap<(String, Vec<String>), BTreeSet<String>> = BTreeMap::new();
    for forwarded in upstream.requests() {
        let user = text_values(&forwarded, "impersonate-user").join(",");
        let groups = text_values(&forwarded, "impersonate-group");
        seen.entry((user, groups)).or_default().insert(bearer_of(&forwarded));
    }
    seen
}

/// Sends `per_user` concurrent requests for each of `users` at once, from fresh connections
/// (so both workers take some); returns the statuses.
fn burst(envoy: &Envoy, users: &[(&str, &str)], per_user: usize) -> Vec<u16> {
    let barrier = Arc::new(Barrier::new(users.len() * per_user));
    let threads: Vec<_> = users
        .iter()
        .flat_map(|(user, groups)| std::iter::repeat_n((user.to_string(), groups.to_string()), per_user))
        .map(|(user, groups)| {
            let (barrier, addr) = (barrier.clone(), envoy.addr());
            std::thread::spawn(move || {
                barrier.wait();
                harness::Connection::open(addr).unwrap().send(&request(&user, &groups)).status
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn three_users_on_two_workers_get_three_tokens_one_each() {
    let s = start(&config(""), Duration::from_secs(3600), 2);
    let users = [("alice", "dev"), ("bob", "dev"), ("carol", "ops")];
    let statuses = burst(&s.envoy, &users, 5);
    assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");

    assert_eq!(s.tokens.issued().len(), 3, "exactly one fetch per identity, whatever the workers");
    let seen = bearers_by_identity(&s.upstream);
    assert_eq!(seen.len(), 3, "{seen:#?}");
    let mut all = BTreeSet::new();
    for (identity, bearers) in &seen {
        assert_eq!(bearers.len(), 1, "{identity:?} always sees one bearer: {bearers:?}");
        assert!(!bearers.contains("client-chosen"));
        all.extend(bearers.iter().cloned());
    }
    assert_eq!(all.len(), 3, "the three bearers differ");
    let issued: BTreeSet<String> = s.tokens.issued().into_iter().map(|t| t.token).collect();
    assert_eq!(all, issued, "every bearer forwarded is one the token service issued");
    assert_eq!(stat(&s.envoy, "identities_cached"), 3);

    // Again: no new fetch, the same bearer per identity.
    let statuses = burst(&s.envoy, &users, 5);
    assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    assert_eq!(s.tokens.issued().len(), 3);
    assert!(bearers_by_identity(&s.upstream).values().all(|bearers| bearers.len() == 1));

    // The same user with other groups is another identity: another token.
    let response = send(&s.envoy, &request("alice", "dev,admins"));
    assert_eq!(response.status, 200);
    assert_eq!(s.tokens.issued().len(), 4);
    let seen = bearers_by_identity(&s.upstream);
    let alice_dev = &seen[&("alice".to_string(), vec!["dev".to_string()])];
    let alice_admins = &seen[&("alice".to_string(), vec!["dev".to_string(), "admins".to_string()])];
    assert!(alice_dev.is_disjoint(alice_admins), "{alice_dev:?} vs {alice_admins:?}");

    // The RBAC self-check asks once, not once per identity: every token is the same
    // ServiceAccount's (generation 1 of each slot is one generation to the check).
    let permissions = 3; // users, groups, userextras of the oauth2-proxy preset
    wait_stat(&s.envoy, "rbac_check.allowed", permissions);
    std::thread::sleep(Duration::from_millis(500));
    let reviews = s.tokens.reviews().reviews();
    assert_eq!(reviews.len() as u64, permissions, "{reviews:#?}");
    let bearers: BTreeSet<Option<String>> = reviews.into_iter().map(|review| review.bearer).collect();
    assert_eq!(bearers.len(), 1, "one token was checked");
}

#[test]
fn an_idle_identity_expires_and_is_not_refreshed_a_busy_one_is() {
    // 3-second tokens: refresh from about 2 s, dropped after 3 s without use.
    let s = start(&config(""), Duration::from_secs(3), 2);
    assert_eq!(send(&s.envoy, &request("idle", "dev")).status, 200);
    assert_eq!(s.tokens.issued().len(), 1);

    // "busy" sends for 7 s: its token is refreshed, never forwarded expired.
    let addr = s.envoy.addr();
    let begin = Instant::now();
    let mut connection = harness::Connection::open(addr).unwrap();
    while begin.elapsed() < Duration::from_secs(7) {
        assert_eq!(connection.send(&request("busy", "dev").keep_alive(true)).status, 200);
        std::thread::sleep(Duration::from_millis(50));
    }
    for forwarded in s.upstream.requests() {
        let token = bearer_of(&forwarded);
        assert!(
            s.tokens.is_valid_at(&token, forwarded.received_at),
            "a token expired or never issued reached the upstream"
        );
    }
    let seen = bearers_by_identity(&s.upstream);
    let idle = &seen[&("idle".to_string(), vec!["dev".to_string()])];
    let busy = &seen[&("busy".to_string(), vec!["dev".to_string()])];
    assert_eq!(idle.len(), 1);
    assert!(busy.len() >= 2, "the busy identity's token was refreshed: {busy:?}");
    // Every token issued is either idle's single one or one busy used: idle's was never
    // refreshed (a refresh would be an issued token nobody received).
    let issued: BTreeSet<String> = s.tokens.issued().into_iter().map(|t| t.token).collect();
    let used: BTreeSet<String> = idle.union(busy).cloned().collect();
    let unused: Vec<&String> = issued.difference(&used).collect();
    assert!(unused.len() <= 1, "at most busy's last refresh is still unused: {unused:?}");
    assert!(
        wait_stat(&s.envoy, "identities_dropped.idle", 1) >= 1,
        "the idle identity was dropped"
    );
    assert_eq!(stat(&s.envoy, "identities_cached"), 1, "only busy holds a slot");

    // Idle comes back: a new token, not the old one.
    assert_eq!(send(&s.envoy, &request("idle", "dev")).status, 200);
    let seen = bearers_by_identity(&s.upstream);
    assert_eq!(seen[&("idle".to_string(), vec!["dev".to_string()])].len(), 2);
}

#[test]
fn at_max_identities_the_set_stays_bounded() {
    let s = start(&config(r#","max_identities":2"#), Duration::from_secs(3600), 2);
    for user in ["u1", "u2", "u3", "u4", "u1"] {
        let response = send(&s.envoy, &request(user, "dev"));
        assert_eq!(response.status, 200, "{user}");
        assert!(stat(&s.envoy, "identities_cached") <= 2, "never more than max_identities");
    }
    assert_eq!(stat(&s.envoy, "identities_cached"), 2);
    // u3 and u4 each took a slot. u1 again may not need one: a worker that still holds u1's
    // token (unexpired, never given to anyone else) uses it until its end of use, without a slot.
    assert!(wait_stat(&s.envoy, "identities_dropped.evicted", 2) >= 2, "u3 and u4 each took a slot");
    // Every identity still got a token of its own.
    let seen = bearers_by_identity(&s.upstream);
    assert_eq!(seen.len(), 4);
    let firsts: BTreeSet<String> = seen.values().filter_map(|bearers| bearers.iter().next().cloned()).collect();
    assert_eq!(firsts.len(), 4, "no two identities shared a bearer: {seen:#?}");
}

#[test]
fn per_identity_needs_an_identity_and_bounds_are_checked() {
    for (bad, field) in [
        (config(r#","max_identities":0"#), "token_source.max_identities"),
        (config(r#","max_identities":100001"#), "token_source.max_identities"),
        (config("").replace(r#""per_identity":true"#, r#""per_identity":false,"max_identities":5"#), "token_source.max_identities"),
    ] {
        let error = kiali_header_auth::config::FilterConfig::from_json(bad.as_bytes()).unwrap_err();
        assert!(error.to_string().contains(field), "{error}");
    }
    let parsed = kiali_header_auth::config::FilterConfig::from_json(config("").as_bytes()).unwrap();
    assert_eq!(parsed.token_source.unwrap().per_identity.unwrap().max_identities, 1000);
}
