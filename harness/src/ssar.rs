//! Stand-in for the API server's `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`,
//! rule by rule from kubernetes/kubernetes:
//! - authentication: the bearer must be a ServiceAccount token the token service issued and that
//!   has not expired, else 401 (the caller, `token_service`, decides; the handler chain
//!   authenticates before any handler runs);
//! - `pkg/registry/authorization/selfsubjectaccessreview/rest.go` (`Create`): the body is
//!   validated (`ValidateSelfSubjectAccessReview`, `pkg/apis/authorization/validation/validation.go`:
//!   exactly one of `resourceAttributes` and `nonResourceAttributes`, else 422 `Invalid`); the
//!   review is evaluated for the *authenticated user* (`genericapirequest.UserFrom(ctx)`: the
//!   bearer's subject, never anyone named in the body); the attributes are
//!   `ResourceAttributesFrom` (`pkg/registry/authorization/util/helpers.go`): verb, group,
//!   resource, subresource, **name**, namespace;
//! - the decision: RBAC, `RuleAllows` over the rules bound to that user
//!   (`plugin/pkg/auth/authorizer/rbac/rbac.go`, through [`crate::apiserver::PolicyRule`], which
//!   honours `resourceNames`); an allow carries the reason `RBAC: allowed by <binding>`
//!   (`clusterRoleBindingDescriber.String`, `pkg/registry/rbac/validation/rule.go`); no rule:
//!   `allowed: false` and no reason (`DecisionNoOpinion`);
//! - `evaluationError`: another authorizer of the chain failing (a webhook, say). The union
//!   authorizer (`k8s.io/apiserver/pkg/authorization/union/union.go`) returns the first allow
//!   with no error, and when nothing allows, the collected errors, which `BuildEvaluationError`
//!   (helpers.go) writes in `status.evaluationError`;
//! - the answer: 201 with the review and its status (`SubjectAccessReviewStatus`,
//!   `staging/src/k8s.io/api/authorization/v1/types.go`: `allowed`, then `denied`, `reason`,
//!   `evaluationError`, each omitted when empty).
//!
//! Reviews are recorded here, apart from the token service's request log, so tests that count
//! token requests are not disturbed. Not modelled: Roles and RoleBindings (namespaced rules),
//! groups as binding subjects, non-resource attributes (answered `allowed: false`).

use crate::api_status::{self, k8s_status, InvalidField};
use crate::apiserver::{Attributes, ImpersonationRules, PolicyRule, IMPERSONATOR};
use crate::message::RawRequest;
use crate::server::Reply;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

pub const REVIEW_PATH: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
/// The ClusterRoleBinding (and ClusterRole) of `deploy/02-impersonator.yaml`.
pub const BINDING: &str = "kiali-header-auth-impersonate";

/// One RBAC rule granting `impersonate` on `resource` (`users`, `groups`, `uids`,
/// `userextras/<key>`, or `*`) in `api_group` (`""`, `authentication.k8s.io`, or `*`), for the
/// names in `resource_names` only when it is not empty (RBAC's `resourceNames`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImpersonateRule {
    pub api_group: String,
    pub resource: String,
    pub resource_names: Vec<String>,
}

impl ImpersonateRule {
    pub fn new(api_group: &str, resource: &str) -> Self {
        ImpersonateRule { api_group: api_group.into(), resource: resource.into(), resource_names: Vec::new() }
    }

