//! What is valid but risky. Each warning has a stable code (for `--allow` and `--output json`).

use kiali_header_auth::config::{EmailVerified, FilterConfig, RbacCheckMode, TokenSourceKind};
use serde_json::Value;

use crate::input::Host;
use crate::simulate;

/// (code, what it flags), as `--help` and docs/cli.md list them.
pub const CODES: &[(&str, &str)] = &[
    ("rbac-check-off", "a kubernetes_token_request token source with rbac_check \"off\""),
    ("untrusted-identity-headers", "identity headers believed from any peer: no trusted_peers, no JWT mode"),
    ("email-unverified", "JWT user claim `email` without email_verified: \"required\""),
    ("extra-key", "an Impersonate-Extra key that does not reach the API server intact through Kiali"),
    ("fail-open", "FAIL_OPEN: if the module fails, requests reach Kiali without the filter"),
    ("unpinned", "a WasmPlugin/TrafficExtension sha256 that is empty, missing or a placeholder"),
    ("jwt-phase", "JWT mode where the filter runs before jwt_authn (phase AUTHN, or before it in the chain)"),
    ("shared-token", "one token for every user (no token_source.per_identity): Kiali v2.29 and older cache namespace lists by bearer"),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub code: &'static str,
    pub message: String,
}

fn warn(code: &'static str, message: impl Into<String>) -> Warning {
    Warning { code, message: message.into() }
}

/// Every warning for a valid configuration where it sits.
pub fn warnings(config: &FilterConfig, host: &Host) -> Vec<Warning> {
    let mut out = config_warnings(config);
    out.extend(host_warnings(config, host));
    out
}

pub fn config_warnings(config: &FilterConfig) -> Vec<Warning> {
    let mut out = Vec::new();
    let kubernetes = config
        .token_source
        .as_ref()
        .is_some_and(|source| matches!(source.kind, TokenSourceKind::KubernetesTokenRequest { .. }));
    if kubernetes && config.rbac_check == RbacCheckMode::Off {
        out.push(warn(
            "rbac-check-off",
            "rbac_check is \"off\": nothing tells you when the impersonator's ClusterRole lacks a grant, and Kiali \
             answers opaque 403s; use \"warn\" (the default) or \"enforce\"",
        ));
    }
    if config.token_source.as_ref().is_some_and(|source| source.per_identity.is_none()) {
        out.push(warn(
            "shared-token",
            "every user's requests carry the same token: Kiali v1.82.0 to v2.29.x cache namespace lists by bearer \
             token (10-20 s), so one user's list is shown to another; set token_source.per_identity: true, or allow \
             this warning on Kiali v2.30.0 and later (docs/configuration.md, \"One token per identity\")",
        ));
    }
    let Some(identity) = &config.identity else { return out };
    if identity.jwt.is_none() && config.trusted_peers.is_none() {
        out.push(warn(
            "untrusted-identity-headers",
            format!(
                "identity headers ({}) are believed from any peer that reaches the filter: set trusted_peers \
                 (the authenticating proxy's mTLS principal or source CIDRs), or take the identity from a verified \
                 JWT (identity.jwt)",
                identity.user_header
            ),
        ));
    }
    if let Some(jwt) = &identity.jwt {
        if jwt.email_verified == Some(EmailVerified::IfPresent) {
            out.push(warn(
                "email-unverified",
                "the user is the `email` claim, and a token without `email_verified` is believed: set \
                 identity.jwt.email_verified to \"required\" unless your IdP never sends it",
            ));
        }
    }
    for (key, header) in simulate::extra_headers(identity) {
        if let Err(problem) = simulate::extra_key_through_kiali(&key, &header) {
            out.push(warn("extra-key", problem));
        }
    }
    out
}

fn host_warnings(config: &FilterConfig, host: &Host) -> Vec<Warning> {
    let mut out = Vec::new();
    let jwt = config.identity.as_ref().is_some_and(|identity| identity.jwt.is_some());
    match host {
        Host::Plain => {}
        Host::Envoy { fail_open, jwt_authn_before } => {
            if *fail_open {
                out.push(fail_open_warning("failure_policy: FAIL_OPEN (or fail_open: true)"));
            }
            if jwt && *jwt_authn_before == Some(false) {
                out.push(warn(
                    "jwt-phase",
                    "identity.jwt is set but no envoy.filters.http.jwt_authn runs before this filter in its \
                     http_filters: there is no verified payload, and every request is refused 401",
                ));
            }
        }
        Host::Istio { phase, fail_strategy, url, sha256 } => {
            if fail_strategy.as_deref() == Some("FAIL_OPEN") {
                out.push(fail_open_warning("failStrategy: FAIL_OPEN"));
            }
            if jwt && phase.as_deref() == Some("AUTHN") {
                out.push(warn(
                    "jwt-phase",
                    "identity.jwt is set but phase is AUTHN: Istio runs AUTHN plugins before jwt_authn \
                     (RequestAuthentication), so there is no verified payload and every request is refused 401; \
                     use phase: AUTHZ",
                ));
            }
            if let Some(problem) = unpinned(url.as_deref(), sha256.as_ref()) {
                out.push(warn("unpinned", problem));
            }
        }
    }
    out
}

fn fail_open_warning(what: &str) -> Warning {
    warn(
        "fail-open",
        format!(
            "{what}: when the module cannot be fetched or started (an invalid configuration included), requests reach \
             Kiali without the filter, client Impersonate-* headers and all; use FAIL_CLOSE / FAIL_CLOSED"
        ),
    )
}

/// `None` when the module is pinned, or needs no pin (a `file://` URL).
fn unpinned(url: Option<&str>, sha256: Option<&Value>) -> Option<String> {
    if url.is_some_and(|url| url.starts_with("file://") || url.starts_with('/')) {
        return None;
    }
    let advice = "pin the image's manifest digest (`make push IMAGE=...` prints it), quoted";
    match sha256 {
        None | Some(Value::Null) => Some(format!("sha256 is missing: Istio loads whatever the tag points to; {advice}")),
        Some(Value::String(digest)) if digest.is_empty() => {
            Some(format!("sha256 is \"\" (not pinned): Istio loads whatever the tag points to; {advice}"))
        }
        Some(Value::String(digest)) if digest.bytes().all(|b| b == b'0') => Some(format!(
            "sha256 is a placeholder (all zeros): Istio will refuse the module, and with FAIL_CLOSE Kiali is \
             unreachable; {advice}"
        )),
        Some(Value::String(_)) => None,
        Some(other) => Some(format!(
            "sha256 is {other}, not a string: kubectl reads an unquoted all-digit digest as a number and the API \
             server refuses it; {advice}"
        )),
    }
}
