//! `harness::apiserver`: what the Kubernetes API server believes about a request, rule by rule
//! from its source, and [`ApiServerStandIn`], a server that answers every request as a
//! SelfSubjectReview (`POST /apis/authentication.k8s.io/v1/selfsubjectreviews`) would.
//!
//! Models, in the order the API server applies them (its handler chain runs authentication,
//! then impersonation, then authorization of the request itself):
//! - reading headers: Go's `net/textproto` (see [`crate::go_header::GoHeader`]);
//! - bearer authentication: `k8s.io/apiserver` `pkg/authentication/request/bearertoken/bearertoken.go`
//!   (`AuthenticateRequest`), with a test-supplied token authenticator;
//! - impersonation: `k8s.io/apiserver` `pkg/endpoints/filters/impersonation/impersonation.go`
//!   (`WithImpersonation`, `buildImpersonationRequests`, `unescapeExtraKey`), read at
//!   kubernetes/kubernetes 0c1f61f5 (older releases keep it in `pkg/endpoints/filters/impersonation.go`);
//! - the `impersonate` decisions: RBAC, `plugin/pkg/auth/authorizer/rbac/rbac.go` (`RuleAllows`)
//!   and `pkg/apis/rbac/v1/evaluation_helpers.go` (`VerbMatches`, `APIGroupMatches`,
//!   `ResourceMatches`, `ResourceNameMatches`), over the ClusterRole(s) of a manifest such as
//!   `deploy/02-impersonator.yaml`, taken as bound to the requester;
//! - refusals: `responsewriters.Forbidden` (`pkg/endpoints/handlers/responsewriters/errors.go`)
//!   and `apierrors.NewForbidden` / `NewBadRequest` (`k8s.io/apimachinery/pkg/api/errors`).
//!
//! Not modelled: Roles and RoleBindings, aggregated ClusterRoles, anonymous authentication (a
//! request without a valid bearer is answered 401), and the authorization of the request itself.

use crate::go_header::GoHeader;
use crate::message::RawRequest;
use crate::recording::Recording;
use crate::server::{Reply, Server};
use crate::api_status::k8s_status;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// The path of a SelfSubjectReview.
pub const REVIEW_PATH: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
/// Who the default authenticator says any bearer belongs to (deploy/02-impersonator.yaml).
pub const IMPERSONATOR: &str = "system:serviceaccount:kiali-auth:kiali-impersonator";
/// `user.AllAuthenticated`, `user.AllUnauthenticated`, `user.Anonymous` (`k8s.io/apiserver/pkg/authentication/user`).
pub const ALL_AUTHENTICATED: &str = "system:authenticated";
pub const ALL_UNAUTHENTICATED: &str = "system:unauthenticated";
pub const ANONYMOUS: &str = "system:anonymous";
/// The API group of `uids` and `userextras` (`authenticationv1.SchemeGroupVersion`).
pub const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";

/// `user.Info` as the rest of the API server sees it; serialised like `authentication/v1`
/// `UserInfo` (a SelfSubjectReview's `status.userInfo`: `username`, empty fields omitted).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    #[serde(rename = "username", default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// A service account's user as its token authenticates (`serviceaccount.UserInfo`, util.go):
    /// `system:serviceaccount:<ns>:<name>`, groups `system:serviceaccounts`,
    /// `system:serviceaccounts:<ns>`, plus `system:authenticated` (added by the authenticator union).
    pub fn service_account(namespace: &str, name: &str) -> UserInfo {
        let mut groups = service_account_groups(namespace);
        groups.push(ALL_AUTHENTICATED.into());
        UserInfo { name: format!("system:serviceaccount:{namespace}:{name}"), groups, ..UserInfo::default() }
    }
}

/// `serviceaccount.MakeGroupNames` (`pkg/authentication/serviceaccount/util.go`).
fn service_account_groups(namespace: &str) -> Vec<String> {
    vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{namespace}")]
}

/// One RBAC `PolicyRule` (`rbac.authorization.k8s.io/v1`), as written in a ClusterRole.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PolicyRule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
}

impl PolicyRule {
    /// `verbs: [impersonate]` on `resources` in `api_groups`.
    pub fn impersonate(api_groups: &[&str], resources: &[&str]) -> PolicyRule {
        let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
        PolicyRule { verbs: vec!["impersonate".into()], api_groups: strings(api_groups), resources: strings(resources), resource_names: vec![] }
    }

