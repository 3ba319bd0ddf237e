//! The deploy/ files against the way Kiali's installers really build Kiali's pod
//! (tests/suite/models/kiali_installers.rs, from the Helm chart's and the operator's source) and the way
//! Istio really applies resources placed in its root namespace.

use serde_json::{Map, Value};

use crate::manifests::files::{all_deploy_manifests, one, read, repo, top_level_deploy_manifests, Manifest};
use crate::manifests::kiali_installers::{another_kiali_pod, selects, Installer, DEFAULT_INSTANCE, INSTALLERS};
use crate::manifests::kustomize::kustomize;

/// The label selector a document uses to pick pods, by kind (Istio: WasmPlugin, TrafficExtension,
/// RequestAuthentication `spec.selector.matchLabels`, EnvoyFilter `spec.workloadSelector.labels`,
/// DestinationRule `spec.workloadSelector.matchLabels`; Kubernetes: NetworkPolicy
/// `spec.podSelector.matchLabels`). `None` for kinds that select no pods.
fn pod_selector(manifest: &Manifest) -> Option<&Value> {
    let spec = &manifest.doc["spec"];
    match manifest.kind() {
        "WasmPlugin" | "TrafficExtension" | "RequestAuthentication" | "AuthorizationPolicy" => {
            Some(&spec["selector"]["matchLabels"])
        }
        "EnvoyFilter" => Some(&spec["workloadSelector"]["labels"]),
        "DestinationRule" => Some(&spec["workloadSelector"]["matchLabels"]),
        "NetworkPolicy" => Some(&spec["podSelector"]["matchLabels"]),
        _ => None,
    }
}

