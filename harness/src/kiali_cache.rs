//! `harness::kiali_cache`: Kiali's namespace list (`GET /api/namespaces`) and the cache Kiali
//! keeps of it, rule by rule from kiali/kiali, served by
//! [`crate::kiali::KialiStandIn::start_with_namespaces`].
//!
//! Where the rules come from (kiali/kiali; first release from `git tag --contains`):
//! - PR #7200 "Cache namespaces per cluster and per token", commit 0aeaca84504f (2024-03-19),
//!   first in v1.82.0: the namespace list is cached per `(cluster, bearer token)` in an
//!   `ExpirationStore` whose lifetime is `kubernetes_config.cache_token_namespace_duration`
//!   (seconds, default 10). Same code through v2.29.x (`cache/cache.go`, `namespacesKey{cluster,
//!   token}`; `kubernetes/cache/cache.go` when introduced).
//! - PR #10039 "Add opt-in OpenShift impersonation mode for multi-cluster auth", commit
//!   972c91c0d3a8 (2026-07-29), first in v2.30.0: the key becomes `client.GetCacheKey()`
//!   (`kubernetes/client.go`): the impersonated user name when the client impersonates one (the
//!   header strategy sets `Impersonate.UserName` from `Impersonate-User`, `client_factory.go`
//!   `newClient`), else the bearer token. Groups and extras are not part of the key.
//!
//! Modelled, with the line of Kiali each comes from (v2.29.0 unless said):
//! - the route: `routing/routes.go` "NamespaceList", `GET /api/namespaces` ->
//!   `handlers/namespaces.go` `NamespaceList` -> `business/namespaces.go` `GetNamespaces`; the
//!   answer `RespondWithJSON(200, namespaces)` (`models/namespace.go` `Namespace`), or
//!   `RespondWithError(500, err.Error())` (`{"error": ...}`) when the home cluster fails;
//! - the lookup: `GetNamespaces` asks `kialiCache.GetNamespaces(cluster, client.GetToken())`
//!   (v2.30.0: `client.GetCacheKey()`) and answers from the cache on a hit, without any API call
//!   - [`cache_key`];
//! - the store: `cache/cache.go` `NewKialiCache`: `namespaceStore = NewExpirationStore(ctx, ...,
//!   &namespaceKeyTTL, nil)` with `namespaceKeyTTL = CacheTokenNamespaceDuration * time.Second`
//!   (`config/config.go`: default 10); `store/expiration_store.go`: a TTL of 0 ignores `Set` and
//!   misses every `Get`; `Set` records `now + ttl`; `Get` does not look at the time; a goroutine
//!   removes every key whose expiration `time.Now().After` every `keyExpirationCheckInterval`
//!   (nil: `defaultKeyExpirationCheckInterval`, 10 s) - [`ExpirationStore`]. So an entry lives
//!   from `ttl` to `ttl + 10 s`;
//! - a miss: `getNamespacesByCluster` with `deployment.cluster_wide_access` (default true) ->
//!   `getNamespacesUsingKialiSA(cluster, "")`: the Kiali SA lists namespaces; when the user's
//!   token equals the SA's (v2.30.0: the user's cache key equals the SA's token) that list is the
//!   answer; else, with `require_namespace_get` false (default), the user lists namespaces: a
//!   success is intersected with the SA list, a 403 falls back to `filterToNamespacesUserCanGet`
//!   (a `GET` of each SA namespace as the user: 200 kept, 403 dropped, anything else an error),
//!   any other error is the error - [`namespaces_by_cluster`];
//! - the store after a miss: `SetNamespaces(key, ns)` for each cluster of the result
//!   (`namespacesPerCluster`), so an empty list is not cached.
//!
//! Not modelled: discovery selectors, control-plane flags and revisions, labels and
//! annotations, accessible namespaces without cluster-wide access, `require_namespace_get`,
//! several clusters, `RefreshTokenNamespaces` (namespace updates). A cache hit in Kiali returns
//! `maps.Values` (random order); here the stored (name) order.