    /// Restricts the rule to these `resourceNames`.
    pub fn named(mut self, names: &[&str]) -> PolicyRule {
        self.resource_names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    /// `RuleAllows` (rbac.go) for a resource request, with the helpers of evaluation_helpers.go.
    fn allows(&self, a: &Attributes) -> bool {
        // VerbMatches / APIGroupMatches: "*" or equal.
        let verb = self.verbs.iter().any(|v| v == "*" || *v == a.verb);
        let group = self.api_groups.iter().any(|g| g == "*" || *g == a.api_group);
        // ResourceMatches(rule, combinedResource, subresource): "*", an exact match of
        // "resource/subresource", or "*/<subresource>". "userextras/*" is NOT a wildcard.
        let combined = a.combined_resource();
        let resource = self.resources.iter().any(|r| {
            r == "*"
                || *r == combined
                || (!a.subresource.is_empty() && r.len() == a.subresource.len() + 2 && r.starts_with("*/") && r.ends_with(&a.subresource))
        });
        // ResourceNameMatches: an empty list matches every name.
        let name = self.resource_names.is_empty() || self.resource_names.contains(&a.name);
        verb && group && resource && name
    }
}

/// The `authorizer.AttributesRecord` WithImpersonation builds for one impersonated attribute.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

impl Attributes {
    /// `resource` or `resource/subresource`, as RBAC compares it (`userextras/<key>`).
    pub fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// The `impersonate` grants of the requester: the rules of one or more ClusterRoles.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImpersonationRules {
    rules: Vec<PolicyRule>,
}

impl ImpersonationRules {
    pub fn from_rules(rules: Vec<PolicyRule>) -> ImpersonationRules {
        ImpersonationRules { rules }
    }

    /// The rules of every `kind: ClusterRole` document of a (multi-document) YAML manifest.
    pub fn from_cluster_role_yaml(text: &str) -> Result<ImpersonationRules, String> {
        #[derive(Deserialize)]
        struct Doc {
            #[serde(default)]
            kind: String,
            #[serde(default)]
            rules: Option<Vec<PolicyRule>>,
        }
        let mut rules = Vec::new();
        for document in serde_yaml::Deserializer::from_str(text) {
            let value = serde_yaml::Value::deserialize(document).map_err(|e| e.to_string())?;
            if value.is_null() {
                continue;
            }
            let doc: Doc = serde_yaml::from_value(value).map_err(|e| e.to_string())?;
            if doc.kind == "ClusterRole" {
                rules.extend(doc.rules.unwrap_or_default());
            }
        }
        Ok(ImpersonationRules { rules })
    }

    pub fn from_cluster_role_file(path: impl AsRef<Path>) -> Result<ImpersonationRules, String> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_cluster_role_yaml(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The rules shipped in `<repo>/deploy/02-impersonator.yaml`.
    pub fn deployed() -> Result<ImpersonationRules, String> {
        Self::from_cluster_role_file(crate::paths::repo_root().join("deploy/02-impersonator.yaml"))
    }

    pub fn rules(&self) -> &[PolicyRule] {
        &self.rules
    }

    /// `RulesAllow` (rbac.go): some rule allows the attributes.
    pub fn allows(&self, attributes: &Attributes) -> bool {
        self.rules.iter().any(|rule| rule.allows(attributes))
    }
}

/// Why the API server refused the impersonation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denial {
    /// 400: `apierrors.NewBadRequest` from buildImpersonationRequests (groups, extras or a uid
    /// without a user).
    BadRequest { message: String },
    /// 403: `responsewriters.Forbidden` for the first attribute RBAC does not allow.
    Forbidden { attributes: Box<Attributes>, message: String },
}

impl Denial {
    pub fn code(&self) -> u16 {
        match self {
            Denial::BadRequest { .. } => 400,
            Denial::Forbidden { .. } => 403,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Denial::BadRequest { message } | Denial::Forbidden { message, .. } => message,
        }
    }

    /// The refused attribute as RBAC names it (`users`, `groups`, `uids`,
    /// `userextras/<key>`, `serviceaccounts`); `None` for a 400.
    pub fn attribute(&self) -> Option<String> {
        match self {
            Denial::BadRequest { .. } => None,
            Denial::Forbidden { attributes, .. } => Some(attributes.combined_resource()),
        }
    }

