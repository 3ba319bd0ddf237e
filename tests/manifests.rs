//! Checks every deployment file in the repository without a cluster, Docker or Envoy:
//!
//! - `wasmplugin.yaml` against the Istio WasmPlugin CRD's OpenAPI v3 schema (a small structural
//!   validator below, stricter than the API server: unknown fields are errors, where Kubernetes
//!   would drop them silently), the CRD's two CEL rules by hand, and its `pluginConfig` through
//!   the filter's own `FilterConfig::from_json`;
//! - `deploy/*.yaml`: RBAC without wildcards, the exact token Role, an impersonation ClusterRole
//!   that grants only what the shipped configurations send, bindings that point at roles and
//!   ServiceAccounts that exist, the Kiali CR patch, the NetworkPolicy and the DestinationRule,
//!   and the cross-references between all of these and `wasmplugin.yaml`;
//! - the Envoy configurations (`envoy.yaml`, `deploy/envoy/envoy.yaml`,
//!   `deploy/docker-compose/envoy.yaml`): each plugin configuration through `from_json`, token
//!   clusters and credentials that exist, and the compose copy in step with the root one;
//! - `docker-compose.yaml` and `Dockerfile` wiring.
//!
//! The CRD schema is read from `<repo>/../shared/schemas/`, or from the copy vendored in
//! `deploy/schemas/` when that is absent; when both exist they must be identical.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;

use kiali_header_auth::config::{FilterConfig, Mode, TokenSourceKind};
use serde::Deserialize;
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

const CRD_FILE: &str = "schemas/istio-wasmplugin-crd.yaml";
const WASM_FILTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const STRING_VALUE_TYPE: &str = "type.googleapis.com/google.protobuf.StringValue";
const TLS_CONTEXT_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
const SERVICE_ACCOUNT_CA: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
/// The mapped user as the upstream receives it (the filter state costs a host call per request).
const ACCESS_LOG_USER: &str = "%REQ(IMPERSONATE-USER)%";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every non-empty document of a (possibly multi-document) YAML text, as JSON values.
fn yaml_documents(text: &str, origin: &str) -> Vec<Value> {
    let mut documents = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let mut yaml = serde_yaml::Value::deserialize(document)
            .unwrap_or_else(|e| panic!("{origin}: document {index} is not valid YAML: {e}"));
        yaml.apply_merge()
            .unwrap_or_else(|e| panic!("{origin}: document {index}: bad merge key: {e}"));
        if yaml.is_null() {
            continue;
        }
        let json = serde_json::to_value(&yaml)
            .unwrap_or_else(|e| panic!("{origin}: document {index} is not JSON-compatible: {e}"));
        documents.push(json);
    }
    documents
}

fn yaml_file(relative: &str) -> Value {
    let mut documents = yaml_documents(&read(relative), relative);
    assert_eq!(
        documents.len(),
        1,
        "{relative}: expected exactly one YAML document"
    );
    documents.remove(0)
}

/// The WasmPlugin CRD: the shared reference copy if it is next to the repository, otherwise the
/// vendored one.
fn crd() -> Value {
    let shared = repo().join("..").join("shared").join(CRD_FILE);
    let path = if shared.is_file() {
        shared
    } else {
        repo().join("deploy").join(CRD_FILE)
    };
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read the CRD at {}: {e}", path.display()));
    let mut documents = yaml_documents(&text, &path.display().to_string());
    assert_eq!(
        documents.len(),
        1,
        "{}: expected one document",
        path.display()
    );
    documents.remove(0)
}

fn wasmplugin() -> Value {
    yaml_file("wasmplugin.yaml")
}

struct Manifest {
    file: String,
    doc: Value,
}

impl Manifest {
    fn kind(&self) -> &str {
        self.doc["kind"].as_str().unwrap_or("")
    }
    fn name(&self) -> &str {
        self.doc["metadata"]["name"].as_str().unwrap_or("")
    }
    fn namespace(&self) -> &str {
        self.doc["metadata"]["namespace"].as_str().unwrap_or("")
    }
    fn describe(&self) -> String {
        format!(
            "{} {}/{} ({})",
            self.kind(),
            self.namespace(),
            self.name(),
            self.file
        )
    }
}

/// Every document of every `deploy/*.yaml` (not the subdirectories: those are not for
/// `kubectl apply`), in file name order.
fn deploy_manifests() -> Vec<Manifest> {
    let dir = repo().join("deploy");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            path.is_file() && path.extension().is_some_and(|e| e == "yaml" || e == "yml")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no YAML files in deploy/");
    let mut manifests = Vec::new();
    for path in files {
        let file = format!("deploy/{}", path.file_name().unwrap().to_string_lossy());
        let text = fs::read_to_string(&path).unwrap();
        for doc in yaml_documents(&text, &file) {
            manifests.push(Manifest {
                file: file.clone(),
                doc,
            });
        }
    }
    manifests
}

fn find<'a>(manifests: &'a [Manifest], kind: &str) -> Vec<&'a Manifest> {
    manifests.iter().filter(|m| m.kind() == kind).collect()
}

fn one<'a>(manifests: &'a [Manifest], kind: &str) -> &'a Manifest {
    let found = find(manifests, kind);
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {kind} in deploy/, found {}",
        found.len()
    );
    found[0]
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn plugin_config(bytes: &[u8], origin: &str) -> FilterConfig {
    FilterConfig::from_json(bytes).unwrap_or_else(|e| panic!("{origin}: {e}"))
}

fn wasmplugin_config() -> FilterConfig {
    let doc = wasmplugin();
    let bytes = serde_json::to_vec(&doc["spec"]["pluginConfig"]).unwrap();
    plugin_config(&bytes, "wasmplugin.yaml spec.pluginConfig")
}

// ---------------------------------------------------------------------------------------------
// OpenAPI v3 structural validator (the subset Kubernetes CRDs use)
// ---------------------------------------------------------------------------------------------

/// Schema keywords the validator implements.
const ENFORCED_KEYWORDS: &[&str] = &[
    "type",
    "nullable",
    "enum",
    "properties",
    "required",
    "additionalProperties",
    "x-kubernetes-preserve-unknown-fields",
    "items",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minProperties",
    "maxProperties",
    "minimum",
    "maximum",
    "oneOf",
    "anyOf",
    "allOf",
];
/// Keywords that do not constrain a value (`format` is advisory in Kubernetes' own validation
/// for most formats; none of the WasmPlugin fields use one).
const NON_CONSTRAINING_KEYWORDS: &[&str] =
    &["description", "title", "format", "default", "example"];
/// Keywords the validator does not evaluate but reports: `pattern` (no regex crate; the caller
/// checks the ones it knows by hand and lists the rest) and `x-kubernetes-validations` (CEL; the
/// WasmPlugin rules are checked by `cel_rules`).
const REPORTED_KEYWORDS: &[&str] = &["pattern", "x-kubernetes-validations"];

