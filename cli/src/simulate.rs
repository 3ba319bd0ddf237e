//! What Kiali and the API server make of the request the filter forwards, by the rules of the
//! stand-ins the end-to-end tests check the filter against (`harness::kiali`: Go's header reader,
//! Kiali's header strategy, client-go; `harness::apiserver`: the impersonation filter and RBAC).

use harness::apiserver::{impersonate, ImpersonationRules, PolicyRule, UserInfo};
use harness::kiali::{client_go_headers, header_strategy, AuthInfo, GoHeader};
use kiali_header_auth::config::IdentityConfig;
use kiali_header_auth::rbac::needed_permissions;
use serde::Serialize;

/// What the cluster believes about one forwarded request.
#[derive(Debug, Clone, Serialize)]
pub struct Belief {
    /// What Kiali's header strategy read (`None` when Go refused the header lines).
    pub kiali: Option<AuthInfo>,
    /// The authentication and impersonation headers client-go sends to the API server.
    pub client_go: Vec<(String, String)>,
    /// The API server's status for that request (201 as for a SelfSubjectReview, 401, 403), or
    /// Kiali's own (400 malformed headers, 401 no bearer) when it never calls the API server.
    pub status: u16,
    /// Who the API server believes made the request.
    pub user: Option<UserInfo>,
    /// Why not, when it refused.
    pub message: String,
    /// Who authenticated: the impersonator, or the owner of the client's own token.
    pub requester: String,
}

/// The rules a ClusterRole written by `rbac` grants (what the RBAC self-check asks about).
pub fn needed_rules(identity: Option<&IdentityConfig>) -> ImpersonationRules {
    let rules = identity
        .map(needed_permissions)
        .unwrap_or_default()
        .iter()
        .map(|permission| PolicyRule::impersonate(&[permission.group], &[permission.rbac_resource().as_str()]))
        .collect();
    ImpersonationRules::from_rules(rules)
}

/// Runs the forwarded header lines through Kiali and the API server. `requester` is who the
/// bearer authenticates as.
pub fn believe(lines: &[(String, String)], requester: &UserInfo, rules: &ImpersonationRules) -> Belief {
    let mut belief = Belief {
        kiali: None,
        client_go: Vec::new(),
        status: 400,
        user: None,
        message: String::new(),
        requester: requester.name.clone(),
    };
    let headers = match GoHeader::read(lines) {
        Ok(headers) => headers,
        Err(error) => {
            belief.message = format!("Kiali (Go's net/http) refuses the request: {error}");
            return belief;
        }
    };
    let auth = header_strategy(&headers);
    belief.kiali = Some(auth.clone());
    if auth.token.is_empty() {
        belief.status = 401;
        belief.message = "Kiali's header strategy finds no `Authorization: Bearer` and answers 401".to_string();
        return belief;
    }
    belief.client_go = client_go_headers(&auth);
    let sent = match GoHeader::read(&belief.client_go) {
        Ok(sent) => sent,
        Err(error) => {
            belief.message = format!("the API server refuses client-go's headers: {error}");
            return belief;
        }
    };
    match impersonate(&sent, requester, rules) {
        Ok(user) => {
            belief.status = 201;
            belief.user = Some(user);
        }
        Err(denial) => {
            belief.status = denial.code();
            belief.message = denial.message().to_string();
        }
    }
    belief
}

/// (key, header the filter sends) of every `Impersonate-Extra-*` the configuration can send.
pub fn extra_headers(identity: &IdentityConfig) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = match &identity.jwt {
        Some(jwt) => jwt.extra_claims.iter().map(|e| (e.key.clone(), e.output_header.clone())).collect(),
        None => identity.extras.iter().map(|e| (e.key.clone(), e.output_header.clone())).collect(),
    };
    out.extend(identity.audit_extras.iter().map(|e| (e.key.clone(), e.output_header.clone())));
    out
}

/// Sends `header: v` with a user and a bearer through Kiali, client-go and the API server (every
/// impersonation allowed), and says whether the API server sees the extra `key` with value `v`.
pub fn extra_key_through_kiali(key: &str, header: &str) -> Result<(), String> {
    let lines = [
        ("authorization".to_string(), "Bearer token".to_string()),
        ("impersonate-user".to_string(), "alice".to_string()),
        (header.to_string(), "v".to_string()),
    ];
    let everything = ImpersonationRules::from_rules(vec![PolicyRule::impersonate(&["*"], &["*"])]);
    let belief = believe(&lines, &UserInfo::service_account("kiali-auth", "kiali-impersonator"), &everything);
    let seen = belief.user.map(|user| user.extra).unwrap_or_default();
    if seen.get(key).is_some_and(|values| values == &["v".to_string()]) {
        return Ok(());
    }
    let keys: Vec<&String> = seen.keys().collect();
    Err(format!(
        "the extra key {key:?} (header {header}) reaches the API server through Kiali and client-go as {keys:?}{}: \
         RBAC on userextras/{key} never matches; use letters, digits and !#$&'*+-.^_`|~ only",
        if belief.message.is_empty() { String::new() } else { format!(" ({})", belief.message) }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_key_survives_and_a_percent_encoded_one_does_not() {
        assert_eq!(extra_key_through_kiali("email", "impersonate-extra-email"), Ok(()));
        assert_eq!(extra_key_through_kiali("client-address", "impersonate-extra-client-address"), Ok(()));
        // What a filter that percent-encoded `acme.com/team` would send: client-go encodes `%`
        // again, and the API server decodes once.
        let error = extra_key_through_kiali("acme.com/team", "impersonate-extra-acme.com%2fteam").unwrap_err();
        assert!(error.contains("acme.com%2fteam"), "{error}");
    }
}
