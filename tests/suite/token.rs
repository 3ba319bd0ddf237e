//! Job 3 end to end: the ServiceAccount token is fetched once per Envoy process, shared by every
//! worker, refreshed before it expires, injected in place of the client's `Authorization`, and
//! its absence is a 503 `token_unavailable`, never a pass-through.

use crate::common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime};

use common::*;
use harness::{Behavior, ClientRequest, EchoUpstream, Envoy, EnvoyConfig, Filter, TokenService};

const TOKEN_CLUSTER: &str = common::tokens::TOKEN_CLUSTER;

/// The Kubernetes token source as users deploy it: no `credential_env`, Envoy's credential
/// injector supplies the bootstrap credential (see `common::tokens`).
fn k8s_config(extra: &str) -> String {
    format!(
        r#"{{"identity":{{"preset":"oauth2-proxy"}},
            "token_source":{{"type":"kubernetes_token_request","cluster":"{TOKEN_CLUSTER}",
              "namespace":"kiali-auth","service_account":"kiali-impersonator",
              "audiences":["https://kubernetes.default.svc"],"expiration_seconds":600,
              "timeout_ms":500,"retry_initial_ms":100,"retry_max_ms":400}}{extra}}}"#
    )
}

fn start(plugin_config: &str, tokens: TokenService, workers: u32) -> common::tokens::TokenSetup {
    common::tokens::start_injected(plugin_config, tokens, workers)
}

/// A token service answering with `behavior`; `start` makes it accept the bootstrap token only.
fn token_service(behavior: Behavior) -> TokenService {
    let tokens = TokenService::start();
    tokens.set_behavior(behavior);
    tokens
}

fn user(name: &str) -> ClientRequest {
    ClientRequest::get("/api/namespaces")
        .header("X-Forwarded-User", name)
        .header("X-Forwarded-Groups", "dev")
}

#[test]
fn injects_the_issued_token_and_sends_a_proper_token_request() {
    let s = start(&k8s_config(""), token_service(Behavior::default()), 2);
    let request = user("alice")
        .header("Authorization", "Bearer client-chosen-token")
        .header("Authorization", "Bearer second-client-token");
    for _ in 0..10 {
        let response = send(&s.envoy, &request);
        assert_eq!(response.status, 200, "{}", response.text());
    }
    let issued = s.tokens.issued();
    assert_eq!(issued.len(), 1, "one fetch per Envoy process");
    for seen in s.upstream.requests() {
        assert_eq!(bearer_of(&seen), issued[0].token);
        assert_eq!(text_values(&seen, "impersonate-user"), vec!["alice"]);
    }

    let calls = s.tokens.requests();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.method, "POST");
    assert_eq!(
        call.path,
        "/api/v1/namespaces/kiali-auth/serviceaccounts/kiali-impersonator/token"
    );
    assert_eq!(
        text_values(call, "authorization"),
        vec![format!("Bearer {}", s.bootstrap.current())],
        "the injector put the bootstrap token on the filter's TokenRequest"
    );
    assert_eq!(text_values(call, "content-type"), vec!["application/json"]);
    assert_eq!(text_values(call, "host"), vec!["kubernetes.default.svc"]);
    let body: serde_json::Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest",
            "spec":{"audiences":["https://kubernetes.default.svc"],"expirationSeconds":600}})
    );
    assert_eq!(issued[0].subject, "system:serviceaccount:kiali-auth:kiali-impersonator");
    // The token service issues for the requested expirationSeconds (600), as the API server does.
    let lifetime = issued[0].expires_at.duration_since(issued[0].issued_at).unwrap();
    assert!((599..=600).contains(&lifetime.as_secs()), "{lifetime:?}");
    assert_eq!(wait_stat(&s.envoy, "token_fetch.success", 1), 1);
    // Usable until 10 s (the margin's cap) before expiry.
    assert!(
        eventually(Duration::from_secs(3), || (585..=590).contains(&stat(&s.envoy, "token_seconds_to_expiry"))),
        "{}",
        stat(&s.envoy, "token_seconds_to_expiry")
    );
}

