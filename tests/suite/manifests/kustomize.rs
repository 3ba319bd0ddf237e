//! `kubectl apply -k deploy/`: what `kubectl kustomize deploy/` (kubectl's built-in kustomize,
//! offline) renders, validated object by object, and the image fields a user overrides.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::manifests::crds::{crd_errors, embedded_plugin_configs};
use crate::manifests::files::{manifests_in, repo, top_level_deploy_manifests, Manifest};
use crate::manifests::kubernetes::{check_documents, NOT_OBJECTS};
use crate::manifests::WASMPLUGIN;

pub fn kustomize(dir: &Path) -> Vec<Manifest> {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl (`make tools` installs Debian's kubernetes-client)");
    assert!(
        output.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    manifests_in(&text, &format!("kubectl kustomize {}", dir.display()))
}

fn identity(m: &Manifest) -> (String, String, String) {
    (
        m.kind().to_string(),
        m.namespace().to_string(),
        m.name().to_string(),
    )
}

/// Every object: valid metadata, none twice, its CRD (when it has one), its plugin configuration.
pub fn validate_rendered(rendered: &[Manifest]) -> Vec<String> {
    let mut errors = check_documents(rendered);
    for manifest in rendered {
        for error in crd_errors(manifest).unwrap_or_default() {
            errors.push(format!("{}: {error}", manifest.describe()));
        }
        for (origin, result) in embedded_plugin_configs(manifest) {
            if let Err(e) = result {
                errors.push(format!("{origin}: {e}"));
            }
        }
    }
    errors
}

#[test]
fn kustomization_renders_every_resource_in_order_and_each_validates() {
    let rendered = kustomize(&repo().join("deploy"));
    let errors = validate_rendered(&rendered);
    assert!(errors.is_empty(), "{errors:#?}");

    // Exactly deploy/*.yaml's objects (less the Kiali CR patch) and the WasmPlugin.
    let mut expected: BTreeSet<_> = top_level_deploy_manifests()
        .iter()
        .filter(|m| m.kind() != "Kiali" && !NOT_OBJECTS.contains(&m.kind()))
        .map(identity)
        .collect();
    expected.insert((
        "WasmPlugin".into(),
        "istio-system".into(),
        "kiali-header-auth".into(),
    ));
    expected.insert((
        "EnvoyFilter".into(),
        "istio-system".into(),
        "kiali-header-auth-credential-injector".into(),
    ));
    let found: BTreeSet<_> = rendered.iter().map(identity).collect();
    assert_eq!(
        found, expected,
        "deploy/kustomization.yaml must list every deploy/*.yaml resource file, the credential injector and the plugin"
    );

    let kinds: Vec<&str> = rendered.iter().map(Manifest::kind).collect();
    assert_eq!(kinds.first(), Some(&"Namespace"), "{kinds:?}");
    assert_eq!(
        kinds.last(),
        Some(&"WasmPlugin"),
        "the filter last, once what it calls exists: {kinds:?}"
    );
    let shipped = crate::manifests::wasmplugin();
    let plugin = rendered
        .iter()
        .find(|m| m.kind() == "WasmPlugin")
        .map(|m| &m.doc);
    assert_eq!(
        plugin,
        Some(&shipped),
        "the kustomization's defaults are {WASMPLUGIN}'s"
    );
}

/// An overlay next to the repository that sets the image and digest, as a user would.
fn overlay_with(url: &str, sha256: &str) -> Vec<Manifest> {
    overlay_of("deploy", "kiali-header-auth", url, sha256)
}

/// An overlay on `base` (a directory of the repository) that sets the image and digest of the
/// WasmPlugin `plugin`.
fn overlay_of(base: &str, plugin: &str, url: &str, sha256: &str) -> Vec<Manifest> {
    let target = repo().join("target");
    fs::create_dir_all(&target).expect("target/");
    let dir = tempfile::tempdir_in(&target).expect("a temporary overlay directory");
    // kustomize only accepts a relative path to a base: target/<tmp>/ -> ../../<base>
    let kustomization = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- ../../{base}\npatches:\n- target: {{group: extensions.istio.io, kind: WasmPlugin, name: {plugin}}}\n  patch: |-\n    - op: replace\n      path: /spec/url\n      value: {url}\n    - op: replace\n      path: /spec/sha256\n      value: {sha256}\n"
    );
    fs::write(dir.path().join("kustomization.yaml"), kustomization).expect("write the overlay");
    kustomize(dir.path())
}

/// A user's overlay on the JWT variant sets the JWT plugin's image.
#[test]
fn an_overlay_on_the_jwt_variant_sets_the_jwt_plugins_image() {
    let rendered = overlay_of(
        "overlays/jwt",
        "kiali-header-auth-jwt",
        "oci://registry.example:5000/kiali-header-auth:1",
        &format!("\"{}\"", "a".repeat(64)),
    );
    let errors = validate_rendered(&rendered);
    assert!(errors.is_empty(), "{errors:#?}");
    let plugins: Vec<&Manifest> = rendered.iter().filter(|m| m.kind() == "WasmPlugin").collect();
    assert_eq!(plugins.len(), 1);
    assert_eq!(plugins[0].doc["spec"]["url"], "oci://registry.example:5000/kiali-header-auth:1");
    assert_eq!(plugins[0].doc["spec"]["sha256"], "a".repeat(64));
}

#[test]
fn an_overlay_sets_image_and_digest_and_an_unquoted_digest_is_caught() {
    let digest = "9ef414d2d283701b442f176d9a130ee322f9b8801c9fafbff36d2d04ae06c309";
    let rendered = overlay_with(
        "oci://registry.example:5000/kiali-header-auth:1",
        &format!("\"{digest}\""),
    );
    let errors = validate_rendered(&rendered);
    assert!(errors.is_empty(), "{errors:#?}");
    let plugin = rendered
        .iter()
        .find(|m| m.kind() == "WasmPlugin")
        .expect("the WasmPlugin");
    assert_eq!(
        plugin.doc["spec"]["url"],
        "oci://registry.example:5000/kiali-header-auth:1"
    );
    assert_eq!(plugin.doc["spec"]["sha256"], digest);

    // An all-digit digest left unquoted in the patch: kustomize itself emits `sha256: 0`.
    let rendered = overlay_with(
        "oci://registry.example:5000/kiali-header-auth:1",
        &"0".repeat(64),
    );
    let plugin = rendered
        .iter()
        .find(|m| m.kind() == "WasmPlugin")
        .expect("the WasmPlugin");
    assert_eq!(plugin.doc["spec"]["sha256"], json!(0));
    let errors = validate_rendered(&rendered);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("spec.sha256: 0 is not of type \"string\"")),
        "{errors:#?}"
    );
}

