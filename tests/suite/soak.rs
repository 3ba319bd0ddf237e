//! Soak: concurrent clients for a minute (KHA_SOAK_SECONDS) through Envoy with 2 workers, while
//! the token service issues 3-second tokens and fails every fifth fetch. Every request is
//! accounted for from the upstream's own record. Run with `make soak`: once with the one shared
//! token, once with `token_source.per_identity` (40 identities, each its own token).

use crate::common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use harness::{Behavior, ClientRequest, Connection, TokenService};

const CLIENTS: usize = 8;
use crate::common::tokens::TOKEN_CLUSTER;

#[derive(Default)]
struct ClientTally {
    sent: u64,
    ok: u64,
    refused: HashMap<(u16, String), u64>,
    transport_errors: u64,
    /// request sequence number -> expected impersonated user, for the requests answered 200.
    expected: Vec<(u64, String)>,
}

/// The kinds of request a client sends, in rotation.
fn request_for(client: usize, seq: u64) -> (ClientRequest, Option<String>) {
    let base = ClientRequest::get(&format!("/api/namespaces?seq={seq}"))
        .header("X-Soak-Seq", seq.to_string())
        .header("Impersonate-User", "system:admin")
        .header("IMPERSONATE-GROUP", "system:masters")
        .header("Authorization", "Bearer client-chosen")
        .keep_alive(true);
    match seq % 20 {
        // No identity: 401.
        7 => (base, None),
        // A system group: 403.
        13 => (
            base.header("X-Forwarded-User", "mallory")
                .header("X-Forwarded-Groups", "dev,system:masters"),
            None,
        ),
        _ => {
            let user = format!("user-{client}-{}", seq % 5);
            (
                base.header("X-Forwarded-User", user.as_str())
                    .header("X-Forwarded-Groups", format!("team-{client},all")),
                Some(user),
            )
        }
    }
}

#[test]
#[ignore = "a minute long: run with `make soak`"]
fn soak_with_short_tokens_and_failing_fetches() {
    soak("");
}

