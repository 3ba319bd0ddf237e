//! Self-tests of what only the harness does: the Envoy launcher's process handling, the token
//! stand-in's refusals and hangs, and the demo binary. What the end-to-end tests in `tests/suite/`
//! already drive through a real Envoy is not repeated here (raw headers: tests/suite/strip.rs; token
//! behaviours and OAuth2: tests/suite/token.rs; failing fetches: tests/suite/soak.rs).

use harness::client::{self, ClientRequest};
use harness::envoy::{self, Envoy, EnvoyConfig, Filter};
use harness::ports;
use harness::token_service::{Behavior, TokenService};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

const TOKEN_PATH: &str = "/api/v1/namespaces/istio-system/serviceaccounts/kiali/token";

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn pid_alive(pid: u32) -> bool {
    // A zombie still has /proc/<pid>; treat state Z as dead.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn wait_dead(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while pid_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    !pid_alive(pid)
}

// ---------------------------------------------------------------- Envoy launcher

#[test]
fn dropping_envoy_kills_the_process() {
    let envoy = Envoy::start(&EnvoyConfig::new());
    let (pid, addr) = (envoy.pid(), envoy.addr());
    assert!(pid_alive(pid));
    assert_eq!(client::get(addr, "/").unwrap().text(), "ok");
    drop(envoy);
    assert!(!pid_alive(pid), "envoy pid {pid} still alive after drop");
    assert!(client::get(addr, "/").is_err());
}

#[test]
fn envoy_start_repicks_ports_on_a_bind_clash() {
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().port();
    let mut cfg = EnvoyConfig::new();
    cfg.listener_port = taken; // still auto_ports: start may re-pick
    let envoy = Envoy::start(&cfg);
    assert_ne!(envoy.addr().port(), taken);
    assert_eq!(client::get(envoy.addr(), "/").unwrap().status, 200);
    // Explicit ports are not re-picked: the error carries Envoy's log.
    let err = Envoy::try_start(&EnvoyConfig::new().listener_port(taken)).err().expect("bind clash");
    assert!(err.contains("ddress already in use") || err.contains("cannot bind"), "{err}");
}

#[test]
fn rendered_configs_pass_envoy_validate() {
    // The Lua filter and the access log are only used by the bench and the demo.
    let config = EnvoyConfig::proxy(localhost(18080))
        .filter(Filter::lua("function envoy_on_request(h) end"))
        .token_cluster("outbound|443||kubernetes.default.svc.cluster.local", localhost(18443))
        .access_log(true);
    envoy::validate_config(&config).unwrap();
    // A broken config is reported, with Envoy's message.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "static_resources: { listeners: [ { name: x } ] }\nbogus_field: 1\n").unwrap();
    let err = envoy::validate(&bad).unwrap_err();
    assert!(err.contains("bogus_field") || err.contains("INVALID_ARGUMENT"), "{err}");
}

// ---------------------------------------------------------------- token service

fn post_token(ts: &TokenService, bearer: &str, body: &str, timeout: Duration) -> std::io::Result<harness::Response> {
    let request = ClientRequest::post(TOKEN_PATH)
        .header("Authorization", format!("Bearer {bearer}"))
        .body(body)
        .timeout(timeout);
    client::send(ts.addr(), &request)
}

/// The refusals the filter never provokes on purpose, in the API server's `Status` shape.
#[test]
fn token_service_refuses_like_the_api_server() {
    let ts = TokenService::start();
    ts.set_required_bearer(Some("bootstrap"));
    let good = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"audiences": ["kiali"], "expirationSeconds": 600}})
    .to_string();
    let answer = |bearer: &str, body: &str| {
        let response = post_token(&ts, bearer, body, client::DEFAULT_TIMEOUT).unwrap();
        let status = response.json();
        assert_eq!((status["kind"].as_str(), status["code"].as_u64()), (Some("Status"), Some(response.status.into())));
        (response.status, status["reason"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(answer("wrong", &good), (401, "Unauthorized".into()));
    let no_audiences = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}});
    for bad in [r#"{"kind":"TokenRequest"}"#.to_string(), no_audiences.to_string(), "{not json".into()] {
        assert_eq!(answer("bootstrap", &bad), (400, "BadRequest".into()), "{bad}");
    }
    assert_eq!(post_token(&ts, "bootstrap", &good, client::DEFAULT_TIMEOUT).unwrap().status, 201);
    let missing = client::get(ts.addr(), "/api/v1/namespaces").unwrap();
    assert_eq!((missing.status, missing.json()["reason"].clone()), (404, json!("NotFound")));
    assert_eq!(client::get(ts.addr(), TOKEN_PATH).unwrap().status, 405);
}

