//! Self-tests of the harness: raw client through Envoy, the stand-ins, the Envoy
//! launcher and the demo binary. Fast and parallel-safe (every server on its own ports).

use harness::client::{self, ClientRequest, Connection};
use harness::envoy::{self, Envoy, EnvoyConfig, Filter, Route};
use harness::time::{parse_rfc3339, rfc3339};
use harness::token_service::{token_request_body, token_request_path, Behavior, TokenService, TokenSource};
use harness::upstream::EchoUpstream;
use harness::ports;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

const NON_UTF8: &[u8] = &[0xC3, 0x28, b'-', 0xFF];

fn pid_alive(pid: u32) -> bool {
    // A zombie still has /proc/<pid>; treat state Z as dead.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn wait_dead(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !pid_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    !pid_alive(pid)
}

// ---------------------------------------------------------------- Envoy + raw client

#[test]
fn envoy_forwards_duplicate_and_non_utf8_headers_byte_for_byte() {
    let up = EchoUpstream::start();
    let envoy = Envoy::start(&EnvoyConfig::proxy(up.addr()).filter(Filter::None));
    let req = ClientRequest::get("/kiali/api/namespaces?x=1")
        .host("kiali.example")
        .header("IMPERSONATE-GROUP", "group-a")
        .header("IMPERSONATE-GROUP", "group-b")
        .header("X-Raw", NON_UTF8)
        .header("x-other", [0xFFu8]);
    let resp = client::send(envoy.addr(), &req).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(up.count(), 1);
    let got = &up.requests()[0];
    assert_eq!(got.method, "GET");
    assert_eq!(got.path, "/kiali/api/namespaces?x=1");
    assert_eq!(got.headers_named("impersonate-group"), vec![b"group-a".to_vec(), b"group-b".to_vec()]);
    assert_eq!(got.header("x-raw").unwrap(), NON_UTF8.to_vec());
    assert_eq!(got.header("x-other").unwrap(), vec![0xFF]);
    assert_eq!(got.header_str(":authority").or_else(|| got.header_str("host")).as_deref(), Some("kiali.example"));
    // The echo body shows what the upstream saw.
    let echo = resp.json();
    assert_eq!(echo["path"], "/kiali/api/namespaces?x=1");
    let groups: Vec<&Value> = echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0].as_str().unwrap().eq_ignore_ascii_case("impersonate-group"))
        .collect();
    assert_eq!(groups.len(), 2);

    // Keep-alive through Envoy.
    let mut conn = Connection::open(envoy.addr()).unwrap();
    for i in 0..3 {
        let r = conn.send(&ClientRequest::post(&format!("/ka/{i}")).body("{}"));
        assert_eq!(r.status, 200);
    }
    assert_eq!(conn.connects(), 1);
    assert_eq!(up.count(), 4);
    assert_eq!(up.last().unwrap().body, b"{}");

    // Stats.
    assert_eq!(envoy.wait_for_stat("http.ingress.downstream_rq_2xx", 4, Duration::from_secs(5)), Some(4));
    let stats = envoy.stats();
    assert!(stats["cluster.upstream.upstream_rq_total"] >= 4, "{stats:?}");
    assert_eq!(envoy.stat("server.live"), Some(1));
    assert_eq!(envoy.stat("no.such.stat"), None);
    assert!(envoy.log().contains("starting main dispatch loop"), "{}", envoy.log());
    assert!(envoy.is_running());
}

#[test]
fn envoy_direct_response_lua_filter_and_admin_quit() {
    let lua = r#"
function envoy_on_request(handle)
  handle:headers():add("x-lua-saw-path", handle:headers():get(":path"))
end
function envoy_on_response(handle)
  handle:headers():add("x-lua", "yes")
end
"#;
    let up = EchoUpstream::start();
    let proxied = Envoy::start(&EnvoyConfig::proxy(up.addr()).filter(Filter::lua(lua)).concurrency(2));
    let direct = Envoy::start(&EnvoyConfig::new().route(Route::DirectResponse { status: 418, body: "teapot \"quoted\"".into() }));

    let r = client::get(proxied.addr(), "/p?q").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-lua").as_deref(), Some("yes"));
    assert_eq!(up.last().unwrap().header_str("x-lua-saw-path").as_deref(), Some("/p?q"));

    let d = client::get(direct.addr(), "/anything").unwrap();
    assert_eq!((d.status, d.text().as_str()), (418, "teapot \"quoted\""));
    assert_eq!(up.count(), 1);

    let q = direct.post_admin("/quitquitquit").unwrap();
    assert_eq!(q.status, 200);
    assert!(direct.wait_exit(Duration::from_secs(10)).is_some());
    assert!(!direct.is_running());
    assert!(client::get(direct.addr(), "/").is_err());
}