#[derive(Debug, Default)]
struct Report {
    errors: Vec<String>,
    /// (path, pattern) for every `pattern` the validator met but did not evaluate.
    patterns: Vec<(String, String)>,
    /// (path, rules) for every `x-kubernetes-validations` it met.
    cel: Vec<(String, String)>,
}

impl Report {
    fn error(&mut self, path: &str, message: impl AsRef<str>) {
        let path = if path.is_empty() { "<root>" } else { path };
        self.errors.push(format!("{path}: {}", message.as_ref()));
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn has_type(value: &Value, wanted: &str) -> bool {
    let actual = type_name(value);
    actual == wanted || (wanted == "number" && actual == "integer")
}

fn as_usize(
    schema: &Map<String, Value>,
    keyword: &str,
    path: &str,
    report: &mut Report,
) -> Option<usize> {
    let bound = schema.get(keyword)?;
    match bound.as_u64() {
        Some(n) => Some(n as usize),
        None => {
            report.error(
                path,
                format!("schema: `{keyword}` is not a non-negative integer"),
            );
            None
        }
    }
}

/// Validates `value` against `schema`. `strict` turns fields that the schema does not declare
/// into errors; it is off inside oneOf/anyOf/allOf branches, which in a structural schema only
/// add constraints to fields the enclosing schema declares.
fn validate(schema: &Value, value: &Value, path: &str, strict: bool, report: &mut Report) {
    let Some(schema) = schema.as_object() else {
        report.error(path, "schema: a schema must be an object");
        return;
    };
    for keyword in schema.keys() {
        let known = ENFORCED_KEYWORDS.contains(&keyword.as_str())
            || NON_CONSTRAINING_KEYWORDS.contains(&keyword.as_str())
            || REPORTED_KEYWORDS.contains(&keyword.as_str());
        if !known {
            report.error(
                path,
                format!(
                    "schema: keyword `{keyword}` is not supported by this validator; implement it"
                ),
            );
        }
    }
    if let Some(rules) = schema.get("x-kubernetes-validations") {
        report.cel.push((path.to_string(), rules.to_string()));
    }

    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true)
            && schema.contains_key("type")
        {
            report.error(path, "null is not allowed here");
        }
        return;
    }

    if let Some(wanted) = schema.get("type") {
        let Some(wanted) = wanted.as_str() else {
            report.error(path, "schema: `type` must be a string");
            return;
        };
        if !has_type(value, wanted) {
            report.error(
                path,
                format!("expected {wanted}, found {} {value}", type_name(value)),
            );
            return;
        }
    }

    if let Some(allowed) = schema.get("enum") {
        let allowed = allowed.as_array().cloned().unwrap_or_default();
        if !allowed.contains(value) {
            report.error(
                path,
                format!("{value} is not one of {}", Value::Array(allowed)),
            );
        }
    }

    match value {
        Value::String(text) => {
            let length = text.chars().count();
            if let Some(min) = as_usize(schema, "minLength", path, report) {
                if length < min {
                    report.error(path, format!("length {length} is below minLength {min}"));
                }
            }
            if let Some(max) = as_usize(schema, "maxLength", path, report) {
                if length > max {
                    report.error(path, format!("length {length} exceeds maxLength {max}"));
                }
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
                report
                    .patterns
                    .push((path.to_string(), pattern.to_string()));
            }
        }
        Value::Number(_) => {
            let number = value.as_f64().unwrap_or(f64::NAN);
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
                if number < min {
                    report.error(path, format!("{value} is below minimum {min}"));
                }
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
                if number > max {
                    report.error(path, format!("{value} exceeds maximum {max}"));
                }
            }
        }
        Value::Array(items) => {
            if let Some(min) = as_usize(schema, "minItems", path, report) {
                if items.len() < min {
                    report.error(path, format!("{} items, below minItems {min}", items.len()));
                }
            }
            if let Some(max) = as_usize(schema, "maxItems", path, report) {
                if items.len() > max {
                    report.error(path, format!("{} items, above maxItems {max}", items.len()));
                }
            }
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    validate(
                        item_schema,
                        item,
                        &format!("{path}[{index}]"),
                        strict,
                        report,
                    );
                }
            }
        }
        Value::Object(fields) => {
            if let Some(min) = as_usize(schema, "minProperties", path, report) {
                if fields.len() < min {
                    report.error(
                        path,
                        format!("{} fields, below minProperties {min}", fields.len()),
                    );
                }
            }
            if let Some(max) = as_usize(schema, "maxProperties", path, report) {
                if fields.len() > max {
                    report.error(
                        path,
                        format!("{} fields, above maxProperties {max}", fields.len()),
                    );
                }
            }
            for required in strings(schema.get("required").unwrap_or(&Value::Null)) {
                if !fields.contains_key(&required) {
                    report.error(path, format!("required field `{required}` is missing"));
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let preserve = schema
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            for (key, field) in fields {
                let field_path = join(path, key);
                if let Some(property) = properties.and_then(|p| p.get(key)) {
                    validate(property, field, &field_path, strict, report);
                } else if let Some(additional @ Value::Object(_)) = additional {
                    validate(additional, field, &field_path, strict, report);
                } else if additional == Some(&Value::Bool(true)) || preserve {
                    // Kept as written, not checked.
                } else if strict || additional == Some(&Value::Bool(false)) {
                    report.error(
                        &field_path,
                        "unknown field (the API server would drop it silently); check its spelling and nesting",
                    );
                }
            }
        }
        Value::Bool(_) | Value::Null => {}
    }

    for (keyword, needed) in [
        ("oneOf", "exactly one"),
        ("anyOf", "at least one"),
        ("allOf", "every"),
    ] {
        let Some(branches) = schema.get(keyword) else {
            continue;
        };
        let Some(branches) = branches.as_array() else {
            report.error(path, format!("schema: `{keyword}` must be a list"));
            continue;
        };
        let mut passing = 0;
        let mut failures = Vec::new();
        for branch in branches {
            let mut branch_report = Report::default();
            validate(branch, value, path, false, &mut branch_report);
            if branch_report.errors.is_empty() {
                passing += 1;
            } else {
                failures.push(branch_report.errors.join("; "));
            }
            report.patterns.extend(branch_report.patterns);
            report.cel.extend(branch_report.cel);
        }
        let ok = match keyword {
            "oneOf" => passing == 1,
            "anyOf" => passing >= 1,
            _ => passing == branches.len(),
        };
        if !ok {
            report.error(
                path,
                format!(
                    "{keyword}: {needed} of {} schemas must match, {passing} did ({})",
                    branches.len(),
                    failures.join(" | ")
                ),
            );
        }
    }
}

