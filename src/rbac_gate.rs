//! What the request path consults in `rbac_check: "enforce"` mode: the current denial, copied from
//! the shared verdict by the root tick (`rbac_runtime`), so a request reads a local cell.

use std::cell::RefCell;

use crate::rbac::Verdict;
use crate::refusal::{Reason, Refusal};

/// What the request path consults: the detail of the current denial, if any. Set only in
/// `enforce` mode.
#[derive(Default)]
pub struct RbacGate {
    denied: RefCell<Option<String>>,
}

impl RbacGate {
    pub fn refusal(&self) -> Option<Refusal> {
        self.denied
            .borrow()
            .as_ref()
            .map(|detail| Refusal::new(Reason::RbacDenied, detail.clone()))
    }

    pub(crate) fn set(&self, verdict: &Verdict) {
        *self.denied.borrow_mut() = verdict.refusal_detail();
    }
}
