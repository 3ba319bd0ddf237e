use super::*;
// The shared token's test timings, workers and fetched tokens: a slot holds the same state.
use crate::token::state::tests::{fetched, A, B, TIMING};

fn adds<'a>(lines: &[(&'a str, &'a str)]) -> Vec<(&'a str, Cow<'a, str>)> {
    lines.iter().map(|(name, value)| (*name, Cow::Borrowed(*value))).collect()
}

fn waiting(at: u64) -> Demand {
    Demand { local_last_used_ms: at, waiting: true }
}

fn used(at: u64) -> Demand {
    Demand { local_last_used_ms: at, waiting: false }
}

#[test]
fn the_identity_key_is_user_groups_uid_and_extras_not_connection_facts() {
    let facts = vec!["impersonate-extra-source_address".to_string()];
    let alice = identity_key(
        &adds(&[
            ("impersonate-user", "alice"),
            ("impersonate-group", "dev"),
            ("impersonate-group", "ops"),
            ("impersonate-extra-source_address", "10.0.0.1"),
        ]),
        &facts,
    );
    // Another client address: the same identity.
    let alice_elsewhere = identity_key(
        &adds(&[
            ("impersonate-user", "alice"),
            ("impersonate-group", "ops"),
            ("impersonate-group", "dev"),
            ("impersonate-extra-source_address", "10.9.9.9"),
        ]),
        &facts,
    );
    assert_eq!(alice, alice_elsewhere, "group order and connection facts do not make another identity");
    // Other groups, another user, a uid or an extra: other identities.
    let others = [
        identity_key(&adds(&[("impersonate-user", "alice"), ("impersonate-group", "dev")]), &facts),
        identity_key(&adds(&[("impersonate-user", "bob"), ("impersonate-group", "dev"), ("impersonate-group", "ops")]), &facts),
        identity_key(
            &adds(&[("impersonate-user", "alice"), ("impersonate-group", "dev"), ("impersonate-group", "ops"), ("impersonate-uid", "1")]),
            &facts,
        ),
        identity_key(
            &adds(&[
                ("impersonate-user", "alice"),
                ("impersonate-group", "dev"),
                ("impersonate-group", "ops"),
                ("impersonate-extra-team", "a"),
            ]),
            &facts,
        ),
    ];
    for other in &others {
        assert_ne!(&alice, other);
    }
}

#[test]
fn the_identity_key_cannot_be_forged_with_separators() {
    // A user name that spells another identity's lines must stay another identity.
    let two_lines = identity_key(&adds(&[("impersonate-user", "a"), ("impersonate-group", "b")]), &[]);
    let one_line = identity_key(&adds(&[("impersonate-user", "a\",\"impersonate-group\",\"b")]), &[]);
    assert_ne!(two_lines, one_line);
    // Nor with the length prefixes of the encoding.
    let spelled = identity_key(&adds(&[("impersonate-user", "1:a17:impersonate-group1:b")]), &[]);
    assert_ne!(two_lines, spelled);
    assert_eq!(two_lines, "17:impersonate-group1:b16:impersonate-user1:a", "sorted, each part length-prefixed");
    let long = "x".repeat(1234);
    assert!(identity_key(&adds(&[("impersonate-user", &long)]), &[]).starts_with("16:impersonate-user1234:x"));
}

#[test]
fn identities_take_free_slots_then_the_index_is_full() {
    let index = IdentityIndex::default();
    let Placement::Take { slot: 0, index } = index.place("alice", 2) else { panic!("alice takes slot 0") };
    assert_eq!(index.place("alice", 2), Placement::Owned(0));
    let Placement::Take { slot: 1, index } = index.place("bob", 2) else { panic!("bob takes slot 1") };
    assert_eq!(index.place("carol", 2), Placement::Full);
    // A freed slot is taken again; only its owner frees it.
    assert!(index.without(1, "alice").is_none());
    let index = index.without(1, "bob").unwrap();
    assert_eq!(index.len(), 1);
    assert!(matches!(index.place("carol", 2), Placement::Take { slot: 1, .. }));
    // What decodes as nothing is empty, not a panic.
    assert!(IdentityIndex::decode(b"\xff not json").is_empty());
    assert_eq!(IdentityIndex::decode(&index.encode()), index);
}

