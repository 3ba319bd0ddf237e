//! Reads the `exp` claim of a JWT without verifying it: the issuer is trusted, only the expiry is
//! needed when the response did not carry one.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

#[derive(serde::Deserialize)]
struct Claims {
    /// NumericDate: seconds, possibly with a fraction (RFC 7519 section 2).
    exp: Option<f64>,
}

/// The `exp` claim in seconds since the epoch, if `token` is a JWT that has one.
pub fn expiry_seconds(token: &str) -> Option<u64> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || payload.len() > 16 * 1024 {
        return None;
    }
    let decoded = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Claims = serde_json::from_slice(&decoded).ok()?;
    let exp = claims.exp?;
    (exp.is_finite() && exp >= 0.0).then_some(exp as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn reads_exp() {
        assert_eq!(expiry_seconds(&jwt(r#"{"exp":1800000000,"sub":"x"}"#)), Some(1_800_000_000));
        assert_eq!(expiry_seconds(&jwt(r#"{"exp":1800000000.5}"#)), Some(1_800_000_000));
    }

    #[test]
    fn tolerates_garbage() {
        assert_eq!(expiry_seconds("opaque-token"), None);
        assert_eq!(expiry_seconds("a.b.c"), None);
        assert_eq!(expiry_seconds(&jwt(r#"{"sub":"x"}"#)), None);
        assert_eq!(expiry_seconds(&jwt(r#"{"exp":"soon"}"#)), None);
        assert_eq!(expiry_seconds(&jwt(r#"{"exp":-5}"#)), None);
        assert_eq!(expiry_seconds("a.b.c.d"), None);
    }
}
