//! A worker's copy of a token and a request waiting for one: plain data the root context, the
//! request path and the per-identity tokens all hold. A leaf of the adapters.

use std::rc::Rc;

pub struct LocalToken {
    pub generation: u64,
    /// Shared, so handing it to each request is a reference count, not a copy of the token.
    pub authorization: Rc<str>,
    pub usable_until_ms: u64,
}

pub struct Waiter {
    pub context_id: u32,
    pub deadline_ms: u64,
}
