//! The filter's Envoy stats. Envoy shows them as `wasmcustom.kiali_header_auth.*`; the list and
//! meaning of each is in README.md ("Metrics").

use crate::host::{self, METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM};
use crate::refusal::Reason;
use crate::token::response::FetchFailure;

#[derive(Default)]
pub struct Metrics {
    requests: Option<u32>,
    forwarded: Option<u32>,
    stripped_headers: Option<u32>,
    requests_with_stripped_headers: Option<u32>,
    refused: [Option<u32>; Reason::ALL.len()],
    paused: Option<u32>,
    resumed: Option<u32>,
    waiting: Option<u32>,
    fetch_success: Option<u32>,
    fetch_failure: [Option<u32>; FetchFailure::ALL.len()],
    fetch_latency_ms: Option<u32>,
    token_seconds_to_expiry: Option<u32>,
    config_rejected: Option<u32>,
}

const PREFIX: &str = "kiali_header_auth.";

fn define(kind: u32, name: &str) -> Option<u32> {
    host::define_metric(kind, &format!("{PREFIX}{name}"))
}

impl Metrics {
    pub fn define() -> Metrics {
        Metrics {
            requests: define(METRIC_COUNTER, "requests_total"),
            forwarded: define(METRIC_COUNTER, "forwarded_total"),
            stripped_headers: define(METRIC_COUNTER, "impersonation_headers_stripped_total"),
            requests_with_stripped_headers: define(
                METRIC_COUNTER,
                "requests_with_impersonation_headers_total",
            ),
            refused: Reason::ALL
                .map(|reason| define(METRIC_COUNTER, &format!("refused.{}", reason.as_str()))),
            paused: define(METRIC_COUNTER, "requests_paused_total"),
            resumed: define(METRIC_COUNTER, "requests_resumed_total"),
            waiting: define(METRIC_GAUGE, "requests_waiting"),
            fetch_success: define(METRIC_COUNTER, "token_fetch.success"),
            fetch_failure: FetchFailure::ALL
                .map(|failure| define(METRIC_COUNTER, &format!("token_fetch.failure.{}", failure.as_str()))),
            fetch_latency_ms: define(METRIC_HISTOGRAM, "token_fetch_latency_ms"),
            token_seconds_to_expiry: define(METRIC_GAUGE, "token_seconds_to_expiry"),
            config_rejected: define(METRIC_COUNTER, "config_rejected_total"),
        }
    }

    pub fn request(&self) {
        bump(self.requests, 1);
    }

    pub fn forwarded(&self) {
        bump(self.forwarded, 1);
    }

    pub fn stripped(&self, header_lines: u32) {
        if header_lines > 0 {
            bump(self.stripped_headers, i64::from(header_lines));
            bump(self.requests_with_stripped_headers, 1);
        }
    }

    pub fn refused(&self, reason: Reason) {
        let index = Reason::ALL.iter().position(|r| *r == reason);
        bump(index.and_then(|i| self.refused[i]), 1);
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
}

fn bump(id: Option<u32>, offset: i64) {
    if let Some(id) = id {
        host::increment_metric(id, offset);
    }
}
