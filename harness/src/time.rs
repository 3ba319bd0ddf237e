//! Timestamps as the Kubernetes API server writes them: RFC 3339, UTC, second precision
//! (`2026-11-24T10:00:00Z`), through `humantime`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Formats as RFC 3339 in UTC with second precision; sub-second parts are truncated.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Whole seconds since the Unix epoch (0 before it: tokens are never issued before 1970).
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Truncates to whole seconds, as a timestamp written with second precision reads back.
pub fn truncate_to_seconds(t: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix_seconds(t))
}
