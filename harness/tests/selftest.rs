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

/// The ServiceAccount the stand-in knows by default (`token_service::DEFAULT_SERVICE_ACCOUNT`).
const TOKEN_PATH: &str = "/api/v1/namespaces/kiali-auth/serviceaccounts/kiali-impersonator/token";

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
    let answer_at = |path: &str, bearer: &str, body: &str| {
        let request = ClientRequest::post(path).header("Authorization", format!("Bearer {bearer}")).body(body);
        let response = client::send(ts.addr(), &request).unwrap();
        let status = response.json();
        assert_eq!((status["kind"].as_str(), status["code"].as_u64()), (Some("Status"), Some(response.status.into())));
        (response.status, status["reason"].as_str().unwrap_or_default().to_string(), status["message"].as_str().unwrap_or_default().to_string())
    };
    let answer = |bearer: &str, body: &str| {
        let (status, reason, _) = answer_at(TOKEN_PATH, bearer, body);
        (status, reason)
    };
    assert_eq!(answer("wrong", &good), (401, "Unauthorized".into()));
    for bad in [r#"{"kind":"TokenRequest"}"#, "{not json", r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"audiences":"kiali"}}"#] {
        assert_eq!(answer("bootstrap", bad), (400, "BadRequest".into()), "{bad}");
    }
    // ValidateTokenRequest: under 10 minutes, or over 2^32 seconds, is 422 Invalid.
    for seconds in [0, 599, (1i64 << 32) + 1] {
        let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": seconds}});
        let (status, reason, message) = answer_at(TOKEN_PATH, "bootstrap", &body.to_string());
        assert_eq!((status, reason.as_str()), (422, "Invalid"), "{seconds}: {message}");
        assert!(message.starts_with(&format!("TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: {seconds}: ")), "{message}");
    }
    // A ServiceAccount that does not exist: 404 NotFound, after validation.
    let unknown = "/api/v1/namespaces/kiali-auth/serviceaccounts/nobody/token";
    assert_eq!(answer_at(unknown, "bootstrap", &good), (404, "NotFound".into(), r#"serviceaccounts "nobody" not found"#.into()));
    let short = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 60}});
    assert_eq!(answer_at(unknown, "bootstrap", &short.to_string()).0, 422, "validation comes first");
    ts.add_service_account("kiali-auth", "nobody");
    assert_eq!(post_token_at(&ts, unknown, "bootstrap", &good).status, 201);
    ts.remove_service_account("kiali-auth", "nobody");
    assert_eq!(post_token_at(&ts, unknown, "bootstrap", &good).status, 404);

    assert_eq!(post_token(&ts, "bootstrap", &good, client::DEFAULT_TIMEOUT).unwrap().status, 201);
    let missing = client::get(ts.addr(), "/api/v1/namespaces").unwrap();
    assert_eq!((missing.status, missing.json()["reason"].clone()), (404, json!("NotFound")));
    assert_eq!(client::get(ts.addr(), TOKEN_PATH).unwrap().status, 405);
}

fn post_token_at(ts: &TokenService, path: &str, bearer: &str, body: &str) -> harness::Response {
    let request = ClientRequest::post(path).header("Authorization", format!("Bearer {bearer}")).body(body);
    client::send(ts.addr(), &request).unwrap()
}

/// The seconds from the answer's creation to its `status.expirationTimestamp`.
fn lifetime_in(answer: &serde_json::Value) -> i64 {
    let at = |pointer: &str| {
        let text = answer.pointer(pointer).and_then(|v| v.as_str()).unwrap_or_else(|| panic!("{pointer} in {answer}"));
        humantime::parse_rfc3339(text).unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
    };
    at("/status/expirationTimestamp") - at("/metadata/creationTimestamp")
}

/// defaults.go and token.go: `expirationSeconds` as requested (3600 when omitted), audiences
/// defaulted to the API server's; the lifetime override is a test knob that shortens the token
/// but does not lift validation.
#[test]
fn token_service_issues_for_the_requested_expiration_and_the_override_only_on_demand() {
    let ts = TokenService::start();
    let request = |spec: serde_json::Value| {
        let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
        let response = post_token(&ts, "", &body.to_string(), client::DEFAULT_TIMEOUT).unwrap();
        assert_eq!(response.status, 201, "{}", response.text());
        response.json()
    };
    for (spec, lifetime) in [(json!({"expirationSeconds": 600}), 600), (json!({"expirationSeconds": 7200}), 7200), (json!({}), 3600)] {
        let answer = request(spec.clone());
        assert!((lifetime..=lifetime + 1).contains(&lifetime_in(&answer)), "{spec}: {answer}");
        assert_eq!(answer["spec"]["expirationSeconds"], lifetime, "the defaulted spec is echoed");
    }
    let answer = request(json!({}));
    assert_eq!(answer["spec"]["audiences"], json!([harness::token_service::JWT_ISSUER]));
    let issued = ts.issued();
    assert_eq!(issued.last().unwrap().audiences, [harness::token_service::JWT_ISSUER]);
    let seconds = issued[1].expires_at.duration_since(issued[1].issued_at).unwrap().as_secs();
    assert!((7199..=7200).contains(&seconds), "the record matches the answer: {seconds}");

    ts.set_behavior(Behavior::Issue { lifetime: Duration::from_secs(3) });
    let answer = request(json!({"expirationSeconds": 600}));
    assert!((2..=3).contains(&lifetime_in(&answer)), "the override: {answer}");
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 5}});
    assert_eq!(post_token(&ts, "", &body.to_string(), client::DEFAULT_TIMEOUT).unwrap().status, 422, "still validated");
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
