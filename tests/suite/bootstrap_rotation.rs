//! The bootstrap credential rotates without a restart: Envoy's upstream credential injector reads
//! the token file (an SDS generic secret with a watched directory) and puts it on the filter's
//! TokenRequest callout, which carries no credential of its own. The test replaces the file the
//! way the kubelet does (new file, rename) while requests flow and 3-second tokens refresh. As
//! with a real API server, the token stand-in accepts each bootstrap token until its own expiry:
//! the token the kubelet replaced is not revoked (harness/src/bootstrap_token.rs).

use crate::common;
use crate::models::{istio_cluster, kiali_installers};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};


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

/// Which of `credentials` (bootstrap tokens, oldest first) each fetch carried, in order.
fn rotations_carried(fetches: &[harness::RawRequest], credentials: &[String]) -> Vec<usize> {
    fetches
        .iter()
        .map(|fetch| {
            let carried = bearer(fetch).unwrap_or_else(|| panic!("a fetch without the injected credential"));
            credentials
                .iter()
                .position(|c| *c == carried)
                .unwrap_or_else(|| panic!("a fetch carried a credential that was never written"))
        })
        .collect()
}

/// One rotation: the new token, and the times just before and just after it was written.
struct Rotation {
    token: String,
    before: SystemTime,
    after: SystemTime,
}

/// Rotates the bootstrap token as the kubelet does (the API server knows the new token before it
/// is written to the file; the old one stays valid until it expires) and waits until a fetch
/// carries the new one.
fn rotate_and_wait_for_a_fetch_with_it(bootstrap: &mut BootstrapToken, tokens: &TokenService) -> Rotation {
    let before = SystemTime::now();
    let token = bootstrap.rotate_for(tokens).unwrap();
    // Taken once the file is replaced and the stand-in accepts the new token. A fetch after it
    // may still carry the old token until Envoy's watch fires; the API server accepts that one
    // until its own expiry.
    let after = SystemTime::now();
    assert!(
        eventually(Duration::from_secs(15), || fetches_since(tokens, after)
            .iter()
            .any(|f| bearer(f).as_deref() == Some(token.as_str()))),
        "a fetch carries the new token"
    );
    Rotation { token, before, after }
}

/// Checks what each fetch carried against the rotations (`carried[i]`: the index in
/// `[initial, rotations...]` of the token fetch `i` carried): never a token before it was written,
/// never more than one rotation behind once the file was replaced, never back to an older token.
fn assert_fetches_follow(fetches: &[harness::RawRequest], carried: &[usize], rotations: &[Rotation]) {
    for (fetch, rotation) in fetches.iter().zip(carried) {
        let written = rotations.iter().filter(|r| fetch.received_at >= r.after).count();
        let started = rotations.iter().filter(|r| fetch.received_at >= r.before).count();
        assert!(*rotation <= started, "a fetch carried the token of rotation {rotation} before it was written");
        assert!(*rotation + 1 >= written, "a fetch after rotation {written} carried the token of rotation {rotation}");
    }
    assert!(carried.windows(2).all(|w| w[0] <= w[1]), "never back to an older token: {carried:?}");
}

#[test]
fn rotating_the_bootstrap_token_file_reaches_every_later_fetch_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut bootstrap = BootstrapToken::create(dir.path()).unwrap();
    let tokens = TokenService::start();
    bootstrap.accepted_by(&tokens);
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
    let mut rotations = Vec::new();
    for _ in 0..2 {
        let rotation = rotate_and_wait_for_a_fetch_with_it(&mut bootstrap, &tokens);
        let after = rotation.after;
        credentials.push(rotation.token.clone());
        rotations.push(rotation);
        assert!(
            eventually(Duration::from_secs(15), || fetches_since(&tokens, after).len() >= 2),
            "tokens keep refreshing after the rotation"
        );
    }
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }

    // Every fetch carried a bootstrap token the injector read from the file (the filter sends
    // none): the one current when it arrived, or, just after a rotation, the one before it, still
    // valid. Once a fetch carried a rotation's token, no later fetch went back to an older one.
    let fetches = fetches_since(&tokens, start);
    let carried = rotations_carried(&fetches, &credentials);
    assert_fetches_follow(&fetches, &carried, &rotations);
    for (fetch, rotation) in fetches.iter().zip(&carried) {
        assert!(tokens.accepts_bearer(&credentials[*rotation], fetch.received_at), "still valid when it arrived");
    }
    assert_eq!(carried.last(), Some(&2), "the last rotation reached the fetches: {carried:?}");
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
/// The `kubernetes` Service in `default`: its only port, 443, is named `https`.
const API_HOST: &str = "kubernetes.default.svc.cluster.local";

