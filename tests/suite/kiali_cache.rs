//! Issue 23: what Kiali's namespace cache does with the one token the filter injects for every
//! user. End to end: client -> Envoy with the filter -> the Kiali stand-in serving
//! `GET /api/namespaces` with its namespace cache (`harness::kiali_cache`, rules from kiali/kiali
//! PR #7200 and PR #10039) -> the API-server stand-in deciding what each impersonated user may read
//! (`harness::apiserver::NamespaceAccess`).
//!
//! Kiali v1.82.0 to v2.29.x key that cache by bearer token (PR #7200): with one shared token the
//! first user's list is served to the next user for the cache's lifetime. v2.30.0 keys it by
//! the impersonated user name (PR #10039), not by groups or extras.

use crate::common;

use common::chain::full_config;
use common::tokens::injected_config;
use common::send;
use harness::apiserver::{ApiServerStandIn, ImpersonationRules, NamespaceAccess, Subject};
use harness::kiali::KialiStandIn;
use harness::kiali_cache::{self, NamespaceCacheConfig};
use harness::bootstrap_token::BootstrapToken;
use harness::{ClientRequest, Envoy, TokenService};
use std::collections::BTreeSet;
use std::time::Duration;

const IDENTITY: &str = r#""identity":{"preset":"oauth2-proxy"}"#;

/// What each user may read, as RBAC bindings would say (a test knob, see `NamespaceAccess`).
fn access() -> NamespaceAccess {
    NamespaceAccess::new(&["bookinfo", "istio-system", "travel-agency", "travel-portal"])
        .cluster_reader(Subject::User(kiali_cache::kiali_service_account().name))
        .may_get(Subject::User("alice".into()), &["bookinfo"])
        .may_get(Subject::Group("dev".into()), &["travel-agency"])
        .may_get(Subject::Group("ops".into()), &["istio-system", "travel-portal"])
}

/// A user as oauth2-proxy sends it (no groups header when `groups` is empty).
fn user(name: &str, groups: &str) -> ClientRequest {
    let request = ClientRequest::get(kiali_cache::NAMESPACES_PATH)
        .header("X-Forwarded-User", name)
        .header("X-Forwarded-Email", format!("{name}@example.com"));
    if groups.is_empty() {
        request
    } else {
        request.header("X-Forwarded-Groups", groups)
    }
}

fn alice() -> ClientRequest {
    user("alice", "dev")
}