#[test]
fn dropping_envoy_kills_the_process() {
    let envoy = Envoy::start(&EnvoyConfig::new());
    let pid = envoy.pid();
    let addr = envoy.addr();
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
    let up: SocketAddr = "127.0.0.1:18080".parse().unwrap();
    let tok: SocketAddr = "127.0.0.1:18443".parse().unwrap();
    envoy::validate_config(
        &EnvoyConfig::proxy(up)
            .filter(Filter::lua("function envoy_on_request(h) end"))
            .token_cluster("outbound|443||kubernetes.default.svc.cluster.local", tok)
            .access_log(true),
    )
    .unwrap();
    envoy::validate_config(&EnvoyConfig::new().filter(Filter::None)).unwrap();
    // A broken config is reported, with Envoy's message.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "static_resources: { listeners: [ { name: x } ] }\nbogus_field: 1\n").unwrap();
    let err = envoy::validate(&bad).unwrap_err();
    assert!(err.contains("bogus_field") || err.contains("INVALID_ARGUMENT"), "{err}");
}

// ---------------------------------------------------------------- token service

fn post_token(ts: &TokenService, bearer: Option<&str>, body: &Value) -> std::io::Result<harness::Response> {
    let mut req = ClientRequest::post(&token_request_path("istio-system", "kiali"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .timeout(Duration::from_secs(5));
    if let Some(b) = bearer {
        req = req.header("Authorization", format!("Bearer {b}"));
    }
    client::send(ts.addr(), &req)
}

fn good_body() -> Value {
    token_request_body(&["kiali", "https://kubernetes.default.svc"], 600)
}

fn assert_status_object(v: &Value, code: u16, reason: &str) {
    assert_eq!(v["kind"], "Status");
    assert_eq!(v["apiVersion"], "v1");
    assert_eq!(v["metadata"], json!({}));
    assert_eq!(v["status"], "Failure");
    assert_eq!(v["reason"], reason);
    assert_eq!(v["code"], code);
    assert!(v["message"].is_string());
}

#[test]
fn token_request_success_shape() {
    let ts = TokenService::start();
    let before = SystemTime::now();
    let r = post_token(&ts, None, &good_body()).unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("content-type").as_deref(), Some("application/json"));
    let v = r.json();
    assert_eq!(v["kind"], "TokenRequest");
    assert_eq!(v["apiVersion"], "authentication.k8s.io/v1");
    assert_eq!(v["metadata"]["name"], "kiali");
    assert_eq!(v["metadata"]["namespace"], "istio-system");
    assert!(parse_rfc3339(v["metadata"]["creationTimestamp"].as_str().unwrap()).is_some());
    assert_eq!(v["spec"]["audiences"], json!(["kiali", "https://kubernetes.default.svc"]));
    assert_eq!(v["spec"]["expirationSeconds"], 600);
    let token = v["status"]["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("kha-1-"), "{token}");
    let exp_str = v["status"]["expirationTimestamp"].as_str().unwrap();
    // RFC 3339, UTC, second precision.
    assert_eq!(exp_str.len(), 20, "{exp_str}");
    assert!(exp_str.ends_with('Z'));
    let exp = parse_rfc3339(exp_str).unwrap();
    assert_eq!(rfc3339(exp), exp_str);
    // Default lifetime is 3600 s regardless of the requested 600.
    let lifetime = exp.duration_since(before).unwrap();
    assert!(lifetime > Duration::from_secs(3590) && lifetime <= Duration::from_secs(3601), "{lifetime:?}");

    let issued = ts.issued();
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0].token, token);
    assert_eq!(issued[0].expires_at, exp);
    assert_eq!(issued[0].subject, "system:serviceaccount:istio-system:kiali");
    assert_eq!(issued[0].source, TokenSource::TokenRequest);
    assert!(ts.is_valid_now(&token));
    assert!(ts.is_valid_at(&token, exp - Duration::from_secs(1)));
    assert!(!ts.is_valid_at(&token, exp));
    assert!(!ts.is_valid_at("kha-unknown", SystemTime::now()));

    // Tokens are unique.
    let t2 = post_token(&ts, None, &good_body()).unwrap().json()["status"]["token"].as_str().unwrap().to_string();
    assert_ne!(t2, token);
    assert!(t2.starts_with("kha-2-"));
    assert_eq!(ts.count(), 2);
    assert_eq!(ts.requests()[0].json().unwrap()["kind"], "TokenRequest");
}

