//! Where the deployment files are and how they are read (always through the YAML 1.1 loader).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::manifests::yaml::{self, Retyped};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn read(relative: &str) -> String {
    let path = repo().join(relative);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A file that holds exactly one YAML document.
pub fn yaml_file(relative: &str) -> Value {
    yaml::single(&read(relative), relative)
}

/// One document of a manifest file.
pub struct Manifest {
    pub file: String,
    pub doc: Value,
    retyped: BTreeMap<String, Retyped>,
}

impl Manifest {
    pub fn new(file: &str, doc: Value) -> Manifest {
        Manifest {
            file: file.to_string(),
            doc,
            retyped: BTreeMap::new(),
        }
    }
    pub fn kind(&self) -> &str {
        self.doc["kind"].as_str().unwrap_or("")
    }
    pub fn name(&self) -> &str {
        self.doc["metadata"]["name"].as_str().unwrap_or("")
    }
    pub fn namespace(&self) -> &str {
        self.doc["metadata"]["namespace"].as_str().unwrap_or("")
    }
    pub fn describe(&self) -> String {
        format!(
            "{} {}/{} ({})",
            self.kind(),
            self.namespace(),
            self.name(),
            self.file
        )
    }
    /// Unquoted scalars YAML 1.1 reads as booleans although they do not say true or false
    /// (`yes`, `no`, `on`, `off`, `y`, `n`): (line, text).
    pub fn surprising_booleans(&self) -> Vec<(usize, String)> {
        self.retyped
            .values()
            .filter(|r| {
                r.became == "a boolean"
                    && !["true", "false"].contains(&r.text.to_lowercase().as_str())
            })
            .map(|r| (r.line, r.text.clone()))
            .collect()
    }
    /// Why the value at `pointer` may not be what the author meant (YAML 1.1 typing).
    pub fn hint(&self, pointer: &str) -> Option<String> {
        self.retyped.get(pointer).map(|r| {
            format!(
                "line {}: unquoted `{}` is {} in YAML 1.1 (kubectl); quote it",
                r.line, r.text, r.became
            )
        })
    }
}

/// Every document of a YAML text.
pub fn manifests_in(text: &str, file: &str) -> Vec<Manifest> {
    yaml::documents(text, file)
        .into_iter()
        .map(|d| Manifest {
            file: file.to_string(),
            doc: d.value,
            retyped: d.retyped,
        })
        .collect()
}

fn yaml_files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if path.is_dir() {
            yaml_files_under(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

/// Every YAML file under `deploy/` except the CRDs in `deploy/schemas/` (reference data), as
/// repository-relative paths in order.
pub fn deploy_files() -> Vec<String> {
    let mut paths = Vec::new();
    yaml_files_under(&repo().join("deploy"), &mut paths);
    let mut files: Vec<String> = paths
        .iter()
        .filter_map(|p| p.strip_prefix(repo()).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| !p.starts_with("deploy/schemas/"))
        .collect();
    files.sort();
    files
}

/// Every document of every file `deploy_files` lists.
pub fn all_deploy_manifests() -> Vec<Manifest> {
    deploy_files()
        .iter()
        .flat_map(|file| manifests_in(&read(file), file))
        .collect()
}

/// The documents of `deploy/*.yaml` (not the subdirectories): the resources beside the plugin,
/// which the RBAC and cross-reference checks look at together.
pub fn top_level_deploy_manifests() -> Vec<Manifest> {
    let manifests: Vec<Manifest> = all_deploy_manifests()
        .into_iter()
        .filter(|m| m.file.matches('/').count() == 1)
        .collect();
    assert!(!manifests.is_empty(), "no YAML files in deploy/");
    manifests
}

pub fn find<'a>(manifests: &'a [Manifest], kind: &str) -> Vec<&'a Manifest> {
    manifests.iter().filter(|m| m.kind() == kind).collect()
}

pub fn one<'a>(manifests: &'a [Manifest], kind: &str) -> &'a Manifest {
    let found = find(manifests, kind);
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {kind}, found {}",
        found.len()
    );
    found[0]
}

pub fn strings(value: &Value) -> Vec<String> {
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
