//! The host side of the RBAC self-check (`crate::rbac` is the logic): sends the reviews with a
//! token as bearer, collects the answers by callout id, logs and counts them, and keeps the
//! verdict in shared data so that every worker knows it.
//!
//! Who checks: one worker per claim, the one whose compare-and-swap on the shared verdict takes
//! it. The worker that stored a new token generation claims that generation at once, unless
//! another worker's tick saw the token first and claimed it; otherwise a tick claims a check when
//! nothing was checked yet for this configuration or a denial is due for another look. In
//! `enforce` mode each worker copies the verdict into its `RbacGate` from the tick, so the request
//! path reads a local cell and makes no host call.


use log::{info, warn};

use crate::config::{RbacCheckMode, TokenSourceKind};
use crate::host;
use crate::rbac::{self, Check, Outcome, Permission, Verdict};
use crate::vm_state::VmState;

/// Tries at writing the verdict when another worker writes at the same time.
const CAS_ATTEMPTS: usize = 8;
/// Answers to forget (late answers of a check that was replaced or given up) kept at most.
const MAX_RETIRED_CALLS: usize = 64;

/// One worker's part of the check.
#[derive(Default)]
pub struct RbacChecker {
    check: Option<Check>,
    /// (callout id, index of the permission it asks about) for answers still awaited.
    pending: Vec<(u32, usize)>,
    /// Callouts whose answers no longer matter; they must not be mistaken for a token answer.
    retired: Vec<u32>,
    started_ms: u64,
    /// (generation, checked_at_ms) of the shared verdict last copied into the gate.
    seen: Option<(u64, u64)>,
}

fn needed(vm: &VmState) -> Option<Vec<Permission>> {
    if vm.config.rbac_check == RbacCheckMode::Off {
        return None;
    }
    vm.config.identity.as_ref().map(rbac::needed_permissions)
}

