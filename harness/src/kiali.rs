//! `harness::kiali`: what Kiali's `header` auth strategy does with the headers it receives, rule
//! by rule from its source, and [`KialiStandIn`], a server that does it over real sockets.
//!
//! Models:
//! - reading headers: Go's `net/textproto` `reader.go` (`readMIMEHeader`, `canonicalMIMEHeaderKey`,
//!   `readContinuedLineSlice`/`trim`, `validHeaderValueByte`) and `net/http` `header.go`
//!   (`Header.Get`/`Values`/`Add`, which canonicalise with `CanonicalMIMEHeaderKey`) - [`GoHeader`],
//!   in `crate::go_header` (shared with the API server stand-in);
//! - the strategy: `kiali/kiali` `business/authentication/header_auth_controller.go` (moved to
//!   `handlers/authentication/header_auth_controller.go` in recent releases, same code),
//!   `getTokenStringFromHeader` - [`header_strategy`]; its 401 on a missing token
//!   (`Authenticate`, rendered by `handlers/authentication.go` with `RespondWithError`);
//! - the request to the API server: `kiali/kiali` `kubernetes/client_factory.go` (`newClient`:
//!   bearer token, and `Impersonate.UserName/Groups/Extra` only when a user is set), client-go
//!   `transport/round_trippers.go` (`bearerAuthRoundTripper`, `impersonatingRoundTripper`,
//!   `headerKeyEscape`, `legalHeaderKeyBytes`) and `net/http` `Header.writeSubset` (keys sorted,
//!   values trimmed) - [`client_go_headers`].
//!
//! [`KialiStandIn`] sends that request to an [`ApiServerStandIn`] and answers with what it believed.
//! Started with [`KialiStandIn::start_with_namespaces`], it also serves Kiali's namespace list
//! and its cache ([`crate::kiali_cache`]).

use crate::apiserver::{ApiServerStandIn, UserInfo, REVIEW_PATH};
use crate::go_header::is_token_byte;
pub use crate::go_header::{canonical_mime_header_key, GoHeader, MalformedHeader};
use crate::client::{self, ClientRequest};
use crate::kiali_cache::{NamespaceCacheConfig, NamespaceService, NAMESPACES_PATH};
use crate::message::RawRequest;
use crate::recording::Recording;
use crate::server::{Reply, Server};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;

