//! `TokenService`: stand-in for the Kubernetes API server's TokenRequest endpoint
//! (`POST /api/v1/namespaces/{ns}/serviceaccounts/{sa}/token`) and an OAuth2
//! client-credentials token endpoint (`POST /oauth2/token`).
//!
//! Processing order for a token route: record the request -> `fail_every_nth` ->
//! behaviour pre-phase (`Hang`, `CloseConnection`, `Status`, `Delay`) -> client
//! authentication (bearer / HTTP Basic) -> request validation -> issue (shaped by
//! `AsRequested`/`Issue`/`Delay`/`Garbage`/`NoExpiry`/`PastExpiry`). Endpoints are one `match`
//! in [`route`].
//!
//! The TokenRequest route answers as the API server does (rule by rule below, from
//! kubernetes/kubernetes):
//! - decoding the body: not JSON, or not an `authentication.k8s.io/v1` `TokenRequest`: 400
//!   `BadRequest` (the serializer's decoding error);
//! - defaulting, `pkg/apis/authentication/v1/defaults.go` (`SetDefaults_TokenRequestSpec`): no
//!   `spec.expirationSeconds` means 3600;
//! - `pkg/registry/core/serviceaccount/storage/token.go` (`TokenREST.Create`), in its order:
//!   `ValidateTokenRequest` (`pkg/apis/authentication/validation/validation.go`:
//!   `expirationSeconds` below `MinTokenAgeSec`, 600, or above 2^32 is 422 `Invalid`), then the
//!   ServiceAccount is read (one that does not exist: 404 `NotFound`, `serviceaccounts "<name>"
//!   not found`), then no `spec.audiences` means the API server's audiences (`--api-audiences`,
//!   by default the issuer), then the token: `status.expirationTimestamp` is now plus
//!   `expirationSeconds`, to the second (`pkg/serviceaccount/claims.go`, `jwt.NewNumericDate`).
//!   Not modelled: `--service-account-max-token-expiration` (unset by default) and bound objects.
//!
//! Test knob, the *lifetime override* (`Behavior::Issue { lifetime }`, `Behavior::Delay` with a
//! lifetime): tokens of a few seconds, which the real API never issues (its minimum is 10
//! minutes), so that tests see refreshes and expiry. Validation still applies to the request.

use crate::api_status::{self, k8s_status, InvalidField};
use crate::message::RawRequest;
use crate::server::{Reply, Server};
use crate::ssar::SelfSubjectAccessReviews;
use crate::time::{rfc3339, truncate_to_seconds, unix_seconds};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use std::collections::hash_map::RandomState;
use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher as _};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// The lifetime of a TokenRequest without `spec.expirationSeconds` (defaults.go), and of an
/// OAuth2 token.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// `MinTokenAgeSec` (validation.go): the shortest `expirationSeconds` the API server accepts.
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// The longest (validation.go: more than 2^32 seconds is invalid).
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;
/// The ServiceAccount that exists by default: the one deploy/ creates (kiali-auth/kiali-impersonator).
pub const DEFAULT_SERVICE_ACCOUNT: (&str, &str) = ("kiali-auth", "kiali-impersonator");
/// Longest time a `Hang` holds a request before closing the connection.
pub const MAX_HANG: Duration = Duration::from_secs(120);
/// The issuer written into JWT-shaped tokens.
pub const JWT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// How the service answers token requests; switchable at runtime.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Behavior {
    /// Issue a token as the API server does: for `spec.expirationSeconds` (3600 when omitted).
    /// OAuth2: for [`DEFAULT_LIFETIME`].
    #[default]
    AsRequested,
    /// Test knob, the lifetime override: issue a token for `lifetime` whatever was requested
    /// (the request is still validated). The real API never issues less than 10 minutes.
    Issue { lifetime: Duration },
    /// Answer with this status (a Kubernetes `Status` object on the TokenRequest route,
    /// `{"error":reason,"error_description":message}` on the OAuth2 route).
    Status { code: u16, reason: String, message: String },
    /// Read the request and never answer until the service stops (connection closed)
    /// or the behaviour is changed (then the new behaviour answers). At most [`MAX_HANG`].
    Hang,
    /// Success status (201 / 200) with body `{not json`.
    Garbage,
    /// Success without `status.expirationTimestamp` (OAuth2: without `expires_in`).
    /// The recorded `expires_at` is issued_at + the requested lifetime.
    NoExpiry,
    /// Expiry one hour in the past (OAuth2: `expires_in: 0`).
    PastExpiry,
    /// Close the connection without answering.
    CloseConnection,
    /// Answer normally after `delay`: as `AsRequested`, or as `Issue { lifetime }` when set.
    Delay { delay: Duration, lifetime: Option<Duration> },
}