    /// Restricts the rule to these `resourceNames`.
    pub fn named(mut self, names: &[&str]) -> Self {
        self.resource_names = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// The rules of `deploy/02-impersonator.yaml` for the oauth2-proxy preset.
    pub fn oauth2_proxy_preset() -> Vec<ImpersonateRule> {
        vec![
            Self::new("", "users"),
            Self::new("", "groups"),
            Self::new("authentication.k8s.io", "uids"),
            Self::new("authentication.k8s.io", "userextras/email"),
        ]
    }

    /// The `PolicyRule` of a ClusterRole: `verbs: [impersonate]`.
    fn policy_rule(&self) -> PolicyRule {
        let names: Vec<&str> = self.resource_names.iter().map(String::as_str).collect();
        PolicyRule::impersonate(&[self.api_group.as_str()], &[self.resource.as_str()]).named(&names)
    }
}

/// A review as received, and what it was answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedReview {
    /// The bearer the review carried (whose permissions it asks about).
    pub bearer: Option<String>,
    /// The user that bearer authenticates as, the one the review is evaluated for.
    pub subject: Option<String>,
    pub verb: String,
    pub api_group: String,
    /// `resource` or `resource/subresource`.
    pub resource: String,
    /// `resourceAttributes.name` (empty: any name).
    pub name: String,
    /// `Some(allowed)` when answered with a review, `None` when refused or failed.
    pub allowed: Option<bool>,
    /// `status.evaluationError` of the answer (empty: none).
    pub evaluation_error: String,
    pub status: u16,
}

struct Table {
    /// User name -> the rules bound to it. A user with no entry has no rules. `None` as rules:
    /// every `impersonate` (a `*` rule, as a correctly set up cluster grants what is needed).
    bindings: BTreeMap<String, Option<Vec<ImpersonateRule>>>,
    /// Answer every review with this Kubernetes `Status` (code, reason, message).
    failure: Option<(u16, String, String)>,
    /// The error of another authorizer in the chain (see the module comment).
    evaluation_error: Option<String>,
    reviews: Vec<RecordedReview>,
}

impl Default for Table {
    /// The impersonator ServiceAccount of deploy/ may impersonate everything; nobody else anything.
    fn default() -> Self {
        Table {
            bindings: BTreeMap::from([(IMPERSONATOR.to_string(), None)]),
            failure: None,
            evaluation_error: None,
            reviews: Vec::new(),
        }
    }
}

/// Shared handle to the review table; cloning shares it.
#[derive(Clone, Default)]
pub struct SelfSubjectAccessReviews {
    table: Arc<Mutex<Table>>,
}

impl SelfSubjectAccessReviews {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The impersonator ServiceAccount (`apiserver::IMPERSONATOR`, the one deploy/ creates) may
    /// impersonate what these rules grant, nothing else (`None`: everything).
    pub fn set_rules(&self, rules: Option<Vec<ImpersonateRule>>) {
        self.bind(IMPERSONATOR, rules);
    }

    /// Binds rules to `user` (such as `system:serviceaccount:<ns>:<name>`), replacing its own.
    /// `None`: everything.
    pub fn bind(&self, user: &str, rules: Option<Vec<ImpersonateRule>>) {
        self.lock().bindings.insert(user.to_string(), rules);
    }

    /// Removes every rule bound to `user`: it may impersonate nothing.
    pub fn unbind(&self, user: &str) {
        self.lock().bindings.remove(user);
    }

    /// Answer every review with this error status (`None`: answer normally).
    pub fn set_failure(&self, failure: Option<(u16, &str, &str)>) {
        self.lock().failure = failure.map(|(code, reason, message)| (code, reason.into(), message.into()));
    }

    /// Another authorizer of the chain fails with this error (`None`: it does not): a review RBAC
    /// does not allow is answered `allowed: false` with this `evaluationError`.
    pub fn set_evaluation_error(&self, error: Option<&str>) {
        self.lock().evaluation_error = error.map(str::to_string);
    }

    pub fn reviews(&self) -> Vec<RecordedReview> {
        self.lock().reviews.clone()
    }

