//! Every repository path the documentation names exists, and the top-level wasmplugin.yaml (the
//! file users look for beside envoy.yaml) is the deploy/istio/wasmplugin.yaml that
//! deploy/kustomization.yaml applies.

use std::path::Path;

use crate::manifests::files::{read, repo};

/// Extensions of the files this repository holds; a path-like token with another extension
/// (`.go`, `.proto`, `.tpl`, `.yml`) names a file of another project (Istio's or Kiali's source,
/// cited in comments), not ours.
const OURS: &[&str] = &[".yaml", ".rs", ".md", ".toml", ".sh", ".crt", ".json", ".lock"];

/// Path-like tokens of `text`: characters of file names and `/`, at least one `/`.
fn path_tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || "._/-".contains(c)))
        .map(|t| t.trim_end_matches(['.', ',']))
        .filter(|t| t.contains('/') && !t.starts_with('/') && !t.contains("//"))
        .map(str::to_string)
        .collect()
}

/// The tokens that name files or directories of this repository: `../...`, or a file with one of
/// our extensions whose first component is an entry of the repository's top level, of deploy/ or
/// of the naming file's directory, or a directory (no extension) whose first component is a
/// top-level entry (so `istio/istio`, a GitHub repository, is not read as deploy/istio/istio).
fn repository_paths(text: &str, file: &Path) -> Vec<(String, bool)> {
    let root = repo();
    let dir = file.parent().unwrap_or(&root).to_path_buf();
    let bases = [root.clone(), dir, root.join("deploy")];
    path_tokens(text)
        .into_iter()
        .filter_map(|token| {
            let first = token.split('/').next().unwrap_or("");
            let last = token.rsplit('/').next().unwrap_or("");
            let directory = !last.contains('.');
            let ours = OURS.iter().any(|e| last.ends_with(e));
            // A `../` path that leaves the repository (`../shared/...`, material beside the
            // checkout on the team's machines) is not ours to check: a fresh clone elsewhere
            // does not have it.
            if first == ".." && !stays_inside(&root, file.parent().unwrap_or(&root), &token) {
                return None;
            }
            // Build output (`target/...`, `dist/...`) exists only after a build, not in a clone.
            if first == "target" || first == "dist" {
                return None;
            }
            let anchored = first == ".."
                || (ours && bases.iter().any(|b| !first.is_empty() && b.join(first).exists()))
                || (directory && !first.is_empty() && root.join(first).exists());
            ((directory || ours) && anchored).then(|| {
                let exists = bases.iter().any(|b| b.join(&token).exists());
                (token, exists)
            })
        })
        .collect()
}

/// The Markdown documentation, repository-relative: README.md, every docs/*.md (sorted) and
/// deploy/README.md.
pub fn documentation_files() -> Vec<String> {
    let mut docs: Vec<String> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    docs.sort();
    std::iter::once("README.md".to_string())
        .chain(docs)
        .chain(std::iter::once("deploy/README.md".to_string()))
        .collect()
}

/// The text of every file of `documentation_files`, one after the other.
pub fn documentation() -> String {
    documentation_files().iter().map(|f| read(f) + "\n").collect()
}

/// Whether `relative`, taken from `dir`, names something inside `root` (lexically: `..` pops).
fn stays_inside(root: &Path, dir: &Path, relative: &str) -> bool {
    let mut parts: Vec<std::ffi::OsString> = dir.components().map(|c| c.as_os_str().to_owned()).collect();
    for part in relative.split('/') {
        match part {
            ".." => {
                parts.pop();
            }
            "" | "." => {}
            other => parts.push(other.into()),
        }
    }
    parts.iter().collect::<std::path::PathBuf>().starts_with(root)
}

/// The comment lines of a YAML file (`#` to the end of the line).
fn yaml_comments(text: &str) -> String {
    text.lines()
        .filter_map(|line| line.find('#').map(|i| &line[i..]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Issue 20, "Smaller": stale paths (`deploy/networkpolicy.yaml`, `../../wasmplugin.yaml`, ...).
#[test]
fn every_repository_path_named_in_readmes_and_yaml_comments_exists() {
    let mut sources: Vec<(std::path::PathBuf, String)> = documentation_files()
        .iter()
        .map(|f| (repo().join(f), read(f)))
        .collect();
    for path in harness::paths::repository_files() {
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            sources.push((path, yaml_comments(&text)));
        }
    }
    let mut missing = Vec::new();
    let mut checked = 0;
    for (file, text) in &sources {
        for (token, exists) in repository_paths(text, file) {
            checked += 1;
            if !exists {
                let shown = file.strip_prefix(repo()).unwrap_or(file).display().to_string();
                missing.push(format!("{shown}: {token}"));
            }
        }
    }
    assert!(missing.is_empty(), "paths that do not exist: {missing:#?}");
    assert!(checked > 50, "{checked} paths checked");
}

#[test]
fn the_path_check_catches_the_stale_paths_of_issue_20() {
    let file = repo().join("deploy/istio/wasmplugin.yaml");
    let stale = "# Keep deploy/networkpolicy.yaml in step; see ../ambient/wasmplugin.yaml, istio/jwt-wasmplugin.yaml and tests/manifests.rs";
    let found = repository_paths(stale, &file);
    assert_eq!(
        found,
        vec![
            ("deploy/networkpolicy.yaml".to_string(), false),
            ("../ambient/wasmplugin.yaml".to_string(), false),
            ("istio/jwt-wasmplugin.yaml".to_string(), false),
            ("tests/manifests.rs".to_string(), false),
        ]
    );
    let cited = "# istio/istio pilot/pkg/networking/core/cluster_builder.go, envoy/config/cluster/v3/cluster.proto";
    assert!(repository_paths(cited, &file).iter().all(|(_, exists)| *exists), "other projects' paths are not ours");
}

/// Issue 20, breaker 7: the design card's top-level wasmplugin.yaml, equal to deploy's copy.
#[test]
fn the_top_level_wasmplugin_is_deploys() {
    assert_eq!(
        read("wasmplugin.yaml"),
        read("deploy/istio/wasmplugin.yaml"),
        "wasmplugin.yaml and deploy/istio/wasmplugin.yaml must be the same file"
    );
}

/// The cells of a Markdown table row: `|` separates them, except inside backticks.
fn cells(row: &str) -> usize {
    let mut code = false;
    let mut separators: usize = 0;
    for c in row.chars() {
        match c {
            '`' => code = !code,
            '|' if !code => separators += 1,
            _ => {}
        }
    }
    separators.saturating_sub(1)
}

/// Every row of every table in README.md, docs/*.md and deploy/README.md has as many cells as its
/// header.
#[test]
fn deploy_readme_tables_are_well_formed() {
    for file in documentation_files() {
        let mut header: Option<usize> = None;
        for (number, line) in read(&file).lines().enumerate() {
            let line = line.trim();
            if !line.starts_with('|') {
                header = None;
                continue;
            }
            let cells = cells(line);
            match header {
                None => header = Some(cells),
                Some(expected) => assert_eq!(
                    cells,
                    expected,
                    "{file}:{}: {cells} cells, the header has {expected}: {line}",
                    number + 1
                ),
            }
        }
    }
}

