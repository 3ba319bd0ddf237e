//! A test identity provider: an Ed25519 key, its JWKS, signed JWTs, and the Envoy `jwt_authn`
//! filter that verifies them with `local_jwks` and stores the payload in dynamic metadata, as
//! Istio's `RequestAuthentication` does. Nothing here is mocked: Envoy verifies every token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use serde_json::{json, Value};

use crate::envoy::Filter;

/// The `jwt_authn` provider name in the generated filter.
pub const PROVIDER: &str = "test-idp";

pub struct TestIssuer {
    pub issuer: String,
    pub audience: String,
    pub kid: String,
    key: SigningKey,
}

/// How the generated `jwt_authn` filter treats requests.
#[derive(Clone, Debug)]
pub struct JwtAuthnOptions {
    /// Istio's `RequestAuthentication` semantics: a request without a token passes (only a bad
    /// token is refused). With `false`, a token is required.
    pub allow_missing: bool,
    /// `payload_in_metadata` (Istio always uses `payload`).
    pub payload_key: String,
    /// Also accept the token from oauth2-proxy's `X-Forwarded-Access-Token` header.
    pub from_forwarded_access_token: bool,
}

impl Default for JwtAuthnOptions {
    fn default() -> Self {
        JwtAuthnOptions {
            allow_missing: true,
            payload_key: "payload".to_string(),
            from_forwarded_access_token: false,
        }
    }
}

impl TestIssuer {
    /// A fresh key from the OS's random source.
    pub fn generate(issuer: &str, audience: &str) -> TestIssuer {
        let mut seed = [0u8; 32];
        if let Err(error) = std::fs::File::open("/dev/urandom")
            .and_then(|mut random| std::io::Read::read_exact(&mut random, &mut seed))
        {
            panic!("cannot read /dev/urandom for a test key: {error}");
        }
        TestIssuer::from_seed(issuer, audience, seed)
    }

    /// The demo's issuer. Its private key is in this source file: for a local demo only.
    pub fn demo() -> TestIssuer {
        TestIssuer::from_seed("https://demo-idp.local", "kiali", *b"kiali-header-auth demo key, 32b!")
    }

    pub fn from_seed(issuer: &str, audience: &str, seed: [u8; 32]) -> TestIssuer {
        let key = SigningKey::from_bytes(&seed);
        let kid = URL_SAFE_NO_PAD.encode(&key.verifying_key().to_bytes()[..8]);
        TestIssuer {
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            kid,
            key,
        }
    }

    /// The public key as a JWKS (RFC 8037 `OKP`/`Ed25519`).
    pub fn jwks(&self) -> String {
        json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(self.key.verifying_key().to_bytes()),
        }]})
        .to_string()
    }

    /// `iss`, `aud`, `iat` and `exp` (ten minutes from now), with `claims` merged over them.
    pub fn claims(&self, claims: Value) -> Value {
        let now = unix_now();
        let mut all = json!({"iss": self.issuer, "aud": self.audience, "iat": now, "exp": now + 600});
        if let (Some(all), Value::Object(extra)) = (all.as_object_mut(), claims) {
            all.extend(extra);
        }
        all
    }

    /// A compact JWS of exactly these claims, signed with EdDSA.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.key.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    /// `sign(claims(extra))`: a valid token for this issuer and audience.
    pub fn token(&self, extra: Value) -> String {
        self.sign(&self.claims(extra))
    }

    /// A demo token, valid for a day so a pasted curl keeps working.
    pub fn demo_token(&self, claims: Value) -> String {
        let mut all = self.claims(claims);
        all["exp"] = json!(unix_now() + 24 * 3600);
        self.sign(&all)
    }

    /// Envoy's `jwt_authn` with this issuer's key inline, for [`crate::EnvoyConfig::add_filter`]
    /// before the wasm filter.
    pub fn jwt_authn_filter(&self, options: &JwtAuthnOptions) -> Filter {
        let mut provider = json!({
            "issuer": self.issuer,
            "audiences": [self.audience],
            "local_jwks": { "inline_string": self.jwks() },
            "payload_in_metadata": options.payload_key,
        });
        if options.from_forwarded_access_token {
            provider["from_headers"] = json!([
                { "name": "Authorization", "value_prefix": "Bearer " },
                { "name": "X-Forwarded-Access-Token" },
            ]);
        }
        let requires = if options.allow_missing {
            json!({ "requires_any": { "requirements": [{ "provider_name": PROVIDER }, { "allow_missing": {} }] } })
        } else {
            json!({ "provider_name": PROVIDER })
        };
        Filter::Raw(json!({
            "name": "envoy.filters.http.jwt_authn",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                "providers": { PROVIDER: provider },
                "rules": [{ "match": { "prefix": "/" }, "requires": requires }],
            },
        }))
    }
}

pub fn unix_now() -> u64 {
    crate::time::unix_seconds(std::time::SystemTime::now())
}

/// The claims of the demo's token: the same user and groups as the header-based demo.
pub fn demo_claims() -> Value {
    json!({
        "sub": "demo-user-0001",
        "email": "alice@example.com",
        "groups": ["dev", "ops", "team, with comma"],
    })
}
