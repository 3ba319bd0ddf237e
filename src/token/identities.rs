//! Tokens per identity (`token_source.per_identity`): which identity a request is, which
//! shared-data slot holds that identity's token, and when the token is refreshed or dropped. Pure:
//! `identity_tokens` does the host calls, with the same compare-and-swap discipline as `state`.
//!
//! Why slots: the proxy-wasm ABI cannot delete a shared-data key (proxy-wasm-cpp-host
//! `src/exports.cc` exports `set_shared_data` only; `SharedData::remove` has no export), so one key
//! per identity would grow without bound. Instead a fixed array of `max_identities` keys
//! (`<base>/slot/<n>`) holds the tokens, and one index (`<base>/index`) says which identity owns
//! which slot. A freed slot is overwritten with an empty value.
//!
//! Life of an identity:
//! - A request whose identity has no usable token waits; a tick on its worker finds (or assigns)
//!   the identity's slot and fetches under the slot's lease: one fetch per identity across
//!   workers, the same single flight, backoff and "never an expired token" as the shared token.
//! - The token is refreshed only when the identity was used after the token was stored: a token
//!   nobody used is left to end its use, never refreshed.
//! - An identity unused for a token lifetime (or [`DEFAULT_IDLE_MS`] before its first token) is
//!   dropped and its slot freed. At `max_identities`, a new identity takes the slot of the one
//!   used least recently.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::state::{SharedState, Timing};
use super::FetchedToken;

/// How stale a slot's `last_used_ms` may be: a worker publishes its own use at most this often.
pub const PUBLISH_USE_EVERY_MS: u64 = 1_000;
/// Idle time after which an identity that never got a token is dropped.
pub const DEFAULT_IDLE_MS: u64 = 60_000;

/// The identity a request's token belongs to: its `Impersonate-*` set (user, groups, uid,
/// extras), without the `audit_extras` (facts about the connection, such as the client address,
/// which would make every connection a new identity). Groups and extra values are a set for the
/// API server's authorizer, so their order does not make another identity.
pub fn identity_key(adds: &[(&str, Cow<'_, str>)], connection_facts: &[String]) -> String {
    let mut lines: Vec<(&str, &str)> = adds
        .iter()
        .filter(|(name, _)| !connection_facts.iter().any(|fact| fact.eq_ignore_ascii_case(name)))
        .map(|(name, value)| (*name, value.as_ref()))
        .collect();
    lines.sort_unstable();
    lines.dedup();
    // Each name and value with its length in front: unambiguous whatever bytes a value holds (a
    // separator could be forged), and cheaper on the request path than a JSON encoding.
    let size: usize = lines.iter().map(|(name, value)| name.len() + value.len() + 12).sum();
    let mut key = String::with_capacity(size);
    for (name, value) in lines {
        for part in [name, value] {
            push_decimal(&mut key, part.len());
            key.push(':');
            key.push_str(part);
        }
    }
    key
}

/// Appends `n` in decimal, without the formatting machinery or an allocation.
fn push_decimal(out: &mut String, n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for &digit in &digits[at..] {
        out.push(char::from(digit));
    }
}

/// Which identity owns which slot, in shared data under `<base>/index`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityIndex {
    #[serde(default)]
    pub owners: BTreeMap<u32, String>,
}

/// Where an identity's token lives, or what must happen first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// The identity owns this slot already.
    Owned(u32),
    /// Write this index to take a free slot.
    Take { slot: u32, index: IdentityIndex },
    /// Every slot is taken: the least recently used one must be chosen (reading the slots).
    Full,
}

impl IdentityIndex {
    /// Anything unreadable counts as empty: the slots it pointed to get new owners, and the
    /// identities that lost them find out on their next read (the slot names another owner).
    pub fn decode(bytes: &[u8]) -> IdentityIndex {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn slot_of(&self, identity: &str) -> Option<u32> {
        self.owners
            .iter()
            .find(|(_, owner)| owner.as_str() == identity)
            .map(|(slot, _)| *slot)
    }

    pub fn place(&self, identity: &str, max_identities: usize) -> Placement {
        if let Some(slot) = self.slot_of(identity) {
            return Placement::Owned(slot);
        }
        let free = (0..max_identities as u32).find(|slot| !self.owners.contains_key(slot));
        match free {
            Some(slot) => Placement::Take { slot, index: self.with_owner(slot, identity) },
            None => Placement::Full,
        }
    }

    pub fn with_owner(&self, slot: u32, identity: &str) -> IdentityIndex {
        let mut next = self.clone();
        next.owners.insert(slot, identity.to_string());
        next
    }

    /// The index without `identity` in `slot`, or `None` when the slot has another owner already.
    pub fn without(&self, slot: u32, identity: &str) -> Option<IdentityIndex> {
        if self.owners.get(&slot).map(String::as_str) != Some(identity) {
            return None;
        }
        let mut next = self.clone();
        next.owners.remove(&slot);
        Some(next)
    }

    pub fn len(&self) -> usize {
        self.owners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }
}

/// One identity's token, in shared data under `<base>/slot/<n>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentitySlot {
    /// The identity key ([`identity_key`]) this slot serves; empty when free.
    #[serde(default)]
    pub identity: String,
    /// The last use any worker published (at most [`PUBLISH_USE_EVERY_MS`] stale).
    #[serde(default)]
    pub last_used_ms: u64,
    /// When the current token was stored, and its lifetime then.
    #[serde(default)]
    pub stored_at_ms: u64,
    #[serde(default)]
    pub lifetime_ms: u64,
    /// Tokens fetched for this identity since it got the slot (for the fetches-per-identity stat).
    #[serde(default)]
    pub fetches: u32,
    #[serde(default)]
    pub token: SharedState,
}

