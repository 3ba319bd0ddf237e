//! The JSON as users write it: serde types only, `deny_unknown_fields` everywhere. Each section
//! is compiled into its validated form by the module of the same name.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) identity: Option<RawIdentity>,
    pub(super) trusted_peers: Option<RawTrustedPeers>,
    pub(super) token_source: Option<RawTokenSource>,
    pub(super) max_request_wait_ms: Option<u64>,
    pub(super) max_waiting_requests: Option<usize>,
    pub(super) rbac_check: Option<String>,
    #[serde(default)]
    pub(super) access_log_filter_state: bool,
    pub(super) upstream_hosts: Option<Vec<String>>,
    pub(super) logout: Option<RawLogout>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogout {
    pub(super) path: String,
    pub(super) redirect: String,
    pub(super) web_root: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIdentity {
    pub(super) preset: Option<String>,
    pub(super) user_header: Option<String>,
    #[serde(default, deserialize_with = "explicit_null")]
    pub(super) groups_header: Option<Option<String>>,
    pub(super) groups_separator: Option<String>,
    #[serde(default, deserialize_with = "explicit_null")]
    pub(super) uid_header: Option<Option<String>>,
    pub(super) extra_headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub(super) user_prefix: String,
    #[serde(default)]
    pub(super) group_prefix: String,
    #[serde(default)]
    pub(super) static_groups: Vec<String>,
    #[serde(default)]
    pub(super) allow_system_identities: bool,
    pub(super) allowed_users: Option<Vec<String>>,
    pub(super) allowed_groups: Option<Vec<String>>,
    pub(super) max_groups: Option<usize>,
    pub(super) max_value_bytes: Option<usize>,
    pub(super) remove_identity_headers: Option<bool>,
    /// Identity from a JWT that Envoy's `jwt_authn` verified, instead of the header fields.
    pub(super) jwt: Option<RawJwt>,
    /// `Impersonate-Extra-<key>` from what Envoy knows about the connection (both sources).
    pub(super) audit_extras: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJwt {
    pub(super) metadata_namespace: Option<String>,
    pub(super) payload_key: Option<String>,
    pub(super) user_claim: Option<RawClaim>,
    pub(super) groups_claim: Option<RawClaim>,
    pub(super) uid_claim: Option<RawClaim>,
    pub(super) extra_claims: Option<BTreeMap<String, RawClaim>>,
    /// `"if_present"` (default) or `"required"`; only with `user_claim: "email"`.
    pub(super) email_verified: Option<String>,
}

/// A claim as users write it: a string is one top-level key (which may contain dots or slashes,
/// such as `https://example.com/groups`); an array of strings is a path into nested objects
/// (`["realm_access", "roles"]`). Both become the list of keys to follow. Deserialized by hand:
/// `#[serde(untagged)]` would buffer the value and grow the wasm.
#[derive(Debug)]
pub(super) struct RawClaim(pub(super) Vec<String>);

impl<'de> Deserialize<'de> for RawClaim {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ClaimVisitor;
        impl<'de> serde::de::Visitor<'de> for ClaimVisitor {
            type Value = RawClaim;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a claim name (string) or a path of claim names (array of strings)")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<RawClaim, E> {
                Ok(RawClaim(vec![value.to_string()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawClaim, A::Error> {
                let mut path = Vec::new();
                while let Some(segment) = seq.next_element::<String>()? {
                    path.push(segment);
                }
                Ok(RawClaim(path))
            }
        }
        deserializer.deserialize_any(ClaimVisitor)
    }
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
pub(super) struct RawTrustedPeers {
    #[serde(default)]
    pub(super) principals: Vec<String>,
    #[serde(default)]
    pub(super) source_cidrs: Vec<String>,
}

/// Both source types in one flat struct: serde's tagged enums buffer the whole object and add
/// tens of KB to the wasm. Which fields belong to which `type` is checked in
/// `compile_token_source`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTokenSource {
    #[serde(rename = "type")]
    pub(super) source_type: Option<String>,
    pub(super) cluster: Option<String>,
    pub(super) authority: Option<String>,
    pub(super) timeout_ms: Option<u64>,
    pub(super) retry_initial_ms: Option<u64>,
    pub(super) retry_max_ms: Option<u64>,
    pub(super) per_identity: Option<bool>,
    pub(super) max_identities: Option<usize>,
    // kubernetes_token_request
    pub(super) namespace: Option<String>,
    pub(super) service_account: Option<String>,
    pub(super) audiences: Option<Vec<String>>,
    pub(super) expiration_seconds: Option<u64>,
    pub(super) credential_env: Option<String>,
    // oauth2_client_credentials
    pub(super) token_path: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) client_secret_env: Option<String>,
    pub(super) scope: Option<String>,
    pub(super) audience: Option<String>,
}

