//! Which of this worker's callouts an HTTP call answer belongs to, by call id alone.
//!
//! A worker has at most one token fetch in flight and a few RBAC self-check reviews. An answer is
//! taken as the token only when it carries the fetch's own call id: never "whatever the RBAC
//! checker does not own", which would read a review answered after its check was dropped, or the
//! answer to a fetch made before a reconfiguration, as a TokenRequest answer (and count a spurious
//! failure, or adopt a token nobody asked for under this configuration).

/// The token fetch in flight: its call id and when it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchInFlight {
    pub call_id: u32,
    pub started_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// One of the RBAC self-check's reviews (pending or retired).
    RbacReview,
    /// The token fetch in flight, started at this time.
    TokenFetch { started_ms: u64 },
    /// Nothing this configuration is waiting for: ignored.
    Stray,
}

pub fn classify(call_id: u32, fetch: Option<FetchInFlight>, rbac_owns: bool) -> Answer {
    if rbac_owns {
        return Answer::RbacReview;
    }
    match fetch {
        Some(fetch) if fetch.call_id == call_id => Answer::TokenFetch { started_ms: fetch.started_ms },
        _ => Answer::Stray,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_fetchs_own_id_is_a_token_answer() {
        let fetch = Some(FetchInFlight { call_id: 7, started_ms: 1_000 });
        assert_eq!(classify(7, fetch, false), Answer::TokenFetch { started_ms: 1_000 });
        assert_eq!(classify(3, fetch, true), Answer::RbacReview);
        // A review the checker no longer knows, or a fetch of an earlier configuration: ignored,
        // where telling answers apart by elimination took it for the token.
        assert_eq!(classify(8, fetch, false), Answer::Stray);
        assert_eq!(classify(7, None, false), Answer::Stray);
    }
}
