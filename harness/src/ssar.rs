//! Stand-in for the API server's `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`:
//! answers from a table of `impersonate` rules the test sets (as RBAC would for the token's
//! ServiceAccount), or with an error status. Reviews are recorded here, apart from the token
//! service's request log, so tests that count token requests are not disturbed.

use crate::message::RawRequest;
use crate::server::Reply;
use crate::token_service::k8s_status;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex, MutexGuard};

pub const REVIEW_PATH: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";

/// One RBAC rule granting `impersonate` on `resource` (`users`, `groups`, `uids`,
/// `userextras/<key>`, or `*`) in `api_group` (`""`, `authentication.k8s.io`, or `*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImpersonateRule {
    pub api_group: String,
    pub resource: String,
}

impl ImpersonateRule {
    pub fn new(api_group: &str, resource: &str) -> Self {
        ImpersonateRule {
            api_group: api_group.into(),
            resource: resource.into(),
        }
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

    fn grants(&self, group: &str, resource: &str) -> bool {
        (self.api_group == "*" || self.api_group == group)
            && (self.resource == "*" || self.resource == resource)
    }
}

/// A review as received, and what it was answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedReview {
    /// The bearer the review carried (whose permissions it asks about).
    pub bearer: Option<String>,
    pub verb: String,
    pub api_group: String,
    /// `resource` or `resource/subresource`.
    pub resource: String,
    /// `Some(allowed)` when answered with a review, `None` when refused or failed.
    pub allowed: Option<bool>,
    pub status: u16,
}

#[derive(Default)]
struct Table {
    /// `None`: every review is allowed (a correctly set up cluster).
    rules: Option<Vec<ImpersonateRule>>,
    /// Answer every review with this Kubernetes `Status` (code, reason, message).
    failure: Option<(u16, String, String)>,
    reviews: Vec<RecordedReview>,
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

    /// The token may impersonate what these rules grant, nothing else (`None`: everything).
    pub fn set_rules(&self, rules: Option<Vec<ImpersonateRule>>) {
        self.lock().rules = rules;
    }

    /// Answer every review with this error status (`None`: answer normally).
    pub fn set_failure(&self, failure: Option<(u16, &str, &str)>) {
        self.lock().failure =
            failure.map(|(code, reason, message)| (code, reason.into(), message.into()));
    }

    pub fn reviews(&self) -> Vec<RecordedReview> {
        self.lock().reviews.clone()
    }

    /// Answers one review. `bearer_valid`: the bearer is a token the service issued and that has
    /// not expired (the API server's authentication step).
    pub fn answer(&self, req: &RawRequest, bearer: Option<String>, bearer_valid: bool) -> Reply {
        let attributes: Value = serde_json::from_slice::<Value>(&req.body)
            .ok()
            .and_then(|v| v.pointer("/spec/resourceAttributes").cloned())
            .unwrap_or(Value::Null);
        let text = |name: &str| attributes.get(name).and_then(Value::as_str).unwrap_or("").to_string();
        let resource = match text("subresource").as_str() {
            "" => text("resource"),
            sub => format!("{}/{sub}", text("resource")),
        };
        let mut table = self.lock();
        let (verb, api_group) = (text("verb"), text("group"));
        let refusal = |code: u16, reason: &str, message: &str| (code, k8s_status(code, reason, message), None);
        let (status, body, allowed) = if req.method != "POST" {
            refusal(405, "MethodNotAllowed", "only POST")
        } else if !bearer_valid {
            refusal(401, "Unauthorized", "Unauthorized")
        } else if let Some((code, reason, message)) = &table.failure {
            refusal(*code, reason, message)
        } else if attributes.is_null() || verb.is_empty() {
            refusal(400, "BadRequest", "spec.resourceAttributes is required")
        } else {
            let allowed = verb == "impersonate"
                && table.rules.as_ref().is_none_or(|rules| rules.iter().any(|r| r.grants(&api_group, &resource)));
            let mut status = json!({ "allowed": allowed });
            if allowed {
                status["reason"] = json!("RBAC: allowed by ClusterRoleBinding \"kiali-header-auth-impersonate\"");
            }
            let review = json!({
                "kind": "SelfSubjectAccessReview",
                "apiVersion": "authorization.k8s.io/v1",
                "metadata": { "creationTimestamp": null },
                "spec": { "resourceAttributes": attributes },
                "status": status,
            });
            (201, review, Some(allowed))
        };
        table.reviews.push(RecordedReview { bearer, verb, api_group, resource, allowed, status });
        Reply::json(status, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The status and `allowed` of the answer to an `impersonate` review of `resource`.
    fn ask(ssar: &SelfSubjectAccessReviews, group: &str, resource: &str, valid: bool) -> (u16, Option<bool>) {
        let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
        let attributes = json!({"verb": "impersonate", "group": group, "resource": resource, "subresource": sub});
        let review = RawRequest {
            method: "POST".into(),
            path: REVIEW_PATH.into(),
            body: serde_json::to_vec(&json!({"spec": {"resourceAttributes": attributes}})).unwrap(),
            ..RawRequest::default()
        };
        let Reply::Respond { status, body, .. } = ssar.answer(&review, Some("t".into()), valid) else {
            panic!("a review is always answered");
        };
        let answer: Value = serde_json::from_slice(&body).unwrap();
        (status, answer.pointer("/status/allowed").and_then(Value::as_bool))
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
}
