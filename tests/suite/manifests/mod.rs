//! Checks every deployment file in the repository without a cluster, Docker or Envoy, the way
//! the API server would see it:
//!
//! - `yaml`: files are read as kubectl reads them (YAML 1.1 typing of unquoted scalars), so an
//!   unquoted all-digit `sha256` is the number kubectl sends, not a string;
//! - `crds`: every document under `deploy/` whose apiVersion/kind has a CRD in `deploy/schemas/`
//!   is validated against it (`schema`: JSON Schema via the `jsonschema` crate, undeclared fields
//!   rejected where the API server would prune them; `cel`: the CRDs' CEL rules and list types),
//!   and every plugin configuration embedded in one goes through the filter's own validator;
//! - `plugins`: the WasmPlugin and TrafficExtension say the same thing;
//! - `installers`: selectors, the token RoleBinding and the Kiali CR patch against the way the
//!   Helm chart and the operator build Kiali's pod (tests/suite/models/kiali_installers.rs);
//! - `paths`: every repository path named in README.md, docs/*.md, deploy/README.md and YAML
//!   comments exists, and the top-level wasmplugin.yaml is deploy/istio/wasmplugin.yaml;
//! - `rbac`: least privilege and the cross-references between `deploy/*.yaml` and the plugin;
//! - `kustomize`: `kubectl kustomize deploy/` renders, and every rendered object validates;
//! - `envoy_files`: the Envoy configurations, docker-compose.yaml and the Dockerfile.

mod cel;
mod crds;
mod envoy_files;
mod files;
mod installers;
pub(crate) use crate::models::istio_ambient;
pub(crate) use crate::models::istio_releases;
pub(crate) use crate::models::kiali_installers;
mod kubernetes;
mod kustomize;
mod paths;
mod plugins;
mod rbac;
mod schema;
mod standalone;
mod versions;
mod yaml;

use kiali_header_auth::config::{FilterConfig, TokenSourceKind};
use serde_json::Value;

pub const WASMPLUGIN: &str = "deploy/istio/wasmplugin.yaml";
pub const TRAFFIC_EXTENSION: &str = "deploy/istio/trafficextension.yaml";
pub const JWT_WASMPLUGIN: &str = "deploy/components/jwt/jwt-wasmplugin.yaml";
pub const SERVICE_ACCOUNT_CA: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
/// The EnvoyFilter that puts the rotated bootstrap token on the sidecar's token cluster.
pub const CREDENTIAL_INJECTOR: &str = "deploy/istio/envoyfilter-credential-injector.yaml";
/// Where the projected bootstrap token and its SDS resource are mounted in the pod.
pub const BOOTSTRAP_DIR: &str = "/var/run/secrets/kiali-header-auth";

pub fn wasmplugin() -> Value {
    files::yaml_file(WASMPLUGIN)
}

pub fn plugin_config(bytes: &[u8], origin: &str) -> FilterConfig {
    FilterConfig::from_json(bytes).unwrap_or_else(|e| panic!("{origin}: {e}"))
}

pub fn wasmplugin_config() -> FilterConfig {
    let doc = wasmplugin();
    let bytes = serde_json::to_vec(&doc["spec"]["pluginConfig"]).unwrap_or_default();
    plugin_config(&bytes, &format!("{WASMPLUGIN} spec.pluginConfig"))
}

/// (namespace, service account, cluster) of a kubernetes_token_request source.
pub fn token_source(config: &FilterConfig) -> (String, String, String) {
    let source = config.token_source.as_ref().expect("token_source");
    match &source.kind {
        TokenSourceKind::KubernetesTokenRequest {
            namespace,
            service_account,
            ..
        } => (
            namespace.clone(),
            service_account.clone(),
            source.cluster.clone(),
        ),
        other => panic!("expected kubernetes_token_request, got {other:?}"),
    }
}
