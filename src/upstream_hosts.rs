//! `upstream_hosts`: the `:authority` values a request may carry for the filter to act on it.
//!
//! In full-impersonation mode the filter puts the impersonator's bearer on every request it
//! passes. Attached where it also sees traffic for other services (a waypoint that serves a
//! whole namespace, a gateway with several routes), it would hand that bearer to every backend.
//! With `upstream_hosts` set, a request for any other authority is refused (403
//! `upstream_not_allowed`) before any identity or token is added: a mistaken attachment shows up
//! as refusals, never as a leaked token.

use crate::refusal::{quote_for_log, Reason, Refusal};

/// One allowed authority: a host name or address (compared without regard to letter case, and
/// without a trailing dot), and the port if the entry names one (otherwise any port).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    host: String,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamHosts {
    entries: Vec<Entry>,
}

impl UpstreamHosts {
    /// Parses the configured entries; the error says what is wrong with the first bad one and is
    /// prefixed by the caller with the field.
    pub fn parse(entries: &[String]) -> Result<UpstreamHosts, (usize, String)> {
        let mut parsed = Vec::with_capacity(entries.len());
        for (index, text) in entries.iter().enumerate() {
            let entry = parse_entry(text).ok_or_else(|| {
                (
                    index,
                    format!(
                        "{text:?} is not a host name with an optional port (for example \
                         kiali.istio-system.svc.cluster.local or kiali.example.com:443); no \
                         scheme, path or wildcard"
                    ),
                )
            })?;
            parsed.push(entry);
        }
        Ok(UpstreamHosts { entries: parsed })
    }

    /// The refusal for a request (its header pairs, `:authority` among them) for a host not
    /// listed; `None` when it may pass.
    pub fn refusal(&self, headers: &[crate::names::Header<'_>]) -> Option<Refusal> {
        let authority = headers.iter().find(|(name, _)| *name == b":authority").map(|(_, value)| *value);
        if authority.is_some_and(|authority| self.admits(authority)) {
            return None;
        }
        Some(Refusal::new(
            Reason::UpstreamNotAllowed,
            format!(
                "this filter serves only the hosts in upstream_hosts, not {}",
                quote_for_log(authority.unwrap_or_default())
            ),
        ))
    }

    /// Whether a request whose `:authority` is `authority` (raw bytes) may pass.
    pub fn admits(&self, authority: &[u8]) -> bool {
        let Some(Ok(text)) = Some(std::str::from_utf8(authority)) else {
            return false;
        };
        let Some(request) = parse_entry(text) else {
            return false;
        };
        self.entries.iter().any(|entry| {
            entry.host == request.host && (entry.port.is_none() || entry.port == request.port)
        })
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; lowercased, trailing dot removed.
fn parse_entry(text: &str) -> Option<Entry> {
    if text.is_empty() || text.len() > 255 + 6 {
        return None;
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        inside.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?.parse::<u16>().ok()?),
        };
        (format!("[{inside}]"), port)
    } else {
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port.parse::<u16>().ok()?)),
            None => (text, None),
        };
        let host = host.strip_suffix('.').unwrap_or(host);
        let valid = !host.is_empty()
            && host
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.' || byte == b'_');
        if !valid {
            return None;
        }
        (host.to_ascii_lowercase(), port)
    };
    Some(Entry { host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &[&str]) -> UpstreamHosts {
        UpstreamHosts::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn matches_host_with_any_port_or_the_named_port() {
        let allowed = hosts(&["kiali.istio-system.svc.cluster.local", "kiali.example.com:443", "[fd00::1]"]);
        for ok in [
            "kiali.istio-system.svc.cluster.local",
            "KIALI.istio-system.svc.cluster.local:20001",
            "kiali.istio-system.svc.cluster.local.",
            "kiali.example.com:443",
            "[fd00::1]:8080",
        ] {
            assert!(allowed.admits(ok.as_bytes()), "{ok}");
        }
        for refused in [
            "kiali.example.com",
            "kiali.example.com:8443",
            "prometheus.istio-system.svc.cluster.local",
            "kiali.istio-system.svc.cluster.local.evil.com",
            "evil.com@kiali.example.com:443",
            "",
            "kiali.istio-system.svc.cluster.local:99999",
        ] {
            assert!(!allowed.admits(refused.as_bytes()), "{refused}");
        }
        assert!(!allowed.admits(&[0xff, 0xfe]));
    }

    #[test]
    fn bad_entries_are_refused_with_their_index() {
        for bad in ["https://kiali", "kiali/x", "*.example.com", "", "host:port", "[nope]"] {
            let error = UpstreamHosts::parse(&["ok.example".to_string(), bad.to_string()]).unwrap_err();
            assert_eq!(error.0, 1, "{bad}");
        }
    }
}
