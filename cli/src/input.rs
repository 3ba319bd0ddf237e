//! Reading inputs: files, directories, `-` (stdin), and finding this filter's configurations in
//! them, whatever wraps them: a plain plugin configuration (JSON), a WasmPlugin or
//! TrafficExtension (`pluginConfig`), an Envoy bootstrap or EnvoyFilter (every
//! `envoy.filters.http.wasm` whose configuration is this filter's), a multi-document stream
//! (`kubectl kustomize deploy/`), a `List`, a ConfigMap holding a bootstrap, or the ```json blocks
//! of a Markdown file.

use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value};

/// Where a configuration sits, for the checks that depend on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A bare plugin configuration.
    Plain,
    /// An Istio WasmPlugin or TrafficExtension.
    Istio {
        phase: Option<String>,
        fail_strategy: Option<String>,
        url: Option<String>,
        sha256: Option<Value>,
    },
    /// An `envoy.filters.http.wasm` filter; `jwt_authn_before` is `None` when the filter chain is
    /// not known (an EnvoyFilter patch).
    Envoy { fail_open: bool, jwt_authn_before: Option<bool> },
}

/// One configuration of this filter found in the inputs.
#[derive(Debug, Clone)]
pub struct Found {
    /// "FILE: WasmPlugin NAMESPACE/NAME", for messages.
    pub origin: String,
    /// The configuration exactly as the filter receives it.
    pub json: String,
    pub host: Host,
    /// Where the configuration sits in its YAML document (a JSON pointer), for `hints`.
    pub json_pointer: Option<String>,
    /// Scalars YAML 1.1 typed differently from how they read (`off` as false), said with an error.
    pub hints: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Scan {
    pub found: Vec<Found>,
    /// Documents that hold no configuration of this filter (said, not failed).
    pub skipped: Vec<String>,
    /// Inputs that could not be read as JSON or YAML.
    pub unreadable: Vec<String>,
}

/// The top-level keys of the plugin configuration (`config::raw`): a document with one of them is
/// a plugin configuration, a WasmPlugin whose `pluginConfig` has one is this filter's.
const PLUGIN_KEYS: &[&str] = &[
    "identity",
    "trusted_peers",
    "token_source",
    "max_request_wait_ms",
    "max_waiting_requests",
    "rbac_check",
    "upstream_hosts",
    "access_log_filter_state",
];
const NAMES: [&str; 2] = ["kiali-header-auth", "kiali_header_auth"];
const WASM_TYPE: &str = "filters.http.wasm.v3.Wasm";

/// Reads every input: `-` is stdin, a directory is walked for `.yaml`, `.yml`, `.json` and `.md`
/// files (hidden directories and `target/` skipped). `Err` is a usage error (a missing file).
pub fn read_inputs(paths: &[String], stdin: &mut dyn Read) -> Result<Vec<(String, String)>, String> {
    let mut texts = Vec::new();
    for path in paths {
        if path == "-" {
            let mut text = String::new();
            stdin
                .read_to_string(&mut text)
                .map_err(|error| format!("stdin: {error}"))?;
            texts.push(("<stdin>".to_string(), text));
        } else if Path::new(path).is_dir() {
            let mut files = Vec::new();
            walk(Path::new(path), &mut files);
            files.sort();
            for file in files {
                texts.push((file.clone(), read_file(&file)?));
            }
        } else {
            texts.push((path.clone(), read_file(path)?));
        }
    }
    Ok(texts)
}

fn read_file(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|error| format!("{path}: {error}"))
}

fn walk(dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                walk(&path, out);
            }
        } else if [".yaml", ".yml", ".json", ".md"].iter().any(|ext| name.ends_with(ext)) {
            out.push(path.to_string_lossy().into_owned());
        }
    }
}

/// Finds the configurations in every input.
pub fn scan(texts: &[(String, String)]) -> Scan {
    let mut scan = Scan::default();
    for (name, text) in texts {
        scan_text(name, text, &mut scan);
    }
    scan
}

pub fn scan_text(name: &str, text: &str, scan: &mut Scan) {
    if name.ends_with(".md") {
        for (line, block) in json_blocks(text) {
            scan.found.push(Found {
                origin: format!("{name}:{line}: ```json block"),
                json: block,
                host: Host::Plain,
                json_pointer: None,
                hints: Vec::new(),
            });
        }
        return;
    }
    let trimmed = text.trim_start();
    if name.ends_with(".json") || trimmed.starts_with('{') || trimmed.is_empty() && name == "<stdin>" {
        match serde_json::from_str::<Value>(text) {
            Ok(doc) => classify(name, &doc, Some(text), scan),
            // Not JSON: the filter's own parser says why, with the same message it logs.
            Err(_) if name.ends_with(".json") || trimmed.is_empty() => scan.found.push(Found {
                origin: name.to_string(),
                json: text.to_string(),
                host: Host::Plain,
                json_pointer: None,
                hints: Vec::new(),
            }),
            Err(_) => scan_yaml(name, text, scan),
        }
        return;
    }
    scan_yaml(name, text, scan);
}

