//! The whole chain a request crosses in production, with stand-ins that read headers the way the
//! real systems do: client -> Envoy [filters] -> Kiali (`harness::kiali::KialiStandIn`, the
//! header strategy and client-go) -> API server (`harness::apiserver::ApiServerStandIn`, its
//! impersonation filter and the RBAC rules of `deploy/02-impersonator.yaml`). The filter runs in
//! full-impersonation mode against a token service stand-in, so Kiali receives the issued bearer;
//! the bootstrap credential comes from Envoy's credential injector on the token cluster, as users
//! deploy it (no `credential_env`). Tests assert on what the API server finally believes (user,
//! groups, extras).

use harness::apiserver::{ApiServerStandIn, ImpersonationRules, UserInfo};
use harness::bootstrap_token::BootstrapToken;
use harness::kiali::KialiStandIn;
use harness::{Envoy, EnvoyConfig, Filter, Response, TokenService};

pub const TOKEN_CLUSTER: &str = super::tokens::TOKEN_CLUSTER;

pub struct Chain {
    pub tokens: TokenService,
    pub kiali: KialiStandIn,
    pub envoy: Envoy,
    // Dropped after Kiali, which calls it.
    _apiserver: Option<ApiServerStandIn>,
    /// The bootstrap token file the injector reads (its directory lives as long as the chain).
    pub bootstrap: BootstrapToken,
    _bootstrap_dir: tempfile::TempDir,
}

/// The plugin configuration `{<fields>, "token_source": ...}` with the self-check off, unless
/// `fields` sets `rbac_check` itself.
pub fn full_config(fields: &str) -> String {
    let rbac = if fields.contains("\"rbac_check\"") { "" } else { r#","rbac_check":"off""# };
    format!(
        r#"{{{fields}{rbac},"token_source":{{"type":"kubernetes_token_request","cluster":"{TOKEN_CLUSTER}",
            "namespace":"kiali-auth","service_account":"kiali-impersonator","timeout_ms":2000}}}}"#
    )
}

impl Chain {
    /// The chain with the API server enforcing `deploy/02-impersonator.yaml`.
    pub fn start(fields: &str, before_filter: Vec<Filter>) -> Chain {
        Self::start_with_rules(fields, before_filter, None)
    }

    /// `rules`: the impersonation rules the API server enforces instead of the deployed ones.
    pub fn start_with_rules(fields: &str, before_filter: Vec<Filter>, rules: Option<ImpersonationRules>) -> Chain {
        let bootstrap_dir = tempfile::tempdir().expect("a temporary directory");
        let bootstrap = BootstrapToken::create(bootstrap_dir.path()).expect("write the bootstrap token");
        let tokens = TokenService::start();
        bootstrap.accepted_by(&tokens);
        let (kiali, apiserver) = match rules {
            None => (KialiStandIn::start(), None),
            Some(rules) => {
                let apiserver = ApiServerStandIn::start_with(rules, harness::apiserver::default_authenticator())
                    .expect("start the API server stand-in");
                let kiali = KialiStandIn::start_for(apiserver.addr()).expect("start the Kiali stand-in");
                (kiali, Some(apiserver))
            }
        };
        let mut config = EnvoyConfig::proxy(kiali.addr())
            .token_cluster(TOKEN_CLUSTER, tokens.addr())
            .bootstrap_credential(TOKEN_CLUSTER, &bootstrap);
        for filter in before_filter {
            config = config.add_filter(filter);
        }
        config = config.add_filter(Filter::wasm(full_config(fields)));
        let envoy = Envoy::start(&config);
        Chain { tokens, kiali, envoy, _apiserver: apiserver, bootstrap, _bootstrap_dir: bootstrap_dir }
    }

    /// What the API server believed for `response` (a response from Kiali through Envoy); panics
    /// with the body when the request did not get that far or the API server refused it.
    pub fn believed(&self, response: &Response) -> UserInfo {
        assert_eq!(response.status, 200, "{}", response.text());
        harness::kiali::believed_user_in(response.body.as_slice())
            .unwrap_or_else(|| panic!("the API server believed no one: {}", response.text()))
    }
}

/// `UserInfo` as the API server builds it for an impersonated user: the groups given, then
/// `system:authenticated` (impersonation.go adds it).
pub fn user(name: &str, groups: &[&str], extra: &[(&str, &[&str])]) -> UserInfo {
    let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    groups.push("system:authenticated".to_string());
    UserInfo {
        name: name.to_string(),
        uid: String::new(),
        groups,
        extra: extra.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect(),
    }
}