use crate::apiserver::{default_authenticator, Authenticator, UserInfo};
use crate::client::{self, ClientRequest};
use crate::kiali::{client_go_headers, AuthInfo};
use crate::recording::Recording;
use crate::server::Reply;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Kiali's route for the namespace list (`routing/routes.go`, "NamespaceList").
pub const NAMESPACES_PATH: &str = "/api/namespaces";
/// `config.DefaultClusterID`: the home cluster's name when none is configured or found.
pub const DEFAULT_CLUSTER: &str = "Kubernetes";
/// The bearer of the Kiali stand-in's own ServiceAccount client (`kialiSAClients`).
pub const KIALI_SA_TOKEN: &str = "kiali-service-account-token";
/// `defaultKeyExpirationCheckInterval` and `defaultKeyTTL` (store/expiration_store.go).
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// `cache_token_namespace_duration`'s default (config/config.go, `CacheTokenNamespaceDuration: 10`).
pub const DEFAULT_DURATION_SECONDS: u64 = 10;

/// Kiali's ServiceAccount, as its token authenticates (namespace `istio-system`, name `kiali`).
pub fn kiali_service_account() -> UserInfo {
    UserInfo::service_account("istio-system", "kiali")
}

/// [`KIALI_SA_TOKEN`] is Kiali's ServiceAccount; any other non-empty bearer is the impersonator
/// ServiceAccount ([`default_authenticator`]).
pub fn authenticator() -> Authenticator {
    let others = default_authenticator();
    std::sync::Arc::new(move |token: &str| if token == KIALI_SA_TOKEN { Some(kiali_service_account()) } else { others(token) })
}

/// What the namespace cache is keyed by, besides the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheKeying {
    /// `client.GetToken()`: the bearer Kiali received (v1.82.0 to v2.29.x, PR #7200).
    BearerToken,
    /// `client.GetCacheKey()`: `Impersonate-User` when Kiali impersonates, else the bearer
    /// (v2.30.0 and later, PR #10039).
    ImpersonatedUserElseToken,
}

/// The key Kiali looks the namespace list up with, for a request with `auth`.
pub fn cache_key(auth: &AuthInfo, keying: CacheKeying) -> String {
    match keying {
        CacheKeying::BearerToken => auth.token.clone(),
        // GetCacheKey: restConfig.Impersonate.UserName, which newClient sets from
        // authInfo.Impersonate for the header strategy; else client.token.
        CacheKeying::ImpersonatedUserElseToken if !auth.impersonate.is_empty() => auth.impersonate.clone(),
        CacheKeying::ImpersonatedUserElseToken => auth.token.clone(),
    }
}

/// How the stand-in's Kiali keeps namespace lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceCacheConfig {
    pub keying: CacheKeying,
    /// `kubernetes_config.cache_token_namespace_duration` (whole seconds; 0 turns the cache off).
    pub duration_seconds: u64,
    /// Test knob: how often expired entries are removed. Kiali does not expose it (10 s).
    pub sweep_interval: Duration,
    /// `kubernetes_config.cluster_name`.
    pub cluster: String,
}

impl NamespaceCacheConfig {
    /// Kiali v1.82.0 to v2.29.x with its defaults: keyed by bearer token, 10 s.
    pub fn kiali_2_29() -> NamespaceCacheConfig {
        NamespaceCacheConfig {
            keying: CacheKeying::BearerToken,
            duration_seconds: DEFAULT_DURATION_SECONDS,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
            cluster: DEFAULT_CLUSTER.to_string(),
        }
    }

    /// Kiali v2.30.0 and later with its defaults: keyed by impersonated user, 10 s.
    pub fn kiali_2_30() -> NamespaceCacheConfig {
        NamespaceCacheConfig { keying: CacheKeying::ImpersonatedUserElseToken, ..Self::kiali_2_29() }
    }

    pub fn duration_seconds(mut self, seconds: u64) -> NamespaceCacheConfig {
        self.duration_seconds = seconds;
        self
    }