/// YAML as kubectl (and Envoy's loader) read it: YAML 1.1, where an unquoted `off` is a boolean
/// and an unquoted all-digit digest a number (`harness::yaml`).
fn scan_yaml(name: &str, text: &str, scan: &mut Scan) {
    let documents = match harness::yaml::documents(text) {
        Ok(documents) => documents,
        Err(error) => {
            scan.unreadable.push(format!("{name}: not JSON or YAML: {error}"));
            return;
        }
    };
    let many = documents.len() > 1;
    for (index, document) in documents.iter().enumerate() {
        let label = if many { format!("{name} (document {})", index + 1) } else { name.to_string() };
        let before = scan.found.len();
        classify(&label, &document.value, None, scan);
        for found in &mut scan.found[before..] {
            found.hints = retyped_hints(&found.json_pointer, &document.retyped);
        }
    }
}

/// What YAML 1.1 typed differently from the text under `prefix`, as advice.
fn retyped_hints(prefix: &Option<String>, retyped: &std::collections::BTreeMap<String, harness::yaml::Retyped>) -> Vec<String> {
    let Some(prefix) = prefix else { return Vec::new() };
    retyped
        .iter()
        .filter(|(pointer, _)| pointer.starts_with(prefix.as_str()))
        .map(|(pointer, r)| {
            format!(
                "kubectl (YAML 1.1) reads the unquoted `{}` at line {} ({pointer}) as {}: quote it if you meant a string",
                r.text, r.line, r.became
            )
        })
        .collect()
}

/// One parsed document. `raw` is its text when the document is the whole JSON input, so a bare
/// plugin configuration reaches the validator byte for byte.
fn classify(label: &str, doc: &Value, raw: Option<&str>, scan: &mut Scan) {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    match kind {
        "List" => {
            for (index, item) in items(doc).iter().enumerate() {
                classify(&format!("{label} item {}", index + 1), item, None, scan);
            }
        }
        "WasmPlugin" => istio(label, doc, doc.get("spec"), scan),
        "TrafficExtension" => match doc.get("spec").and_then(|spec| spec.get("wasm")) {
            Some(wasm) => istio(label, doc, Some(wasm), scan),
            None => scan.skipped.push(format!("{label}: {}: not a Wasm extension", name_of(doc, kind))),
        },
        "ConfigMap" => {
            let before = scan.found.len();
            if let Some(data) = doc.get("data").and_then(Value::as_object) {
                for (key, value) in data {
                    if let Some(text) = value.as_str() {
                        let mut inner = Scan::default();
                        scan_text(&format!("{label}: {} data.{key}", name_of(doc, kind)), text, &mut inner);
                        scan.found.extend(inner.found);
                    }
                }
            }
            if scan.found.len() == before {
                scan.skipped.push(format!("{label}: {}: no configuration of this filter", name_of(doc, kind)));
            }
        }
        _ => {
            let before = scan.found.len();
            walk_envoy(label, doc, scan);
            if scan.found.len() > before {
                return;
            }
            let is_plugin = doc.as_object().is_some_and(|map| {
                kind.is_empty() && (map.is_empty() || map.keys().any(|key| PLUGIN_KEYS.contains(&key.as_str())))
            });
            if is_plugin || (raw.is_some() && kind.is_empty() && !has_envoy_shape(doc)) {
                let json = raw.map_or_else(|| doc.to_string(), str::to_string);
                scan.found.push(Found { origin: label.to_string(), json, host: Host::Plain, json_pointer: Some(String::new()), hints: Vec::new() });
            } else if kind.is_empty() {
                scan.skipped.push(format!("{label}: no configuration of this filter"));
            } else {
                scan.skipped.push(format!("{label}: {}: no configuration of this filter", name_of(doc, kind)));
            }
        }
    }
}

fn items(doc: &Value) -> Vec<Value> {
    doc.get("items").and_then(Value::as_array).cloned().unwrap_or_default()
}

fn has_envoy_shape(doc: &Value) -> bool {
    ["static_resources", "dynamic_resources", "admin"].iter().any(|key| doc.get(key).is_some())
}

fn name_of(doc: &Value, kind: &str) -> String {
    let metadata = doc.get("metadata");
    let get = |key| metadata.and_then(|m| m.get(key)).and_then(Value::as_str);
    match (get("namespace"), get("name")) {
        (Some(namespace), Some(name)) => format!("{kind} {namespace}/{name}"),
        (None, Some(name)) => format!("{kind} {name}"),
        _ => kind.to_string(),
    }
}

