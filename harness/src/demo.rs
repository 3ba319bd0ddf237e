//! The `demo` binary (used by `make run`): Kiali and token-service stand-ins on fixed
//! ports plus Envoy with the repository's `envoy.yaml`, until Ctrl-C.

use crate::envoy::{scan_admin_port, Envoy, Launch};
use crate::paths;
use crate::token_service::TokenService;
use crate::upstream::EchoUpstream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub const USAGE: &str = "\
usage: demo --envoy-config <path> [options]

Starts the Kiali stand-in (echo upstream) and the token-service stand-in, then Envoy
with the given config (run from the repository root, so relative paths such as the
wasm module resolve), waits until it is ready, prints example curl commands and runs
until Ctrl-C (SIGINT/SIGTERM) or until Envoy exits.

options:
  --envoy-config <path>      Envoy bootstrap (required)
  --upstream-port <port>     Kiali stand-in port            [18080]
  --token-port <port>        token service port             [18443]
  --required-bearer <token>  bearer the TokenRequest endpoint requires [none]
  --oauth-client <id:secret> client the /oauth2/token endpoint requires [any]
  --jwt-tokens               issue JWT-shaped tokens
  --listener-port <port>     Envoy listener port (for the printed curl) [10000]
  --admin-port <port>        Envoy admin port [scanned from the config, else 9901]
  --concurrency <n>          Envoy worker threads           [2]
  --curl-header <h: v>       extra header in the printed curl (repeatable)
  --curl-path <path>         path in the printed curl       [/kiali/api/namespaces]
  -h, --help                 this text
";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoArgs {
    pub envoy_config: PathBuf,
    pub upstream_port: u16,
    pub token_port: u16,
    pub required_bearer: Option<String>,
    pub oauth_client: Option<(String, String)>,
    pub jwt_tokens: bool,
    pub listener_port: u16,
    pub admin_port: Option<u16>,
    pub concurrency: u32,
    pub curl_headers: Vec<String>,
    pub curl_path: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    Run(DemoArgs),
    Help,
}

fn parse_num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("{flag}: invalid number {v:?}"))
}

/// Parses the arguments (without the program name).
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Parsed, String> {
    let mut it = args.into_iter();
    let mut config: Option<PathBuf> = None;
    let mut a = DemoArgs {
        envoy_config: PathBuf::new(),
        upstream_port: 18080,
        token_port: 18443,
        required_bearer: None,
        oauth_client: None,
        jwt_tokens: false,
        listener_port: 10000,
        admin_port: None,
        concurrency: 2,
        curl_headers: Vec::new(),
        curl_path: "/kiali/api/namespaces".into(),
    };
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let value = |it: &mut I::IntoIter| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it.next().ok_or_else(|| format!("{flag} needs a value")),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--envoy-config" => config = Some(PathBuf::from(value(&mut it)?)),
            "--upstream-port" => a.upstream_port = parse_num(&flag, &value(&mut it)?)?,
            "--token-port" => a.token_port = parse_num(&flag, &value(&mut it)?)?,
            "--listener-port" => a.listener_port = parse_num(&flag, &value(&mut it)?)?,
            "--admin-port" => a.admin_port = Some(parse_num(&flag, &value(&mut it)?)?),
            "--concurrency" => {
                a.concurrency = parse_num(&flag, &value(&mut it)?)?;
                if a.concurrency == 0 {
                    return Err("--concurrency must be at least 1".into());
                }
            }
            "--required-bearer" => {
                let v = value(&mut it)?;
                a.required_bearer = (!v.is_empty()).then_some(v);
            }
            "--oauth-client" => {
                let v = value(&mut it)?;
                let (id, secret) = v.split_once(':').ok_or("--oauth-client expects <id>:<secret>")?;
                a.oauth_client = Some((id.to_string(), secret.to_string()));
            }
            "--jwt-tokens" => {
                if inline.is_some() {
                    return Err("--jwt-tokens takes no value".into());
                }
                a.jwt_tokens = true;
            }
            "--curl-header" => a.curl_headers.push(value(&mut it)?),
            "--curl-path" => a.curl_path = value(&mut it)?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    a.envoy_config = config.ok_or("--envoy-config <path> is required")?;
    for (name, p) in [("--upstream-port", a.upstream_port), ("--token-port", a.token_port), ("--listener-port", a.listener_port)] {
        if p == 0 {
            return Err(format!("{name} must not be 0"));
        }
    }
    Ok(Parsed::Run(a))
}

