//! Well-known paths: repository root, the built filter, the Envoy binary.

use std::path::{Path, PathBuf};

/// The repository root (the parent of the `harness` crate directory).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.to_path_buf())
}

/// Path of the filter module: `$KHA_WASM` or the release build under `target/`.
///
/// Panics with "run `make wasm` first" when the file does not exist.
pub fn wasm_path() -> PathBuf {
    let p = match std::env::var_os("KHA_WASM") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => repo_root().join("target/wasm32-wasip1/release/kiali_header_auth.wasm"),
    };
    if !p.is_file() {
        panic!(
            "wasm module not found at {}: run `make wasm` first (or set KHA_WASM)",
            p.display()
        );
    }
    p
}

/// Like [`envoy_bin`] but returns `None` instead of panicking.
pub fn find_envoy_bin() -> Option<PathBuf> {
    if let Some(v) = std::env::var_os("ENVOY_BIN") {
        if !v.is_empty() {
            let p = PathBuf::from(v);
            return p.is_file().then_some(p);
        }
    }
    let lib = repo_root().join(".venv/lib");
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path().join("site-packages/envoy/_bin/envoy"))
        .filter(|p| p.is_file())
        .collect();
    candidates.sort();
    candidates.into_iter().next()
}

/// Path of the Envoy binary: `$ENVOY_BIN`, else the first
/// `<root>/.venv/lib/python3*/site-packages/envoy/_bin/envoy`.
///
/// Panics with "run `make envoy`" when none is found.
pub fn envoy_bin() -> PathBuf {
    find_envoy_bin().unwrap_or_else(|| {
        panic!(
            "envoy binary not found (ENVOY_BIN unset or wrong, nothing under {}/.venv/lib/python3*/site-packages/envoy/_bin/): run `make envoy`",
            repo_root().display()
        )
    })
}

/// Every file of the repository's working tree, sorted: hidden directories, `target/` and
/// `node_modules/` are skipped. For tests that check every configuration file in the repository.
pub fn repository_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![repo_root()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if !path.is_dir() {
                files.push(path);
            } else if !name.starts_with('.') && name != "target" && name != "node_modules" {
                stack.push(path);
            }
        }
    }
    files.sort();
    files
}
