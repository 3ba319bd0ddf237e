//! The host side of `token::identities` (`token_source.per_identity`): each worker's copy of the
//! tokens of the identities it has seen, and the root tick's work on them. The decisions (which
//! slot, when to fetch, when to drop) are the pure module's; this file reads and writes shared
//! data with compare-and-swap and keeps the local copies.
//!
//! The request path reads only this worker's map: no clock, no shared data. The tick reads an
//! identity's slot only when something is due: a request waits, the token nears refresh, this
//! worker's use must be published, or the identity may have gone idle.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use log::{info, warn};

use crate::config::FilterConfig;
use crate::host;
use crate::metrics::Metrics;
use crate::local_token::{self, LocalToken, Waiter};
use crate::token::identities::{
    identity_key, least_recently_used, Demand, IdentityIndex, IdentitySlot, Placement,
    PUBLISH_USE_EVERY_MS,
};
use crate::token::response::FetchError;
use crate::token::state::Timing;
use crate::token::FetchedToken;

const CAS_ATTEMPTS: usize = 16;
/// Token fetches of different identities one worker runs at once; the others wait for a tick.
const MAX_FETCHES_PER_WORKER: usize = 8;
/// Once a token is due for refresh, look again this often for the one another worker fetched.
const REFRESH_POLL_MS: u64 = 1_000;

/// One worker's tokens per identity, shared by its root and HTTP contexts.
pub struct IdentityTokens {
    base: String,
    max_identities: usize,
    /// `Impersonate-Extra-*` names of the `audit_extras`: not part of an identity.
    connection_facts: Vec<String>,
    entries: RefCell<HashMap<String, LocalIdentity>>,
    /// Requests waiting on this worker, over every identity (bounded by `max_waiting_requests`).
    waiting: Cell<usize>,
}

#[derive(Default)]
struct LocalIdentity {
    slot: Option<u32>,
    token: Option<LocalToken>,
    /// `token`, while it stays usable until the next tick (as `TokenRuntime::usable`).
    usable: Option<Rc<str>>,
    /// A request used it since the last tick.
    used: bool,
    last_used_ms: u64,
    /// The slot's published use, as last read.
    published_use_ms: u64,
    /// When the tick must read the slot again if nothing else asks for it.
    next_read_ms: u64,
    waiters: Vec<Waiter>,
}

impl LocalIdentity {
    fn authorization(&self, now_ms: u64) -> Option<Rc<str>> {
        self.token.as_ref().and_then(|token| token.usable_for(now_ms, 0))
    }

    fn adopt(&mut self, slot: &IdentitySlot, now_ms: u64) {
        local_token::adopt(&mut self.token, &slot.token, now_ms);
        self.published_use_ms = slot.last_used_ms;
        let last_used = self.last_used_ms.max(slot.last_used_ms);
        let idle_check = last_used.saturating_add(slot.idle_after_ms());
        self.next_read_ms = if self.token.is_none() {
            idle_check
        } else if now_ms < slot.token.refresh_at_ms {
            slot.token.refresh_at_ms.min(idle_check)
        } else {
            now_ms + REFRESH_POLL_MS
        };
    }
}

impl IdentityTokens {
    pub fn new(base: String, max_identities: usize, config: &FilterConfig) -> IdentityTokens {
        let connection_facts = config
            .identity
            .as_ref()
            .map(|identity| {
                identity
                    .audit_extras
                    .iter()
                    .map(|extra| extra.output_header.clone())
                    .collect()
            })
            .unwrap_or_default();
        IdentityTokens {
            base,
            max_identities,
            connection_facts,
            entries: RefCell::new(HashMap::new()),
            waiting: Cell::new(0),
        }
    }

