//! `trusted_peers.principals` against a real mTLS peer: Envoy's listener requires a client
//! certificate whose URI SAN is the peer's SPIFFE ID (see `common::mtls`).

use crate::common;

use common::mtls::MtlsEnvoy;
use common::*;
use harness::{EchoUpstream, EnvoyConfig};

const GATEWAY: &str = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account";

fn start(principal: &str) -> (EchoUpstream, MtlsEnvoy) {
    let upstream = EchoUpstream::start();
    let plugin_config = format!(
        r#"{{"identity":{{"preset":"oauth2-proxy"}},"trusted_peers":{{"principals":["{principal}"]}}}}"#
    );
    let config = EnvoyConfig::proxy(upstream.addr()).filter(wasm_filter(&plugin_config));
    let mtls = MtlsEnvoy::start(&config, GATEWAY);
    (upstream, mtls)
}

#[test]
fn a_listed_principal_is_trusted_and_another_is_not() {
    let identity = [("X-Forwarded-User", "alice"), ("X-Forwarded-Groups", "dev")];
    let (upstream, mtls) = start(GATEWAY);
    assert_eq!(mtls.get("/", &identity, true), "200", "{}", mtls.envoy.log());
    assert_eq!(text_values(&upstream.last().unwrap(), "impersonate-user"), vec!["alice"]);
    drop(mtls);

    let (upstream, mtls) = start("spiffe://cluster.local/ns/oauth2-proxy/sa/oauth2-proxy");
    assert_eq!(mtls.get("/", &identity, true), "403");
    assert_eq!(upstream.count(), 0);
}
