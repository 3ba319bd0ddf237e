//! The filter's Envoy stats. Envoy shows them as `wasmcustom.kiali_header_auth.*`; the list and
//! meaning of each is in docs/operations.md ("Metrics").
//!
//! Per-request counters are batched in the worker VM and flushed by the root context's tick: a
//! host call costs about a microsecond, and four of them per request were a large share of the
//! filter's cost. Rare events (fetches, pauses, configuration) are recorded at once.

use std::cell::Cell;

use crate::host::{self, METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM};
use crate::refusal::Reason;
use crate::token::response::FetchFailure;

/// A counter whose increments wait in the VM until `flush`.
#[derive(Default)]
struct BatchedCounter {
    id: Option<u32>,
    pending: Cell<i64>,
}

impl BatchedCounter {
    fn new(name: &str) -> Self {
        BatchedCounter {
            id: define(METRIC_COUNTER, name),
            pending: Cell::new(0),
        }
    }

    fn add(&self, offset: i64) {
        self.pending.set(self.pending.get() + offset);
    }

    fn flush(&self) {
        let pending = self.pending.replace(0);
        if pending != 0 {
            bump(self.id, pending);
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    requests: BatchedCounter,
    forwarded: BatchedCounter,
    stripped_headers: BatchedCounter,
    requests_with_stripped_headers: BatchedCounter,
    refused: [BatchedCounter; Reason::ALL.len()],
    paused: Option<u32>,
    resumed: Option<u32>,
    waiting: Option<u32>,
    fetch_success: Option<u32>,
    fetch_failure: [Option<u32>; FetchFailure::ALL.len()],
    fetch_latency_ms: Option<u32>,
    token_seconds_to_expiry: Option<u32>,
    config_rejected: Option<u32>,
    rbac_check: [Option<u32>; 3],
    identities_cached: Option<u32>,
    identities_dropped: [Option<u32>; 2],
    identity_token_fetches: Option<u32>,
}

const PREFIX: &str = "kiali_header_auth.";

fn define(kind: u32, name: &str) -> Option<u32> {
    host::define_metric(kind, &format!("{PREFIX}{name}"))
}

impl Metrics {
    pub fn define() -> Metrics {
        Metrics {
            requests: BatchedCounter::new("requests_total"),
            forwarded: BatchedCounter::new("forwarded_total"),
            stripped_headers: BatchedCounter::new("impersonation_headers_stripped_total"),
            requests_with_stripped_headers: BatchedCounter::new(
                "requests_with_impersonation_headers_total",
            ),
            refused: Reason::ALL
                .map(|reason| BatchedCounter::new(&format!("refused.{}", reason.as_str()))),
            paused: define(METRIC_COUNTER, "requests_paused_total"),
            resumed: define(METRIC_COUNTER, "requests_resumed_total"),
            waiting: define(METRIC_GAUGE, "requests_waiting"),
            fetch_success: define(METRIC_COUNTER, "token_fetch.success"),
            fetch_failure: FetchFailure::ALL
                .map(|failure| define(METRIC_COUNTER, &format!("token_fetch.failure.{}", failure.as_str()))),
            fetch_latency_ms: define(METRIC_HISTOGRAM, "token_fetch_latency_ms"),
            token_seconds_to_expiry: define(METRIC_GAUGE, "token_seconds_to_expiry"),
            config_rejected: define(METRIC_COUNTER, "config_rejected_total"),
            rbac_check: ["allowed", "denied", "error"]
                .map(|outcome| define(METRIC_COUNTER, &format!("rbac_check.{outcome}"))),
            identities_cached: define(METRIC_GAUGE, "identities_cached"),
            identities_dropped: ["idle", "evicted"]
                .map(|why| define(METRIC_COUNTER, &format!("identities_dropped.{why}"))),
            identity_token_fetches: define(METRIC_HISTOGRAM, "identity_token_fetches"),
        }
    }

    /// Pushes the batched per-request counters to Envoy; called from the root tick.
    pub fn flush(&self) {
        self.requests.flush();
        self.forwarded.flush();
        self.stripped_headers.flush();
        self.requests_with_stripped_headers.flush();
        for counter in &self.refused {
            counter.flush();
        }
    }

    pub fn request(&self) {
        self.requests.add(1);
    }

    pub fn forwarded(&self) {
        self.forwarded.add(1);
    }

    pub fn stripped(&self, header_lines: u32) {
        if header_lines > 0 {
            self.stripped_headers.add(i64::from(header_lines));
            self.requests_with_stripped_headers.add(1);
        }
    }

    pub fn refused(&self, reason: Reason) {
        if let Some(index) = Reason::ALL.iter().position(|r| *r == reason) {
            self.refused[index].add(1);
        }
    }

    pub fn paused(&self) {
        bump(self.paused, 1);
        bump(self.waiting, 1);
    }

    /// A waiting request left the queue: resumed, refused, or reset by the client.
    pub fn left_queue(&self, resumed: bool) {
        bump(self.waiting, -1);
        if resumed {
            bump(self.resumed, 1);
        }
    }

    pub fn fetch_succeeded(&self, latency_ms: u64) {
        bump(self.fetch_success, 1);
        if let Some(id) = self.fetch_latency_ms {
            host::record_metric(id, latency_ms);
        }
    }

    pub fn fetch_failed(&self, failure: FetchFailure, latency_ms: Option<u64>) {
        let index = FetchFailure::ALL.iter().position(|f| *f == failure);
        bump(index.and_then(|i| self.fetch_failure[i]), 1);
        if let (Some(id), Some(latency)) = (self.fetch_latency_ms, latency_ms) {
            host::record_metric(id, latency);
        }
    }

    pub fn token_seconds_to_expiry(&self, seconds: u64) {
        if let Some(id) = self.token_seconds_to_expiry {
            host::record_metric(id, seconds);
        }
    }

    pub fn config_rejected(&self) {
        bump(self.config_rejected, 1);
    }

    /// One permission of the RBAC self-check answered.
    pub fn rbac_outcome(&self, outcome: &crate::rbac::Outcome) {
        let index = match outcome {
            crate::rbac::Outcome::Allowed => 0,
            crate::rbac::Outcome::Denied { .. } => 1,
            crate::rbac::Outcome::Error { .. } => 2,
        };
        bump(self.rbac_check[index], 1);
    }
}

impl Metrics {
    /// `per_identity`: identities holding a token slot, as last written to the shared index
    /// (every change to the set is such a write, so the last writer's count is the count).
    pub fn identities_cached(&self, count: usize) {
        if let Some(id) = self.identities_cached {
            host::record_metric(id, count as u64);
        }
    }

    /// `per_identity`: an identity lost its slot, idle or `evicted` for a new one at
    /// `max_identities`; `fetches` is how many tokens it was given while it held the slot.
    pub fn identity_dropped(&self, evicted: bool, fetches: u32) {
        bump(self.identities_dropped[usize::from(evicted)], 1);
        if let Some(id) = self.identity_token_fetches {
            host::record_metric(id, u64::from(fetches));
        }
    }
}

fn bump(id: Option<u32>, offset: i64) {
    if let Some(id) = id {
        host::increment_metric(id, offset);
    }
}
