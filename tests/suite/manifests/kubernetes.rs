//! What the API server checks on every object, whatever its kind: metadata, names, scope.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::manifests::files::Manifest;

/// Kinds this project ships that are not namespaced.
pub const CLUSTER_SCOPED: &[&str] = &["Namespace", "ClusterRole", "ClusterRoleBinding"];

/// Files that are not Kubernetes objects even though they carry apiVersion and kind.
pub const NOT_OBJECTS: &[&str] = &["Kustomization", "Component"];

pub fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

pub fn is_dns_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(is_dns_label)
}

/// ObjectMeta as a manifest may write it: name, namespace when namespaced, string labels and
/// annotations, nothing the server owns.
pub fn metadata_errors(metadata: &Value, namespaced: bool) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(fields) = metadata.as_object() else {
        return vec!["metadata: must be an object".to_string()];
    };
    for key in fields.keys() {
        if !["name", "namespace", "labels", "annotations"].contains(&key.as_str()) {
            errors.push(format!(
                "metadata.{key}: unexpected metadata field in a manifest"
            ));
        }
    }
    match fields.get("name").and_then(Value::as_str) {
        Some(name) if is_dns_subdomain(name) => {}
        other => errors.push(format!(
            "metadata.name: must be a DNS subdomain, found {other:?}"
        )),
    }
    if namespaced && fields.get("namespace").and_then(Value::as_str).is_none() {
        errors.push("metadata.namespace: a namespaced resource should say its namespace".into());
    }
    for map in ["labels", "annotations"] {
        if let Some(entries) = fields.get(map) {
            let all_strings = entries
                .as_object()
                .is_some_and(|e| e.values().all(Value::is_string));
            if !all_strings {
                errors.push(format!(
                    "metadata.{map}: must map strings to strings (quote \"true\" and numbers)"
                ));
            }
        }
    }
    errors
}

/// Every object has apiVersion, kind and valid metadata for its scope, and no object is defined
/// twice in `manifests` (which must be a set applied together).
pub fn check_documents(manifests: &[Manifest]) -> Vec<String> {
    let mut errors = Vec::new();
    let mut seen = BTreeSet::new();
    for manifest in manifests {
        let doc = &manifest.doc;
        if !doc["apiVersion"].is_string() || !doc["kind"].is_string() {
            errors.push(format!(
                "{}: a document without apiVersion and kind",
                manifest.file
            ));
            continue;
        }
        if NOT_OBJECTS.contains(&manifest.kind()) {
            continue;
        }
        let namespaced = !CLUSTER_SCOPED.contains(&manifest.kind());
        for error in metadata_errors(&doc["metadata"], namespaced) {
            errors.push(format!("{}: {error}", manifest.describe()));
        }
        if !namespaced && !manifest.namespace().is_empty() {
            errors.push(format!(
                "{}: metadata.namespace must be absent for this kind",
                manifest.describe()
            ));
        }
        if !seen.insert((
            manifest.kind().to_string(),
            manifest.namespace().to_string(),
            manifest.name().to_string(),
        )) {
            errors.push(format!("{}: defined twice", manifest.describe()));
        }
    }
    errors
}