/// `token_source.credential_env` (README: "Leave it out"; kept for setups that cannot run the
/// credential injector) still puts the bootstrap bearer on the TokenRequest itself, with no
/// injector on the cluster.
#[test]
fn credential_env_supplies_the_bootstrap_bearer_without_an_injector() {
    const BOOTSTRAP: &str = "bootstrap-bearer-from-the-environment";
    let plugin = k8s_config("").replace(
        r#""timeout_ms":500"#,
        r#""credential_env":"TOKEN_REQUESTER_BEARER","timeout_ms":500"#,
    );
    assert!(plugin.contains("credential_env"));
    let tokens = token_service(Behavior::default());
    tokens.set_required_bearer(Some(BOOTSTRAP));
    let upstream = EchoUpstream::start();
    let config = EnvoyConfig::proxy(upstream.addr())
        .token_cluster(TOKEN_CLUSTER, tokens.addr())
        .filter(Filter::Wasm {
            plugin_config: plugin,
            vm_env: vec![("TOKEN_REQUESTER_BEARER".to_string(), BOOTSTRAP.to_string())],
            fail_open: false,
        });
    assert!(config.bootstrap_credential.is_none(), "no injector");
    let envoy = Envoy::start(&config);
    assert_eq!(send(&envoy, &user("alice").header("Authorization", "Bearer client")).status, 200);
    let calls = tokens.requests();
    assert_eq!(calls.len(), 1);
    assert_eq!(text_values(&calls[0], "authorization"), vec![format!("Bearer {BOOTSTRAP}")]);
    assert_eq!(bearer_of(&upstream.last().unwrap()), tokens.issued()[0].token);
    assert!(!envoy.log().contains(BOOTSTRAP), "the credential never reaches the log");
}

#[test]
fn cold_start_burst_of_200_requests_causes_exactly_one_fetch() {
    let tokens = token_service(Behavior::Delay {
        delay: Duration::from_millis(300),
        lifetime: None,
    });
    let s = start(&k8s_config(""), tokens, 2);
    let addr = s.envoy.addr();
    let barrier = Arc::new(Barrier::new(200));
    let started = Instant::now();
    let workers: Vec<_> = (0..200)
        .map(|index| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let begin = Instant::now();
                let response = harness::client::send(addr, &user(&format!("user{index}")))
                    .expect("request");
                (response.status, begin.elapsed())
            })
        })
        .collect();
    let results: Vec<(u16, Duration)> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let slowest = results.iter().map(|(_, d)| *d).max().unwrap();
    assert!(
        results.iter().all(|(status, _)| *status == 200),
        "statuses: {:?}",
        results.iter().map(|(s, _)| *s).collect::<Vec<_>>()
    );
    assert_eq!(s.tokens.count(), 1, "exactly one token fetch for 200 cold requests");
    let token = s.tokens.issued()[0].token.clone();
    let forwarded = s.upstream.requests();
    assert_eq!(forwarded.len(), 200);
    assert!(forwarded.iter().all(|r| bearer_of(r) == token));
    let paused = wait_stat(&s.envoy, "requests_resumed_total", 1);
    println!(
        "cold start: 200 requests, {} token fetch, {paused} waited for it, slowest {:?} (token service delay 300 ms), burst took {:?}",
        s.tokens.count(),
        slowest,
        started.elapsed()
    );
    assert_eq!(stat(&s.envoy, "requests_paused_total"), stat(&s.envoy, "requests_resumed_total"));
    assert_eq!(stat(&s.envoy, "requests_waiting"), 0);
}

#[test]
fn short_lived_tokens_are_refreshed_before_expiry_while_traffic_flows() {
    let tokens = token_service(Behavior::Issue {
        lifetime: Duration::from_secs(3),
    });
    let s = start(&k8s_config(""), tokens, 2);
    wait_stat(&s.envoy, "token_fetch.success", 1);
    let addr = s.envoy.addr();
    let run_for = Duration::from_secs(8);
    let clients: Vec<_> = (0..4)
        .map(|index| {
            std::thread::spawn(move || {
                let mut connection = harness::Connection::open(addr).unwrap();
                let request = user(&format!("u{index}")).keep_alive(true);
                let begin = Instant::now();
                let mut statuses = Vec::new();
                while begin.elapsed() < run_for {
                    statuses.push(connection.send(&request).status);
                    std::thread::sleep(Duration::from_millis(5));
                }
                statuses
            })
        })
        .collect();
    let statuses: Vec<u16> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
    assert!(statuses.iter().all(|s| *s == 200), "non-200 among {statuses:?}");

    let forwarded = s.upstream.requests();
    assert_eq!(forwarded.len(), statuses.len());
    let mut distinct = std::collections::BTreeSet::new();
    for request in &forwarded {
        let token = bearer_of(request);
        assert!(
            s.tokens.is_valid_at(&token, request.received_at),
            "the upstream received a token that was expired or never issued"
        );
        distinct.insert(token);
    }
    let fetches = s.tokens.count();
    println!(
        "3 s tokens over 8 s: {} requests, {} fetches, {} distinct tokens used, paused {}",
        forwarded.len(),
        fetches,
        distinct.len(),
        stat(&s.envoy, "requests_paused_total")
    );
    assert!(distinct.len() >= 3, "tokens were refreshed: {}", distinct.len());
    assert!((3..=8).contains(&fetches), "one fetch per token lifetime, got {fetches}");
    assert_eq!(stat(&s.envoy, "requests_paused_total"), 0, "no request waited");
}