/// Kiali's pod labels as installed, plus the pod_labels deploy/kiali-cr-patch.yaml adds.
fn kiali_pod(installer: Installer) -> Map<String, Value> {
    let mut labels = installer.pod_labels(DEFAULT_INSTANCE);
    let manifests = top_level_deploy_manifests();
    let patch = one(&manifests, "Kiali");
    if let Some(extra) = patch.doc["spec"]["deployment"]["pod_labels"].as_object() {
        labels.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    labels
}

/// Issue 20, breakers 5 and 6: every resource that picks pods picks THIS Kiali, installed by
/// either installer, and not another pod labelled `app: kiali` (istio-system is usually Istio's
/// root namespace, whose EnvoyFilters and Wasm extensions reach every namespace); none attaches
/// to a waypoint (ambient is not supported: docs/deployment.md "Ambient mode").
#[test]
fn every_selector_picks_this_kiali_from_either_installer_and_no_other_pod() {
    let mut checked = 0;
    let mut errors = Vec::new();
    for manifest in all_deploy_manifests() {
        for field in ["targetRef", "targetRefs"] {
            if manifest.doc["spec"].get(field).is_some() {
                errors.push(format!(
                    "{}: spec.{field}: attaches to a Service or waypoint; ambient is not supported",
                    manifest.describe()
                ));
            }
        }
        let Some(selector) = pod_selector(&manifest) else { continue };
        checked += 1;
        if selector.as_object().is_none_or(|s| s.is_empty()) {
            errors.push(format!("{}: selects every pod", manifest.describe()));
            continue;
        }
        for installer in INSTALLERS {
            if !selects(selector, &kiali_pod(installer)) {
                errors.push(format!(
                    "{}: {selector} misses Kiali installed by {}",
                    manifest.describe(),
                    installer.name()
                ));
            }
        }
        if selects(selector, &another_kiali_pod()) {
            errors.push(format!(
                "{}: {selector} also picks another Kiali (app.kubernetes.io/instance: kiali-team-a)",
                manifest.describe()
            ));
        }
    }
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(checked >= 6, "{checked} selectors");
}

fn token_requester(rendered: &[Manifest]) -> Vec<(String, String)> {
    rendered
        .iter()
        .filter(|m| m.kind() == "RoleBinding" && m.name() == "kiali-impersonator-token-requester")
        .flat_map(|m| m.doc["subjects"].as_array().cloned().unwrap_or_default())
        .map(|s| {
            (
                s["namespace"].as_str().unwrap_or("").to_string(),
                s["name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Issue 20, breaker 2: the token RoleBinding names the ServiceAccount Kiali really runs as: the
/// operator's by default (`kubectl apply -k deploy/`, with deploy/kiali-cr-patch.yaml), the Helm
/// chart's with overlays/helm (and the JWT variants likewise).
#[test]
fn the_token_rolebinding_names_the_installers_service_account() {
    let namespace = one(&top_level_deploy_manifests(), "Kiali").namespace().to_string();
    for (dir, installer) in [
        ("deploy", Installer::Operator),
        ("overlays/jwt", Installer::Operator),
        ("overlays/helm", Installer::Helm),
        ("overlays/helm-jwt", Installer::Helm),
    ] {
        let rendered = kustomize(&repo().join(dir));
        assert_eq!(
            token_requester(&rendered),
            vec![(namespace.clone(), installer.service_account(DEFAULT_INSTANCE))],
            "{dir}: Kiali installed by {} runs as {}",
            installer.name(),
            installer.service_account(DEFAULT_INSTANCE)
        );
    }
    let docs = crate::manifests::paths::documentation();
    for needle in ["kiali-service-account", "overlays/helm", "serviceAccountName"] {
        assert!(docs.contains(needle), "the documentation says which variant and how to check: {needle}");
    }
}

/// Issue 20, breaker 3: the Kiali CR patch sets pod_annotations, which REPLACES the operator's
/// default map; it must carry the default (holdApplicationUntilProxyStarts) itself.
#[test]
fn the_kiali_cr_patch_keeps_the_installers_default_pod_annotations() {
    let manifests = top_level_deploy_manifests();
    let patch = one(&manifests, "Kiali");
    let user = patch.doc["spec"]["deployment"]["pod_annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for installer in INSTALLERS {
        let effective = installer.effective_pod_annotations(&user);
        for (key, value) in installer.default_pod_annotations() {
            assert_eq!(
                effective.get(&key),
                Some(&value),
                "{}: Kiali installed by {} loses its default annotation {key}",
                patch.describe(),
                installer.name()
            );
        }
    }
    assert!(
        read("deploy/kiali-cr-patch.yaml").contains("istio.io/rev"),
        "say how revision-based installs pick their control plane"
    );
}

/// Issue 20, breaker 5 (and issue 19, defect 5): ambient is marked not supported, and nothing
/// suggests attaching the filter to a waypoint that serves other services, which in
/// full-impersonation mode would hand the impersonator's token to every backend behind it.
#[test]
fn ambient_is_marked_not_supported_and_nothing_suggests_a_shared_waypoint() {
    assert!(!repo().join("deploy/istio/ambient").exists(), "no half-done ambient variant");
    let docs = crate::manifests::paths::documentation();
    let ambient = docs
        .split("\n## ")
        .chain(docs.split("\n### "))
        .find(|section| section.starts_with("Ambient"))
        .expect("the documentation has an Ambient section");
    assert!(ambient.contains("not supported"), "{ambient}");
    for path in harness::paths::repository_files() {
        let name = path.to_string_lossy().into_owned();
        if !(name.ends_with(".yaml") || name.ends_with(".md")) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default().to_lowercase();
        for needle in ["everything it serves", "everything the waypoint serves", "name: waypoint}"] {
            assert!(!text.contains(needle), "{name}: suggests a shared waypoint ({needle})");
        }
    }
}

/// The documentation's reason for not supporting ambient (docs/deployment.md, "Ambient mode")
/// names every requirement Istio's source imposes (tests/suite/models/istio_ambient.rs).
#[test]
fn readmes_ambient_section_names_what_istio_would_need() {
    let docs = crate::manifests::paths::documentation();
    let start = docs.find("## Ambient mode\n").expect("the documentation has an Ambient mode section");
    // From the heading to the next heading (any level) or the end of the file.
    let section = &docs[start..];
    let section = &section[..section.find("\n#").unwrap_or(section.len())];
    let section = section.split_whitespace().collect::<Vec<_>>().join(" ");
    for (what, phrase, source) in crate::manifests::istio_ambient::REQUIREMENTS {
        assert!(section.contains(phrase), "the ambient section misses {what} ({source})");
    }
}

/// The Helm values shipped for Helm installs say what the Kiali CR patch says, and both set only
/// keys the installers read (tests/suite/models/kiali_installers.rs SETTINGS).
#[test]
fn the_helm_values_are_the_kiali_cr_patch_and_both_set_only_known_keys() {
    let manifests = top_level_deploy_manifests();
    let patch = one(&manifests, "Kiali");
    let values = crate::manifests::files::yaml_file("overlays/helm/kiali-values.yaml");
    assert_eq!(values, patch.doc["spec"], "overlays/helm/kiali-values.yaml and deploy/kiali-cr-patch.yaml's spec differ");
    fn leaves(value: &Value, prefix: &str, out: &mut Vec<String>) {
        match value.as_object() {
            Some(map) if !prefix.ends_with("pod_labels") && !prefix.ends_with("pod_annotations") => {
                for (key, child) in map {
                    let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                    leaves(child, &path, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }
    let mut set = Vec::new();
    leaves(&values, "", &mut set);
    for key in &set {
        assert!(
            crate::manifests::kiali_installers::SETTINGS.contains(&key.as_str()),
            "{key}: not a setting both installers are known to read"
        );
    }
}
