//! The Envoy configurations (`envoy.yaml`, `deploy/envoy/envoy.yaml`,
//! `deploy/docker-compose/envoy.yaml`), `docker-compose.yaml` and the `Dockerfile`: each plugin
//! configuration through the filter's own validator, token clusters and credentials that exist,
//! the compose copy in step with the root one.

use std::collections::{BTreeMap, BTreeSet};

use kiali_header_auth::config::{FilterConfig, Mode, TokenSourceKind};
use serde_json::{json, Value};

use crate::manifests::files::{read, strings, yaml_file};
use crate::manifests::{plugin_config, token_source, wasmplugin_config, SERVICE_ACCOUNT_CA};

const WASM_FILTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const STRING_VALUE_TYPE: &str = "type.googleapis.com/google.protobuf.StringValue";
const TLS_CONTEXT_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
/// The mapped user as the upstream receives it (the filter state costs a host call per request).
const ACCESS_LOG_USER: &str = "%REQ(IMPERSONATE-USER)%";

/// Every Wasm HTTP filter `config` object in an Envoy bootstrap.
pub fn wasm_filter_configs(bootstrap: &Value) -> Vec<Value> {
    fn walk(value: &Value, found: &mut Vec<Value>) {
        match value {
            Value::Object(fields) => {
                if fields.get("@type").and_then(Value::as_str) == Some(WASM_FILTER_TYPE) {
                    found.push(fields.get("config").cloned().unwrap_or(Value::Null));
                }
                fields.values().for_each(|v| walk(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(bootstrap, &mut found);
    found
}

pub fn configuration_string(config: &Value, origin: &str) -> String {
    let configuration = &config["configuration"];
    assert_eq!(
        configuration["@type"], STRING_VALUE_TYPE,
        "{origin}: configuration must be a StringValue"
    );
    configuration["value"]
        .as_str()
        .unwrap_or_else(|| panic!("{origin}: configuration.value"))
        .to_string()
}

/// (filter `config` object, compiled plugin configuration) for every Wasm filter in the file.
pub fn envoy_plugin_configs(relative: &str) -> Vec<(Value, FilterConfig)> {
    let bootstrap = yaml_file(relative);
    let configs = wasm_filter_configs(&bootstrap);
    assert!(!configs.is_empty(), "{relative}: no Wasm filter found");
    configs
        .into_iter()
        .map(|config| {
            let value = configuration_string(&config, relative);
            let compiled = plugin_config(value.as_bytes(), relative);
            (config, compiled)
        })
        .collect()
}

fn cluster<'a>(bootstrap: &'a Value, name: &str) -> Option<&'a Value> {
    bootstrap["static_resources"]["clusters"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

fn socket_addresses(cluster: &Value) -> Vec<(String, u64)> {
    let mut addresses = Vec::new();
    for locality in cluster["load_assignment"]["endpoints"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        for endpoint in locality["lb_endpoints"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let socket = &endpoint["endpoint"]["address"]["socket_address"];
            addresses.push((
                socket["address"].as_str().unwrap_or("").to_string(),
                socket["port_value"].as_u64().unwrap_or(0),
            ));
        }
    }
    addresses
}

pub const ENVOY_FILES: &[&str] = &[
    "envoy.yaml",
    "deploy/envoy/envoy.yaml",
    "deploy/docker-compose/envoy.yaml",
];

#[test]
fn every_envoy_config_has_a_valid_plugin_its_token_cluster_and_credential() {
    for relative in ENVOY_FILES {
        let bootstrap = yaml_file(relative);
        for (config, compiled) in envoy_plugin_configs(relative) {
            assert_eq!(compiled.mode(), Mode::FullImpersonation, "{relative}");
            let source = compiled.token_source.as_ref().unwrap();
            // dispatch_http_call answers BadArgument for a cluster Envoy does not have.
            let token_cluster = cluster(&bootstrap, &source.cluster).unwrap_or_else(|| {
                panic!(
                    "{relative}: token_source.cluster {:?} is not defined",
                    source.cluster
                )
            });
            assert!(
                !socket_addresses(token_cluster).is_empty(),
                "{relative}: {} has no endpoint",
                source.cluster
            );
            if let TokenSourceKind::KubernetesTokenRequest {
                credential_env: Some(name),
                ..
            } = &source.kind
            {
                let env = &config["vm_config"]["environment_variables"];
                let provided = strings(&env["host_env_keys"]).contains(name)
                    || env["key_values"].get(name).is_some();
                assert!(provided, "{relative}: {name} is not given to the Wasm VM");
            }
            let code = config["vm_config"]["code"]["local"]["filename"].as_str();
            assert!(
                code.is_some_and(|f| f.ends_with("kiali_header_auth.wasm")),
                "{relative}: code {code:?}"
            );
        }
        let text = read(relative);
        assert!(
            text.contains(ACCESS_LOG_USER),
            "{relative}: the access log should show the mapped user"
        );
    }
}

#[test]
fn production_envoy_example_uses_tls_and_the_host_environment() {
    let relative = "deploy/envoy/envoy.yaml";
    let bootstrap = yaml_file(relative);
    let (config, compiled) = envoy_plugin_configs(relative).remove(0);
    assert_eq!(
        config["vm_config"]["code"]["local"]["filename"],
        "/etc/envoy/kiali_header_auth.wasm"
    );
    assert!(
        config["vm_config"]["environment_variables"].is_null(),
        "{relative}: no credential passes through the VM environment"
    );
    assert_eq!(config["failure_policy"], json!("FAIL_CLOSED"));

    // The plugin asks for the same identity as the Istio deployment, so deploy/ RBAC fits both.
    let (namespace, service_account, _) = token_source(&compiled);
    let (plugin_namespace, plugin_service_account, _) = token_source(&wasmplugin_config());
    assert_eq!(
        (namespace, service_account),
        (plugin_namespace, plugin_service_account)
    );

    let source = compiled.token_source.as_ref().unwrap();
    let api = cluster(&bootstrap, &source.cluster).unwrap();
    assert_eq!(
        socket_addresses(api),
        vec![("kubernetes.default.svc.cluster.local".to_string(), 443)]
    );
    let injector = &api["typed_extension_protocol_options"]
        ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["http_filters"][0];
    assert_eq!(injector["name"], "envoy.filters.http.credential_injector");
    assert_eq!(
        injector["typed_config"]["credential"]["typed_config"]["credential"]["sds_config"]
            ["path_config_source"]["watched_directory"]["path"],
        crate::manifests::BOOTSTRAP_DIR,
        "{relative}: the projected token's directory"
    );
    let tls = &api["transport_socket"]["typed_config"];
    assert_eq!(
        tls["@type"], TLS_CONTEXT_TYPE,
        "{relative}: the API server only speaks TLS"
    );
    assert_eq!(tls["sni"], source.authority.as_str());
    let validation = &tls["common_tls_context"]["validation_context"];
    assert_eq!(validation["trusted_ca"]["filename"], SERVICE_ACCOUNT_CA);
    assert_eq!(
        validation["match_typed_subject_alt_names"],
        json!([{ "san_type": "DNS", "matcher": { "exact": source.authority } }]),
        "{relative}: check the API server's name, not only its CA"
    );

    let kiali = cluster(&bootstrap, "kiali").expect("a kiali cluster");
    assert_eq!(
        socket_addresses(kiali),
        vec![("kiali.istio-system.svc.cluster.local".to_string(), 20001)]
    );

    // Loopback only, and the filter agrees.
    let listener = &bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"];
    assert_eq!(listener["address"], "127.0.0.1");
    let peers = compiled.trusted_peers.as_ref().expect("trusted_peers");
    assert!(peers.admits(None, Some(b"127.0.0.1:43210")));
    assert!(!peers.admits(None, Some(b"10.1.2.3:43210")));
}

#[test]
fn compose_envoy_plugin_config_equals_the_root_one() {
    let parse = |relative: &str| -> Vec<Value> {
        wasm_filter_configs(&yaml_file(relative))
            .iter()
            .map(|config| serde_json::from_str(&configuration_string(config, relative)).unwrap())
            .collect()
    };
    assert_eq!(
        parse("deploy/docker-compose/envoy.yaml"),
        parse("envoy.yaml"),
        "deploy/docker-compose/envoy.yaml and envoy.yaml must run the same plugin configuration"
    );
}

/// Leaf-by-leaf differences between two JSON trees, as (path with [*] for indices, left, right).
/// Differences in shape (a key or item on one side only, different types) are reported at the
/// node where they start.
fn differences(left: &Value, right: &Value, path: &str, out: &mut Vec<(String, Value, Value)>) {
    match (left, right) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let sub = if path.is_empty() {
                    key.to_string()
                } else {
                    format!("{path}.{key}")
                };
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => differences(x, y, &sub, out),
                    (x, y) => out.push((
                        sub,
                        x.cloned().unwrap_or(Value::Null),
                        y.cloned().unwrap_or(Value::Null),
                    )),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (x, y) in a.iter().zip(b) {
                differences(x, y, &format!("{path}[*]"), out);
            }
        }
        _ if left != right => out.push((path.to_string(), left.clone(), right.clone())),
        _ => {}
    }
}

#[test]
fn compose_envoy_differs_from_the_root_one_only_in_addresses() {
    const ALLOWED: &[&str] = &[
        "admin.address.socket_address.address",
        "static_resources.listeners[*].address.socket_address.address",
        "static_resources.listeners[*].filter_chains[*].filters[*].typed_config.http_filters[*].typed_config.config.vm_config.code.local.filename",
        "static_resources.clusters[*].type",
        "static_resources.clusters[*].load_assignment.endpoints[*].lb_endpoints[*].endpoint.address.socket_address.address",
    ];
    let mut found = Vec::new();
    differences(
        &yaml_file("envoy.yaml"),
        &yaml_file("deploy/docker-compose/envoy.yaml"),
        "",
        &mut found,
    );
    let unexpected: Vec<String> = found
        .iter()
        .filter(|(path, left, right)| {
            // The plugin configuration is compared as JSON, not as text.
            let same_json = path.ends_with("configuration.value")
                && left
                    .as_str()
                    .and_then(|l| serde_json::from_str::<Value>(l).ok())
                    == right
                        .as_str()
                        .and_then(|r| serde_json::from_str::<Value>(r).ok());
            !ALLOWED.contains(&path.as_str()) && !same_json
        })
        .map(|(path, left, right)| {
            format!("{path}: envoy.yaml has {left}, the compose copy {right}")
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "deploy/docker-compose/envoy.yaml must be envoy.yaml with only addresses changed: {unexpected:#?}"
    );
}

#[test]
fn docker_compose_wires_envoy_to_the_stand_ins() {
    let compose = yaml_file("docker-compose.yaml");
    let services = compose["services"].as_object().expect("services");
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["envoy", "upstream", "token-service"])
    );

    let envoy = &services["envoy"];
    assert_eq!(envoy["image"], "envoyproxy/envoy:v1.40-latest");
    let mounts: BTreeMap<String, String> = strings(&envoy["volumes"])
        .iter()
        .map(|volume| {
            let parts: Vec<&str> = volume.split(':').collect();
            (parts[1].to_string(), parts[0].to_string())
        })
        .collect();
    assert_eq!(
        mounts.get("/etc/envoy/envoy.yaml").map(String::as_str),
        Some("./deploy/docker-compose/envoy.yaml")
    );
    let bootstrap = yaml_file("deploy/docker-compose/envoy.yaml");
    let (config, compiled) = envoy_plugin_configs("deploy/docker-compose/envoy.yaml").remove(0);
    let code = config["vm_config"]["code"]["local"]["filename"]
        .as_str()
        .unwrap();
    // The host side is the module `make wasm` builds, which the root envoy.yaml loads.
    let (root_config, _) = envoy_plugin_configs("envoy.yaml").remove(0);
    let built = root_config["vm_config"]["code"]["local"]["filename"]
        .as_str()
        .unwrap();
    assert_eq!(
        mounts.get(code),
        Some(&format!("./{built}")),
        "the module mount must match vm_config.code"
    );

    // Listener and admin on all interfaces inside the container, published on the host's loopback.
    assert_eq!(
        bootstrap["admin"]["address"]["socket_address"]["address"],
        "0.0.0.0"
    );
    let listener = &bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"];
    assert_eq!(listener["address"], "0.0.0.0");
    let published = strings(&envoy["ports"]);
    for port in [
        listener["port_value"].as_u64().unwrap(),
        bootstrap["admin"]["address"]["socket_address"]["port_value"]
            .as_u64()
            .unwrap(),
    ] {
        assert!(
            published.contains(&format!("127.0.0.1:{port}:{port}")),
            "port {port} not published: {published:?}"
        );
    }

    // Each cluster reaches a compose service by name, on the port that service's command opens.
    let token_cluster = compiled.token_source.as_ref().unwrap().cluster.clone();
    for (cluster_name, service, flag) in [
        ("kiali", "upstream", "--upstream-port"),
        (token_cluster.as_str(), "token-service", "--token-port"),
    ] {
        let cluster =
            cluster(&bootstrap, cluster_name).unwrap_or_else(|| panic!("cluster {cluster_name}"));
        assert_eq!(
            cluster["type"], "STRICT_DNS",
            "{cluster_name}: compose services are found by DNS"
        );
        let command = strings(&services[service]["command"]);
        let port: u64 = command
            .iter()
            .position(|arg| arg == flag)
            .and_then(|at| command.get(at + 1))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{service}: command has no {flag}: {command:?}"));
        assert_eq!(
            socket_addresses(cluster),
            vec![(service.to_string(), port)],
            "cluster {cluster_name}"
        );
        let bind = command
            .iter()
            .position(|arg| arg == "--bind")
            .and_then(|at| command.get(at + 1));
        assert_eq!(
            bind.map(String::as_str),
            Some("0.0.0.0"),
            "{service} must listen beyond its own loopback"
        );
        assert!(
            command.starts_with(&["cargo".to_string(), "run".to_string()])
                && command.contains(&"standins".to_string())
        );
    }
    let depends = strings(&envoy["depends_on"]);
    assert!(
        depends.contains(&"upstream".to_string()) && depends.contains(&"token-service".to_string())
    );
}

#[test]
fn dockerfile_builds_a_single_layer_compat_image() {
    let instructions: Vec<String> = read("Dockerfile")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect();
    assert_eq!(
        instructions,
        [
            "FROM scratch",
            "COPY dist/kiali_header_auth.wasm ./plugin.wasm"
        ],
        "Istio's compat layout: one layer holding plugin.wasm"
    );
    assert!(
        read("Makefile").contains("dist/kiali_header_auth.wasm"),
        "`make dist` must still write the file the Dockerfile copies"
    );
}
