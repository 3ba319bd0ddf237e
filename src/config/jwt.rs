//! The `identity.jwt` section (identity from the claims Envoy's `jwt_authn` verified) and
//! `identity.audit_extras` (connection facts as `Impersonate-Extra-*`), which both sources share.

use std::collections::BTreeMap;

use super::checks::non_empty;
use super::raw::{RawClaim, RawIdentity, RawJwt};
use super::ConfigError;
use crate::extra_key::api_server_key;

/// Where `jwt_authn` keeps verified payloads, in Envoy and in Istio.
pub const DEFAULT_METADATA_NAMESPACE: &str = "envoy.filters.http.jwt_authn";
/// Istio's `RequestAuthentication` stores every provider's payload under this key
/// (istio/istio `pilot/pkg/xds/filters/filters.go`, `EnvoyJwtFilterPayload`).
pub const DEFAULT_PAYLOAD_KEY: &str = "payload";
pub const DEFAULT_USER_CLAIM: &str = "sub";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSource {
    pub metadata_namespace: String,
    pub payload_key: String,
    pub user_claim: ClaimPath,
    pub groups_claim: Option<ClaimPath>,
    pub uid_claim: Option<ClaimPath>,
    /// Sorted by key.
    pub extra_claims: Vec<ExtraClaim>,
    /// What the `email_verified` claim must say; `None` unless the user claim is `email`.
    pub email_verified: Option<EmailVerified>,
}

/// The Kubernetes API server's own OIDC authenticator (`k8s.io/apiserver`
/// `plugin/pkg/authenticator/token/oidc/oidc.go`, `AuthenticateToken`) refuses `email` as the
/// username when the token carries `email_verified` and it is not `true`; the filter does the
/// same, and can also require the claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailVerified {
    /// As the API server: when `email_verified` is present it must be `true`.
    IfPresent,
    /// `email_verified` must be present and `true` (for IdPs that always send it).
    Required,
}

/// The keys to follow from the payload object to a claim, and how messages name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    pub keys: Vec<String>,
    /// `email`, or `realm_access.roles` for a nested path.
    pub display: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraClaim {
    pub key: String,
    pub claim: ClaimPath,
    pub output_header: String,
}

/// A fact about the downstream connection that Envoy knows and the client cannot forge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionFact {
    /// The mTLS peer's identity (an Istio SPIFFE ID: the client certificate's URI SAN); absent
    /// without mTLS.
    SourcePrincipal,
    /// The direct TCP peer's IP address (`identity::DIRECT_PEER_PROPERTY`), without the port.
    SourceAddress,
}

impl ConnectionFact {
    pub const NAMES: &'static [&'static str] = &["source_principal", "source_address"];

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "source_principal" => Some(ConnectionFact::SourcePrincipal),
            "source_address" => Some(ConnectionFact::SourceAddress),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditExtra {
    pub key: String,
    pub fact: ConnectionFact,
    pub output_header: String,
}

/// The header-source fields of `identity`, as (field, is set), to reject them beside `jwt`.
fn header_fields_set(raw: &RawIdentity) -> Vec<&'static str> {
    [
        ("identity.preset", raw.preset.is_some()),
        ("identity.user_header", raw.user_header.is_some()),
        ("identity.groups_header", raw.groups_header.is_some()),
        ("identity.groups_separator", raw.groups_separator.is_some()),
        ("identity.uid_header", raw.uid_header.is_some()),
        ("identity.extra_headers", raw.extra_headers.is_some()),
        ("identity.remove_identity_headers", raw.remove_identity_headers.is_some()),
    ]
    .into_iter()
    .filter_map(|(field, set)| set.then_some(field))
    .collect()
}