#[test]
fn token_request_auth_and_validation_errors() {
    let ts = TokenService::start();
    ts.set_required_bearer(Some("bootstrap"));
    for bearer in [None, Some("wrong")] {
        let r = post_token(&ts, bearer, &good_body()).unwrap();
        assert_eq!(r.status, 401);
        let v = r.json();
        assert_eq!(
            v,
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401})
        );
    }
    assert_eq!(post_token(&ts, Some("bootstrap"), &good_body()).unwrap().status, 201);
    for bad in [
        json!({"kind": "TokenRequest"}),
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "Pod", "spec": {"audiences": [], "expirationSeconds": 600}}),
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"audiences": [1], "expirationSeconds": 600}}),
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"audiences": ["a"]}}),
        json!("string"),
    ] {
        let r = post_token(&ts, Some("bootstrap"), &bad).unwrap();
        assert_eq!(r.status, 400, "{bad}");
        assert_status_object(&r.json(), 400, "BadRequest");
    }
    let r = client::send(
        ts.addr(),
        &ClientRequest::post(&token_request_path("ns", "sa")).header("Authorization", "Bearer bootstrap").body("{not json"),
    )
    .unwrap();
    assert_eq!(r.status, 400);
    // Unknown path / method.
    let r = client::get(ts.addr(), "/api/v1/namespaces").unwrap();
    assert_eq!(r.status, 404);
    assert_status_object(&r.json(), 404, "NotFound");
    let r = client::get(ts.addr(), &token_request_path("ns", "sa")).unwrap();
    assert_eq!(r.status, 405);
    ts.set_required_bearer(None);
    assert_eq!(post_token(&ts, None, &good_body()).unwrap().status, 201);
}