    pub fn sweep_interval(mut self, interval: Duration) -> NamespaceCacheConfig {
        self.sweep_interval = interval;
        self
    }
}

impl Default for NamespaceCacheConfig {
    fn default() -> Self {
        Self::kiali_2_29()
    }
}

/// `store.ExpirationStore` (store/expiration_store.go), with its sweeping goroutine computed
/// instead of run: sweeps happen at `started + k * interval` (k >= 1), and a sweep removes every
/// entry whose expiration is strictly before it.
pub struct ExpirationStore<K, V> {
    ttl: Duration,
    interval: Duration,
    started: Instant,
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash, V: Clone> ExpirationStore<K, V> {
    /// `NewExpirationStore` at `started`: an interval of zero is the default one.
    pub fn new(ttl: Duration, interval: Duration, started: Instant) -> ExpirationStore<K, V> {
        let interval = if interval.is_zero() { DEFAULT_SWEEP_INTERVAL } else { interval };
        ExpirationStore { ttl, interval, started, entries: Mutex::default() }
    }

    fn sweeps_until(&self, t: Instant) -> u128 {
        t.saturating_duration_since(self.started).as_nanos() / self.interval.as_nanos()
    }

    /// `Get`: the value unless the TTL is 0 or a sweep has removed it by `now`.
    pub fn get(&self, key: &K, now: Instant) -> Option<V> {
        if self.ttl.is_zero() {
            return None;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (value, expiration) = entries.get(key)?;
        if self.sweeps_until(now) > self.sweeps_until(*expiration) {
            entries.remove(key);
            return None;
        }
        Some(value.clone())
    }

    /// `Set`: stores the value with expiration `now + ttl`; ignored when the TTL is 0.
    pub fn set(&self, key: K, value: V, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).insert(key, (value, now + self.ttl));
    }
}

/// One namespace-list request the stand-in's Kiali answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceLookup {
    /// The `Impersonate-User` Kiali read (empty when none).
    pub user: String,
    /// Whether the answer came from the cache (no API-server request was made).
    pub hit: bool,
    /// The names answered (`None`: the 500 error).
    pub namespaces: Option<Vec<String>>,
}

/// Kiali's namespace business layer with its cache, for one Kiali.
pub struct NamespaceService {
    config: NamespaceCacheConfig,
    store: ExpirationStore<(String, String), Vec<String>>,
    lookups: Recording<NamespaceLookup>,
}

impl NamespaceService {
    pub fn new(config: NamespaceCacheConfig) -> NamespaceService {
        let ttl = Duration::from_secs(config.duration_seconds);
        let store = ExpirationStore::new(ttl, config.sweep_interval, Instant::now());
        NamespaceService { config, store, lookups: Recording::default() }
    }

    pub fn config(&self) -> &NamespaceCacheConfig {
        &self.config
    }

    /// Every namespace-list request answered so far, in order.
    pub fn lookups(&self) -> Vec<NamespaceLookup> {
        self.lookups.all()
    }

    /// `GET /api/namespaces` for a request the header strategy read as `auth` (a bearer is
    /// present), with the API server at `apiserver`.
    pub async fn list(&self, auth: &AuthInfo, apiserver: SocketAddr) -> Reply {
        let key = (self.config.cluster.clone(), cache_key(auth, self.config.keying));
        let mut lookup = NamespaceLookup { user: auth.impersonate.clone(), hit: false, namespaces: None };
        if let Some(names) = self.store.get(&key, Instant::now()) {
            lookup.hit = true;
            lookup.namespaces = Some(names.clone());
            self.lookups.push(lookup);
            return self.reply(&names);
        }
        // The raw client blocks; run it on its own thread so this runtime thread keeps serving.
        let (done, answer) = oneshot::channel();
        let (user, keying) = (auth.clone(), self.config.keying);
        let spawned = std::thread::Builder::new()
            .name("kiali-namespaces".into())
            .spawn(move || {
                let _ = done.send(namespaces_by_cluster(&user, keying, apiserver));
            });
        let result = match spawned {
            Ok(_) => answer.await.unwrap_or_else(|_| Err("API client thread ended without an answer".into())),
            Err(e) => Err(format!("cannot start the API client: {e}")),
        };
        let reply = match &result {
            Ok(names) => {
                // SetNamespaces runs per cluster of the result: nothing is cached for no namespace.
                if !names.is_empty() {
                    self.store.set(key, names.clone(), Instant::now());
                }
                self.reply(names)
            }
            Err(message) => Reply::json(500, &json!({ "error": message })),
        };
        lookup.namespaces = result.ok();
        self.lookups.push(lookup);
        reply
    }

