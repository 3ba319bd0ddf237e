//! `explain`: what the filter does with one request, by the filter's own planner, and what Kiali
//! and the API server then believe.
//!
//! The order is the filter's (`src/http.rs`, `RequestContext::handle_request_headers`): the
//! trusted-peer check, then `upstream_hosts`, then the `logout` path, then the planner with the request properties the
//! configuration uses (`RequestProperties::read`), then, in full impersonation, the ServiceAccount
//! bearer. The RBAC gate (`rbac_check: "enforce"`) and waiting for a token depend on the cluster
//! at run time; the explanation assumes the token is there and the self-check passed.

use harness::apiserver::{ImpersonationRules, UserInfo};
use kiali_header_auth::config::{FilterConfig, Mode, TokenSourceKind};
use kiali_header_auth::identity::{self, metadata::encode, RequestProperties};
use kiali_header_auth::refusal::Refusal;
use serde::Serialize;
use serde_json::Value;

use crate::simulate::{believe, Belief};

/// One request as Envoy hands it to the filter: lowercase names, `:authority` from `Host`.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub headers: Vec<(String, String)>,
    /// The payload `jwt_authn` verified (JWT mode).
    pub jwt_payload: Option<Value>,
    /// The mTLS peer's principal (the client certificate's URI SAN).
    pub principal: Option<String>,
    /// The direct TCP peer, `ip` or `ip:port`.
    pub address: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Refused {
        status: u32,
        reason: &'static str,
        body: String,
    },
    /// The `logout` path: a redirect to the sign-out, Kiali's session cookies expired; Kiali
    /// never sees the request.
    LoggedOut {
        status: u32,
        location: String,
        set_cookie: Vec<String>,
    },
    Forwarded {
        /// Header names removed, every copy.
        remove: Vec<String>,
        /// Header lines added, in order.
        add: Vec<(String, String)>,
        /// The `Authorization` the filter sets (full impersonation), the token shown as a placeholder.
        authorization: Option<String>,
        /// Every `impersonate-*` line Kiali receives, in order.
        impersonation: Vec<(String, String)>,
        /// Every line Kiali receives.
        headers: Vec<(String, String)>,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub configuration: String,
    pub mode: &'static str,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// What Kiali and the API server believe (forwarded requests only).
    pub cluster: Option<Belief>,
    pub notes: Vec<String>,
}

pub fn mode_name(config: &FilterConfig) -> &'static str {
    match config.mode() {
        Mode::StripOnly => "strip-only",
        Mode::MapIdentity => "map identity",
        Mode::FullImpersonation => "full impersonation",
    }
}

/// The filter's decision, in the filter's order (see the module comment).
pub fn filter_outcome(config: &FilterConfig, request: &Request) -> Outcome {
    let pairs: Vec<(&[u8], &[u8])> =
        request.headers.iter().map(|(name, value)| (name.as_bytes(), value.as_bytes())).collect();
    if let Some(refusal) = untrusted_peer(config, request) {
        return refused(&refusal);
    }
    if let Some(refusal) = config.upstream_hosts.as_ref().and_then(|allowed| allowed.refusal(&pairs)) {
        return refused(&refusal);
    }
    // `RequestContext::log_out` in `src/http.rs`: the same match, the same cookies.
    if let Some(logout) = &config.logout {
        let path = pairs.iter().find(|(name, _)| *name == b":path").map(|(_, value)| *value);
        if path.is_some_and(|path| logout.matches(path)) {
            let cookies: Vec<&[u8]> =
                pairs.iter().filter(|(name, _)| name.eq_ignore_ascii_case(b"cookie")).map(|(_, value)| *value).collect();
            return Outcome::LoggedOut { status: 302, location: logout.redirect.clone(), set_cookie: logout.expired_cookies(&cookies) };
        }
    }
    let metadata = metadata(config, request);
    let properties = RequestProperties::read(config, |path| {
        if path == ["metadata"] {
            metadata.clone()
        } else if path == identity::PEER_PRINCIPAL_PROPERTY {
            request.principal.clone().map(String::into_bytes)
        } else if path == identity::DIRECT_PEER_PROPERTY {
            request.address.clone().map(String::into_bytes)
        } else {
            None
        }
    });
    let plan = match identity::plan_with_properties(config, &pairs, &properties) {
        Ok(plan) => plan,
        Err(refusal) => return refused(&refusal),
    };
    let authorization = match (&config.token_source, config.mode()) {
        (Some(source), Mode::FullImpersonation) => Some(format!("Bearer <{}>", token_description(&source.kind))),
        _ => None,
    };
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let remove: Vec<String> = plan.remove.iter().map(|name| text(name)).collect();
    let add: Vec<(String, String)> = plan.add.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
    let removed = |name: &str| {
        remove.iter().any(|r| r.eq_ignore_ascii_case(name))
            || (authorization.is_some() && name.eq_ignore_ascii_case("authorization"))
    };
    // As Envoy's HTTP/1.1 codec writes them to Kiali: `:authority` as `host`, no other pseudo-header.
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .filter(|(name, _)| !removed(name))
        .filter_map(|(name, value)| match name.as_str() {
            ":authority" => Some(("host".to_string(), value.clone())),
            pseudo if pseudo.starts_with(':') => None,
            _ => Some((name.clone(), value.clone())),
        })
        .collect();
    headers.extend(add.iter().cloned());
    if let Some(value) = &authorization {
        headers.push(("authorization".to_string(), value.clone()));
    }
    let impersonation = headers.iter().filter(|(name, _)| identity::is_impersonation_header(name.as_bytes())).cloned().collect();
    Outcome::Forwarded { remove, add, authorization, impersonation, headers }
}