fn assert_unavailable_then_recovers(fault: Behavior, label: &str) {
    let tokens = token_service(fault);
    let s = start(&k8s_config(r#","max_request_wait_ms":800"#), tokens, 2);
    let begin = Instant::now();
    let response = send(&s.envoy, &user("alice").header("Authorization", "Bearer client"));
    let waited = begin.elapsed();
    assert_refused(&response, 503, "token_unavailable");
    assert_eq!(response.header("retry-after").as_deref(), Some("1"), "{label}");
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_millis(2500),
        "{label}: answered after {waited:?}"
    );
    assert_eq!(s.upstream.count(), 0, "{label}: nothing reached the upstream");

    s.tokens.set_behavior(Behavior::default());
    let recovered = eventually(Duration::from_secs(10), || {
        send(&s.envoy, &user("alice")).status == 200
    });
    assert!(recovered, "{label}: no recovery\n{}", s.envoy.log());
    // A hung callout may be answered late with a valid token too: any issued, unexpired token is right.
    let token = bearer_of(&s.upstream.last().unwrap());
    assert!(s.tokens.is_valid_now(&token), "{label}: the upstream got an unknown or expired token");
    assert!(wait_stat(&s.envoy, "refused.token_unavailable", 1) >= 1);
    println!("{label}: 503 after {waited:?}, recovered without restart");
}

#[test]
fn token_service_closing_connections() {
    assert_unavailable_then_recovers(Behavior::CloseConnection, "connection closed");
}

#[test]
fn token_service_hanging_past_the_timeout() {
    assert_unavailable_then_recovers(Behavior::Hang, "hang");
}

#[test]
fn token_service_answering_garbage() {
    assert_unavailable_then_recovers(Behavior::Garbage, "garbage");
}

#[test]
fn token_service_answering_errors_and_expired_tokens() {
    assert_unavailable_then_recovers(
        Behavior::Status {
            code: 403,
            reason: "Forbidden".into(),
            message: "serviceaccounts \"kiali-impersonator\" is forbidden".into(),
        },
        "403 Status",
    );
    assert_unavailable_then_recovers(Behavior::PastExpiry, "expiry in the past");
}

#[test]
fn token_service_refusing_connections() {
    let port = harness::ports::free_port();
    let upstream = EchoUpstream::start();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = harness::bootstrap_token::BootstrapToken::create(dir.path()).unwrap();
    let plugin = k8s_config(r#","max_request_wait_ms":500"#);
    let config = common::tokens::injected_config(&plugin, addr, &bootstrap, 2, upstream.addr());
    let envoy = Envoy::start(&config);
    assert_refused(&send(&envoy, &user("alice")), 503, "token_unavailable");
    assert!(wait_stat(&envoy, "token_fetch.failure.transport", 1) >= 1);
    let tokens = TokenService::start_at(([127, 0, 0, 1], port)).expect("port still free");
    bootstrap.accepted_by(&tokens);
    assert!(eventually(Duration::from_secs(10), || send(&envoy, &user("a")).status == 200));
    assert_eq!(upstream.count(), 1);
    assert!(envoy.log().contains("failed (transport)"));
}

#[test]
fn a_waiting_request_reset_by_its_client_is_forgotten() {
    let s = start(&k8s_config(""), token_service(Behavior::Hang), 1);
    let raw = user("alice").to_bytes();
    // The client gives up after 300 ms while its request waits for a token.
    let _ = harness::client::send_raw(s.envoy.addr(), &raw, Duration::from_millis(300));
    assert!(eventually(Duration::from_secs(3), || {
        stat(&s.envoy, "requests_paused_total") == 1 && stat(&s.envoy, "requests_waiting") == 0
    }), "{:?}", filter_stats(&s.envoy));
    s.tokens.set_behavior(Behavior::default());
    assert!(eventually(Duration::from_secs(10), || send(&s.envoy, &user("bob")).status == 200));
    let forwarded = s.upstream.requests();
    assert!(forwarded.iter().all(|r| text_values(r, "impersonate-user") == vec!["bob"]));
}

#[test]
fn oauth2_client_credentials_source() {
    let tokens = TokenService::start();
    tokens.set_oauth_client("kiali-impersonator", "s3cret:with/odd chars");
    let upstream = EchoUpstream::start();
    let plugin = r#"{"identity":{"preset":"oauth2-proxy"},"token_source":{"type":"oauth2_client_credentials",
            "cluster":"idp","authority":"idp.example","token_path":"/oauth2/token",
            "client_id":"kiali-impersonator","client_secret_env":"CLIENT_SECRET","scope":"k8s",
            "audience":"kubernetes"}}"#;
    let config = EnvoyConfig::proxy(upstream.addr())
        .concurrency(2)
        .token_cluster("idp", tokens.addr())
        .filter(Filter::Wasm {
            plugin_config: plugin.to_string(),
            vm_env: vec![("CLIENT_SECRET".to_string(), "s3cret:with/odd chars".to_string())],
            fail_open: false,
        });
    let envoy = Envoy::start(&config);
    assert_eq!(send(&envoy, &user("alice")).status, 200);
    let issued = tokens.issued();
    assert_eq!(issued.len(), 1);
    assert_eq!(bearer_of(&upstream.last().unwrap()), issued[0].token);
    assert_eq!(issued[0].audiences, vec!["kubernetes"]);
    let call = &tokens.requests()[0];
    assert_eq!(call.path, "/oauth2/token");
    assert!(text_values(call, "authorization")[0].starts_with("Basic "));
    let form = String::from_utf8(call.body.clone()).unwrap();
    assert!(form.contains("grant_type=client_credentials"), "{form}");
    assert!(form.contains("scope=k8s"), "{form}");
}