/// Whether a worker should fetch an identity's token now (the lease and backoff still decide).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    /// This worker's last use of the identity.
    pub local_last_used_ms: u64,
    /// Requests of this identity wait on this worker.
    pub waiting: bool,
}

impl IdentitySlot {
    pub fn claimed(identity: &str, now_ms: u64) -> IdentitySlot {
        IdentitySlot {
            identity: identity.to_string(),
            last_used_ms: now_ms,
            ..IdentitySlot::default()
        }
    }

    /// Anything unreadable counts as a free slot with no token: fail closed.
    pub fn decode(bytes: &[u8]) -> IdentitySlot {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn owned_by(&self, identity: &str) -> bool {
        !self.identity.is_empty() && self.identity == identity
    }

    fn last_used(&self, demand: &Demand) -> u64 {
        self.last_used_ms.max(demand.local_last_used_ms)
    }

    /// How long without use before the identity is dropped: a token lifetime.
    pub fn idle_after_ms(&self) -> u64 {
        if self.lifetime_ms > 0 {
            self.lifetime_ms
        } else {
            DEFAULT_IDLE_MS
        }
    }

    /// Unused for a token lifetime, nobody waits, no fetch holds the lease: drop it.
    pub fn is_idle(&self, now_ms: u64, demand: &Demand) -> bool {
        !demand.waiting
            && !self.token.lease_active(now_ms)
            && now_ms >= self.last_used(demand).saturating_add(self.idle_after_ms())
    }

    /// A fetch is wanted when requests wait for a token that is not usable, or when the token
    /// is due for refresh and was used since it was stored. A token nobody used is not refreshed.
    pub fn wants_fetch(&self, now_ms: u64, demand: &Demand) -> bool {
        if self.token.usable_token(now_ms).is_none() {
            return demand.waiting;
        }
        now_ms >= self.token.refresh_at_ms && self.last_used(demand) > self.stored_at_ms
    }

    /// The state to write to take the fetch lease, when a fetch is wanted and allowed.
    pub fn try_lease(&self, now_ms: u64, me: u64, timing: &Timing, demand: &Demand) -> Option<IdentitySlot> {
        if !self.wants_fetch(now_ms, demand) {
            return None;
        }
        let token = self.token.try_lease(now_ms, me, timing)?;
        Some(IdentitySlot { token, ..self.clone() })
    }

    /// The slot with this worker's use published, when the published one is stale enough.
    pub fn with_use(&self, used_ms: u64) -> Option<IdentitySlot> {
        (used_ms >= self.last_used_ms.saturating_add(PUBLISH_USE_EVERY_MS)).then(|| IdentitySlot {
            last_used_ms: used_ms,
            ..self.clone()
        })
    }

    pub fn with_token(&self, fetched: &FetchedToken, now_ms: u64, me: u64, jitter: f64) -> IdentitySlot {
        let token = self.token.with_token(fetched, now_ms, me, jitter);
        let mut next = IdentitySlot { token, ..self.clone() };
        next.fetches = self.fetches.saturating_add(1);
        if next.token.generation != self.token.generation {
            next.stored_at_ms = now_ms;
            next.lifetime_ms = fetched.expires_at_ms.saturating_sub(now_ms);
        }
        next
    }

    pub fn with_failure(&self, now_ms: u64, me: u64, timing: &Timing, jitter: f64) -> IdentitySlot {
        IdentitySlot {
            token: self.token.with_failure(now_ms, me, timing, jitter),
            ..self.clone()
        }
    }
}

/// The least recently used slot among `slots` (slot number, slot read): the one a new identity
/// takes when every slot is taken. Slots that are free or unreadable go first.
pub fn least_recently_used(slots: &[(u32, IdentitySlot)]) -> Option<u32> {
    slots
        .iter()
        .min_by_key(|(slot, state)| (!state.identity.is_empty(), state.last_used_ms, *slot))
        .map(|(slot, _)| *slot)
}

#[cfg(test)]
mod tests;