fn yaml_documents(relative: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(harness::paths::repo_root().join(relative)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let value = <serde_yaml::Value as serde::Deserialize>::deserialize(doc).unwrap();
            serde_json::to_value(value).unwrap()
        })
        .filter(|doc| !doc.is_null())
        .collect()
}

/// Every EnvoyFilter the repository ships (any YAML file under deploy/), with the pod's paths
/// moved to `local`.
fn shipped_envoy_filters(local: &dyn Fn(&str) -> String) -> Vec<serde_json::Value> {
    let root = harness::paths::repo_root();
    let filters: Vec<serde_json::Value> = harness::paths::repository_files()
        .into_iter()
        .filter(|p| p.starts_with(root.join("deploy")) && p.extension().is_some_and(|e| e == "yaml"))
        .flat_map(|p| yaml_documents(&p.strip_prefix(&root).unwrap().to_string_lossy()))
        .filter(|doc| doc["kind"] == "EnvoyFilter")
        .map(|doc| serde_json::from_str(&local(&doc.to_string())).unwrap())
        .collect();
    assert!(!filters.is_empty(), "deploy/ ships the credential injector EnvoyFilter");
    filters
}

/// Istio's cluster for the API server on Kiali's sidecar (the TLS settings of
/// deploy/04-kubernetes-api-destinationrule.yaml), with every shipped CLUSTER patch that applies
/// to Kiali's pod merged in as istiod merges it.
fn istio_token_cluster(filters: &[serde_json::Value]) -> serde_json::Value {
    let rule = yaml_documents("deploy/04-kubernetes-api-destinationrule.yaml")
        .into_iter()
        .find(|d| d["kind"] == "DestinationRule")
        .expect("the DestinationRule");
    assert_eq!(rule["spec"]["host"], API_HOST);
    let tls = istio_cluster::ClientTls::from_destination_rule(&rule);
    let mut cluster =
        istio_cluster::outbound_tls_cluster(API_HOST, 443, "https", ("kubernetes", "default"), &tls);
    assert_eq!(cluster["name"], TOKEN_CLUSTER);
    assert!(
        cluster.get("typed_extension_protocol_options").is_none(),
        "Istio gives a TLS port's cluster no HttpProtocolOptions"
    );
    for installer in kiali_installers::INSTALLERS {
        let mut merged = cluster.clone();
        let labels = installer.pod_labels(kiali_installers::DEFAULT_INSTANCE);
        let applied = istio_cluster::apply_envoy_filters(&mut merged, filters, &labels);
        assert_eq!(applied, 1, "{}: one credential injector on Kiali's token cluster", installer.name());
        if installer == kiali_installers::Installer::Operator {
            cluster = merged;
        }
    }
    cluster
}

/// A self-signed CA and a server certificate for `kubernetes.default.svc` (what the API server
/// presents to in-cluster clients), made with openssl: (ca.crt, server.crt, server.key).
fn api_server_certificates(dir: &std::path::Path) -> (String, String, String) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"];
    run(&[&["req", "-x509"][..], &ec, &["-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=kubernetes-ca"]].concat());
    run(&[&["req", "-x509", "-CA", "ca.crt", "-CAkey", "ca.key"][..], &ec, &[
        "-keyout", "server.key", "-out", "server.crt", "-subj", "/CN=kube-apiserver",
        "-addext", "subjectAltName=DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local",
    ]].concat());
    let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
    (file("ca.crt"), file("server.crt"), file("server.key"))
}

fn write_bootstrap(dir: &std::path::Path, bootstrap: &serde_json::Value) -> std::path::PathBuf {
    let path = dir.join("envoy.yaml");
    std::fs::write(&path, serde_json::to_string_pretty(bootstrap).unwrap()).unwrap();
    path
}

