//! The host side of the RBAC self-check (`crate::rbac` is the logic): sends the reviews with the
//! new token as bearer, collects the answers by callout id, logs and counts them, and shares the
//! verdict so that, in `enforce` mode, every worker refuses while a permission is denied.
//!
//! Only the worker that stored a new token generation checks it. The verdict goes to shared data;
//! enforcing workers copy it into their `RbacGate` from the root tick, so the request path reads a
//! local cell and makes no host call.

use std::cell::RefCell;

use log::{info, warn};

use crate::config::{RbacCheckMode, TokenSourceKind};
use crate::host;
use crate::metrics::Metrics;
use crate::rbac::{self, Check, Outcome, Verdict};
use crate::refusal::{Reason, Refusal};
use crate::root::VmState;

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

    fn set(&self, verdict: &Verdict) {
        *self.denied.borrow_mut() = verdict.refusal_detail();
    }
}

/// One worker's part of the check.
#[derive(Default)]
pub struct RbacChecker {
    check: Option<Check>,
    /// (callout id, index of the permission it asks about) for answers still awaited.
    pending: Vec<(u32, usize)>,
    started_ms: u64,
    /// The verdict of this worker's last finished check, to re-check while it denies.
    own_verdict: Option<Verdict>,
    /// (generation, checked_at_ms) of the shared verdict last copied into the gate.
    seen: Option<(u64, u64)>,
}

fn verdict_key(vm: &VmState) -> Option<String> {
    vm.token.as_ref().map(|runtime| format!("{}/rbac", runtime.key))
}

fn subject(vm: &VmState) -> String {
    match vm.config.token_source.as_ref().map(|s| &s.kind) {
        Some(TokenSourceKind::KubernetesTokenRequest {
            namespace,
            service_account,
            ..
        }) => format!("system:serviceaccount:{namespace}:{service_account}"),
        _ => "the token".to_string(),
    }
}

impl RbacChecker {
    /// Starts a check of `generation`, whose `Authorization` value is `authorization`. A check
    /// still running for an older generation is dropped: its answers no longer matter.
    pub fn start(&mut self, vm: &VmState, generation: u64, authorization: &str, now_ms: u64) {
        if vm.config.rbac_check == RbacCheckMode::Off {
            return;
        }
        let (Some(source), Some(identity)) = (&vm.config.token_source, &vm.config.identity) else {
            return;
        };
        let mut check = Check::new(generation, rbac::needed_permissions(identity));
        self.pending.clear();
        let timeout_ms = u32::try_from(source.timeout.as_millis()).unwrap_or(u32::MAX);
        for (index, permission) in check.permissions.clone().iter().enumerate() {
            let body = permission.review_body();
            let length = body.len().to_string();
            let headers: [(&[u8], &[u8]); 7] = [
                (b":method", b"POST"),
                (b":path", rbac::REVIEW_PATH.as_bytes()),
                (b":authority", source.authority.as_bytes()),
                (b"content-type", b"application/json"),
                (b"accept", b"application/json"),
                // The question is what the NEW token may do, so it speaks for itself. A cluster
                // credential injector with `overwrite: false` keeps this header.
                (b"authorization", authorization.as_bytes()),
                (b"content-length", length.as_bytes()),
            ];
            match host::dispatch_http_call(&source.cluster, &headers, &body, timeout_ms) {
                Ok(call_id) => self.pending.push((call_id, index)),
                Err(status) => {
                    check.record(
                        index,
                        Outcome::Error {
                            detail: format!(
                                "cannot send the review to cluster {:?} (host status {status})",
                                source.cluster
                            ),
                        },
                    );
                }
            }
        }
        self.started_ms = now_ms;
        self.check = Some(check);
        self.finish_if_complete(vm, now_ms);
    }

    pub fn owns(&self, call_id: u32) -> bool {
        self.pending.iter().any(|(id, _)| *id == call_id)
    }

