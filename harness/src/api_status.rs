//! Kubernetes `Status` failure objects, as every API server stand-in answers them. A leaf module:
//! it imports nothing from the crate, so the stand-ins (`token_service`, `ssar`, `apiserver`)
//! share it without importing each other.
//!
//! The constructors follow `k8s.io/apimachinery/pkg/api/errors/errors.go` (`NewNotFound`,
//! `NewInvalid`, `NewBadRequest`, ...): `kind: Status`, `status: Failure`, the HTTP code and its
//! `StatusReason`, a message, and `details` where the Go constructor fills them.

use serde_json::{json, Value};

/// A `Status` failure object with no `details` (`NewBadRequest`, `NewUnauthorized`, ...).
pub fn k8s_status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code
    })
}

/// `schema.GroupResource.String()` / `GroupKind.String()`: `name` or `name.group`.
fn qualified(name: &str, group: &str) -> String {
    if group.is_empty() {
        name.to_string()
    } else {
        format!("{name}.{group}")
    }
}

/// `apierrors.NewNotFound(GroupResource{group, resource}, name)`: 404 `NotFound`,
/// `<resource>[.<group>] "<name>" not found`, details `{name, group, kind: <resource>}`.
pub fn not_found(group: &str, resource: &str, name: &str) -> Value {
    let message = format!("{} {name:?} not found", qualified(resource, group));
    let mut status = k8s_status(404, "NotFound", &message);
    status["details"] = json!({ "name": name, "group": group, "kind": resource });
    status
}

/// One `field.Error` of type `field.ErrorTypeInvalid` (`k8s.io/apimachinery/pkg/util/validation/field`):
/// the field path, the value as Go prints it, and the detail.
pub struct InvalidField<'a> {
    pub field: &'a str,
    pub value: String,
    pub detail: &'a str,
}

impl InvalidField<'_> {
    /// `field.Error.ErrorBody()` for `ErrorTypeInvalid`: `Invalid value: <value>: <detail>`.
    fn body(&self) -> String {
        format!("Invalid value: {}: {}", self.value, self.detail)
    }
}

/// `apierrors.NewInvalid(GroupKind{group, kind}, name, errs)`: 422 `Invalid`,
/// `<kind>.<group> "<name>" is invalid: <field>: <body>[, ...]`, details with one
/// `FieldValueInvalid` cause per error.
pub fn invalid(group: &str, kind: &str, name: &str, errors: &[InvalidField<'_>]) -> Value {
    let each: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.field, e.body())).collect();
    // `errs.ToAggregate()` prints one error as itself and several as `[a, b]`.
    let aggregate = match each.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    let message = format!("{} {name:?} is invalid: {aggregate}", qualified(kind, group));
    let causes: Vec<Value> = errors
        .iter()
        .map(|e| json!({ "reason": "FieldValueInvalid", "message": e.body(), "field": e.field }))
        .collect();
    let mut status = k8s_status(422, "Invalid", &message);
    status["details"] = json!({ "name": name, "group": group, "kind": kind, "causes": causes });
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_like_the_api_servers() {
        let status = not_found("", "serviceaccounts", "nobody");
        assert_eq!((status["code"].as_u64(), status["reason"].as_str()), (Some(404), Some("NotFound")));
        assert_eq!(status["message"], r#"serviceaccounts "nobody" not found"#);
        assert_eq!(status["details"]["kind"], "serviceaccounts");

        let field = InvalidField { field: "spec.expirationSeconds", value: "60".into(), detail: "may not specify a duration less than 10 minutes" };
        let status = invalid("authentication.k8s.io", "TokenRequest", "", &[field]);
        assert_eq!((status["code"].as_u64(), status["reason"].as_str()), (Some(422), Some("Invalid")));
        assert_eq!(
            status["message"],
            r#"TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"#
        );
        assert_eq!(status["details"]["causes"][0]["field"], "spec.expirationSeconds");
    }
}