/// The ready-made overlays (overlays/: Helm instead of the operator, JWT mode, both) render, every
/// object validates, exactly one filter plugin is installed (never the header and the JWT plugin
/// together), it comes last, and the JWT plugin gets the image deploy/kustomization.yaml sets
/// (the JWT component copies it from the header-mode plugin).
#[test]
fn every_overlay_renders_one_plugin_last_and_each_object_validates() {
    let base = kustomize(&repo().join("deploy"));
    let image = |rendered: &[Manifest]| -> Vec<(serde_json::Value, serde_json::Value)> {
        rendered
            .iter()
            .filter(|m| m.kind() == "WasmPlugin")
            .map(|m| (m.doc["spec"]["url"].clone(), m.doc["spec"]["sha256"].clone()))
            .collect()
    };
    for (overlay, plugin, jwt) in [
        ("overlays/helm", "kiali-header-auth", false),
        ("overlays/jwt", "kiali-header-auth-jwt", true),
        ("overlays/helm-jwt", "kiali-header-auth-jwt", true),
    ] {
        let rendered = kustomize(&repo().join(overlay));
        let errors = validate_rendered(&rendered);
        assert!(errors.is_empty(), "{overlay}: {errors:#?}");
        let plugins: Vec<&str> = rendered
            .iter()
            .filter(|m| m.kind() == "WasmPlugin" || m.kind() == "TrafficExtension")
            .map(Manifest::name)
            .collect();
        assert_eq!(plugins, [plugin], "{overlay}");
        assert_eq!(rendered.last().map(Manifest::kind), Some("WasmPlugin"), "{overlay}");
        assert_eq!(
            rendered.iter().any(|m| m.kind() == "RequestAuthentication"),
            jwt,
            "{overlay}"
        );
        assert_eq!(image(&rendered), image(&base), "{overlay}: the same image and digest");
        // Apart from the plugin swap and the binding's subject, the overlay is deploy/.
        let names = |r: &[Manifest]| -> BTreeSet<(String, String, String)> {
            r.iter()
                .filter(|m| !["WasmPlugin", "RequestAuthentication"].contains(&m.kind()))
                .map(identity)
                .collect()
        };
        assert_eq!(names(&rendered), names(&base), "{overlay}");
    }
}