#[test]
fn a_hanging_token_service_answers_after_the_change_and_still_stops() {
    let ts = std::sync::Arc::new(TokenService::start());
    ts.set_behavior(Behavior::Hang);
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"audiences": [], "expirationSeconds": 600}})
    .to_string();
    let waiting = {
        let (ts, body) = (ts.clone(), body.clone());
        std::thread::spawn(move || (post_token(&ts, "", &body, Duration::from_secs(10)), Instant::now()))
    };
    std::thread::sleep(Duration::from_millis(400));
    assert!(!waiting.is_finished());
    // The answer must come after the change, not at the time the thread happened to run.
    let released_at = Instant::now();
    ts.set_behavior(Behavior::default());
    let (answer, answered_at) = waiting.join().unwrap();
    assert_eq!(answer.unwrap().status, 201);
    assert!(answered_at >= released_at);

    // A hanging request does not keep the service from stopping.
    ts.set_behavior(Behavior::Hang);
    let addr = ts.addr();
    let waiting = std::thread::spawn(move || {
        let request = ClientRequest::post(TOKEN_PATH).body(body).timeout(Duration::from_secs(20));
        client::send(addr, &request)
    });
    std::thread::sleep(Duration::from_millis(200));
    let stopping = Instant::now();
    drop(std::sync::Arc::into_inner(ts).expect("the only handle"));
    assert!(stopping.elapsed() < Duration::from_secs(3));
    assert!(waiting.join().unwrap().is_err());
}

// ---------------------------------------------------------------- demo binary

struct Demo {
    child: Child,
    lines: Receiver<String>,
}

impl Demo {
    /// The demo on a harness-made config with no filter; returns it and the Envoy config.
    fn start() -> (Demo, EnvoyConfig, tempfile::TempDir) {
        let ports = [ports::free_port(), ports::free_port()];
        let cfg = EnvoyConfig::proxy(localhost(ports[0]));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("envoy.yaml");
        std::fs::write(&path, cfg.render()).unwrap();
        let demo = Demo::spawn(&path, [ports[0], ports[1], cfg.listener_port], &[]);
        (demo, cfg, dir)
    }