/// The two CEL rules of the real WasmPlugin CRD that the schema file leaves out.
fn cel_rules(spec: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let targets = ["selector", "targetRef", "targetRefs"]
        .into_iter()
        .filter(|field| spec.get(*field).is_some())
        .collect::<Vec<_>>();
    if targets.len() > 1 {
        errors.push(format!(
            "spec: only one of selector, targetRef or targetRefs may be set (found {})",
            targets.join(", ")
        ));
    }
    if let Some(env) = spec.pointer("/vmConfig/env").and_then(Value::as_array) {
        for (index, variable) in env.iter().enumerate() {
            let value_from = variable
                .get("valueFrom")
                .and_then(Value::as_str)
                .unwrap_or("INLINE");
            if variable.get("value").is_some() && value_from != "INLINE" {
                errors.push(format!(
                    "spec.vmConfig.env[{index}]: `value` may only be set when valueFrom is INLINE (found {value_from})"
                ));
            }
        }
    }
    errors
}

/// A WasmPlugin document against the CRD: apiVersion/kind/metadata as the API server checks
/// them, the rest against the openAPIV3Schema of the served version, then the CEL rules.
fn validate_wasmplugin(doc: &Value, crd: &Value) -> Report {
    let mut report = Report::default();
    let group = crd["spec"]["group"].as_str().expect("CRD spec.group");
    let kind = crd["spec"]["names"]["kind"]
        .as_str()
        .expect("CRD spec.names.kind");
    let api_version = doc["apiVersion"].as_str().unwrap_or("");
    let version = api_version
        .strip_prefix(group)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or("");
    let served = crd["spec"]["versions"].as_array().and_then(|versions| {
        versions
            .iter()
            .find(|v| v["name"] == version && v["served"] == json!(true))
    });
    let Some(served) = served else {
        report.error(
            "apiVersion",
            format!("{api_version:?} is not a served version of {group}"),
        );
        return report;
    };
    if doc["kind"] != kind {
        report.error("kind", format!("expected {kind}, found {}", doc["kind"]));
    }
    check_metadata(
        &doc["metadata"],
        crd["spec"]["scope"] == "Namespaced",
        &mut report,
    );

    let schema = &served["schema"]["openAPIV3Schema"];
    let mut body = doc.clone();
    if let Some(fields) = body.as_object_mut() {
        for implicit in ["apiVersion", "kind", "metadata"] {
            fields.remove(implicit);
        }
    }
    validate(schema, &body, "", true, &mut report);
    report.errors.extend(cel_rules(&doc["spec"]));
    report
}

fn check_metadata(metadata: &Value, namespaced: bool, report: &mut Report) {
    let Some(fields) = metadata.as_object() else {
        report.error("metadata", "must be an object");
        return;
    };
    for key in fields.keys() {
        if !["name", "namespace", "labels", "annotations"].contains(&key.as_str()) {
            report.error(
                &join("metadata", key),
                "unexpected metadata field in a manifest",
            );
        }
    }
    match fields.get("name").and_then(Value::as_str) {
        Some(name) if is_dns_subdomain(name) => {}
        other => report.error(
            "metadata.name",
            format!("must be a DNS subdomain, found {other:?}"),
        ),
    }
    if namespaced && fields.get("namespace").and_then(Value::as_str).is_none() {
        report.error(
            "metadata.namespace",
            "a namespaced resource should say its namespace",
        );
    }
    for map in ["labels", "annotations"] {
        if let Some(entries) = fields.get(map) {
            let all_strings = entries
                .as_object()
                .is_some_and(|e| e.values().all(Value::is_string));
            if !all_strings {
                report.error(
                    &join("metadata", map),
                    "must map strings to strings (quote \"true\" and numbers)",
                );
            }
        }
    }
}

fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

fn is_dns_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(is_dns_label)
}

/// Hand-written checks for the `pattern`s the validator reports, keyed by the pattern text.
fn check_known_pattern(pattern: &str, value: &str) -> Option<bool> {
    match pattern {
        "(^$|^[a-f0-9]{64}$)" => Some(
            value.is_empty()
                || (value.len() == 64
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))),
        ),
        _ => None,
    }
}

fn value_at<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = doc;
    for part in path.split('.') {
        let (key, indices) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        current = current.get(key)?;
        for index in indices.split('[').filter(|s| !s.is_empty()) {
            current = current.get(index.trim_end_matches(']').parse::<usize>().ok()?)?;
        }
    }
    Some(current)
}

fn errors_of(doc: &Value) -> Vec<String> {
    validate_wasmplugin(doc, &crd()).errors
}