#[test]
fn token_service_answering_401_and_500() {
    assert_unavailable_then_recovers(
        Behavior::Status {
            code: 401,
            reason: "Unauthorized".into(),
            message: "Unauthorized".into(),
        },
        "401 Status",
    );
    assert_unavailable_then_recovers(
        Behavior::Status {
            code: 500,
            reason: "InternalError".into(),
            message: "etcdserver: request timed out".into(),
        },
        "500 Status",
    );
}

#[test]
fn tokens_without_expiry_use_the_jwt_claim_or_the_default() {
    let tokens = token_service(Behavior::NoExpiry);
    let s = start(&k8s_config(""), tokens, 1);
    assert_eq!(send(&s.envoy, &user("alice")).status, 200);
    assert!(s.envoy.wait_for_log("expiry from Default", Duration::from_secs(5)), "{}", s.envoy.log());
    assert!(
        eventually(Duration::from_secs(3), || {
            (200..=300).contains(&stat(&s.envoy, "token_seconds_to_expiry"))
        }),
        "5 minute default, minus the margin: {}",
        stat(&s.envoy, "token_seconds_to_expiry")
    );
    drop(s);

    let tokens = token_service(Behavior::NoExpiry);
    tokens.set_jwt_tokens(true);
    let s = start(&k8s_config(""), tokens, 1);
    assert_eq!(send(&s.envoy, &user("alice")).status, 200);
    assert!(s.envoy.wait_for_log("expiry from JwtClaim", Duration::from_secs(5)), "{}", s.envoy.log());
    assert_eq!(bearer_of(&s.upstream.last().unwrap()), s.tokens.issued()[0].token);
}