#[test]
fn a_waiting_request_gets_one_fetch_across_workers() {
    let now = 1_000;
    let slot = IdentitySlot::claimed("alice", now);
    assert!(slot.try_lease(now, A, &TIMING, &used(now)).is_none(), "nobody waits: no fetch");
    let leased = slot.try_lease(now, A, &TIMING, &waiting(now)).unwrap();
    assert!(leased.try_lease(now + 10, B, &TIMING, &waiting(now)).is_none(), "single flight");
    let stored = leased.with_token(&fetched("t1", now + 600_000), now + 50, A, 0.0);
    assert_eq!(stored.token.usable_token(now + 60), Some("t1"));
    assert_eq!((stored.stored_at_ms, stored.lifetime_ms, stored.fetches), (now + 50, 599_950, 1));
}

#[test]
fn a_token_is_refreshed_only_when_used_since_it_was_stored() {
    let now = 1_000;
    let stored = IdentitySlot::claimed("alice", now)
        .try_lease(now, A, &TIMING, &waiting(now))
        .unwrap()
        .with_token(&fetched("t1", now + 600_000), now, A, 0.0);
    let refresh_at = stored.token.refresh_at_ms;
    assert!(refresh_at > now && refresh_at < now + 600_000);
    // The request that caused the fetch came before it: the token was not used since.
    assert!(stored.try_lease(refresh_at, B, &TIMING, &used(now)).is_none());
    // Used since (by this worker, or published by another): refreshed.
    assert!(stored.try_lease(refresh_at, B, &TIMING, &used(now + 5)).is_some());
    let published = stored.with_use(now + PUBLISH_USE_EVERY_MS).unwrap();
    assert!(published.try_lease(refresh_at, B, &TIMING, &used(0)).is_some());
    // Not before it is due.
    assert!(stored.try_lease(refresh_at - 1, B, &TIMING, &used(now + 5)).is_none());
}

#[test]
fn use_is_published_at_most_once_a_second() {
    let slot = IdentitySlot::claimed("alice", 1_000);
    assert!(slot.with_use(1_500).is_none());
    assert_eq!(slot.with_use(2_000).unwrap().last_used_ms, 2_000);
}

#[test]
fn an_identity_unused_for_a_token_lifetime_is_idle() {
    let now = 1_000;
    let stored = IdentitySlot::claimed("alice", now)
        .try_lease(now, A, &TIMING, &waiting(now))
        .unwrap()
        .with_token(&fetched("t1", now + 10_000), now, A, 0.0);
    assert_eq!(stored.idle_after_ms(), 10_000);
    assert!(!stored.is_idle(now + 9_999, &used(now)));
    assert!(stored.is_idle(now + 10_000, &used(now)));
    // A use on any worker keeps it; a waiting request keeps it.
    assert!(!stored.is_idle(now + 10_000, &used(now + 1)));
    assert!(!stored.is_idle(now + 20_000, &waiting(now)));
    // Never while a fetch holds the lease.
    let start = DEFAULT_IDLE_MS;
    let leased = IdentitySlot::claimed("bob", 0).try_lease(start, A, &TIMING, &waiting(0)).unwrap();
    assert!(!leased.is_idle(start + 10, &used(0)));
    assert!(leased.is_idle(start + TIMING.timeout_ms + 1_000, &used(0)));
}

#[test]
fn failures_back_off_and_never_keep_an_expired_token() {
    let now = 1_000;
    let stored = IdentitySlot::claimed("alice", now)
        .try_lease(now, A, &TIMING, &waiting(now))
        .unwrap()
        .with_token(&fetched("t1", now + 10_000), now, A, 0.0);
    let end = stored.token.usable_until_ms;
    let leased = stored.try_lease(end, A, &TIMING, &waiting(end)).unwrap();
    let failed = leased.with_failure(end, A, &TIMING, 0.0);
    assert_eq!(failed.token.usable_token(end), None);
    assert!(failed.try_lease(end + 1, B, &TIMING, &waiting(end)).is_none(), "backoff");
    assert_eq!(failed.identity, "alice");
}

#[test]
fn the_least_recently_used_slot_is_chosen_free_ones_first() {
    let slot = |identity: &str, last_used_ms| IdentitySlot { identity: identity.into(), last_used_ms, ..IdentitySlot::default() };
    assert_eq!(least_recently_used(&[(0, slot("a", 50)), (1, slot("b", 20)), (2, slot("c", 30))]), Some(1));
    assert_eq!(least_recently_used(&[(0, slot("a", 50)), (1, slot("", 90))]), Some(1));
    assert_eq!(least_recently_used(&[]), None);
}
