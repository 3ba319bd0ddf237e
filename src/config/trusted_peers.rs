//! The `trusted_peers` section: which mTLS principals or source addresses may send identity.

use super::raw::RawTrustedPeers;
use super::ConfigError;
use crate::peer::TrustedPeers;

pub(super) fn compile_trusted_peers(raw: RawTrustedPeers) -> Result<TrustedPeers, ConfigError> {
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