/// Which endpoint issued a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    TokenRequest,
    OAuth2,
}

/// A token handed out by the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    pub issued_at: SystemTime,
    /// Exactly the expiry that was written in the response (second precision).
    pub expires_at: SystemTime,
    /// `system:serviceaccount:<ns>:<sa>` or the OAuth2 client id.
    pub subject: String,
    /// Requested audiences (`spec.audiences`, or OAuth2 `audience` parameters).
    pub audiences: Vec<String>,
    pub source: TokenSource,
}

impl IssuedToken {
    /// `issued_at` truncated to the second <= `at` < `expires_at`.
    pub fn is_valid_at(&self, at: SystemTime) -> bool {
        truncate_to_seconds(self.issued_at) <= at && at < self.expires_at
    }
}

struct State {
    behavior: Behavior,
    behavior_generation: u64,
    /// The bootstrap bearers the TokenRequest route accepts, each until its expiry (`None`: no
    /// expiry); `None`: any request is accepted (no check).
    bearers: Option<Vec<AcceptedBearer>>,
    oauth_client: Option<(String, String)>,
    jwt: bool,
    fail_every_nth: Option<u32>,
    nth_counter: u64,
    requests: Vec<RawRequest>,
    issued: Vec<IssuedToken>,
    token_counter: u64,
    reviews: SelfSubjectAccessReviews,
    /// (namespace, name) of every ServiceAccount that exists.
    service_accounts: BTreeSet<(String, String)>,
}

impl Default for State {
    fn default() -> Self {
        let (namespace, name) = DEFAULT_SERVICE_ACCOUNT;
        State {
            behavior: Behavior::default(),
            behavior_generation: 0,
            bearers: None,
            oauth_client: None,
            jwt: false,
            fail_every_nth: None,
            nth_counter: 0,
            requests: Vec::new(),
            issued: Vec::new(),
            token_counter: 0,
            reviews: SelfSubjectAccessReviews::default(),
            service_accounts: BTreeSet::from([(namespace.to_string(), name.to_string())]),
        }
    }
}

/// A bootstrap bearer the TokenRequest route accepts.
#[derive(Clone, Debug)]
struct AcceptedBearer {
    token: String,
    until: Option<SystemTime>,
}

impl State {
    /// Accepts `token` too, until `until` (`None`: for ever).
    fn accept(&mut self, token: &str, until: Option<SystemTime>) {
        let bearers = self.bearers.get_or_insert_with(Vec::new);
        bearers.retain(|b| b.token != token);
        bearers.push(AcceptedBearer { token: token.to_string(), until });
    }