    /// `RespondWithJSON(200, namespaces)`: `models.Namespace` of each name.
    fn reply(&self, names: &[String]) -> Reply {
        let body: Vec<Value> = names
            .iter()
            .map(|name| {
                json!({"name": name, "cluster": self.config.cluster, "isAmbient": false, "isControlPlane": false, "labels": null, "annotations": null})
            })
            .collect();
        Reply::json(200, &Value::Array(body))
    }
}

/// One API-server read; `Err` carries what client-go would report (the Status message).
fn read(apiserver: SocketAddr, path: &str, headers: &[(String, String)]) -> Result<(u16, Value), String> {
    let mut request = ClientRequest::get(path).header("Accept", "application/json");
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = client::send(apiserver, &request).map_err(|e| format!("API server {apiserver}: {e}"))?;
    let body = response.try_json().unwrap_or_else(|_| Value::String(response.text()));
    Ok((response.status, body))
}

fn status_error(status: u16, body: &Value) -> String {
    body.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| format!("{status} {body}"))
}

fn names_in(list: &Value) -> Vec<String> {
    let items = list.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
    items.iter().filter_map(|i| i.pointer("/metadata/name").and_then(Value::as_str).map(str::to_string)).collect()
}

/// `getNamespacesByCluster` with cluster-wide access, i.e. `getNamespacesUsingKialiSA(cluster,
/// "")` (business/namespaces.go), over real sockets to the API server.
pub fn namespaces_by_cluster(auth: &AuthInfo, keying: CacheKeying, apiserver: SocketAddr) -> Result<Vec<String>, String> {
    // nss, err := in.kialiSAClients[cluster].GetNamespaces(labelSelector)
    let sa_headers = [("Authorization".to_string(), format!("Bearer {KIALI_SA_TOKEN}"))];
    let (status, body) = read(apiserver, "/api/v1/namespaces", &sa_headers)?;
    if status != 200 {
        return Err(status_error(status, &body));
    }
    let sa_names = names_in(&body);
    // v2.29.0: userClient.GetToken() == saClient.GetToken(); v2.30.0: GetCacheKey() == GetToken().
    if cache_key(auth, keying) == KIALI_SA_TOKEN {
        return Ok(sa_names);
    }
    // !RequireNamespaceGet: the user's own list, intersected with the SA's.
    let user_headers = client_go_headers(auth);
    let (status, body) = read(apiserver, "/api/v1/namespaces", &user_headers)?;
    match status {
        200 => {
            let sa: BTreeSet<&String> = sa_names.iter().collect();
            return Ok(names_in(&body).into_iter().filter(|n| sa.contains(n)).collect());
        }
        403 => {}
        _ => return Err(status_error(status, &body)),
    }
    // filterToNamespacesUserCanGet: a GET of each candidate as the user.
    let mut kept = Vec::new();
    for name in sa_names {
        let (status, body) = read(apiserver, &format!("/api/v1/namespaces/{name}"), &user_headers)?;
        match status {
            200 => kept.push(name),
            403 => {}
            _ => return Err(status_error(status, &body)),
        }
    }
    Ok(kept)
}