/// Validation alone, the cluster and its CA secret in an otherwise empty bootstrap.
fn validate_cluster(dir: &std::path::Path, cluster: serde_json::Value, secret: serde_json::Value) -> Result<(), String> {
    let bootstrap = serde_json::json!({
        "node": { "id": "sidecar~10.0.0.1~kiali.istio-system~istio-system.svc.cluster.local", "cluster": "kiali.istio-system" },
        "static_resources": { "clusters": [cluster], "secrets": [secret] },
    });
    harness::envoy::validate(&write_bootstrap(dir, &bootstrap))
}

/// Issue 20, breaker 1: Istio's cluster for the API server (a TLS port) has no
/// HttpProtocolOptions, and MERGE replaces the map entry whole, so the patch must carry
/// `explicit_http_config` or Envoy rejects the cluster. The negative control merges the patch as
/// shipped before the fix (no explicit_http_config) and sees Envoy refuse it.
#[test]
fn every_shipped_cluster_patch_merged_into_istios_tls_cluster_passes_envoy_validation() {
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = BootstrapToken::create(dir.path()).unwrap();
    let local = |text: &str| text.replace(ISTIO_BOOTSTRAP_DIR, &bootstrap.dir().to_string_lossy());
    let ca = harness::paths::repo_root().join("tests/fixtures/test-ca.crt").to_string_lossy().into_owned();
    let api: std::net::SocketAddr = "127.0.0.1:6443".parse().unwrap();

    let filters = shipped_envoy_filters(&local);
    let mut cluster = istio_token_cluster(&filters);
    let secret = istio_cluster::runnable(&mut cluster, api, &ca);
    validate_cluster(dir.path(), cluster, secret).unwrap_or_else(|e| panic!("{e}"));

    // The patch as shipped before the fix.
    let mut old = filters.clone();
    for filter in &mut old {
        for patch in filter["spec"]["configPatches"].as_array_mut().unwrap() {
            if let Some(options) = patch["patch"]["value"]["typed_extension_protocol_options"]
                ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
                .as_object_mut()
            {
                options.remove("explicit_http_config");
            }
        }
    }
    let mut cluster = istio_token_cluster(&old);
    let secret = istio_cluster::runnable(&mut cluster, api, &ca);
    let error = validate_cluster(dir.path(), cluster, secret).expect_err("Envoy must refuse it");
    assert!(error.contains("upstream_protocol_options"), "{error}");
}