    /// The `Status` object the API server answers with.
    pub fn status_json(&self) -> Value {
        match self {
            Denial::BadRequest { message } => k8s_status(400, "BadRequest", message),
            Denial::Forbidden { attributes, message } => {
                let mut status = k8s_status(403, "Forbidden", message);
                status["details"] = json!({"name": attributes.name, "group": attributes.api_group, "kind": attributes.resource});
                status
            }
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code(), self.message())
    }
}

/// One entry of buildImpersonationRequests' list (a `v1.ObjectReference` there).
#[derive(Clone, Debug)]
enum Requested {
    ServiceAccount { namespace: String, name: String },
    User(String),
    Group(String),
    UserExtra { key: String, value: String },
    Uid(String),
}

impl Requested {
    /// How Go's `%v` prints the ObjectReference {Kind Namespace Name UID APIVersion ResourceVersion FieldPath}.
    fn go_value(&self) -> String {
        let v1 = "authentication.k8s.io/v1";
        let (kind, namespace, name, api_version, field_path) = match self {
            Requested::ServiceAccount { namespace, name } => ("ServiceAccount", namespace.as_str(), name.as_str(), "", ""),
            Requested::User(name) => ("User", "", name.as_str(), "", ""),
            Requested::Group(name) => ("Group", "", name.as_str(), "", ""),
            Requested::UserExtra { key, value } => ("UserExtra", "", value.as_str(), v1, key.as_str()),
            Requested::Uid(uid) => ("UID", "", uid.as_str(), v1, ""),
        };
        format!("{{{kind} {namespace} {name}  {api_version}  {field_path}}}")
    }
}

/// `unescapeExtraKey` (impersonation.go): `url.PathUnescape`, or the key itself when that fails
/// (a `%` not followed by two hex digits).
pub fn unescape_extra_key(encoded: &str) -> String {
    path_unescape(encoded).unwrap_or_else(|| encoded.to_string())
}

/// Go's `url.PathUnescape` (`net/url` `unescape` in `encodePathSegment` mode: `+` stays `+`).
fn path_unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// The pattern `[a-z0-9]([-a-z0-9]*[a-z0-9])?` of `k8s.io/apimachinery/pkg/util/validation`.
fn dns1123_pattern(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    b.first().is_some_and(edge) && b.last().is_some_and(edge) && b.iter().all(|c| edge(c) || *c == b'-')
}

/// `IsDNS1123Label`: the pattern, at most 63 bytes (`ValidateNamespaceName`).
fn dns1123_label(s: &str) -> bool {
    s.len() <= 63 && dns1123_pattern(s)
}

/// `IsDNS1123Subdomain`: dot-separated patterns, at most 253 bytes (`ValidateServiceAccountName`).
fn dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(dns1123_pattern)
}

/// `serviceaccount.SplitUsername` (util.go): `system:serviceaccount:<ns>:<name>` with a valid
/// namespace (DNS-1123 label) and name (DNS-1123 subdomain), else not a service account.
fn split_service_account(user: &str) -> Option<(String, String)> {
    let rest = user.strip_prefix("system:serviceaccount:")?;
    let parts: Vec<&str> = rest.split(':').collect();
    let [namespace, name] = parts.as_slice() else { return None };
    (dns1123_label(namespace) && dns1123_subdomain(name)).then(|| (namespace.to_string(), name.to_string()))
}

/// `buildImpersonationRequests` (impersonation.go), in its order: user (or service account),
/// every `Impersonate-Group` line, every value of every `Impersonate-Extra-*` key, the uid.
/// Go walks the header map in random order; the extras come here in sorted key order.
fn build_requests(headers: &GoHeader) -> Result<Vec<Requested>, Denial> {
    let mut requests = Vec::new();
    // headers.Get(ImpersonateUserHeader): the first line.
    let user = headers.get("Impersonate-User");
    let has_user = !user.is_empty();
    if has_user {
        match split_service_account(user) {
            Some((namespace, name)) => requests.push(Requested::ServiceAccount { namespace, name }),
            None => requests.push(Requested::User(user.to_string())),
        }
    }
    // headers[ImpersonateGroupHeader]: every line, empty ones included, never split on commas.
    let groups = headers.exact("Impersonate-Group");
    requests.extend(groups.iter().map(|g| Requested::Group(g.clone())));
    // strings.HasPrefix(headerName, "Impersonate-Extra-") on the canonical key; the key is the
    // suffix lowercased, then unescapeExtraKey'd.
    let mut extras: Vec<(&str, &[String])> = headers.iter().filter(|(k, _)| k.starts_with("Impersonate-Extra-")).collect();
    extras.sort();
    for (name, values) in &extras {
        let key = unescape_extra_key(&name["Impersonate-Extra-".len()..].to_lowercase());
        requests.extend(values.iter().map(|v| Requested::UserExtra { key: key.clone(), value: v.clone() }));
    }
    // headers.Get(ImpersonateUIDHeader)
    let uid = headers.get("Impersonate-Uid");
    if !uid.is_empty() {
        requests.push(Requested::Uid(uid.to_string()));
    }
    if (!groups.is_empty() || !extras.is_empty() || !uid.is_empty()) && !has_user {
        let listed: Vec<String> = requests.iter().map(Requested::go_value).collect();
        return Err(Denial::BadRequest { message: format!("requested [{}] without impersonating a user", listed.join(" ")) });
    }
    Ok(requests)
}