/// Single-quotes for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The example curl commands printed when the demo is ready.
pub fn curl_commands(a: &DemoArgs) -> Vec<String> {
    let base = format!("http://127.0.0.1:{}", a.listener_port);
    let mut spoof = String::from("curl -sS");
    for h in ["Impersonate-User: system:admin", "Impersonate-Group: system:masters"] {
        spoof.push_str(" -H ");
        spoof.push_str(&shell_quote(h));
    }
    for h in &a.curl_headers {
        spoof.push_str(" -H ");
        spoof.push_str(&shell_quote(h));
    }
    spoof.push(' ');
    spoof.push_str(&shell_quote(&format!("{base}{}", a.curl_path)));
    let mut plain = String::from("curl -sS -i");
    for h in &a.curl_headers {
        plain.push_str(" -H ");
        plain.push_str(&shell_quote(h));
    }
    plain.push(' ');
    plain.push_str(&shell_quote(&format!("{base}{}", a.curl_path)));
    vec![spoof, plain]
}

static SIGNALED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    SIGNALED.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe {
            libc::signal(sig, handler as libc::sighandler_t);
        }
    }
}

/// Runs the demo; returns the process exit code.
pub fn run(a: DemoArgs) -> i32 {
    install_signal_handlers();
    let config = match a.envoy_config.canonicalize() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("demo: cannot open {}: {e}", a.envoy_config.display());
            return 2;
        }
    };
    let yaml = match std::fs::read_to_string(&config) {
        Ok(y) => y,
        Err(e) => {
            eprintln!("demo: cannot read {}: {e}", config.display());
            return 2;
        }
    };
    let admin_port = a.admin_port.or_else(|| scan_admin_port(&yaml)).unwrap_or(9901);
    let Some(envoy_bin) = paths::find_envoy_bin() else {
        eprintln!("demo: envoy binary not found: run `make envoy` (or set ENVOY_BIN)");
        return 2;
    };

    let upstream = match EchoUpstream::start_on(a.upstream_port) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("demo: cannot start the Kiali stand-in on 127.0.0.1:{}: {e}", a.upstream_port);
            return 1;
        }
    };
    let tokens = match TokenService::start_on(a.token_port) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("demo: cannot start the token service on 127.0.0.1:{}: {e}", a.token_port);
            return 1;
        }
    };
    // A demo left running under load must not grow without bound.
    upstream.keep_at_most(10_000);
    tokens.set_required_bearer(a.required_bearer.as_deref());
    if let Some((id, secret)) = &a.oauth_client {
        tokens.set_oauth_client(id, secret);
    }
    tokens.set_jwt_tokens(a.jwt_tokens);
    let _bootstrap_token = crate::bootstrap_token::refresher_for(&yaml, &tokens);

    let mut launch = Launch::new(&config, a.listener_port, admin_port);
    launch.envoy_bin = envoy_bin;
    launch.concurrency = a.concurrency;
    launch.cwd = Some(paths::repo_root());
    launch.log_file = None; // Envoy logs go to this terminal.
    let envoy = match Envoy::spawn(launch) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("demo: {e}");
            return 1;
        }
    };
    if let Err(e) = envoy.wait_ready(Duration::from_secs(60), Some(&SIGNALED)) {
        eprintln!("demo: {e}");
        envoy.terminate(Duration::from_secs(5));
        return if SIGNALED.load(Ordering::SeqCst) { 0 } else { 1 };
    }

    println!();
    println!("kiali-header-auth demo is ready");
    println!("  envoy listener : http://{}  (config {})", envoy.addr(), config.display());
    println!("  envoy admin    : http://{}", envoy.admin_addr());
    println!("  kiali stand-in : http://{}  (answers with the request it received, as JSON)", upstream.addr());
    println!("  token service  : http://{}  (Kubernetes TokenRequest and /oauth2/token)", tokens.addr());
    println!("envoy pid: {}", envoy.pid());
    println!();
    let cmds = curl_commands(&a);
    println!("A spoofed Impersonate-User/Impersonate-Group is dropped and the identity is mapped;");
    println!("the JSON shows the headers Kiali would receive:");
    println!("  {}", cmds[0]);
    println!("Status and response headers:");
    println!("  {}", cmds[1]);
    println!();
    println!("Press Ctrl-C to stop.");

    while !SIGNALED.load(Ordering::SeqCst) && envoy.is_running() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let code = if SIGNALED.load(Ordering::SeqCst) {
        println!("demo: stopping envoy and the stand-ins");
        envoy.terminate(Duration::from_secs(5));
        0
    } else {
        let status = envoy.wait_exit(Duration::from_secs(1));
        eprintln!("demo: envoy exited ({})", status.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into()));
        // Envoy's own exit code (0 after /quitquitquit); 1 if it died from a signal.
        status.and_then(|s| s.code()).unwrap_or(1)
    };
    println!(
        "demo: upstream saw {} request(s), token service {} request(s)",
        upstream.count(),
        tokens.count()
    );
    drop(envoy);
    drop(tokens);
    drop(upstream);
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<Parsed, String> {
        parse_args(v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults_and_flags() {
        let Parsed::Run(a) = args(&["--envoy-config", "envoy.yaml"]).unwrap() else { panic!() };
        assert_eq!(a.envoy_config, PathBuf::from("envoy.yaml"));
        assert_eq!((a.upstream_port, a.token_port, a.listener_port, a.concurrency), (18080, 18443, 10000, 2));
        assert_eq!(a.required_bearer, None);
        assert_eq!(a.admin_port, None);
        let Parsed::Run(b) = args(&[
            "--envoy-config=x.yaml",
            "--upstream-port",
            "1",
            "--token-port=2",
            "--listener-port",
            "3",
            "--admin-port",
            "4",
            "--required-bearer",
            "demo-bootstrap-token",
            "--oauth-client",
            "kiali:s3:cret",
            "--jwt-tokens",
            "--concurrency",
            "1",
            "--curl-header",
            "X-Forwarded-User: alice",
            "--curl-path=/api",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(b.envoy_config, PathBuf::from("x.yaml"));
        assert_eq!((b.upstream_port, b.token_port, b.listener_port, b.admin_port), (1, 2, 3, Some(4)));
        assert_eq!(b.required_bearer.as_deref(), Some("demo-bootstrap-token"));
        assert_eq!(b.oauth_client, Some(("kiali".into(), "s3:cret".into())));
        assert!(b.jwt_tokens);
        assert_eq!(b.concurrency, 1);
        assert_eq!(b.curl_headers, vec!["X-Forwarded-User: alice".to_string()]);
        let cmds = curl_commands(&b);
        assert_eq!(
            cmds[0],
            "curl -sS -H 'Impersonate-User: system:admin' -H 'Impersonate-Group: system:masters' -H 'X-Forwarded-User: alice' 'http://127.0.0.1:3/api'"
        );
    }

    #[test]
    fn errors_and_help() {
        assert_eq!(args(&["--help"]).unwrap(), Parsed::Help);
        assert_eq!(args(&["--envoy-config", "x", "-h"]).unwrap(), Parsed::Help);
        assert!(args(&[]).unwrap_err().contains("--envoy-config"));
        assert!(args(&["--envoy-config"]).unwrap_err().contains("needs a value"));
        assert!(args(&["--envoy-config", "x", "--upstream-port", "70000"]).is_err());
        assert!(args(&["--envoy-config", "x", "--upstream-port", "0"]).is_err());
        assert!(args(&["--envoy-config", "x", "--bogus"]).unwrap_err().contains("unknown"));
        assert!(args(&["--envoy-config", "x", "--oauth-client", "nocolon"]).is_err());
        assert!(args(&["--envoy-config", "x", "--concurrency", "0"]).is_err());
        assert!(args(&["--envoy-config", "x", "--jwt-tokens=1"]).is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
