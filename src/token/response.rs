//! Reads the token service's answer. Errors carry only what is safe to log: status, the
//! service's own reason and message, never the token or a credential.

use serde::Deserialize;

use super::{jwt, ExpirySource, FetchedToken, DEFAULT_LIFETIME_MS};
use crate::config::TokenSourceKind;
use crate::refusal::quote_for_log;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchFailure {
    /// No HTTP answer: connection refused, reset, or `timeout_ms` passed.
    Transport,
    /// An HTTP status other than success.
    HttpStatus,
    /// A success status with a body we cannot use.
    Malformed,
    /// A token whose expiry is already past.
    Expired,
    /// The callout could not even be sent (for example the cluster does not exist).
    Dispatch,
}

impl FetchFailure {
    pub const ALL: [FetchFailure; 5] = [
        FetchFailure::Transport,
        FetchFailure::HttpStatus,
        FetchFailure::Malformed,
        FetchFailure::Expired,
        FetchFailure::Dispatch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FetchFailure::Transport => "transport",
            FetchFailure::HttpStatus => "http_status",
            FetchFailure::Malformed => "malformed",
            FetchFailure::Expired => "expired",
            FetchFailure::Dispatch => "dispatch",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError {
    pub failure: FetchFailure,
    pub detail: String,
}

impl FetchError {
    pub fn new(failure: FetchFailure, detail: impl Into<String>) -> Self {
        FetchError {
            failure,
            detail: detail.into(),
        }
    }
}

const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// `status` is the `:status` of the answer, `None` when there was no HTTP answer at all.
pub fn parse(
    kind: &TokenSourceKind,
    status: Option<u16>,
    body: &[u8],
    now_ms: u64,
) -> Result<FetchedToken, FetchError> {
    let Some(status) = status else {
        return Err(FetchError::new(
            FetchFailure::Transport,
            "no HTTP response from the token service (connection failed, reset, or timed out)",
        ));
    };
    if let Some(error) = envoy_transport_failure(status, body) {
        return Err(error);
    }
    let (token, expiry_ms) = match kind {
        TokenSourceKind::KubernetesTokenRequest { .. } => parse_token_request(status, body)?,
        TokenSourceKind::OAuth2ClientCredentials { .. } => parse_oauth2(status, body, now_ms)?,
    };
    validate_token(&token)?;
    let (expires_at_ms, expiry_source) = match expiry_ms {
        Some(ms) => (ms, ExpirySource::Response),
        None => match jwt::expiry_seconds(&token) {
            Some(seconds) => (seconds.saturating_mul(1000), ExpirySource::JwtClaim),
            None => (now_ms.saturating_add(DEFAULT_LIFETIME_MS), ExpirySource::Default),
        },
    };
    if expires_at_ms <= now_ms {
        return Err(FetchError::new(
            FetchFailure::Expired,
            format!(
                "the token service issued a token that expired {} ms ago (check the clocks)",
                now_ms - expires_at_ms
            ),
        ));
    }
    Ok(FetchedToken {
        token,
        expires_at_ms,
        expiry_source,
    })
}

/// Envoy answers a callout it could not deliver (connection refused, reset, no healthy host,
/// timeout) with a local 503/504 whose body says so; that is a transport failure, not the token
/// service's answer.
fn envoy_transport_failure(status: u16, body: &[u8]) -> Option<FetchError> {
    const ENVOY_BODIES: [&[u8]; 3] = [
        b"upstream connect error",
        b"no healthy upstream",
        b"upstream request timeout",
    ];
    let local = (status == 503 || status == 504)
        && ENVOY_BODIES.iter().any(|prefix| body.starts_with(prefix));
    local.then(|| {
        FetchError::new(
            FetchFailure::Transport,
            format!(
                "the token service could not be reached: Envoy answered {status} {}",
                quote_for_log(body)
            ),
        )
    })
}

#[derive(Deserialize)]
struct TokenRequestResponse {
    status: Option<TokenRequestStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenRequestStatus {
    token: Option<String>,
    expiration_timestamp: Option<String>,
}

#[derive(Deserialize)]
struct KubernetesStatus {
    reason: Option<String>,
    message: Option<String>,
}

fn parse_token_request(status: u16, body: &[u8]) -> Result<(String, Option<u64>), FetchError> {
    if !(200..300).contains(&status) {
        let detail = match serde_json::from_slice::<KubernetesStatus>(body) {
            Ok(k8s) => format!(
                "TokenRequest failed with HTTP {status}: reason {}, message {}",
                quote_for_log(k8s.reason.unwrap_or_default().as_bytes()),
                quote_for_log(k8s.message.unwrap_or_default().as_bytes())
            ),
            Err(_) => format!(
                "TokenRequest failed with HTTP {status} and no Kubernetes Status body: {}",
                quote_for_log(body)
            ),
        };
        return Err(FetchError::new(FetchFailure::HttpStatus, detail));
    }
    let parsed: TokenRequestResponse = serde_json::from_slice(body).map_err(|error| {
        FetchError::new(
            FetchFailure::Malformed,
            format!("TokenRequest answered HTTP {status} with a body that is not a TokenRequest: {error}"),
        )
    })?;
    let status_field = parsed.status.ok_or_else(|| {
        FetchError::new(FetchFailure::Malformed, "TokenRequest answer has no `status`")
    })?;
    let token = status_field.token.filter(|t| !t.is_empty()).ok_or_else(|| {
        FetchError::new(FetchFailure::Malformed, "TokenRequest answer has no `status.token`")
    })?;
    let expiry = status_field
        .expiration_timestamp
        .as_deref()
        .and_then(parse_rfc3339_ms);
    Ok((token, expiry))
}

#[derive(Deserialize)]
struct OAuth2Response {
    access_token: Option<String>,
    #[serde(default, deserialize_with = "expires_in_seconds")]
    expires_in: Option<u64>,
}

/// `expires_in` is a number by RFC 6749, but some issuers send it as a string; anything else
/// counts as absent.
fn expires_in_seconds<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    struct Seconds;
    impl<'de> serde::de::Visitor<'de> for Seconds {
        type Value = Option<u64>;
        fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
            formatter.write_str("a number of seconds")
        }
        fn visit_u64<E>(self, value: u64) -> Result<Self::Value, E> {
            Ok(Some(value))
        }
        fn visit_i64<E>(self, value: i64) -> Result<Self::Value, E> {
            Ok(u64::try_from(value).ok())
        }
        fn visit_f64<E>(self, value: f64) -> Result<Self::Value, E> {
            Ok((value.is_finite() && value >= 0.0).then_some(value as u64))
        }
        fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
            Ok(value.trim().parse::<u64>().ok())
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    deserializer.deserialize_any(Seconds)
}

#[derive(Deserialize)]
struct OAuth2Error {
    error: Option<String>,
    error_description: Option<String>,
}

fn parse_oauth2(status: u16, body: &[u8], now_ms: u64) -> Result<(String, Option<u64>), FetchError> {
    if !(200..300).contains(&status) {
        let detail = match serde_json::from_slice::<OAuth2Error>(body) {
            Ok(error) => format!(
                "token endpoint failed with HTTP {status}: error {}, description {}",
                quote_for_log(error.error.unwrap_or_default().as_bytes()),
                quote_for_log(error.error_description.unwrap_or_default().as_bytes())
            ),
            Err(_) => format!("token endpoint failed with HTTP {status}"),
        };
        return Err(FetchError::new(FetchFailure::HttpStatus, detail));
    }
    let parsed: OAuth2Response = serde_json::from_slice(body).map_err(|error| {
        FetchError::new(
            FetchFailure::Malformed,
            format!("token endpoint answered HTTP {status} with a body that is not JSON: {error}"),
        )
    })?;
    let token = parsed.access_token.filter(|t| !t.is_empty()).ok_or_else(|| {
        FetchError::new(FetchFailure::Malformed, "token endpoint answer has no `access_token`")
    })?;
    let expiry = parsed
        .expires_in
        .filter(|seconds| *seconds > 0)
        .map(|seconds| now_ms.saturating_add(seconds.saturating_mul(1000)));
    Ok((token, expiry))
}

fn validate_token(token: &str) -> Result<(), FetchError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(FetchError::new(
            FetchFailure::Malformed,
            format!("the issued token is longer than {MAX_TOKEN_BYTES} bytes"),
        ));
    }
    // It goes into an HTTP header: visible ASCII only (RFC 6750 b64token is a subset).
    if !token.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(FetchError::new(
            FetchFailure::Malformed,
            "the issued token contains characters that cannot go in an Authorization header",
        ));
    }
    Ok(())
}