#[test]
fn logs_never_contain_tokens_or_credentials() {
    let tokens = token_service(Behavior::Issue {
        lifetime: Duration::from_secs(3),
    });
    let s = start(&k8s_config(""), tokens, 2);
    for _ in 0..5 {
        assert_eq!(send(&s.envoy, &user("alice")).status, 200);
        std::thread::sleep(Duration::from_millis(500));
    }
    s.tokens.set_behavior(Behavior::Status {
        code: 403,
        reason: "Forbidden".into(),
        message: "no".into(),
    });
    std::thread::sleep(Duration::from_millis(2500));
    let log = s.envoy.log();
    assert!(log.contains("token fetched"), "{log}");
    assert!(log.contains("failed (http_status)"), "{log}");
    assert!(!log.contains(s.bootstrap.current()), "the bootstrap credential leaked into the log");
    for issued in s.tokens.issued() {
        assert!(!log.contains(&issued.token), "a token leaked into the log");
    }
}

/// When the filter stops using a token (src/token/state.rs): its expiry minus a tenth of its
/// lifetime, at most `USABLE_MARGIN_MAX_MS`. Computed from what the token service issued; the
/// lifetime is counted from the moment it was issued, so this is at or before the filter's own
/// end of use (which counts from the answer's arrival).
fn end_of_use(token: &harness::IssuedToken) -> SystemTime {
    use kiali_header_auth::token::state::{USABLE_MARGIN_FRACTION, USABLE_MARGIN_MAX_MS};
    let lifetime = token.expires_at.duration_since(token.issued_at).unwrap_or_default();
    let margin = Duration::from_millis(
        ((lifetime.as_millis() as f64 * USABLE_MARGIN_FRACTION) as u64).min(USABLE_MARGIN_MAX_MS),
    );
    token.expires_at - margin
}

/// One client request: when it was sent, its status and its refusal reason, if any.
struct Sent {
    at: SystemTime,
    status: u16,
    reason: Option<String>,
    retry_after: Option<String>,
}