fn assert_rejected(doc: &Value, expected: &[&str]) {
    let errors = errors_of(doc);
    for needle in expected {
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "expected an error containing {needle:?}, got {errors:#?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// (a) wasmplugin.yaml
// ---------------------------------------------------------------------------------------------

#[test]
fn wasmplugin_matches_the_crd_schema_and_cel_rules() {
    let doc = wasmplugin();
    let report = validate_wasmplugin(&doc, &crd());
    assert!(
        report.errors.is_empty(),
        "wasmplugin.yaml: {:#?}",
        report.errors
    );

    let mut checked = Vec::new();
    let mut unchecked = Vec::new();
    for (path, pattern) in &report.patterns {
        let text = value_at(&doc, path)
            .and_then(Value::as_str)
            .unwrap_or_default();
        match check_known_pattern(pattern, text) {
            Some(true) => checked.push(path.clone()),
            Some(false) => panic!("wasmplugin.yaml {path}: {text:?} does not match {pattern}"),
            None => unchecked.push(format!("{path}: {pattern}")),
        }
    }
    assert!(
        checked.contains(&"spec.sha256".to_string()),
        "the sha256 pattern was not met: {:?}",
        report.patterns
    );
    // Printed with --nocapture: which constraints this test could not evaluate.
    println!("schema patterns checked by hand: {checked:?}");
    println!("schema patterns not evaluated (no regex engine): {unchecked:?}");
    println!(
        "CEL rules in the schema (the WasmPlugin ones are hand-checked): {:?}",
        report.cel
    );
}

#[test]
fn wasmplugin_targets_kiali_inbound_only() {
    let spec = &wasmplugin()["spec"];
    assert_eq!(
        spec["selector"],
        json!({ "matchLabels": { "app": "kiali" } })
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
    assert_eq!(wasmplugin()["metadata"]["namespace"], "istio-system");
}

#[test]
fn wasmplugin_image_is_this_version_and_pinned() {
    let spec = &wasmplugin()["spec"];
    let url = spec["url"].as_str().unwrap();
    let expected = format!(
        "oci://ghcr.io/kiali-header-auth/kiali-header-auth:{}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(url, expected, "the image tag must follow the crate version");
    let sha = spec["sha256"].as_str().unwrap();
    assert_eq!(check_known_pattern("(^$|^[a-f0-9]{64}$)", sha), Some(true));
    assert!(
        !sha.is_empty(),
        "pin the image: an empty sha256 accepts whatever the tag points to"
    );
}

#[test]
fn wasmplugin_plugin_config_is_valid_full_impersonation() {
    let config = wasmplugin_config();
    assert_eq!(config.mode(), Mode::FullImpersonation);
    let identity = config.identity.as_ref().unwrap();
    assert_eq!(
        identity.user_header, "x-auth-request-user",
        "preset oauth2-proxy-auth-request"
    );
    let peers = config
        .trusted_peers
        .as_ref()
        .expect("trusted_peers must be set in the mesh");
    assert!(peers.checks_principal());
    let source = config.token_source.as_ref().unwrap();
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
            assert_eq!(credential_env.as_deref(), Some("TOKEN_REQUESTER_BEARER"));
        }
        other => panic!("expected a kubernetes_token_request source, got {other:?}"),
    }
}

#[test]
fn wasmplugin_passes_the_credential_from_the_host_environment() {
    let doc = wasmplugin();
    let config = wasmplugin_config();
    let Some(TokenSourceKind::KubernetesTokenRequest {
        credential_env: Some(name),
        ..
    }) = config.token_source.as_ref().map(|s| &s.kind)
    else {
        panic!("wasmplugin.yaml: token_source.credential_env must be set");
    };
    let env = doc["spec"]["vmConfig"]["env"]
        .as_array()
        .expect("spec.vmConfig.env");
    let variable = env
        .iter()
        .find(|v| v["name"] == name.as_str())
        .unwrap_or_else(|| panic!("spec.vmConfig.env does not pass {name} to the filter"));
    assert_eq!(
        variable["valueFrom"], "HOST",
        "a secret must not be INLINE in the resource"
    );
    assert!(variable.get("value").is_none());
}

#[test]
fn vendored_crd_schema_matches_shared() {
    let vendored = repo().join("deploy").join(CRD_FILE);
    let shared = repo().join("..").join("shared").join(CRD_FILE);
    let vendored_text = fs::read(&vendored).expect("deploy/schemas/istio-wasmplugin-crd.yaml");
    match fs::read(&shared) {
        Ok(shared_text) => assert!(
            shared_text == vendored_text,
            "{} differs from {}; copy the shared one over the vendored one",
            vendored.display(),
            shared.display()
        ),
        Err(_) => println!("{} absent; the vendored copy is in use", shared.display()),
    }
}

// Negative tests: the validator catches what it must.

fn modified(change: impl FnOnce(&mut Value)) -> Value {
    let mut doc = wasmplugin();
    change(&mut doc);
    doc
}

#[test]
fn validator_rejects_unknown_fields() {
    assert_rejected(
        &modified(|d| d["spec"]["vmConfig"]["envs"] = json!([])),
        &["spec.vmConfig.envs: unknown field"],
    );
    assert_rejected(
        &modified(|d| d["spec"]["failstrategy"] = json!("FAIL_CLOSE")),
        &["spec.failstrategy: unknown field"],
    );
    assert_rejected(
        &modified(|d| d["status"] = json!({})),
        &["status: unknown field"],
    );
    assert_rejected(
        &modified(|d| d["spec"]["selector"]["labels"] = json!({ "app": "kiali" })),
        &["spec.selector.labels: unknown field"],
    );
    assert_rejected(
        &modified(|d| d["metadata"]["labelz"] = json!({})),
        &["metadata.labelz"],
    );
}

#[test]
fn validator_rejects_wrong_types() {
    assert_rejected(
        &modified(|d| d["spec"]["priority"] = json!("10")),
        &["spec.priority: expected integer"],
    );
    assert_rejected(
        &modified(|d| d["spec"]["match"][0]["ports"][0]["number"] = json!("20001")),
        &["spec.match[0].ports[0].number: expected integer"],
    );
    assert_rejected(
        &modified(|d| d["spec"]["vmConfig"]["env"] = json!({})),
        &["spec.vmConfig.env: expected array"],
    );
    assert_rejected(
        &modified(|d| d["spec"]["selector"]["matchLabels"]["app"] = json!(true)),
        &["spec.selector.matchLabels.app: expected string"],
    );
    assert_rejected(
        &modified(|d| d["spec"]["pluginConfig"] = json!("{}")),
        &["spec.pluginConfig: expected object"],
    );
    assert_rejected(
        &modified(|d| d["spec"]["url"] = Value::Null),
        &["spec.url: null is not allowed"],
    );
    // priority is nullable.
    assert!(errors_of(&modified(|d| d["spec"]["priority"] = Value::Null)).is_empty());
}

#[test]
fn validator_rejects_values_outside_enums() {
    assert_rejected(
        &modified(|d| d["spec"]["phase"] = json!("AUTHENTICATION")),
        &["spec.phase: \"AUTHENTICATION\" is not one of"],
    );
    assert_rejected(
        &modified(|d| d["spec"]["failStrategy"] = json!("FAIL_CLOSED")),
        &["spec.failStrategy"],
    );
    assert_rejected(
        &modified(|d| d["spec"]["vmConfig"]["env"][0]["valueFrom"] = json!("SECRET")),
        &["spec.vmConfig.env[0].valueFrom: \"SECRET\" is not one of [\"INLINE\",\"HOST\"]"],
    );
}

#[test]
fn validator_rejects_more_than_one_target() {
    let kiali_service = json!({ "kind": "Service", "name": "kiali" });
    assert_rejected(
        &modified(|d| d["spec"]["targetRef"] = kiali_service.clone()),
        &["only one of selector, targetRef or targetRefs may be set (found selector, targetRef)"],
    );
    assert_rejected(
        &modified(|d| d["spec"]["targetRefs"] = json!([kiali_service.clone()])),
        &["found selector, targetRefs"],
    );
    // targetRef alone is fine as far as the schema goes.
    let alone = modified(|d| {
        d["spec"].as_object_mut().unwrap().remove("selector");
        d["spec"]["targetRef"] = kiali_service.clone();
    });
    assert!(errors_of(&alone).is_empty(), "{:#?}", errors_of(&alone));
}

#[test]
fn validator_rejects_env_value_unless_inline() {
    assert_rejected(
        &modified(|d| d["spec"]["vmConfig"]["env"][0]["value"] = json!("secret")),
        &["spec.vmConfig.env[0]: `value` may only be set when valueFrom is INLINE (found HOST)"],
    );
    for value_from in [Some("INLINE"), None] {
        let doc = modified(|d| {
            let variable = &mut d["spec"]["vmConfig"]["env"][0];
            variable["value"] = json!("literal");
            match value_from {
                Some(v) => variable["valueFrom"] = json!(v),
                None => {
                    variable.as_object_mut().unwrap().remove("valueFrom");
                }
            }
        });
        assert!(
            errors_of(&doc).is_empty(),
            "valueFrom {value_from:?}: {:#?}",
            errors_of(&doc)
        );
    }
}

#[test]
fn validator_enforces_required_fields_and_bounds() {
    assert_rejected(
        &modified(|d| {
            d["spec"].as_object_mut().unwrap().remove("url");
        }),
        &["spec: required field `url` is missing"],
    );
    assert_rejected(
        &json!({ "apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin", "metadata": { "name": "x", "namespace": "y" } }),
        &["<root>: required field `spec` is missing"],
    );
    assert_rejected(
        &modified(|d| d["spec"]["vmConfig"]["env"][0]["name"] = json!("N".repeat(257))),
        &["spec.vmConfig.env[0].name: length 257 exceeds maxLength 256"],
    );
    assert_rejected(
        &modified(|d| d["spec"]["url"] = json!("")),
        &["spec.url: length 0 is below minLength 1"],
    );
    assert_rejected(
        &modified(|d| d["spec"]["match"][0]["ports"][0]["number"] = json!(0)),
        &["spec.match[0].ports[0].number: 0 is below minimum 1"],
    );
    assert_rejected(
        &modified(|d| d["spec"]["match"][0]["ports"][0]["number"] = json!(65536)),
        &["exceeds maximum 65535"],
    );
    assert_rejected(
        &modified(|d| d["spec"]["selector"]["matchLabels"]["app"] = json!("k".repeat(64))),
        &["spec.selector.matchLabels.app: length 64 exceeds maxLength 63"],
    );
    assert_rejected(
        &modified(|d| {
            d["spec"].as_object_mut().unwrap().remove("selector");
            d["spec"]["targetRefs"] =
                Value::Array(vec![json!({ "kind": "Service", "name": "kiali" }); 17]);
        }),
        &["spec.targetRefs: 17 items, above maxItems 16"],
    );
    assert_rejected(
        &modified(|d| d["spec"]["match"][0]["ports"] = json!([{}])),
        &["spec.match[0].ports[0]: required field `number` is missing"],
    );
}

#[test]
fn validator_rejects_wrong_group_kind_and_metadata() {
    assert_rejected(
        &modified(|d| d["apiVersion"] = json!("extensions.istio.io/v1")),
        &["apiVersion: \"extensions.istio.io/v1\" is not a served version"],
    );
    assert_rejected(
        &modified(|d| d["kind"] = json!("WasmPlugins")),
        &["kind: expected WasmPlugin"],
    );
    assert_rejected(
        &modified(|d| {
            d["metadata"].as_object_mut().unwrap().remove("namespace");
        }),
        &["metadata.namespace"],
    );
    assert_rejected(
        &modified(|d| d["metadata"]["name"] = json!("Kiali_Header_Auth")),
        &["metadata.name"],
    );
    assert_rejected(
        &modified(|d| d["metadata"]["labels"] = json!({ "enabled": true })),
        &["metadata.labels: must map strings to strings"],
    );
}

#[test]
fn validator_refuses_schema_keywords_it_does_not_implement() {
    let mut report = Report::default();
    let schema = json!({ "type": "array", "uniqueItems": true, "items": { "type": "string" } });
    validate(&schema, &json!(["a", "a"]), "list", true, &mut report);
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("keyword `uniqueItems` is not supported")),
        "{:#?}",
        report.errors
    );
}

