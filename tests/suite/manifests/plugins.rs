//! The shipped plugin resources: the sidecar WasmPlugin, its TrafficExtension twin and the JWT
//! variant's WasmPlugin, aimed at Kiali only.

use kiali_header_auth::config::{Mode, TokenSourceKind};
use serde_json::{json, Value};

use crate::manifests::files::{read, yaml_file};
use crate::manifests::{
    wasmplugin, wasmplugin_config, BOOTSTRAP_DIR, CREDENTIAL_INJECTOR, JWT_WASMPLUGIN,
    TRAFFIC_EXTENSION, WASMPLUGIN,
};

#[test]
fn wasmplugin_targets_kiali_inbound_only() {
    let plugin = wasmplugin();
    let spec = &plugin["spec"];
    assert_eq!(
        spec["selector"],
        json!({ "matchLabels": { "app": "kiali", "app.kubernetes.io/instance": "kiali" } })
    );
    assert!(spec.get("targetRef").is_none() && spec.get("targetRefs").is_none());
    assert_eq!(spec["phase"], "AUTHN");
    assert_eq!(spec["failStrategy"], "FAIL_CLOSE");
    assert_eq!(spec["imagePullPolicy"], "IfNotPresent");
    assert_eq!(
        spec["match"],
        json!([{ "mode": "SERVER", "ports": [{ "number": 20001 }] }]),
        "the filter must only see inbound requests to Kiali's HTTP port, not Kiali's own outbound calls"
    );
    assert_eq!(plugin["metadata"]["namespace"], "istio-system");
}

#[test]
fn shipped_image_follows_the_crate_version_and_says_how_to_pin_it() {
    let expected = format!(
        "oci://ghcr.io/kiali-header-auth/kiali-header-auth:{}",
        env!("CARGO_PKG_VERSION")
    );
    for (file, wasm) in [
        (WASMPLUGIN, wasmplugin()["spec"].clone()),
        (
            TRAFFIC_EXTENSION,
            yaml_file(TRAFFIC_EXTENSION)["spec"]["wasm"].clone(),
        ),
        (JWT_WASMPLUGIN, yaml_file(JWT_WASMPLUGIN)["spec"].clone()),
    ] {
        assert_eq!(
            wasm["url"],
            expected.as_str(),
            "{file}: the tag must follow the crate version"
        );
        // "" is "not pinned": the file must be applied with the user's digest, and says so.
        assert_eq!(
            wasm["sha256"], "",
            "{file}: ship the unpinned placeholder, quoted"
        );
        assert!(
            read(file).contains("manifest digest"),
            "{file}: say which digest to pin"
        );
    }
    let kustomization = yaml_file("deploy/kustomization.yaml");
    let patch = kustomization["patches"][0]["patch"]
        .as_str()
        .unwrap_or_default();
    assert!(
        patch.contains("path: /spec/url") && patch.contains("path: /spec/sha256"),
        "deploy/kustomization.yaml: url and sha256 are what a user overrides: {patch}"
    );
}

#[test]
fn wasmplugin_plugin_config_is_valid_full_impersonation() {
    let config = wasmplugin_config();
    assert_eq!(config.mode(), Mode::FullImpersonation);
    let identity = config.identity.as_ref().expect("identity");
    assert_eq!(
        identity.user_header, "x-auth-request-user",
        "preset oauth2-proxy-auth-request"
    );
    let peers = config
        .trusted_peers
        .as_ref()
        .expect("trusted_peers must be set in the mesh");
    assert!(peers.checks_principal());
    let source = config.token_source.as_ref().expect("token_source");
    assert_eq!(
        source.cluster,
        "outbound|443||kubernetes.default.svc.cluster.local"
    );
    assert_eq!(source.authority, "kubernetes.default.svc");
    match &source.kind {
        TokenSourceKind::KubernetesTokenRequest {
            namespace,
            service_account,
            credential_env,
            ..
        } => {
            assert_eq!(namespace, "kiali-auth");
            assert_eq!(service_account, "kiali-impersonator");
            assert_eq!(
                credential_env.as_deref(),
                None,
                "no static credential: the cluster's credential injector adds a rotated one"
            );
        }
        other => panic!("expected a kubernetes_token_request source, got {other:?}"),
    }
}

