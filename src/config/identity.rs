//! The `identity` section: which headers carry the authenticated user (or, with `jwt`, which
//! verified claims do), presets for the common authenticating proxies, and the limits applied to
//! every value.

use std::collections::BTreeMap;

use super::checks::header_name;
use super::jwt::{compile_audit_extras, compile_jwt, AuditExtra, JwtSource};
use super::raw::RawIdentity;
use super::ConfigError;
use crate::extra_key::api_server_key;

/// Longest identity value (user, uid, one group, one extra value) accepted by default, in bytes.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1024;
pub const DEFAULT_MAX_GROUPS: usize = 100;
pub const MAX_GROUPS_LIMIT: usize = 1000;

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
    /// When either is set, only these users, or members of these groups (from the identity
    /// source, after prefixes; not `static_groups`), pass; others get 403 `identity_not_allowed`.
    pub allowed: Option<AllowList>,
    pub max_groups: usize,
    pub max_value_bytes: usize,
    pub remove_identity_headers: bool,
    /// Identity from a verified JWT instead of headers; then the header fields above are empty.
    pub jwt: Option<JwtSource>,
    /// `Impersonate-Extra-<key>` from connection facts, sorted by key.
    pub audit_extras: Vec<AuditExtra>,
}

impl IdentityConfig {
    /// Whether requests can carry `Impersonate-Group` (the ClusterRole must allow `groups`).
    pub fn may_send_groups(&self) -> bool {
        let mapped = match &self.jwt {
            Some(jwt) => jwt.groups_claim.is_some(),
            None => self.groups_header.is_some(),
        };
        mapped || !self.static_groups.is_empty()
    }

    /// Whether requests can carry `Impersonate-Uid` (the ClusterRole must allow `uids`).
    pub fn may_send_uid(&self) -> bool {
        match &self.jwt {
            Some(jwt) => jwt.uid_claim.is_some(),
            None => self.uid_header.is_some(),
        }
    }

    /// Every `<key>` of the `Impersonate-Extra-<key>` headers this configuration can send, from
    /// either source and the audit extras (the ClusterRole must allow `userextras/<key>`).
    pub fn extra_keys(&self) -> Vec<&str> {
        let mapped: Vec<&str> = match &self.jwt {
            Some(jwt) => jwt.extra_claims.iter().map(|extra| extra.key.as_str()).collect(),
            None => self.extras.iter().map(|extra| extra.key.as_str()).collect(),
        };
        mapped
            .into_iter()
            .chain(self.audit_extras.iter().map(|extra| extra.key.as_str()))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraMapping {
    pub key: String,
    pub source_header: String,
    pub output_header: String,
}

/// Header names filled in by a preset. Each was checked against the proxy's documentation and
/// source; see docs/configuration.md "Identity presets".
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

/// The header fields of `identity` (unused, and empty, when the identity comes from a JWT).
struct HeaderSource {
    user_header: String,
    groups_header: Option<String>,
    groups_separator: String,
    uid_header: Option<String>,
    extras: Vec<ExtraMapping>,
    remove_identity_headers: bool,
}

impl HeaderSource {
    /// JWT mode: no header is read, and none is removed besides `impersonate-*`.
    fn unused() -> Self {
        HeaderSource {
            user_header: String::new(),
            groups_header: None,
            groups_separator: ",".to_string(),
            uid_header: None,
            extras: Vec::new(),
            remove_identity_headers: false,
        }
    }
}

/// `identity.allowed_users` / `identity.allowed_groups`: who may reach Kiali at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList {
    pub users: Vec<String>,
    pub groups: Vec<String>,
}

impl AllowList {
    pub fn admits<'a>(&self, user: &str, mut groups: impl Iterator<Item = &'a str>) -> bool {
        self.users.iter().any(|allowed| allowed == user)
            || groups.any(|group| self.groups.iter().any(|allowed| allowed == group))
    }
}