#[test]
fn token_service_behaviors() {
    let ts = TokenService::start();

    ts.set_behavior(Behavior::Issue { lifetime: Duration::from_secs(120) });
    let now = SystemTime::now();
    let v = post_token(&ts, None, &good_body()).unwrap().json();
    let exp = parse_rfc3339(v["status"]["expirationTimestamp"].as_str().unwrap()).unwrap();
    let l = exp.duration_since(now).unwrap();
    assert!(l > Duration::from_secs(118) && l <= Duration::from_secs(121), "{l:?}");

    ts.set_behavior(Behavior::Status { code: 503, reason: "ServiceUnavailable".into(), message: "down".into() });
    let r = post_token(&ts, None, &good_body()).unwrap();
    assert_eq!(r.status, 503);
    assert_status_object(&r.json(), 503, "ServiceUnavailable");
    assert_eq!(r.json()["message"], "down");

    ts.set_behavior(Behavior::Garbage);
    let r = post_token(&ts, None, &good_body()).unwrap();
    assert_eq!((r.status, r.text().as_str()), (201, "{not json"));

    ts.set_behavior(Behavior::NoExpiry);
    let r = post_token(&ts, None, &good_body()).unwrap();
    assert_eq!(r.status, 201);
    let v = r.json();
    assert!(v["status"]["token"].is_string());
    assert!(v["status"].get("expirationTimestamp").is_none(), "{v}");

    ts.set_behavior(Behavior::PastExpiry);
    let v = post_token(&ts, None, &good_body()).unwrap().json();
    let exp = parse_rfc3339(v["status"]["expirationTimestamp"].as_str().unwrap()).unwrap();
    assert!(exp < SystemTime::now() - Duration::from_secs(3500));
    assert!(!ts.is_valid_now(v["status"]["token"].as_str().unwrap()));

    ts.set_behavior(Behavior::CloseConnection);
    let e = post_token(&ts, None, &good_body()).unwrap_err();
    assert!(matches!(e.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset), "{e:?}");

    ts.set_behavior(Behavior::Delay { delay: Duration::from_millis(300), lifetime: Duration::from_secs(60) });
    let t0 = Instant::now();
    let v = post_token(&ts, None, &good_body()).unwrap().json();
    assert!(t0.elapsed() >= Duration::from_millis(300));
    let exp = parse_rfc3339(v["status"]["expirationTimestamp"].as_str().unwrap()).unwrap();
    assert!(exp.duration_since(SystemTime::now()).unwrap() <= Duration::from_secs(60));

    // Hang: no answer until the behaviour changes, then the new behaviour answers.
    ts.set_behavior(Behavior::Hang);
    let addr = ts.addr();
    let waiter = std::thread::spawn(move || {
        let r = client::send(
            addr,
            &ClientRequest::post(&token_request_path("a", "b")).body(good_body().to_string()).timeout(Duration::from_secs(10)),
        );
        (r, Instant::now())
    });
    std::thread::sleep(Duration::from_millis(400));
    assert!(!waiter.is_finished());
    // The answer must come after the change, not at the time the thread happened to run.
    let released_at = Instant::now();
    ts.set_behavior(Behavior::default());
    let (r, answered_at) = waiter.join().unwrap();
    assert_eq!(r.unwrap().status, 201);
    assert!(answered_at >= released_at);

    // Hang with a client timeout: the client gives up.
    ts.set_behavior(Behavior::Hang);
    let e = client::send(addr, &ClientRequest::post(&token_request_path("a", "b")).body(good_body().to_string()).timeout(Duration::from_millis(300)))
        .unwrap_err();
    assert!(matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut), "{e:?}");
    // A hanging request does not keep the service from stopping.
    let waiter = std::thread::spawn(move || {
        client::send(addr, &ClientRequest::post(&token_request_path("a", "b")).body(good_body().to_string()).timeout(Duration::from_secs(20)))
    });
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    drop(ts);
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert!(waiter.join().unwrap().is_err());
}

#[test]
fn token_service_fail_every_nth() {
    let ts = TokenService::start();
    ts.set_fail_every_nth(Some(3));
    let codes: Vec<u16> = (0..7).map(|_| post_token(&ts, None, &good_body()).unwrap().status).collect();
    assert_eq!(codes, vec![201, 201, 500, 201, 201, 500, 201]);
    let r = {
        post_token(&ts, None, &good_body()).unwrap();
        post_token(&ts, None, &good_body()).unwrap()
    };
    assert_eq!(r.status, 500);
    assert_status_object(&r.json(), 500, "InternalError");
    ts.set_fail_every_nth(None);
    assert!((0..4).all(|_| post_token(&ts, None, &good_body()).unwrap().status == 201));
    assert_eq!(ts.issued().len(), 6 + 4);
}

fn oauth(ts: &TokenService, basic: Option<(&str, &str)>, form: &str) -> harness::Response {
    let mut req = ClientRequest::post("/oauth2/token")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form.to_string());
    if let Some((id, secret)) = basic {
        req = req.header("Authorization", format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))));
    }
    client::send(ts.addr(), &req).unwrap()
}