/// The names in a Kiali `/api/namespaces` answer (a `models.Namespace` array), as a set.
pub fn names_in_answer(body: &[u8]) -> Result<BTreeSet<String>, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("{e}: {}", String::from_utf8_lossy(body)))?;
    let items = value.as_array().ok_or_else(|| format!("not a namespace array: {value}"))?;
    items.iter().map(|i| i.get("name").and_then(Value::as_str).map(str::to_string).ok_or_else(|| format!("no name in {i}"))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::{namespace_read, ApiServerStandIn, ImpersonationRules, NamespaceAccess, Subject};
    use crate::message::RawRequest;

    fn new_store(ttl: u64, interval: u64) -> (ExpirationStore<&'static str, u32>, Instant) {
        let start = Instant::now();
        (ExpirationStore::new(Duration::from_secs(ttl), Duration::from_secs(interval), start), start)
    }

    #[test]
    fn an_entry_lives_until_the_first_sweep_after_its_ttl() {
        let s = |secs: u64| Duration::from_secs(secs);
        let (store, start) = new_store(10, 10);
        store.set("k", 1, start + s(3));
        // Expires at 13 s; the sweep at 20 s removes it, not the one at 10 s.
        for (at, expected) in [(3, Some(1)), (12, Some(1)), (13, Some(1)), (19, Some(1)), (20, None)] {
            assert_eq!(store.get(&"k", start + s(at)), expected, "at {at} s");
        }
        // Expiration exactly on a sweep: that sweep keeps it (time.Now().After is strict).
        let (store, start) = new_store(10, 10);
        store.set("k", 2, start + s(0));
        assert_eq!(store.get(&"k", start + s(10)), Some(2));
        assert_eq!(store.get(&"k", start + s(20)), None);
        // Set again renews the expiration.
        let (store, start) = new_store(2, 1);
        store.set("k", 1, start);
        store.set("k", 3, start + s(2));
        assert_eq!(store.get(&"k", start + s(4)), Some(3));
        assert_eq!(store.get(&"k", start + s(5)), None);
    }

    #[test]
    fn a_zero_ttl_caches_nothing() {
        let (store, start) = new_store(0, 10);
        store.set("k", 1, start);
        assert_eq!(store.get(&"k", start), None);
    }

    #[test]
    fn the_key_is_the_token_before_2_30_and_the_impersonated_user_after() {
        let auth = |token: &str, user: &str, groups: &[&str]| AuthInfo {
            token: token.into(),
            impersonate: user.into(),
            impersonate_groups: groups.iter().map(|g| g.to_string()).collect(),
            ..AuthInfo::default()
        };
        let cases = [
            (auth("t", "alice", &[]), CacheKeying::BearerToken, "t"),
            (auth("t", "bob", &["admins"]), CacheKeying::BearerToken, "t"),
            (auth("t", "alice", &[]), CacheKeying::ImpersonatedUserElseToken, "alice"),
            (auth("t", "alice", &["admins"]), CacheKeying::ImpersonatedUserElseToken, "alice"),
            (auth("t", "", &[]), CacheKeying::ImpersonatedUserElseToken, "t"),
        ];
        for (auth, keying, key) in cases {
            assert_eq!(cache_key(&auth, keying), key, "{auth:?} {keying:?}");
        }
    }

    fn access() -> NamespaceAccess {
        NamespaceAccess::new(&["bookinfo", "istio-system", "travel"])
            .cluster_reader(Subject::User(kiali_service_account().name))
            .may_get(Subject::User("alice".into()), &["bookinfo"])
            .may_get(Subject::Group("travel-team".into()), &["travel"])
    }

    fn get(path: &str, headers: &[(&str, &str)]) -> RawRequest {
        let headers = headers.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec())).collect();
        RawRequest { method: "GET".into(), path: path.into(), headers, ..RawRequest::default() }
    }

    #[test]
    fn the_api_server_reads_namespaces_as_rbac_allows() {
        let rules = ImpersonationRules::deployed().unwrap();
        let answer = |path: &str, headers: &[(&str, &str)]| {
            let (status, body, _) = namespace_read(&get(path, headers), &rules, &authenticator(), &access()).expect("a namespace read");
            (status, body)
        };
        let sa = [("authorization", "Bearer kiali-service-account-token")];
        let (status, body) = answer("/api/v1/namespaces?limit=500", &sa);
        assert_eq!((status, names_in(&body)), (200, vec!["bookinfo".into(), "istio-system".into(), "travel".into()]));
        let alice = [("authorization", "Bearer x"), ("impersonate-user", "alice")];
        let (status, body) = answer("/api/v1/namespaces", &alice);
        assert_eq!(status, 403);
        assert_eq!(body["message"], "namespaces is forbidden: User \"alice\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope");
        assert_eq!(answer("/api/v1/namespaces/bookinfo", &alice).0, 200);
        let (status, body) = answer("/api/v1/namespaces/travel", &alice);
        assert_eq!(status, 403);
        assert_eq!(
            body["message"],
            "namespaces \"travel\" is forbidden: User \"alice\" cannot get resource \"namespaces\" in API group \"\" in the namespace \"travel\""
        );
        // A group binding applies to the group; authorization comes before existence.
        let bob = [("authorization", "Bearer x"), ("impersonate-user", "bob"), ("impersonate-group", "travel-team")];
        assert_eq!(answer("/api/v1/namespaces/travel", &bob).0, 200);
        assert_eq!(answer("/api/v1/namespaces/nowhere", &bob).0, 403);
        let (status, body) = answer("/api/v1/namespaces/nowhere", &sa);
        assert_eq!((status, body["message"].as_str()), (404, Some("namespaces \"nowhere\" not found")));
        // No bearer: 401; impersonation refused: its own answer; other paths are not namespace reads.
        assert_eq!(answer("/api/v1/namespaces", &[]).0, 401);
        assert_eq!(answer("/api/v1/namespaces", &[("authorization", "Bearer x"), ("impersonate-group", "g")]).0, 400);
        for path in ["/api/v1/namespaces/bookinfo/pods", "/apis/authentication.k8s.io/v1/selfsubjectreviews", "/api/v1/namespacesx"] {
            assert!(namespace_read(&get(path, &sa), &rules, &authenticator(), &access()).is_none(), "{path}");
        }
    }

    #[test]
    fn a_miss_is_the_users_gets_intersected_with_the_service_accounts_list() {
        let apiserver = ApiServerStandIn::start_with_namespaces(ImpersonationRules::deployed().unwrap(), authenticator(), access()).unwrap();
        let auth = |user: &str, groups: &[&str]| AuthInfo {
            token: "impersonator".into(),
            impersonate: user.into(),
            impersonate_groups: groups.iter().map(|g| g.to_string()).collect(),
            ..AuthInfo::default()
        };
        let list = |auth: &AuthInfo| namespaces_by_cluster(auth, CacheKeying::BearerToken, apiserver.addr()).unwrap();
        assert_eq!(list(&auth("alice", &[])), vec!["bookinfo"]);
        assert_eq!(list(&auth("bob", &["travel-team"])), vec!["travel"]);
        assert_eq!(list(&auth("carol", &[])), Vec::<String>::new());
        // The SA's own token: its list, without asking as the user.
        let sa = AuthInfo { token: KIALI_SA_TOKEN.into(), ..AuthInfo::default() };
        apiserver.clear();
        assert_eq!(list(&sa), vec!["bookinfo", "istio-system", "travel"]);
        assert_eq!(apiserver.count(), 1);
        // A cluster reader's own list succeeds: intersected, no GETs.
        let reader = ApiServerStandIn::start_with_namespaces(
            ImpersonationRules::deployed().unwrap(),
            authenticator(),
            access().cluster_reader(Subject::Group("admins".into())),
        )
        .unwrap();
        assert_eq!(namespaces_by_cluster(&auth("dana", &["admins"]), CacheKeying::BearerToken, reader.addr()).unwrap().len(), 3);
        assert_eq!(reader.count(), 2);
        // An impersonation the API server refuses is a 403 too (IsForbidden): nothing is readable.
        let refused = AuthInfo { impersonate_user_extra: [("team".to_string(), vec!["x".to_string()])].into(), ..auth("alice", &[]) };
        assert_eq!(list(&refused), Vec::<String>::new());
        // Any other failure is Kiali's error, with the API server's message.
        let sa_only: Authenticator = std::sync::Arc::new(|t: &str| (t == KIALI_SA_TOKEN).then(kiali_service_account));
        let strict = ApiServerStandIn::start_with_namespaces(ImpersonationRules::deployed().unwrap(), sa_only, access()).unwrap();
        assert_eq!(namespaces_by_cluster(&auth("alice", &[]), CacheKeying::BearerToken, strict.addr()), Err("Unauthorized".to_string()));
    }

    #[test]
    fn kiali_answers_from_the_cache_by_key_and_never_caches_an_empty_list() {
        let apiserver = ApiServerStandIn::start_with_namespaces(ImpersonationRules::deployed().unwrap(), authenticator(), access()).unwrap();
        let request_to = |path: &str, token: &str, user: &str| {
            ClientRequest::get(path).header("Authorization", format!("Bearer {token}")).header("Impersonate-User", user)
        };
        let request = |token: &str, user: &str| request_to(NAMESPACES_PATH, token, user);
        let names = |kiali: &crate::kiali::KialiStandIn, token: &str, user: &str| {
            let response = client::send(kiali.addr(), &request(token, user)).unwrap();
            assert_eq!(response.status, 200, "{}", response.text());
            names_in_answer(&response.body).unwrap().into_iter().collect::<Vec<_>>()
        };
        let hits = |kiali: &crate::kiali::KialiStandIn| kiali.namespace_service().unwrap().lookups().iter().map(|l| l.hit).collect::<Vec<_>>();

        let kiali = crate::kiali::KialiStandIn::start_with_namespaces(apiserver.addr(), NamespaceCacheConfig::kiali_2_29()).unwrap();
        assert_eq!(names(&kiali, "t1", "alice"), ["bookinfo"]);
        apiserver.clear();
        assert_eq!(names(&kiali, "t1", "bob"), ["bookinfo"], "same token: alice's entry");
        assert_eq!(apiserver.count(), 0, "a hit asks the API server nothing");
        assert_eq!(names(&kiali, "t2", "carol"), Vec::<String>::new());
        assert_eq!(names(&kiali, "t2", "alice"), ["bookinfo"], "carol's empty list was not cached");
        assert_eq!(hits(&kiali), [false, true, false, false]);
        // No bearer: 401 before any lookup; other paths keep the SelfSubjectReview answer.
        let response = client::send(kiali.addr(), &ClientRequest::get(NAMESPACES_PATH)).unwrap();
        assert_eq!(response.status, 401);
        let response = client::send(kiali.addr(), &request_to("/api/status", "t1", "alice")).unwrap();
        assert!(crate::kiali::believed_user_in(&response.body).is_some(), "{}", response.text());
        assert_eq!(hits(&kiali).len(), 4);

        let kiali = crate::kiali::KialiStandIn::start_with_namespaces(apiserver.addr(), NamespaceCacheConfig::kiali_2_30()).unwrap();
        assert_eq!(names(&kiali, "t1", "alice"), ["bookinfo"]);
        assert_eq!(names(&kiali, "t1", "bob"), Vec::<String>::new(), "keyed by user: bob's own");
        assert_eq!(names(&kiali, "t9", "alice"), ["bookinfo"]);
        assert_eq!(hits(&kiali), [false, false, true]);

        let kiali = crate::kiali::KialiStandIn::start_with_namespaces(apiserver.addr(), NamespaceCacheConfig::kiali_2_29().duration_seconds(0)).unwrap();
        assert_eq!(names(&kiali, "t1", "alice"), ["bookinfo"]);
        assert_eq!(names(&kiali, "t1", "bob"), Vec::<String>::new(), "no cache: bob's own");
        assert_eq!(hits(&kiali), [false, false]);
    }
}
