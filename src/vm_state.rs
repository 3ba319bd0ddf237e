//! What one worker VM shares between its root context and its request contexts: the
//! configuration, the stats, the shared token's local copy and its waiting requests, the tokens
//! per identity, and the RBAC gate. The root context writes it; requests read it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::config::FilterConfig;
use crate::host;
use crate::identity_tokens::IdentityTokens;
use crate::local_token::{self, LocalToken, Waiter};
use crate::metrics::Metrics;
use crate::rbac_gate::RbacGate;
use crate::token::state::SharedState;

/// What one worker VM shares between its root context and its HTTP contexts.
pub struct VmState {
    pub config: FilterConfig,
    pub metrics: Rc<Metrics>,
    pub token: Option<TokenRuntime>,
    /// `token_source.per_identity`: the tokens per identity the requests use instead of the
    /// one shared token (`token` then serves the RBAC self-check only).
    pub identity_tokens: Option<IdentityTokens>,
    /// Set in `rbac_check: "enforce"` mode while a needed permission is denied.
    pub rbac_gate: RbacGate,
}

pub struct TokenRuntime {
    pub key: String,
    pub local: RefCell<Option<LocalToken>>,
    /// `local`'s token, while it stays usable until the next tick: requests read this, so they
    /// need no clock and no shared data. Only the tick and a fetch answer change it.
    pub(crate) usable: RefCell<Option<Rc<str>>>,
    /// How far ahead of a token's end of use the tick retires it: the time to the next tick.
    pub(crate) retire_ahead_ms: Cell<u64>,
    pub waiters: RefCell<Vec<Waiter>>,
}

impl TokenRuntime {
    /// `retire_ahead_ms`: the first tick's period.
    pub(crate) fn new(key: String, retire_ahead_ms: u64) -> TokenRuntime {
        TokenRuntime {
            key,
            local: RefCell::new(None),
            usable: RefCell::new(None),
            retire_ahead_ms: Cell::new(retire_ahead_ms),
            waiters: RefCell::new(Vec::new()),
        }
    }

    /// The `Authorization` value for a request now: the token the tick found usable until its
    /// next run. No clock read, no shared-data read, no copy (a reference count).
    ///
    /// Why this never forwards a token past its end of use: the tick (and a fetch answer) keep it
    /// only while `now + time to the next tick + a slack of one fast tick < usable_until`
    /// ([`TokenRuntime::refresh_usable`]), and tick fast near the end, so the tick that retires it
    /// runs before `usable_until` even when it comes up to 20 ms late. A tick delayed longer by a
    /// busy worker can let a request through after `usable_until`, but still ahead of the
    /// token's real expiry by the usable margin (a tenth of its lifetime, up to 10 s; see
    /// `token::state`).
    pub fn usable_authorization(&self) -> Option<Rc<str>> {
        self.usable.borrow().clone()
    }

    /// Recomputes [`TokenRuntime::usable_authorization`] for the time until the next tick.
    pub(crate) fn refresh_usable(&self, now_ms: u64) {
        let ahead = self.retire_ahead_ms.get();
        *self.usable.borrow_mut() = self.local.borrow().as_ref().and_then(|local| local.usable_for(now_ms, ahead));
    }

    /// The `Authorization` value to inject now, if a usable token exists. Falls back to the shared
    /// copy when this worker's copy went stale between ticks. For the tick and fetch answers.
    pub(crate) fn authorization(&self, now_ms: u64) -> Option<Rc<str>> {
        let usable_now = |local: &Option<LocalToken>| local.as_ref().and_then(|local| local.usable_for(now_ms, 0));
        if let Some(authorization) = usable_now(&self.local.borrow()) {
            return Some(authorization);
        }
        let (bytes, _) = host::get_shared_data(&self.key).ok().flatten()?;
        self.adopt(&SharedState::decode(&bytes), now_ms);
        let local = self.local.borrow();
        usable_now(&local)
    }

    pub(crate) fn adopt(&self, state: &SharedState, now_ms: u64) {
        local_token::adopt(&mut self.local.borrow_mut(), state, now_ms);
        self.refresh_usable(now_ms);
    }
}
