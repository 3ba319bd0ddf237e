//! Which downstream peers may present identity headers at all.
//!
//! Kiali's documentation requires that the authenticating proxy is the only client that can reach
//! Kiali. Network policy does that at layer 3/4; this check does it again at layer 7 from what
//! Envoy knows about the connection: the mTLS peer principal (the client certificate's URI SAN, for example an
//! Istio SPIFFE ID) or the source address.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::refusal::{Reason, Refusal};

/// The filter-state object that holds the direct TCP peer's address, `ip:port` or `ip`.
///
/// Not `source.address`: Envoy's `source.address` is the downstream remote address *after*
/// `X-Forwarded-For` processing (`filters/common/expr/context.cc`, `PeerWrapper`, reads
/// `downstreamAddressProvider().remoteAddress()`), which with the connection manager's default
/// `use_remote_address: false` is the last address the *client* wrote in `X-Forwarded-For`. No
/// property the Wasm host offers holds the direct peer (`common/wasm/context.cc`,
/// `findValue`), but `filter_state` does hold what the `envoy.filters.http.set_filter_state`
/// filter stored, and that filter can store `%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%`, which no
/// header changes. A client cannot write filter state, so without that filter the property is
/// missing and the filter refuses rather than guesses.
pub const DIRECT_PEER_FILTER_STATE: &str = "kiali_header_auth.direct_remote_address";
pub const DIRECT_PEER_PROPERTY: &[&str] = &["filter_state", DIRECT_PEER_FILTER_STATE];

/// The refusal when the direct peer's address is needed and Envoy did not record it.
pub fn direct_peer_unknown() -> Refusal {
    Refusal::new(
        Reason::UntrustedPeer,
        format!(
            "the direct peer's address is unknown: Envoy must run the \
             envoy.filters.http.set_filter_state filter before this one, storing \
             %DOWNSTREAM_DIRECT_REMOTE_ADDRESS% as {DIRECT_PEER_FILTER_STATE} (docs/configuration.md: \
             \"trusted_peers\"); the filter does not use addresses from X-Forwarded-For"
        ),
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedPeers {
    principals: Vec<String>,
    cidrs: Vec<IpNet>,
}

impl TrustedPeers {
    pub fn new(principals: Vec<String>, cidrs: Vec<IpNet>) -> Self {
        TrustedPeers { principals, cidrs }
    }

    pub fn checks_principal(&self) -> bool {
        !self.principals.is_empty()
    }

    pub fn checks_address(&self) -> bool {
        !self.cidrs.is_empty()
    }

    /// `principal` is the raw `connection.uri_san_peer_certificate` property, `address` the direct
    /// TCP peer's address (`DIRECT_PEER_PROPERTY`: `ip:port`, `[v6]:port` or `ip`),
    /// never an address taken from `X-Forwarded-For`. Either may be absent.
    pub fn admits(&self, principal: Option<&[u8]>, address: Option<&[u8]>) -> bool {
        if let Some(principal) = principal {
            if !principal.is_empty() && self.principals.iter().any(|p| p.as_bytes() == principal) {
                return true;
            }
        }
        if let Some(ip) = address.and_then(parse_peer_ip) {
            if self.cidrs.iter().any(|net| net.contains(&ip)) {
                return true;
            }
        }
        false
    }

    /// The refusal for a peer [`TrustedPeers::admits`] does not admit: when the address is
    /// checked but Envoy did not record the direct peer, the message says so rather than call
    /// the peer untrusted for an address nobody read.
    pub fn refusal(&self, principal: Option<&[u8]>, address: Option<&[u8]>) -> Option<Refusal> {
        if self.admits(principal, address) {
            return None;
        }
        if self.checks_address() && address.is_none() {
            return Some(direct_peer_unknown());
        }
        Some(Refusal::new(
            Reason::UntrustedPeer,
            "this peer may not send identity headers: it is neither a trusted principal nor in a trusted source CIDR",
        ))
    }
}

/// Accepts `10.0.0.0/8`, `fd00::/8`, or a bare address (a /32 or /128).
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    Err(format!(
        "{text:?} is not an IP address or CIDR (for example 10.0.0.0/8 or 127.0.0.1)"
    ))
}

/// The IP address of `ip:port`, `[v6]:port` or a bare address.
pub fn parse_peer_ip(raw: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(raw).ok()?;
    if let Ok(socket) = text.parse::<std::net::SocketAddr>() {
        return Some(socket.ip());
    }
    text.parse::<IpAddr>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(principals: &[&str], cidrs: &[&str]) -> TrustedPeers {
        TrustedPeers::new(
            principals.iter().map(|p| p.to_string()).collect(),
            cidrs.iter().map(|c| parse_cidr(c).unwrap()).collect(),
        )
    }

    #[test]
    fn admits_listed_principal_only_exactly() {
        let trusted = peers(&["spiffe://cluster.local/ns/auth/sa/oauth2-proxy"], &[]);
        assert!(trusted.admits(Some(b"spiffe://cluster.local/ns/auth/sa/oauth2-proxy"), None));
        assert!(!trusted.admits(Some(b"spiffe://cluster.local/ns/auth/sa/oauth2-proxy2"), None));
        assert!(!trusted.admits(Some(b""), Some(b"10.0.0.1:443")));
        assert!(!trusted.admits(None, None));
    }

    #[test]
    fn admits_addresses_inside_cidrs() {
        let trusted = peers(&[], &["10.1.0.0/16", "127.0.0.1", "fd00::/8"]);
        assert!(trusted.admits(None, Some(b"10.1.2.3:5555")));
        assert!(trusted.admits(None, Some(b"127.0.0.1:80")));
        assert!(trusted.admits(None, Some(b"[fd00::1]:80")));
        assert!(!trusted.admits(None, Some(b"10.2.0.1:5555")));
        assert!(!trusted.admits(None, Some(b"127.0.0.2:80")));
        assert!(!trusted.admits(None, Some(b"garbage")));
        assert!(!trusted.admits(None, Some(&[0xff, 0xfe])));
    }

    #[test]
    fn rejects_bad_cidrs() {
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("hello").is_err());
        assert_eq!(parse_cidr("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
    }
}
