//! Every document under `deploy/` whose kind has a CRD in `deploy/schemas/` is validated against
//! it, found by apiVersion/kind: a new file needs no change here. Negative fixtures show each
//! check failing where the API server (or its pruning) would.

use std::collections::BTreeSet;
use std::fs;
use std::sync::OnceLock;

use kiali_header_auth::config::FilterConfig;
use serde_json::{json, Value};

use crate::manifests::cel;
use crate::manifests::envoy_files::{configuration_string, wasm_filter_configs, ENVOY_FILES};
use crate::manifests::files::{all_deploy_manifests, deploy_files, manifests_in, read, repo, Manifest};
use crate::manifests::kubernetes::check_documents;
use crate::manifests::schema::Catalog;
use crate::manifests::{TRAFFIC_EXTENSION, WASMPLUGIN};

pub fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| Catalog::load(&repo().join("deploy").join("schemas")))
}

/// Schema, metadata and CEL errors of a document whose kind has a CRD; `None` otherwise.
pub fn crd_errors(manifest: &Manifest) -> Option<Vec<String>> {
    catalog().validate(manifest)
}

/// Every plugin configuration a document carries: `spec.pluginConfig` of a WasmPlugin,
/// `spec.wasm.pluginConfig` of a TrafficExtension, and the `configuration` of any Envoy Wasm
/// filter embedded in it (an EnvoyFilter patch, for instance).
pub fn embedded_plugin_configs(manifest: &Manifest) -> Vec<(String, Result<FilterConfig, String>)> {
    let origin = manifest.describe();
    let mut found = Vec::new();
    let from_value = |value: &Value| {
        let bytes = serde_json::to_vec(value).map_err(|e| e.to_string())?;
        FilterConfig::from_json(&bytes).map_err(|e| e.to_string())
    };
    match manifest.kind() {
        "WasmPlugin" => found.push((
            format!("{origin} spec.pluginConfig"),
            match manifest.doc["spec"].get("pluginConfig") {
                Some(config) => from_value(config),
                None => Err("no spec.pluginConfig: the filter would start without one".into()),
            },
        )),
        "TrafficExtension" if manifest.doc["spec"].get("wasm").is_some() => found.push((
            format!("{origin} spec.wasm.pluginConfig"),
            match manifest.doc["spec"]["wasm"].get("pluginConfig") {
                Some(config) => from_value(config),
                None => Err("no spec.wasm.pluginConfig".into()),
            },
        )),
        _ => {}
    }
    for config in wasm_filter_configs(&manifest.doc) {
        let text = configuration_string(&config, &origin);
        found.push((
            format!("{origin} Wasm filter configuration"),
            FilterConfig::from_json(text.as_bytes()).map_err(|e| e.to_string()),
        ));
    }
    found
}

#[test]
fn every_deploy_document_with_a_crd_matches_it() {
    let mut validated = Vec::new();
    let mut errors = Vec::new();
    for manifest in all_deploy_manifests() {
        if let Some(found) = crd_errors(&manifest) {
            validated.push(manifest.describe());
            errors.extend(
                found
                    .into_iter()
                    .map(|e| format!("{}: {e}", manifest.describe())),
            );
        }
    }
    assert!(errors.is_empty(), "{errors:#?}");
    for kind in ["WasmPlugin ", "TrafficExtension ", "DestinationRule "] {
        assert!(
            validated.iter().any(|d| d.starts_with(kind)),
            "no {kind}was validated: {validated:#?}"
        );
    }
    println!("validated against their CRDs: {validated:#?}");
}

#[test]
fn every_embedded_plugin_configuration_passes_the_filter_validator() {
    let mut checked = Vec::new();
    let mut errors = Vec::new();
    for manifest in all_deploy_manifests()
        .iter()
        .filter(|m| m.doc.get("kind").is_some())
    {
        for (origin, result) in embedded_plugin_configs(manifest) {
            match result {
                Ok(_) => checked.push(origin),
                Err(e) => errors.push(format!("{origin}: {e}")),
            }
        }
    }
    assert!(errors.is_empty(), "{errors:#?}");
    for file in [WASMPLUGIN, TRAFFIC_EXTENSION] {
        assert!(
            checked.iter().any(|o| o.contains(file)),
            "{file}: {checked:#?}"
        );
    }
}