#[test]
fn validator_implements_one_of_any_of_and_additional_properties() {
    let schema = json!({
        "type": "object",
        "properties": { "a": { "type": "string" }, "b": { "type": "string" } },
        "oneOf": [ { "required": ["a"] }, { "required": ["b"] } ],
        "anyOf": [ { "properties": { "a": { "maxLength": 3 } } }, { "required": ["b"] } ]
    });
    let check = |value: Value| {
        let mut report = Report::default();
        validate(&schema, &value, "x", true, &mut report);
        report.errors
    };
    assert!(
        check(json!({ "a": "one" })).is_empty(),
        "{:#?}",
        check(json!({ "a": "one" }))
    );
    assert!(check(json!({ "b": "two" })).is_empty());
    assert!(check(json!({ "a": "one", "b": "two" }))
        .iter()
        .any(|e| e.contains("oneOf: exactly one of 2 schemas must match, 2 did")));
    assert!(check(json!({})).iter().any(|e| e.contains("oneOf")));
    assert!(check(json!({ "a": "four" }))
        .iter()
        .any(|e| e.contains("anyOf: at least one")));
    assert!(check(json!({ "a": "one", "c": 1 }))
        .iter()
        .any(|e| e.contains("x.c: unknown field")));

    let closed = json!({ "type": "object", "additionalProperties": false, "properties": { "a": { "type": "string" } } });
    let mut report = Report::default();
    validate(
        &closed,
        &json!({ "a": "x", "b": "y" }),
        "x",
        false,
        &mut report,
    );
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("x.b: unknown field")),
        "{:#?}",
        report.errors
    );

    let preserved = json!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true });
    let mut report = Report::default();
    validate(
        &preserved,
        &json!({ "anything": { "goes": [1, 2] } }),
        "x",
        true,
        &mut report,
    );
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
}

