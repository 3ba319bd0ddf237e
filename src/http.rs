//! The per-request context: a thin adapter from Envoy's request to the pure planner and back.

use std::rc::Rc;

use log::warn;
use crate::abi::{CONTINUE, STOP_ITERATION};

use crate::config::Mode;
use crate::host::{self, REQUEST_HEADERS};
use crate::identity;
use crate::refusal::{Reason, Refusal};
use crate::reply;
use crate::root::{VmState, Waiter};

pub enum Action {
    Continue,
    Pause,
}

pub struct RequestContext {
    context_id: u32,
    vm: Rc<VmState>,
    waiting: bool,
}

impl RequestContext {
    pub fn new(context_id: u32, vm: Rc<VmState>) -> Self {
        RequestContext {
            context_id,
            vm,
            waiting: false,
        }
    }

    fn refuse(&self, refusal: Refusal) -> Action {
        reply::refuse(&self.vm.metrics, &refusal);
        Action::Pause
    }

    fn peer_is_trusted(&self) -> bool {
        let Some(trusted) = &self.vm.config.trusted_peers else {
            return true;
        };
        let principal = trusted
            .checks_principal()
            .then(|| host::get_property(identity::PEER_PRINCIPAL_PROPERTY))
            .flatten();
        let address = trusted
            .checks_address()
            .then(|| host::get_property(identity::SOURCE_ADDRESS_PROPERTY))
            .flatten();
        trusted.admits(principal.as_deref(), address.as_deref())
    }

    fn handle_request_headers(&mut self) -> Action {
        let vm = Rc::clone(&self.vm);
        vm.metrics.request();
        if !self.peer_is_trusted() {
            return self.refuse(Refusal::new(
                Reason::UntrustedPeer,
                "this peer may not send identity headers: it is neither a trusted principal nor in a trusted source CIDR",
            ));
        }
        let Ok(map) = host::get_header_map(REQUEST_HEADERS) else {
            // Without the headers nothing can be stripped: fail closed.
            return self.refuse(Refusal::new(
                Reason::IdentityMalformed,
                "the request headers could not be read",
            ));
        };
        let pairs = map.pairs();
        // Reads only the properties the configuration uses: none in the header-only modes.
        let properties = identity::RequestProperties::read(&vm.config, host::get_property);
        let plan = match identity::plan_with_properties(&vm.config, &pairs, &properties) {
            Ok(plan) => plan,
            Err(refusal) => return self.refuse(refusal),
        };
        vm.metrics.stripped(plan.stripped_impersonation_headers);
        if let Some(refusal) = vm.rbac_gate.refusal() {
            return self.refuse(refusal);
        }

        // Full impersonation: the token, or none yet (the request will wait for it).
        let mut waits_for_token = false;
        let authorization = match (&vm.token, vm.config.mode()) {
            (Some(runtime), Mode::FullImpersonation) => {
                let now_ms = host::now_ms();
                let value = runtime.authorization(now_ms);
                waits_for_token = value.is_none();
                value
            }
            _ => None,
        };

        let mut edits: Vec<(&[u8], &[u8])> = plan
            .add
            .iter()
            .map(|(name, value)| (name.as_bytes(), value.as_bytes()))
            .collect();
        if let Some(value) = &authorization {
            edits.push((b"authorization", value.as_bytes()));
        }
        let mut removals = plan.remove;
        if waits_for_token {
            // The client's own Authorization must not slip through while the request waits.
            removals.push(b"authorization");
        }
        if let Err(refusal) = apply_edits(&pairs, &removals, &edits) {
            return self.refuse(refusal);
        }
        if let Some(user) = &plan.user {
            let _ = host::set_property("kiali_header_auth.user", user.as_bytes());
        }
        if !waits_for_token {
            vm.metrics.forwarded();
            return Action::Continue;
        }
        self.wait_for_token(&vm)
    }

    fn wait_for_token(&mut self, vm: &VmState) -> Action {
        let Some(runtime) = &vm.token else {
            return self.refuse(Refusal::new(Reason::TokenUnavailable, "no token source"));
        };
        let mut waiters = runtime.waiters.borrow_mut();
        if waiters.len() >= vm.config.max_waiting_requests {
            drop(waiters);
            warn!(
                "{} requests already wait for a token on this worker; refusing",
                vm.config.max_waiting_requests
            );
            return self.refuse(Refusal::new(
                Reason::TokenUnavailable,
                "too many requests are waiting for a ServiceAccount token; retry shortly",
            ));
        }
        waiters.push(Waiter {
            context_id: self.context_id,
            deadline_ms: host::now_ms() + vm.config.max_request_wait.as_millis() as u64,
        });
        self.waiting = true;
        vm.metrics.paused();
        Action::Pause
    }

    fn forget_waiter(&mut self) {
        if !self.waiting {
            return;
        }
        self.waiting = false;
        if let Some(runtime) = &self.vm.token {
            let mut waiters = runtime.waiters.borrow_mut();
            if let Some(index) = waiters.iter().position(|w| w.context_id == self.context_id) {
                waiters.swap_remove(index);
                self.vm.metrics.left_queue(false);
            }
        }
    }
}

/// A request with a couple of edits (strip-only, usually one removal) gets one host call per
/// edit; beyond that, or when a name repeats (several `impersonate-group`), the whole header map
/// is rewritten in one `set_header_pairs` call. For the ten edits of the bench request both ways
/// measured the same; the rewrite is the one that can add a name more than once.
const EDITS_WORTH_ONE_REWRITE: usize = 3;

fn apply_edits(
    original: &[(&[u8], &[u8])],
    removals: &[&[u8]],
    edits: &[(&[u8], &[u8])],
) -> Result<(), Refusal> {
    let replaced = |name: &[u8]| {
        removals.iter().any(|r| r.eq_ignore_ascii_case(name))
            || edits.iter().any(|(e, _)| e.eq_ignore_ascii_case(name))
    };
    let repeated_name = edits
        .iter()
        .enumerate()
        .any(|(i, (name, _))| edits[..i].iter().any(|(n, _)| n.eq_ignore_ascii_case(name)));
    if repeated_name || removals.len() + edits.len() >= EDITS_WORTH_ONE_REWRITE {
        let mut rewritten: Vec<(&[u8], &[u8])> = Vec::with_capacity(original.len() + edits.len());
        rewritten.extend(original.iter().copied().filter(|(name, _)| !replaced(name)));
        rewritten.extend_from_slice(edits);
        return host::set_header_pairs(REQUEST_HEADERS, &rewritten).map_err(|_| {
            Refusal::new(Reason::IdentityMalformed, "the request headers could not be rewritten")
        });
    }
    for name in removals {
        host::remove_header(REQUEST_HEADERS, name).map_err(|_| {
            Refusal::new(
                Reason::IdentityMalformed,
                "a client-supplied header could not be removed",
            )
        })?;
    }
    for (name, value) in edits {
        host::replace_header(REQUEST_HEADERS, name, value).map_err(|_| {
            Refusal::new(Reason::IdentityMalformed, "an impersonation header could not be set")
        })?;
    }
    Ok(())
}

/// The entry points `abi` calls.
impl RequestContext {
    pub fn on_request_headers(&mut self) -> u32 {
        match self.handle_request_headers() {
            Action::Continue => CONTINUE,
            Action::Pause => STOP_ITERATION,
        }
    }

    /// The stream is gone (finished, or reset by the client while it waited for a token).
    pub fn on_delete(&mut self) {
        self.forget_waiter();
    }
}