    /// The identity of a request, from the `Impersonate-*` lines the plan adds.
    pub fn key(&self, adds: &[(&str, std::borrow::Cow<'_, str>)]) -> String {
        identity_key(adds, &self.connection_facts)
    }

    /// The `Authorization` value for a request of `identity` now, if this worker has a usable
    /// token for it; records the use.
    pub fn authorization(&self, identity: &str) -> Option<Rc<str>> {
        let mut entries = self.entries.borrow_mut();
        let entry = entries.get_mut(identity)?;
        entry.used = true;
        entry.usable.clone()
    }

    /// Queues a request of `identity` until its token arrives; `false` when `max_waiting`
    /// requests wait already.
    pub fn wait(&self, identity: String, waiter: Waiter, max_waiting: usize) -> bool {
        if self.waiting.get() >= max_waiting {
            return false;
        }
        let mut entries = self.entries.borrow_mut();
        let entry = entries.entry(identity).or_default();
        entry.used = true;
        entry.waiters.push(waiter);
        self.waiting.set(self.waiting.get() + 1);
        true
    }

    fn index_key(&self) -> String {
        format!("{}/index", self.base)
    }

    fn slot_key(&self, slot: u32) -> String {
        format!("{}/slot/{slot}", self.base)
    }

    fn read_slot(&self, slot: u32) -> Option<(IdentitySlot, u32)> {
        match host::get_shared_data(&self.slot_key(slot)) {
            Ok(Some((bytes, cas))) => Some((IdentitySlot::decode(&bytes), cas)),
            Ok(None) => Some((IdentitySlot::default(), host::CREATE_ONLY)),
            Err(status) => {
                warn!("cannot read token slot {slot} (host status {status})");
                None
            }
        }
    }

    fn read_index(&self) -> Option<(IdentityIndex, u32)> {
        match host::get_shared_data(&self.index_key()) {
            Ok(Some((bytes, cas))) => Some((IdentityIndex::decode(&bytes), cas)),
            Ok(None) => Some((IdentityIndex::default(), host::CREATE_ONLY)),
            Err(status) => {
                warn!("cannot read the identity index (host status {status})");
                None
            }
        }
    }

    fn stored(key: &str, value: &[u8], cas: u32) -> bool {
        matches!(host::set_shared_data(key, value, cas), Ok(host::SetShared::Stored))
    }

    /// The slot `identity` owns, taking a free one or the least recently used one.
    fn place(&self, identity: &str, now_ms: u64, metrics: &Metrics) -> Option<u32> {
        for _ in 0..CAS_ATTEMPTS {
            let (index, cas) = self.read_index()?;
            let (slot, next, evicted) = match index.place(identity, self.max_identities) {
                Placement::Owned(slot) => return Some(slot),
                Placement::Take { slot, index } => (slot, index, None),
                Placement::Full => {
                    let slots: Vec<(u32, IdentitySlot)> = index
                        .owners
                        .keys()
                        .filter_map(|&slot| self.read_slot(slot).map(|(state, _)| (slot, state)))
                        .collect();
                    let victim = least_recently_used(&slots)?;
                    let fetches = slots.iter().find(|(slot, _)| *slot == victim).map(|(_, s)| s.fetches);
                    (victim, index.with_owner(victim, identity), fetches)
                }
            };
            if !Self::stored(&self.index_key(), &next.encode(), cas) {
                continue;
            }
            // The index names this identity now: whoever still writes the slot for its former
            // owner checks the owner and loses the compare-and-swap to this write.
            let _ = host::set_shared_data(&self.slot_key(slot), &IdentitySlot::claimed(identity, now_ms).encode(), 0);
            metrics.identities_cached(next.len());
            if let Some(fetches) = evicted {
                metrics.identity_dropped(true, fetches);
                info!(
                    "token slot {slot} given to a new identity: all {} slots are in use (token_source.max_identities)",
                    self.max_identities
                );
            }
            return Some(slot);
        }
        None
    }

    /// Frees `slot` of an idle `identity`: first the slot (only if nobody wrote it since it was
    /// read idle), then the index entry.
    fn free(&self, identity: &str, slot: u32, state: &IdentitySlot, cas: u32, metrics: &Metrics) {
        if !Self::stored(&self.slot_key(slot), &IdentitySlot::default().encode(), cas) {
            return;
        }
        for _ in 0..CAS_ATTEMPTS {
            let Some((index, cas)) = self.read_index() else {
                return;
            };
            let Some(next) = index.without(slot, identity) else {
                return;
            };
            if Self::stored(&self.index_key(), &next.encode(), cas) {
                metrics.identities_cached(next.len());
                metrics.identity_dropped(false, state.fetches);
                return;
            }
        }
    }

    /// Requests of identities whose token is usable now, and those that waited their time: the
    /// root resumes the first and refuses the second.
    pub fn take_waiters(&self, now_ms: u64) -> Vec<(Vec<Waiter>, Option<Rc<str>>)> {
        let mut out = Vec::new();
        let mut taken = 0;
        for entry in self.entries.borrow_mut().values_mut() {
            if entry.waiters.is_empty() {
                continue;
            }
            let authorization = entry.authorization(now_ms);
            let waiters = local_token::take_due(&mut entry.waiters, authorization.is_some(), now_ms);
            if !waiters.is_empty() {
                taken += waiters.len();
                out.push((waiters, authorization));
            }
        }
        self.waiting.set(self.waiting.get().saturating_sub(taken));
        out
    }

    /// Forgets waiting requests whose stream is gone; returns how many.
    pub fn drop_gone_waiters(&self, root_context_id: u32) -> usize {
        let gone: usize = self
            .entries
            .borrow_mut()
            .values_mut()
            .map(|entry| local_token::drop_gone(&mut entry.waiters))
            .sum();
        let _ = host::set_effective_context(root_context_id);
        self.waiting.set(self.waiting.get().saturating_sub(gone));
        gone
    }

    /// Whether the tick must stay fast: a request waits, or a token nears its end of use.
    pub fn needs_fast_tick(&self, now_ms: u64, near_end_ms: u64) -> bool {
        self.entries.borrow().values().any(|entry| {
            !entry.waiters.is_empty()
                || entry
                    .token
                    .as_ref()
                    .is_some_and(|token| now_ms + near_end_ms >= token.usable_until_ms)
        })
    }

    /// Recomputes each identity's usable token for the `ahead_ms` until the next tick (see
    /// `TokenRuntime::usable_authorization` for why that never forwards a token past its end of
    /// use).
    pub fn refresh_usable(&self, now_ms: u64, ahead_ms: u64) {
        for entry in self.entries.borrow_mut().values_mut() {
            entry.usable = entry.token.as_ref().and_then(|token| token.usable_for(now_ms, ahead_ms));
        }
    }

    /// This worker's newest usable token of any identity (for the RBAC self-check, which asks
    /// once per generation: every token is the same ServiceAccount's).
    pub fn newest(&self, now_ms: u64) -> Option<LocalToken> {
        self.entries
            .borrow()
            .values()
            .filter_map(|entry| entry.token.as_ref())
            .filter(|token| now_ms < token.usable_until_ms)
            .max_by_key(|token| (token.generation, token.usable_until_ms))
            .cloned()
    }
}

/// A token fetch of one identity, in flight.
pub struct IdentityFetch {
    pub call_id: u32,
    pub started_ms: u64,
    identity: String,
    pub slot: u32,
}

/// What the tick needs from the root to fetch: its clock, identity and timings, and a way to
/// send the token request.
pub struct FetchContext<'a> {
    pub now_ms: u64,
    pub me: u64,
    pub timing: Timing,
    pub metrics: &'a Metrics,
    pub dispatch: &'a mut dyn FnMut() -> Result<u32, FetchError>,
}

/// The root context's fetches of tokens per identity.
#[derive(Default)]
pub struct IdentityFetcher {
    in_flight: Vec<IdentityFetch>,
}

impl IdentityFetcher {
    pub fn take(&mut self, call_id: u32) -> Option<IdentityFetch> {
        let at = self.in_flight.iter().position(|fetch| fetch.call_id == call_id)?;
        Some(self.in_flight.swap_remove(at))
    }