#[test]
fn misspelt_plugin_config_passes_the_crd_but_not_the_filter() {
    // pluginConfig is preserve-unknown-fields: the API server accepts anything in it, so only the
    // filter's own validator catches this, at load time in the proxy or here.
    let doc = modified(|d| {
        let identity = d["spec"]["pluginConfig"]["identity"].take();
        d["spec"]["pluginConfig"]["identty"] = identity;
    });
    assert!(errors_of(&doc).is_empty());
    let bytes = serde_json::to_vec(&doc["spec"]["pluginConfig"]).unwrap();
    let error = FilterConfig::from_json(&bytes).expect_err("a misspelt key must be refused");
    assert!(error.to_string().contains("identty"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// (b) deploy/*.yaml
// ---------------------------------------------------------------------------------------------

const CLUSTER_SCOPED: &[&str] = &["Namespace", "ClusterRole", "ClusterRoleBinding"];

fn check_documents(manifests: &[Manifest]) -> Vec<String> {
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
        if !is_dns_subdomain(manifest.name()) {
            errors.push(format!(
                "{}: metadata.name {:?} is not a DNS subdomain",
                manifest.describe(),
                manifest.name()
            ));
        }
        let namespaced = !CLUSTER_SCOPED.contains(&manifest.kind());
        let has_namespace = !manifest.namespace().is_empty();
        if namespaced != has_namespace {
            errors.push(format!(
                "{}: metadata.namespace must be {} for this kind",
                manifest.describe(),
                if namespaced { "set" } else { "absent" }
            ));
        }
        if !seen.insert((
            manifest.kind().to_string(),
            manifest.namespace().to_string(),
            manifest.name().to_string(),
        )) {
            errors.push(format!("{}: defined twice", manifest.describe()));
        }
        for map in ["labels", "annotations"] {
            if let Some(entries) = doc["metadata"].get(map) {
                if !entries
                    .as_object()
                    .is_some_and(|e| e.values().all(Value::is_string))
                {
                    errors.push(format!(
                        "{}: metadata.{map} values must be strings",
                        manifest.describe()
                    ));
                }
            }
        }
    }
    errors
}

/// No `*` anywhere in a rule, and no non-resource URLs.
fn check_rbac_wildcards(manifests: &[Manifest]) -> Vec<String> {
    let mut errors = Vec::new();
    for role in manifests
        .iter()
        .filter(|m| m.kind() == "Role" || m.kind() == "ClusterRole")
    {
        let rules = role.doc["rules"].as_array().cloned().unwrap_or_default();
        if rules.is_empty() {
            errors.push(format!("{}: no rules", role.describe()));
        }
        if role.doc.get("aggregationRule").is_some() {
            errors.push(format!(
                "{}: aggregationRule pulls in rules from elsewhere",
                role.describe()
            ));
        }
        for (index, rule) in rules.iter().enumerate() {
            for field in ["verbs", "resources", "apiGroups", "resourceNames"] {
                for entry in strings(&rule[field]) {
                    if entry.contains('*') {
                        errors.push(format!(
                            "{} rules[{index}].{field}: wildcard {entry:?}",
                            role.describe()
                        ));
                    }
                }
            }
            if rule.get("nonResourceURLs").is_some() {
                errors.push(format!(
                    "{} rules[{index}]: nonResourceURLs",
                    role.describe()
                ));
            }
            if strings(&rule["verbs"]).is_empty() || strings(&rule["resources"]).is_empty() {
                errors.push(format!(
                    "{} rules[{index}]: verbs and resources must be listed",
                    role.describe()
                ));
            }
        }
    }
    errors
}

/// RoleBindings and ClusterRoleBindings point at roles defined in deploy/ and name
/// ServiceAccounts only; every role defined is bound.
fn check_bindings(manifests: &[Manifest]) -> Vec<String> {
    let mut errors = Vec::new();
    let mut bound = BTreeSet::new();
    for binding in manifests
        .iter()
        .filter(|m| m.kind() == "RoleBinding" || m.kind() == "ClusterRoleBinding")
    {
        let role_ref = &binding.doc["roleRef"];
        let role_kind = role_ref["kind"].as_str().unwrap_or("");
        let role_name = role_ref["name"].as_str().unwrap_or("");
        if role_ref["apiGroup"] != "rbac.authorization.k8s.io" {
            errors.push(format!(
                "{}: roleRef.apiGroup must be rbac.authorization.k8s.io",
                binding.describe()
            ));
        }
        let role_namespace = if role_kind == "Role" {
            binding.namespace()
        } else {
            ""
        };
        if binding.kind() == "ClusterRoleBinding" && role_kind != "ClusterRole" {
            errors.push(format!(
                "{}: a ClusterRoleBinding can only reference a ClusterRole",
                binding.describe()
            ));
        }
        let defined = manifests.iter().any(|m| {
            m.kind() == role_kind && m.name() == role_name && m.namespace() == role_namespace
        });
        if !defined {
            errors.push(format!(
                "{}: roleRef {role_kind} {role_namespace}/{role_name} is not defined in deploy/",
                binding.describe()
            ));
        }
        bound.insert((
            role_kind.to_string(),
            role_namespace.to_string(),
            role_name.to_string(),
        ));
        let subjects = binding.doc["subjects"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if subjects.is_empty() {
            errors.push(format!("{}: no subjects", binding.describe()));
        }
        for subject in subjects {
            let complete = subject["name"].as_str().is_some_and(is_dns_subdomain)
                && subject["namespace"].as_str().is_some_and(is_dns_label);
            if subject["kind"] != "ServiceAccount" || !complete {
                errors.push(format!(
                    "{}: subject {subject} must be a ServiceAccount with name and namespace",
                    binding.describe()
                ));
            }
        }
    }
    for role in manifests
        .iter()
        .filter(|m| m.kind() == "Role" || m.kind() == "ClusterRole")
    {
        let key = (
            role.kind().to_string(),
            role.namespace().to_string(),
            role.name().to_string(),
        );
        if !bound.contains(&key) {
            errors.push(format!("{}: defined but never bound", role.describe()));
        }
    }
    errors
}

fn subjects_of(binding: &Manifest) -> Vec<(String, String)> {
    binding.doc["subjects"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            (
                s["namespace"].as_str().unwrap_or("").to_string(),
                s["name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn bindings_to<'a>(manifests: &'a [Manifest], role: &Manifest) -> Vec<&'a Manifest> {
    let binding_kind = if role.kind() == "Role" {
        "RoleBinding"
    } else {
        "ClusterRoleBinding"
    };
    manifests
        .iter()
        .filter(|m| {
            m.kind() == binding_kind
                && m.namespace() == role.namespace()
                && m.doc["roleRef"]["kind"] == role.kind()
                && m.doc["roleRef"]["name"] == role.name()
        })
        .collect()
}

fn token_source(config: &FilterConfig) -> (String, String, String) {
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

#[test]
fn deploy_documents_are_well_formed() {
    let manifests = deploy_manifests();
    let errors = check_documents(&manifests);
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn deploy_rbac_has_no_wildcards() {
    let errors = check_rbac_wildcards(&deploy_manifests());
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn deploy_bindings_reference_defined_roles_and_service_accounts() {
    let manifests = deploy_manifests();
    let errors = check_bindings(&manifests);
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn deploy_token_role_only_creates_tokens_for_the_impersonator() {
    let manifests = deploy_manifests();
    let (namespace, service_account, _) = token_source(&wasmplugin_config());
    let role = one(&manifests, "Role");
    assert_eq!(
        role.namespace(),
        namespace,
        "{}: must live where the ServiceAccount does",
        role.describe()
    );
    assert_eq!(
        role.doc["rules"],
        json!([{
            "apiGroups": [""],
            "resources": ["serviceaccounts/token"],
            "resourceNames": [service_account],
            "verbs": ["create"]
        }]),
        "{}: exactly `create` on serviceaccounts/token for {service_account}",
        role.describe()
    );

    // Bound to the requester: Kiali's ServiceAccount, in the namespace the WasmPlugin runs in.
    let bindings = bindings_to(&manifests, role);
    assert_eq!(
        bindings.len(),
        1,
        "{}: expected one RoleBinding",
        role.describe()
    );
    let plugin_namespace = wasmplugin()["metadata"]["namespace"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        subjects_of(bindings[0]),
        vec![(plugin_namespace, "kiali".to_string())]
    );
}

#[test]
fn deploy_impersonator_exists_where_the_plugin_asks_for_it() {
    let manifests = deploy_manifests();
    let (namespace, service_account, _) = token_source(&wasmplugin_config());
    let namespaces: Vec<&str> = find(&manifests, "Namespace")
        .iter()
        .map(|m| m.name())
        .collect();
    assert!(
        namespaces.contains(&namespace.as_str()),
        "namespace {namespace} not defined in deploy/"
    );
    let account = find(&manifests, "ServiceAccount")
        .into_iter()
        .find(|m| m.namespace() == namespace && m.name() == service_account)
        .unwrap_or_else(|| {
            panic!("ServiceAccount {namespace}/{service_account} not defined in deploy/")
        });
    assert_eq!(
        account.doc["automountServiceAccountToken"],
        json!(false),
        "no pod should carry the impersonator's token"
    );
}

/// Which impersonation resources a configuration needs: users always, groups if it maps a groups
/// header or adds static groups, uids if it maps a uid header, one userextras/<key> per extra.
fn impersonation_needed(config: &FilterConfig) -> BTreeSet<(String, String)> {
    let identity = config.identity.as_ref().expect("identity");
    let mut needed = BTreeSet::from([(String::new(), "users".to_string())]);
    if identity.groups_header.is_some() || !identity.static_groups.is_empty() {
        needed.insert((String::new(), "groups".to_string()));
    }
    if identity.uid_header.is_some() {
        needed.insert(("authentication.k8s.io".to_string(), "uids".to_string()));
    }
    for extra in &identity.extras {
        needed.insert((
            "authentication.k8s.io".to_string(),
            format!("userextras/{}", extra.key),
        ));
    }
    needed
}

fn check_impersonation_role(role: &Manifest) -> Vec<String> {
    let mut errors = Vec::new();
    for (index, rule) in role.doc["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if strings(&rule["verbs"]) != ["impersonate"] {
            errors.push(format!(
                "{} rules[{index}]: verbs must be exactly [impersonate]",
                role.describe()
            ));
        }
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                let allowed = match group.as_str() {
                    "" => resource == "users" || resource == "groups",
                    "authentication.k8s.io" => {
                        resource == "uids" || resource.starts_with("userextras/")
                    }
                    _ => false,
                };
                if !allowed {
                    errors.push(format!(
                        "{} rules[{index}]: {resource:?} in group {group:?} is not an impersonation resource this filter uses",
                        role.describe()
                    ));
                }
            }
        }
    }
    errors
}

fn granted(role: &Manifest) -> BTreeSet<(String, String)> {
    let mut granted = BTreeSet::new();
    for rule in role.doc["rules"].as_array().cloned().unwrap_or_default() {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                granted.insert((group.clone(), resource));
            }
        }
    }
    granted
}

#[test]
fn deploy_impersonation_role_grants_only_impersonate_and_what_configs_send() {
    let manifests = deploy_manifests();
    let role = one(&manifests, "ClusterRole");
    let errors = check_impersonation_role(role);
    assert!(errors.is_empty(), "{errors:#?}");

    // Bound to the impersonator only.
    let (namespace, service_account, _) = token_source(&wasmplugin_config());
    let bindings = bindings_to(&manifests, role);
    assert_eq!(
        bindings.len(),
        1,
        "{}: expected one ClusterRoleBinding",
        role.describe()
    );
    assert_eq!(subjects_of(bindings[0]), vec![(namespace, service_account)]);

    // Every impersonation header the shipped production configurations can send is allowed;
    // otherwise the API server answers 403 to every request.
    let granted = granted(role);
    for (origin, config) in [
        ("wasmplugin.yaml", wasmplugin_config()),
        (
            "deploy/envoy/envoy.yaml",
            envoy_plugin_configs("deploy/envoy/envoy.yaml").remove(0).1,
        ),
    ] {
        let missing: Vec<_> = impersonation_needed(&config)
            .difference(&granted)
            .cloned()
            .collect();
        assert!(
            missing.is_empty(),
            "{origin} sends impersonation headers {} does not allow: {missing:?}",
            role.describe()
        );
    }
}

#[test]
fn rbac_checks_catch_wildcards_broad_grants_and_dangling_references() {
    let parse = |text: &str| -> Vec<Manifest> {
        yaml_documents(text, "inline")
            .into_iter()
            .map(|doc| Manifest {
                file: "inline".into(),
                doc,
            })
            .collect()
    };
    let manifests = parse(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: broad }
rules:
- { apiGroups: [""], resources: ["users", "serviceaccounts"], verbs: ["impersonate", "get"] }
- { apiGroups: ["authentication.k8s.io"], resources: ["userextras/*"], verbs: ["impersonate"] }
- { apiGroups: ["*"], resources: ["pods"], verbs: ["*"], resourceNames: ["*"] }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: dangling, namespace: kiali-auth }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: missing }
subjects:
- { kind: User, name: alice }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: orphan }
rules:
- { apiGroups: [""], resources: ["serviceaccounts/token"], verbs: ["create"] }
"#,
    );
    let wildcards = check_rbac_wildcards(&manifests);
    for needle in [
        "rules[1].resources: wildcard \"userextras/*\"",
        "rules[2].verbs: wildcard \"*\"",
        "rules[2].apiGroups: wildcard \"*\"",
        "rules[2].resourceNames: wildcard \"*\"",
    ] {
        assert!(
            wildcards.iter().any(|e| e.contains(needle)),
            "{needle}: {wildcards:#?}"
        );
    }
    let broad = check_impersonation_role(&manifests[0]);
    for needle in [
        "rules[0]: verbs must be exactly [impersonate]",
        "\"serviceaccounts\" in group \"\"",
        "\"pods\" in group \"*\"",
    ] {
        assert!(
            broad.iter().any(|e| e.contains(needle)),
            "{needle}: {broad:#?}"
        );
    }
    let bindings = check_bindings(&manifests);
    for needle in [
        "roleRef Role kiali-auth/missing is not defined",
        "must be a ServiceAccount with name and namespace",
        "ClusterRole /broad (inline): defined but never bound",
    ] {
        assert!(
            bindings.iter().any(|e| e.contains(needle)),
            "{needle}: {bindings:#?}"
        );
    }
    let documents = check_documents(&manifests);
    assert!(
        documents
            .iter()
            .any(|e| e.contains("Role /orphan (inline): metadata.namespace must be set")),
        "{documents:#?}"
    );
}

#[test]
fn deploy_kiali_patch_sets_header_strategy_and_the_sidecar_credential() {
    let manifests = deploy_manifests();
    let kiali = one(&manifests, "Kiali");
    assert_eq!(kiali.doc["apiVersion"], "kiali.io/v1alpha1");
    assert_eq!(kiali.doc["spec"]["auth"]["strategy"], "header");
    let plugin = wasmplugin();
    assert_eq!(kiali.namespace(), plugin["metadata"]["namespace"]);
    let deployment = &kiali.doc["spec"]["deployment"];
    assert_eq!(
        deployment["pod_labels"]["sidecar.istio.io/inject"], "true",
        "the filter needs Kiali's sidecar"
    );
    assert_eq!(
        deployment["pod_annotations"]["traffic.sidecar.istio.io/excludeOutboundPorts"], "443",
        "Kiali's own HTTPS to the API server must not go through the TLS-originating cluster"
    );

    // TOKEN_REQUESTER_BEARER on the istio-proxy container, from the requester-token Secret.
    let credential = match &wasmplugin_config().token_source.unwrap().kind {
        TokenSourceKind::KubernetesTokenRequest { credential_env, .. } => {
            credential_env.clone().unwrap()
        }
        other => panic!("{other:?}"),
    };
    let sidecar = deployment["additional_pod_containers_yaml"]
        .as_array()
        .and_then(|containers| containers.iter().find(|c| c["name"] == "istio-proxy"))
        .expect("an istio-proxy container override in additional_pod_containers_yaml");
    let variable = sidecar["env"]
        .as_array()
        .and_then(|env| env.iter().find(|v| v["name"] == credential.as_str()))
        .unwrap_or_else(|| panic!("istio-proxy override does not set {credential}"));
    let secret_name = variable["valueFrom"]["secretKeyRef"]["name"]
        .as_str()
        .expect("from a Secret");
    assert_eq!(variable["valueFrom"]["secretKeyRef"]["key"], "token");
    let secret = find(&manifests, "Secret")
        .into_iter()
        .find(|m| m.name() == secret_name && m.namespace() == kiali.namespace())
        .unwrap_or_else(|| panic!("Secret {secret_name} not defined in deploy/"));
    assert_eq!(secret.doc["type"], "kubernetes.io/service-account-token");
    // The token is the requester's: the subject of the token RoleBinding.
    let role = one(&manifests, "Role");
    let requester = subjects_of(bindings_to(&manifests, role)[0]).remove(0);
    assert_eq!(
        (
            secret.namespace().to_string(),
            secret.doc["metadata"]["annotations"]["kubernetes.io/service-account.name"]
                .as_str()
                .unwrap_or("")
                .to_string()
        ),
        requester,
        "the requester token must belong to the ServiceAccount the token Role is bound to"
    );
}

#[test]
fn deploy_destination_rule_gives_the_token_cluster_tls() {
    let manifests = deploy_manifests();
    let config = wasmplugin_config();
    let source = config.token_source.as_ref().unwrap();
    let plugin = wasmplugin();
    let rule = one(&manifests, "DestinationRule");
    let host = rule.doc["spec"]["host"].as_str().unwrap();
    assert_eq!(
        source.cluster,
        format!("outbound|443||{host}"),
        "the plugin's cluster is Istio's cluster for {host}"
    );
    assert_eq!(rule.namespace(), plugin["metadata"]["namespace"]);
    assert_eq!(
        rule.doc["spec"]["workloadSelector"], plugin["spec"]["selector"],
        "only Kiali's sidecar"
    );
    assert_eq!(rule.doc["spec"]["exportTo"], json!(["."]));
    let tls = &rule.doc["spec"]["trafficPolicy"]["tls"];
    assert_eq!(tls["mode"], "SIMPLE");
    assert_eq!(tls["sni"], source.authority.as_str());
    assert_eq!(tls["subjectAltNames"], json!([source.authority]));
    assert_eq!(tls["caCertificates"], SERVICE_ACCOUNT_CA);
}

#[test]
fn deploy_network_policy_admits_only_the_authenticating_proxy() {
    let manifests = deploy_manifests();
    let plugin = wasmplugin();
    let policy = one(&manifests, "NetworkPolicy");
    assert_eq!(policy.namespace(), plugin["metadata"]["namespace"]);
    assert_eq!(
        policy.doc["spec"]["podSelector"], plugin["spec"]["selector"],
        "must select Kiali's pods"
    );
    assert!(strings(&policy.doc["spec"]["policyTypes"]).contains(&"Ingress".to_string()));
    let rules = policy.doc["spec"]["ingress"]
        .as_array()
        .expect("ingress rules");
    assert!(!rules.is_empty());
    let kiali_port = plugin["spec"]["match"][0]["ports"][0]["number"].clone();
    for (index, rule) in rules.iter().enumerate() {
        let from = rule["from"].as_array().cloned().unwrap_or_default();
        assert!(!from.is_empty(), "ingress[{index}] admits every source");
        for peer in &from {
            let selects_something = peer["podSelector"]["matchLabels"]
                .as_object()
                .is_some_and(|m| !m.is_empty())
                || peer["namespaceSelector"]["matchLabels"]
                    .as_object()
                    .is_some_and(|m| !m.is_empty());
            assert!(
                selects_something && peer.get("ipBlock").is_none(),
                "ingress[{index}]: {peer} is too broad"
            );
        }
        let ports: Vec<Value> = rule["ports"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|p| p["port"].clone())
            .collect();
        assert_eq!(
            ports,
            vec![kiali_port.clone()],
            "ingress[{index}] must admit Kiali's HTTP port only"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// (c) Envoy configurations, docker-compose.yaml, Dockerfile
// ---------------------------------------------------------------------------------------------

/// Every Wasm HTTP filter `config` object in an Envoy bootstrap.
fn wasm_filter_configs(bootstrap: &Value) -> Vec<Value> {
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

fn configuration_string(config: &Value, origin: &str) -> String {
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
fn envoy_plugin_configs(relative: &str) -> Vec<(Value, FilterConfig)> {
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

const ENVOY_FILES: &[&str] = &[
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
    let env = &config["vm_config"]["environment_variables"];
    assert_eq!(env["host_env_keys"], json!(["TOKEN_REQUESTER_BEARER"]));
    assert!(
        env.get("key_values").is_none(),
        "{relative}: no secret may be written into the file"
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
                let sub = join(path, key);
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

#[test]
fn manifests_avoid_yaml_1_1_booleans() {
    // Kubernetes and docker compose read YAML 1.1, where an unquoted yes/no/on/off is a boolean;
    // serde_yaml (YAML 1.2) would read a string, so this test would not notice the difference.
    let mut files = vec![
        "wasmplugin.yaml".to_string(),
        "docker-compose.yaml".to_string(),
    ];
    files.extend(deploy_manifests().into_iter().map(|m| m.file));
    files.extend(ENVOY_FILES.iter().map(|f| f.to_string()));
    files.sort();
    files.dedup();
    for file in files {
        for (number, line) in read(&file).lines().enumerate() {
            let code = line.split(" #").next().unwrap_or("").trim_end();
            if code.trim_start().starts_with('#') {
                continue;
            }
            let value = code
                .rsplit(": ")
                .next()
                .unwrap_or("")
                .trim()
                .trim_start_matches("- ");
            let bare = [
                "yes", "no", "on", "off", "y", "n", "Yes", "No", "On", "Off", "YES", "NO", "ON",
                "OFF",
            ];
            if code.contains(": ") && bare.contains(&value) {
                panic!(
                    "{file}:{}: unquoted {value:?} is a boolean in YAML 1.1; quote it",
                    number + 1
                );
            }
        }
    }
}
