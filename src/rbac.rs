//! The RBAC self-check: after a new token generation, ask the API server (one
//! SelfSubjectAccessReview per permission) whether the impersonator token may impersonate what the
//! configuration maps, and say precisely which ClusterRole rule is missing when it may not.
//!
//! Pure: the root context dispatches the reviews and feeds the answers back. The attributes are
//! the ones the API server's impersonation filter checks (k8s.io/apiserver
//! `pkg/endpoints/filters/impersonation.go`): `impersonate` on core `users` and `groups`, and on
//! `authentication.k8s.io` `uids` and `userextras/<key>`. The reviews carry no resource name, so
//! they ask "any user", "any group", which is what a filter that maps arbitrary identities needs.

use serde::{Deserialize, Serialize};

use crate::config::IdentityConfig;
use crate::refusal::quote_for_log;

pub const REVIEW_PATH: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";

/// While a needed permission is denied, ask again this often with the current token, so fixing the
/// ClusterRole takes effect without waiting for the next token generation.
pub const RECHECK_WHILE_DENIED_MS: u64 = 30_000;

/// One `impersonate` permission the filter's requests need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    /// API group: "" (core) for users and groups, `authentication.k8s.io` for uids and extras.
    pub group: &'static str,
    pub resource: &'static str,
    /// The extra key, for `userextras`.
    pub subresource: Option<String>,
}

impl Permission {
    fn new(group: &'static str, resource: &'static str, subresource: Option<String>) -> Self {
        Permission {
            group,
            resource,
            subresource,
        }
    }

    /// `users`, `groups`, `uids`, `userextras/email`: the name RBAC rules use.
    pub fn rbac_resource(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.to_string(),
        }
    }

    /// The ClusterRole rule that grants this permission, as YAML flow.
    pub fn granting_rule(&self) -> String {
        format!(
            "{{apiGroups: [{}], resources: [{}], verbs: [\"impersonate\"]}}",
            serde_json::Value::from(self.group),
            serde_json::Value::from(self.rbac_resource())
        )
    }

    /// The request body of the SelfSubjectAccessReview that asks for this permission.
    pub fn review_body(&self) -> Vec<u8> {
        let review = Review {
            api_version: "authorization.k8s.io/v1",
            kind: "SelfSubjectAccessReview",
            spec: ReviewSpec {
                resource_attributes: ResourceAttributes {
                    verb: "impersonate",
                    group: self.group,
                    resource: self.resource,
                    subresource: self.subresource.as_deref(),
                },
            },
        };
        serde_json::to_vec(&review).unwrap_or_default()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Review<'a> {
    api_version: &'static str,
    kind: &'static str,
    spec: ReviewSpec<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewSpec<'a> {
    resource_attributes: ResourceAttributes<'a>,
}

#[derive(Serialize)]
struct ResourceAttributes<'a> {
    verb: &'static str,
    group: &'static str,
    resource: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subresource: Option<&'a str>,
}

/// What the filter may send, hence what the token must be allowed: always a user; groups, a uid
/// and extras as the identity source (headers or a JWT) and the audit extras can send them.
pub fn needed_permissions(identity: &IdentityConfig) -> Vec<Permission> {
    let mut needed = vec![Permission::new("", "users", None)];
    if identity.may_send_groups() {
        needed.push(Permission::new("", "groups", None));
    }
    if identity.may_send_uid() {
        needed.push(Permission::new("authentication.k8s.io", "uids", None));
    }
    for key in identity.extra_keys() {
        needed.push(Permission::new(
            "authentication.k8s.io",
            "userextras",
            Some(key.to_string()),
        ));
    }
    needed
}

/// The answer to one review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    /// `reason` is the authorizer's explanation (may be empty).
    Denied {
        reason: String,
    },
    /// No usable answer: transport failure, an error status, or a body that is not a review.
    Error {
        detail: String,
    },
}

#[derive(Deserialize)]
struct ReviewAnswer {
    status: Option<ReviewStatus>,
}

#[derive(Deserialize)]
struct ReviewStatus {
    #[serde(default)]
    allowed: bool,
    #[serde(default)]
    reason: String,
    #[serde(default, rename = "evaluationError")]
    evaluation_error: String,
}

#[derive(Deserialize)]
struct ApiStatus {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
}

/// `status` is the answer's `:status`, `None` when there was no HTTP answer.
pub fn parse_review(status: Option<u16>, body: &[u8]) -> Outcome {
    let Some(status) = status else {
        return Outcome::Error {
            detail: "no HTTP response from the API server (connection failed, reset, or timed out)"
                .to_string(),
        };
    };
    if !(200..300).contains(&status) {
        let explanation = serde_json::from_slice::<ApiStatus>(body)
            .map(|s| format!("{} {}", s.reason, quote_for_log(s.message.as_bytes())))
            .unwrap_or_else(|_| quote_for_log(body));
        return Outcome::Error {
            detail: format!("the API server answered HTTP {status}: {explanation}"),
        };
    }
    match serde_json::from_slice::<ReviewAnswer>(body) {
        Ok(ReviewAnswer {
            status: Some(review),
        }) => {
            if review.allowed {
                Outcome::Allowed
            } else if !review.evaluation_error.is_empty() && review.reason.is_empty() {
                // The authorizer could not decide (for example a webhook failed): not a denial.
                Outcome::Error {
                    detail: format!(
                        "the authorizer could not decide: {}",
                        quote_for_log(review.evaluation_error.as_bytes())
                    ),
                }
            } else {
                Outcome::Denied {
                    reason: review.reason,
                }
            }
        }
        _ => Outcome::Error {
            detail: format!(
                "HTTP {status} with a body that is not a SelfSubjectAccessReview: {}",
                quote_for_log(body)
            ),
        },
    }
}

