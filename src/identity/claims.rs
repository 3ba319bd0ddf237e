//! Claim extraction: from the dynamic metadata bytes Envoy returns to the user, groups, uid and
//! extra values of a verified JWT, or a refusal. Only the types are checked here; the values go
//! through the same checks as header values afterwards (`identity::map_claims`).

use super::metadata::{self, Object, Value};
use crate::config::{ClaimPath, EmailVerified, JwtSource};
use crate::refusal::{Reason, Refusal};

/// The raw claim values, borrowed from the metadata bytes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Claims<'m> {
    pub user: &'m str,
    pub groups: Vec<&'m str>,
    pub uid: Option<&'m str>,
    /// (index into `JwtSource::extra_claims`, values), for the extra claims present.
    pub extras: Vec<(usize, Vec<&'m str>)>,
}

/// `metadata` is what `proxy_get_property(["metadata"])` returned (`None` if it failed).
///
/// - no payload (no token: Istio's `RequestAuthentication` lets such requests through), or no
///   user claim: 401 `identity_missing`;
/// - a claim of the wrong type, or metadata that does not decode: 400 `identity_malformed`.
///
/// A claim that is JSON `null` counts as absent.
pub fn extract<'m>(jwt: &JwtSource, metadata: Option<&'m [u8]>) -> Result<Claims<'m>, Refusal> {
    let payload = metadata::payload(metadata.unwrap_or_default(), &jwt.metadata_namespace, &jwt.payload_key)
        .map_err(|error| {
            Refusal::new(Reason::IdentityMalformed, format!("the verified JWT payload could not be read: {error}"))
        })?;
    let payload = match payload {
        None | Some(Value::Null) => {
            return Err(Refusal::new(
                Reason::IdentityMissing,
                format!(
                    "no verified JWT: the request carries no token (or jwt_authn stored no payload in \
                     metadata {:?} under {:?})",
                    jwt.metadata_namespace, jwt.payload_key
                ),
            ))
        }
        Some(Value::Object(object)) => object,
        Some(other) => {
            return Err(Refusal::new(
                Reason::IdentityMalformed,
                format!("the verified JWT payload is {}, not an object", other.type_name()),
            ))
        }
    };

    let user = match lookup(payload, &jwt.user_claim)? {
        None => {
            return Err(Refusal::new(
                Reason::IdentityMissing,
                format!("no user identity: the verified JWT has no `{}` claim", jwt.user_claim.display),
            ))
        }
        Some(value) => single_string(&jwt.user_claim, value)?,
    };
    if let Some(rule) = jwt.email_verified {
        check_email_verified(payload, rule)?;
    }
    let groups = match &jwt.groups_claim {
        Some(claim) => lookup(payload, claim)?
            .map(|value| string_or_strings(claim, value))
            .transpose()?
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let uid = match &jwt.uid_claim {
        Some(claim) => lookup(payload, claim)?
            .map(|value| single_string(claim, value))
            .transpose()?,
        None => None,
    };
    let mut extras = Vec::new();
    for (index, extra) in jwt.extra_claims.iter().enumerate() {
        if let Some(value) = lookup(payload, &extra.claim)? {
            extras.push((index, string_or_strings(&extra.claim, value)?));
        }
    }
    Ok(Claims {
        user,
        groups,
        uid,
        extras,
    })
}

/// The rule of the API server's OIDC authenticator (`k8s.io/apiserver`
/// `plugin/pkg/authenticator/token/oidc/oidc.go`): with `email` as the username, an
/// `email_verified` claim that is present must be the boolean `true` (a string `"true"` fails to
/// unmarshal there, so it fails here too). `Required` also refuses a token without the claim.
fn check_email_verified(payload: Object<'_>, rule: EmailVerified) -> Result<(), Refusal> {
    let unverified = |detail: &str| Err(Refusal::new(Reason::EmailUnverified, detail.to_string()));
    match payload.get("email_verified") {
        Ok(Some(Value::Bool(true))) => Ok(()),
        Ok(Some(Value::Bool(false))) => unverified(
            "the token's email address is not verified (email_verified is false); the Kubernetes \
             API server refuses such an email as a username too",
        ),
        Ok(None | Some(Value::Null)) => match rule {
            EmailVerified::IfPresent => Ok(()),
            EmailVerified::Required => unverified(
                "the token has no email_verified claim, and identity.jwt.email_verified is \"required\"",
            ),
        },
        Ok(Some(other)) => Err(Refusal::new(
            Reason::EmailUnverified,
            format!("the email_verified claim is {}, not a boolean", other.type_name()),
        )),
        Err(error) => Err(Refusal::new(
            Reason::IdentityMalformed,
            format!("the verified JWT payload could not be read: {error}"),
        )),
    }
}

/// Follows the claim path; `None` when a key on the way is absent or null.
fn lookup<'m>(payload: Object<'m>, claim: &ClaimPath) -> Result<Option<Value<'m>>, Refusal> {
    let mut current = Value::Object(payload);
    for (depth, key) in claim.keys.iter().enumerate() {
        let object = match current {
            Value::Object(object) => object,
            other => {
                return Err(Refusal::new(
                    Reason::IdentityMalformed,
                    format!(
                        "the `{}` claim cannot be read: `{}` is {}, not an object",
                        claim.display,
                        claim.keys[..depth].join("."),
                        other.type_name()
                    ),
                ))
            }
        };
        current = match object.get(key).map_err(|error| malformed_metadata(claim, error))? {
            None | Some(Value::Null) => return Ok(None),
            Some(value) => value,
        };
    }
    Ok(Some(current))
}

fn single_string<'m>(claim: &ClaimPath, value: Value<'m>) -> Result<&'m str, Refusal> {
    match value {
        Value::String(text) => Ok(text),
        other => Err(wrong_type(claim, "a string", other)),
    }
}