fn bob() -> ClientRequest {
    user("bob", "ops")
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// What alice and bob may read themselves, per `access()`.
fn alices_own() -> BTreeSet<String> {
    set(&["bookinfo", "travel-agency"])
}

fn bobs_own() -> BTreeSet<String> {
    set(&["istio-system", "travel-portal"])
}

/// The filter configuration used here (oauth2-proxy identity, full impersonation, the token
/// service stand-in), with `token_source_fields` (e.g. `"per_identity":true`) added to its
/// `token_source`.
fn plugin_config(token_source_fields: &str) -> String {
    let config = full_config(IDENTITY);
    if token_source_fields.is_empty() {
        return config;
    }
    let extended = config.replacen(r#""token_source":{"#, &format!(r#""token_source":{{{token_source_fields},"#), 1);
    assert_ne!(extended, config, "no token_source in {config}");
    extended
}

/// Token service, API server, Kiali (with its namespace cache) and Envoy running the filter.
struct CacheChain {
    envoy: Envoy,
    kiali: KialiStandIn,
    _apiserver: ApiServerStandIn,
    _tokens: TokenService,
    // The token file the credential injector reads, and its directory (dropped after Envoy).
    _bootstrap: BootstrapToken,
    _dir: tempfile::TempDir,
}

impl CacheChain {
    fn start(plugin_config: &str, cache: NamespaceCacheConfig) -> CacheChain {
        // The token source as users deploy it: the credential injector adds the bootstrap token.
        let dir = tempfile::tempdir().expect("a temporary directory");
        let bootstrap = BootstrapToken::create(dir.path()).expect("write the bootstrap token");
        let tokens = TokenService::start();
        tokens.set_required_bearer(None);
        bootstrap.accepted_by(&tokens);
        let rules = ImpersonationRules::deployed().expect("deploy/02-impersonator.yaml");
        let apiserver = ApiServerStandIn::start_with_namespaces(rules, kiali_cache::authenticator(), access())
            .expect("start the API server stand-in");
        let kiali = KialiStandIn::start_with_namespaces(apiserver.addr(), cache).expect("start the Kiali stand-in");
        let envoy = Envoy::start(&injected_config(plugin_config, tokens.addr(), &bootstrap, 1, kiali.addr()));
        CacheChain { envoy, kiali, _apiserver: apiserver, _tokens: tokens, _bootstrap: bootstrap, _dir: dir }
    }

    /// The namespace names Kiali answered `request` with, through Envoy.
    fn namespaces(&self, request: &ClientRequest) -> BTreeSet<String> {
        let response = send(&self.envoy, request);
        assert_eq!(response.status, 200, "{}", response.text());
        kiali_cache::names_in_answer(&response.body).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// What two requests saw, in order, through one chain.
#[derive(Debug)]
struct Seen {
    first: BTreeSet<String>,
    second: BTreeSet<String>,
    /// The bearer Kiali received for each.
    bearers: Vec<String>,
    /// Whether Kiali answered each from its namespace cache.
    hits: Vec<bool>,
}

/// `first`, then `pause`, then `second`, through Envoy with `plugin_config` in front of a Kiali
/// whose namespace cache is `cache`.
fn first_then_second(plugin_config: &str, cache: NamespaceCacheConfig, first: ClientRequest, pause: Duration, second: ClientRequest) -> Seen {
    let chain = CacheChain::start(plugin_config, cache);
    let first = chain.namespaces(&first);
    std::thread::sleep(pause);
    let second = chain.namespaces(&second);
    let bearers = chain.kiali.requests().iter().map(|r| r.header_str("authorization").unwrap_or_default()).collect();
    let hits = chain.kiali.namespace_service().expect("namespace service").lookups().iter().map(|l| l.hit).collect();
    Seen { first, second, bearers, hits }
}

/// alice, then bob right away (well within the cache's lifetime).
fn alice_then_bob(plugin_config: &str, cache: NamespaceCacheConfig) -> Seen {
    first_then_second(plugin_config, cache, alice(), Duration::ZERO, bob())
}

/// Kiali up to v2.29.x with today's one shared token: bob is shown alice's namespaces.
#[test]
fn one_shared_token_serves_alices_namespace_list_to_bob() {
    let seen = alice_then_bob(&plugin_config(""), NamespaceCacheConfig::kiali_2_29());
    assert_eq!(seen.bearers.len(), 2, "{seen:?}");
    assert_eq!(seen.bearers[0], seen.bearers[1], "one token for both users");
    assert_eq!(seen.first, alices_own());
    assert_ne!(alices_own(), bobs_own());
    assert_eq!(seen.second, alices_own(), "bob got alice's list from the cache, not his own {:?}", bobs_own());
    assert_eq!(seen.hits, [false, true]);
}

/// The control for the case above: with the cache off (`cache_token_namespace_duration: 0`) the
/// same chain gives bob his own list, so the leak is the cache's.
#[test]
fn without_the_namespace_cache_bob_gets_his_own_list() {
    let seen = alice_then_bob(&plugin_config(""), NamespaceCacheConfig::kiali_2_29().duration_seconds(0));
    assert_eq!(seen.bearers[0], seen.bearers[1], "one token for both users");
    assert_eq!((seen.first, seen.second), (alices_own(), bobs_own()));
    assert_eq!(seen.hits, [false, false]);
}

/// The leak lasts the cache's lifetime: once alice's entry is swept (at most duration + sweep
/// interval after it was stored), bob gets his own list.
#[test]
fn after_the_cache_duration_bob_gets_his_own_list() {
    let cache = NamespaceCacheConfig::kiali_2_29().duration_seconds(1).sweep_interval(Duration::from_millis(500));
    let seen = first_then_second(&plugin_config(""), cache, alice(), Duration::from_millis(1800), bob());
    assert_eq!(seen.bearers[0], seen.bearers[1], "one token for both users");
    assert_eq!((seen.first, seen.second), (alices_own(), bobs_own()));
    assert_eq!(seen.hits, [false, false]);
}

/// Kiali v2.30.0 (PR #10039) keys the cache by the impersonated user: the shared token no longer
/// mixes alice and bob.
#[test]
fn kiali_2_30_keys_the_cache_by_user_so_bob_gets_his_own_list() {
    let seen = alice_then_bob(&plugin_config(""), NamespaceCacheConfig::kiali_2_30());
    assert_eq!(seen.bearers[0], seen.bearers[1], "one token for both users");
    assert_eq!((seen.first, seen.second), (alices_own(), bobs_own()));
    assert_eq!(seen.hits, [false, false]);
}

/// Kiali v2.30.0's key is the user name alone: alice's list as a member of `dev` is served to
/// alice without `dev` for the cache's lifetime. The key ignores the bearer when Kiali
/// impersonates, so no token choice in the filter changes this.
#[test]
fn kiali_2_30_serves_one_users_list_across_a_change_of_groups() {
    let seen = first_then_second(&plugin_config(""), NamespaceCacheConfig::kiali_2_30(), alice(), Duration::ZERO, user("alice", ""));
    assert_eq!(seen.first, alices_own());
    assert_ne!(set(&["bookinfo"]), alices_own(), "alice without dev may read bookinfo only");
    assert_eq!(seen.second, alices_own());
    assert_eq!(seen.hits, [false, true]);
}

/// The fix for Kiali up to v2.29.x: `token_source.per_identity` gives each identity its own
/// bearer, so the cache keyed by bearer keeps alice's list to alice.
#[test]
fn per_identity_gives_bob_his_own_list() {
    let seen = alice_then_bob(&plugin_config(r#""per_identity":true"#), NamespaceCacheConfig::kiali_2_29());
    assert_eq!(seen.bearers.len(), 2, "{seen:?}");
    assert_ne!(seen.bearers[0], seen.bearers[1], "a token per identity");
    assert_eq!((seen.first, seen.second), (alices_own(), bobs_own()));
    assert_eq!(seen.hits, [false, false]);
}

/// Up to v2.29.x the identity is the whole identity, groups included: alice without `dev` gets
/// another token, so not the list she could read as a member of `dev` (which v2.30.0's key by
/// user name serves her, see above).
#[test]
fn per_identity_keeps_a_change_of_groups_apart_on_kiali_2_29() {
    let seen = first_then_second(
        &plugin_config(r#""per_identity":true"#),
        NamespaceCacheConfig::kiali_2_29(),
        alice(),
        Duration::ZERO,
        user("alice", ""),
    );
    assert_ne!(seen.bearers[0], seen.bearers[1]);
    assert_eq!(seen.first, alices_own());
    assert_eq!(seen.second, set(&["bookinfo"]));
    assert_eq!(seen.hits, [false, false]);
}
