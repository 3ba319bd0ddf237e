//! `deploy/envoy/deployment.yaml`, the least-privilege setup: the filter in its own Envoy beside
//! oauth2-proxy, under its own ServiceAccount. Its parts must fit each other and the bootstrap
//! they run (`deploy/envoy/envoy.yaml`) the way the kubelet and Envoy would join them.

use crate::manifests::files::{manifests_in, read, Manifest};
use serde_json::Value;

const FILE: &str = "deploy/envoy/deployment.yaml";
const BOOTSTRAP: &str = "deploy/envoy/envoy.yaml";

fn one<'a>(manifests: &'a [Manifest], kind: &str) -> &'a Manifest {
    let found: Vec<&Manifest> = manifests.iter().filter(|m| m.kind() == kind).collect();
    assert_eq!(found.len(), 1, "{FILE}: expected one {kind}");
    found[0]
}

fn container<'a>(deployment: &'a Manifest, name: &str) -> &'a Value {
    deployment.doc["spec"]["template"]["spec"]["containers"]
        .as_array()
        .and_then(|list| list.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("{FILE}: no container {name}"))
}

/// Where each volume mount of `container` puts a file: (mount path, volume, subPath).
fn mounts(container: &Value) -> Vec<(String, String, String)> {
    container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let text = |key: &str| m[key].as_str().unwrap_or_default().to_string();
            (text("mountPath"), text("name"), text("subPath"))
        })
        .collect()
}

#[test]
fn the_standalone_proxy_fits_together_and_runs_its_bootstrap() {
    let manifests = manifests_in(&read(FILE), FILE);
    let account = one(&manifests, "ServiceAccount");
    let binding = one(&manifests, "RoleBinding");
    let deployment = one(&manifests, "Deployment");
    let service = one(&manifests, "Service");
    let policy = one(&manifests, "NetworkPolicy");
    let pod = &deployment.doc["spec"]["template"];

    // Only this pod's ServiceAccount may mint impersonator tokens, through the shipped Role.
    assert_eq!(pod["spec"]["serviceAccountName"], account.doc["metadata"]["name"]);
    assert_eq!(binding.doc["roleRef"]["name"], "kiali-impersonator-token-requester");
    assert_eq!(binding.doc["subjects"][0]["name"], account.doc["metadata"]["name"]);
    assert_eq!(binding.doc["subjects"][0]["namespace"], account.doc["metadata"]["namespace"]);
    assert_eq!(binding.namespace(), "kiali-auth", "the Role lives with the impersonator");
    // No automounted API token: the projected bootstrap token is the only credential.
    assert_eq!(pod["spec"]["automountServiceAccountToken"], false);
    assert_eq!(account.doc["automountServiceAccountToken"], false);

    // The Service and the NetworkPolicy select this pod.
    let labels = &pod["metadata"]["labels"];
    for (key, value) in service.doc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&labels[key], value, "the Service selects {key}={value}");
    }
    let admitted = &policy.doc["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"];
    for (key, value) in admitted.as_object().unwrap() {
        assert_eq!(&labels[key], value, "the NetworkPolicy admits {key}={value}");
    }

    // oauth2-proxy forwards to the loopback listener the bootstrap opens, and Envoy finds every
    // file the bootstrap names where the pod mounts it.
    let bootstrap = read(BOOTSTRAP);
    let proxy_args = container(deployment, "oauth2-proxy")["args"].to_string();
    assert!(proxy_args.contains("--upstream=http://127.0.0.1:10000/"), "{proxy_args}");
    assert!(bootstrap.contains("socket_address: { address: 127.0.0.1, port_value: 10000 }"));
    let envoy = container(deployment, "envoy");
    let mounted = mounts(envoy);
    let volumes = pod["spec"]["volumes"].as_array().unwrap();
    let volume = |name: &str| volumes.iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("no volume {name}"));
    for path in [
        "/etc/envoy/kiali_header_auth.wasm",
        "/var/run/secrets/kiali-header-auth/sds.yaml",
        "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
    ] {
        assert!(bootstrap.contains(path), "{BOOTSTRAP} names {path}");
        let covered = mounted.iter().any(|(at, _, sub)| {
            at == path || (sub.is_empty() && path.strip_prefix(at.as_str()).is_some_and(|rest| rest.starts_with('/')))
        });
        assert!(covered, "{path} is not mounted in the envoy container: {mounted:?}");
    }
    let bootstrap_volume = volume("kiali-header-auth-bootstrap");
    let sources = bootstrap_volume["projected"]["sources"].to_string();
    assert!(sources.contains("serviceAccountToken") && sources.contains("\"path\":\"token\""), "{sources}");
    assert!(sources.contains("sds.yaml"), "{sources}");
    // The SDS resource points at the projected token.
    let config_map = one(&manifests, "ConfigMap");
    let sds = config_map.doc["data"]["sds.yaml"].as_str().unwrap();
    assert!(sds.contains("filename: /var/run/secrets/kiali-header-auth/token"), "{sds}");
    assert_eq!(config_map.namespace(), deployment.namespace(), "a projected ConfigMap must be in the pod's namespace");
}