/// RFC 3339 timestamp to milliseconds since the epoch; offsets other than `Z` are honoured.
pub fn parse_rfc3339_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    let (utc_part, offset_seconds) = split_offset(text)?;
    let time = humantime::parse_rfc3339(&utc_part).ok()?;
    let ms = time.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    let ms = i128::try_from(ms).ok()? - i128::from(offset_seconds) * 1000;
    u64::try_from(ms).ok()
}

/// Returns the timestamp rewritten with a `Z` suffix and the offset it had, in seconds.
fn split_offset(text: &str) -> Option<(String, i64)> {
    if text.ends_with('Z') || text.ends_with('z') {
        let mut utc = text[..text.len() - 1].to_string();
        utc.push('Z');
        return Some((utc, 0));
    }
    if text.len() < 6 || !text.is_char_boundary(text.len() - 6) {
        return None;
    }
    let (base, offset) = text.split_at(text.len() - 6);
    let bytes = offset.as_bytes();
    let sign = match bytes[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    if bytes[3] != b':' {
        return None;
    }
    let hours: i64 = offset.get(1..3)?.parse().ok()?;
    let minutes: i64 = offset.get(4..6)?.parse().ok()?;
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some((format!("{base}Z"), sign * (hours * 3600 + minutes * 60)))
}

#[cfg(test)]
mod tests;