#[test]
fn no_plugin_holds_a_credential_and_the_token_cluster_injects_one() {
    for (file, wasm) in [
        (WASMPLUGIN, wasmplugin()["spec"].clone()),
        (
            TRAFFIC_EXTENSION,
            yaml_file(TRAFFIC_EXTENSION)["spec"]["wasm"].clone(),
        ),
        (JWT_WASMPLUGIN, yaml_file(JWT_WASMPLUGIN)["spec"].clone()),
    ] {
        assert!(
            wasm["pluginConfig"]["token_source"]["credential_env"].is_null(),
            "{file}: no static bootstrap credential"
        );
        assert!(
            wasm["vmConfig"]["env"].is_null(),
            "{file}: no credential passes through the VM environment"
        );
    }
    let doc = wasmplugin();
    let source = wasmplugin_config().token_source.expect("token_source");
    let filter = yaml_file(CREDENTIAL_INJECTOR);
    assert_eq!(filter["kind"], "EnvoyFilter");
    assert_eq!(
        filter["metadata"]["namespace"],
        doc["metadata"]["namespace"]
    );
    assert_eq!(
        filter["spec"]["workloadSelector"]["labels"],
        doc["spec"]["selector"]["matchLabels"]
    );
    let patch = &filter["spec"]["configPatches"][0];
    assert_eq!(patch["applyTo"], "CLUSTER");
    assert_eq!(patch["match"]["cluster"]["name"], source.cluster.as_str());
    let filters = &patch["patch"]["value"]["typed_extension_protocol_options"]
        ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["http_filters"];
    assert_eq!(filters[0]["name"], "envoy.filters.http.credential_injector");
    assert_eq!(filters[1]["name"], "envoy.filters.http.upstream_codec");
    assert_eq!(
        filters[0]["typed_config"]["overwrite"], false,
        "the RBAC self-check's reviews must keep their own bearer"
    );
    let sds = &filters[0]["typed_config"]["credential"]["typed_config"]["credential"]["sds_config"]
        ["path_config_source"];
    assert_eq!(sds["path"], format!("{BOOTSTRAP_DIR}/sds.yaml"));
    assert_eq!(sds["watched_directory"]["path"], BOOTSTRAP_DIR);
}

/// The WasmPlugin fields a TrafficExtension keeps under `wasm:`.
const WASM_FIELDS: &[&str] = &[
    "type",
    "failStrategy",
    "url",
    "sha256",
    "imagePullPolicy",
    "vmConfig",
    "pluginConfig",
];

#[test]
fn traffic_extension_is_the_wasmplugin_in_the_new_api() {
    let plugin = wasmplugin();
    let extension = yaml_file(TRAFFIC_EXTENSION);
    assert_eq!(extension["metadata"], plugin["metadata"]);
    for field in ["selector", "match", "phase"] {
        assert_eq!(
            extension["spec"][field], plugin["spec"][field],
            "spec.{field}"
        );
    }
    let mut expected_wasm = serde_json::Map::new();
    for field in WASM_FIELDS {
        if let Some(value) = plugin["spec"].get(*field) {
            expected_wasm.insert(field.to_string(), value.clone());
        }
    }
    let mut expected_type = Value::Object(expected_wasm);
    // WasmPlugin's `type` defaults to HTTP; the TrafficExtension says it.
    expected_type["type"] = json!("HTTP");
    assert_eq!(extension["spec"]["wasm"], expected_type);
    let spec_fields: Vec<&String> = extension["spec"]
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(spec_fields, ["match", "phase", "selector", "wasm"]);
}

/// Issue 11: no file in the repository configures a static bootstrap secret: no long-lived
/// ServiceAccount token Secret, no credential passed to the VM from the environment.
#[test]
fn no_configuration_in_the_repository_holds_a_static_bootstrap_secret() {
    let mut checked = 0;
    for path in harness::paths::repository_files() {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !(name.ends_with(".yaml") || name.ends_with(".yml") || name == "Makefile") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for needle in [
            "credential_env",
            "host_env_keys",
            "kubernetes.io/service-account-token",
        ] {
            assert!(
                !text.contains(needle),
                "{}: {needle}: the bootstrap credential is a rotated projected token injected by Envoy",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "{checked} files");
}
