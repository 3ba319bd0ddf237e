//! The short-lived ServiceAccount token: how to ask for it, how to read the answer, and the shared
//! cache state machine. Pure: the root context does the host calls.

pub mod callout;
pub mod identities;
pub mod jwt;
pub mod request;
pub mod response;
pub mod state;

/// A token as the filter keeps it. Times are milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedToken {
    pub token: String,
    pub expires_at_ms: u64,
    pub expiry_source: ExpirySource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpirySource {
    /// `status.expirationTimestamp` or `expires_in`, as the issuer returned it.
    Response,
    /// The `exp` claim of the token itself (a JWT).
    JwtClaim,
    /// Neither was usable: the documented default lifetime.
    Default,
}

/// Lifetime assumed when neither the response nor the token says when it expires.
pub const DEFAULT_LIFETIME_MS: u64 = 5 * 60 * 1000;