/// One round of reviews for one token generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub generation: u64,
    pub permissions: Vec<Permission>,
    outcomes: Vec<Option<Outcome>>,
}

/// What the last check found, shared by the workers of one Envoy (one per set of needed
/// permissions). `checked_at_ms == 0` means nothing has been checked yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub generation: u64,
    pub checked_at_ms: u64,
    /// `rbac_resource()` of each denied permission; empty when nothing is denied.
    pub denied: Vec<String>,
    /// The newest token generation some worker has taken on to check: the worker that stores a
    /// new token and another worker's tick can both see it first, and only one may ask.
    #[serde(default)]
    pub claimed_generation: u64,
}

/// The shared-data key of the verdict for these permissions under a token's key: plugins with
/// different identity mappings need different permissions, so they keep separate verdicts.
pub fn verdict_key(token_key: &str, permissions: &[Permission]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for permission in permissions {
        for byte in permission.rbac_resource().bytes().chain([b'|']) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{token_key}/rbac/{hash:016x}")
}

impl Verdict {
    /// Anything unreadable counts as "nothing known": the check is advisory unless it found a
    /// denial, so an unreadable verdict must not block traffic.
    pub fn decode(bytes: &[u8]) -> Verdict {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The client-facing detail of a `rbac_denied` refusal, or `None` when nothing is denied.
    pub fn refusal_detail(&self) -> Option<String> {
        if self.denied.is_empty() {
            return None;
        }
        Some(format!(
            "the proxy's ServiceAccount may not impersonate {}; an administrator must grant it \
             (see the proxy's log)",
            self.denied.join(", ")
        ))
    }

    pub fn recheck_due(&self, now_ms: u64) -> bool {
        !self.denied.is_empty() && now_ms >= self.checked_at_ms + RECHECK_WHILE_DENIED_MS
    }

    /// Whether some worker should check now, with the token it has: never checked (for example
    /// after a configuration change), or denied and due for another look.
    pub fn needs_check(&self, now_ms: u64) -> bool {
        self.checked_at_ms == 0 || self.recheck_due(now_ms)
    }

    /// The verdict a worker writes (compare-and-swap) to take the next check on itself; the
    /// others then see it as not due. The denial, if any, stays in force meanwhile.
    pub fn claimed(&self, now_ms: u64, generation: u64) -> Verdict {
        Verdict {
            checked_at_ms: now_ms.max(1),
            claimed_generation: self.claimed_generation.max(generation),
            ..self.clone()
        }
    }

    /// The claim of the worker that just stored token `generation`, or `None` when another
    /// worker has already taken that generation (or a newer one) on.
    pub fn claim_new_generation(&self, now_ms: u64, generation: u64) -> Option<Verdict> {
        (self.claimed_generation < generation).then(|| self.claimed(now_ms, generation))
    }
}

impl Check {
    pub fn new(generation: u64, permissions: Vec<Permission>) -> Check {
        let outcomes = vec![None; permissions.len()];
        Check {
            generation,
            permissions,
            outcomes,
        }
    }

    /// Records the answer for permission `index`; ignores an index it does not know or a second
    /// answer for the same permission.
    pub fn record(&mut self, index: usize, outcome: Outcome) -> bool {
        match self.outcomes.get_mut(index) {
            Some(slot @ None) => {
                *slot = Some(outcome);
                true
            }
            _ => false,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.outcomes.iter().all(Option::is_some)
    }

    /// Permissions with their outcome so far.
    pub fn outcomes(&self) -> impl Iterator<Item = (&Permission, &Outcome)> {
        self.permissions
            .iter()
            .zip(&self.outcomes)
            .filter_map(|(permission, outcome)| outcome.as_ref().map(|o| (permission, o)))
    }

    pub fn verdict(&self, now_ms: u64) -> Verdict {
        Verdict {
            generation: self.generation,
            checked_at_ms: now_ms,
            claimed_generation: self.generation,
            denied: self
                .outcomes()
                .filter(|(_, outcome)| matches!(outcome, Outcome::Denied { .. }))
                .map(|(permission, _)| permission.rbac_resource())
                .collect(),
        }
    }
}

/// The log line for one permission that is not allowed. `subject` names the token's identity
/// (`system:serviceaccount:<ns>:<sa>`); never the token itself.
pub fn report_line(
    permission: &Permission,
    outcome: &Outcome,
    subject: &str,
    enforce: bool,
) -> Option<String> {
    match outcome {
        Outcome::Allowed => None,
        Outcome::Denied { reason } => Some(format!(
            "RBAC self-check: {subject} may not impersonate {resource}; Kiali answers 403 to every \
             request that sends it. Add this rule to the ClusterRole bound to {subject} \
             (deploy/02-impersonator.yaml): {rule}{because}; {consequence}",
            resource = permission.rbac_resource(),
            rule = permission.granting_rule(),
            because = if reason.is_empty() {
                String::new()
            } else {
                format!(" (authorizer: {})", quote_for_log(reason.as_bytes()))
            },
            consequence = if enforce {
                "rbac_check is \"enforce\": requests get 503 rbac_denied until it is granted"
            } else {
                "rbac_check is \"warn\": requests continue"
            },
        )),
        Outcome::Error { detail } => Some(format!(
            "RBAC self-check: could not ask whether {subject} may impersonate {}: {detail}; \
             requests are not refused for this (check the token cluster and that the API server \
             serves authorization.k8s.io/v1)",
            permission.rbac_resource()
        )),
    }
}

#[cfg(test)]
mod tests;