#[test]
fn deploy_documents_are_well_formed() {
    let manifests = all_deploy_manifests();
    // deploy/*.yaml is one set (applied together): no object twice. Each other file on its own
    // (alternatives such as the WasmPlugin and the TrafficExtension are not applied together).
    let (top, nested): (Vec<Manifest>, Vec<Manifest>) = manifests
        .into_iter()
        .partition(|m| m.file.matches('/').count() == 1);
    let mut errors = check_documents(&top);
    for file in deploy_files() {
        let objects: Vec<Manifest> = nested
            .iter()
            .filter(|m| m.file == file && m.doc.get("kind").is_some())
            .map(|m| Manifest::new(&m.file, m.doc.clone()))
            .collect();
        errors.extend(check_documents(&objects));
    }
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn no_unquoted_yes_no_on_off_anywhere() {
    // YAML 1.1 (kubectl, docker compose, Envoy's loader) reads these as booleans.
    let mut files = deploy_files();
    files.extend(["docker-compose.yaml".to_string()]);
    files.extend(ENVOY_FILES.iter().map(|f| f.to_string()));
    files.sort();
    files.dedup();
    let mut errors = Vec::new();
    for file in &files {
        for manifest in manifests_in(&read(file), file) {
            for (line, text) in manifest.surprising_booleans() {
                errors.push(format!(
                    "{file}:{line}: unquoted {text:?} is a boolean in YAML 1.1; quote it"
                ));
            }
        }
    }
    assert!(errors.is_empty(), "{errors:#?}");
    let fixture = manifests_in("metadata:\n  name: n\n  enabled: on\n", "inline");
    assert_eq!(fixture[0].surprising_booleans().len(), 2);
}

#[test]
fn vendored_crds_equal_the_shared_copies() {
    let shared = repo().join("..").join("shared").join("schemas");
    let vendored = repo().join("deploy").join("schemas");
    let mut compared = 0;
    for entry in fs::read_dir(&vendored).expect("deploy/schemas").flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let name = entry.file_name();
        let Ok(reference) = fs::read(shared.join(&name)) else {
            if shared.is_dir() {
                panic!("{} is not in {}", name.to_string_lossy(), shared.display());
            }
            continue;
        };
        assert!(
            fs::read(&path).ok() == Some(reference),
            "{} differs from {}; copy the shared one over it",
            path.display(),
            shared.join(&name).display()
        );
        compared += 1;
    }
    println!("compared {compared} CRDs with {}", shared.display());
    assert!(
        catalog().crds.len() >= 6,
        "CRDs loaded: {}",
        catalog().crds.len()
    );
}

#[test]
fn every_cel_rule_of_the_vendored_crds_has_a_hand_written_check() {
    let mut unknown = BTreeSet::new();
    let mut known = BTreeSet::new();
    for entry in fs::read_dir(repo().join("deploy").join("schemas"))
        .expect("deploy/schemas")
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let crd = crate::manifests::yaml::single(
            &fs::read_to_string(&path).unwrap_or_default(),
            &path.display().to_string(),
        );
        let mut rules = Vec::new();
        cel::rules_in(&crd, &mut rules);
        for rule in rules {
            if cel::is_known(&rule) {
                known.insert(rule);
            } else {
                unknown.insert(format!("{}: {rule}", path.display()));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "add these to tests/suite/manifests/cel.rs: {unknown:#?}"
    );
    assert!(known.len() >= 15, "{known:#?}");
}

// ---------------------------------------------------------------------------------------------
// Negative fixtures: a shipped file with one edit, read exactly as the shipped file is.
// ---------------------------------------------------------------------------------------------

/// `file` with `from` replaced by `to`, as the one document it holds.
fn edited(file: &str, from: &str, to: &str) -> Manifest {
    let text = read(file);
    assert!(text.contains(from), "{file} no longer contains {from:?}");
    let mut all = manifests_in(&text.replacen(from, to, 1), file);
    assert_eq!(all.len(), 1);
    all.remove(0)
}

/// The shipped WasmPlugin passes no environment (the bootstrap credential is injected by Envoy);
/// the `vmConfig.env` fixtures start from it with one variable added.
fn edited_env(from: &str, to: &str) -> Manifest {
    let pull = "  imagePullPolicy: IfNotPresent\n";
    let text = read(WASMPLUGIN);
    assert!(
        text.contains(pull),
        "{WASMPLUGIN} no longer contains {pull:?}"
    );
    let with_env = text.replacen(
        pull,
        &format!("{pull}  vmConfig:\n    env:\n    - name: EXAMPLE\n      valueFrom: HOST\n"),
        1,
    );
    assert!(
        with_env.contains(from),
        "the env fixture no longer contains {from:?}"
    );
    let mut all = manifests_in(&with_env.replacen(from, to, 1), WASMPLUGIN);
    assert_eq!(all.len(), 1);
    all.remove(0)
}

fn errors_of(manifest: &Manifest) -> Vec<String> {
    crd_errors(manifest).expect("a kind with a CRD")
}

#[track_caller]
fn assert_rejected(manifest: &Manifest, expected: &[&str]) {
    let errors = errors_of(manifest);
    for needle in expected {
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "expected an error containing {needle:?}, got {errors:#?}"
        );
    }
}

