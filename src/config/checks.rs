//! Value checks shared by more than one section.

use super::ConfigError;

/// Validates an HTTP header name (RFC 9110 token) and lowercases it.
pub(super) fn header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    let lower = name.trim().to_ascii_lowercase();
    if lower.is_empty() || !lower.bytes().all(is_token_byte) {
        return Err(ConfigError::new(
            field,
            format!("{name:?} is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)"),
        ));
    }
    if lower.starts_with("impersonate-") {
        return Err(ConfigError::new(
            field,
            format!("{name:?} cannot be an identity source: the filter removes every client-supplied impersonate-* header before reading identity"),
        ));
    }
    if lower == "authorization" || lower == "cookie" || lower == "host" {
        return Err(ConfigError::new(
            field,
            format!("{name:?} cannot carry the user name; use the header your authenticating proxy sets (for example x-forwarded-user)"),
        ));
    }
    Ok(lower)
}

pub use crate::names::is_token_byte;

pub(super) fn non_empty(field: &str, value: String) -> Result<String, ConfigError> {
    if value.trim().is_empty() || value.chars().any(char::is_control) {
        return Err(ConfigError::new(
            field,
            "must be a non-empty string without control characters",
        ));
    }
    Ok(value)
}
