//! The image as a user ships it: `make image` (buildah, no daemon) and `make push` into a real
//! OCI registry (Debian's docker-registry, the CNCF distribution registry, on 127.0.0.1), then
//! what Istio's image fetcher would see: the registry's manifest digest is the one `make push`
//! printed for `sha256`, and the image's single layer is a tar holding `plugin.wasm`
//! byte-identical to the module `make wasm` built.

use std::fs;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A registry on 127.0.0.1 with its own config and storage; stopped on drop.
struct Registry {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let addr: SocketAddr = ([127, 0, 0, 1], harness::ports::free_port()).into();
        let config = dir.path().join("config.yml");
        let storage = dir.path().join("storage");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                storage.display()
            ),
        )
        .expect("write the registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (`make tools` installs Debian's docker-registry)");
        let registry = Registry {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(response) = harness::client::get(addr, "/v2/") {
                assert_eq!(response.status, 200, "GET /v2/ on the registry");
                return registry;
            }
            assert!(
                Instant::now() < deadline,
                "the registry did not answer on {addr}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(command: &mut Command) -> String {
    let output: Output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `make <args>` in the repository, as a user runs it (not inside this test's make).
fn make(args: &[&str]) -> String {
    run(Command::new("make")
        .args(args)
        .current_dir(repo())
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL"))
}

/// The value after `prefix` on the first line that starts with it.
fn line_after<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find_map(|line| line.trim().strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"))
        .trim()
}

fn read_json(path: &Path) -> Value {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("digest {digest}"));
    layout.join("blobs").join("sha256").join(hex)
}

#[test]
fn make_image_and_make_push_deliver_plugin_wasm_through_a_real_registry() {
    let registry = Registry::start();

    let built = make(&["image"]);
    let image_digest = line_after(&built, "manifest digest:").to_string();
    assert!(
        image_digest.starts_with("sha256:") && image_digest.len() == 71,
        "{image_digest}"
    );

    let reference = format!("{}/kiali-header-auth:test", registry.addr);
    let pushed = make(&["push", &format!("IMAGE={reference}"), "TLS_VERIFY=false"]);
    let to_paste = line_after(&pushed, "sha256:").trim_matches('"').to_string();
    assert_eq!(
        format!("sha256:{to_paste}"),
        image_digest,
        "make push printed:\n{pushed}"
    );
    assert_eq!(line_after(&pushed, "url:"), format!("oci://{reference}"));

    // What the registry serves for the tag.
    let inspected = run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--format",
        "{{.Digest}}",
        &format!("docker://{reference}"),
    ]));
    assert_eq!(
        inspected.trim(),
        image_digest,
        "the registry's manifest digest"
    );

    // Pulled back into an OCI layout, as an image fetcher gets it.
    let pulled = tempfile::tempdir().expect("a temporary directory");
    let layout = pulled.path().join("layout");
    run(Command::new("skopeo").args([
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{reference}"),
        &format!("oci:{}:test", layout.display()),
    ]));
    let index = read_json(&layout.join("index.json"));
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap_or_default();
    assert_eq!(manifest_digest, image_digest, "pulled manifest");
    let manifest = read_json(&blob(&layout, manifest_digest));
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        layers.len(),
        1,
        "Istio's compat layout has one layer: {manifest}"
    );
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let layer = fs::read(blob(
        &layout,
        layers[0]["digest"].as_str().unwrap_or_default(),
    ))
    .expect("the layer blob");

    let mut files = Vec::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer.as_slice()));
    for entry in archive.entries().expect("a tar layer") {
        let mut entry = entry.expect("a tar entry");
        let path = entry
            .path()
            .expect("an entry path")
            .to_string_lossy()
            .into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("entry contents");
        files.push((path, bytes));
    }
    let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, ["plugin.wasm"], "the layer holds the module only");
    let module_path = std::env::var("KHA_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("target/wasm32-wasip1/release/kiali_header_auth.wasm"));
    let module = fs::read(&module_path).expect("the module make wasm built");
    assert!(
        module.starts_with(b"\0asm"),
        "{} is not a Wasm module",
        module_path.display()
    );
    assert!(
        files[0].1 == module,
        "plugin.wasm differs from {}",
        module_path.display()
    );

    // The same module gives the same digest (timestamps at 0): a rebuild does not unpin.
    let rebuilt = make(&["image"]);
    assert_eq!(line_after(&rebuilt, "manifest digest:"), image_digest);
    drop(registry);
}