/// client-go `headerKeyEscape` (round_trippers.go): `%XX` (upper-case hex) for every byte that
/// is not a legal header-key byte, and for `%` itself.
pub fn header_key_escape(key: &str) -> String {
    key.bytes()
        .map(|b| if is_token_byte(b) && b != b'%' { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// client-go's `clientcmd/api.AuthInfo`, the fields Kiali's header strategy fills.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AuthInfo {
    pub token: String,
    /// `Impersonate` (the user).
    pub impersonate: String,
    pub impersonate_groups: Vec<String>,
    pub impersonate_user_extra: BTreeMap<String, Vec<String>>,
}

/// `getTokenStringFromHeader` (header_auth_controller.go), exactly:
/// - token: `Header.Get("Authorization")` if it *contains* `Bearer` (case-sensitive, anywhere),
///   minus a leading `Bearer ` (`TrimPrefix`: `"Basic Bearer"` stays whole, `"Bearer"` is the token);
/// - user: `Header.Get("Impersonate-User")`, the first line;
/// - only when the user is non-empty: groups = `r.Header["Impersonate-Group"]` (one group per
///   line, commas kept), and for every map key starting with `Impersonate-Extra-` (the
///   canonical form: `Impersonate-Extra-Acme.com%2fteam`) the suffix (`Acme.com%2fteam`) -> values;
/// - `Impersonate-Uid` is not read.
pub fn header_strategy(headers: &GoHeader) -> AuthInfo {
    let mut auth = AuthInfo::default();
    let authorization = headers.get("Authorization");
    if authorization.contains("Bearer") {
        auth.token = authorization.strip_prefix("Bearer ").unwrap_or(authorization).to_string();
    }
    let user = headers.get("Impersonate-User");
    if !user.is_empty() {
        auth.impersonate = user.to_string();
        auth.impersonate_groups = headers.exact("Impersonate-Group").to_vec();
        for (key, values) in headers.iter() {
            if let Some(name) = key.strip_prefix("Impersonate-Extra-") {
                auth.impersonate_user_extra.insert(name.to_string(), values.to_vec());
            }
        }
    }
    auth
}

/// The authentication and impersonation header lines client-go sends to the API server for a
/// Kiali request with `auth`, in wire order (Go sorts keys). Other headers (Host, User-Agent,
/// Accept-Encoding...) are left out.
/// - `newClient` (client_factory.go): `BearerToken = Token`; the impersonation config only when
///   `Impersonate != ""` (the header strategy), without a UID;
/// - `bearerAuthRoundTripper`: `Authorization: Bearer <token>` when a token is configured;
/// - `impersonatingRoundTripper`: `Set("Impersonate-User")`, `Add("Impersonate-Group")` per
///   group, `Add("Impersonate-Extra-" + headerKeyEscape(key))` per value (Add canonicalises).
pub fn client_go_headers(auth: &AuthInfo) -> Vec<(String, String)> {
    let mut header = GoHeader::default();
    if !auth.token.is_empty() {
        header.set("Authorization", &format!("Bearer {}", auth.token));
    }
    if !auth.impersonate.is_empty() {
        header.set("Impersonate-User", &auth.impersonate);
        for group in &auth.impersonate_groups {
            header.add("Impersonate-Group", group);
        }
        for (key, values) in &auth.impersonate_user_extra {
            for value in values {
                header.add(&format!("Impersonate-Extra-{}", header_key_escape(key)), value);
            }
        }
    }
    header.wire_lines()
}

/// The user the API server believed, read from a [`KialiStandIn`] response body (for example
/// one received through Envoy): `apiserver.status.userInfo`, `None` when it refused.
pub fn believed_user_in(kiali_body: &[u8]) -> Option<UserInfo> {
    let body: Value = serde_json::from_slice(kiali_body).ok()?;
    serde_json::from_value(body.get("apiserver")?.get("status")?.get("userInfo")?.clone()).ok()
}

/// One request the Kiali stand-in answered.
#[derive(Clone, Debug)]
pub struct KialiExchange {
    pub request: RawRequest,
    /// What the header strategy read (`None` when Go refused the headers).
    pub auth: Option<AuthInfo>,
    /// The API server's answer (`None` when it was not asked or could not be reached).
    pub apiserver_status: Option<u16>,
    pub apiserver: Value,
}

impl KialiExchange {
    /// The user the API server believed, if it was asked and did not refuse.
    pub fn believed_user(&self) -> Option<UserInfo> {
        serde_json::from_value(self.apiserver.get("status")?.get("userInfo")?.clone()).ok()
    }
}

/// Kiali with the `header` strategy in front of an API server: for every request it reads the
/// headers like Go, applies [`header_strategy`] (no bearer: 401 `{"error":"Token is missing"}`),
/// sends the client-go request ([`client_go_headers`], a SelfSubjectReview) over a real socket
/// to the API server, and answers 200 with
/// `{"kiali": <AuthInfo>, "apiserver_status": <status>, "apiserver": <its JSON body>}`.
pub struct KialiStandIn {
    // Declared first so it is dropped (thread joined) before the log and the API server.
    server: Server,
    log: Recording<KialiExchange>,
    apiserver: Option<ApiServerStandIn>,
    namespaces: Option<Arc<NamespaceService>>,
}

impl KialiStandIn {
    /// Starts its own [`ApiServerStandIn::start`] (rules of deploy/02-impersonator.yaml) and
    /// itself on free ports of 127.0.0.1. Panics if either cannot start.
    pub fn start() -> KialiStandIn {
        let apiserver = ApiServerStandIn::start();
        let mut kiali = Self::start_for(apiserver.addr()).expect("start KialiStandIn");
        kiali.apiserver = Some(apiserver);
        kiali
    }

    /// Starts in front of the API server at `apiserver`.
    pub fn start_for(apiserver: SocketAddr) -> io::Result<KialiStandIn> {
        Self::serve(apiserver, None)
    }

    /// Starts in front of the API server at `apiserver` (one started with
    /// [`ApiServerStandIn::start_with_namespaces`]), also answering `GET /api/namespaces` as
    /// Kiali does, with its namespace cache as `cache` says ([`NamespaceService`]).
    pub fn start_with_namespaces(apiserver: SocketAddr, cache: NamespaceCacheConfig) -> io::Result<KialiStandIn> {
        Self::serve(apiserver, Some(Arc::new(NamespaceService::new(cache))))
    }

    fn serve(apiserver: SocketAddr, namespaces: Option<Arc<NamespaceService>>) -> io::Result<KialiStandIn> {
        let log: Recording<KialiExchange> = Recording::default();
        let recording = log.clone();
        let service = namespaces.clone();
        let server = Server::start_at(
            ([127, 0, 0, 1], 0),
            Arc::new(move |request: RawRequest| {
                let recording = recording.clone();
                let service = service.clone();
                Box::pin(async move {
                    let (reply, exchange) = handle(request, apiserver, service).await;
                    recording.push(exchange);
                    reply
                })
            }),
        )?;
        Ok(KialiStandIn { server, log, apiserver: None, namespaces })
    }

    /// The namespace list and its cache, when started with [`KialiStandIn::start_with_namespaces`].
    pub fn namespace_service(&self) -> Option<&NamespaceService> {
        self.namespaces.as_deref()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The API server started by [`KialiStandIn::start`].
    pub fn apiserver(&self) -> Option<&ApiServerStandIn> {
        self.apiserver.as_ref()
    }

    pub fn exchanges(&self) -> Vec<KialiExchange> {
        self.log.all()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RawRequest> {
        self.exchanges().into_iter().map(|e| e.request).collect()
    }

    /// The most recent request, if any.
    pub fn last(&self) -> Option<RawRequest> {
        self.last_exchange().map(|e| e.request)
    }

    pub fn last_exchange(&self) -> Option<KialiExchange> {
        self.log.last()
    }

    pub fn count(&self) -> usize {
        self.log.count()
    }

    pub fn clear(&self) {
        self.log.clear();
    }

    /// The user the API server believed for the last request.
    pub fn believed_user(&self) -> Option<UserInfo> {
        self.last_exchange().and_then(|e| e.believed_user())
    }
}

fn error_reply(status: u16, message: &str) -> Reply {
    Reply::json(status, &json!({ "error": message }))
}

async fn handle(request: RawRequest, apiserver: SocketAddr, namespaces: Option<Arc<NamespaceService>>) -> (Reply, KialiExchange) {
    let mut exchange = KialiExchange { request, auth: None, apiserver_status: None, apiserver: Value::Null };
    let headers = match GoHeader::read(&exchange.request.headers) {
        Ok(h) => h,
        Err(e) => return (Reply::Respond { status: 400, headers: vec![], body: format!("400 Bad Request: {e}").into_bytes() }, exchange),
    };
    let auth = header_strategy(&headers);
    exchange.auth = Some(auth.clone());
    if auth.token.is_empty() {
        return (error_reply(401, "Token is missing"), exchange);
    }
    let request = &exchange.request;
    if let Some(service) = namespaces.filter(|_| request.method == "GET" && request.path_only() == NAMESPACES_PATH) {
        return (service.list(&auth, apiserver).await, exchange);
    }
    let mut review = ClientRequest::post(REVIEW_PATH)
        .header("Content-Type", "application/json")
        .body(r#"{"kind":"SelfSubjectReview","apiVersion":"authentication.k8s.io/v1"}"#);
    for (name, value) in client_go_headers(&auth) {
        review = review.header(name, value);
    }
    // The raw client blocks; run it on its own thread so this runtime thread keeps serving.
    let (done, answer) = oneshot::channel();
    let spawned = std::thread::Builder::new().name("kiali-client-go".into()).spawn(move || {
        let _ = done.send(client::send(apiserver, &review));
    });
    if let Err(e) = spawned {
        return (error_reply(500, &format!("cannot start the API client: {e}")), exchange);
    }
    let response = match answer.await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => return (error_reply(500, &format!("API server {apiserver}: {e}")), exchange),
        Err(_) => return (error_reply(500, "API client thread ended without an answer"), exchange),
    };
    exchange.apiserver_status = Some(response.status);
    exchange.apiserver = response.try_json().unwrap_or_else(|_| Value::String(response.text()));
    let body = json!({"kiali": auth, "apiserver_status": response.status, "apiserver": exchange.apiserver});
    (Reply::json(200, &body), exchange)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(lines: &[(&str, &str)]) -> GoHeader {
        GoHeader::read(lines).unwrap()
    }

    #[test]
    fn header_lines_are_read_like_net_textproto() {
        type Case<'a> = (&'a [u8], &'a [u8], Option<(&'a str, &'a str)>);
        let cases: &[Case] = &[
            (b"impersonate-group", b" system:masters", Some(("Impersonate-Group", "system:masters"))),
            (b"IMPERSONATE-USER", b"\talice \t", Some(("Impersonate-User", "alice"))),
            (b"impersonate-extra-acme.com%2Fteam", b"eng", Some(("Impersonate-Extra-Acme.com%2fteam", "eng"))),
            (b"x-forwarded-for", b"10.0.0.1", Some(("X-Forwarded-For", "10.0.0.1"))),
            (b"has space", b"v", Some(("has space", "v"))),
            (b"x", b"caf\xc3\xa9", Some(("X", "caf\u{e9}"))),
            (b"x", b"a \t b", Some(("X", "a \t b"))),
            (b"a/b", b"v", None),
            (b"", b"v", None),
            (b"x", b"a\x01b", None),
            (b"x", b"a\x7fb", None),
        ];
        for (name, value, expected) in cases {
            let got = GoHeader::read(&[(name, value)]);
            match expected {
                Some((key, v)) => {
                    let got = got.unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!(got.iter().next(), Some((*key, &[v.to_string()][..])), "{name:?}");
                }
                None => assert!(got.is_err(), "{name:?} {value:?} should be refused"),
            }
        }
    }

    #[test]
    fn keys_canonicalise_and_escape_like_go_and_client_go() {
        for (key, canonical) in [("impersonate-extra-x", "Impersonate-Extra-X"), ("aCME.com%2Fx", "Acme.com%2fx"), ("has space", "has space"), ("a/b", "a/b")] {
            assert_eq!(canonical_mime_header_key(key), canonical);
        }
        for (key, escaped) in [("email", "email"), ("acme.com/team", "acme.com%2Fteam"), ("Acme.com%2fteam", "Acme.com%252fteam"), ("a b", "a%20b"), ("é", "%C3%A9")] {
            assert_eq!(header_key_escape(key), escaped);
        }
    }

    #[test]
    fn header_strategy_is_get_token_string_from_header() {
        let auth = |token: &str, user: &str, groups: &[&str], extra: &[(&str, &[&str])]| AuthInfo {
            token: token.into(),
            impersonate: user.into(),
            impersonate_groups: groups.iter().map(|g| g.to_string()).collect(),
            impersonate_user_extra: extra.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect(),
        };
        let cases: Vec<(&[(&str, &str)], AuthInfo)> = vec![
            (&[("authorization", "Bearer abc")], auth("abc", "", &[], &[])),
            (&[("authorization", "bearer abc")], auth("", "", &[], &[])),
            (&[("authorization", "Basic Bearer")], auth("Basic Bearer", "", &[], &[])),
            (&[("authorization", "Bearer ")], auth("Bearer", "", &[], &[])),
            (&[("authorization", "Bearer a"), ("authorization", "Bearer b")], auth("a", "", &[], &[])),
            (&[("impersonate-user", "alice"), ("impersonate-user", "bob")], auth("", "alice", &[], &[])),
            (&[("impersonate-user", " alice"), ("impersonate-group", " system:masters"), ("impersonate-group", "a,b")], auth("", "alice", &["system:masters", "a,b"], &[])),
            // Without a user, groups and extras are ignored; the uid is never read.
            (&[("impersonate-group", "admins"), ("impersonate-extra-email", "a@b"), ("impersonate-uid", "1")], auth("", "", &[], &[])),
            (&[("impersonate-user", "a"), ("impersonate-uid", "1")], auth("", "a", &[], &[])),
            // Extras are keyed by the canonical suffix.
            (
                &[("impersonate-user", "a"), ("impersonate-extra-acme.com%2Fteam", "eng"), ("impersonate-extra-email", "x"), ("Impersonate-Extra-Email", "y")],
                auth("", "a", &[], &[("Acme.com%2fteam", &["eng"]), ("Email", &["x", "y"])]),
            ),
        ];
        for (lines, expected) in cases {
            assert_eq!(header_strategy(&header(lines)), expected, "{lines:?}");
        }
    }

    #[test]
    fn client_go_sends_one_line_per_group_and_escaped_extra_keys() {
        let auth = header_strategy(&header(&[
            ("authorization", "Bearer tok"),
            ("impersonate-user", "alice"),
            ("impersonate-group", "b"),
            ("impersonate-group", "a,c"),
            ("impersonate-extra-acme.com%2Fteam", "eng"),
            ("impersonate-extra-email", "a@b"),
        ]));
        let lines = client_go_headers(&auth);
        let expected = [
            ("Authorization", "Bearer tok"),
            ("Impersonate-Extra-Acme.com%252fteam", "eng"),
            ("Impersonate-Extra-Email", "a@b"),
            ("Impersonate-Group", "b"),
            ("Impersonate-Group", "a,c"),
            ("Impersonate-User", "alice"),
        ];
        assert_eq!(lines, expected.map(|(k, v)| (k.to_string(), v.to_string())));
        // No user: only the bearer.
        let auth = header_strategy(&header(&[("authorization", "Bearer tok"), ("impersonate-group", "g")]));
        assert_eq!(client_go_headers(&auth), vec![("Authorization".to_string(), "Bearer tok".to_string())]);
    }
}