#[track_caller]
fn assert_accepted(manifest: &Manifest) {
    let errors = errors_of(manifest);
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn an_unquoted_all_digit_sha256_is_rejected_as_kubectl_sends_it() {
    let zeros = "0".repeat(64);
    let unquoted = edited(WASMPLUGIN, "sha256: \"\"", &format!("sha256: {zeros}"));
    assert_eq!(
        unquoted.doc["spec"]["sha256"],
        json!(0),
        "YAML 1.1: octal 0"
    );
    assert_rejected(
        &unquoted,
        &[
            "spec.sha256: 0 is not of type \"string\"",
            &format!("unquoted `{zeros}` is an integer in YAML 1.1"),
        ],
    );
    let digits = "1234567890".repeat(6) + "1234";
    assert_rejected(
        &edited(
            TRAFFIC_EXTENSION,
            "sha256: \"\"",
            &format!("sha256: {digits}"),
        ),
        &["spec.wasm.sha256", "is a float in YAML 1.1"],
    );
    // Quoted, the same digits are a string matching the pattern.
    assert_accepted(&edited(
        WASMPLUGIN,
        "sha256: \"\"",
        &format!("sha256: \"{zeros}\""),
    ));
    assert_accepted(&edited(
        WASMPLUGIN,
        "sha256: \"\"",
        &format!("sha256: '{digits}'"),
    ));
    assert_rejected(
        &edited(WASMPLUGIN, "sha256: \"\"", "sha256: \"ABC\""),
        &["spec.sha256: \"ABC\" does not match"],
    );
}

#[test]
fn unknown_fields_are_rejected_where_the_api_server_would_prune_them() {
    assert_rejected(
        &edited(
            WASMPLUGIN,
            "failStrategy: FAIL_CLOSE",
            "failstrategy: FAIL_CLOSE",
        ),
        &["spec: Additional properties are not allowed ('failstrategy' was unexpected)"],
    );
    assert_rejected(
        &edited_env("    env:", "    envs:"),
        &["spec.vmConfig: Additional properties are not allowed ('envs' was unexpected)"],
    );
    assert_rejected(
        &edited(TRAFFIC_EXTENSION, "    type: HTTP", "    kind: HTTP"),
        &["spec.wasm: Additional properties are not allowed ('kind' was unexpected)"],
    );
    assert_rejected(
        &edited(WASMPLUGIN, "spec:\n", "status: {}\nspec:\n"),
        &["Additional properties are not allowed ('status' was unexpected)"],
    );
    assert_rejected(
        &edited(
            WASMPLUGIN,
            "  name: kiali-header-auth\n",
            "  name: kiali-header-auth\n  labelz: {}\n",
        ),
        &["metadata.labelz: unexpected metadata field"],
    );
    // x-kubernetes-preserve-unknown-fields: pluginConfig takes any key (the filter checks it).
    let misspelt = edited(WASMPLUGIN, "    identity:\n", "    identty:\n");
    assert_accepted(&misspelt);
    let bytes = serde_json::to_vec(&misspelt.doc["spec"]["pluginConfig"]).unwrap_or_default();
    let error = FilterConfig::from_json(&bytes).expect_err("a misspelt key must be refused");
    assert!(error.to_string().contains("identty"), "{error}");
}

#[test]
fn values_outside_an_enum_are_rejected() {
    assert_rejected(
        &edited(WASMPLUGIN, "phase: AUTHN", "phase: AUTHENTICATION"),
        &["spec.phase: \"AUTHENTICATION\" is not one of"],
    );
    assert_rejected(
        &edited(
            TRAFFIC_EXTENSION,
            "failStrategy: FAIL_CLOSE",
            "failStrategy: FAIL_CLOSED",
        ),
        &["spec.wasm.failStrategy: \"FAIL_CLOSED\" is not one of"],
    );
    assert_rejected(
        &edited_env("valueFrom: HOST", "valueFrom: SECRET"),
        &["spec.vmConfig.env[0].valueFrom: \"SECRET\" is not one of"],
    );
}

#[test]
fn types_required_fields_and_bounds_are_enforced() {
    assert_rejected(
        &edited(WASMPLUGIN, "    - number: 20001", "    - number: \"20001\""),
        &["spec.match[0].ports[0].number: \"20001\" is not of type \"integer\""],
    );
    assert_rejected(
        &edited(WASMPLUGIN, "    - number: 20001", "    - number: 65536"),
        &["spec.match[0].ports[0].number: 65536 is greater than the maximum of 65535"],
    );
    assert_rejected(
        &edited(WASMPLUGIN, "  url: oci://", "  urls: oci://"),
        &["spec: \"url\" is a required property"],
    );
    assert_rejected(
        &edited(
            WASMPLUGIN,
            "apiVersion: extensions.istio.io/v1alpha1",
            "apiVersion: extensions.istio.io/v9",
        ),
        &["apiVersion: \"extensions.istio.io/v9\" is not a served version"],
    );
    assert_rejected(
        &edited(WASMPLUGIN, "      app: kiali", "      app: yes"),
        &[
            "spec.selector.matchLabels.app: true is not of type \"string\"",
            "unquoted `yes` is a boolean",
        ],
    );
    let many = "  - kind: Service\n    group: \"\"\n    name: kiali\n".repeat(17);
    assert_rejected(
        &edited(WASMPLUGIN, SELECTOR, &format!("  targetRefs:\n{many}")),
        &["spec.targetRefs: [", "has more than 16 items"],
    );
}

/// The selector block of deploy/istio/wasmplugin.yaml, which the fixtures swap for targetRefs.
const SELECTOR: &str = "  selector:\n    matchLabels:\n      app: kiali\n      app.kubernetes.io/instance: kiali   # this Kiali only (deployment.instance_name)\n";

#[test]
fn cel_rules_and_list_types_are_enforced() {
    assert_rejected(
        &edited(
            WASMPLUGIN,
            "spec:\n",
            "spec:\n  targetRefs:\n  - {kind: Service, name: kiali}\n",
        ),
        &["spec: only one of targetRefs or selector can be set"],
    );
    assert_rejected(
        &edited_env(
            "      valueFrom: HOST",
            "      valueFrom: HOST\n      value: secret",
        ),
        &["spec.vmConfig.env[0]: value may only be set when valueFrom is INLINE"],
    );
    assert_accepted(&edited_env(
        "      valueFrom: HOST",
        "      valueFrom: INLINE\n      value: literal",
    ));
    assert_rejected(
        &edited_env(
            "      valueFrom: HOST",
            "      valueFrom: HOST\n    - name: EXAMPLE",
        ),
        &["spec.vmConfig.env[1]: Duplicate value"],
    );
    assert_rejected(
        &edited(
            TRAFFIC_EXTENSION,
            "  phase: AUTHN\n",
            "  phase: AUTHN\n  lua:\n    inlineCode: x\n",
        ),
        &["spec: exactly one of wasm or lua must be set"],
    );
    assert_rejected(
        &edited(
            WASMPLUGIN,
            SELECTOR,
            "  targetRefs:\n  - kind: Service\n    group: \"\"\n    name: kiali\n    namespace: other\n",
        ),
        &["spec.targetRefs[0].namespace: cross namespace referencing is not currently supported"],
    );
    assert_rejected(
        &edited(WASMPLUGIN, "  url: oci://", "  url: ftp://"),
        &["spec.url: url must have schema one of"],
    );
    assert_rejected(
        &edited(WASMPLUGIN, "      app: kiali", "      app: \"kiali*\""),
        &["wildcard not allowed in label value match"],
    );
}
