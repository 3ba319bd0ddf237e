//! Sends a refusal as a local reply in the current (effective) HTTP context.

use log::{info, warn};

use crate::host;
use crate::metrics::Metrics;
use crate::refusal::{Reason, Refusal};

/// Seconds a client should wait before retrying after `token_unavailable`.
const RETRY_AFTER_SECONDS: &str = "1";

pub fn refuse(metrics: &Metrics, refusal: &Refusal) {
    metrics.refused(refusal.reason);
    let status = refusal.reason.status();
    match refusal.reason {
        Reason::IdentityMissing | Reason::TokenUnavailable => info!(
            "refused request: status={status} reason={}: {}",
            refusal.reason.as_str(),
            refusal.detail
        ),
        _ => warn!(
            "refused request: status={status} reason={}: {}",
            refusal.reason.as_str(),
            refusal.detail
        ),
    }
    let body = refusal.json_body();
    let mut headers = vec![
        ("content-type", "application/json"),
        ("cache-control", "no-store"),
        ("x-kiali-header-auth-reason", refusal.reason.as_str()),
    ];
    if refusal.reason == Reason::TokenUnavailable {
        headers.push(("retry-after", RETRY_AFTER_SECONDS));
    }
    if let Err(status) = host::send_local_response(status, &headers, body.as_bytes()) {
        warn!("could not send the local reply (host status {status})");
    }
}