    /// Forgets fetches whose answer never came (the lease they held runs out meanwhile).
    pub fn forget_lost(&mut self, now_ms: u64, timeout_ms: u64) {
        self.in_flight
            .retain(|fetch| now_ms <= fetch.started_ms + timeout_ms + 5_000);
    }

    /// One tick over every identity this worker knows. Returns the identities whose fetch
    /// failed to dispatch, with the error, for the root to record like an answer.
    pub fn on_tick(&mut self, tokens: &IdentityTokens, ctx: &mut FetchContext<'_>) -> Vec<(IdentityFetch, FetchError)> {
        let identities: Vec<String> = tokens.entries.borrow().keys().cloned().collect();
        let mut failed = Vec::new();
        for identity in identities {
            if let Some(failure) = self.tick_identity(tokens, &identity, ctx) {
                failed.push(failure);
            }
        }
        failed
    }

    fn tick_identity(
        &mut self,
        tokens: &IdentityTokens,
        identity: &str,
        ctx: &mut FetchContext<'_>,
    ) -> Option<(IdentityFetch, FetchError)> {
        let now_ms = ctx.now_ms;
        let (slot, demand) = {
            let mut entries = tokens.entries.borrow_mut();
            let entry = entries.get_mut(identity)?;
            if std::mem::take(&mut entry.used) {
                entry.last_used_ms = now_ms;
            }
            let demand = Demand {
                local_last_used_ms: entry.last_used_ms,
                waiting: !entry.waiters.is_empty(),
            };
            let publish_due = entry.last_used_ms >= entry.published_use_ms + PUBLISH_USE_EVERY_MS;
            if entry.slot.is_some() && !demand.waiting && !publish_due && now_ms < entry.next_read_ms {
                return None;
            }
            if entry.slot.is_none() && !demand.waiting {
                // Lost its slot and nobody waits: keep the local copy while it is usable.
                if entry.authorization(now_ms).is_none() {
                    entries.remove(identity);
                }
                return None;
            }
            (entry.slot, demand)
        };
        let slot = match slot {
            Some(slot) => slot,
            None => {
                let slot = tokens.place(identity, now_ms, ctx.metrics)?;
                if let Some(entry) = tokens.entries.borrow_mut().get_mut(identity) {
                    entry.slot = Some(slot);
                }
                slot
            }
        };
        let (state, cas) = tokens.read_slot(slot)?;
        if !state.owned_by(identity) {
            // Given to another identity (or freed): find a slot again when a request waits.
            if let Some(entry) = tokens.entries.borrow_mut().get_mut(identity) {
                entry.slot = None;
            }
            return None;
        }
        if let Some(entry) = tokens.entries.borrow_mut().get_mut(identity) {
            entry.adopt(&state, now_ms);
        }
        if state.is_idle(now_ms, &demand) {
            tokens.free(identity, slot, &state, cas, ctx.metrics);
            let mut entries = tokens.entries.borrow_mut();
            if entries.get(identity).is_some_and(|entry| entry.waiters.is_empty()) {
                entries.remove(identity);
            }
            return None;
        }
        let published = state.with_use(demand.local_last_used_ms);
        let current = published.as_ref().unwrap_or(&state);
        let fetching = self.in_flight.iter().any(|fetch| fetch.slot == slot);
        let leased = (!fetching && self.in_flight.len() < MAX_FETCHES_PER_WORKER)
            .then(|| current.try_lease(now_ms, ctx.me, &ctx.timing, &demand))
            .flatten();
        let write = leased.as_ref().or(published.as_ref())?;
        if !IdentityTokens::stored(&tokens.slot_key(slot), &write.encode(), cas) {
            return None;
        }
        if let Some(entry) = tokens.entries.borrow_mut().get_mut(identity) {
            entry.published_use_ms = write.last_used_ms;
        }
        leased.as_ref()?;
        let fetch = |call_id| IdentityFetch {
            call_id,
            started_ms: now_ms,
            identity: identity.to_string(),
            slot,
        };
        match (ctx.dispatch)() {
            Ok(call_id) => {
                self.in_flight.push(fetch(call_id));
                None
            }
            Err(error) => Some((fetch(0), error)),
        }
    }

    /// Records a fetch's result in its identity's slot (only while the identity still owns it)
    /// and in this worker's copy. Returns the slot as stored, when stored.
    pub fn finish(
        tokens: &IdentityTokens,
        fetch: &IdentityFetch,
        result: &Result<FetchedToken, FetchError>,
        now_ms: u64,
        me: u64,
        timing: &Timing,
        jitter: f64,
    ) -> Option<IdentitySlot> {
        for _ in 0..CAS_ATTEMPTS {
            let (current, cas) = tokens.read_slot(fetch.slot)?;
            if !current.owned_by(&fetch.identity) {
                info!(
                    "a token fetched for slot {} is dropped: the slot went to another identity meanwhile",
                    fetch.slot
                );
                return None;
            }
            let next = match result {
                Ok(fetched) => current.with_token(fetched, now_ms, me, jitter),
                Err(_) => current.with_failure(now_ms, me, timing, jitter),
            };
            if IdentityTokens::stored(&tokens.slot_key(fetch.slot), &next.encode(), cas) {
                if let Some(entry) = tokens.entries.borrow_mut().get_mut(&fetch.identity) {
                    entry.adopt(&next, now_ms);
                }
                return Some(next);
            }
        }
        None
    }
}