#[test]
#[ignore = "a minute long: run with `make soak`"]
fn soak_per_identity_with_short_tokens_and_failing_fetches() {
    soak(r#","per_identity":true"#);
}

fn soak(token_source_extra: &str) {
    let per_identity = !token_source_extra.is_empty();
    let seconds: u64 = std::env::var("KHA_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let tokens = TokenService::start();
    tokens.set_behavior(Behavior::Issue {
        lifetime: Duration::from_secs(3),
    });
    tokens.set_fail_every_nth(Some(5));
    // The token source as users deploy it: Envoy's credential injector adds the bootstrap token.
    let plugin = format!(
        r#"{{"identity":{{"preset":"oauth2-proxy"}},
            "token_source":{{"type":"kubernetes_token_request","cluster":"{TOKEN_CLUSTER}",
              "namespace":"kiali-auth","service_account":"kiali-impersonator","timeout_ms":1000,
              "retry_initial_ms":100,"retry_max_ms":500{token_source_extra}}},
            "max_request_wait_ms":3000}}"#
    );
    let setup = common::tokens::start_injected(&plugin, tokens, 2);
    let (envoy, upstream, tokens) = (&setup.envoy, &setup.upstream, &setup.tokens);
    let addr = envoy.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut tally = ClientTally::default();
                let mut connection = Connection::open(addr).expect("connect");
                let mut seq = (client as u64) << 40;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    let (request, expected_user) = request_for(client, seq);
                    tally.sent += 1;
                    let response = match connection.try_send(&request) {
                        Ok(response) => response,
                        Err(_) => {
                            tally.transport_errors += 1;
                            connection = Connection::open(addr).expect("reconnect");
                            continue;
                        }
                    };
                    if response.status == 200 {
                        tally.ok += 1;
                        tally.expected.push((seq, expected_user.unwrap_or_default()));
                    } else {
                        let reason = response
                            .try_json()
                            .ok()
                            .and_then(|body| body["reason"].as_str().map(str::to_string))
                            .unwrap_or_default();
                        *tally.refused.entry((response.status, reason)).or_default() += 1;
                    }
                }
                tally
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let tallies: Vec<ClientTally> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let elapsed = started.elapsed();

    let sent: u64 = tallies.iter().map(|t| t.sent).sum();
    let ok: u64 = tallies.iter().map(|t| t.ok).sum();
    let transport_errors: u64 = tallies.iter().map(|t| t.transport_errors).sum();
    let mut refused: HashMap<(u16, String), u64> = HashMap::new();
    for tally in &tallies {
        for (key, count) in &tally.refused {
            *refused.entry(key.clone()).or_default() += count;
        }
    }
    let refused_total: u64 = refused.values().sum();
    let mut expected: HashMap<u64, String> = HashMap::new();
    for tally in &tallies {
        expected.extend(tally.expected.iter().cloned());
    }

    // The upstream's own record.
    let forwarded = upstream.requests();
    let issued = tokens.issued();
    let mut checked = 0u64;
    let mut users_of_bearer: HashMap<String, std::collections::BTreeSet<String>> = HashMap::new();
    for request in &forwarded {
        let seq: u64 = String::from_utf8_lossy(&values(request, "x-soak-seq")[0])
            .parse()
            .expect("sequence header");
        let user = expected
            .get(&seq)
            .unwrap_or_else(|| panic!("the upstream got request {seq} that the client did not see answered 200"));
        let token = bearer_of(request);
        assert!(
            tokens.is_valid_at(&token, request.received_at),
            "request {seq} carried an expired or unknown token"
        );
        let impersonation = impersonation_headers(request);
        assert_eq!(impersonation[0], ("impersonate-user".to_string(), user.clone()));
        assert!(
            impersonation.iter().all(|(_, value)| !value.starts_with("system:")),
            "a client-supplied impersonation header arrived: {impersonation:?}"
        );
        assert_eq!(impersonation.len(), 3, "user and two groups: {impersonation:?}");
        users_of_bearer.entry(token).or_default().insert(user.clone());
        checked += 1;
    }

    let fetches = tokens.count();
    let failed_fetches = tokens.requests().len() - issued.len();
    println!(
        "soak{}: {elapsed:?}, {CLIENTS} keep-alive clients, Envoy with 2 workers",
        if per_identity { " (per_identity)" } else { "" }
    );
    println!("  requests sent            {sent}");
    println!("  forwarded (upstream saw) {}", forwarded.len());
    println!("  answered 200             {ok}");
    println!("  refused                  {refused_total} {refused:?}");
    println!("  transport errors         {transport_errors}");
    println!("  token fetches            {fetches} ({} issued, {failed_fetches} failed on purpose)", issued.len());
    println!("  distinct bearers used    {}", users_of_bearer.len());
    println!("  paused / resumed         {} / {}", stat(envoy, "requests_paused_total"), stat(envoy, "requests_resumed_total"));

    assert_eq!(transport_errors, 0, "no request lost on the wire");
    assert_eq!(sent, ok + refused_total, "every request got an answer");
    assert_eq!(forwarded.len() as u64, ok, "every 200 was forwarded exactly once");
    assert_eq!(checked, ok);
    let allowed_refusals = ["identity_missing", "identity_forbidden", "token_unavailable"];
    assert!(refused.keys().all(|(_, reason)| allowed_refusals.contains(&reason.as_str())), "{refused:?}");
    assert!(issued.len() as u64 >= seconds / 3, "tokens were refreshed: {}", issued.len());
    assert!(failed_fetches >= 1, "the token service failed some fetches on purpose");
    assert!(!envoy.log().contains("panicked"));
    if per_identity {
        for (bearer, users) in &users_of_bearer {
            assert_eq!(users.len(), 1, "one bearer served several identities: {users:?} ({} chars)", bearer.len());
        }
        let identities: std::collections::BTreeSet<&String> = users_of_bearer.values().flatten().collect();
        assert_eq!(identities.len(), CLIENTS * 5, "every identity was served");
        assert!(stat(envoy, "identities_cached") <= (CLIENTS * 5) as u64);
    }
}
