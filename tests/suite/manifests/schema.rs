//! The CRDs in `deploy/schemas/`, turned into JSON Schema validators the way the API server
//! treats a structural schema, but stricter: where the API server would prune an undeclared
//! field (a silent misconfiguration), the validator reports it.

use std::fs;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::manifests::cel;
use crate::manifests::files::Manifest;
use crate::manifests::kubernetes;
use crate::manifests::yaml;

pub struct Crd {
    pub group: String,
    pub kind: String,
    pub namespaced: bool,
    versions: Vec<Version>,
}

struct Version {
    name: String,
    /// The CRD's own openAPIV3Schema, for the CEL rules and list types.
    schema: Value,
    validator: jsonschema::Validator,
}

pub struct Catalog {
    pub crds: Vec<Crd>,
}

impl Catalog {
    /// Every CustomResourceDefinition in `dir` (one per file).
    pub fn load(dir: &Path) -> Catalog {
        let mut paths: Vec<_> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        paths.sort();
        let crds = paths.iter().map(|path| Crd::load(path)).collect();
        Catalog { crds }
    }

    pub fn find(&self, api_version: &str, kind: &str) -> Option<&Crd> {
        let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
        self.crds
            .iter()
            .find(|c| c.group == group && c.kind == kind)
    }

    /// `None` when no CRD here describes the document's kind (built-in kinds, Kustomization);
    /// otherwise every error the API server (plus pruning) would report.
    pub fn validate(&self, manifest: &Manifest) -> Option<Vec<String>> {
        let doc = &manifest.doc;
        let api_version = doc["apiVersion"].as_str().unwrap_or("");
        let kind = doc["kind"].as_str().unwrap_or("");
        let crd = self.find(api_version, kind)?;
        Some(crd.validate(manifest))
    }
}

impl Crd {
    fn load(path: &Path) -> Crd {
        let file = path.display().to_string();
        let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {file}: {e}"));
        let crd = yaml::single(&text, &file);
        assert_eq!(crd["kind"], "CustomResourceDefinition", "{file}");
        let text_of = |pointer: &str| {
            crd.pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{file}: {pointer} missing"))
                .to_string()
        };
        let versions = crd["spec"]["versions"]
            .as_array()
            .unwrap_or_else(|| panic!("{file}: spec.versions"))
            .iter()
            .filter(|v| v["served"] == json!(true))
            .map(|v| {
                let name = v["name"].as_str().unwrap_or_default().to_string();
                let schema = v["schema"]["openAPIV3Schema"].clone();
                let strict = root_schema(&schema);
                let validator = jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft4)
                    .build(&strict)
                    .unwrap_or_else(|e| panic!("{file} {name}: not a valid schema: {e}"));
                Version {
                    name,
                    schema,
                    validator,
                }
            })
            .collect();
        Crd {
            group: text_of("/spec/group"),
            kind: text_of("/spec/names/kind"),
            namespaced: crd["spec"]["scope"] == "Namespaced",
            versions,
        }
    }

    pub fn validate(&self, manifest: &Manifest) -> Vec<String> {
        let doc = &manifest.doc;
        let api_version = doc["apiVersion"].as_str().unwrap_or("");
        let version_name = api_version.rsplit_once('/').map_or("", |(_, v)| v);
        let Some(version) = self.versions.iter().find(|v| v.name == version_name) else {
            let served: Vec<_> = self.versions.iter().map(|v| v.name.as_str()).collect();
            return vec![format!(
                "apiVersion: {api_version:?} is not a served version of {} (served: {served:?})",
                self.group
            )];
        };
        let mut errors = kubernetes::metadata_errors(&doc["metadata"], self.namespaced);
        for error in version.validator.iter_errors(doc) {
            let pointer = error.instance_path().as_str().to_string();
            let mut line = format!("{}: {error}", display_path(&pointer));
            if let Some(hint) = manifest.hint(&pointer) {
                line.push_str(&format!(" ({hint})"));
            }
            errors.push(line);
        }
        errors.extend(cel::check(&version.schema, doc));
        errors
    }
}

/// `/spec/vmConfig/env/0/name` as `spec.vmConfig.env[0].name`.
pub fn display_path(pointer: &str) -> String {
    if pointer.is_empty() {
        return "<root>".to_string();
    }
    let mut out = String::new();
    for segment in pointer.trim_start_matches('/').split('/') {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&segment);
        }
    }
    out
}

/// The schema of a whole document: the CRD's, with `apiVersion`, `kind` and `metadata` declared
/// (the API server checks those itself; see `kubernetes::metadata_errors`) and without `status`
/// (a manifest's status is dropped by the status subresource).
fn root_schema(schema: &Value) -> Value {
    let mut root = strict(schema);
    if let Some(properties) = root.get_mut("properties").and_then(Value::as_object_mut) {
        properties.remove("status");
        properties.insert("apiVersion".into(), json!({ "type": "string" }));
        properties.insert("kind".into(), json!({ "type": "string" }));
        properties.insert("metadata".into(), json!({ "type": "object" }));
    }
    root["required"] = json!(["apiVersion", "kind", "metadata"]);
    root
}

/// A structural schema as JSON Schema draft 4, closed where Kubernetes would prune:
/// - an object node without `x-kubernetes-preserve-unknown-fields` and without an
///   `additionalProperties` schema gets `additionalProperties: false`;
/// - `nullable: true` adds "null" to the type;
/// - value-validation branches (oneOf, anyOf, allOf, not) are left as they are: in a
///   structural schema they only constrain fields the node itself declares.
pub fn strict(schema: &Value) -> Value {
    let Some(fields) = schema.as_object() else {
        return schema.clone();
    };
    let mut out: Map<String, Value> = fields.clone();
    if let Some(Value::Object(properties)) = fields.get("properties") {
        let closed = properties
            .iter()
            .map(|(name, sub)| (name.clone(), strict(sub)))
            .collect();
        out.insert("properties".into(), Value::Object(closed));
    }
    if let Some(items) = fields.get("items") {
        out.insert("items".into(), strict(items));
    }
    if let Some(additional @ Value::Object(_)) = fields.get("additionalProperties") {
        out.insert("additionalProperties".into(), strict(additional));
    }
    if fields.get("nullable") == Some(&json!(true)) {
        if let Some(Value::String(kind)) = fields.get("type") {
            out.insert("type".into(), json!([kind, "null"]));
        }
        out.remove("nullable");
    }
    let preserves = fields.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    let is_object =
        fields.get("type") == Some(&json!("object")) || fields.contains_key("properties");
    if is_object && !preserves && !fields.contains_key("additionalProperties") {
        out.insert("additionalProperties".into(), json!(false));
    }
    Value::Object(out)
}
