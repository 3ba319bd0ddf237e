//! The `token_source` section: where the privileged ServiceAccount token comes from
//! (Kubernetes TokenRequest or an OAuth2 client-credentials grant) and the callout timings.

use std::time::Duration;

use super::checks::non_empty;
use super::raw::RawTokenSource;
use super::ConfigError;

/// The Kubernetes API server refuses a TokenRequest shorter than ten minutes.
pub const MIN_TOKEN_REQUEST_EXPIRATION_SECONDS: u64 = 600;
pub const DEFAULT_TOKEN_REQUEST_EXPIRATION_SECONDS: u64 = 600;
pub const DEFAULT_CALLOUT_TIMEOUT_MS: u64 = 2000;
pub const DEFAULT_RETRY_INITIAL_MS: u64 = 500;
pub const DEFAULT_RETRY_MAX_MS: u64 = 30_000;
pub const DEFAULT_KUBERNETES_AUTHORITY: &str = "kubernetes.default.svc";
pub const DEFAULT_MAX_IDENTITIES: usize = 1000;
pub const MAX_MAX_IDENTITIES: usize = 100_000;
pub const TOKEN_SOURCE_TYPES: &[&str] = &["kubernetes_token_request", "oauth2_client_credentials"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSourceKind {
    KubernetesTokenRequest {
        namespace: String,
        service_account: String,
        audiences: Vec<String>,
        expiration_seconds: u64,
        credential_env: Option<String>,
    },
    OAuth2ClientCredentials {
        token_path: String,
        client_id: String,
        client_secret_env: String,
        scope: Option<String>,
        audience: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSourceConfig {
    pub cluster: String,
    pub authority: String,
    pub timeout: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub kind: TokenSourceKind,
    /// `per_identity: true`: one token per mapped identity instead of one for every request.
    pub per_identity: Option<PerIdentity>,
}

/// `token_source.per_identity` and its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerIdentity {
    /// At most this many identities hold a token at once (`token_source.max_identities`).
    pub max_identities: usize,
}

impl TokenSourceConfig {
    /// A stable name for this source, used to key the shared token so that two plugins with
    /// different sources in one VM never read each other's token.
    pub fn cache_key(&self) -> String {
        let description = format!(
            "{:?}|{}|{}|{:?}",
            self.kind, self.cluster, self.authority, self.per_identity
        );
        format!(
            "kiali-header-auth/v1/token/{:016x}",
            fnv1a64(description.as_bytes())
        )
    }

    pub fn type_name(&self) -> &'static str {
        match self.kind {
            TokenSourceKind::KubernetesTokenRequest { .. } => "kubernetes_token_request",
            TokenSourceKind::OAuth2ClientCredentials { .. } => "oauth2_client_credentials",
        }
    }
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

pub(super) fn compile_token_source(raw: RawTokenSource) -> Result<TokenSourceConfig, ConfigError> {
    let source_type = raw.source_type.clone().ok_or_else(|| {
        ConfigError::new(
            "token_source.type",
            format!("is required: one of {}", TOKEN_SOURCE_TYPES.join(", ")),
        )
    })?;
    let kubernetes = source_type == "kubernetes_token_request";
    if !kubernetes && source_type != "oauth2_client_credentials" {
        return Err(ConfigError::new(
            "token_source.type",
            format!(
                "unknown token source type {source_type:?}; use one of {}",
                TOKEN_SOURCE_TYPES.join(", ")
            ),
        ));
    }
    let foreign: [(&str, bool); 5] = if kubernetes {
        [
            ("token_path", raw.token_path.is_some()),
            ("client_id", raw.client_id.is_some()),
            ("client_secret_env", raw.client_secret_env.is_some()),
            ("scope", raw.scope.is_some()),
            ("audience", raw.audience.is_some()),
        ]
    } else {
        [
            ("namespace", raw.namespace.is_some()),
            ("service_account", raw.service_account.is_some()),
            ("audiences", raw.audiences.is_some()),
            ("expiration_seconds", raw.expiration_seconds.is_some()),
            ("credential_env", raw.credential_env.is_some()),
        ]
    };
    if let Some((name, _)) = foreign.iter().find(|(_, present)| *present) {
        return Err(ConfigError::new(
            format!("token_source.{name}"),
            format!("is not a field of token source type {source_type:?}; remove it"),
        ));
    }
    let required = |field: &str, value: Option<String>| -> Result<String, ConfigError> {
        let value = value.ok_or_else(|| {
            ConfigError::new(
                format!("token_source.{field}"),
                format!("is required for token source type {source_type:?}"),
            )
        })?;
        non_empty(&format!("token_source.{field}"), value)
    };
    let cluster = required("cluster", raw.cluster)?;
    let per_identity = per_identity(raw.per_identity, raw.max_identities)?;
    let (timeout, retry_initial, retry_max) =
        callout_timings(raw.timeout_ms, raw.retry_initial_ms, raw.retry_max_ms)?;

    if kubernetes {
        let authority = non_empty(
            "token_source.authority",
            raw.authority
                .unwrap_or_else(|| DEFAULT_KUBERNETES_AUTHORITY.to_string()),
        )?;
        let namespace = dns_label("token_source.namespace", required("namespace", raw.namespace)?)?;
        let service_account = dns_subdomain(
            "token_source.service_account",
            required("service_account", raw.service_account)?,
        )?;
        let audiences = raw.audiences.unwrap_or_default();
        for (index, audience) in audiences.iter().enumerate() {
            if audience.trim().is_empty() {
                return Err(ConfigError::new(
                    format!("token_source.audiences[{index}]"),
                    "an audience must be non-empty; leave the list empty for the API server's default audience",
                ));
            }
        }
        let expiration_seconds = raw
            .expiration_seconds
            .unwrap_or(DEFAULT_TOKEN_REQUEST_EXPIRATION_SECONDS);
        if !(MIN_TOKEN_REQUEST_EXPIRATION_SECONDS..=u64::from(u32::MAX)).contains(&expiration_seconds) {
            return Err(ConfigError::new(
                "token_source.expiration_seconds",
                format!(
                    "must be at least {MIN_TOKEN_REQUEST_EXPIRATION_SECONDS} (the API server's minimum) (got {expiration_seconds})"
                ),
            ));
        }
        let credential_env = raw
            .credential_env
            .map(|name| env_name("token_source.credential_env", name))
            .transpose()?;
        return Ok(TokenSourceConfig {
            cluster,
            authority,
            timeout,
            retry_initial,
            retry_max,
            kind: TokenSourceKind::KubernetesTokenRequest {
                namespace,
                service_account,
                audiences,
                expiration_seconds,
                credential_env,
            },
            per_identity,
        });
    }

    let authority = required("authority", raw.authority)?;
    let token_path = required("token_path", raw.token_path)?;
    if !token_path.starts_with('/') || token_path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(ConfigError::new(
            "token_source.token_path",
            "must be an absolute path such as /realms/kiali/protocol/openid-connect/token",
        ));
    }
    let client_id = required("client_id", raw.client_id)?;
    let client_secret_env = env_name(
        "token_source.client_secret_env",
        required("client_secret_env", raw.client_secret_env)?,
    )?;
    Ok(TokenSourceConfig {
        cluster,
        authority,
        timeout,
        retry_initial,
        retry_max,
        kind: TokenSourceKind::OAuth2ClientCredentials {
            token_path,
            client_id,
            client_secret_env,
            scope: raw.scope.filter(|s| !s.is_empty()),
            audience: raw.audience.filter(|s| !s.is_empty()),
        },
        per_identity,
    })
}

fn per_identity(
    per_identity: Option<bool>,
    max_identities: Option<usize>,
) -> Result<Option<PerIdentity>, ConfigError> {
    if per_identity != Some(true) {
        if let Some(max) = max_identities {
            return Err(ConfigError::new(
                "token_source.max_identities",
                format!(
                    "bounds the tokens of `per_identity: true` (got {max} without it); set \
                     `token_source.per_identity: true` or remove `max_identities`"
                ),
            ));
        }
        return Ok(None);
    }
    let max_identities = max_identities.unwrap_or(DEFAULT_MAX_IDENTITIES);
    if !(1..=MAX_MAX_IDENTITIES).contains(&max_identities) {
        return Err(ConfigError::new(
            "token_source.max_identities",
            format!("must be between 1 and {MAX_MAX_IDENTITIES} (got {max_identities})"),
        ));
    }
    Ok(Some(PerIdentity { max_identities }))
}

fn callout_timings(
    timeout_ms: Option<u64>,
    retry_initial_ms: Option<u64>,
    retry_max_ms: Option<u64>,
) -> Result<(Duration, Duration, Duration), ConfigError> {
    let timeout_ms = timeout_ms.unwrap_or(DEFAULT_CALLOUT_TIMEOUT_MS);
    if !(1..=60_000).contains(&timeout_ms) {
        return Err(ConfigError::new(
            "token_source.timeout_ms",
            format!("must be between 1 and 60000 milliseconds (got {timeout_ms})"),
        ));
    }
    let retry_initial_ms = retry_initial_ms.unwrap_or(DEFAULT_RETRY_INITIAL_MS);
    if !(10..=600_000).contains(&retry_initial_ms) {
        return Err(ConfigError::new(
            "token_source.retry_initial_ms",
            format!("must be between 10 and 600000 milliseconds (got {retry_initial_ms})"),
        ));
    }
    let retry_max_ms = retry_max_ms.unwrap_or(DEFAULT_RETRY_MAX_MS.max(retry_initial_ms));
    if retry_max_ms < retry_initial_ms || retry_max_ms > 3_600_000 {
        return Err(ConfigError::new(
            "token_source.retry_max_ms",
            format!(
                "must be between retry_initial_ms ({retry_initial_ms}) and 3600000 milliseconds (got {retry_max_ms})"
            ),
        ));
    }
    Ok((
        Duration::from_millis(timeout_ms),
        Duration::from_millis(retry_initial_ms),
        Duration::from_millis(retry_max_ms),
    ))
}

fn dns_label(field: &str, value: String) -> Result<String, ConfigError> {
    let valid = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if valid {
        Ok(value)
    } else {
        Err(ConfigError::new(
            field,
            format!("{value:?} is not a Kubernetes namespace name (lowercase letters, digits and '-', at most 63)"),
        ))
    }
}

fn dns_subdomain(field: &str, value: String) -> Result<String, ConfigError> {
    let valid = !value.is_empty()
        && value.len() <= 253
        && value.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if valid {
        Ok(value)
    } else {
        Err(ConfigError::new(
            field,
            format!("{value:?} is not a Kubernetes ServiceAccount name (lowercase DNS subdomain)"),
        ))
    }
}

fn env_name(field: &str, value: String) -> Result<String, ConfigError> {
    let valid = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !value.as_bytes()[0].is_ascii_digit();
    if valid {
        Ok(value)
    } else {
        Err(ConfigError::new(
            field,
            format!("{value:?} is not an environment variable name (letters, digits, '_')"),
        ))
    }
}