#[test]
fn oauth2_endpoint() {
    let ts = TokenService::start();
    ts.set_oauth_client("kiali-proxy", "s3cret");
    let r = oauth(&ts, Some(("kiali-proxy", "s3cret")), "grant_type=client_credentials&scope=kiali&audience=kiali");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3600);
    let token = v["access_token"].as_str().unwrap();
    assert!(ts.is_valid_now(token));
    let rec = ts.find_issued(token).unwrap();
    assert_eq!((rec.subject.as_str(), rec.source, rec.audiences.clone()), ("kiali-proxy", TokenSource::OAuth2, vec!["kiali".to_string()]));
    // client_secret_post works too.
    assert_eq!(oauth(&ts, None, "grant_type=client_credentials&client_id=kiali-proxy&client_secret=s3cret").status, 200);

    for (basic, form) in [
        (Some(("kiali-proxy", "wrong")), "grant_type=client_credentials"),
        (None, "grant_type=client_credentials"),
        (Some(("other", "s3cret")), "grant_type=client_credentials"),
    ] {
        let r = oauth(&ts, basic, form);
        assert_eq!(r.status, 401);
        assert_eq!(r.json(), json!({"error": "invalid_client"}));
    }
    let r = oauth(&ts, Some(("kiali-proxy", "s3cret")), "grant_type=password&username=x");
    assert_eq!(r.status, 400);
    assert_eq!(r.json(), json!({"error": "unsupported_grant_type"}));

    ts.set_behavior(Behavior::Issue { lifetime: Duration::from_secs(90) });
    assert_eq!(oauth(&ts, Some(("kiali-proxy", "s3cret")), "grant_type=client_credentials").json()["expires_in"], 90);
    ts.set_behavior(Behavior::Status { code: 429, reason: "slow_down".into(), message: "m".into() });
    let r = oauth(&ts, Some(("kiali-proxy", "s3cret")), "grant_type=client_credentials");
    assert_eq!((r.status, r.json()["error"].clone()), (429, json!("slow_down")));

    // JWT-shaped tokens.
    ts.set_behavior(Behavior::default());
    ts.set_jwt_tokens(true);
    let t = oauth(&ts, Some(("kiali-proxy", "s3cret")), "grant_type=client_credentials").json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let parts: Vec<&str> = t.split('.').collect();
    assert_eq!(parts.len(), 3);
    let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(payload["sub"], "kiali-proxy");
    let exp = payload["exp"].as_u64().unwrap();
    assert_eq!(exp, harness::time::unix_seconds(ts.find_issued(&t).unwrap().expires_at));
    let v = post_token(&ts, None, &good_body()).unwrap().json();
    let k8s_jwt = v["status"]["token"].as_str().unwrap();
    let p: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(k8s_jwt.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(p["sub"], "system:serviceaccount:istio-system:kiali");
    assert_eq!(p["aud"], json!(["kiali", "https://kubernetes.default.svc"]));
}

// ---------------------------------------------------------------- demo binary

struct Demo {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Demo {
    fn start(extra: &[&str]) -> (Demo, EnvoyConfig, u16, tempfile::TempDir) {
        let up_port = ports::free_port();
        let tok_port = ports::free_port();
        let up: SocketAddr = format!("127.0.0.1:{up_port}").parse().unwrap();
        let cfg = EnvoyConfig::proxy(up);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("envoy.yaml");
        std::fs::write(&path, cfg.render()).unwrap();
        let demo = Demo::spawn(&path, [up_port, tok_port, cfg.listener_port], extra);
        (demo, cfg, tok_port, dir)
    }

    /// Runs the demo on `config` with `[upstream, token service, listener]` ports.
    fn spawn(config: &std::path::Path, [up_port, tok_port, listener_port]: [u16; 3], extra: &[&str]) -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_demo"))
            .arg("--envoy-config")
            .arg(config)
            .arg("--envoy-log")
            .arg(config.with_file_name("envoy.log"))
            .args(["--upstream-port", &up_port.to_string()])
            .args(["--token-port", &tok_port.to_string()])
            .args(["--listener-port", &listener_port.to_string()])
            .args(["--concurrency", "1", "--required-bearer", "demo-bootstrap-token"])
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

    /// The next line that starts with `prefix`, within 10 s.
    fn next_line_starting(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("the demo printed no line starting with {prefix:?}");
    }