/// Issue 22: through Envoy, traffic runs past the token's end of use while every refresh fails.
/// No request reaches the upstream with the token at or past its end of use, and every request
/// sent from then on is answered 503 `token_unavailable`.
#[test]
fn past_the_end_of_use_with_failing_refreshes_no_token_is_forwarded_and_every_request_gets_503() {
    // 4-second tokens (3 to 4 s: the expiry is written to the second): usable until 0.3-0.4 s
    // before expiry, refreshed from about 2 s on.
    let tokens = token_service(Behavior::Issue { lifetime: Duration::from_secs(4) });
    let s = start(&k8s_config(r#","max_request_wait_ms":200"#), tokens, 2);
    wait_stat(&s.envoy, "token_fetch.success", 1);
    assert_eq!(send(&s.envoy, &user("warm-up")).status, 200);
    let issued = s.tokens.issued();
    assert_eq!(issued.len(), 1);
    let token = issued[0].clone();
    // From now on every refresh fails.
    s.tokens.set_behavior(Behavior::Status {
        code: 500,
        reason: "InternalError".into(),
        message: "Internal error occurred: etcdserver: request timed out".into(),
    });
    let fetches_before = s.tokens.count();
    let end = end_of_use(&token);
    let stop_at = end + Duration::from_millis(1500);

    let addr = s.envoy.addr();
    let clients: Vec<_> = (0..3)
        .map(|index| {
            std::thread::spawn(move || {
                let request = user(&format!("u{index}")).header("Authorization", format!("Bearer client-{index}"));
                let mut sent = Vec::new();
                // Bounded: about 6 s of traffic at most.
                for _ in 0..5000 {
                    let at = SystemTime::now();
                    if at >= stop_at {
                        break;
                    }
                    let response = harness::client::send(addr, &request).expect("request through Envoy");
                    let reason = (response.status != 200)
                        .then(|| response.json()["reason"].as_str().map(str::to_string))
                        .flatten();
                    let retry_after = response.header("retry-after");
                    sent.push(Sent { at, status: response.status, reason, retry_after });
                    std::thread::sleep(Duration::from_millis(3));
                }
                sent
            })
        })
        .collect();
    let sent: Vec<Sent> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();

    // The refreshes were tried, and failed, before the token's end of use.
    let failed: Vec<_> = s.tokens.requests().into_iter().skip(fetches_before).collect();
    assert!(
        failed.iter().filter(|r| r.received_at < end).count() >= 2,
        "refreshes were attempted (and failed) before the end of use: {} in all",
        failed.len()
    );
    assert_eq!(s.tokens.issued().len(), 1, "no other token was ever issued");
    assert!(stat(&s.envoy, "token_fetch.failure.http_status") >= 2);

    // What the upstream received: the one token, always before its end of use.
    let forwarded = s.upstream.requests();
    assert!(!forwarded.is_empty());
    for request in &forwarded {
        assert_eq!(bearer_of(request), token.token, "the issued token, never the client's");
        assert!(
            request.received_at < end,
            "a request reached the upstream {:?} after the token's end of use",
            request.received_at.duration_since(end).unwrap_or_default()
        );
    }
    // The test came close to the end of use: requests were forwarded in its last half second.
    let last = forwarded.iter().map(|r| r.received_at).max().unwrap();
    assert!(
        end.duration_since(last).unwrap_or_default() < Duration::from_millis(500),
        "the last forwarded request came {:?} before the end of use",
        end.duration_since(last).unwrap_or_default()
    );

    // Every request sent at or after the end of use was refused with 503 token_unavailable.
    let after: Vec<&Sent> = sent.iter().filter(|r| r.at >= end).collect();
    assert!(after.len() >= 5, "{} requests after the end of use", after.len());
    for request in &after {
        assert_eq!(
            (request.status, request.reason.as_deref()),
            (503, Some("token_unavailable")),
            "a request sent {:?} after the end of use",
            request.at.duration_since(end).unwrap_or_default()
        );
        assert_eq!(request.retry_after.as_deref(), Some("1"));
    }
    let before = sent.iter().filter(|r| r.at < end).count();
    println!(
        "end of use {:?} after issue: {before} requests before it, {} after, {} forwarded, last {:?} before the end, {} failed refreshes",
        end.duration_since(token.issued_at).unwrap_or_default(),
        after.len(),
        forwarded.len(),
        end.duration_since(last).unwrap_or_default(),
        failed.len()
    );
}

/// Issue 22: `max_waiting_requests` bounds the requests that wait for a token on a worker; the
/// ones over it are refused at once. The ones that waited are forwarded with the issued token
/// once it arrives, and the upstream never sees the client's own `Authorization`.
#[test]
fn the_waiting_queue_is_bounded_and_waiting_requests_never_forward_the_clients_authorization() {
    let config = k8s_config(r#","max_waiting_requests":3,"max_request_wait_ms":10000"#);
    let s = common::tokens::start_injected(&config, token_service(Behavior::Hang), 1);
    let addr = s.envoy.addr();
    let waiting: Vec<_> = (0..3)
        .map(|index| {
            std::thread::spawn(move || {
                let request = user(&format!("waiter{index}"))
                    .header("Authorization", format!("Bearer client-secret-{index}"))
                    .timeout(Duration::from_secs(20));
                harness::client::send(addr, &request).expect("an answer")
            })
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(5), || stat(&s.envoy, "requests_waiting") == 3),
        "three requests wait: {:?}",
        filter_stats(&s.envoy)
    );

    // Over the bound: refused at once, not after max_request_wait_ms.
    for index in 0..4 {
        let begin = Instant::now();
        let response = send(
            &s.envoy,
            &user(&format!("late{index}")).header("Authorization", format!("Bearer client-secret-late-{index}")),
        );
        let took = begin.elapsed();
        assert_refused(&response, 503, "token_unavailable");
        assert!(response.text().contains("too many requests are waiting"), "{}", response.text());
        assert!(took < Duration::from_secs(2), "refused after {took:?}");
    }
    assert_eq!(stat(&s.envoy, "requests_waiting"), 3, "the refused requests did not join the queue");
    assert_eq!(s.upstream.count(), 0);

    // The token arrives: the three that waited are forwarded with it.
    s.tokens.set_behavior(Behavior::default());
    for thread in waiting {
        let response = thread.join().unwrap();
        assert_eq!(response.status, 200, "{}", response.text());
    }
    let issued = s.tokens.issued();
    assert_eq!(issued.len(), 1);
    let forwarded = s.upstream.requests();
    assert_eq!(forwarded.len(), 3, "only the requests that waited reached the upstream");
    for request in &forwarded {
        assert_eq!(bearer_of(request), issued[0].token);
        for (name, value) in &request.headers {
            assert!(
                !String::from_utf8_lossy(value).contains("client-secret"),
                "the client's Authorization reached the upstream in {}",
                String::from_utf8_lossy(name)
            );
        }
    }
    let mut users: Vec<String> = forwarded.iter().flat_map(|r| text_values(r, "impersonate-user")).collect();
    users.sort();
    assert_eq!(users, ["waiter0", "waiter1", "waiter2"]);
    // Counters reach Envoy's stats on the filter's next tick.
    assert_eq!(wait_stat(&s.envoy, "requests_resumed_total", 3), 3);
    assert_eq!(wait_stat(&s.envoy, "refused.token_unavailable", 4), 4);
    assert_eq!(stat(&s.envoy, "requests_paused_total"), 3);
}

/// Issue 22: the client's `Authorization` is removed before a request waits, not only replaced
/// when the token comes: a request that waits in vain and is refused leaves the stream with no
/// `Authorization` (what the access log records). Control: a request refused before the token
/// step (no identity) still shows the client's own, so the log line would show a leak.
#[test]
fn the_clients_authorization_is_removed_before_a_request_waits() {
    let config = k8s_config(r#","max_request_wait_ms":300"#);
    let format = "AUTHZ %REQ(X-REQUEST-LABEL)% %RESPONSE_CODE% authorization=[%REQ(AUTHORIZATION)%]\n";
    let s = common::tokens::start_injected_with(&config, token_service(Behavior::Hang), 1, |c| {
        c.access_log_format(format)
    });
    let waited = user("alice")
        .header("X-Request-Label", "waited")
        .header("Authorization", "Bearer client-secret-waited");
    let begin = Instant::now();
    assert_refused(&send(&s.envoy, &waited), 503, "token_unavailable");
    assert!(begin.elapsed() >= Duration::from_millis(250), "it waited: {:?}", begin.elapsed());
    assert_eq!(stat(&s.envoy, "requests_paused_total"), 1, "the request did wait for a token");

    let control = ClientRequest::get("/api/namespaces")
        .header("X-Request-Label", "control")
        .header("Authorization", "Bearer client-secret-control");
    assert_refused(&send(&s.envoy, &control), 401, "identity_missing");

    assert!(s.envoy.wait_for_log("AUTHZ control", Duration::from_secs(5)), "{}", s.envoy.log());
    assert!(s.envoy.wait_for_log("AUTHZ waited", Duration::from_secs(5)), "{}", s.envoy.log());
    let log = s.envoy.log();
    let line = |label: &str| {
        log.lines()
            .find(|l| l.contains(&format!("AUTHZ {label} ")))
            .unwrap_or_else(|| panic!("no access log line for {label}"))
            .to_string()
    };
    assert!(line("control").contains("authorization=[Bearer client-secret-control]"), "{}", line("control"));
    assert!(line("waited").contains("503 authorization=[-]"), "{}", line("waited"));
    assert_eq!(s.upstream.count(), 0);
}

/// The API server answers 404 `NotFound` to a TokenRequest for a ServiceAccount that does not
/// exist (token.go); the filter counts it as an HTTP failure, answers 503 `token_unavailable`, and
/// recovers once the ServiceAccount is created, without a restart.
#[test]
fn a_service_account_that_does_not_exist_is_a_404_and_requests_get_503_until_it_does() {
    let config = k8s_config(r#","max_request_wait_ms":300"#).replace("kiali-impersonator", "not-created-yet");
    let s = start(&config, token_service(Behavior::default()), 1);
    assert_refused(&send(&s.envoy, &user("alice")), 503, "token_unavailable");
    assert!(wait_stat(&s.envoy, "token_fetch.failure.http_status", 1) >= 1);
    assert!(
        s.envoy.wait_for_log(r#"TokenRequest failed with HTTP 404: reason "NotFound""#, Duration::from_secs(5)),
        "{}",
        s.envoy.log()
    );
    assert!(s.envoy.log().contains(r#"serviceaccounts \u{22}not-created-yet\u{22} not found"#), "{}", s.envoy.log());
    assert!(s.tokens.issued().is_empty());
    assert_eq!(s.upstream.count(), 0);

    s.tokens.add_service_account("kiali-auth", "not-created-yet");
    assert!(eventually(Duration::from_secs(10), || send(&s.envoy, &user("alice")).status == 200));
    let issued = s.tokens.issued();
    assert_eq!(issued[0].subject, "system:serviceaccount:kiali-auth:not-created-yet");
    assert_eq!(bearer_of(&s.upstream.last().unwrap()), issued[0].token);
}
