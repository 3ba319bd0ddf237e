//! A worker's copy of a token and a request waiting for one: plain data the root context, the
//! request path and the per-identity tokens all hold, and the few rules on them that the shared
//! token and the tokens per identity both follow.

use std::rc::Rc;

use crate::host;
use crate::token::state::SharedState;

#[derive(Clone)]
pub struct LocalToken {
    pub generation: u64,
    /// Shared, so handing it to each request is a reference count, not a copy of the token.
    pub authorization: Rc<str>,
    pub usable_until_ms: u64,
}

impl LocalToken {
    /// The `Authorization` value while the token stays usable `ahead_ms` past `now_ms`.
    pub fn usable_for(&self, now_ms: u64, ahead_ms: u64) -> Option<Rc<str>> {
        (now_ms.saturating_add(ahead_ms) < self.usable_until_ms).then(|| Rc::clone(&self.authorization))
    }
}

/// This worker's copy after reading `state`: kept while `state` holds the same generation,
/// replaced by a newer token, dropped when `state` has no usable token.
pub fn adopt(local: &mut Option<LocalToken>, state: &SharedState, now_ms: u64) {
    let current = local.as_ref().map(|token| token.generation);
    match state.usable_token(now_ms) {
        Some(token) if current != Some(state.generation) => {
            *local = Some(LocalToken {
                generation: state.generation,
                authorization: Rc::from(format!("Bearer {token}")),
                usable_until_ms: state.usable_until_ms,
            });
        }
        Some(_) => {}
        None => *local = None,
    }
}

pub struct Waiter {
    pub context_id: u32,
    pub deadline_ms: u64,
}

/// The waiters to release now: every one when a token is there, else those whose wait ran out.
pub fn take_due(waiters: &mut Vec<Waiter>, token_ready: bool, now_ms: u64) -> Vec<Waiter> {
    if token_ready {
        return std::mem::take(waiters);
    }
    let (due, keep) = waiters.drain(..).partition(|waiter| now_ms >= waiter.deadline_ms);
    *waiters = keep;
    due
}

/// Forgets waiters whose stream is gone (reset by the client: Envoy no longer knows their
/// context; there is no per-stream delete callback to do it, see `abi`). Returns how many. The
/// caller sets the effective context back to its own.
pub fn drop_gone(waiters: &mut Vec<Waiter>) -> usize {
    let before = waiters.len();
    waiters.retain(|waiter| host::set_effective_context(waiter.context_id).is_ok());
    before - waiters.len()
}