/// `wasm` is the object holding `url`, `sha256`, `failStrategy` and `pluginConfig` (the spec of
/// a WasmPlugin, `spec.wasm` of a TrafficExtension).
fn istio(label: &str, doc: &Value, wasm: Option<&Value>, scan: &mut Scan) {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    let empty = Value::Object(Map::new());
    let wasm = wasm.unwrap_or(&empty);
    let text = |key: &str| wasm.get(key).and_then(Value::as_str).map(str::to_string);
    let plugin = wasm.get("pluginConfig");
    let named = NAMES.iter().any(|name| {
        text("url").is_some_and(|url| url.contains(name)) || name_of(doc, kind).contains(name)
    });
    let keyed = plugin
        .and_then(Value::as_object)
        .is_some_and(|map| map.keys().any(|key| PLUGIN_KEYS.contains(&key.as_str())));
    let origin = format!("{label}: {}", name_of(doc, kind));
    if !named && !keyed {
        scan.skipped.push(format!("{origin}: another plugin (neither its url, its name nor its pluginConfig is this filter's)"));
        return;
    }
    // Istio hands pluginConfig to the filter serialised as JSON; none is an empty configuration.
    let json = plugin.map_or_else(String::new, Value::to_string);
    let phase = doc.get("spec").and_then(|spec| spec.get("phase")).and_then(Value::as_str).map(str::to_string);
    let host = Host::Istio { phase, fail_strategy: text("failStrategy"), url: text("url"), sha256: wasm.get("sha256").cloned() };
    let json_pointer = Some(if kind == "TrafficExtension" { "/spec/wasm/pluginConfig" } else { "/spec/pluginConfig" }.to_string());
    scan.found.push(Found { origin, json, host, json_pointer, hints: Vec::new() });
}

/// Finds `envoy.filters.http.wasm` filters: in `http_filters` lists (a bootstrap, a listener),
/// knowing which filters run before; anywhere else (an EnvoyFilter patch) without that.
fn walk_envoy(label: &str, value: &Value, scan: &mut Scan) {
    match value {
        Value::Object(map) => {
            if is_wasm(value) {
                envoy_filter(label, None, value, None, scan);
                return;
            }
            for (key, child) in map {
                match (key.as_str(), child.as_array()) {
                    ("http_filters", Some(filters)) => chain(label, filters, scan),
                    _ => walk_envoy(label, child, scan),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| walk_envoy(label, item, scan)),
        _ => {}
    }
}

fn chain(label: &str, filters: &[Value], scan: &mut Scan) {
    let mut jwt_authn_seen = false;
    for entry in filters {
        let typed = entry.get("typed_config").unwrap_or(&Value::Null);
        let name = entry.get("name").and_then(Value::as_str);
        if is_wasm(typed) {
            envoy_filter(label, name, typed, Some(jwt_authn_seen), scan);
        } else {
            let type_url = typed.get("@type").and_then(Value::as_str).unwrap_or("");
            jwt_authn_seen |= name == Some("envoy.filters.http.jwt_authn") || type_url.contains("jwt_authn");
            walk_envoy(label, entry, scan);
        }
    }
}

fn is_wasm(value: &Value) -> bool {
    value.get("@type").and_then(Value::as_str).is_some_and(|t| t.ends_with(WASM_TYPE))
}

fn envoy_filter(label: &str, name: Option<&str>, typed: &Value, jwt_authn_before: Option<bool>, scan: &mut Scan) {
    let config = typed.get("config").unwrap_or(&Value::Null);
    let name = name.or_else(|| config.get("name").and_then(Value::as_str)).unwrap_or("(unnamed)");
    let origin = format!("{label}: Envoy HTTP filter `{name}`");
    let configuration = config.get("configuration");
    let json = match configuration {
        None => String::new(),
        Some(any) => match any.get("value").and_then(Value::as_str) {
            Some(value) if any.get("@type").and_then(Value::as_str).is_none_or(|t| t.ends_with("google.protobuf.StringValue")) => value.to_string(),
            _ => {
                scan.unreadable.push(format!(
                    "{origin}: `configuration` is not a google.protobuf.StringValue with a `value`; this tool reads only that form"
                ));
                return;
            }
        },
    };
    let named = NAMES.iter().any(|n| config.to_string().contains(n));
    let keyed = serde_json::from_str::<Value>(&json)
        .ok()
        .and_then(|v| v.as_object().map(|m| m.keys().any(|k| PLUGIN_KEYS.contains(&k.as_str()))))
        .unwrap_or(false);
    if !named && !keyed {
        scan.skipped.push(format!("{origin}: another Wasm module"));
        return;
    }
    let fail_open = config.get("failure_policy").and_then(Value::as_str) == Some("FAIL_OPEN")
        || config.get("fail_open").and_then(Value::as_bool) == Some(true);
    scan.found.push(Found { origin, json, host: Host::Envoy { fail_open, jwt_authn_before }, json_pointer: None, hints: Vec::new() });
}

/// The ```json blocks of a Markdown text, with the line each starts on.
pub fn json_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim();
        match &mut current {
            None if trimmed == "```json" => current = Some((index + 1, String::new())),
            Some((_, block)) if trimmed == "```" => {
                if let Some(done) = current.take() {
                    blocks.push(done);
                }
            }
            Some((_, block)) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}