    /// The answer to callout `call_id` (which `owns`).
    pub fn on_response(&mut self, vm: &VmState, call_id: u32, status: Option<u16>, body: &[u8], now_ms: u64) {
        let Some(position) = self.pending.iter().position(|(id, _)| *id == call_id) else {
            return;
        };
        let (_, index) = self.pending.swap_remove(position);
        if let Some(check) = &mut self.check {
            check.record(index, rbac::parse_review(status, body));
        }
        self.finish_if_complete(vm, now_ms);
    }

    /// From the root tick: gives up on lost answers, re-checks while denied, and (enforce) copies
    /// the shared verdict into this worker's gate.
    pub fn on_tick(&mut self, vm: &VmState, now_ms: u64) {
        if vm.config.rbac_check == RbacCheckMode::Off {
            return;
        }
        let timeout_ms = vm
            .config
            .token_source
            .as_ref()
            .map_or(0, |source| source.timeout.as_millis() as u64);
        if !self.pending.is_empty() && now_ms > self.started_ms + timeout_ms + 5_000 {
            if let Some(check) = &mut self.check {
                for (_, index) in self.pending.drain(..) {
                    check.record(
                        index,
                        Outcome::Error {
                            detail: "no answer from the API server".to_string(),
                        },
                    );
                }
            }
            self.finish_if_complete(vm, now_ms);
        }
        if self.pending.is_empty() && self.own_verdict.as_ref().is_some_and(|v| v.recheck_due(now_ms)) {
            let local = vm.token.as_ref().and_then(|runtime| {
                let local = runtime.local.borrow();
                local
                    .as_ref()
                    .filter(|l| now_ms < l.usable_until_ms)
                    .map(|l| (l.generation, l.authorization.clone()))
            });
            if let Some((generation, authorization)) = local {
                self.start(vm, generation, &authorization, now_ms);
            }
        }
        if vm.config.rbac_check == RbacCheckMode::Enforce {
            self.sync_gate(vm);
        }
    }

    fn sync_gate(&mut self, vm: &VmState) {
        let Some(key) = verdict_key(vm) else {
            return;
        };
        if let Ok(Some((bytes, _))) = host::get_shared_data(&key) {
            let verdict = Verdict::decode(&bytes);
            let stamp = (verdict.generation, verdict.checked_at_ms);
            if self.seen != Some(stamp) {
                self.seen = Some(stamp);
                vm.rbac_gate.set(&verdict);
            }
        }
    }

    fn finish_if_complete(&mut self, vm: &VmState, now_ms: u64) {
        let Some(check) = self.check.take_if(|check| check.is_complete()) else {
            return;
        };
        report(vm, &vm.metrics, &check);
        let verdict = check.verdict(now_ms);
        if vm.config.rbac_check == RbacCheckMode::Enforce {
            if let Some(key) = verdict_key(vm) {
                if let Err(status) = host::set_shared_data(&key, &verdict.encode(), 0) {
                    warn!("RBAC self-check: cannot share the verdict with the other workers (host status {status})");
                }
            }
            vm.rbac_gate.set(&verdict);
            self.seen = Some((verdict.generation, verdict.checked_at_ms));
        }
        self.own_verdict = Some(verdict);
    }
}

fn report(vm: &VmState, metrics: &Metrics, check: &Check) {
    let subject = subject(vm);
    let enforce = vm.config.rbac_check == RbacCheckMode::Enforce;
    let (mut allowed, mut denied, mut errors) = (0, 0, 0);
    for (permission, outcome) in check.outcomes() {
        metrics.rbac_outcome(outcome);
        match outcome {
            Outcome::Allowed => allowed += 1,
            Outcome::Denied { .. } => denied += 1,
            Outcome::Error { .. } => errors += 1,
        }
        if let Some(line) = rbac::report_line(permission, outcome, &subject, enforce) {
            warn!("{line}");
        }
    }
    info!(
        "RBAC self-check of token generation {}: {allowed} allowed, {denied} denied, {errors} \
         could not be checked (rbac_check \"{}\")",
        check.generation,
        vm.config.rbac_check.as_str()
    );
}