fn compile_allow_list(
    users: Option<Vec<String>>,
    groups: Option<Vec<String>>,
) -> Result<Option<AllowList>, ConfigError> {
    if users.is_none() && groups.is_none() {
        return Ok(None);
    }
    let mut compiled = AllowList { users: Vec::new(), groups: Vec::new() };
    for (field, list, out) in [
        ("identity.allowed_users", users, &mut compiled.users),
        ("identity.allowed_groups", groups, &mut compiled.groups),
    ] {
        let Some(list) = list else { continue };
        if list.is_empty() {
            return Err(ConfigError::new(
                field,
                "is empty, so it admits no one; list users or groups (compared after the prefixes), or remove it",
            ));
        }
        for (index, entry) in list.into_iter().enumerate() {
            let trimmed = crate::names::trim_like_go(&entry);
            if trimmed.is_empty() || trimmed.chars().any(char::is_control) {
                return Err(ConfigError::new(
                    format!("{field}[{index}]"),
                    "must be a non-empty name without control characters",
                ));
            }
            out.push(trimmed.to_string());
        }
    }
    Ok(Some(compiled))
}

pub(super) fn compile_identity(mut raw: RawIdentity) -> Result<IdentityConfig, ConfigError> {
    let jwt = raw
        .jwt
        .take()
        .map(|jwt| compile_jwt(&raw, jwt))
        .transpose()?;
    let headers = match jwt {
        Some(_) => HeaderSource::unused(),
        None => compile_header_source(&mut raw)?,
    };
    let taken_extra_keys: Vec<&str> = match &jwt {
        Some(jwt) => jwt.extra_claims.iter().map(|extra| extra.key.as_str()).collect(),
        None => headers.extras.iter().map(|extra| extra.key.as_str()).collect(),
    };
    let audit_extras = compile_audit_extras(raw.audit_extras.take(), &taken_extra_keys)?;

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
        // Go's header reader (Kiali, the API server) trims spaces and tabs from the start of a
        // value, so a prefix starting with one would not reach the API server as written: "  "
        // before "system:admin" arrives as system:admin, past the filter's system: check.
        if value.starts_with([' ', '\t']) {
            return Err(ConfigError::new(
                field,
                "must not start with a space or tab: Kubernetes' Go header reader trims them, so \
                 the API server would see a different identity than the filter checked",
            ));
        }
    }

    let mut static_groups: Vec<String> = Vec::with_capacity(raw.static_groups.len());
    for (index, group) in raw.static_groups.iter().enumerate() {
        let field = format!("identity.static_groups[{index}]");
        // Trimmed as Go's header reader will trim it (see identity::trim_like_go).
        let trimmed = crate::names::trim_like_go(group);
        if trimmed.is_empty() || trimmed.chars().any(char::is_control) {
            return Err(ConfigError::new(
                field,
                "a static group must be non-empty and free of control characters",
            ));
        }
        if !raw.allow_system_identities && crate::names::is_system_identity(trimmed) {
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

    let allowed = compile_allow_list(raw.allowed_users.take(), raw.allowed_groups.take())?;

    Ok(IdentityConfig {
        allowed,
        user_header: headers.user_header,
        groups_header: headers.groups_header,
        groups_separator: headers.groups_separator,
        uid_header: headers.uid_header,
        extras: headers.extras,
        user_prefix: raw.user_prefix,
        group_prefix: raw.group_prefix,
        static_groups,
        allow_system_identities: raw.allow_system_identities,
        max_groups,
        max_value_bytes,
        remove_identity_headers: headers.remove_identity_headers,
        jwt,
        audit_extras,
    })
}

fn compile_header_source(raw: &mut RawIdentity) -> Result<HeaderSource, ConfigError> {
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

    let user_header = match (raw.user_header.take(), &preset) {
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
    let groups_header = match raw.groups_header.take() {
        Some(explicit) => explicit,
        None => preset.as_ref().and_then(|p| p.groups_header.map(str::to_string)),
    }
    .map(|name| header_name("identity.groups_header", &name))
    .transpose()?;

    let groups_separator = raw.groups_separator.take().unwrap_or_else(|| {
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

    let uid_header = match raw.uid_header.take() {
        Some(explicit) => explicit,
        None => preset.as_ref().and_then(|p| p.uid_header.map(str::to_string)),
    }
    .map(|name| header_name("identity.uid_header", &name))
    .transpose()?;

    let extra_sources: BTreeMap<String, String> = match raw.extra_headers.take() {
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
        let key = api_server_key(&key).map_err(|message| ConfigError::new(&field, message))?;
        let source_header = header_name(&field, &header)?;
        let output_header = format!("impersonate-extra-{key}");
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

    Ok(HeaderSource {
        user_header,
        groups_header,
        groups_separator,
        uid_header,
        extras,
        remove_identity_headers,
    })
}
