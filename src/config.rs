//! Plugin configuration: the JSON users write, and the validated, immutable form the filter runs on.
//!
//! Everything is checked here, at load time, so the request path never meets a bad setting. Every
//! error names the field (as a dotted path) and says how to fix it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::extra_key::encode_extra_key;
use crate::peer::TrustedPeers;

/// Longest identity value (user, uid, one group, one extra value) accepted by default, in bytes.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1024;
pub const DEFAULT_MAX_GROUPS: usize = 100;
pub const MAX_GROUPS_LIMIT: usize = 1000;
pub const DEFAULT_MAX_REQUEST_WAIT_MS: u64 = 5000;
pub const DEFAULT_MAX_WAITING_REQUESTS: usize = 1024;
/// The Kubernetes API server refuses a TokenRequest shorter than ten minutes.
pub const MIN_TOKEN_REQUEST_EXPIRATION_SECONDS: u64 = 600;
pub const DEFAULT_TOKEN_REQUEST_EXPIRATION_SECONDS: u64 = 600;
pub const DEFAULT_CALLOUT_TIMEOUT_MS: u64 = 2000;
pub const DEFAULT_RETRY_INITIAL_MS: u64 = 500;
pub const DEFAULT_RETRY_MAX_MS: u64 = 30_000;
pub const DEFAULT_KUBERNETES_AUTHORITY: &str = "kubernetes.default.svc";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
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

// ---------------------------------------------------------------------------------------------
// The JSON as users write it.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    identity: Option<RawIdentity>,
    trusted_peers: Option<RawTrustedPeers>,
    token_source: Option<RawTokenSource>,
    max_request_wait_ms: Option<u64>,
    max_waiting_requests: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    preset: Option<String>,
    user_header: Option<String>,
    #[serde(default, deserialize_with = "explicit_null")]
    groups_header: Option<Option<String>>,
    groups_separator: Option<String>,
    #[serde(default, deserialize_with = "explicit_null")]
    uid_header: Option<Option<String>>,
    extra_headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    user_prefix: String,
    #[serde(default)]
    group_prefix: String,
    #[serde(default)]
    static_groups: Vec<String>,
    #[serde(default)]
    allow_system_identities: bool,
    max_groups: Option<usize>,
    max_value_bytes: Option<usize>,
    remove_identity_headers: Option<bool>,
}

/// Tells an absent field (`None`: use the preset) from an explicit `null` (`Some(None)`: off).
fn explicit_null<'de, D>(deserializer: D) -> Result<Option<Option<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<String>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrustedPeers {
    #[serde(default)]
    principals: Vec<String>,
    #[serde(default)]
    source_cidrs: Vec<String>,
}

/// Both source types in one flat struct: serde's tagged enums buffer the whole object and add
/// tens of KB to the wasm. Which fields belong to which `type` is checked in
/// `compile_token_source`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokenSource {
    #[serde(rename = "type")]
    source_type: Option<String>,
    cluster: Option<String>,
    authority: Option<String>,
    timeout_ms: Option<u64>,
    retry_initial_ms: Option<u64>,
    retry_max_ms: Option<u64>,
    // kubernetes_token_request
    namespace: Option<String>,
    service_account: Option<String>,
    audiences: Option<Vec<String>>,
    expiration_seconds: Option<u64>,
    credential_env: Option<String>,
    // oauth2_client_credentials
    token_path: Option<String>,
    client_id: Option<String>,
    client_secret_env: Option<String>,
    scope: Option<String>,
    audience: Option<String>,
}

pub const TOKEN_SOURCE_TYPES: &[&str] = &["kubernetes_token_request", "oauth2_client_credentials"];

// ---------------------------------------------------------------------------------------------
// The validated configuration.
// ---------------------------------------------------------------------------------------------

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    /// All header names are lowercase, as Envoy presents them.
    pub user_header: String,
    pub groups_header: Option<String>,
    pub groups_separator: String,
    pub uid_header: Option<String>,
    /// (source header, output header name `impersonate-extra-<escaped key>`), sorted by key.
    pub extras: Vec<ExtraMapping>,
    pub user_prefix: String,
    pub group_prefix: String,
    pub static_groups: Vec<String>,
    pub allow_system_identities: bool,
    pub max_groups: usize,
    pub max_value_bytes: usize,
    pub remove_identity_headers: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraMapping {
    pub key: String,
    pub source_header: String,
    pub output_header: String,
}

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
}

