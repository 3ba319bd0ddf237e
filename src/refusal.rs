//! Why the filter answers a request itself, and the reply it sends.

use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    IdentityMissing,
    IdentityForbidden,
    IdentityMalformed,
    UntrustedPeer,
    TokenUnavailable,
    /// `rbac_check: "enforce"` and the impersonator token lacks a needed permission.
    RbacDenied,
    /// JWT mode with the `email` claim as user, and the token says (or, with
    /// `email_verified: "required"`, does not say) that the address is verified.
    EmailUnverified,
    /// `upstream_hosts` is set and the request's `:authority` is not on it.
    UpstreamNotAllowed,
    /// `identity.allowed_users`/`allowed_groups` is set and the identity is in neither.
    IdentityNotAllowed,
}

impl Reason {
    pub const ALL: [Reason; 9] = [
        Reason::IdentityMissing,
        Reason::IdentityForbidden,
        Reason::IdentityMalformed,
        Reason::UntrustedPeer,
        Reason::TokenUnavailable,
        Reason::RbacDenied,
        Reason::EmailUnverified,
        Reason::UpstreamNotAllowed,
        Reason::IdentityNotAllowed,
    ];

    /// The stable, documented `reason` of the JSON body; also the metric suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::IdentityMissing => "identity_missing",
            Reason::IdentityForbidden => "identity_forbidden",
            Reason::IdentityMalformed => "identity_malformed",
            Reason::UntrustedPeer => "untrusted_peer",
            Reason::TokenUnavailable => "token_unavailable",
            Reason::RbacDenied => "rbac_denied",
            Reason::EmailUnverified => "email_unverified",
            Reason::UpstreamNotAllowed => "upstream_not_allowed",
            Reason::IdentityNotAllowed => "identity_not_allowed",
        }
    }

    pub fn status(self) -> u32 {
        match self {
            Reason::IdentityMissing | Reason::EmailUnverified => 401,
            Reason::IdentityForbidden
            | Reason::UntrustedPeer
            | Reason::UpstreamNotAllowed
            | Reason::IdentityNotAllowed => 403,
            Reason::IdentityMalformed => 400,
            Reason::TokenUnavailable | Reason::RbacDenied => 503,
        }
    }
}

/// A refusal. `detail` goes to the client and to the log, so it never holds a token or secret,
/// and identity values in it are shortened and escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub detail: String,
}

impl Refusal {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Refusal {
            reason,
            detail: detail.into(),
        }
    }

    /// `{"error": "...", "reason": "..."}`
    pub fn json_body(&self) -> String {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            error: &'a str,
            reason: &'a str,
        }
        serde_json::to_string(&Body {
            error: &self.detail,
            reason: self.reason.as_str(),
        })
        .unwrap_or_default()
    }
}

/// Shows an untrusted value in a log line or error: at most 64 characters, escaped.
pub fn quote_for_log(value: &[u8]) -> String {
    const LIMIT: usize = 64;
    let mut out = String::with_capacity(value.len().min(LIMIT) + 8);
    out.push('"');
    let text = String::from_utf8_lossy(value);
    for (count, ch) in text.chars().enumerate() {
        if count == LIMIT {
            out.push_str("...");
            break;
        }
        if ch.is_control() || ch == '"' || ch == '\\' {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(ch));
        } else {
            out.push(ch);
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_json_with_stable_reason() {
        let refusal = Refusal::new(Reason::IdentityMissing, "no \"user\"");
        let parsed: serde_json::Value = serde_json::from_str(&refusal.json_body()).unwrap();
        assert_eq!(parsed["reason"], "identity_missing");
        assert_eq!(parsed["error"], "no \"user\"");
        assert_eq!(Reason::IdentityMissing.status(), 401);
        assert_eq!(Reason::TokenUnavailable.status(), 503);
        assert_eq!(Reason::RbacDenied.status(), 503);
        assert_eq!(Reason::RbacDenied.as_str(), "rbac_denied");
    }

    #[test]
    fn log_quoting_escapes_and_truncates() {
        assert_eq!(quote_for_log(b"a\nb\"c"), "\"a\\u{a}b\\u{22}c\"");
        let long = vec![b'x'; 200];
        assert_eq!(quote_for_log(&long).len(), 64 + 2 + 3);
        assert_eq!(quote_for_log(&[0xff]), "\"\u{fffd}\"");
    }
}