    /// Answers one review. `subject`: the user the bearer authenticates as (`None`: the bearer
    /// is not a valid token, 401).
    pub fn answer(&self, req: &RawRequest, bearer: Option<String>, subject: Option<String>) -> Reply {
        let spec: Value = serde_json::from_slice::<Value>(&req.body)
            .ok()
            .and_then(|v| v.get("spec").cloned())
            .unwrap_or(Value::Null);
        let attributes = spec.get("resourceAttributes").filter(|a| !a.is_null()).cloned();
        let non_resource = spec.get("nonResourceAttributes").filter(|a| !a.is_null());
        let text = |name: &str| {
            attributes.as_ref().and_then(|a| a.get(name)).and_then(Value::as_str).unwrap_or("").to_string()
        };
        // ResourceAttributesFrom (helpers.go).
        let asked = Attributes {
            verb: text("verb"),
            api_group: text("group"),
            resource: text("resource"),
            subresource: text("subresource"),
            namespace: text("namespace"),
            name: text("name"),
        };
        let mut table = self.lock();
        let refusal = |status: Value| {
            let code = status["code"].as_u64().and_then(|c| u16::try_from(c).ok()).unwrap_or(500);
            (code, status, None, String::new())
        };
        let (status, body, allowed, evaluation_error) = if req.method != "POST" {
            refusal(k8s_status(405, "MethodNotAllowed", "only POST"))
        } else if subject.is_none() {
            refusal(k8s_status(401, "Unauthorized", "Unauthorized"))
        } else if let Some((code, reason, message)) = &table.failure {
            refusal(k8s_status(*code, reason, message))
        } else if attributes.is_some() == non_resource.is_some() {
            // ValidateSelfSubjectAccessReviewSpec (validation.go).
            let field = match attributes {
                Some(_) => InvalidField { field: "spec.nonResourceAttributes", value: "{}".into(), detail: "cannot be specified in combination with resourceAttributes" },
                None => InvalidField { field: "spec.resourceAttributes", value: "null".into(), detail: "exactly one of nonResourceAttributes or resourceAttributes must be specified" },
            };
            refusal(api_status::invalid("authorization.k8s.io", "SelfSubjectAccessReview", "", &[field]))
        } else {
            let user = subject.as_deref().unwrap_or_default();
            // RBAC over the rules bound to the authenticated user; non-resource attributes match
            // no rule here.
            let allowed = attributes.is_some()
                && table.bindings.get(user).is_some_and(|rules| {
                    let rules = match rules {
                        None => vec![PolicyRule::impersonate(&["*"], &["*"])],
                        Some(rules) => rules.iter().map(ImpersonateRule::policy_rule).collect(),
                    };
                    ImpersonationRules::from_rules(rules).allows(&asked)
                });
            let mut status = json!({ "allowed": allowed });
            let mut evaluation_error = String::new();
            if allowed {
                status["reason"] = json!(format!(
                    "RBAC: allowed by ClusterRoleBinding \"{BINDING}\" of ClusterRole \"{BINDING}\" to {}",
                    describe_subject(user)
                ));
            } else if let Some(error) = &table.evaluation_error {
                evaluation_error = error.clone();
                status["evaluationError"] = json!(error);
            }
            let mut spec = spec.clone();
            if let Some(object) = spec.as_object_mut() {
                object.retain(|key, _| key == "resourceAttributes" || key == "nonResourceAttributes");
            }
            let review = json!({
                "kind": "SelfSubjectAccessReview",
                "apiVersion": "authorization.k8s.io/v1",
                "metadata": { "creationTimestamp": null },
                "spec": spec,
                "status": status,
            });
            (201, review, Some(allowed), evaluation_error)
        };
        let resource = asked.combined_resource();
        table.reviews.push(RecordedReview {
            bearer,
            subject,
            verb: asked.verb,
            api_group: asked.api_group,
            resource,
            name: asked.name,
            allowed,
            evaluation_error,
            status,
        });
        Reply::json(status, &body)
    }
}