/// `RequestContext::untrusted_peer` in `src/http.rs`: the same properties, the same
/// `TrustedPeers::refusal`.
fn untrusted_peer(config: &FilterConfig, request: &Request) -> Option<Refusal> {
    let trusted = config.trusted_peers.as_ref()?;
    let principal = trusted.checks_principal().then_some(request.principal.as_deref()).flatten();
    let address = trusted.checks_address().then_some(request.address.as_deref()).flatten();
    trusted.refusal(principal.map(str::as_bytes), address.map(str::as_bytes))
}

fn refused(refusal: &Refusal) -> Outcome {
    Outcome::Refused { status: refusal.reason.status(), reason: refusal.reason.as_str(), body: refusal.json_body() }
}

/// The dynamic metadata `jwt_authn` would hold for `--jwt-payload`, where the configuration reads it.
fn metadata(config: &FilterConfig, request: &Request) -> Option<Vec<u8>> {
    let jwt = config.identity.as_ref()?.jwt.as_ref()?;
    let payload = request.jwt_payload.as_ref()?;
    Some(encode::metadata(&jwt.metadata_namespace, &jwt.payload_key, payload))
}

fn token_description(kind: &TokenSourceKind) -> String {
    match kind {
        TokenSourceKind::KubernetesTokenRequest { namespace, service_account, .. } => {
            format!("token of ServiceAccount {namespace}/{service_account}")
        }
        _ => "token from the OAuth2 token endpoint".to_string(),
    }
}

/// Who the bearer Kiali forwards authenticates as.
fn requester(config: &FilterConfig) -> UserInfo {
    match config.token_source.as_ref().map(|source| &source.kind) {
        Some(TokenSourceKind::KubernetesTokenRequest { namespace, service_account, .. })
            if config.mode() == Mode::FullImpersonation =>
        {
            UserInfo::service_account(namespace, service_account)
        }
        Some(_) if config.mode() == Mode::FullImpersonation => UserInfo {
            name: "<the OAuth2 token's subject>".to_string(),
            ..UserInfo::default()
        },
        _ => UserInfo { name: "<the owner of the client's bearer token>".to_string(), ..UserInfo::default() },
    }
}

pub fn explain(origin: &str, config: &FilterConfig, request: &Request, rules: &ImpersonationRules, rules_from: &str) -> Explanation {
    let outcome = filter_outcome(config, request);
    let mut notes = Vec::new();
    if request.jwt_payload.is_some() && config.identity.as_ref().is_none_or(|identity| identity.jwt.is_none()) {
        notes.push("--jwt-payload is ignored: this configuration takes no identity from a JWT".to_string());
    }
    if config.trusted_peers.is_some() && request.principal.is_none() && request.address.is_none() {
        notes.push("no --peer given: the request comes from no trusted principal or address".to_string());
    }
    let cluster = match &outcome {
        Outcome::Forwarded { headers, .. } => {
            if config.mode() == Mode::FullImpersonation {
                notes.push(
                    "assumes the filter holds a token and the RBAC self-check passed (else 503 token_unavailable / rbac_denied)"
                        .to_string(),
                );
            }
            notes.push(format!("the API server's impersonation rules: {rules_from}"));
            Some(believe(headers, &requester(config), rules))
        }
        Outcome::Refused { .. } | Outcome::LoggedOut { .. } => None,
    };
    Explanation { configuration: origin.to_string(), mode: mode_name(config), outcome, cluster, notes }
}

/// `Name: value` as Envoy presents it to the filter: the name lowercased, `Host` as `:authority`.
pub fn parse_header(line: &str) -> Result<(String, String), String> {
    // A pseudo-header such as `:authority: x` starts with a colon.
    let split_at = line.get(1..).and_then(|rest| rest.find(':')).map(|at| at + 1);
    let Some(at) = split_at else {
        return Err(format!("-H {line:?}: expected `Name: value`"));
    };
    let name = line[..at].trim().to_ascii_lowercase();
    let value = line[at + 1..].trim_matches([' ', '\t']).to_string();
    if name.is_empty() {
        return Err(format!("-H {line:?}: empty header name"));
    }
    Ok((if name == "host" { ":authority".to_string() } else { name }, value))
}

/// `--peer`: an address (`ip` or `ip:port`) is the direct TCP peer, anything else a principal.
pub fn apply_peer(request: &mut Request, peer: &str) {
    if kiali_header_auth::peer::parse_peer_ip(peer.as_bytes()).is_some() {
        request.address = Some(peer.to_string());
    } else {
        request.principal = Some(peer.to_string());
    }
}