/// The shared verdict under `key` and its compare-and-swap token; an unchecked verdict when there
/// is none yet, with the token that creates the key only if it is still missing (so a write
/// based on "none yet" cannot overwrite a verdict another worker wrote meanwhile). `Err` carries
/// the host status.
fn read_verdict(key: &str) -> Result<(Verdict, u32), u32> {
    match host::get_shared_data(key)? {
        Some((bytes, cas)) => Ok((Verdict::decode(&bytes), cas)),
        None => Ok((Verdict::default(), host::CREATE_ONLY)),
    }
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
    /// Checks token `generation`, which this worker just stored and whose `Authorization` value
    /// is `authorization`, unless another worker's tick has already taken it on. A check still
    /// running is dropped: the newer token is the one that matters.
    pub fn start(&mut self, vm: &VmState, generation: u64, authorization: &str, now_ms: u64) {
        let (Some(permissions), Some(runtime)) = (needed(vm), &vm.token) else {
            return;
        };
        let key = rbac::verdict_key(&runtime.key, &permissions);
        for _ in 0..CAS_ATTEMPTS {
            // Shared data unusable: checking twice is better than not checking.
            let Ok((current, cas)) = read_verdict(&key) else {
                break;
            };
            let Some(claim) = current.claim_new_generation(now_ms, generation) else {
                return;
            };
            match host::set_shared_data(&key, &claim.encode(), cas) {
                Ok(host::SetShared::CasMismatch) => continue,
                _ => break,
            }
        }
        self.send(vm, permissions, generation, authorization, now_ms);
    }

    /// Sends the reviews of a check this worker has claimed.
    fn send(
        &mut self,
        vm: &VmState,
        permissions: Vec<Permission>,
        generation: u64,
        authorization: &str,
        now_ms: u64,
    ) {
        let Some(source) = &vm.config.token_source else {
            return;
        };
        self.retire_pending();
        let mut check = Check::new(generation, permissions);
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
                // The question is what this token may do, so it speaks for itself. A cluster
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

    /// Whether callout `call_id` is one of this checker's (awaited or retired).
    pub fn owns(&self, call_id: u32) -> bool {
        self.pending.iter().any(|(id, _)| *id == call_id) || self.retired.contains(&call_id)
    }

    /// The answer to callout `call_id` (which `owns`).
    pub fn on_response(
        &mut self,
        vm: &VmState,
        call_id: u32,
        status: Option<u16>,
        body: &[u8],
        now_ms: u64,
    ) {
        if let Some(position) = self.retired.iter().position(|id| *id == call_id) {
            self.retired.swap_remove(position);
            return;
        }
        let Some(position) = self.pending.iter().position(|(id, _)| *id == call_id) else {
            return;
        };
        let (_, index) = self.pending.swap_remove(position);
        if let Some(check) = &mut self.check {
            check.record(index, rbac::parse_review(status, body));
        }
        self.finish_if_complete(vm, now_ms);
    }

    /// From the root tick: gives up on lost answers, claims a check that is due, and (enforce)
    /// copies the shared verdict into this worker's gate. One shared-data read per tick.
    pub fn on_tick(&mut self, vm: &VmState, now_ms: u64) {
        let (Some(permissions), Some(runtime), Some(source)) =
            (needed(vm), &vm.token, &vm.config.token_source)
        else {
            return;
        };
        if !self.pending.is_empty()
            && now_ms > self.started_ms + source.timeout.as_millis() as u64 + 5_000
        {
            if let Some(check) = &mut self.check {
                for &(_, index) in &self.pending {
                    check.record(
                        index,
                        Outcome::Error {
                            detail: "no answer from the API server".to_string(),
                        },
                    );
                }
            }
            self.retire_pending();
            self.finish_if_complete(vm, now_ms);
        }
        let key = rbac::verdict_key(&runtime.key, &permissions);
        let (verdict, cas) = match host::get_shared_data(&key) {
            Ok(Some((bytes, cas))) => (Verdict::decode(&bytes), cas),
            Ok(None) => {
                // First sight: create it unchecked unless another worker just did; the next
                // tick claims it by compare-and-swap.
                let _ = host::set_shared_data(&key, &Verdict::default().encode(), host::CREATE_ONLY);
                return;
            }
            Err(_) => return,
        };
        if vm.config.rbac_check == RbacCheckMode::Enforce {
            let stamp = (verdict.generation, verdict.checked_at_ms);
            if self.seen != Some(stamp) {
                self.seen = Some(stamp);
                vm.rbac_gate.set(&verdict);
            }
        }
        if self.check.is_some() || !verdict.needs_check(now_ms) {
            return;
        }
        let local = runtime.local.borrow().as_ref().and_then(|local| {
            (now_ms < local.usable_until_ms)
                .then(|| (local.generation, local.authorization.clone()))
        });
        let Some((generation, authorization)) = local else {
            return;
        };
        if let Ok(host::SetShared::Stored) =
            host::set_shared_data(&key, &verdict.claimed(now_ms, generation).encode(), cas)
        {
            self.send(vm, permissions, generation, &authorization, now_ms);
        }
    }

    fn retire_pending(&mut self) {
        self.retired
            .extend(self.pending.drain(..).map(|(id, _)| id));
        let excess = self.retired.len().saturating_sub(MAX_RETIRED_CALLS);
        self.retired.drain(..excess);
    }

    fn finish_if_complete(&mut self, vm: &VmState, now_ms: u64) {
        let Some(check) = self.check.take_if(|check| check.is_complete()) else {
            return;
        };
        report(vm, &check);
        let mut verdict = check.verdict(now_ms.max(1));
        if let Some(runtime) = &vm.token {
            let key = rbac::verdict_key(&runtime.key, &check.permissions);
            // A late check of an older token must not replace the verdict on a newer one.
            for _ in 0..CAS_ATTEMPTS {
                let Ok((current, cas)) = read_verdict(&key) else {
                    break;
                };
                if current.generation > verdict.generation {
                    return;
                }
                verdict.claimed_generation =
                    verdict.claimed_generation.max(current.claimed_generation);
                match host::set_shared_data(&key, &verdict.encode(), cas) {
                    Ok(host::SetShared::Stored) => break,
                    Ok(host::SetShared::CasMismatch) => continue,
                    Err(status) => {
                        warn!("RBAC self-check: cannot share the verdict with the other workers (host status {status})");
                        break;
                    }
                }
            }
        }
        if vm.config.rbac_check == RbacCheckMode::Enforce {
            vm.rbac_gate.set(&verdict);
            self.seen = Some((verdict.generation, verdict.checked_at_ms));
        }
    }
}

fn report(vm: &VmState, check: &Check) {
    let subject = subject(vm);
    let enforce = vm.config.rbac_check == RbacCheckMode::Enforce;
    let (mut allowed, mut denied, mut errors) = (0, 0, 0);
    for (permission, outcome) in check.outcomes() {
        vm.metrics.rbac_outcome(outcome);
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