/// `describeSubject` (rule.go): `ServiceAccount "<name>/<namespace>"` for a ServiceAccount's
/// user, `User "<name>"` otherwise.
fn describe_subject(user: &str) -> String {
    match user.strip_prefix("system:serviceaccount:").and_then(|rest| rest.split_once(':')) {
        Some((namespace, name)) => format!("ServiceAccount \"{name}/{namespace}\""),
        None => format!("User {user:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OTHER: &str = "system:serviceaccount:kiali-auth:someone-else";

    fn review(attributes: Value) -> RawRequest {
        RawRequest {
            method: "POST".into(),
            path: REVIEW_PATH.into(),
            body: serde_json::to_vec(&json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": attributes})).unwrap(),
            ..RawRequest::default()
        }
    }

    /// The status, `allowed` and `evaluationError` of the answer to an `impersonate` review of
    /// `resource` named `name`, asked by `subject`.
    fn ask_named(ssar: &SelfSubjectAccessReviews, subject: Option<&str>, group: &str, resource: &str, name: &str) -> (u16, Option<bool>, Option<String>) {
        let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
        let attributes = json!({"verb": "impersonate", "group": group, "resource": resource, "subresource": sub, "name": name});
        let Reply::Respond { status, body, .. } = ssar.answer(&review(json!({"resourceAttributes": attributes})), Some("t".into()), subject.map(str::to_string)) else {
            panic!("a review is always answered");
        };
        let answer: Value = serde_json::from_slice(&body).unwrap();
        let error = answer.pointer("/status/evaluationError").and_then(Value::as_str).map(str::to_string);
        (status, answer.pointer("/status/allowed").and_then(Value::as_bool), error)
    }

    fn ask(ssar: &SelfSubjectAccessReviews, group: &str, resource: &str, valid: bool) -> (u16, Option<bool>) {
        let (status, allowed, _) = ask_named(ssar, valid.then_some(IMPERSONATOR), group, resource, "");
        (status, allowed)
    }

    #[test]
    fn answers_from_the_rule_table() {
        let ssar = SelfSubjectAccessReviews::default();
        assert_eq!(ask(&ssar, "", "groups", true), (201, Some(true)));
        let extras = "authentication.k8s.io";
        ssar.set_rules(Some(vec![ImpersonateRule::new("", "users"), ImpersonateRule::new(extras, "userextras/email")]));
        assert_eq!(ask(&ssar, "", "users", true), (201, Some(true)));
        assert_eq!(ask(&ssar, "", "groups", true), (201, Some(false)));
        assert_eq!(ask(&ssar, extras, "userextras/email", true), (201, Some(true)));
        assert_eq!(ask(&ssar, extras, "userextras/team", true), (201, Some(false)));
        assert_eq!(ask(&ssar, "", "users", false), (401, None));
        ssar.set_failure(Some((500, "InternalError", "etcd is down")));
        assert_eq!(ask(&ssar, "", "users", true), (500, None));
        let reviews = ssar.reviews();
        assert_eq!(reviews.len(), 7);
        assert_eq!((reviews[3].resource.as_str(), reviews[2].allowed), ("userextras/email", Some(false)));
    }

    /// rest.go: the review is for the bearer's user; the rules of another user do not count.
    #[test]
    fn evaluates_for_the_bearers_subject() {
        let ssar = SelfSubjectAccessReviews::default();
        assert_eq!(ask_named(&ssar, Some(OTHER), "", "users", ""), (201, Some(false), None), "no binding: nothing");
        ssar.bind(OTHER, Some(vec![ImpersonateRule::new("", "groups")]));
        assert_eq!(ask_named(&ssar, Some(OTHER), "", "groups", ""), (201, Some(true), None));
        assert_eq!(ask_named(&ssar, Some(OTHER), "", "users", ""), (201, Some(false), None));
        ssar.set_rules(Some(vec![ImpersonateRule::new("", "users")]));
        assert_eq!(ask_named(&ssar, Some(IMPERSONATOR), "", "groups", ""), (201, Some(false), None));
        assert_eq!(ask_named(&ssar, Some(IMPERSONATOR), "", "users", ""), (201, Some(true), None));
        let subjects: Vec<Option<String>> = ssar.reviews().into_iter().map(|r| r.subject).collect();
        assert_eq!(subjects[0].as_deref(), Some(OTHER));
        // The allow names the binding and the ServiceAccount as RBAC describes them.
        let Reply::Respond { body, .. } = ssar.answer(
            &review(json!({"resourceAttributes": {"verb": "impersonate", "resource": "users"}})),
            None,
            Some(IMPERSONATOR.into()),
        ) else {
            panic!()
        };
        let answer: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            answer["status"]["reason"],
            "RBAC: allowed by ClusterRoleBinding \"kiali-header-auth-impersonate\" of ClusterRole \"kiali-header-auth-impersonate\" to ServiceAccount \"kiali-impersonator/kiali-auth\""
        );
    }

    /// ResourceNameMatches (evaluation_helpers.go): a rule with resourceNames allows those names
    /// only, and never a review without a name (the filter's "any user").
    #[test]
    fn honours_the_name_against_resource_names() {
        let ssar = SelfSubjectAccessReviews::default();
        ssar.set_rules(Some(vec![ImpersonateRule::new("", "users").named(&["alice", "bob"])]));
        assert_eq!(ask_named(&ssar, Some(IMPERSONATOR), "", "users", "alice").1, Some(true));
        assert_eq!(ask_named(&ssar, Some(IMPERSONATOR), "", "users", "carol").1, Some(false));
        assert_eq!(ask_named(&ssar, Some(IMPERSONATOR), "", "users", "").1, Some(false));
        ssar.set_rules(Some(vec![ImpersonateRule::new("", "users")]));
        assert_eq!(ask_named(&ssar, Some(IMPERSONATOR), "", "users", "carol").1, Some(true));
        assert_eq!(ssar.reviews()[1].name, "carol");
    }

    /// union.go + BuildEvaluationError: an error of another authorizer shows only when nothing
    /// allows; an allow carries none.
    #[test]
    fn returns_the_evaluation_error_when_nothing_allows() {
        let ssar = SelfSubjectAccessReviews::default();
        ssar.set_rules(Some(vec![ImpersonateRule::new("", "users")]));
        ssar.set_evaluation_error(Some("Post \"https://authz.example/\": dial tcp: connection refused"));
        let (status, allowed, error) = ask_named(&ssar, Some(IMPERSONATOR), "", "groups", "");
        assert_eq!((status, allowed), (201, Some(false)));
        assert_eq!(error.as_deref(), Some("Post \"https://authz.example/\": dial tcp: connection refused"));
        assert_eq!(ask_named(&ssar, Some(IMPERSONATOR), "", "users", ""), (201, Some(true), None));
        assert_eq!(ssar.reviews()[0].evaluation_error, "Post \"https://authz.example/\": dial tcp: connection refused");
    }

    /// ValidateSelfSubjectAccessReviewSpec: exactly one kind of attributes, else 422 Invalid.
    #[test]
    fn a_review_without_attributes_is_invalid() {
        let ssar = SelfSubjectAccessReviews::default();
        for spec in [json!({}), json!({"resourceAttributes": {"verb": "get"}, "nonResourceAttributes": {"path": "/", "verb": "get"}})] {
            let Reply::Respond { status, body, .. } = ssar.answer(&review(spec), None, Some(IMPERSONATOR.into())) else { panic!() };
            let answer: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!((status, answer["reason"].as_str()), (422, Some("Invalid")), "{answer}");
        }
        // A non-resource review is valid, and RBAC rules on resources never allow it.
        let spec = json!({"nonResourceAttributes": {"path": "/healthz", "verb": "get"}});
        let Reply::Respond { status, body, .. } = ssar.answer(&review(spec), None, Some(IMPERSONATOR.into())) else { panic!() };
        let answer: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((status, answer["status"]["allowed"].as_bool()), (201, Some(false)));
    }
}
