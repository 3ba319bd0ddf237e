//! Every Envoy bootstrap in the repository passes `envoy --mode validate` with the built wasm, and
//! every plugin configuration in it passes the filter's own validator.

use std::path::{Path, PathBuf};

use kiali_header_auth::config::FilterConfig;

/// Paths inside container images or pods, replaced by local files for validation.
const CONTAINER_WASM: &str = "/etc/envoy/kiali_header_auth.wasm";
const POD_CA: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
/// Where the bootstrap token and its SDS resource live: in the pod (projected volume) and for
/// `make run`. Envoy's validation reads the SDS file, so it is replaced by a local one.
const BOOTSTRAP_TOKEN_DIRS: [&str; 2] = ["/var/run/secrets/kiali-header-auth", "/tmp/kiali-header-auth-demo"];

fn envoy_bootstraps() -> Vec<PathBuf> {
    harness::paths::repository_files()
        .into_iter()
        .filter(|path| path.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .filter(|path| {
            std::fs::read_to_string(path).is_ok_and(|text| text.contains("static_resources:"))
        })
        .collect()
}

fn localised(path: &Path, bootstrap: &harness::bootstrap_token::BootstrapToken) -> PathBuf {
    let root = harness::paths::repo_root();
    let mut text = std::fs::read_to_string(path).unwrap();
    for dir in BOOTSTRAP_TOKEN_DIRS {
        text = text.replace(dir, &bootstrap.dir().to_string_lossy());
    }
    let wasm = harness::paths::wasm_path();
    let ca = root.join("tests/fixtures/test-ca.crt");
    let text = text
        .replace(CONTAINER_WASM, &wasm.to_string_lossy())
        .replace(POD_CA, &ca.to_string_lossy())
        .replace(
            "filename: target/wasm32-wasip1/release/kiali_header_auth.wasm",
            &format!("filename: {}", wasm.to_string_lossy()),
        );
    let relative = path.strip_prefix(&root).unwrap_or(path);
    let out = std::env::temp_dir().join(format!(
        "kha-validate-{}-{}",
        std::process::id(),
        relative.to_string_lossy().replace('/', "_")
    ));
    std::fs::write(&out, text).unwrap();
    out
}

fn plugin_configurations(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut found = Vec::new();
    collect_plugin_configs(&yaml, &mut found);
    found
}

fn collect_plugin_configs(value: &serde_yaml::Value, out: &mut Vec<String>) {
    match value {
        serde_yaml::Value::Mapping(map) => {
            let is_wasm = map
                .get("@type")
                .and_then(|t| t.as_str())
                .is_some_and(|t| t.ends_with("filters.http.wasm.v3.Wasm"));
            if is_wasm {
                let value = map
                    .get("config")
                    .and_then(|c| c.get("configuration"))
                    .and_then(|c| c.get("value"))
                    .and_then(|v| v.as_str())
                    .unwrap_or("");
                out.push(value.to_string());
            }
            for (_, child) in map {
                collect_plugin_configs(child, out);
            }
        }
        serde_yaml::Value::Sequence(items) => {
            for child in items {
                collect_plugin_configs(child, out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_envoy_config_validates() {
    let configs = envoy_bootstraps();
    let root = harness::paths::repo_root();
    assert!(
        configs.iter().any(|p| p == &root.join("envoy.yaml")),
        "envoy.yaml must be among {configs:?}"
    );
    let bootstrap_dir = tempfile::tempdir().unwrap();
    let bootstrap = harness::bootstrap_token::BootstrapToken::create(bootstrap_dir.path()).unwrap();
    for config in &configs {
        let local = localised(config, &bootstrap);
        let result = harness::envoy::validate(&local);
        let _ = std::fs::remove_file(&local);
        if let Err(message) = result {
            panic!("{} does not validate:\n{message}", config.display());
        }
        println!("validated {}", config.display());
    }
}

#[test]
fn every_embedded_plugin_configuration_is_valid() {
    let mut checked = 0;
    for config in envoy_bootstraps() {
        for plugin in plugin_configurations(&config) {
            if let Err(error) = FilterConfig::from_json(plugin.as_bytes()) {
                panic!("{}: {error}", config.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 1);
}

#[test]
fn make_run_config_is_full_impersonation() {
    let root = harness::paths::repo_root();
    let plugins = plugin_configurations(&root.join("envoy.yaml"));
    assert_eq!(plugins.len(), 1);
    let config = FilterConfig::from_json(plugins[0].as_bytes()).unwrap();
    assert_eq!(
        config.mode(),
        kiali_header_auth::config::Mode::FullImpersonation
    );
}

/// The `http_filters` lists of a bootstrap, each as the filter entries in order.
fn filter_chains(value: &serde_yaml::Value, out: &mut Vec<Vec<serde_yaml::Value>>) {
    match value {
        serde_yaml::Value::Mapping(map) => {
            for (key, child) in map {
                if key.as_str() == Some("http_filters") {
                    if let Some(list) = child.as_sequence() {
                        out.push(list.clone());
                    }
                }
                filter_chains(child, out);
            }
        }
        serde_yaml::Value::Sequence(items) => items.iter().for_each(|child| filter_chains(child, out)),
        _ => {}
    }
}

/// A plugin configuration that checks the peer's address (`trusted_peers.source_cidrs`) or sends
/// it (`source_address` audit extra) needs Envoy's `set_filter_state` to record the direct TCP
/// peer before the filter runs; without it every request is refused. Each shipped bootstrap
/// that needs it has it, ahead of the wasm filter, storing exactly what the filter reads.
#[test]
fn bootstraps_that_use_the_peer_address_record_the_direct_peer_first() {
    let key = kiali_header_auth::identity::DIRECT_PEER_FILTER_STATE;
    let mut needing = 0;
    for path in envoy_bootstraps() {
        let yaml: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut chains = Vec::new();
        filter_chains(&yaml, &mut chains);
        for chain in chains {
            let mut recorded = false;
            for filter in &chain {
                let config = &filter["typed_config"];
                let type_name = config["@type"].as_str().unwrap_or_default();
                if type_name.ends_with("filters.http.set_filter_state.v3.Config") {
                    recorded |= config["on_request_headers"].as_sequence().into_iter().flatten().any(|entry| {
                        entry["object_key"].as_str() == Some(key)
                            && entry["format_string"]["text_format_source"]["inline_string"].as_str()
                                == Some("%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%")
                    });
                }
                if type_name.ends_with("filters.http.wasm.v3.Wasm") {
                    let plugin = config["config"]["configuration"]["value"].as_str().unwrap_or_default();
                    let parsed = FilterConfig::from_json(plugin.as_bytes()).unwrap();
                    let uses_address = parsed.trusted_peers.as_ref().is_some_and(|peers| peers.checks_address())
                        || parsed.identity.as_ref().is_some_and(|identity| {
                            identity
                                .audit_extras
                                .iter()
                                .any(|extra| extra.fact == kiali_header_auth::config::ConnectionFact::SourceAddress)
                        });
                    if uses_address {
                        needing += 1;
                        assert!(recorded, "{}: the filter uses the peer address but no set_filter_state records it before it", path.display());
                    }
                }
            }
        }
    }
    assert!(needing >= 3, "envoy-jwt.yaml and deploy/envoy/*.yaml use the peer address ({needing} found)");
}
