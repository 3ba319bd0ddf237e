//! Plugin configuration: the JSON users write, and the validated, immutable form the filter runs on.
//!
//! Everything is checked here, at load time, so the request path never meets a bad setting. Every
//! error names the field (as a dotted path) and says how to fix it.
//!
//! One file per section, each readable alone: `raw` holds the serde types as users write them;
//! `identity`, `trusted_peers` and `token_source` compile their section into the validated form;
//! this file ties them together and checks what spans sections.

mod checks;
mod identity;
mod jwt;
mod raw;
mod rbac;
mod token_source;
mod trusted_peers;

use std::fmt;
use std::time::Duration;

pub use checks::is_token_byte;
pub use identity::*;
pub use jwt::*;
pub use rbac::{RbacCheckMode, RBAC_CHECK_MODES};
pub use token_source::*;

use crate::peer::TrustedPeers;
use crate::logout::Logout;
use crate::upstream_hosts::UpstreamHosts;
use raw::RawConfig;

pub const DEFAULT_MAX_REQUEST_WAIT_MS: u64 = 5000;
pub const DEFAULT_MAX_WAITING_REQUESTS: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "invalid plugin configuration: {}", self.message)
        } else {
            write!(
                f,
                "invalid plugin configuration: field `{}`: {}",
                self.field, self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Drop client impersonation headers; leave everything else alone.
    StripOnly,
    /// Also map the trusted identity headers; keep the caller's `Authorization`.
    MapIdentity,
    /// Also replace `Authorization` with a short-lived ServiceAccount token.
    FullImpersonation,
}

#[derive(Debug, Clone)]
pub struct FilterConfig {
    pub identity: Option<IdentityConfig>,
    pub trusted_peers: Option<TrustedPeers>,
    pub token_source: Option<TokenSourceConfig>,
    pub max_request_wait: Duration,
    pub max_waiting_requests: usize,
    pub rbac_check: RbacCheckMode,
    /// Also set the mapped user as filter state `wasm.kiali_header_auth.user` (for
    /// `%FILTER_STATE(...)%` in access logs): one more host call per request, so off by default;
    /// `%REQ(IMPERSONATE-USER)%` prints the same user for free.
    pub access_log_filter_state: bool,
    /// When set, requests for any other `:authority` are refused (see `upstream_hosts`).
    pub upstream_hosts: Option<UpstreamHosts>,
    /// A path the filter answers with a redirect that ends Kiali's session (see `logout`).
    pub logout: Option<Logout>,
}

impl FilterConfig {
    pub fn mode(&self) -> Mode {
        match (&self.identity, &self.token_source) {
            (None, _) => Mode::StripOnly,
            (Some(_), None) => Mode::MapIdentity,
            (Some(_), Some(_)) => Mode::FullImpersonation,
        }
    }

    /// Parses and validates the plugin configuration. Empty (or whitespace-only) input means
    /// strip-only mode.
    pub fn from_json(bytes: &[u8]) -> Result<FilterConfig, ConfigError> {
        let raw: RawConfig = if bytes.iter().all(u8::is_ascii_whitespace) {
            RawConfig::default()
        } else {
            serde_json::from_slice::<RawConfig>(bytes)
                .map_err(|error| serde_error(bytes, &error))?
        };
        compile(raw)
    }
}

/// Names the field a serde error is about, from the position serde reports.
fn serde_error(bytes: &[u8], error: &serde_json::Error) -> ConfigError {
    let text = error.to_string();
    if error.classify() != serde_json::error::Category::Data {
        return ConfigError::new("", format!("not valid JSON: {text}"));
    }
    let offset = crate::json_path::offset_of(bytes, error.line(), error.column());
    let mut field = crate::json_path::path_at(bytes, offset);
    // "missing field `x`" is reported at the end of the object that lacks it.
    if let Some(missing) = backticked(&text, "missing field `") {
        if !field.is_empty() {
            field.push('.');
        }
        field.push_str(missing);
    }
    let message = if text.starts_with("unknown field") {
        format!("{text}; remove it or fix its spelling (see the configuration reference in docs/configuration.md)")
    } else {
        text
    };
    ConfigError::new(field, message)
}

fn backticked<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    let rest = text.strip_prefix(prefix)?;
    rest.split('`').next()
}

