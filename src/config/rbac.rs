//! The `rbac_check` setting: whether the filter asks the API server, after each new token, what
//! the impersonator token may impersonate (see `crate::rbac`).

use super::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RbacCheckMode {
    /// No SelfSubjectAccessReview is sent.
    Off,
    /// Missing permissions are logged and counted; requests go on (the default: a cluster with a
    /// custom authorizer may answer the review differently from the real request).
    Warn,
    /// Also refuse requests with 503 `rbac_denied` while a needed permission is denied.
    Enforce,
}

pub const RBAC_CHECK_MODES: &[&str] = &["off", "warn", "enforce"];

impl RbacCheckMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RbacCheckMode::Off => "off",
            RbacCheckMode::Warn => "warn",
            RbacCheckMode::Enforce => "enforce",
        }
    }
}

/// `explicit` is the user's value; `kubernetes_source` whether the token source is a Kubernetes
/// TokenRequest (the only source whose cluster is an API server that can answer the review).
pub(super) fn compile_rbac_check(
    explicit: Option<String>,
    kubernetes_source: bool,
) -> Result<RbacCheckMode, ConfigError> {
    let Some(value) = explicit else {
        return Ok(if kubernetes_source {
            RbacCheckMode::Warn
        } else {
            RbacCheckMode::Off
        });
    };
    let mode = match value.as_str() {
        "off" => RbacCheckMode::Off,
        "warn" => RbacCheckMode::Warn,
        "enforce" => RbacCheckMode::Enforce,
        other => {
            return Err(ConfigError::new(
                "rbac_check",
                format!(
                    "unknown value {other:?}; use one of {}",
                    RBAC_CHECK_MODES.join(", ")
                ),
            ))
        }
    };
    if mode != RbacCheckMode::Off && !kubernetes_source {
        return Err(ConfigError::new(
            "rbac_check",
            format!(
                "{:?} needs a token_source of type \"kubernetes_token_request\": the review is \
                 sent to the Kubernetes API server through that cluster; remove `rbac_check` or \
                 set it to \"off\"",
                mode.as_str()
            ),
        ));
    }
    Ok(mode)
}
