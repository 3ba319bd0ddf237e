//! The bootstrap credential rotates without a restart: Envoy's upstream credential injector reads
//! the token file (an SDS generic secret with a watched directory) and puts it on the filter's
//! TokenRequest callout, which carries no credential of its own. The strict token stand-in accepts
//! only the current bootstrap token; the test replaces the file the way the kubelet does (new
//! file, rename) and revokes the old token while requests flow and 3-second tokens refresh.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize as _;

use common::*;
use harness::bootstrap_token::BootstrapToken;
use harness::{Behavior, ClientRequest, EchoUpstream, Envoy, EnvoyConfig, TokenService};

const TOKEN_CLUSTER: &str = "outbound|443||kubernetes.default.svc.cluster.local";

/// No `credential_env`: the cluster's injector supplies the bootstrap credential.
const CONFIG: &str = r#"{"identity":{"preset":"oauth2-proxy"},
    "token_source":{"type":"kubernetes_token_request","cluster":"outbound|443||kubernetes.default.svc.cluster.local",
      "namespace":"kiali-auth","service_account":"kiali-impersonator",
      "timeout_ms":1000,"retry_initial_ms":100,"retry_max_ms":400}}"#;

fn bearer(request: &harness::RawRequest) -> Option<String> {
    let values = text_values(request, "authorization");
    assert!(values.len() <= 1, "at most one Authorization: {values:?}");
    values
        .first()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
}

fn fetches_since(tokens: &TokenService, since: SystemTime) -> Vec<harness::RawRequest> {
    tokens
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/token") && r.received_at >= since)
        .collect()
}

