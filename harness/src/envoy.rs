//! Envoy launcher: renders a v3 bootstrap, runs Envoy, waits for readiness, reads stats,
//! and kills Envoy on Drop.

use crate::client::{self, ClientRequest};
use crate::paths;
use crate::ports::free_port;
use std::collections::BTreeMap;
use serde_json::{json, Value};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long [`Envoy::start`] waits for `/ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Grace period between SIGTERM and SIGKILL on Drop.
pub const TERM_GRACE: Duration = Duration::from_secs(2);

/// What the single route does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Proxy everything to cluster `upstream` (STATIC, HTTP/1.1) at this address.
    Proxy(SocketAddr),
    /// Answer directly.
    DirectResponse { status: u16, body: String },
}

/// An HTTP filter placed before the router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    None,
    /// The kiali-header-auth module (`paths::wasm_path()` unless [`EnvoyConfig::wasm_file`] is set).
    Wasm {
        /// JSON plugin configuration (passed as a `google.protobuf.StringValue`).
        plugin_config: String,
        /// `vm_config.environment_variables.key_values`.
        vm_env: Vec<(String, String)>,
        /// `failure_policy: FAIL_OPEN` when true, `FAIL_CLOSED` otherwise.
        fail_open: bool,
    },
    Lua { code: String },
    /// Any other HTTP filter (such as `envoy.filters.http.jwt_authn`): one `http_filters` entry,
    /// a mapping with `name` and `typed_config`.
    Raw(Value),
}

/// The filter-state key the filter reads the direct TCP peer from (the filter's
/// `identity::DIRECT_PEER_FILTER_STATE`; a test checks they are equal).
pub const DIRECT_PEER_FILTER_STATE: &str = "kiali_header_auth.direct_remote_address";

impl Filter {
    /// Envoy's `set_filter_state` filter storing the direct TCP peer's address
    /// (`%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%`, which no header changes) where the filter reads it.
    /// Goes before the wasm filter when `trusted_peers.source_cidrs` or a `source_address` audit
    /// extra is configured: the shipped bootstraps carry the same entry.
    pub fn direct_peer() -> Filter {
        Filter::Raw(typed(
            "envoy.filters.http.set_filter_state",
            "envoy.extensions.filters.http.set_filter_state.v3.Config",
            json!({ "on_request_headers": [{
                "object_key": DIRECT_PEER_FILTER_STATE,
                "factory_key": "envoy.string",
                "format_string": { "text_format_source": { "inline_string": "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%" } },
                "read_only": true,
            }] }),
        ))
    }

    /// `Filter::Wasm` with no VM environment, fail closed.
    pub fn wasm(plugin_config: impl Into<String>) -> Filter {
        Filter::Wasm { plugin_config: plugin_config.into(), vm_env: Vec::new(), fail_open: false }
    }

    pub fn lua(code: impl Into<String>) -> Filter {
        Filter::Lua { code: code.into() }
    }
}

/// Builder for an Envoy v3 bootstrap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvoyConfig {
    pub listener_port: u16,
    pub admin_port: u16,
    /// Worker threads (`--concurrency`). Default 1.
    pub concurrency: u32,
    pub route: Route,
    /// HTTP filters in order (before the router); `Filter::None` entries render nothing.
    pub filters: Vec<Filter>,
    /// Extra STATIC clusters (name, address), e.g. the token service.
    pub clusters: Vec<(String, SocketAddr)>,
    /// Access log to stdout (goes to the Envoy log file).
    pub access_log: bool,
    /// The access log line (Envoy's format strings, newline included); `None`: the line of
    /// envoy.yaml. Only used when `access_log` is on.
    pub access_log_format: Option<String>,
    /// Override of the wasm module path (default `paths::wasm_path()` at render time).
    pub wasm_file: Option<PathBuf>,
    /// Ports were picked automatically: `Envoy::start` may re-pick them on a bind clash.
    pub auto_ports: bool,
    /// `--component-log-level wasm:debug` (tests); off for the bench, which runs as in production.
    pub wasm_debug_log: bool,
    /// (cluster, the directory of a `BootstrapToken`): an upstream credential injector on that
    /// cluster (also sets the node id SDS needs).
    pub bootstrap_credential: Option<(String, PathBuf)>,
    /// The connection manager's `use_remote_address` (unset: Envoy's default, false, under
    /// which `source.address` is the last `X-Forwarded-For` entry a client wrote).
    pub use_remote_address: Option<bool>,
}

impl Default for EnvoyConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl EnvoyConfig {
    /// Free listener/admin ports, concurrency 1, `DirectResponse 200 "ok"`, no filter.
    pub fn new() -> Self {
        EnvoyConfig {
            listener_port: free_port(),
            admin_port: free_port(),
            concurrency: 1,
            route: Route::DirectResponse { status: 200, body: "ok".into() },
            filters: Vec::new(),
            clusters: Vec::new(),
            access_log: false,
            access_log_format: None,
            wasm_file: None,
            auto_ports: true,
            wasm_debug_log: true,
            bootstrap_credential: None,
            use_remote_address: None,
        }
    }

    /// `new()` proxying to `upstream`.
    pub fn proxy(upstream: SocketAddr) -> Self {
        Self::new().route(Route::Proxy(upstream))
    }

    pub fn listener_port(mut self, port: u16) -> Self {
        self.listener_port = port;
        self.auto_ports = false;
        self
    }

    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = n.max(1);
        self
    }

    pub fn route(mut self, route: Route) -> Self {
        self.route = route;
        self
    }

    /// Replaces the filter list with this one filter.
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filters = vec![filter];
        self
    }

    /// Appends a filter (filters run in insertion order).
    pub fn add_filter(mut self, filter: Filter) -> Self {
        self.filters.push(filter);
        self
    }

    /// Adds a STATIC HTTP/1.1 cluster `name` (may contain `|`) pointing at `addr`.
    pub fn token_cluster(mut self, name: &str, addr: SocketAddr) -> Self {
        self.clusters.push((name.to_string(), addr));
        self
    }

    /// Injects the bootstrap token (`crate::bootstrap_token::BootstrapToken`) into every request
    /// on `cluster` that carries no `Authorization` of its own.
    pub fn bootstrap_credential(mut self, cluster: &str, token: &crate::bootstrap_token::BootstrapToken) -> Self {
        self.bootstrap_credential = Some((cluster.to_string(), token.dir().to_path_buf()));
        self
    }

    pub fn use_remote_address(mut self, on: bool) -> Self {
        self.use_remote_address = Some(on);
        self
    }

    pub fn access_log(mut self, on: bool) -> Self {
        self.access_log = on;
        self
    }

    /// Turns the access log on with this line format (newline included).
    pub fn access_log_format(mut self, format: impl Into<String>) -> Self {
        self.access_log = true;
        self.access_log_format = Some(format.into());
        self
    }

    pub fn wasm_debug_log(mut self, on: bool) -> Self {
        self.wasm_debug_log = on;
        self
    }

    pub fn wasm_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.wasm_file = Some(path.into());
        self
    }

    fn wasm_path(&self) -> PathBuf {
        let p = self.wasm_file.clone().unwrap_or_else(paths::wasm_path);
        p.canonicalize().unwrap_or(p)
    }

    /// Renders the bootstrap YAML. Panics (via `paths::wasm_path`) if a wasm filter is
    /// configured and the module is missing.
    pub fn render(&self) -> String {
        let header = "# Generated by the kiali-header-auth test harness.\n";
        let yaml = serde_yaml::to_string(&self.bootstrap()).unwrap_or_else(|e| panic!("cannot render the bootstrap: {e}"));
        format!("{header}{yaml}")
    }

    /// The bootstrap as a value (rendered by [`EnvoyConfig::render`]).
    pub fn bootstrap(&self) -> Value {
        let route = match &self.route {
            Route::Proxy(_) => json!({ "match": { "prefix": "/" }, "route": { "cluster": "upstream", "timeout": "15s" } }),
            Route::DirectResponse { status, body } => {
                json!({ "match": { "prefix": "/" }, "direct_response": { "status": status, "body": { "inline_string": body } } })
            }
        };
        let mut http_filters: Vec<Value> = self.filters.iter().filter_map(|filter| self.http_filter(filter)).collect();
        http_filters.push(typed("envoy.filters.http.router", "envoy.extensions.filters.http.router.v3.Router", json!({})));
        let mut connection_manager = json!({
            "stat_prefix": "ingress",
            "codec_type": "AUTO",
            "route_config": { "name": "local", "virtual_hosts": [{ "name": "all", "domains": ["*"], "routes": [route] }] },
            "http_filters": http_filters,
        });
        if let Some(on) = self.use_remote_address {
            connection_manager["use_remote_address"] = json!(on);
        }
        if self.access_log {
            // The same line as envoy.yaml: the impersonated user comes from the filter's state.
            let default = "ACCESS %REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% user=%REQ(IMPERSONATE-USER)% state=%FILTER_STATE(wasm.kiali_header_auth.user:PLAIN)%\n";
            let format = self.access_log_format.as_deref().unwrap_or(default);
            connection_manager["access_log"] = json!([typed(
                "envoy.access_loggers.stdout",
                "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                json!({ "log_format": { "text_format_source": { "inline_string": format } } }),
            )]);
        }
        let manager = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
        let listener = json!({
            "name": "ingress",
            "address": socket_address(IpAddr::V4(Ipv4Addr::LOCALHOST), self.listener_port),
            // Without this, two Envoys handed the same port would both bind it (SO_REUSEPORT)
            // and share its traffic; with it, a clash is a bind error that `start` retries.
            "enable_reuse_port": false,
            "filter_chains": [{ "filters": [typed("envoy.filters.network.http_connection_manager", manager, connection_manager)] }],
        });
        let upstream = match &self.route {
            Route::Proxy(addr) => Some(("upstream".to_string(), *addr)),
            Route::DirectResponse { .. } => None,
        };
        let clusters: Vec<Value> = upstream.iter().chain(&self.clusters).map(|(name, addr)| self.cluster(name, *addr)).collect();
        let mut bootstrap = json!({
            "admin": { "address": socket_address(IpAddr::V4(Ipv4Addr::LOCALHOST), self.admin_port) },
            "static_resources": { "listeners": [listener], "clusters": clusters },
        });
        if self.bootstrap_credential.is_some() {
            // SDS needs a node id and cluster.
            bootstrap["node"] = json!({ "id": "kha-test", "cluster": "kha-test" });
        }
        bootstrap
    }

    /// One `http_filters` entry; `None` for `Filter::None`.
    fn http_filter(&self, filter: &Filter) -> Option<Value> {
        match filter {
            Filter::None => None,
            Filter::Lua { code } => Some(typed(
                "envoy.filters.http.lua",
                "envoy.extensions.filters.http.lua.v3.Lua",
                json!({ "default_source_code": { "inline_string": code } }),
            )),
            Filter::Raw(entry) => Some(entry.clone()),
            Filter::Wasm { plugin_config, vm_env, fail_open } => {
                let mut vm_config = json!({
                    "vm_id": "kiali-header-auth",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": self.wasm_path().to_string_lossy() } },
                });
                if !vm_env.is_empty() {
                    let key_values: serde_json::Map<String, Value> = vm_env.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
                    vm_config["environment_variables"] = json!({ "key_values": key_values });
                }
                let config = json!({
                    "name": "kiali-header-auth",
                    "root_id": "kiali-header-auth",
                    "failure_policy": if *fail_open { "FAIL_OPEN" } else { "FAIL_CLOSED" },
                    "configuration": { "@type": "type.googleapis.com/google.protobuf.StringValue", "value": plugin_config },
                    "vm_config": vm_config,
                });
                Some(typed("envoy.filters.http.wasm", "envoy.extensions.filters.http.wasm.v3.Wasm", json!({ "config": config })))
            }
        }
    }

    /// A STATIC HTTP/1.1 cluster, with the credential injector when it is the credential's cluster.
    fn cluster(&self, name: &str, addr: SocketAddr) -> Value {
        let options_type = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
        let mut protocol_options = json!({
            "@type": format!("type.googleapis.com/{options_type}"),
            // Close idle upstream connections before the stand-ins' 30 s read timeout
            // does, so a request never races a server-side close.
            "common_http_protocol_options": { "idle_timeout": "15s" },
            "explicit_http_config": { "http_protocol_options": {} },
        });
        if let Some((_, token_dir)) = self.bootstrap_credential.as_ref().filter(|(cluster, _)| cluster == name) {
            protocol_options["http_filters"] = credential_injector(token_dir);
        }
        json!({
            "name": name,
            "type": "STATIC",
            "connect_timeout": "2s",
            "typed_extension_protocol_options": { options_type: protocol_options },
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket_address(addr.ip(), addr.port()) } }] }],
            },
        })
    }
}

/// `{ name, typed_config: { "@type": type.googleapis.com/<type_name>, ..fields } }`.
fn typed(name: &str, type_name: &str, mut fields: Value) -> Value {
    fields["@type"] = json!(format!("type.googleapis.com/{type_name}"));
    json!({ "name": name, "typed_config": fields })
}

fn socket_address(ip: IpAddr, port: u16) -> Value {
    json!({ "socket_address": { "address": ip.to_string(), "port_value": port } })
}

/// The cluster's upstream HTTP filters: the credential injector, then the codec. The token is
/// an SDS generic secret read through a `path_config_source` that watches the token's
/// directory, so a token replaced by rename is picked up without a restart.
fn credential_injector(token_dir: &Path) -> Value {
    let secret = json!({
        "name": crate::bootstrap_token::SECRET_NAME,
        "sds_config": { "path_config_source": {
            "path": token_dir.join(crate::bootstrap_token::SDS_FILE).to_string_lossy(),
            "watched_directory": { "path": token_dir.to_string_lossy() },
        } },
    });
    let generic = typed(
        "envoy.http.injected_credentials.generic",
        "envoy.extensions.http.injected_credentials.generic.v3.Generic",
        json!({ "header": "Authorization", "header_value_prefix": "Bearer ", "credential": secret }),
    );
    json!([
        typed(
            "envoy.filters.http.credential_injector",
            "envoy.extensions.filters.http.credential_injector.v3.CredentialInjector",
            // A request that carries its own `Authorization` keeps it: the filter's
            // SelfSubjectAccessReview speaks as the issued token.
            json!({ "overwrite": false, "credential": generic }),
        ),
        typed("envoy.filters.http.upstream_codec", "envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec", json!({})),
    ])
}

/// `admin.address.socket_address.port_value` of a bootstrap YAML, if it has one.
pub fn scan_admin_port(yaml: &str) -> Option<u16> {
    let bootstrap: Value = serde_yaml::from_str(yaml).ok()?;
    let port = bootstrap.pointer("/admin/address/socket_address/port_value")?;
    port.as_u64().or_else(|| port.as_str()?.parse().ok())?.try_into().ok()
}

/// Parses admin `/stats?format=json` output: counters and gauges (histograms and
/// text readouts skipped).
pub fn parse_stats_json(body: &str) -> BTreeMap<String, u64> {
    let stats: Value = serde_json::from_str(body).unwrap_or_default();
    let entries = stats["stats"].as_array().into_iter().flatten();
    entries
        .filter_map(|stat| {
            let value = stat.get("value")?;
            let value = value.as_u64().or_else(|| value.as_i64().map(|i| i.max(0) as u64))?;
            Some((stat.get("name")?.as_str()?.to_string(), value))
        })
        .collect()
}

/// Calls `probe` every `interval` until it returns `Some` or `timeout` passes (then one last call).
fn poll_until<T>(timeout: Duration, interval: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let found = probe();
        if found.is_some() || Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(interval);
    }
}

/// Runs `envoy --mode validate -c path`.
pub fn validate(path: &Path) -> Result<(), String> {
    let bin = paths::find_envoy_bin().ok_or("envoy binary not found: run `make envoy`")?;
    let out = Command::new(bin)
        .args(["--mode", "validate", "-c"])
        .arg(path)
        .args(["--disable-hot-restart", "--log-level", "warn"])
        .current_dir(paths::repo_root())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run envoy: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "envoy --mode validate failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Renders `cfg` to a temp file and validates it.
pub fn validate_config(cfg: &EnvoyConfig) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, cfg.render()).map_err(|e| e.to_string())?;
    validate(&path)
}

/// Low-level launch description (used by [`Envoy::start`], the `demo` binary and tests that
/// write their own bootstrap). Envoy runs in the repository root, so relative paths such as
/// the wasm module's resolve.
#[derive(Clone, Debug)]
pub struct Launch {
    pub envoy_bin: PathBuf,
    pub config_path: PathBuf,
    pub listener_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub concurrency: u32,
    /// Envoy's stdout and stderr; by default `envoy.log` next to the config.
    pub log_file: PathBuf,
    /// `--component-log-level wasm:debug` (tests); off for the bench, which runs as in production.
    pub wasm_debug_log: bool,
    /// A command Envoy runs under (the bench's `valgrind --tool=callgrind ...`); empty: none.
    pub wrapper: Vec<String>,
}

impl Launch {
    pub fn new(config_path: impl Into<PathBuf>, listener_port: u16, admin_port: u16) -> Launch {
        let config_path = config_path.into();
        Launch {
            envoy_bin: paths::envoy_bin(),
            log_file: config_path.with_file_name("envoy.log"),
            config_path,
            listener_addr: SocketAddr::from(([127, 0, 0, 1], listener_port)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], admin_port)),
            concurrency: 1,
            wasm_debug_log: true,
            wrapper: Vec::new(),
        }
    }
}

/// A base id unique per Envoy instance of this process (and unlikely to clash with
/// other processes).
fn unique_base_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % 1000;
    (std::process::id() % 4_000_000) * 1000 + n
}

type SpawnJob = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns children from one thread that lives as long as the process, so that
/// `PR_SET_PDEATHSIG` (which fires when the *spawning thread* exits) means
/// "when this process exits".
fn spawn_from_long_lived_thread(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let tx = SPAWNER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<SpawnJob>();
            std::thread::Builder::new()
                .name("envoy-spawner".into())
                .spawn(move || {
                    for (mut cmd, reply) in rx {
                        let _ = reply.send(cmd.spawn());
                    }
                })
                .expect("spawn envoy-spawner thread");
            Mutex::new(tx)
        })
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let (rtx, rrx) = mpsc::channel();
    tx.send((cmd, rtx)).map_err(|_| io::Error::other("spawner thread gone"))?;
    rrx.recv().map_err(|_| io::Error::other("spawner thread gone"))?
}

/// Makes the child get SIGTERM when this process dies (set in `pre_exec`).
pub fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe libc calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                // The parent already died before prctl took effect.
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// A running Envoy. Dropping it stops Envoy (SIGTERM, then SIGKILL after 2 s).
pub struct Envoy {
    child: Mutex<Child>,
    pid: u32,
    launch: Launch,
    // Kept alive for the config and the log.
    _dir: Option<tempfile::TempDir>,
}

impl Envoy {
    /// Renders `cfg`, starts Envoy and waits for `/ready` (30 s). Panics with the Envoy
    /// log if it does not become ready.
    pub fn start(cfg: &EnvoyConfig) -> Envoy {
        match Self::try_start(cfg) {
            Ok(e) => e,
            Err(msg) => panic!("{msg}"),
        }
    }

    /// Like [`Envoy::start`], returning the error (with the Envoy log) instead of panicking.
    /// If the ports were picked automatically and Envoy could not bind them, new ports
    /// are picked (up to 3 attempts): use [`Envoy::addr`], not `cfg.listener_port`.
    pub fn try_start(cfg: &EnvoyConfig) -> Result<Envoy, String> {
        let mut cfg = cfg.clone();
        let mut last_err = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::Builder::new().prefix("kha-envoy-").tempdir().map_err(|e| e.to_string())?;
            let config_path = dir.path().join("envoy.yaml");
            std::fs::write(&config_path, cfg.render()).map_err(|e| e.to_string())?;
            let mut launch = Launch::new(&config_path, cfg.listener_port, cfg.admin_port);
            launch.concurrency = cfg.concurrency;
            launch.wasm_debug_log = cfg.wasm_debug_log;
            let mut envoy = Envoy::spawn(launch)?;
            envoy._dir = Some(dir);
            match envoy.wait_ready(READY_TIMEOUT, None) {
                Ok(()) => return Ok(envoy),
                Err(e) => {
                    let log = envoy.log();
                    let clash = log.contains("ddress already in use") || log.contains("cannot bind");
                    last_err = e;
                    drop(envoy);
                    if clash && cfg.auto_ports {
                        cfg.listener_port = free_port();
                        cfg.admin_port = free_port();
                        continue;
                    }
                    return Err(last_err);
                }
            }
        }
        Err(last_err)
    }

    /// Spawns Envoy as described, without waiting for readiness.
    pub fn spawn(launch: Launch) -> Result<Envoy, String> {
        let mut cmd = match launch.wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(&launch.envoy_bin);
                cmd
            }
            None => Command::new(&launch.envoy_bin),
        };
        let (concurrency, base_id) = (launch.concurrency.to_string(), unique_base_id().to_string());
        cmd.arg("-c")
            .arg(&launch.config_path)
            .args(["--concurrency", &concurrency, "--base-id", &base_id])
            .args(["--disable-hot-restart", "--log-level", "info"])
            // Access logs reach the log file within 250 ms instead of Envoy's default 10 s.
            .args(["--file-flush-interval-msec", "250"])
            .current_dir(paths::repo_root())
            .stdin(Stdio::null());
        if launch.wasm_debug_log {
            cmd.args(["--component-log-level", "wasm:debug"]);
        }
        let log = &launch.log_file;
        let f = std::fs::File::create(log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let f2 = f.try_clone().map_err(|e| e.to_string())?;
        cmd.stdout(Stdio::from(f)).stderr(Stdio::from(f2));
        die_with_parent(&mut cmd);
        let child = spawn_from_long_lived_thread(cmd)
            .map_err(|e| format!("cannot start {}: {e}", launch.envoy_bin.display()))?;
        let pid = child.id();
        Ok(Envoy { child: Mutex::new(child), pid, launch, _dir: None })
    }

    /// Polls admin `/ready` until it answers 200, Envoy exits, `timeout` passes or
    /// `abort` is set. The error includes the Envoy log.
    pub fn wait_ready(&self, timeout: Duration, abort: Option<&AtomicBool>) -> Result<(), String> {
        let outcome = poll_until(timeout, Duration::from_millis(50), || {
            if let Some(status) = self.exit_status() {
                return Some(Err(format!("envoy exited before becoming ready ({status}); log:\n{}", self.log())));
            }
            if abort.is_some_and(|a| a.load(Ordering::SeqCst)) {
                return Some(Err("aborted while waiting for envoy".into()));
            }
            let ready = ClientRequest::get("/ready").timeout(Duration::from_secs(1));
            client::send(self.launch.admin_addr, &ready).ok().filter(|r| r.status == 200).map(|_| Ok(()))
        });
        outcome.unwrap_or_else(|| {
            let admin = self.launch.admin_addr;
            Err(format!("envoy not ready after {timeout:?} (admin {admin}); log:\n{}", self.log()))
        })
    }

    /// Listener address.
    pub fn addr(&self) -> SocketAddr {
        self.launch.listener_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.launch.admin_addr
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn config_path(&self) -> &Path {
        &self.launch.config_path
    }

    /// The Envoy log so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.launch.log_file).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        poll_until(timeout, Duration::from_millis(50), || self.log().contains(needle).then_some(())).is_some()
    }

    pub fn try_stats(&self) -> io::Result<BTreeMap<String, u64>> {
        let stats = ClientRequest::get("/stats?format=json").timeout(Duration::from_secs(5));
        let r = client::send(self.launch.admin_addr, &stats)?;
        if r.status != 200 {
            return Err(io::Error::other(format!("/stats answered {}", r.status)));
        }
        Ok(parse_stats_json(&r.text()))
    }

    /// Counters and gauges. Panics if the admin endpoint cannot be reached.
    pub fn stats(&self) -> BTreeMap<String, u64> {
        self.try_stats().unwrap_or_else(|e| panic!("cannot read envoy stats: {e}; log:\n{}", self.log()))
    }

    pub fn stat(&self, name: &str) -> Option<u64> {
        self.stats().get(name).copied()
    }

    /// Waits until stat `name` is at least `min`; returns its last value.
    pub fn wait_for_stat(&self, name: &str, min: u64, timeout: Duration) -> Option<u64> {
        let mut last = None;
        poll_until(timeout, Duration::from_millis(50), || {
            last = self.try_stats().ok().and_then(|s| s.get(name).copied());
            last.filter(|&v| v >= min)
        });
        last
    }

    /// The exit status once Envoy has exited (`Child` keeps it after reaping).
    fn exit_status(&self) -> Option<ExitStatus> {
        self.child.lock().unwrap_or_else(|e| e.into_inner()).try_wait().ok().flatten()
    }

    pub fn is_running(&self) -> bool {
        self.exit_status().is_none()
    }

    /// Waits up to `timeout` for Envoy to exit on its own.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        poll_until(timeout, Duration::from_millis(20), || self.exit_status())
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL; returns the exit status.
    pub fn terminate(&self, grace: Duration) -> Option<ExitStatus> {
        if self.is_running() {
            // SAFETY: plain kill(2) on our own child, not yet reaped (only `try_wait` reaps it).
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        }
        if let Some(s) = self.wait_exit(grace) {
            return Some(s);
        }
        let _ = self.child.lock().unwrap_or_else(|e| e.into_inner()).kill();
        self.wait_exit(Duration::from_secs(5))
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- envoy log (pid {}, config {}) ----\n{}\n---- end of envoy log ----",
                self.pid,
                self.launch.config_path.display(),
                self.log()
            );
        }
        self.terminate(TERM_GRACE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_admin_port_variants() {
        let flow = "admin:\n  address:\n    socket_address: { address: 127.0.0.1, port_value: 19000 }\nstatic_resources:\n  x: { port_value: 1 }\n";
        assert_eq!(scan_admin_port(flow), Some(19000));
        let none = "static_resources:\n  listeners:\n  - address: { socket_address: { port_value: 10000 } }\n";
        assert_eq!(scan_admin_port(none), None);
        let cfg = EnvoyConfig { admin_port: 12345, ..EnvoyConfig::new() };
        assert_eq!(scan_admin_port(&cfg.render()), Some(12345));
    }

    #[test]
    fn stats_parsing() {
        let json = r#"{"stats":[{"name":"http.ingress.downstream_rq_total","value":7},
            {"name":"server.live","value":1},{"name":"server.version","value":"abc"},
            {"name":"neg","value":-3},
            {"histograms":{"supported_quantiles":[0,25],"computed_quantiles":[]}}]}"#;
        let m = parse_stats_json(json);
        assert_eq!(m.get("http.ingress.downstream_rq_total"), Some(&7));
        assert_eq!(m.get("server.live"), Some(&1));
        assert_eq!(m.get("neg"), Some(&0));
        assert!(!m.contains_key("server.version"));
        assert_eq!(m.len(), 3);
        assert!(parse_stats_json("not json").is_empty());
    }
}
