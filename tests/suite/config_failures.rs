//! A configuration that fails validation never leaves Kiali unprotected: at start Envoy refuses to
//! run, and on a live reload the update is rejected while the last good configuration keeps
//! serving. Either way the log names the field.

use crate::common;

use std::time::Duration;

use common::*;
use harness::envoy::Launch;
use harness::{ClientRequest, EchoUpstream, Envoy, EnvoyConfig};

const GOOD: &str = r#"{"identity":{"preset":"oauth2-proxy"}}"#;
const BAD: &str = r#"{"identity":{"preset":"oauth2-proxy","max_groups":0}}"#;
const FIELD_ERROR: &str =
    "invalid plugin configuration: field `identity.max_groups`: must be between 1 and 1000 (got 0)";

#[test]
fn invalid_configuration_at_start_keeps_envoy_from_serving() {
    let upstream = EchoUpstream::start();
    let config = EnvoyConfig::proxy(upstream.addr()).filter(wasm_filter(BAD));
    let error = match Envoy::try_start(&config) {
        Ok(envoy) => panic!("Envoy started with an invalid plugin configuration:\n{}", envoy.log()),
        Err(error) => error,
    };
    assert!(error.contains(FIELD_ERROR), "the log names the field:\n{error}");
    assert!(error.contains("failed to load"), "{error}");
    assert_eq!(upstream.count(), 0);
}

#[test]
fn a_missing_credential_variable_is_a_configuration_error() {
    let upstream = EchoUpstream::start();
    let plugin = r#"{"identity":{"preset":"oauth2-proxy"},"token_source":{"type":"kubernetes_token_request",
        "cluster":"upstream","namespace":"a","service_account":"b","credential_env":"NOT_SET_ANYWHERE"}}"#;
    let config = EnvoyConfig::proxy(upstream.addr()).filter(wasm_filter(plugin));
    let error = Envoy::try_start(&config).err().expect("must not start");
    assert!(
        error.contains("field `token_source.credential_env`: environment variable NOT_SET_ANYWHERE is not set"),
        "{error}"
    );
}

/// Moves the rendered listener into a file-based LDS resource so it can be replaced live.
fn dynamic_listener_bootstrap(dir: &std::path::Path, config: &EnvoyConfig) -> (String, std::path::PathBuf) {
    let mut bootstrap: serde_yaml::Value = serde_yaml::from_str(&config.render()).unwrap();
    let listeners = bootstrap["static_resources"]
        .as_mapping_mut()
        .unwrap()
        .remove("listeners")
        .expect("listeners");
    let mut listener = listeners[0].clone();
    listener.as_mapping_mut().unwrap().insert(
        "@type".into(),
        "type.googleapis.com/envoy.config.listener.v3.Listener".into(),
    );
    let lds_path = dir.join("lds.yaml");
    let mapping = bootstrap.as_mapping_mut().unwrap();
    mapping.insert(
        "node".into(),
        serde_yaml::from_str("{id: kha-test, cluster: kha-test}").unwrap(),
    );
    mapping.insert(
        "dynamic_resources".into(),
        serde_yaml::from_str(&format!(
            "{{lds_config: {{path_config_source: {{path: {}}}}}}}",
            lds_path.display()
        ))
        .unwrap(),
    );
    let listener_yaml = serde_yaml::to_string(&serde_yaml::Value::Sequence(vec![listener])).unwrap();
    std::fs::write(&lds_path, format!("resources:\n{}", indent(&listener_yaml))).unwrap();
    (serde_yaml::to_string(&bootstrap).unwrap(), lds_path)
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

fn replace_atomically(path: &std::path::Path, text: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

#[test]
fn invalid_configuration_on_live_reload_is_rejected_and_the_good_one_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = EchoUpstream::start();
    let config = EnvoyConfig::proxy(upstream.addr()).filter(wasm_filter(GOOD));
    let (bootstrap, lds_path) = dynamic_listener_bootstrap(dir.path(), &config);
    let bootstrap_path = dir.path().join("envoy.yaml");
    std::fs::write(&bootstrap_path, &bootstrap).unwrap();
    let launch = Launch::new(&bootstrap_path, config.listener_port, config.admin_port);
    let envoy = Envoy::spawn(launch).unwrap();
    envoy.wait_ready(Duration::from_secs(30), None).unwrap();
    let alice = ClientRequest::get("/").header("X-Forwarded-User", "alice").header("Impersonate-User", "admin");
    assert!(eventually(Duration::from_secs(10), || {
        harness::client::send(envoy.addr(), &alice).map(|r| r.status == 200).unwrap_or(false)
    }));

    let good_lds = std::fs::read_to_string(&lds_path).unwrap();
    let escaped_good = serde_json::to_string(GOOD).unwrap();
    assert!(good_lds.contains("oauth2-proxy"), "{good_lds}");
    let bad_lds = good_lds.replace(
        r#""preset":"oauth2-proxy"}"#,
        r#""preset":"oauth2-proxy","max_groups":0}"#,
    );
    assert_ne!(bad_lds, good_lds, "the LDS file embeds {escaped_good}");
    replace_atomically(&lds_path, &bad_lds);

    assert_eq!(
        envoy.wait_for_stat("listener_manager.lds.update_rejected", 1, Duration::from_secs(10)),
        Some(1),
        "{}",
        envoy.log()
    );
    assert!(envoy.wait_for_log(FIELD_ERROR, Duration::from_secs(5)), "{}", envoy.log());
    assert_eq!(stat(&envoy, "config_rejected_total"), 1);

    // The listener still runs the last good configuration: identity mapped, spoofing dropped.
    upstream.clear();
    let response = harness::client::send(envoy.addr(), &alice).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(
        impersonation_headers(&upstream.last().unwrap()),
        vec![("impersonate-user".to_string(), "alice".to_string())]
    );
    let refused = harness::client::send(envoy.addr(), &ClientRequest::get("/")).unwrap();
    assert_refused(&refused, 401, "identity_missing");
}

#[test]
fn even_fail_open_never_starts_with_a_rejected_configuration() {
    let upstream = EchoUpstream::start();
    let config = EnvoyConfig::proxy(upstream.addr()).filter(harness::Filter::Wasm {
        plugin_config: BAD.to_string(),
        vm_env: Vec::new(),
        fail_open: true,
    });
    let error = Envoy::try_start(&config).err().expect("must not start");
    assert!(error.contains(FIELD_ERROR), "{error}");
    assert_eq!(upstream.count(), 0);
}

/// Defect 3 of issue 19: a key that Kiali and client-go would re-encode (`acme.com/team` reached
/// the API server as `acme.com%2fteam`) is refused at start, with the reason.
#[test]
fn an_extra_key_kiali_cannot_carry_keeps_envoy_from_serving() {
    let upstream = EchoUpstream::start();
    let plugin = r#"{"identity":{"user_header":"x-user","extra_headers":{"acme.com/team":"x-team"}}}"#;
    let config = EnvoyConfig::proxy(upstream.addr()).filter(wasm_filter(plugin));
    let error = Envoy::try_start(&config).err().expect("must not start");
    assert!(error.contains("field `identity.extra_headers.acme.com/team`"), "{error}");
    assert!(error.contains("cannot reach the API server intact through Kiali"), "{error}");
}