/// `forbiddenMessage` + `responsewriters.Forbidden` + `apierrors.NewForbidden`: no reason is
/// appended because RBAC gives none when no rule matched.
fn forbidden(requester: &UserInfo, attributes: Attributes) -> Denial {
    let qualified = if attributes.api_group.is_empty() {
        attributes.resource.clone()
    } else {
        format!("{}.{}", attributes.resource, attributes.api_group)
    };
    let scope = if attributes.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace {:?}", attributes.namespace)
    };
    let detail = format!(
        "User {:?} cannot {} resource {:?} in API group {:?} {scope}",
        requester.name,
        attributes.verb,
        attributes.combined_resource(),
        attributes.api_group
    );
    let message = if attributes.name.is_empty() {
        format!("{qualified} is forbidden: {detail}")
    } else {
        format!("{qualified} {:?} is forbidden: {detail}", attributes.name)
    };
    Denial::Forbidden { attributes: Box::new(attributes), message }
}

/// `WithImpersonation`: the user the rest of the API server sees for a request authenticated
/// as `requester` and carrying `headers`, or the refusal.
pub fn impersonate(headers: &GoHeader, requester: &UserInfo, rules: &ImpersonationRules) -> Result<UserInfo, Denial> {
    let requests = build_requests(headers)?;
    if requests.is_empty() {
        return Ok(requester.clone());
    }
    // "if they are specified, then they are the authority": only service accounts use this.
    let groups_specified = !headers.exact("Impersonate-Group").is_empty();
    let mut believed = UserInfo::default();
    for request in requests {
        let mut attributes = Attributes { verb: "impersonate".into(), ..Attributes::default() };
        match request {
            Requested::ServiceAccount { namespace, name } => {
                attributes.resource = "serviceaccounts".into();
                believed.name = format!("system:serviceaccount:{namespace}:{name}");
                if !groups_specified {
                    believed.groups = service_account_groups(&namespace);
                }
                attributes.namespace = namespace;
                attributes.name = name;
            }
            Requested::User(name) => {
                attributes.resource = "users".into();
                believed.name = name.clone();
                attributes.name = name;
            }
            Requested::Group(name) => {
                attributes.resource = "groups".into();
                believed.groups.push(name.clone());
                attributes.name = name;
            }
            Requested::UserExtra { key, value } => {
                attributes.api_group = AUTHENTICATION_GROUP.into();
                attributes.resource = "userextras".into();
                attributes.subresource = key.clone();
                believed.extra.entry(key).or_default().push(value.clone());
                attributes.name = value;
            }
            Requested::Uid(uid) => {
                attributes.api_group = AUTHENTICATION_GROUP.into();
                attributes.resource = "uids".into();
                believed.uid = uid.clone();
                attributes.name = uid;
            }
        }
        if !rules.allows(&attributes) {
            return Err(forbidden(requester, attributes));
        }
    }
    // A non-anonymous user gets system:authenticated unless system:authenticated or
    // system:unauthenticated is already among its groups (specified or not); the anonymous
    // user gets system:unauthenticated.
    let has = |g: &str| believed.groups.iter().any(|x| x == g);
    if believed.name != ANONYMOUS {
        if !has(ALL_AUTHENTICATED) && !has(ALL_UNAUTHENTICATED) {
            believed.groups.push(ALL_AUTHENTICATED.into());
        }
    } else if !has(ALL_UNAUTHENTICATED) {
        believed.groups.push(ALL_UNAUTHENTICATED.into());
    }
    Ok(believed)
}

/// Token authenticator: the bearer token to the user it belongs to, `None` if invalid.
pub type Authenticator = Arc<dyn Fn(&str) -> Option<UserInfo> + Send + Sync>;

/// Any non-empty bearer is the impersonator ServiceAccount of deploy/02-impersonator.yaml.
pub fn default_authenticator() -> Authenticator {
    Arc::new(|token: &str| (!token.is_empty()).then(|| UserInfo::service_account("kiali-auth", "kiali-impersonator")))
}