#[test]
fn rotating_the_bootstrap_token_file_reaches_every_later_fetch_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut bootstrap = BootstrapToken::create(dir.path()).unwrap();
    let tokens = TokenService::start();
    tokens.set_required_bearer(Some(bootstrap.current()));
    tokens.set_behavior(Behavior::Issue {
        lifetime: Duration::from_secs(3),
    });
    let upstream = EchoUpstream::start();
    let envoy = Envoy::start(
        &EnvoyConfig::proxy(upstream.addr())
            .concurrency(2)
            .token_cluster(TOKEN_CLUSTER, tokens.addr())
            .bootstrap_credential(TOKEN_CLUSTER, &bootstrap)
            .filter(wasm_filter(CONFIG)),
    );
    let pid = envoy.pid();

    // Traffic for the whole test, from two clients.
    let stop = Arc::new(AtomicBool::new(false));
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..2)
        .map(|i| {
            let (stop, statuses, addr) = (stop.clone(), statuses.clone(), envoy.addr());
            std::thread::spawn(move || {
                let request = ClientRequest::get("/api/namespaces")
                    .header("X-Forwarded-User", format!("user{i}"))
                    .header("X-Forwarded-Groups", "dev");
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    let status = harness::client::send(addr, &request)
                        .map(|r| r.status)
                        .unwrap_or(0);
                    statuses.lock().unwrap().push(status);
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();

    let start = SystemTime::UNIX_EPOCH;
    assert!(
        eventually(Duration::from_secs(15), || fetches_since(&tokens, start)
            .len()
            >= 2),
        "tokens refresh"
    );
    let mut credentials = vec![bootstrap.current().to_string()];
    let mut rotated_at = Vec::new();
    for _ in 0..2 {
        rotated_at.push(SystemTime::now());
        credentials.push(bootstrap.rotate_and_revoke(&tokens).unwrap());
        let since = *rotated_at.last().unwrap();
        assert!(
            eventually(Duration::from_secs(15), || fetches_since(&tokens, since)
                .len()
                >= 2),
            "tokens keep refreshing after the rotation"
        );
    }
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }

    // Every fetch carried the credential current when it arrived: the injector supplied it
    // (the filter sends none), and each rotation reached the very next fetch.
    let fetches = fetches_since(&tokens, start);
    for fetch in &fetches {
        let epoch = rotated_at
            .iter()
            .filter(|at| fetch.received_at >= **at)
            .count();
        assert_eq!(
            bearer(fetch).as_deref(),
            Some(credentials[epoch].as_str()),
            "a fetch after rotation {epoch} carries that rotation's token"
        );
    }
    assert!(fetches.len() >= 6, "{} fetches", fetches.len());
    assert_eq!(
        stat(&envoy, "token_fetch.failure.http_status"),
        0,
        "no fetch was refused"
    );

    // No request was lost; Envoy never restarted.
    let statuses = statuses.lock().unwrap();
    assert!(statuses.len() > 50, "{} requests", statuses.len());
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every request succeeded: {:?}",
        statuses.iter().filter(|s| **s != 200).collect::<Vec<_>>()
    );
    assert_eq!(envoy.pid(), pid);
    assert!(envoy.is_running());
    assert_eq!(envoy.stat("server.hot_restart_epoch").unwrap_or(0), 0);

    // The SelfSubjectAccessReviews kept their own Authorization (the issued token), which the
    // injector leaves alone with `overwrite: false`.
    let issued: Vec<String> = tokens.issued().into_iter().map(|t| t.token).collect();
    let reviews = tokens.reviews().reviews();
    assert!(!reviews.is_empty());
    for review in &reviews {
        let used = review.bearer.as_deref().unwrap_or("");
        assert!(
            issued.iter().any(|t| t == used),
            "review spoke as an issued token, not the bootstrap one"
        );
        assert_eq!(review.allowed, Some(true));
    }
    let kept = envoy
        .stats()
        .into_iter()
        .find(|(name, _)| name.ends_with("credential_injector.already_exists"))
        .map(|(_, value)| value);
    assert!(
        kept.unwrap_or(0) >= reviews.len() as u64,
        "{:?}",
        envoy
            .stats()
            .keys()
            .filter(|k| k.contains("credential"))
            .collect::<Vec<_>>()
    );
    let log = envoy.log();
    for credential in &credentials {
        assert!(
            !log.contains(credential.as_str()),
            "the log never holds the bootstrap token"
        );
    }
}

const ISTIO_BOOTSTRAP_DIR: &str = "/var/run/secrets/kiali-header-auth";

/// Istio's EnvoyFilter MERGE, for the maps this patch touches: keys of `patch` go into `target`,
/// recursively.
fn merge(target: &mut serde_yaml::Value, patch: &serde_yaml::Value) {
    match (target.as_mapping_mut(), patch.as_mapping()) {
        (Some(target), Some(patch)) => {
            for (key, value) in patch {
                match target.get_mut(key) {
                    Some(existing) if existing.is_mapping() && value.is_mapping() => {
                        merge(existing, value)
                    }
                    _ => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// What Istio would run on Kiali's sidecar, without Istio: the EnvoyFilter's patch merged into
/// the token cluster of a plain bootstrap, and the SDS resource from the ConfigMap in deploy/,
/// with the pod's paths moved to a temporary directory.
#[test]
fn the_istio_envoyfilter_and_configmap_inject_the_rotating_token_in_a_real_envoy() {
    let root = harness::paths::repo_root();
    let dir = tempfile::tempdir().unwrap();
    let mut bootstrap = BootstrapToken::create(dir.path()).unwrap();
    let local = |text: &str| text.replace(ISTIO_BOOTSTRAP_DIR, &bootstrap.dir().to_string_lossy());

    let requester = std::fs::read_to_string(root.join("deploy/03-token-requester.yaml")).unwrap();
    let config_map = serde_yaml::Deserializer::from_str(&requester)
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
        .find(|doc| doc["kind"] == "ConfigMap")
        .expect("the SDS ConfigMap");
    let sds = local(config_map["data"]["sds.yaml"].as_str().unwrap());
    harness::bootstrap_token::replace_file(&bootstrap.sds_file(), sds.as_bytes()).unwrap();

    let filter_text =
        std::fs::read_to_string(root.join("deploy/istio/envoyfilter-credential-injector.yaml"))
            .unwrap();
    let filter: serde_yaml::Value = serde_yaml::from_str(&local(&filter_text)).unwrap();
    let patch = &filter["spec"]["configPatches"][0];
    assert_eq!(patch["match"]["cluster"]["name"], TOKEN_CLUSTER);

    let tokens = TokenService::start();
    tokens.set_required_bearer(Some(bootstrap.current()));
    tokens.set_behavior(Behavior::Issue {
        lifetime: Duration::from_secs(3),
    });
    let upstream = EchoUpstream::start();
    let config = EnvoyConfig::proxy(upstream.addr())
        .token_cluster(TOKEN_CLUSTER, tokens.addr())
        .filter(wasm_filter(CONFIG));
    let mut rendered: serde_yaml::Value = serde_yaml::from_str(&config.render()).unwrap();
    rendered.as_mapping_mut().unwrap().insert(
        "node".into(),
        serde_yaml::from_str(r#"{ id: "sidecar", cluster: "kiali" }"#).unwrap(),
    );
    let cluster = rendered["static_resources"]["clusters"]
        .as_sequence_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["name"] == TOKEN_CLUSTER)
        .unwrap();
    merge(cluster, &patch["patch"]["value"]);
    let config_path = dir.path().join("envoy.yaml");
    std::fs::write(&config_path, serde_yaml::to_string(&rendered).unwrap()).unwrap();
    let launch =
        harness::envoy::Launch::new(&config_path, config.listener_port, config.admin_port);
    let envoy = Envoy::spawn(launch).unwrap();
    envoy.wait_ready(Duration::from_secs(30), None).unwrap();

    let alice = ClientRequest::get("/").header("X-Forwarded-User", "alice");
    assert_eq!(send(&envoy, &alice).status, 200, "{}", envoy.log());
    let first = fetches_since(&tokens, SystemTime::UNIX_EPOCH);
    assert_eq!(bearer(&first[0]).as_deref(), Some(bootstrap.current()));

    let rotated_at = SystemTime::now();
    let second = bootstrap.rotate_and_revoke(&tokens).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || !fetches_since(
            &tokens, rotated_at
        )
        .is_empty()),
        "a refresh after the rotation"
    );
    for fetch in fetches_since(&tokens, rotated_at) {
        assert_eq!(bearer(&fetch).as_deref(), Some(second.as_str()));
    }
    assert_eq!(send(&envoy, &alice).status, 200);
    assert_eq!(stat(&envoy, "token_fetch.failure.http_status"), 0);
    let reviews = tokens.reviews().reviews();
    assert!(
        !reviews.is_empty() && reviews.iter().all(|r| r.allowed == Some(true)),
        "{reviews:?}"
    );
}