    /// Runs the demo on `config` with `[upstream, token service, listener]` ports.
    fn spawn(config: &std::path::Path, ports: [u16; 3], extra: &[&str]) -> Demo {
        let [upstream, token, listener] = ports.map(|port| port.to_string());
        let mut child = Command::new(env!("CARGO_BIN_EXE_demo"))
            .arg("--envoy-config")
            .arg(config)
            .arg("--envoy-log")
            .arg(config.with_file_name("envoy.log"))
            .args(["--upstream-port", &upstream, "--token-port", &token, "--listener-port", &listener])
            .args(["--concurrency", "1"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Demo { child, lines: rx }
    }

    /// The lines up to the first that starts with `prefix`, within `timeout`.
    fn lines_until(&self, prefix: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.starts_with(prefix);
                    lines.push(line);
                    if found {
                        return lines;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("the demo printed no line starting with {prefix:?}: {lines:?}");
    }

    fn next_line_starting(&self, prefix: &str) -> String {
        self.lines_until(prefix, Duration::from_secs(10)).pop().unwrap_or_default()
    }

    /// Reads the banner up to "Press Ctrl-C"; returns it and Envoy's pid.
    fn wait_ready(&self) -> (Vec<String>, u32) {
        let banner = self.lines_until("Press Ctrl-C", Duration::from_secs(20));
        let pid = banner.iter().find_map(|line| line.strip_prefix("envoy pid: ")?.trim().parse().ok());
        (banner.clone(), pid.unwrap_or_else(|| panic!("no pid line: {banner:?}")))
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `make run` as a newcomer sees it: the repository's envoy.yaml (on free ports), Envoy's log in
/// a file, and one line per request that reached Kiali, per issued token, per refusal; SIGTERM
/// stops the demo and Envoy with it.
#[test]
fn demo_narrates_requests_tokens_and_refusals_with_the_repository_envoy_yaml() {
    let ports = [ports::free_port(), ports::free_port(), ports::free_port()];
    let admin_port = ports::free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("envoy.yaml");
    let yaml = std::fs::read_to_string(harness::paths::repo_root().join("envoy.yaml")).unwrap();
    let mut localised = yaml.replace("port_value: 9901", &format!("port_value: {admin_port}"));
    for (fixed, free) in [18080, 18443, 10000].into_iter().zip(ports) {
        localised = localised.replace(&format!("port_value: {fixed}"), &format!("port_value: {free}"));
    }
    std::fs::write(&config, localised).unwrap();
    let mut demo = Demo::spawn(&config, ports, &["--curl-header", "X-Forwarded-User: alice"]);
    let (banner, envoy_pid) = demo.wait_ready();
    let text = banner.join("\n");
    let log = config.with_file_name("envoy.log");
    assert!(text.contains(&log.display().to_string()), "{text}");
    assert!(text.contains("Impersonate-User: system:admin") && text.contains("X-Forwarded-User: alice"), "{text}");
    assert!(text.contains(&format!("http://127.0.0.1:{}", ports[2])), "{text}");
    assert!(!banner.iter().any(|l| l.starts_with('[')), "Envoy's log reached the terminal: {banner:?}");

    let listener = localhost(ports[2]);
    let alice = ClientRequest::get("/kiali/api/namespaces")
        .header("Impersonate-User", "system:admin")
        .header("X-Forwarded-User", "alice")
        .header("X-Forwarded-Groups", "dev,ops");
    let echoed = client::send(listener, &alice).unwrap().json();
    let bearer = echoed["headers"].as_array().unwrap().iter().find(|h| h[0] == "authorization").unwrap()[1].clone();
    let token = demo.next_line_starting("tokens ");
    assert!(token.contains("for system:serviceaccount:kiali-auth:kiali-impersonator, expires 20"), "{token}");
    let seen = demo.next_line_starting("kiali ");
    assert!(
        seen.starts_with("kiali    GET /kiali/api/namespaces  user=alice groups=[dev, ops]  bearer=the issued token kha-1-"),
        "{seen}"
    );
    // The demo shows enough of a token to tell tokens apart, never all of it.
    let full = bearer.as_str().unwrap().strip_prefix("Bearer ").unwrap();
    assert!(!token.contains(full) && !seen.contains(full), "{token} / {seen}");
    assert_eq!(client::send(listener, &ClientRequest::get("/anonymous")).unwrap().status, 401);
    assert_eq!(demo.next_line_starting("refused "), "refused  401 identity_missing  GET /anonymous");
    // Envoy's own log went to the file, with the access log in it.
    let written = std::fs::read_to_string(&log).unwrap();
    assert!(written.contains("starting main dispatch loop") && written.contains(r#""reason":"identity_missing""#));

    // SAFETY: signalling our own child.
    unsafe { libc::kill(demo.child.id() as libc::pid_t, libc::SIGTERM) };
    let status = demo.wait_exit(Duration::from_secs(10)).expect("demo exits on SIGTERM");
    assert!(status.success(), "{status}");
    assert!(wait_dead(envoy_pid, Duration::from_secs(5)), "envoy {envoy_pid} survived the demo");
    assert!(client::get(listener, "/").is_err());
}

#[test]
fn demo_killed_hard_takes_envoy_down() {
    let (mut demo, _cfg, _dir) = Demo::start();
    let (_banner, envoy_pid) = demo.wait_ready();
    assert!(pid_alive(envoy_pid));
    demo.child.kill().unwrap(); // SIGKILL: no cleanup code runs in the demo
    demo.child.wait().unwrap();
    assert!(wait_dead(envoy_pid, Duration::from_secs(10)), "envoy {envoy_pid} outlived a SIGKILLed demo");
}

#[test]
fn demo_exits_when_envoy_exits() {
    let (mut demo, cfg, _dir) = Demo::start();
    let (_banner, envoy_pid) = demo.wait_ready();
    // The demo found the admin port in the YAML.
    let quit = client::send(localhost(cfg.admin_port), &ClientRequest::post("/quitquitquit")).unwrap();
    assert_eq!(quit.status, 200);
    let status = demo.wait_exit(Duration::from_secs(10)).expect("demo exits when envoy exits");
    assert_eq!(status.code(), Some(0));
    assert!(wait_dead(envoy_pid, Duration::from_secs(5)));
}

#[test]
fn handles_are_send_and_sync() {
    // So tests can share one instance through a `static OnceLock<...>`.
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Envoy>();
    assert_send_sync::<harness::EchoUpstream>();
    assert_send_sync::<TokenService>();
    assert_send_sync::<EnvoyConfig>();
}