/// What Istio would run on Kiali's sidecar, without Istio: Istio's TLS cluster for the API server
/// with the shipped EnvoyFilter merged in, the SDS resource from the ConfigMap in deploy/, the
/// pod's paths moved to a temporary directory, and an API server stand-in behind TLS (a second
/// listener of the same Envoy terminating TLS with a certificate for kubernetes.default.svc, in
/// front of the token service). The filter's TokenRequest goes over that cluster: TLS with the
/// DestinationRule's SNI, SAN and CA, and the bootstrap token from the injector, rotated.
#[test]
fn the_istio_envoyfilter_and_configmap_inject_the_rotating_token_in_a_real_envoy() {
    let dir = tempfile::tempdir().unwrap();
    let mut bootstrap = BootstrapToken::create(dir.path()).unwrap();
    let token_dir = bootstrap.dir().to_string_lossy().into_owned();
    let local = move |text: &str| text.replace(ISTIO_BOOTSTRAP_DIR, &token_dir);

    let config_map = yaml_documents("deploy/03-token-requester.yaml")
        .into_iter()
        .find(|doc| doc["kind"] == "ConfigMap" && doc["data"].get("sds.yaml").is_some())
        .expect("the SDS ConfigMap");
    let sds = local(config_map["data"]["sds.yaml"].as_str().unwrap());
    harness::bootstrap_token::replace_file(&bootstrap.sds_file(), sds.as_bytes()).unwrap();

    let tokens = TokenService::start();
    bootstrap.accepted_by(&tokens);
    tokens.set_behavior(Behavior::Issue {
        lifetime: Duration::from_secs(3),
    });
    let upstream = EchoUpstream::start();
    let certificates = tempfile::tempdir().unwrap();
    let (ca, server_cert, server_key) = api_server_certificates(certificates.path());
    let api = std::net::SocketAddr::from(([127, 0, 0, 1], harness::ports::free_port()));

    let mut cluster = istio_token_cluster(&shipped_envoy_filters(&local));
    let secret = istio_cluster::runnable(&mut cluster, api, &ca);
    let config = EnvoyConfig::proxy(upstream.addr()).filter(wasm_filter(CONFIG));
    let mut rendered = config.bootstrap();
    rendered["node"] = serde_json::json!({ "id": "sidecar~127.0.0.1~kiali.istio-system~istio-system.svc.cluster.local", "cluster": "kiali.istio-system" });
    let resources = &mut rendered["static_resources"];
    resources["secrets"] = serde_json::json!([secret]);
    let clusters = resources["clusters"].as_array_mut().unwrap();
    clusters.push(cluster);
    clusters.push(serde_json::json!({
        "name": "api-server-stand-in", "type": "STATIC", "connect_timeout": "2s",
        "load_assignment": { "cluster_name": "api-server-stand-in", "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
            "socket_address": { "address": "127.0.0.1", "port_value": tokens.addr().port() } } } }] }] },
    }));
    resources["listeners"].as_array_mut().unwrap().push(serde_json::json!({
        "name": "api-server-tls",
        "address": { "socket_address": { "address": "127.0.0.1", "port_value": api.port() } },
        "enable_reuse_port": false,
        "filter_chains": [{
            "transport_socket": { "name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "common_tls_context": { "tls_certificates": [{
                    "certificate_chain": { "filename": server_cert },
                    "private_key": { "filename": server_key },
                }] },
            } },
            "filters": [{ "name": "envoy.filters.network.http_connection_manager", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "api_server",
                "route_config": { "virtual_hosts": [{ "name": "api", "domains": ["*"], "routes": [{
                    "match": { "prefix": "/" }, "route": { "cluster": "api-server-stand-in" } }] }] },
                "http_filters": [{ "name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } }],
            } }],
        }],
    }));
    let config_path = write_bootstrap(dir.path(), &rendered);
    harness::envoy::validate(&config_path).unwrap_or_else(|e| panic!("{e}"));
    let launch =
        harness::envoy::Launch::new(&config_path, config.listener_port, config.admin_port);
    let envoy = Envoy::spawn(launch).unwrap();
    envoy.wait_ready(Duration::from_secs(30), None).unwrap();

    let alice = ClientRequest::get("/").header("X-Forwarded-User", "alice");
    assert_eq!(send(&envoy, &alice).status, 200, "{}", envoy.log());
    let first = fetches_since(&tokens, SystemTime::UNIX_EPOCH);
    assert_eq!(bearer(&first[0]).as_deref(), Some(bootstrap.current()));

    let first_token = bootstrap.current().to_string();
    let rotation = rotate_and_wait_for_a_fetch_with_it(&mut bootstrap, &tokens);
    let fetches = fetches_since(&tokens, SystemTime::UNIX_EPOCH);
    let carried = rotations_carried(&fetches, &[first_token, rotation.token.clone()]);
    assert_fetches_follow(&fetches, &carried, &[rotation]);
    assert_eq!(send(&envoy, &alice).status, 200);
    assert_eq!(stat(&envoy, "token_fetch.failure.http_status"), 0);
    let reviews = tokens.reviews().reviews();
    assert!(
        !reviews.is_empty() && reviews.iter().all(|r| r.allowed == Some(true)),
        "{reviews:?}"
    );
    // The fetches went over TLS, checked against the DestinationRule's CA and SAN.
    let stats = envoy.stats();
    let handshakes = stats
        .iter()
        .find(|(name, _)| name.starts_with(&format!("cluster.{TOKEN_CLUSTER}.")) && name.ends_with(".ssl.handshake"))
        .map(|(_, v)| *v)
        .unwrap_or(0);
    assert!(handshakes >= 1, "{:?}", stats.keys().filter(|k| k.contains("ssl")).collect::<Vec<_>>());
}
