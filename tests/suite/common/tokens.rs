//! The token source as users deploy it (README, deploy/, envoy.yaml): the plugin configuration
//! has no `credential_env`; Envoy's upstream credential injector on the token cluster
//! (`envoy.filters.http.credential_injector` with `envoy.http.injected_credentials.generic`, the
//! bootstrap token an SDS generic secret read from a kubelet-style token file) puts the bootstrap
//! credential on the filter's TokenRequest. See `harness::envoy::EnvoyConfig::bootstrap_credential`.

use harness::bootstrap_token::BootstrapToken;
use std::net::SocketAddr;

use harness::{EchoUpstream, Envoy, EnvoyConfig, Filter, TokenService};

/// Istio's name for the cluster of the API server (`kubernetes.default.svc.cluster.local:443`).
pub const TOKEN_CLUSTER: &str = "outbound|443||kubernetes.default.svc.cluster.local";

/// Envoy with the filter in front of an echo upstream, the token cluster pointing at `tokens`,
/// and the bootstrap credential injected on that cluster.
pub struct TokenSetup {
    pub upstream: EchoUpstream,
    pub tokens: TokenService,
    pub envoy: Envoy,
    /// The token file the injector reads; `tokens` accepts its current token.
    pub bootstrap: BootstrapToken,
    // Holds the token file's directory until the test ends (dropped after Envoy).
    _dir: tempfile::TempDir,
}

/// `EnvoyConfig` for [`start_injected`], for callers that add to it.
pub fn injected_config(
    plugin_config: &str,
    token_service: SocketAddr,
    bootstrap: &BootstrapToken,
    workers: u32,
    upstream: SocketAddr,
) -> EnvoyConfig {
    EnvoyConfig::proxy(upstream)
        .concurrency(workers)
        .token_cluster(TOKEN_CLUSTER, token_service)
        .bootstrap_credential(TOKEN_CLUSTER, bootstrap)
        .filter(Filter::wasm(plugin_config))
}

/// Starts Envoy as users deploy it. `tokens` is made to accept the bootstrap token (until it
/// expires), and no other.
pub fn start_injected(plugin_config: &str, tokens: TokenService, workers: u32) -> TokenSetup {
    start_injected_with(plugin_config, tokens, workers, |config| config)
}

/// [`start_injected`] with a last change to the Envoy configuration.
pub fn start_injected_with(
    plugin_config: &str,
    tokens: TokenService,
    workers: u32,
    change: impl FnOnce(EnvoyConfig) -> EnvoyConfig,
) -> TokenSetup {
    assert!(
        !plugin_config.contains("credential_env"),
        "the injected path carries no credential_env"
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let bootstrap = BootstrapToken::create(dir.path()).expect("write the bootstrap token");
    tokens.set_required_bearer(None);
    bootstrap.accepted_by(&tokens);
    let upstream = EchoUpstream::start();
    let config = change(injected_config(plugin_config, tokens.addr(), &bootstrap, workers, upstream.addr()));
    let envoy = Envoy::start(&config);
    TokenSetup { upstream, tokens, envoy, bootstrap, _dir: dir }
}