    /// Whether the TokenRequest route accepts `presented` at `now`.
    fn accepts(&self, presented: Option<&str>, now: SystemTime) -> bool {
        self.bearers.as_ref().is_none_or(|bearers| {
            presented.is_some_and(|p| bearers.iter().any(|b| b.token == p && b.until.is_none_or(|until| now < until)))
        })
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct TokenService {
    server: Server,
    state: Arc<Mutex<State>>,
}

/// A random number for token names (not for secrets: the stand-ins' tokens guard nothing).
pub(crate) fn random_u64() -> u64 {
    // Every `RandomState` has its own random keys, so hashing nothing yields a new number.
    RandomState::new().build_hasher().finish()
}

impl TokenService {
    /// Starts on a free port of 127.0.0.1. Panics if it cannot bind.
    pub fn start() -> TokenService {
        Self::start_at(([127, 0, 0, 1], 0)).expect("start TokenService")
    }

    /// Starts on `addr`, such as `([127, 0, 0, 1], port)` (the docker-compose stand-ins bind 0.0.0.0).
    pub fn start_at(addr: impl Into<SocketAddr>) -> io::Result<TokenService> {
        let state: Arc<Mutex<State>> = Arc::default();
        let st = state.clone();
        let server = Server::start_at(addr, Arc::new(move |req: RawRequest| Box::pin(handle(st.clone(), req))))?;
        Ok(TokenService { server, state })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Every request received so far (any route), in order.
    pub fn requests(&self) -> Vec<RawRequest> {
        lock(&self.state).requests.clone()
    }

    pub fn count(&self) -> usize {
        lock(&self.state).requests.len()
    }

    pub fn set_behavior(&self, behavior: Behavior) {
        let mut s = lock(&self.state);
        s.behavior = behavior;
        s.behavior_generation += 1;
    }

    /// Requires `Authorization: Bearer <token>` on the TokenRequest route, this token only, with no
    /// expiry (every other accepted bearer is revoked); `None`: no check.
    pub fn set_required_bearer(&self, bearer: Option<&str>) {
        let mut s = lock(&self.state);
        s.bearers = None;
        if let Some(bearer) = bearer {
            s.accept(bearer, None);
        }
    }

    /// Also accepts the bootstrap bearer `token` on the TokenRequest route, until `until` (the
    /// expiry of a projected ServiceAccount token; the API server's authenticator refuses it
    /// from then on). Bearers accepted before stay accepted until their own expiry: a token the
    /// kubelet replaced in the pod's file is not revoked by that.
    pub fn accept_bearer(&self, token: &str, until: SystemTime) {
        lock(&self.state).accept(token, Some(until));
    }

    /// Whether the TokenRequest route accepts `Authorization: Bearer <token>` at `at`.
    pub fn accepts_bearer(&self, token: &str, at: SystemTime) -> bool {
        lock(&self.state).accepts(Some(token), at)
    }

    /// The bearer accepted last, if a bearer is required.
    pub fn required_bearer(&self) -> Option<String> {
        lock(&self.state).bearers.as_ref().and_then(|b| b.last()).map(|b| b.token.clone())
    }

    /// `accept_bearer` for another thread (the bootstrap token refresher).
    pub fn bearer_handle(&self) -> impl Fn(&str, SystemTime) + Send + 'static {
        let state = self.state.clone();
        move |token, until| lock(&state).accept(token, Some(until))
    }

    /// Requires these client credentials on the OAuth2 route (HTTP Basic or
    /// `client_id`/`client_secret` form fields). Without it any client is accepted.
    pub fn set_oauth_client(&self, id: &str, secret: &str) {
        lock(&self.state).oauth_client = Some((id.to_string(), secret.to_string()));
    }

    /// Shape issued tokens as (unsigned-looking) JWTs: `header.payload.signature`.
    pub fn set_jwt_tokens(&self, jwt: bool) {
        lock(&self.state).jwt = jwt;
    }

    /// Every n-th token request from now on gets a 500 (`None`/`Some(0)`: off).
    pub fn set_fail_every_nth(&self, n: Option<u32>) {
        let mut s = lock(&self.state);
        s.fail_every_nth = n.filter(|n| *n > 0);
        s.nth_counter = 0;
    }

    /// Every token issued so far, in order.
    pub fn issued(&self) -> Vec<IssuedToken> {
        lock(&self.state).issued.clone()
    }

    /// The issued-token record for a token, if this service issued it.
    pub fn find_issued(&self, token: &str) -> Option<IssuedToken> {
        lock(&self.state).issued.iter().find(|t| t.token == token).cloned()
    }

    /// Whether `token` was issued by this service and is valid at `at`
    /// (`issued_at` truncated to the second <= `at` < `expires_at`).
    pub fn is_valid_at(&self, token: &str, at: SystemTime) -> bool {
        self.find_issued(token).is_some_and(|t| t.is_valid_at(at))
    }

    pub fn is_valid_now(&self, token: &str) -> bool {
        self.is_valid_at(token, SystemTime::now())
    }

    /// Makes the ServiceAccount `namespace/name` exist (tokens may be requested for it).
    pub fn add_service_account(&self, namespace: &str, name: &str) {
        lock(&self.state).service_accounts.insert((namespace.to_string(), name.to_string()));
    }

    /// Deletes the ServiceAccount `namespace/name`: TokenRequests for it get 404 from now on.
    pub fn remove_service_account(&self, namespace: &str, name: &str) {
        lock(&self.state).service_accounts.remove(&(namespace.to_string(), name.to_string()));
    }

    /// The SelfSubjectAccessReview stand-in: its rule table, error mode and recorded reviews.
    pub fn reviews(&self) -> SelfSubjectAccessReviews {
        lock(&self.state).reviews.clone()
    }
}

/// The endpoints the service answers on (all `POST`).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Endpoint {
    TokenRequest { namespace: String, service_account: String },
    OAuth2,
}

enum Route {
    Endpoint(Endpoint),
    /// A known endpoint asked with another method than `POST`.
    MethodNotAllowed(Endpoint),
    NotFound,
}

/// Which endpoint a request is for. A new endpoint is one line here and one in [`answer`].
fn route(req: &RawRequest) -> Route {
    let segments: Vec<&str> = req.path_only().split('/').collect();
    let endpoint = match segments.as_slice() {
        ["", "api", "v1", "namespaces", ns, "serviceaccounts", sa, "token"] if !ns.is_empty() && !sa.is_empty() => {
            Endpoint::TokenRequest { namespace: ns.to_string(), service_account: sa.to_string() }
        }
        ["", "oauth2", "token"] => Endpoint::OAuth2,
        _ => return Route::NotFound,
    };
    match req.method.as_str() {
        "POST" => Route::Endpoint(endpoint),
        _ => Route::MethodNotAllowed(endpoint),
    }
}

/// An error in the endpoint's own shape: a Kubernetes `Status` object, or an OAuth2 error.
fn error_reply(endpoint: &Endpoint, code: u16, k8s_reason: &str, oauth_error: &str, message: &str) -> Reply {
    match endpoint {
        Endpoint::OAuth2 => Reply::json(code, &json!({"error": oauth_error, "error_description": message})),
        Endpoint::TokenRequest { .. } => Reply::json(code, &k8s_status(code, k8s_reason, message)),
    }
}

async fn handle(state: Arc<Mutex<State>>, req: RawRequest) -> Reply {
    // Reviews are answered apart: not recorded in `requests`, no injected failures.
    if req.path_only() == crate::ssar::REVIEW_PATH {
        let bearer = authorization(&req, "bearer");
        let (reviews, subject) = {
            let s = lock(&state);
            // The ServiceAccount token authenticator: a token this service issued from the
            // TokenRequest route, not expired, authenticates as its subject.
            let now = SystemTime::now();
            let subject = bearer.as_deref().and_then(|b| {
                s.issued
                    .iter()
                    .find(|t| t.token == b && t.source == TokenSource::TokenRequest && t.is_valid_at(now))
                    .map(|t| t.subject.clone())
            });
            (s.reviews.clone(), subject)
        };
        return reviews.answer(&req, bearer, subject);
    }
    let route = route(&req);
    let fail_now = {
        let mut s = lock(&state);
        s.requests.push(req.clone());
        if matches!(route, Route::NotFound) {
            false
        } else {
            s.nth_counter += 1;
            s.fail_every_nth.is_some_and(|n| s.nth_counter.is_multiple_of(u64::from(n)))
        }
    };
    let endpoint = match route {
        Route::NotFound => {
            let message = format!("the server could not find the requested resource ({})", req.path_only());
            return Reply::json(404, &k8s_status(404, "NotFound", &message));
        }
        Route::MethodNotAllowed(endpoint) => {
            let message = format!("the server does not allow this method on the requested resource ({})", req.method);
            return error_reply(&endpoint, 405, "MethodNotAllowed", "invalid_request", &message);
        }
        Route::Endpoint(endpoint) if fail_now => {
            let message = "Internal error occurred: injected failure (fail_every_nth)";
            return error_reply(&endpoint, 500, "InternalError", "server_error", message);
        }
        Route::Endpoint(endpoint) => endpoint,
    };
    match behavior_pre_phase(&state, &endpoint).await {
        Ok(behavior) => answer(&state, &req, &behavior, endpoint),
        Err(reply) => reply,
    }
}

fn answer(state: &Mutex<State>, req: &RawRequest, behavior: &Behavior, endpoint: Endpoint) -> Reply {
    match endpoint {
        Endpoint::TokenRequest { namespace, service_account } => token_request(state, req, behavior, &namespace, &service_account),
        Endpoint::OAuth2 => oauth2(state, req, behavior),
    }
}

/// Applies the behaviours that decide before the request is looked at: hang, close, fail,
/// delay. `Ok` carries the behaviour that shapes the answer.
async fn behavior_pre_phase(state: &Mutex<State>, endpoint: &Endpoint) -> Result<Behavior, Reply> {
    let started = Instant::now();
    loop {
        let (behavior, generation) = {
            let s = lock(state);
            (s.behavior.clone(), s.behavior_generation)
        };
        match behavior {
            Behavior::Hang => {
                // Until the behaviour changes (then the new one answers) or MAX_HANG passes.
                // Stopping the service drops this future with the connection.
                while lock(state).behavior_generation == generation {
                    if started.elapsed() >= MAX_HANG {
                        return Err(Reply::Close);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            Behavior::CloseConnection => return Err(Reply::Close),
            Behavior::Status { code, reason, message } => return Err(error_reply(endpoint, code, &reason, &reason, &message)),
            Behavior::Delay { delay, .. } => {
                tokio::time::sleep(delay).await;
                return Ok(behavior);
            }
            other => return Ok(other),
        }
    }
}

/// The expiry written in a success-shaped answer: now + the lifetime, to the second
/// (`jwt.NewNumericDate`, claims.go).
fn expiry_for(behavior: &Behavior, requested: Duration, now: SystemTime) -> SystemTime {
    match behavior {
        Behavior::PastExpiry => truncate_to_seconds(now - Duration::from_secs(3600)),
        _ => truncate_to_seconds(now + lifetime_of(behavior, requested)),
    }
}

/// The lifetime override when the behaviour sets one, else what was requested.
fn lifetime_of(behavior: &Behavior, requested: Duration) -> Duration {
    match behavior {
        Behavior::Issue { lifetime } | Behavior::Delay { lifetime: Some(lifetime), .. } => *lifetime,
        _ => requested,
    }
}

/// Mints a token and records it in `issued`, so tests can check what the upstream received.
fn issue_token(
    s: &mut State, subject: String, audiences: Vec<String>, source: TokenSource, now: SystemTime, expires: SystemTime,
) -> String {
    s.token_counter += 1;
    let id = format!("kha-{}-{:016x}", s.token_counter, random_u64());
    let token = if s.jwt { jwt_shaped(&id, &subject, &audiences, now, expires) } else { id };
    let issued = IssuedToken { token: token.clone(), issued_at: now, expires_at: expires, subject, audiences, source };
    s.issued.push(issued);
    token
}

/// `header.payload.signature` with the claims a Kubernetes ServiceAccount token carries; the
/// signature is random bytes (nobody verifies it).
fn jwt_shaped(id: &str, subject: &str, audiences: &[String], now: SystemTime, expires: SystemTime) -> String {
    let header = json!({"alg": "RS256", "kid": "kha-test", "typ": "JWT"});
    let payload = json!({
        "iss": JWT_ISSUER,
        "sub": subject,
        "aud": audiences,
        "iat": unix_seconds(now),
        "nbf": unix_seconds(now),
        "exp": unix_seconds(expires),
        "jti": id,
    });
    let signature: Vec<u8> = (0..4).flat_map(|_| random_u64().to_le_bytes()).collect();
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// The credentials after `<scheme> ` in `Authorization`, if the scheme matches.
fn authorization(req: &RawRequest, scheme: &str) -> Option<String> {
    let value = req.header_str("authorization")?;
    let (given, rest) = value.trim().split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then(|| rest.trim().to_string())
}

/// A TokenRequest's `spec` after decoding and defaulting.
struct TokenRequestSpec {
    /// The spec as received, with the defaulted `expirationSeconds` and `audiences` written in.
    spec: Value,
    audiences: Vec<String>,
    expiration_seconds: i64,
}

/// Decodes and defaults the body (a 400 `BadRequest` when it is no TokenRequest), then
/// `ValidateTokenRequest` (a 422 `Invalid`).
fn validate_token_request(req: &RawRequest) -> Result<TokenRequestSpec, Value> {
    let bad = |message: String| k8s_status(400, "BadRequest", &message);
    let v: Value = serde_json::from_slice(&req.body).map_err(|e| bad(format!("the body of the request was in an unknown format: {e}")))?;
    if v.get("apiVersion").and_then(Value::as_str) != Some("authentication.k8s.io/v1") {
        return Err(bad("apiVersion must be authentication.k8s.io/v1".into()));
    }
    if v.get("kind").and_then(Value::as_str) != Some("TokenRequest") {
        return Err(bad("kind must be TokenRequest".into()));
    }
    let mut spec = match v.get("spec") {
        None | Some(Value::Null) => json!({}),
        Some(spec) if spec.is_object() => spec.clone(),
        Some(_) => return Err(bad("spec: expected an object".into())),
    };
    let audiences: Vec<String> = match spec.get("audiences") {
        None | Some(Value::Null) => Vec::new(),
        Some(list) => list
            .as_array()
            .and_then(|list| list.iter().map(|a| a.as_str().map(str::to_string)).collect())
            .ok_or_else(|| bad("spec.audiences: expected a list of strings".into()))?,
    };
    let expiration_seconds = match spec.get("expirationSeconds") {
        // SetDefaults_TokenRequestSpec.
        None | Some(Value::Null) => DEFAULT_LIFETIME.as_secs() as i64,
        Some(n) => n.as_i64().ok_or_else(|| bad("spec.expirationSeconds: expected an integer".into()))?,
    };
    let detail = if expiration_seconds < MIN_EXPIRATION_SECONDS {
        Some("may not specify a duration less than 10 minutes")
    } else if expiration_seconds > MAX_EXPIRATION_SECONDS {
        Some("may not specify a duration larger than 2^32 seconds")
    } else {
        None
    };
    if let Some(detail) = detail {
        let field = InvalidField { field: "spec.expirationSeconds", value: expiration_seconds.to_string(), detail };
        return Err(api_status::invalid("authentication.k8s.io", "TokenRequest", "", &[field]));
    }
    spec["expirationSeconds"] = json!(expiration_seconds);
    Ok(TokenRequestSpec { spec, audiences, expiration_seconds })
}

fn json_reply(status: u16, body: Vec<u8>, cache_control: &str) -> Reply {
    Reply::Respond {
        status,
        headers: vec![
            ("content-type".into(), b"application/json".to_vec()),
            ("cache-control".into(), cache_control.as_bytes().to_vec()),
        ],
        body,
    }
}

fn token_request(state: &Mutex<State>, req: &RawRequest, behavior: &Behavior, ns: &str, sa: &str) -> Reply {
    // The authenticator (before any handler): an unknown or expired bearer is 401.
    if !lock(state).accepts(authorization(req, "bearer").as_deref(), SystemTime::now()) {
        return Reply::json(401, &k8s_status(401, "Unauthorized", "Unauthorized"));
    }
    let TokenRequestSpec { mut spec, mut audiences, expiration_seconds } = match validate_token_request(req) {
        Ok(x) => x,
        Err(status) => return Reply::json(status["code"].as_u64().and_then(|c| u16::try_from(c).ok()).unwrap_or(400), &status),
    };
    // token.go: the ServiceAccount is read after validation.
    if !lock(state).service_accounts.contains(&(ns.to_string(), sa.to_string())) {
        return Reply::json(404, &api_status::not_found("", "serviceaccounts", sa));
    }
    // token.go: no audiences means the API server's own (its issuer by default).
    if audiences.is_empty() {
        audiences = vec![JWT_ISSUER.to_string()];
        spec["audiences"] = json!(audiences);
    }
    if *behavior == Behavior::Garbage {
        return json_reply(201, b"{not json".to_vec(), "no-cache, private");
    }
    let now = SystemTime::now();
    let requested = Duration::from_secs(expiration_seconds.unsigned_abs());
    let expires = expiry_for(behavior, requested, now);
    let subject = format!("system:serviceaccount:{ns}:{sa}");
    let token = issue_token(&mut lock(state), subject, audiences, TokenSource::TokenRequest, now, expires);
    let mut status = json!({ "token": token });
    if *behavior != Behavior::NoExpiry {
        status["expirationTimestamp"] = json!(rfc3339(expires));
    }
    let body = json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": { "name": sa, "namespace": ns, "creationTimestamp": rfc3339(now) },
        "spec": spec,
        "status": status,
    });
    json_reply(201, serde_json::to_vec(&body).unwrap_or_default(), "no-cache, private")
}

fn oauth_error(status: u16, error: &str) -> Reply {
    let mut r = Reply::json(status, &json!({ "error": error }));
    if let (401, Reply::Respond { headers, .. }) = (status, &mut r) {
        headers.push(("www-authenticate".into(), b"Basic realm=\"kha-token-service\"".to_vec()));
    }
    r
}

fn basic_credentials(req: &RawRequest) -> Option<(String, String)> {
    let decoded = STANDARD.decode(authorization(req, "basic")?).ok()?;
    let (id, secret) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    // RFC 6749 section 2.3.1: id and secret are form-urlencoded before Basic encoding.
    let form_decode = |s: &str| form_urlencoded::parse(format!("v={s}").as_bytes()).map(|(_, v)| v.into_owned()).next();
    Some((form_decode(id)?, form_decode(secret)?))
}

fn oauth2(state: &Mutex<State>, req: &RawRequest, behavior: &Behavior) -> Reply {
    let form: Vec<(String, String)> = form_urlencoded::parse(&req.body).into_owned().collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let presented = basic_credentials(req).or_else(|| Some((field("client_id")?, field("client_secret")?)));
    let expected = lock(state).oauth_client.clone();
    if expected.is_some() && presented != expected {
        return oauth_error(401, "invalid_client");
    }
    match field("grant_type").as_deref() {
        None | Some("") => return oauth_error(400, "invalid_request"),
        Some("client_credentials") => {}
        Some(_) => return oauth_error(400, "unsupported_grant_type"),
    }
    if *behavior == Behavior::Garbage {
        return json_reply(200, b"{not json".to_vec(), "no-store");
    }
    let subject = presented.map(|(id, _)| id).or_else(|| field("client_id")).unwrap_or_else(|| "anonymous".into());
    let audiences: Vec<String> = form.iter().filter(|(k, _)| k == "audience").map(|(_, v)| v.clone()).collect();
    let now = SystemTime::now();
    let expires = expiry_for(behavior, DEFAULT_LIFETIME, now);
    let token = issue_token(&mut lock(state), subject, audiences, TokenSource::OAuth2, now, expires);
    let mut body = json!({ "access_token": token, "token_type": "Bearer" });
    match behavior {
        Behavior::NoExpiry => {}
        Behavior::PastExpiry => body["expires_in"] = json!(0),
        _ => body["expires_in"] = json!(lifetime_of(behavior, DEFAULT_LIFETIME).as_secs()),
    }
    json_reply(200, serde_json::to_vec(&body).unwrap_or_default(), "no-store")
}