/// An array of strings (one value each), or one string (one value).
fn string_or_strings<'m>(claim: &ClaimPath, value: Value<'m>) -> Result<Vec<&'m str>, Refusal> {
    match value {
        Value::String(text) => Ok(vec![text]),
        Value::List(list) => list
            .items()
            .map(|item| match item.map_err(|error| malformed_metadata(claim, error))? {
                Value::String(text) => Ok(text),
                other => Err(wrong_type(claim, "an array of strings", other)),
            })
            .collect(),
        other => Err(wrong_type(claim, "a string or an array of strings", other)),
    }
}

fn wrong_type(claim: &ClaimPath, expected: &str, got: Value<'_>) -> Refusal {
    let got = match got {
        // Inside an array: say what the element is.
        Value::List(_) => "an array",
        other => other.type_name(),
    };
    Refusal::new(
        Reason::IdentityMalformed,
        format!("the `{}` claim must be {expected}, not {got}", claim.display),
    )
}

fn malformed_metadata(claim: &ClaimPath, error: metadata::DecodeError) -> Refusal {
    Refusal::new(
        Reason::IdentityMalformed,
        format!("the `{}` claim could not be read: {error}", claim.display),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FilterConfig;
    use serde_json::json;

    fn jwt(config: &str) -> JwtSource {
        let config = FilterConfig::from_json(config.as_bytes()).unwrap();
        config.identity.unwrap().jwt.unwrap()
    }

    fn keycloak() -> JwtSource {
        jwt(r#"{"identity":{"jwt":{"user_claim":"preferred_username",
            "groups_claim":["realm_access","roles"],"uid_claim":"sub",
            "extra_claims":{"email":"email","scopes":"scope","acme.com-team":"https://acme.com/team"}}}}"#)
    }

    fn metadata(payload: serde_json::Value) -> Vec<u8> {
        metadata::encode::metadata("envoy.filters.http.jwt_authn", "payload", &payload)
    }

    #[test]
    fn extracts_nested_paths_lists_and_keys_with_slashes() {
        let bytes = metadata(json!({
            "preferred_username": "alice", "sub": "1234",
            "realm_access": {"roles": ["dev", "a, b", "with space"]},
            "email": "alice@example.com", "scope": ["read", "write"],
            "https://acme.com/team": "blue", "unrelated": null
        }));
        let claims = extract(&keycloak(), Some(&bytes)).unwrap();
        assert_eq!(
            claims,
            Claims {
                user: "alice",
                groups: vec!["dev", "a, b", "with space"],
                uid: Some("1234"),
                // Sorted by key: acme.com-team, email, scopes.
                extras: vec![(0, vec!["blue"]), (1, vec!["alice@example.com"]), (2, vec!["read", "write"])],
            }
        );
    }

    #[test]
    fn a_single_string_group_is_one_group_and_absent_optional_claims_are_none() {
        let source = jwt(r#"{"identity":{"jwt":{"groups_claim":"groups","uid_claim":"uid"}}}"#);
        let bytes = metadata(json!({"sub": "bob", "groups": "ops,dev"}));
        let claims = extract(&source, Some(&bytes)).unwrap();
        assert_eq!(claims.user, "bob");
        assert_eq!(claims.groups, vec!["ops,dev"]);
        assert_eq!(claims.uid, None);
        let bytes = metadata(json!({"sub": "bob", "groups": null}));
        assert!(extract(&source, Some(&bytes)).unwrap().groups.is_empty());
    }

    #[test]
    fn no_payload_or_no_user_is_identity_missing() {
        let source = keycloak();
        for bytes in [
            None,
            Some(Vec::new()),
            Some(metadata::encode::metadata("other.namespace", "payload", &json!({"preferred_username": "x"}))),
            Some(metadata::encode::metadata("envoy.filters.http.jwt_authn", "verified", &json!({"preferred_username": "x"}))),
            Some(metadata(json!({"sub": "no username"}))),
            Some(metadata(json!({"preferred_username": null}))),
        ] {
            let refusal = extract(&source, bytes.as_deref()).unwrap_err();
            assert_eq!(refusal.reason, Reason::IdentityMissing, "{refusal:?}");
        }
    }

    #[test]
    fn wrong_types_are_malformed() {
        let source = keycloak();
        for payload in [
            json!({"preferred_username": 42}),
            json!({"preferred_username": ["alice"]}),
            json!({"preferred_username": {"name": "alice"}}),
            json!({"preferred_username": true}),
            json!({"preferred_username": "a", "realm_access": "dev"}),
            json!({"preferred_username": "a", "realm_access": {"roles": [1, 2]}}),
            json!({"preferred_username": "a", "realm_access": {"roles": ["ok", ["nested"]]}}),
            json!({"preferred_username": "a", "realm_access": {"roles": {"dev": true}}}),
            json!({"preferred_username": "a", "sub": 1234}),
            json!({"preferred_username": "a", "email": false}),
        ] {
            let bytes = metadata(payload.clone());
            let refusal = extract(&source, Some(&bytes)).unwrap_err();
            assert_eq!(refusal.reason, Reason::IdentityMalformed, "{payload}: {refusal:?}");
            assert!(!refusal.detail.contains("alice"), "no claim values in the detail");
        }
        let not_an_object = metadata::encode::metadata("envoy.filters.http.jwt_authn", "payload", &json!("x"));
        assert_eq!(extract(&source, Some(&not_an_object)).unwrap_err().reason, Reason::IdentityMalformed);
        assert_eq!(extract(&source, Some(&[0x0a, 0x09])).unwrap_err().reason, Reason::IdentityMalformed);
    }
}