impl TokenSourceConfig {
    /// A stable name for this source, used to key the shared token so that two plugins with
    /// different sources in one VM never read each other's token.
    pub fn cache_key(&self) -> String {
        let description = format!("{:?}|{}|{}", self.kind, self.cluster, self.authority);
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
        format!("{text}; remove it or fix its spelling (see the configuration reference in README.md)")
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
    let identity = raw.identity.map(compile_identity).transpose()?;
    let trusted_peers = raw.trusted_peers.map(compile_trusted_peers).transpose()?;
    let token_source = raw.token_source.map(compile_token_source).transpose()?;

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

    Ok(FilterConfig {
        identity,
        trusted_peers,
        token_source,
        max_request_wait: Duration::from_millis(max_request_wait_ms),
        max_waiting_requests,
    })
}

/// Header names filled in by a preset. Each was checked against the proxy's documentation and
/// source; see README.md "Identity presets".
struct Preset {
    user_header: &'static str,
    groups_header: Option<&'static str>,
    groups_separator: &'static str,
    uid_header: Option<&'static str>,
    extras: &'static [(&'static str, &'static str)],
}

pub const PRESET_NAMES: &[&str] = &["oauth2-proxy", "oauth2-proxy-auth-request", "authelia", "authentik"];

fn preset(name: &str) -> Option<Preset> {
    match name {
        // oauth2-proxy in reverse-proxy mode with --pass-user-headers (the default): groups are
        // joined with "," into one X-Forwarded-Groups header.
        "oauth2-proxy" => Some(Preset {
            user_header: "x-forwarded-user",
            groups_header: Some("x-forwarded-groups"),
            groups_separator: ",",
            uid_header: None,
            extras: &[("email", "x-forwarded-email")],
        }),
        // oauth2-proxy as an auth_request / ext_authz service with --set-xauthrequest.
        "oauth2-proxy-auth-request" => Some(Preset {
            user_header: "x-auth-request-user",
            groups_header: Some("x-auth-request-groups"),
            groups_separator: ",",
            uid_header: None,
            extras: &[("email", "x-auth-request-email")],
        }),
        // Authelia forward-auth: Remote-User, Remote-Groups (comma-separated), Remote-Email.
        "authelia" => Some(Preset {
            user_header: "remote-user",
            groups_header: Some("remote-groups"),
            groups_separator: ",",
            uid_header: None,
            extras: &[("email", "remote-email")],
        }),
        // authentik proxy outpost: X-authentik-username, X-authentik-groups ("|"-separated),
        // X-authentik-email, X-authentik-uid.
        "authentik" => Some(Preset {
            user_header: "x-authentik-username",
            groups_header: Some("x-authentik-groups"),
            groups_separator: "|",
            uid_header: Some("x-authentik-uid"),
            extras: &[("email", "x-authentik-email")],
        }),
        _ => None,
    }
}

fn compile_identity(raw: RawIdentity) -> Result<IdentityConfig, ConfigError> {
    let preset = match raw.preset.as_deref() {
        None => None,
        Some(name) => Some(preset(name).ok_or_else(|| {
            ConfigError::new(
                "identity.preset",
                format!(
                    "unknown preset {name:?}; use one of {} or set the header fields yourself",
                    PRESET_NAMES.join(", ")
                ),
            )
        })?),
    };

    let user_header = match (raw.user_header, &preset) {
        (Some(name), _) => name,
        (None, Some(preset)) => preset.user_header.to_string(),
        (None, None) => {
            return Err(ConfigError::new(
                "identity.user_header",
                "is required when no `preset` is given (for example \"x-forwarded-user\")",
            ))
        }
    };
    let user_header = header_name("identity.user_header", &user_header)?;

    // `Some(None)` is an explicit JSON null: it switches off a header the preset would set.
    let groups_header = match raw.groups_header {
        Some(explicit) => explicit,
        None => preset.as_ref().and_then(|p| p.groups_header.map(str::to_string)),
    }
    .map(|name| header_name("identity.groups_header", &name))
    .transpose()?;

    let groups_separator = raw.groups_separator.unwrap_or_else(|| {
        preset
            .as_ref()
            .map_or(",", |p| p.groups_separator)
            .to_string()
    });
    if groups_separator.is_empty() || groups_separator.chars().any(char::is_control) {
        return Err(ConfigError::new(
            "identity.groups_separator",
            "must be a non-empty string without control characters (for example \",\")",
        ));
    }

    let uid_header = match raw.uid_header {
        Some(explicit) => explicit,
        None => preset.as_ref().and_then(|p| p.uid_header.map(str::to_string)),
    }
    .map(|name| header_name("identity.uid_header", &name))
    .transpose()?;

    let extra_sources: BTreeMap<String, String> = match raw.extra_headers {
        Some(explicit) => explicit,
        None => preset
            .as_ref()
            .map(|p| {
                p.extras
                    .iter()
                    .map(|(key, header)| (key.to_string(), header.to_string()))
                    .collect()
            })
            .unwrap_or_default(),
    };
    let mut extras = Vec::with_capacity(extra_sources.len());
    for (key, header) in extra_sources {
        let field = format!("identity.extra_headers.{key}");
        if key.is_empty() || key.chars().any(char::is_control) {
            return Err(ConfigError::new(
                field,
                "an extra key must be non-empty and free of control characters",
            ));
        }
        // The API server lowercases the *encoded* key (strings.ToLower before PathUnescape), so
        // only ASCII letters change; non-ASCII travels percent-encoded and keeps its case.
        let key = key.to_ascii_lowercase();
        let source_header = header_name(&field, &header)?;
        let output_header = format!("impersonate-extra-{}", encode_extra_key(&key));
        if extras.iter().any(|e: &ExtraMapping| e.key == key) {
            return Err(ConfigError::new(
                field,
                "two extra keys differ only in letter case; Kubernetes lowercases them, keep one",
            ));
        }
        extras.push(ExtraMapping {
            key,
            source_header,
            output_header,
        });
    }

    let max_groups = raw.max_groups.unwrap_or(DEFAULT_MAX_GROUPS);
    if !(1..=MAX_GROUPS_LIMIT).contains(&max_groups) {
        return Err(ConfigError::new(
            "identity.max_groups",
            format!("must be between 1 and {MAX_GROUPS_LIMIT} (got {max_groups})"),
        ));
    }
    let max_value_bytes = raw.max_value_bytes.unwrap_or(DEFAULT_MAX_VALUE_BYTES);
    if !(16..=16_384).contains(&max_value_bytes) {
        return Err(ConfigError::new(
            "identity.max_value_bytes",
            format!("must be between 16 and 16384 (got {max_value_bytes})"),
        ));
    }

    for (field, value) in [
        ("identity.user_prefix", &raw.user_prefix),
        ("identity.group_prefix", &raw.group_prefix),
    ] {
        if value.chars().any(char::is_control) || value.len() > 256 {
            return Err(ConfigError::new(
                field,
                "must be at most 256 bytes without control characters",
            ));
        }
    }

    let mut static_groups: Vec<String> = Vec::with_capacity(raw.static_groups.len());
    for (index, group) in raw.static_groups.iter().enumerate() {
        let field = format!("identity.static_groups[{index}]");
        let trimmed = group.trim();
        if trimmed.is_empty() || trimmed.chars().any(char::is_control) {
            return Err(ConfigError::new(
                field,
                "a static group must be non-empty and free of control characters",
            ));
        }
        if !raw.allow_system_identities && crate::identity::is_system_identity(trimmed) {
            return Err(ConfigError::new(
                field,
                format!(
                    "{trimmed:?} is a Kubernetes system group; the API server adds \
                     system:authenticated on its own. Remove it, or set \
                     identity.allow_system_identities to true if you really mean it"
                ),
            ));
        }
        if !static_groups.iter().any(|g| g == trimmed) {
            static_groups.push(trimmed.to_string());
        }
    }

    let remove_identity_headers = raw.remove_identity_headers.unwrap_or(true);

    let mut seen: Vec<(&str, &str)> = vec![("identity.user_header", user_header.as_str())];
    if let Some(name) = &groups_header {
        seen.push(("identity.groups_header", name));
    }
    if let Some(name) = &uid_header {
        seen.push(("identity.uid_header", name));
    }
    for extra in &extras {
        seen.push(("identity.extra_headers", &extra.source_header));
    }
    for (index, (field, name)) in seen.iter().enumerate() {
        if let Some((other, _)) = seen[..index].iter().find(|(_, n)| n == name) {
            return Err(ConfigError::new(
                *field,
                format!("header {name:?} is already used by `{other}`; each identity header must be distinct"),
            ));
        }
    }

    Ok(IdentityConfig {
        user_header,
        groups_header,
        groups_separator,
        uid_header,
        extras,
        user_prefix: raw.user_prefix,
        group_prefix: raw.group_prefix,
        static_groups,
        allow_system_identities: raw.allow_system_identities,
        max_groups,
        max_value_bytes,
        remove_identity_headers,
    })
}

/// Validates an HTTP header name (RFC 9110 token) and lowercases it.
fn header_name(field: &str, name: &str) -> Result<String, ConfigError> {
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

pub fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

fn compile_trusted_peers(raw: RawTrustedPeers) -> Result<TrustedPeers, ConfigError> {
    if raw.principals.is_empty() && raw.source_cidrs.is_empty() {
        return Err(ConfigError::new(
            "trusted_peers",
            "lists no principal and no source CIDR, so no request could pass; list the \
             authenticating proxy's identity, or remove `trusted_peers` to accept every peer",
        ));
    }
    for (index, principal) in raw.principals.iter().enumerate() {
        if principal.trim().is_empty() || principal.chars().any(char::is_control) {
            return Err(ConfigError::new(
                format!("trusted_peers.principals[{index}]"),
                "must be a non-empty principal such as spiffe://cluster.local/ns/auth/sa/oauth2-proxy",
            ));
        }
    }
    let mut cidrs = Vec::with_capacity(raw.source_cidrs.len());
    for (index, text) in raw.source_cidrs.iter().enumerate() {
        let net = crate::peer::parse_cidr(text).map_err(|message| {
            ConfigError::new(format!("trusted_peers.source_cidrs[{index}]"), message)
        })?;
        cidrs.push(net);
    }
    Ok(TrustedPeers::new(raw.principals, cidrs))
}

fn compile_token_source(raw: RawTokenSource) -> Result<TokenSourceConfig, ConfigError> {
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
    })
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

fn non_empty(field: &str, value: String) -> Result<String, ConfigError> {
    if value.trim().is_empty() || value.chars().any(char::is_control) {
        return Err(ConfigError::new(
            field,
            "must be a non-empty string without control characters",
        ));
    }
    Ok(value)
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

#[cfg(test)]
mod tests;