fn compile(raw: RawConfig) -> Result<FilterConfig, ConfigError> {
    let identity = raw.identity.map(identity::compile_identity).transpose()?;
    let trusted_peers = raw.trusted_peers.map(trusted_peers::compile_trusted_peers).transpose()?;
    let token_source = raw.token_source.map(token_source::compile_token_source).transpose()?;

    if token_source.is_some() && identity.is_none() {
        return Err(ConfigError::new(
            "token_source",
            "a token source without `identity` would hand the privileged ServiceAccount token to \
             every caller; add an `identity` section (for example {\"preset\": \"oauth2-proxy\"}) \
             or remove `token_source`",
        ));
    }

    let max_request_wait_ms = raw.max_request_wait_ms.unwrap_or(DEFAULT_MAX_REQUEST_WAIT_MS);
    if !(1..=60_000).contains(&max_request_wait_ms) {
        return Err(ConfigError::new(
            "max_request_wait_ms",
            format!("must be between 1 and 60000 milliseconds (got {max_request_wait_ms})"),
        ));
    }
    let max_waiting_requests = raw
        .max_waiting_requests
        .unwrap_or(DEFAULT_MAX_WAITING_REQUESTS);
    if !(1..=100_000).contains(&max_waiting_requests) {
        return Err(ConfigError::new(
            "max_waiting_requests",
            format!("must be between 1 and 100000 (got {max_waiting_requests})"),
        ));
    }

    let kubernetes_source = matches!(
        token_source.as_ref().map(|source| &source.kind),
        Some(TokenSourceKind::KubernetesTokenRequest { .. })
    );
    let rbac_check = rbac::compile_rbac_check(raw.rbac_check, kubernetes_source)?;

    let upstream_hosts = match raw.upstream_hosts {
        None => None,
        Some(list) if list.is_empty() => {
            return Err(ConfigError::new(
                "upstream_hosts",
                "is empty, so every request would be refused; list the host names clients use \
                 to reach Kiali, or remove the field",
            ))
        }
        Some(list) => Some(UpstreamHosts::parse(&list).map_err(|(index, message)| {
            ConfigError::new(format!("upstream_hosts[{index}]"), message)
        })?),
    };

    let logout = raw.logout.map(compile_logout).transpose()?;

    Ok(FilterConfig {
        logout,
        upstream_hosts,
        identity,
        trusted_peers,
        token_source,
        max_request_wait: Duration::from_millis(max_request_wait_ms),
        max_waiting_requests,
        rbac_check,
        access_log_filter_state: raw.access_log_filter_state,
    })
}

fn compile_logout(raw: raw::RawLogout) -> Result<Logout, ConfigError> {
    let web_root = raw.web_root.unwrap_or_else(|| "/kiali".to_string());
    for (field, value) in [("logout.path", &raw.path), ("logout.web_root", &web_root)] {
        let plain = value.starts_with('/')
            && value.bytes().all(|byte| byte.is_ascii_graphic() && !b"?#;,".contains(&byte));
        if !plain {
            return Err(ConfigError::new(
                field,
                format!("{value:?} must be a path starting with `/`, without query, spaces, `;` or `,` (for example /kiali/logout)"),
            ));
        }
    }
    if raw.redirect.is_empty() || !raw.redirect.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(ConfigError::new(
            "logout.redirect",
            "must be a URL or path without spaces or control characters, such as /oauth2/sign_out?rd=%2Fkiali%2F",
        ));
    }
    Ok(Logout { path: raw.path, redirect: raw.redirect, web_root })
}

#[cfg(test)]
mod tests;
