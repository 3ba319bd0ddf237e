use super::*;
use crate::token::{ExpirySource, FetchedToken};

pub(crate) const TIMING: Timing = Timing {
    timeout_ms: 2000,
    retry_initial_ms: 500,
    retry_max_ms: 30_000,
};
pub(crate) const A: u64 = 11;
pub(crate) const B: u64 = 22;

pub(crate) fn fetched(token: &str, expires_at_ms: u64) -> FetchedToken {
    FetchedToken {
        token: token.into(),
        expires_at_ms,
        expiry_source: ExpirySource::Response,
    }
}

#[test]
fn empty_state_needs_a_fetch_and_one_worker_gets_the_lease() {
    let empty = SharedState::default();
    assert!(empty.needs_fetch(1000));
    let leased = empty.try_lease(1000, A, &TIMING).unwrap();
    assert_eq!(leased.lease_owner, A);
    assert_eq!(leased.lease_until_ms, 1000 + 2000 + LEASE_GRACE_MS);
    // Neither the holder nor another worker takes it again while it runs.
    assert!(leased.try_lease(1500, B, &TIMING).is_none());
    assert!(leased.try_lease(1500, A, &TIMING).is_none());
    // A crashed fetch does not block forever.
    assert!(leased.try_lease(1000 + 3001, B, &TIMING).is_some());
}

#[test]
fn storing_a_token_sets_usable_and_refresh_times() {
    let now = 10_000;
    let state = SharedState::default()
        .try_lease(now, A, &TIMING)
        .unwrap()
        .with_token(&fetched("t1", now + 600_000), now, A, 0.0);
    assert_eq!(state.lease_owner, 0);
    assert_eq!(state.generation, 1);
    assert_eq!(state.usable_until_ms, now + 600_000 - 10_000);
    assert_eq!(state.refresh_at_ms, now + 450_000);
    assert_eq!(state.usable_token(now + 1), Some("t1"));
    assert!(!state.needs_fetch(now + 449_999));
    assert!(state.needs_fetch(now + 450_000));
    assert_eq!(state.usable_token(now + 590_000), None);

    let jittered = SharedState::default().with_token(&fetched("t1", now + 600_000), now, A, 0.999);
    assert!(jittered.refresh_at_ms > now + 389_000 && jittered.refresh_at_ms < now + 391_000);
}

#[test]
fn short_tokens_refresh_before_they_stop_being_usable() {
    let now = 0;
    let state = SharedState::default().with_token(&fetched("t", 3000), now, A, 0.5);
    assert_eq!(state.usable_until_ms, 2700);
    assert!(state.refresh_at_ms < state.usable_until_ms);
    assert!(state.refresh_at_ms >= 1950);
}

#[test]
fn a_late_answer_never_replaces_a_fresher_token() {
    let fresh = SharedState::default().with_token(&fetched("fresh", 900_000), 0, B, 0.0);
    let after = fresh.with_token(&fetched("stale", 600_000), 1, A, 0.0);
    assert_eq!(after.token.as_deref(), Some("fresh"));
    assert_eq!(after.generation, fresh.generation);
}

#[test]
fn failures_back_off_and_keep_a_usable_token() {
    let state = SharedState::default().with_token(&fetched("t", 100_000), 0, A, 0.0);
    let failed = state
        .try_lease(75_000, A, &TIMING)
        .unwrap()
        .with_failure(75_000, A, &TIMING, 1.0);
    assert_eq!(failed.consecutive_failures, 1);
    assert_eq!(failed.retry_at_ms, 75_500);
    assert_eq!(failed.usable_token(75_000), Some("t"));
    assert!(failed.try_lease(75_400, B, &TIMING).is_none());
    assert!(failed.try_lease(75_500, B, &TIMING).is_some());

    let twice = failed.with_failure(76_000, B, &TIMING, 1.0);
    assert_eq!(twice.retry_at_ms, 77_000);
    // Past its usable time a token is dropped, never forwarded.
    let expired = twice.with_failure(95_000, B, &TIMING, 1.0);
    assert_eq!(expired.token, None);
    assert_eq!(expired.usable_token(95_000), None);

    let recovered = expired.with_token(&fetched("t2", 200_000), 96_000, A, 0.0);
    assert_eq!(recovered.consecutive_failures, 0);
    assert_eq!(recovered.retry_at_ms, 0);
}

#[test]
fn backoff_is_capped_and_jittered() {
    assert_eq!(backoff_ms(1, &TIMING, 1.0), 500);
    assert_eq!(backoff_ms(2, &TIMING, 1.0), 1000);
    assert_eq!(backoff_ms(3, &TIMING, 0.0), 1000);
    assert_eq!(backoff_ms(30, &TIMING, 1.0), 30_000);
    assert_eq!(backoff_ms(u32::MAX, &TIMING, 0.0), 15_000);
}

#[test]
fn encoding_round_trips_and_garbage_means_empty() {
    let state = SharedState::default().with_token(&fetched("t", 3000), 0, A, 0.5);
    assert_eq!(SharedState::decode(&state.encode()), state);
    assert_eq!(SharedState::decode(b"\xff garbage"), SharedState::default());
    assert_eq!(SharedState::decode(b""), SharedState::default());
}