/// `bearertoken.AuthenticateRequest`: `TrimSpace(Get("Authorization"))` split on spaces; the
/// first part must be `bearer` (any case) and the second (the token) non-empty.
pub fn bearer_token(headers: &GoHeader) -> Option<&str> {
    let auth = headers.get("Authorization").trim_matches(|c: char| c.is_ascii_whitespace());
    let mut parts = auth.split(' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// What the API server answers one request with: status, body, and the user it believes.
pub fn review(request: &RawRequest, rules: &ImpersonationRules, authenticate: &Authenticator) -> (u16, Value, Option<UserInfo>) {
    let headers = match GoHeader::read(&request.headers) {
        Ok(h) => h,
        Err(e) => return (400, k8s_status(400, "BadRequest", &e.to_string()), None),
    };
    let Some(requester) = bearer_token(&headers).and_then(|t| authenticate(t)) else {
        return (401, k8s_status(401, "Unauthorized", "Unauthorized"), None);
    };
    match impersonate(&headers, &requester, rules) {
        Ok(user) => {
            let body = json!({
                "kind": "SelfSubjectReview",
                "apiVersion": "authentication.k8s.io/v1",
                "status": {"userInfo": user},
            });
            (201, body, Some(user))
        }
        Err(denial) => (denial.code(), denial.status_json(), None),
    }
}

/// One request the stand-in answered.
#[derive(Clone, Debug)]
pub struct ApiServerExchange {
    pub request: RawRequest,
    pub status: u16,
    pub body: Value,
    /// The user the rest of the API server would see (`None` when refused).
    pub believed: Option<UserInfo>,
}

/// An API server that authenticates the bearer, applies WithImpersonation with rules read from
/// a ClusterRole manifest, and answers every request (any method and path) like a
/// SelfSubjectReview: 201 with `status.userInfo`, or a 400/401/403 `Status`.
pub struct ApiServerStandIn {
    // Declared first so it is dropped (thread joined) before the log.
    server: Server,
    log: Recording<ApiServerExchange>,
}

impl ApiServerStandIn {
    /// Rules from `deploy/02-impersonator.yaml`, [`default_authenticator`], a free port of
    /// 127.0.0.1. Panics if the manifest cannot be read or the port bound.
    pub fn start() -> ApiServerStandIn {
        let rules = ImpersonationRules::deployed().unwrap_or_else(|e| panic!("impersonation rules: {e}"));
        Self::start_with(rules, default_authenticator()).expect("start ApiServerStandIn")
    }

    /// Like [`ApiServerStandIn::start_with`], and `GET /api/v1/namespaces[/<name>]` are answered
    /// by [`namespace_read`] with `access` (every other request as before).
    pub fn start_with_namespaces(rules: ImpersonationRules, authenticate: Authenticator, access: NamespaceAccess) -> io::Result<ApiServerStandIn> {
        let log: Recording<ApiServerExchange> = Recording::default();
        let recording = log.clone();
        let server = Server::start_at(
            ([127, 0, 0, 1], 0),
            Arc::new(move |request: RawRequest| {
                let (status, body, believed) =
                    namespace_read(&request, &rules, &authenticate, &access).unwrap_or_else(|| review(&request, &rules, &authenticate));
                let reply = Reply::json(status, &body);
                recording.push(ApiServerExchange { request, status, body, believed });
                Box::pin(std::future::ready(reply))
            }),
        )?;
        Ok(ApiServerStandIn { server, log })
    }

    pub fn start_with(rules: ImpersonationRules, authenticate: Authenticator) -> io::Result<ApiServerStandIn> {
        let log: Recording<ApiServerExchange> = Recording::default();
        let recording = log.clone();
        let server = Server::start_at(
            ([127, 0, 0, 1], 0),
            Arc::new(move |request: RawRequest| {
                let (status, body, believed) = review(&request, &rules, &authenticate);
                let reply = Reply::json(status, &body);
                recording.push(ApiServerExchange { request, status, body, believed });
                Box::pin(std::future::ready(reply))
            }),
        )?;
        Ok(ApiServerStandIn { server, log })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    pub fn exchanges(&self) -> Vec<ApiServerExchange> {
        self.log.all()
    }

    pub fn requests(&self) -> Vec<RawRequest> {
        self.exchanges().into_iter().map(|e| e.request).collect()
    }

    pub fn last(&self) -> Option<ApiServerExchange> {
        self.log.last()
    }

    pub fn count(&self) -> usize {
        self.log.count()
    }

    pub fn clear(&self) {
        self.log.clear();
    }

    /// The user the last request was believed to be, if it was not refused.
    pub fn believed_user(&self) -> Option<UserInfo> {
        self.last().and_then(|e| e.believed)
    }
}

// ---- Namespace reads (a test knob for who may read which Namespace) ----

/// A subject of an RBAC binding (`rbac.authorization.k8s.io/v1` `Subject`, kinds `User` and `Group`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    User(String),
    Group(String),
}

impl Subject {
    /// RBAC's `appliesToUser` (rbac.go): a `User` subject matches the user's name, a `Group`
    /// subject any of its groups (those WithImpersonation built, `system:authenticated` included).
    fn applies_to(&self, user: &UserInfo) -> bool {
        match self {
            Subject::User(name) => *name == user.name,
            Subject::Group(group) => user.groups.iter().any(|g| g == group),
        }
    }
}

/// **Test knob**, not read from any manifest: the cluster's namespaces and who may read them,
/// standing in for the RBAC bindings a real cluster would have:
/// - [`NamespaceAccess::cluster_reader`]: a ClusterRoleBinding to a ClusterRole with `get` and
///   `list` on `namespaces`, as Kiali's own ClusterRole has with `cluster_wide_access`
///   (kiali/helm-charts `kiali-server/templates/role.yaml` and `role-viewer.yaml`);
/// - [`NamespaceAccess::may_get`]: a RoleBinding in each named namespace to a role with `get` on
///   `namespaces`. That allows `GET /api/v1/namespaces/<ns>` because the API server takes a
///   namespace's own name as the request's namespace (kubernetes/apiserver
///   `pkg/endpoints/request/requestinfo.go`, `NewRequestInfo`: for `/namespaces/{namespace}`,
///   `requestInfo.Namespace = currentParts[1]`), and RBAC applies RoleBindings of that namespace.
///   It does not allow the cluster-scoped `list`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceAccess {
    namespaces: BTreeSet<String>,
    cluster_readers: BTreeSet<Subject>,
    getters: BTreeMap<Subject, BTreeSet<String>>,
}

impl NamespaceAccess {
    /// A cluster with these namespaces, readable by no one yet.
    pub fn new(namespaces: &[&str]) -> NamespaceAccess {
        NamespaceAccess { namespaces: namespaces.iter().map(|n| n.to_string()).collect(), ..NamespaceAccess::default() }
    }

    /// `subject` may `get` and `list` every namespace.
    pub fn cluster_reader(mut self, subject: Subject) -> NamespaceAccess {
        self.cluster_readers.insert(subject);
        self
    }

    /// `subject` may `get` each of `namespaces` (one RoleBinding in each).
    pub fn may_get(mut self, subject: Subject, namespaces: &[&str]) -> NamespaceAccess {
        self.getters.entry(subject).or_default().extend(namespaces.iter().map(|n| n.to_string()));
        self
    }

    /// The cluster's namespaces, in name order.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.namespaces.iter().map(String::as_str)
    }

    /// `RulesAllow` over the bindings above: `list` (cluster scope) for a cluster reader, `get`
    /// of `namespace` also for a subject bound in that namespace.
    pub fn allows(&self, user: &UserInfo, verb: &str, namespace: &str) -> bool {
        if self.cluster_readers.iter().any(|s| s.applies_to(user)) {
            return true;
        }
        verb == "get" && self.getters.iter().any(|(s, names)| s.applies_to(user) && names.contains(namespace))
    }
}

