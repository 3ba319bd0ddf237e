//! The rotating bootstrap credential, as the kubelet provides it to a pod: a projected
//! ServiceAccount token file that is replaced (write a new file, rename it over the old one)
//! before it expires. Envoy's upstream `credential_injector` reads it through an SDS generic
//! secret whose `path_config_source` watches the token's directory (see
//! `EnvoyConfig::bootstrap_credential`).
//!
//! The strict token service accepts only the current token: `BootstrapToken::rotate` returns the
//! new one, the caller hands it to `TokenService::set_required_bearer` and the old one is revoked.

use crate::token_service::{random_u64, TokenService};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// The token file's name in its directory (as in a projected volume's `path`).
pub const TOKEN_FILE: &str = "token";
/// The SDS resource file Envoy's `path_config_source` reads, next to the token.
pub const SDS_FILE: &str = "sds.yaml";
/// The SDS secret's name, referenced by the credential injector.
pub const SECRET_NAME: &str = "kiali-header-auth-bootstrap-token";

/// A token file in `dir` plus the SDS resource that points Envoy at it.
pub struct BootstrapToken {
    dir: PathBuf,
    current: String,
    rotations: u64,
}

/// Writes `contents` to `path` the way the kubelet does: a new file in the same directory, synced,
/// then renamed over the old one, so a reader sees the old or the new token, never half of one.
pub fn replace_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("no parent directory"))?;
    let mut staging = tempfile::NamedTempFile::new_in(dir)?;
    staging.write_all(contents)?;
    staging.as_file().sync_all()?;
    staging.persist(path).map(drop).map_err(|e| e.error)
}

/// The SDS resource (a generic secret read from `token_file`), as Envoy's path config source
/// expects it.
pub fn sds_resource(token_file: &Path) -> String {
    format!(
        "resources:\n- \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n  \
         name: {SECRET_NAME}\n  generic_secret:\n    secret:\n      filename: {}\n",
        serde_json::to_string(&token_file.to_string_lossy()).unwrap_or_default()
    )
}