pub(super) fn compile_jwt(raw_identity: &RawIdentity, raw: RawJwt) -> Result<JwtSource, ConfigError> {
    let conflicts = header_fields_set(raw_identity);
    if !conflicts.is_empty() {
        return Err(ConfigError::new(
            "identity.jwt",
            format!(
                "cannot be combined with {}: the identity comes either from a verified JWT or \
                 from headers; remove those fields (or remove `jwt`)",
                conflicts.join(", ")
            ),
        ));
    }
    let metadata_namespace = non_empty(
        "identity.jwt.metadata_namespace",
        raw.metadata_namespace
            .unwrap_or_else(|| DEFAULT_METADATA_NAMESPACE.to_string()),
    )?;
    let payload_key = non_empty(
        "identity.jwt.payload_key",
        raw.payload_key.unwrap_or_else(|| DEFAULT_PAYLOAD_KEY.to_string()),
    )?;
    let user_claim = match raw.user_claim {
        Some(claim) => claim_path("identity.jwt.user_claim", claim)?,
        None => claim_path("identity.jwt.user_claim", RawClaim(vec![DEFAULT_USER_CLAIM.into()]))?,
    };
    let groups_claim = raw
        .groups_claim
        .map(|claim| claim_path("identity.jwt.groups_claim", claim))
        .transpose()?;
    let uid_claim = raw
        .uid_claim
        .map(|claim| claim_path("identity.jwt.uid_claim", claim))
        .transpose()?;

    let mut extra_claims: Vec<ExtraClaim> = Vec::new();
    for (key, claim) in raw.extra_claims.unwrap_or_default() {
        let field = format!("identity.jwt.extra_claims.{key}");
        let key = api_server_key(&key).map_err(|message| ConfigError::new(&field, message))?;
        if extra_claims.iter().any(|extra| extra.key == key) {
            return Err(ConfigError::new(
                field,
                "two extra keys differ only in letter case; Kubernetes lowercases them, keep one",
            ));
        }
        let claim = claim_path(&field, claim)?;
        let output_header = format!("impersonate-extra-{key}");
        // Kept sorted by key by inserting in place (a `sort` adds kilobytes to the wasm).
        let at = extra_claims.partition_point(|extra| extra.key < key);
        extra_claims.insert(
            at,
            ExtraClaim {
                key,
                claim,
                output_header,
            },
        );
    }

    let user_claim_is_email = user_claim.keys.len() == 1 && user_claim.keys[0] == "email";
    let email_verified = match (raw.email_verified.as_deref(), user_claim_is_email) {
        (None | Some("if_present"), true) => Some(EmailVerified::IfPresent),
        (Some("required"), true) => Some(EmailVerified::Required),
        (None, false) => None,
        (Some("if_present" | "required"), false) => {
            return Err(ConfigError::new(
                "identity.jwt.email_verified",
                "applies only when identity.jwt.user_claim is \"email\"; remove it",
            ))
        }
        (Some(other), _) => {
            return Err(ConfigError::new(
                "identity.jwt.email_verified",
                format!("unknown value {other:?}; use \"if_present\" (the default, as the Kubernetes API server does) or \"required\""),
            ))
        }
    };

    Ok(JwtSource {
        email_verified,
        metadata_namespace,
        payload_key,
        user_claim,
        groups_claim,
        uid_claim,
        extra_claims,
    })
}

fn claim_path(field: &str, raw: RawClaim) -> Result<ClaimPath, ConfigError> {
    let keys = raw.0;
    if keys.is_empty() {
        return Err(ConfigError::new(
            field,
            "an empty path names no claim; give a claim name such as \"email\" or a path such \
             as [\"realm_access\", \"roles\"]",
        ));
    }
    for key in &keys {
        if key.is_empty() || key.chars().any(char::is_control) {
            return Err(ConfigError::new(
                field,
                "claim names must be non-empty and free of control characters",
            ));
        }
    }
    let display = keys.join(".");
    Ok(ClaimPath { keys, display })
}

/// `audit_extras` keys travel as header names unescaped: Kiali hands them to client-go, which
/// percent-encodes `%` again, so an encoded key would reach the API server double-encoded.
/// `taken` holds the extra keys the identity source already maps.
pub(super) fn compile_audit_extras(
    raw: Option<BTreeMap<String, String>>,
    taken: &[&str],
) -> Result<Vec<AuditExtra>, ConfigError> {
    let mut audit_extras: Vec<AuditExtra> = Vec::new();
    for (key, fact_name) in raw.unwrap_or_default() {
        let field = format!("identity.audit_extras.{key}");
        let key = api_server_key(&key).map_err(|message| ConfigError::new(&field, message))?;
        if taken.contains(&key.as_str()) || audit_extras.iter().any(|extra| extra.key == key) {
            return Err(ConfigError::new(
                field,
                format!("the extra key {key:?} is already mapped; each extra key must be distinct (Kubernetes lowercases them)"),
            ));
        }
        let Some(fact) = ConnectionFact::from_name(&fact_name) else {
            return Err(ConfigError::new(
                field,
                format!(
                    "unknown value {fact_name:?}; use one of {}",
                    ConnectionFact::NAMES.join(", ")
                ),
            ));
        };
        let output_header = format!("impersonate-extra-{key}");
        let at = audit_extras.partition_point(|extra| extra.key < key);
        audit_extras.insert(
            at,
            AuditExtra {
                key,
                fact,
                output_header,
            },
        );
    }
    Ok(audit_extras)
}
