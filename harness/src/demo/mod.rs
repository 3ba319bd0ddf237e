//! The `demo` binary (used by `make run`): Kiali and token-service stand-ins on fixed ports
//! plus Envoy with the repository's `envoy.yaml`, until Ctrl-C. Envoy's log goes to a file;
//! the terminal shows the banner, the curl commands to paste, and one line per request that
//! reached the stand-in Kiali, per issued token and per refusal.

mod args;
mod narration;

pub use args::{curl_commands, shell_quote, DemoArgs};
pub use narration::{access_line, kiali_line, token_line, LogTail};

use crate::envoy::{scan_admin_port, Envoy, Launch};
use crate::paths;
use crate::token_service::TokenService;
use crate::upstream::EchoUpstream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A failed start: the exit code and what to tell the user.
type Failure = (i32, String);

/// Runs the demo; returns the process exit code.
pub fn run(a: DemoArgs) -> i32 {
    match try_run(a) {
        Ok(code) => code,
        Err((code, message)) => {
            eprintln!("demo: {message}");
            code
        }
    }
}

fn try_run(a: DemoArgs) -> Result<i32, Failure> {
    let signaled = Arc::new(AtomicBool::new(false));
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        signal_hook::flag::register(signal, signaled.clone()).map_err(|e| (1, format!("cannot handle signals: {e}")))?;
    }
    let config = a.envoy_config.canonicalize().map_err(|e| (2, format!("cannot open {}: {e}", a.envoy_config.display())))?;
    let yaml = std::fs::read_to_string(&config).map_err(|e| (2, format!("cannot read {}: {e}", config.display())))?;
    let admin_port = a.admin_port.or_else(|| scan_admin_port(&yaml)).unwrap_or(9901);
    let envoy_bin = paths::find_envoy_bin().ok_or((2, "envoy binary not found: run `make envoy` (or set ENVOY_BIN)".to_string()))?;
    let log_path = a.envoy_log.clone().unwrap_or_else(|| paths::repo_root().join("target/demo/envoy.log"));
    if let Some(dir) = log_path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| (1, format!("cannot create {}: {e}", dir.display())))?;
    }

    let upstream = EchoUpstream::start_at(([127, 0, 0, 1], a.upstream_port))
        .map_err(|e| (1, format!("cannot start the Kiali stand-in on 127.0.0.1:{}: {e}", a.upstream_port)))?;
    let tokens = TokenService::start_at(([127, 0, 0, 1], a.token_port))
        .map_err(|e| (1, format!("cannot start the token service on 127.0.0.1:{}: {e}", a.token_port)))?;
    // A demo left running under load must not grow without bound.
    upstream.keep_at_most(10_000);
    let (watcher, reached_kiali) = std::sync::mpsc::channel();
    upstream.watch(watcher);
    tokens.set_required_bearer(a.required_bearer.as_deref().filter(|b| !b.is_empty()));
    if let Some((id, secret)) = &a.oauth_client {
        tokens.set_oauth_client(id, secret);
    }
    tokens.set_jwt_tokens(a.jwt_tokens);
    let _bootstrap_token = crate::bootstrap_token::refresher_for(&yaml, &tokens);

    let mut launch = Launch::new(&config, a.listener_port, admin_port);
    launch.envoy_bin = envoy_bin;
    launch.concurrency = a.concurrency;
    launch.log_file = log_path.clone();
    let envoy = Envoy::spawn(launch).map_err(|e| (1, e))?;
    if let Err(e) = envoy.wait_ready(Duration::from_secs(60), Some(&signaled)) {
        envoy.terminate(Duration::from_secs(5));
        let code = if signaled.load(Ordering::SeqCst) { 0 } else { 1 };
        return Err((code, e));
    }
    print_banner(&a, &envoy, &upstream, &tokens, &config, &log_path);

    let mut log = LogTail::new(log_path);
    let mut tokens_told = 0;
    while !signaled.load(Ordering::SeqCst) && envoy.is_running() {
        std::thread::sleep(Duration::from_millis(100));
        // Tokens first: a token is issued before the request that waited for it goes on.
        let issued = tokens.issued();
        for token in issued.iter().skip(tokens_told) {
            println!("{}", token_line(token));
        }
        tokens_told = issued.len();
        for request in reached_kiali.try_iter() {
            println!("{}", kiali_line(&request, |token| tokens.find_issued(token).is_some()));
        }
        for line in log.new_lines().iter().filter_map(|line| access_line(line)) {
            println!("{line}");
        }
    }
    let code = if signaled.load(Ordering::SeqCst) {
        println!("demo: stopping envoy and the stand-ins");
        envoy.terminate(Duration::from_secs(5));
        0
    } else {
        let status = envoy.wait_exit(Duration::from_secs(1));
        eprintln!("demo: envoy exited ({})", status.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into()));
        // Envoy's own exit code (0 after /quitquitquit); 1 if it died from a signal.
        status.and_then(|s| s.code()).unwrap_or(1)
    };
    println!("demo: upstream saw {} request(s), token service {} request(s)", upstream.count(), tokens.count());
    Ok(code)
}

fn print_banner(a: &DemoArgs, envoy: &Envoy, upstream: &EchoUpstream, tokens: &TokenService, config: &Path, log: &Path) {
    let cmds = curl_commands(a);
    println!(
        "
kiali-header-auth demo is ready
  envoy listener : http://{listener}  (config {config})
  envoy admin    : http://{admin}
  envoy log      : {log}  (Envoy's log and its JSON access log)
  kiali stand-in : http://{upstream}  (answers with the request it received, as JSON)
  token service  : http://{tokens}  (Kubernetes TokenRequest and /oauth2/token)
envoy pid: {pid}

A spoofed Impersonate-User/Impersonate-Group is dropped and the identity is mapped;
the JSON shows the headers Kiali would receive:
  {spoofed}
Status and response headers:
  {identified}
Without an identity the filter refuses the request:
  {anonymous}

Below: one line per request that reached the Kiali stand-in, per token issued, per refusal.
Press Ctrl-C to stop.",
        listener = envoy.addr(),
        config = config.display(),
        admin = envoy.admin_addr(),
        log = log.display(),
        upstream = upstream.addr(),
        tokens = tokens.addr(),
        pid = envoy.pid(),
        spoofed = cmds[0],
        identified = cmds[1],
        anonymous = cmds[2],
    );
}
