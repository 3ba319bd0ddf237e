//! The HTTP callout that asks the token service for a token.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::config::{TokenSourceConfig, TokenSourceKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCallout {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Secrets read from the VM environment at start. Never logged.
#[derive(Clone, Default)]
pub struct Credentials {
    /// Bearer for the TokenRequest call (`credential_env`).
    pub bearer: Option<String>,
    /// OAuth2 client secret (`client_secret_env`).
    pub client_secret: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("bearer", &self.bearer.as_ref().map(|_| "<redacted>"))
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

pub fn build(source: &TokenSourceConfig, credentials: &Credentials) -> TokenCallout {
    let mut headers = vec![
        (":method".to_string(), "POST".to_string()),
        (":authority".to_string(), source.authority.clone()),
        ("accept".to_string(), "application/json".to_string()),
        ("user-agent".to_string(), concat!("kiali-header-auth/", env!("CARGO_PKG_VERSION")).to_string()),
    ];
    let body = match &source.kind {
        TokenSourceKind::KubernetesTokenRequest {
            namespace,
            service_account,
            audiences,
            expiration_seconds,
            ..
        } => {
            headers.push((
                ":path".to_string(),
                format!("/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token"),
            ));
            headers.push(("content-type".to_string(), "application/json".to_string()));
            if let Some(bearer) = &credentials.bearer {
                headers.push(("authorization".to_string(), format!("Bearer {bearer}")));
            }
            serde_json::to_vec(&TokenRequest {
                api_version: "authentication.k8s.io/v1",
                kind: "TokenRequest",
                spec: TokenRequestSpec {
                    audiences,
                    expiration_seconds: *expiration_seconds,
                },
            })
            .unwrap_or_default()
        }
        TokenSourceKind::OAuth2ClientCredentials {
            token_path,
            client_id,
            scope,
            audience,
            ..
        } => {
            headers.push((":path".to_string(), token_path.clone()));
            headers.push((
                "content-type".to_string(),
                "application/x-www-form-urlencoded".to_string(),
            ));
            // RFC 6749 section 2.3.1: client id and secret are form-encoded before Basic auth.
            let secret = credentials.client_secret.as_deref().unwrap_or("");
            let basic = STANDARD.encode(format!(
                "{}:{}",
                form_encode(client_id),
                form_encode(secret)
            ));
            headers.push(("authorization".to_string(), format!("Basic {basic}")));
            let mut form = String::from("grant_type=client_credentials");
            if let Some(scope) = scope {
                form.push_str("&scope=");
                form.push_str(&form_encode(scope));
            }
            if let Some(audience) = audience {
                form.push_str("&audience=");
                form.push_str(&form_encode(audience));
            }
            form.into_bytes()
        }
    };
    headers.push(("content-length".to_string(), body.len().to_string()));
    TokenCallout {
        cluster: source.cluster.clone(),
        headers,
        body,
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenRequest<'a> {
    api_version: &'static str,
    kind: &'static str,
    spec: TokenRequestSpec<'a>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenRequestSpec<'a> {
    audiences: &'a [String],
    expiration_seconds: u64,
}

/// application/x-www-form-urlencoded encoding of one value.
pub fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(byte))
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push_str(&format!("{byte:02X}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FilterConfig;

    fn source(json: &str) -> TokenSourceConfig {
        let config = FilterConfig::from_json(
            format!(r#"{{"identity":{{"preset":"oauth2-proxy"}},"token_source":{json}}}"#).as_bytes(),
        )
        .unwrap();
        config.token_source.unwrap()
    }

    fn header<'a>(callout: &'a TokenCallout, name: &str) -> Option<&'a str> {
        callout
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn kubernetes_token_request_shape() {
        let source = source(
            r#"{"type":"kubernetes_token_request","cluster":"k8s","namespace":"kiali-auth",
                "service_account":"kiali-impersonator","audiences":["https://kubernetes.default.svc"],
                "expiration_seconds":900,"credential_env":"BOOT"}"#,
        );
        let callout = build(
            &source,
            &Credentials {
                bearer: Some("boot-token".into()),
                client_secret: None,
            },
        );
        assert_eq!(callout.cluster, "k8s");
        assert_eq!(header(&callout, ":method"), Some("POST"));
        assert_eq!(
            header(&callout, ":path"),
            Some("/api/v1/namespaces/kiali-auth/serviceaccounts/kiali-impersonator/token")
        );
        assert_eq!(header(&callout, ":authority"), Some("kubernetes.default.svc"));
        assert_eq!(header(&callout, "authorization"), Some("Bearer boot-token"));
        let body: serde_json::Value = serde_json::from_slice(&callout.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest",
                "spec":{"audiences":["https://kubernetes.default.svc"],"expirationSeconds":900}})
        );
        assert_eq!(
            header(&callout, "content-length"),
            Some(callout.body.len().to_string().as_str())
        );
    }

    #[test]
    fn kubernetes_without_credential_sends_no_authorization() {
        let source = source(
            r#"{"type":"kubernetes_token_request","cluster":"k8s","namespace":"a","service_account":"b"}"#,
        );
        let callout = build(&source, &Credentials::default());
        assert_eq!(header(&callout, "authorization"), None);
    }

    #[test]
    fn oauth2_client_credentials_shape() {
        let source = source(
            r#"{"type":"oauth2_client_credentials","cluster":"idp","authority":"idp.example",
                "token_path":"/oauth2/token","client_id":"kiali proxy","client_secret_env":"SECRET",
                "scope":"k8s:impersonate openid","audience":"kubernetes"}"#,
        );
        let callout = build(
            &source,
            &Credentials {
                bearer: None,
                client_secret: Some("s3cr:t".into()),
            },
        );
        assert_eq!(header(&callout, ":path"), Some("/oauth2/token"));
        assert_eq!(
            header(&callout, "content-type"),
            Some("application/x-www-form-urlencoded")
        );
        let expected = STANDARD.encode("kiali+proxy:s3cr%3At");
        assert_eq!(
            header(&callout, "authorization"),
            Some(format!("Basic {expected}").as_str())
        );
        assert_eq!(
            String::from_utf8(callout.body).unwrap(),
            "grant_type=client_credentials&scope=k8s%3Aimpersonate+openid&audience=kubernetes"
        );
    }
}
