//! The rotating bootstrap credential, as the kubelet provides it to a pod: a projected
//! ServiceAccount token file that is replaced (write a new file, rename it over the old one)
//! before it expires. Envoy's upstream `credential_injector` reads it through an SDS generic
//! secret whose `path_config_source` watches the token's directory (see
//! `EnvoyConfig::bootstrap_credential`).
//!
//! Each token has an expiry, as a projected token does. The kubelet replaces the file when the
//! token is older than 80% of its lifetime (`pkg/kubelet/token/token_manager.go`,
//! `requiresRefresh`), and the token it replaced is not revoked: the API server accepts it until
//! it expires. [`BootstrapToken::rotate_for`] does both: new file, and the token service
//! (`TokenService::accept_bearer`) accepts the new token while the old one stays valid until its
//! own expiry.

use crate::token_service::{random_u64, TokenService};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// The lifetime of the projected bootstrap token deploy/ mounts (`serviceAccountToken` with
/// `expirationSeconds: 3600` in deploy/envoy/deployment.yaml and deploy/kiali-cr-patch.yaml).
pub const KUBELET_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

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
    /// When `current` expires.
    expires_at: SystemTime,
    lifetime: Duration,
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
    /// Creates `dir` if needed, writes a first token (of [`KUBELET_TOKEN_LIFETIME`]) and the SDS
    /// resource.
    pub fn create(dir: &Path) -> io::Result<BootstrapToken> {
        Self::create_with_lifetime(dir, KUBELET_TOKEN_LIFETIME)
    }

    /// `create` with tokens of `lifetime`.
    pub fn create_with_lifetime(dir: &Path, lifetime: Duration) -> io::Result<BootstrapToken> {
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        let mut token = BootstrapToken {
            dir,
            current: String::new(),
            expires_at: SystemTime::now(),
            lifetime,
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

    /// When the current token expires.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    /// Writes a new token (write-new-then-rename) and returns it.
    pub fn rotate(&mut self) -> io::Result<String> {
        self.rotate_with(|_, _| ())
    }

    /// Makes a new token, hands it and its expiry to `issued` (the API server knows a token from
    /// the moment it issues it), then writes it (write-new-then-rename). Returns it.
    fn rotate_with(&mut self, issued: impl FnOnce(&str, SystemTime)) -> io::Result<String> {
        self.rotations += 1;
        let token = format!("bootstrap-{}-{:016x}", self.rotations, random_u64());
        let expires_at = SystemTime::now() + self.lifetime;
        issued(&token, expires_at);
        replace_file(&self.token_file(), token.as_bytes())?;
        self.current = token.clone();
        self.expires_at = expires_at;
        Ok(token)
    }

    /// Makes `tokens` accept the current token until it expires (the API server knows every
    /// token it issued).
    pub fn accepted_by(&self, tokens: &TokenService) {
        tokens.accept_bearer(&self.current, self.expires_at);
    }

    /// Rotates as the kubelet does (`pkg/kubelet/token/token_manager.go`): a TokenRequest first,
    /// so `tokens` accepts the new token before it is written to the file; the old one stays
    /// accepted until its own expiry. Returns the new token.
    pub fn rotate_for(&mut self, tokens: &TokenService) -> io::Result<String> {
        self.rotate_with(|token, expires_at| tokens.accept_bearer(token, expires_at))
    }
}

/// How often `make run` and docker-compose replace the bootstrap token (the kubelet does it at
/// 80% of the projected token's lifetime; a minute shows it happening).
pub const DEMO_ROTATION_PERIOD: Duration = Duration::from_secs(60);

/// The lifetime of a token replaced every `period` at 80% of its lifetime, as the kubelet does.
pub fn lifetime_for_rotation_period(period: Duration) -> Duration {
    period * 5 / 4
}

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
/// there, makes `tokens` accept it, and rotates it every minute. Keep the result alive.
pub fn refresher_for(envoy_yaml: &str, tokens: &TokenService) -> Option<Refresher> {
    let dir = watched_directory(envoy_yaml)?;
    match Refresher::start(&dir, DEMO_ROTATION_PERIOD, tokens) {
        Ok(refresher) => {
            println!(
                "bootstrap token: {} (replaced every {} s; the token service accepts each until it expires)",
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

/// Rotates a bootstrap token every `period` on a thread, as the kubelet would (at 80% of the
/// token's lifetime), and tells the token service about each new token; each stays accepted
/// until it expires. For `make run`; stops on Drop.
pub struct Refresher {
    /// A message on it wakes the thread, which then ends.
    stop: mpsc::Sender<()>,
    thread: Option<JoinHandle<()>>,
    token_file: PathBuf,
}

impl Refresher {
    /// Writes the first token in `dir` (the token service accepts only it) and starts rotating.
    pub fn start(dir: &Path, period: Duration, tokens: &TokenService) -> io::Result<Refresher> {
        let mut token = BootstrapToken::create_with_lifetime(dir, lifetime_for_rotation_period(period))?;
        tokens.set_required_bearer(None);
        token.accepted_by(tokens);
        let token_file = token.token_file();
        let accepted = tokens.bearer_handle();
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bootstrap-token".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(period) {
                    if let Err(e) = token.rotate_with(|new, expires_at| accepted(new, expires_at)) {
                        eprintln!("bootstrap token: cannot rotate {}: {e}", token.token_file().display());
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
    fn the_refresher_rotates_and_the_token_service_accepts_each_token_until_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = TokenService::start();
        let period = Duration::from_millis(200);
        let refresher = Refresher::start(dir.path(), period, &tokens).unwrap();
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
        let now = SystemTime::now();
        assert!(tokens.accepts_bearer(&current, now));
        assert!(!tokens.accepts_bearer(&first, now + lifetime_for_rotation_period(period)), "the first one expired");
    }

    /// token_manager.go: a replaced token is not revoked; the API server accepts it until it
    /// expires, and the new one from the moment it is written.
    #[test]
    fn a_rotated_token_stays_accepted_until_its_own_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = TokenService::start();
        let mut bootstrap = BootstrapToken::create_with_lifetime(dir.path(), Duration::from_secs(10)).unwrap();
        bootstrap.accepted_by(&tokens);
        let (old, old_expiry) = (bootstrap.current().to_string(), bootstrap.expires_at());
        let new = bootstrap.rotate_for(&tokens).unwrap();
        assert!(bootstrap.expires_at() > old_expiry);
        let just_before = old_expiry - Duration::from_millis(1);
        assert!(tokens.accepts_bearer(&old, SystemTime::now()) && tokens.accepts_bearer(&old, just_before));
        assert!(!tokens.accepts_bearer(&old, old_expiry), "not at or after its expiry");
        assert!(tokens.accepts_bearer(&new, old_expiry));
        assert!(!tokens.accepts_bearer("never-issued", SystemTime::now()));
        assert!(!tokens.accepts_bearer(&new, bootstrap.expires_at()));
        // Over HTTP: the old token still gets a ServiceAccount token.
        let body = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{}}"#;
        for (bearer, status) in [(old.as_str(), 201), (new.as_str(), 201), ("never-issued", 401)] {
            let request = crate::client::ClientRequest::post("/api/v1/namespaces/kiali-auth/serviceaccounts/kiali-impersonator/token")
                .header("Authorization", format!("Bearer {bearer}"))
                .body(body);
            assert_eq!(crate::client::send(tokens.addr(), &request).unwrap().status, status, "{bearer}");
        }
        // set_required_bearer revokes every other.
        tokens.set_required_bearer(Some(&new));
        assert!(!tokens.accepts_bearer(&old, SystemTime::now()));
    }
}