    /// Reads lines until the ready banner; returns (all lines, envoy pid).
    fn wait_ready(&self) -> (Vec<String>, u32) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut lines = Vec::new();
        let mut pid = None;
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => {
                    if let Some(p) = l.strip_prefix("envoy pid: ") {
                        pid = p.trim().parse().ok();
                    }
                    let done = l.contains("Press Ctrl-C");
                    lines.push(l);
                    if done {
                        return (lines, pid.expect("pid line"));
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(_) => break,
            }
        }
        panic!("demo not ready: {lines:?}");
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
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

#[test]
fn demo_starts_serves_and_stops_on_sigterm() {
    let (mut demo, cfg, tok_port, _dir) = Demo::start(&["--curl-header", "X-Forwarded-User: alice"]);
    let (lines, envoy_pid) = demo.wait_ready();
    assert!(pid_alive(envoy_pid));
    let text = lines.join("\n");
    assert!(text.contains("Impersonate-User: system:admin"), "{text}");
    assert!(text.contains("X-Forwarded-User: alice"), "{text}");
    assert!(text.contains(&format!("http://127.0.0.1:{}", cfg.listener_port)), "{text}");
    // Through Envoy to the Kiali stand-in.
    let listener: SocketAddr = format!("127.0.0.1:{}", cfg.listener_port).parse().unwrap();
    let r = client::send(listener, &ClientRequest::get("/kiali/api").header("X-Raw", NON_UTF8)).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["path"], "/kiali/api");
    // The token stand-in requires the bootstrap bearer.
    let tok: SocketAddr = format!("127.0.0.1:{tok_port}").parse().unwrap();
    let t = ClientRequest::post(&token_request_path("istio-system", "kiali")).body(good_body().to_string());
    assert_eq!(client::send(tok, &t).unwrap().status, 401);
    assert_eq!(client::send(tok, &t.header("Authorization", "Bearer demo-bootstrap-token")).unwrap().status, 201);

    // SAFETY: signalling our own child.
    unsafe { libc::kill(demo.child.id() as libc::pid_t, libc::SIGTERM) };
    let status = demo.wait_exit(Duration::from_secs(10)).expect("demo exits on SIGTERM");
    assert!(status.success(), "{status}");
    assert!(wait_dead(envoy_pid, Duration::from_secs(5)), "envoy {envoy_pid} survived the demo");
    assert!(client::get(listener, "/").is_err());
}

#[test]
fn demo_killed_hard_takes_envoy_down() {
    let (mut demo, _cfg, _tok, _dir) = Demo::start(&[]);
    let (_lines, envoy_pid) = demo.wait_ready();
    assert!(pid_alive(envoy_pid));
    demo.child.kill().unwrap(); // SIGKILL: no cleanup code runs in the demo
    demo.child.wait().unwrap();
    assert!(wait_dead(envoy_pid, Duration::from_secs(10)), "envoy {envoy_pid} outlived a SIGKILLed demo");
}

#[test]
fn demo_exits_when_envoy_exits() {
    let (mut demo, cfg, _tok, _dir) = Demo::start(&[]);
    let (_lines, envoy_pid) = demo.wait_ready();
    // The demo found the admin port in the YAML.
    let admin: SocketAddr = format!("127.0.0.1:{}", cfg.admin_port).parse().unwrap();
    let r = client::send(admin, &ClientRequest::post("/quitquitquit")).unwrap();
    assert_eq!(r.status, 200);
    let status = demo.wait_exit(Duration::from_secs(10)).expect("demo exits when envoy exits");
    assert_eq!(status.code(), Some(0));
    assert!(wait_dead(envoy_pid, Duration::from_secs(5)));
}

/// `make run` as a newcomer sees it: the repository's envoy.yaml (on free ports), Envoy's log in
/// a file, and one line per request that reached Kiali, per issued token, per refusal.
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
    let demo = Demo::spawn(&config, ports, &["--curl-header", "X-Forwarded-User: alice"]);
    let (banner, _) = demo.wait_ready();
    let log = config.with_file_name("envoy.log");
    assert!(banner.iter().any(|l| l.contains(&log.display().to_string())), "{banner:?}");
    assert!(!banner.iter().any(|l| l.starts_with('[')), "Envoy's log reached the terminal: {banner:?}");

    let listener: SocketAddr = format!("127.0.0.1:{}", ports[2]).parse().unwrap();
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
}

#[test]
fn demo_rejects_bad_arguments() {
    let out = Command::new(env!("CARGO_BIN_EXE_demo")).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage"));
    let out = Command::new(env!("CARGO_BIN_EXE_demo")).args(["--envoy-config", "/nonexistent.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_demo")).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--envoy-config"));
}

#[test]
fn handles_are_send_and_sync() {
    // So tests can share one instance through a `static OnceLock<...>`.
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Envoy>();
    assert_send_sync::<EchoUpstream>();
    assert_send_sync::<TokenService>();
    assert_send_sync::<EnvoyConfig>();
}