impl BootstrapToken {
    /// Creates `dir` if needed, writes a first token and the SDS resource.
    pub fn create(dir: &Path) -> io::Result<BootstrapToken> {
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        let mut token = BootstrapToken {
            dir,
            current: String::new(),
            rotations: 0,
        };
        token.rotate()?;
        replace_file(
            &token.sds_file(),
            sds_resource(&token.token_file()).as_bytes(),
        )?;
        Ok(token)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn token_file(&self) -> PathBuf {
        self.dir.join(TOKEN_FILE)
    }

    pub fn sds_file(&self) -> PathBuf {
        self.dir.join(SDS_FILE)
    }

    pub fn current(&self) -> &str {
        &self.current
    }

    /// Writes a new token (write-new-then-rename) and returns it.
    pub fn rotate(&mut self) -> io::Result<String> {
        self.rotations += 1;
        let token = format!("bootstrap-{}-{:016x}", self.rotations, random_u64());
        replace_file(&self.token_file(), token.as_bytes())?;
        self.current = token.clone();
        Ok(token)
    }

    /// Rotates, then makes `tokens` accept only the new token (the old one is revoked).
    pub fn rotate_and_revoke(&mut self, tokens: &TokenService) -> io::Result<String> {
        let token = self.rotate()?;
        tokens.set_required_bearer(Some(&token));
        Ok(token)
    }
}

/// How often `make run` and docker-compose replace the bootstrap token (the kubelet does it at
/// 80% of the projected token's lifetime; a minute shows it happening).
pub const DEMO_ROTATION_PERIOD: Duration = Duration::from_secs(60);

/// The directory an Envoy bootstrap watches for its bootstrap token
/// (`path_config_source.watched_directory.path`), if it has one.
pub fn watched_directory(envoy_yaml: &str) -> Option<PathBuf> {
    fn find(value: &serde_yaml::Value) -> Option<PathBuf> {
        match value {
            serde_yaml::Value::Mapping(map) => map
                .get("watched_directory")
                .and_then(|watched| watched.get("path")?.as_str().map(PathBuf::from))
                .or_else(|| map.values().find_map(find)),
            serde_yaml::Value::Sequence(list) => list.iter().find_map(find),
            _ => None,
        }
    }
    find(&serde_yaml::from_str(envoy_yaml).ok()?)
}

/// For `make run`: when `envoy_yaml` reads a bootstrap token from a watched directory, writes one
/// there, makes `tokens` accept only it, and rotates it every minute. Keep the result alive.
pub fn refresher_for(envoy_yaml: &str, tokens: &TokenService) -> Option<Refresher> {
    let dir = watched_directory(envoy_yaml)?;
    match Refresher::start(&dir, DEMO_ROTATION_PERIOD, tokens) {
        Ok(refresher) => {
            println!(
                "bootstrap token: {} (replaced every {} s; the token service accepts only the current one)",
                refresher.token_file().display(),
                DEMO_ROTATION_PERIOD.as_secs()
            );
            Some(refresher)
        }
        Err(e) => {
            eprintln!("bootstrap token: cannot write it in {}: {e}", dir.display());
            None
        }
    }
}

/// Rotates a bootstrap token every `period` on a thread, as the kubelet would, and keeps the
/// token service's accepted bearer in step. For `make run`; stops on Drop.
pub struct Refresher {
    /// A message on it wakes the thread, which then ends.
    stop: mpsc::Sender<()>,
    thread: Option<JoinHandle<()>>,
    token_file: PathBuf,
}

impl Refresher {
    /// Writes the first token in `dir` (the token service accepts only it) and starts rotating.
    pub fn start(dir: &Path, period: Duration, tokens: &TokenService) -> io::Result<Refresher> {
        let mut token = BootstrapToken::create(dir)?;
        tokens.set_required_bearer(Some(token.current()));
        let token_file = token.token_file();
        let accepted = tokens.bearer_handle();
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bootstrap-token".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(period) {
                    match token.rotate() {
                        Ok(new) => accepted(Some(&new)),
                        Err(e) => eprintln!("bootstrap token: cannot rotate {}: {e}", token.token_file().display()),
                    }
                }
            })?;
        Ok(Refresher { stop, thread: Some(thread), token_file })
    }

    pub fn token_file(&self) -> PathBuf {
        self.token_file.clone()
    }
}

impl Drop for Refresher {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Envoy makes of the files is the end-to-end test's (tests/suite/bootstrap_rotation.rs).
    #[test]
    fn rotation_replaces_the_file_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let mut token = BootstrapToken::create(&dir.path().join("tokens")).unwrap();
        let (first, second) = (token.current().to_string(), token.rotate().unwrap());
        assert_ne!(first, second);
        assert_eq!(std::fs::read_to_string(token.token_file()).unwrap(), second);
        let entries = std::fs::read_dir(token.dir()).unwrap().flatten();
        let mut names: Vec<String> = entries.map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, [SDS_FILE, TOKEN_FILE]);
    }

    #[test]
    fn finds_the_watched_directory_of_the_repository_configs() {
        let yaml = std::fs::read_to_string(crate::paths::repo_root().join("envoy.yaml")).unwrap();
        assert_eq!(watched_directory(&yaml), Some(PathBuf::from("/tmp/kiali-header-auth-demo")));
        assert_eq!(watched_directory("watched_directory:\n  path: \"/a/b\"\n"), Some(PathBuf::from("/a/b")));
        assert_eq!(watched_directory("static_resources: {}"), None);
    }

    #[test]
    fn the_refresher_rotates_and_the_token_service_accepts_only_the_current_token() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = TokenService::start();
        let refresher = Refresher::start(dir.path(), Duration::from_millis(200), &tokens).unwrap();
        let first = std::fs::read_to_string(refresher.token_file()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut second = first.clone();
        while second == first && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            second = std::fs::read_to_string(refresher.token_file()).unwrap();
        }
        assert_ne!(first, second, "rotated within 5 s");
        drop(refresher);
        let current = std::fs::read_to_string(dir.path().join(TOKEN_FILE)).unwrap();
        assert_eq!(tokens.required_bearer().as_deref(), Some(current.as_str()));
    }
}