/// `GET /api/v1/namespaces` (list) and `GET /api/v1/namespaces/<name>` (get), as the API server
/// answers them: authentication and WithImpersonation as in [`review`], then authorization of
/// the request itself over [`NamespaceAccess`] (403 `forbiddenMessage`, as [`Denial`]), then the
/// object (404 `namespaces "<name>" not found`, `apierrors.NewNotFound`). A list comes in name
/// order, as etcd's keys do. `None` for any other request. The believed user is returned also
/// when the read itself is forbidden (authentication and impersonation succeeded).
pub fn namespace_read(
    request: &RawRequest,
    rules: &ImpersonationRules,
    authenticate: &Authenticator,
    access: &NamespaceAccess,
) -> Option<(u16, Value, Option<UserInfo>)> {
    let rest = request.path_only().strip_prefix("/api/v1/namespaces")?;
    // requestinfo.go: no name is `list`, one more segment is a `get` of that name.
    let name = match rest.strip_prefix('/') {
        None if rest.is_empty() => None,
        Some(name) if !name.is_empty() && !name.contains('/') => Some(name.to_string()),
        _ => return None,
    };
    if request.method != "GET" {
        return None;
    }
    let headers = match GoHeader::read(&request.headers) {
        Ok(h) => h,
        Err(e) => return Some((400, k8s_status(400, "BadRequest", &e.to_string()), None)),
    };
    let Some(requester) = bearer_token(&headers).and_then(|t| authenticate(t)) else {
        return Some((401, k8s_status(401, "Unauthorized", "Unauthorized"), None));
    };
    let user = match impersonate(&headers, &requester, rules) {
        Ok(user) => user,
        Err(denial) => return Some((denial.code(), denial.status_json(), None)),
    };
    let verb = if name.is_some() { "get" } else { "list" };
    let namespace = name.clone().unwrap_or_default();
    if !access.allows(&user, verb, &namespace) {
        let attributes = Attributes { verb: verb.into(), resource: "namespaces".into(), name: namespace.clone(), namespace, ..Attributes::default() };
        let denial = forbidden(&user, attributes);
        return Some((denial.code(), denial.status_json(), Some(user)));
    }
    let object = |name: &str| json!({"metadata": {"name": name}, "spec": {}, "status": {"phase": "Active"}});
    let answer = match name {
        None => {
            let items: Vec<Value> = access.namespaces().map(object).collect();
            (200, json!({"kind": "NamespaceList", "apiVersion": "v1", "metadata": {}, "items": items}))
        }
        Some(name) if access.namespaces.contains(&name) => {
            let mut namespace = object(&name);
            namespace["kind"] = json!("Namespace");
            namespace["apiVersion"] = json!("v1");
            (200, namespace)
        }
        Some(name) => {
            let mut status = k8s_status(404, "NotFound", &format!("namespaces {name:?} not found"));
            status["details"] = json!({"name": name, "kind": "namespaces"});
            (404, status)
        }
    };
    Some((answer.0, answer.1, Some(user)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(lines: &[(&str, &str)]) -> GoHeader {
        GoHeader::read(lines).unwrap()
    }

    fn alice() -> UserInfo {
        UserInfo::service_account("kiali-auth", "kiali-impersonator")
    }

    fn attrs(group: &str, resource: &str, subresource: &str, name: &str) -> Attributes {
        let a = Attributes { verb: "impersonate".into(), api_group: group.into(), resource: resource.into(), ..Attributes::default() };
        Attributes { subresource: subresource.into(), name: name.into(), ..a }
    }

    #[test]
    fn unescape_extra_key_is_path_unescape_or_the_key() {
        for (encoded, key) in [
            ("acme.com%2fteam", "acme.com/team"),
            ("acme.com%252fteam", "acme.com%2fteam"),
            ("a+b", "a+b"),
            ("50%", "50%"),
            ("%zz", "%zz"),
            ("email", "email"),
        ] {
            assert_eq!(unescape_extra_key(encoded), key, "{encoded}");
        }
    }

    #[test]
    fn rbac_matches_like_rule_allows() {
        let uid = PolicyRule::impersonate(&["authentication.k8s.io"], &["uids"]);
        for (rule, attributes, allowed) in [
            (PolicyRule::impersonate(&[""], &["users"]), attrs("", "users", "", "alice"), true),
            (PolicyRule::impersonate(&[""], &["users"]), attrs("", "groups", "", "admins"), false),
            (PolicyRule::impersonate(&[""], &["users"]).named(&["bob"]), attrs("", "users", "", "alice"), false),
            (PolicyRule::impersonate(&[""], &["users"]).named(&["alice"]), attrs("", "users", "", "alice"), true),
            (PolicyRule::impersonate(&["*"], &["*"]), attrs(AUTHENTICATION_GROUP, "userextras", "k", "v"), true),
            (uid.clone(), attrs("", "uids", "", "1"), false),
            (uid, attrs(AUTHENTICATION_GROUP, "uids", "", "1"), true),
            (PolicyRule::impersonate(&[AUTHENTICATION_GROUP], &["userextras/*"]), attrs(AUTHENTICATION_GROUP, "userextras", "k", "v"), false),
            (PolicyRule::impersonate(&[AUTHENTICATION_GROUP], &["*/k"]), attrs(AUTHENTICATION_GROUP, "userextras", "k", "v"), true),
            (PolicyRule::impersonate(&[AUTHENTICATION_GROUP], &["userextras"]), attrs(AUTHENTICATION_GROUP, "userextras", "k", "v"), false),
            (
                PolicyRule::impersonate(&[AUTHENTICATION_GROUP], &["userextras/acme.com/team"]),
                attrs(AUTHENTICATION_GROUP, "userextras", "acme.com/team", "v"),
                true,
            ),
            (PolicyRule { verbs: vec!["get".into()], ..PolicyRule::impersonate(&["*"], &["*"]) }, attrs("", "users", "", "a"), false),
        ] {
            assert_eq!(ImpersonationRules::from_rules(vec![rule.clone()]).allows(&attributes), allowed, "{rule:?} {attributes:?}");
        }
    }

    #[test]
    fn deployed_cluster_role_is_read_from_the_manifest() {
        let rules = ImpersonationRules::deployed().unwrap();
        assert!(!rules.rules().is_empty());
        for (attributes, allowed) in [
            (attrs("", "users", "", "alice"), true),
            (attrs("", "groups", "", "system:masters"), true),
            (attrs(AUTHENTICATION_GROUP, "uids", "", "1"), true),
            (attrs(AUTHENTICATION_GROUP, "userextras", "email", "a@b"), true),
            (attrs(AUTHENTICATION_GROUP, "userextras", "team", "x"), false),
            (attrs("", "serviceaccounts", "", "default"), false),
        ] {
            assert_eq!(rules.allows(&attributes), allowed, "{attributes:?}");
        }
    }

    #[test]
    fn impersonation_like_with_impersonation() {
        let rules = ImpersonationRules::deployed().unwrap();
        let everything = ImpersonationRules::from_rules(vec![PolicyRule::impersonate(&["*"], &["*"])]);
        let user = |name: &str, groups: &[&str], extra: &[(&str, &[&str])], uid: &str| UserInfo {
            name: name.into(),
            uid: uid.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            extra: extra.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect(),
        };
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a ImpersonationRules, Result<UserInfo, (u16, Option<&'a str>)>);
        let cases: Vec<Case> = vec![
            // No impersonation: the requester itself.
            (&[("x-other", "1")], &rules, Ok(alice())),
            // system:authenticated is added; a leading space never reaches here (Go trims it).
            (&[("impersonate-user", "alice"), ("impersonate-group", " system:masters")], &rules, Ok(user("alice", &["system:masters", "system:authenticated"], &[], ""))),
            // Not added twice, and not when system:unauthenticated is asked for.
            (&[("impersonate-user", "a"), ("impersonate-group", "system:authenticated")], &rules, Ok(user("a", &["system:authenticated"], &[], ""))),
            (&[("impersonate-user", "a"), ("impersonate-group", "system:unauthenticated")], &rules, Ok(user("a", &["system:unauthenticated"], &[], ""))),
            (&[("impersonate-user", "system:anonymous")], &rules, Ok(user("system:anonymous", &["system:unauthenticated"], &[], ""))),
            // A comma-joined line is one group.
            (&[("impersonate-user", "a"), ("impersonate-group", "x,y")], &rules, Ok(user("a", &["x,y", "system:authenticated"], &[], ""))),
            // Groups, extras or a uid without a user: 400.
            (&[("impersonate-group", "admins")], &rules, Err((400, None))),
            (&[("impersonate-extra-email", "a@b")], &rules, Err((400, None))),
            (&[("impersonate-uid", "1")], &rules, Err((400, None))),
            // Extras: lowercased, then percent-decoded once.
            (&[("impersonate-user", "a"), ("Impersonate-Extra-EMAIL", "a@b")], &rules, Ok(user("a", &["system:authenticated"], &[("email", &["a@b"])], ""))),
            (&[("impersonate-user", "a"), ("impersonate-extra-acme.com%2Fteam", "eng")], &everything, Ok(user("a", &["system:authenticated"], &[("acme.com/team", &["eng"])], ""))),
            (&[("impersonate-user", "a"), ("impersonate-extra-team", "eng")], &rules, Err((403, Some("userextras/team")))),
            (&[("impersonate-user", "a"), ("impersonate-extra-acme.com%2Fteam", "eng")], &rules, Err((403, Some("userextras/acme.com/team")))),
            (&[("impersonate-user", "a"), ("impersonate-uid", "42")], &rules, Ok(user("a", &["system:authenticated"], &[], "42"))),
            // A service account is checked as serviceaccounts, which the deployed role does not grant.
            (&[("impersonate-user", "system:serviceaccount:ns:sa")], &rules, Err((403, Some("serviceaccounts")))),
            (
                &[("impersonate-user", "system:serviceaccount:ns:sa")],
                &everything,
                Ok(user("system:serviceaccount:ns:sa", &["system:serviceaccounts", "system:serviceaccounts:ns", "system:authenticated"], &[], "")),
            ),
            // Not a valid service-account name: an ordinary user.
            (&[("impersonate-user", "system:serviceaccount:NS:sa")], &rules, Ok(user("system:serviceaccount:NS:sa", &["system:authenticated"], &[], ""))),
        ];
        for (lines, rules, expected) in cases {
            let got = impersonate(&header(lines), &alice(), rules).map_err(|d| (d.code(), d.attribute()));
            let expected = expected.map_err(|(code, attribute)| (code, attribute.map(str::to_string)));
            assert_eq!(got, expected, "{lines:?}");
        }
    }

    #[test]
    fn refusals_mirror_the_api_server_messages() {
        let rules = ImpersonationRules::deployed().unwrap();
        let denial = impersonate(&header(&[("impersonate-user", "a"), ("impersonate-extra-team", "eng")]), &alice(), &rules).unwrap_err();
        assert_eq!(
            denial.message(),
            "userextras.authentication.k8s.io \"eng\" is forbidden: User \"system:serviceaccount:kiali-auth:kiali-impersonator\" \
             cannot impersonate resource \"userextras/team\" in API group \"authentication.k8s.io\" at the cluster scope"
        );
        let status = denial.status_json();
        assert_eq!((status["code"].as_u64(), status["reason"].as_str()), (Some(403), Some("Forbidden")));
        let denial = impersonate(&header(&[("impersonate-group", "admins")]), &alice(), &rules).unwrap_err();
        assert_eq!(denial.message(), "requested [{Group  admins    }] without impersonating a user");
    }

    #[test]
    fn bearer_like_bearertoken_authenticator() {
        for (value, token) in [("Bearer abc", Some("abc")), ("bearer abc", Some("abc")), (" Bearer  abc", None), ("Bearer", None), ("Basic abc", None), ("Bearer a b", Some("a"))] {
            assert_eq!(bearer_token(&header(&[("authorization", value)])), token, "{value:?}");
        }
    }
}
