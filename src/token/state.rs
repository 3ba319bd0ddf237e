//! The token cache shared by every worker VM of one Envoy process, as a value in proxy-wasm shared
//! data. Each transition is a pure function from the state read (with its CAS stamp) to the state
//! to write back with that stamp; a CAS mismatch means another worker moved first, so the caller
//! re-reads and decides again.
//!
//! Times are milliseconds since the Unix epoch.
//!
//! - The token is *usable* until `expires_at - margin`, where the margin is a tenth of its
//!   lifetime capped at 10 s: a token is never forwarded close enough to its expiry that it could
//!   expire on the way to the upstream or because of clock skew.
//! - It is *refreshed* from `REFRESH_AT_LIFETIME_FRACTION` of its lifetime, minus a random jitter
//!   of up to `REFRESH_JITTER_FRACTION`, so workers of many Envoys do not stampede the issuer.
//! - One worker at a time holds the *fetch lease*, for the callout timeout plus a grace period: if
//!   that worker's fetch dies with its VM, the lease simply runs out and another worker fetches.
//! - Failures back off exponentially with jitter, from `retry_initial` to `retry_max`. A usable
//!   token stays in use meanwhile; an expired one never is.

use serde::{Deserialize, Serialize};

use super::FetchedToken;

pub const REFRESH_AT_LIFETIME_FRACTION: f64 = 0.75;
pub const REFRESH_JITTER_FRACTION: f64 = 0.10;
pub const USABLE_MARGIN_FRACTION: f64 = 0.10;
pub const USABLE_MARGIN_MAX_MS: u64 = 10_000;
pub const LEASE_GRACE_MS: u64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub timeout_ms: u64,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default)]
    pub expires_at_ms: u64,
    #[serde(default)]
    pub usable_until_ms: u64,
    #[serde(default)]
    pub refresh_at_ms: u64,
    /// Bumped each time a new token is stored, so workers can tell a new token cheaply.
    #[serde(default)]
    pub generation: u64,
    #[serde(default)]
    pub lease_owner: u64,
    #[serde(default)]
    pub lease_until_ms: u64,
    #[serde(default)]
    pub retry_at_ms: u64,
    #[serde(default)]
    pub consecutive_failures: u32,
}

impl SharedState {
    /// Anything unreadable counts as "no token": fail closed, fetch again.
    pub fn decode(bytes: &[u8]) -> SharedState {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn usable_token(&self, now_ms: u64) -> Option<&str> {
        self.token
            .as_deref()
            .filter(|_| now_ms < self.usable_until_ms)
    }

    pub fn needs_fetch(&self, now_ms: u64) -> bool {
        self.usable_token(now_ms).is_none() || now_ms >= self.refresh_at_ms
    }

    pub fn lease_active(&self, now_ms: u64) -> bool {
        self.lease_owner != 0 && now_ms < self.lease_until_ms
    }

    /// The state to write to take the fetch lease, or `None` when this worker must not fetch now
    /// (no need, another worker is fetching, or the last failure's backoff has not run out).
    pub fn try_lease(&self, now_ms: u64, me: u64, timing: &Timing) -> Option<SharedState> {
        if !self.needs_fetch(now_ms) || self.lease_active(now_ms) || now_ms < self.retry_at_ms {
            return None;
        }
        let mut next = self.clone();
        next.lease_owner = me;
        next.lease_until_ms = now_ms + timing.timeout_ms + LEASE_GRACE_MS;
        Some(next)
    }

    /// Stores a fetched token. A token that expires later than the one already stored wins, so a
    /// late answer never replaces a fresher token another worker stored meanwhile.
    /// `jitter` is uniform in [0, 1).
    pub fn with_token(&self, fetched: &FetchedToken, now_ms: u64, me: u64, jitter: f64) -> SharedState {
        let mut next = self.clone();
        next.release_lease(me);
        next.consecutive_failures = 0;
        next.retry_at_ms = 0;
        if self.token.is_some() && self.expires_at_ms >= fetched.expires_at_ms {
            return next;
        }
        let lifetime = fetched.expires_at_ms.saturating_sub(now_ms);
        let margin = ((lifetime as f64 * USABLE_MARGIN_FRACTION) as u64).min(USABLE_MARGIN_MAX_MS);
        let refresh_fraction =
            REFRESH_AT_LIFETIME_FRACTION - REFRESH_JITTER_FRACTION * jitter.clamp(0.0, 1.0);
        next.token = Some(fetched.token.clone());
        next.expires_at_ms = fetched.expires_at_ms;
        next.usable_until_ms = fetched.expires_at_ms - margin;
        next.refresh_at_ms = now_ms + (lifetime as f64 * refresh_fraction) as u64;
        next.generation = self.generation.wrapping_add(1);
        next
    }

    /// Records a failed fetch: back off exponentially (full jitter between half and all of the
    /// step), keep any still-usable token.
    pub fn with_failure(&self, now_ms: u64, me: u64, timing: &Timing, jitter: f64) -> SharedState {
        let mut next = self.clone();
        next.release_lease(me);
        next.consecutive_failures = self.consecutive_failures.saturating_add(1);
        next.retry_at_ms = now_ms + backoff_ms(next.consecutive_failures, timing, jitter);
        if next.usable_token(now_ms).is_none() {
            next.token = None;
        }
        next
    }

    fn release_lease(&mut self, me: u64) {
        if self.lease_owner == me {
            self.lease_owner = 0;
            self.lease_until_ms = 0;
        }
    }
}

pub fn backoff_ms(failures: u32, timing: &Timing, jitter: f64) -> u64 {
    let exponent = failures.saturating_sub(1).min(20);
    let step = timing
        .retry_initial_ms
        .saturating_mul(1u64 << exponent)
        .min(timing.retry_max_ms);
    let factor = 0.5 + 0.5 * jitter.clamp(0.0, 1.0);
    ((step as f64) * factor) as u64
}

#[cfg(test)]
pub(crate) mod tests;
