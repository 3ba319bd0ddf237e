//! Which `Impersonate-Extra-<key>` keys reach the API server as the key the filter meant.
//!
//! The chain is filter -> Kiali -> client-go -> API server:
//! - Kiali's header strategy (`handlers/authentication/header_auth_controller.go`,
//!   `getTokenStringFromHeader`) takes each `Impersonate-Extra-<suffix>` header with the suffix
//!   as Go canonicalised it and hands it to client-go as `ImpersonateUserExtra`.
//! - client-go (`transport/round_trippers.go`, `headerKeyEscape`) percent-encodes every byte of
//!   the key that is not an HTTP token byte, **and `%` itself**.
//! - The API server (`k8s.io/apiserver` `pkg/endpoints/filters/impersonation.go`) lowercases
//!   the suffix and percent-decodes it once (`unescapeExtraKey`).
//!
//! So a key the filter percent-encodes (`acme.com%2Fteam` for `acme.com/team`) is encoded again
//! by client-go and reaches the API server as `acme.com%2fteam`: RBAC on
//! `userextras/acme.com/team` never matches. A key made only of token bytes other than `%`
//! passes every step unchanged but for letter case, which the API server lowercases; so the
//! filter accepts exactly those keys, lowercased, and sends them as they are.

use crate::names::is_token_byte;

/// The key as the API server will see it (lowercase), or why it cannot get there intact.
pub fn api_server_key(key: &str) -> Result<String, String> {
    if key.is_empty() || !key.bytes().all(|byte| is_token_byte(byte) && byte != b'%') {
        return Err(format!(
            "the extra key {key:?} cannot reach the API server intact through Kiali: use only \
             letters, digits and !#$&'*+-.^_`|~ (no `/`, `%`, space or other characters; for \
             example `acme.com-team` rather than `acme.com/team`). Kiali hands the key to \
             client-go, which percent-encodes such characters (and `%`) again, so the API server \
             would see a different key than the one RBAC grants"
        ));
    }
    Ok(key.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_keys_pass_lowercased_and_others_are_refused() {
        for (key, expected) in [
            ("email", Some("email")),
            ("Email", Some("email")),
            ("client-address", Some("client-address")),
            ("acme.com-team", Some("acme.com-team")),
            ("tilde~pipe|", Some("tilde~pipe|")),
            ("acme.com/team", None),
            ("acme.com%2Fteam", None),
            ("100%", None),
            ("a b", None),
            ("ünï", None),
            ("key:colon", None),
            ("", None),
        ] {
            assert_eq!(api_server_key(key).ok().as_deref(), expected, "key {key:?}");
        }
    }
}
