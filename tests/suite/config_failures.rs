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

/// Envoy rejected the first LDS update, with the field-named error, and the filter counted one
/// rejected configuration.
fn assert_first_reload_rejected(envoy: &Envoy) {
    assert_eq!(
        envoy.wait_for_stat("listener_manager.lds.update_rejected", 1, Duration::from_secs(10)),
        Some(1),
        "{}",
        envoy.log()
    );
    assert!(envoy.wait_for_log(FIELD_ERROR, Duration::from_secs(5)), "{}", envoy.log());
    assert_eq!(stat(envoy, "config_rejected_total"), 1);
}

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

    assert_first_reload_rejected(&envoy);

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

// ---------------------------------------------------------------------------------------------
// Several plugin configurations sharing one Wasm VM, as Istio renders one WasmPlugin onto several
// listeners (or filter chains) of a proxy: every filter carries the same `vm_config` (vm_id,
// runtime, code), so Envoy runs them in one VM per worker, each configuration with its own root
// context.

/// The second configuration: another preset, so each listener's answers show which one served.
const OTHER_GOOD: &str = r#"{"identity":{"preset":"authentik"}}"#;
const OTHER_BAD: &str = r#"{"identity":{"preset":"authentik","max_groups":0}}"#;

/// A bootstrap with one listener per `(plugin configuration, fail_open)`, all in front of
/// `upstream`, all with the same `vm_config`; and the listeners' and admin ports.
fn shared_vm_bootstrap(upstream: std::net::SocketAddr, plugins: &[(&str, bool)]) -> (serde_json::Value, Vec<u16>, u16) {
    let configs: Vec<EnvoyConfig> = plugins
        .iter()
        .map(|(plugin, fail_open)| {
            EnvoyConfig::proxy(upstream).filter(harness::Filter::Wasm {
                plugin_config: plugin.to_string(),
                vm_env: Vec::new(),
                fail_open: *fail_open,
            })
        })
        .collect();
    let mut bootstrap = configs[0].bootstrap();
    let listeners: Vec<serde_json::Value> = configs
        .iter()
        .enumerate()
        .map(|(index, config)| {
            let mut listener = config.bootstrap()["static_resources"]["listeners"][0].clone();
            listener["name"] = serde_json::json!(format!("ingress-{index}"));
            listener
        })
        .collect();
    let vm = |l: &serde_json::Value| {
        l.pointer("/filter_chains/0/filters/0/typed_config/http_filters/0/typed_config/config/vm_config").cloned()
    };
    assert!(vm(&listeners[0]).is_some());
    assert!(listeners.iter().all(|l| vm(l) == vm(&listeners[0])), "one vm_config for every listener");
    bootstrap["static_resources"]["listeners"] = serde_json::json!(listeners);
    (bootstrap, configs.iter().map(|c| c.listener_port).collect(), configs[0].admin_port)
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts Envoy on `bootstrap` (first listener's and admin ports); `Err` with the log if it
/// does not become ready.
fn start_bootstrap(dir: &std::path::Path, bootstrap: &str, listener_port: u16, admin_port: u16) -> Result<Envoy, String> {
    let path = write(dir, "envoy.yaml", bootstrap);
    let envoy = Envoy::spawn(Launch::new(&path, listener_port, admin_port))?;
    envoy.wait_ready(Duration::from_secs(30), None).map(|()| envoy)
}

fn port(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

/// What the upstream received as `Impersonate-User` for `request` sent to `listener`.
fn mapped_user(upstream: &EchoUpstream, listener: u16, request: &ClientRequest) -> Option<String> {
    upstream.clear();
    let response = harness::client::send(port(listener), request).unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    text_values(&upstream.last().unwrap(), "impersonate-user").into_iter().next()
}

fn oauth2_proxy_user() -> ClientRequest {
    ClientRequest::get("/").header("X-Forwarded-User", "alice").header("X-Authentik-Username", "mallory")
}

fn authentik_user() -> ClientRequest {
    ClientRequest::get("/").header("X-Forwarded-User", "mallory").header("X-Authentik-Username", "bob")
}

/// The Wasm VMs Envoy runs (`wasm.envoy.wasm.runtime.v8.active`: the base VM and one per
/// worker for each distinct `vm_config`; `created` also counts short-lived ones).
fn vms_active(envoy: &Envoy) -> u64 {
    envoy
        .stat("wasm.envoy.wasm.runtime.v8.active")
        .unwrap_or_else(|| panic!("no VM stat: {:?}", envoy.stats().keys().filter(|k| k.starts_with("wasm")).collect::<Vec<_>>()))
}

#[test]
fn several_configurations_sharing_one_vm_each_serve_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = EchoUpstream::start();
    let (bootstrap, ports, admin) = shared_vm_bootstrap(upstream.addr(), &[(GOOD, false)]);
    let one = start_bootstrap(dir.path(), &serde_json::to_string(&bootstrap).unwrap(), ports[0], admin).unwrap();
    let vms_for_one = vms_active(&one);
    drop(one);

    let (bootstrap, ports, admin) = shared_vm_bootstrap(upstream.addr(), &[(GOOD, false), (OTHER_GOOD, false)]);
    let envoy = start_bootstrap(dir.path(), &serde_json::to_string(&bootstrap).unwrap(), ports[0], admin).unwrap();
    assert_eq!(vms_active(&envoy), vms_for_one, "the second configuration runs in the same VMs");
    assert_eq!(mapped_user(&upstream, ports[0], &oauth2_proxy_user()).as_deref(), Some("alice"));
    assert_eq!(mapped_user(&upstream, ports[1], &authentik_user()).as_deref(), Some("bob"));
    drop(envoy);

    // Control: with another vm_id the second configuration gets VMs of its own, which the stat shows.
    let (mut bootstrap, ports, admin) = shared_vm_bootstrap(upstream.addr(), &[(GOOD, false), (OTHER_GOOD, false)]);
    let vm_id = "/static_resources/listeners/1/filter_chains/0/filters/0/typed_config/http_filters/0/typed_config/config/vm_config/vm_id";
    *bootstrap.pointer_mut(vm_id).unwrap() = serde_json::json!("another-vm");
    let apart = start_bootstrap(dir.path(), &serde_json::to_string(&bootstrap).unwrap(), ports[0], admin).unwrap();
    assert!(vms_active(&apart) > vms_for_one, "{} VMs", vms_active(&apart));
}

/// "Envoy does not start on an invalid configuration, even with FAIL_OPEN", when the invalid
/// configuration shares its VM with a valid one (before or after it).
#[test]
fn an_invalid_configuration_sharing_a_vm_with_a_valid_one_keeps_envoy_from_starting_even_fail_open() {
    for plugins in [[(GOOD, false), (OTHER_BAD, true)], [(OTHER_BAD, true), (GOOD, false)]] {
        let dir = tempfile::tempdir().unwrap();
        let upstream = EchoUpstream::start();
        let (bootstrap, ports, admin) = shared_vm_bootstrap(upstream.addr(), &plugins);
        match start_bootstrap(dir.path(), &serde_json::to_string(&bootstrap).unwrap(), ports[0], admin) {
            Ok(envoy) => panic!("Envoy started with an invalid configuration ({plugins:?}):\n{}", envoy.log()),
            Err(error) => {
                assert!(error.contains(FIELD_ERROR), "the log names the field ({plugins:?}):\n{error}");
            }
        }
        for listener in &ports {
            assert!(harness::client::send(port(*listener), &oauth2_proxy_user()).is_err(), "nothing listens");
        }
        assert_eq!(upstream.count(), 0);
    }
}

/// "A rejected reload keeps the last good configuration", for one of several configurations
/// sharing a VM: the rejected one keeps its last good configuration, the other is untouched, and
/// the VM still takes a good configuration afterwards.
#[test]
fn a_rejected_reload_of_one_configuration_sharing_a_vm_keeps_every_last_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = EchoUpstream::start();
    let (bootstrap, ports, admin) = shared_vm_bootstrap(upstream.addr(), &[(GOOD, false), (OTHER_GOOD, false)]);
    let (bootstrap, lds_path) = listeners_from_lds(dir.path(), bootstrap);
    let envoy = start_bootstrap(dir.path(), &bootstrap, ports[0], admin).unwrap();
    assert!(eventually(Duration::from_secs(10), || harness::client::send(port(ports[1]), &authentik_user()).is_ok()));
    assert_eq!(mapped_user(&upstream, ports[0], &oauth2_proxy_user()).as_deref(), Some("alice"));
    assert_eq!(mapped_user(&upstream, ports[1], &authentik_user()).as_deref(), Some("bob"));

    let good_lds = std::fs::read_to_string(&lds_path).unwrap();
    replace_atomically(&lds_path, &with_plugin_config(&good_lds, 1, OTHER_BAD));
    assert_first_reload_rejected(&envoy);
    assert_eq!(mapped_user(&upstream, ports[0], &oauth2_proxy_user()).as_deref(), Some("alice"), "the other configuration is untouched");
    assert_eq!(mapped_user(&upstream, ports[1], &authentik_user()).as_deref(), Some("bob"), "the last good configuration serves");
    assert_refused(&harness::client::send(port(ports[1]), &ClientRequest::get("/")).unwrap(), 401, "identity_missing");

    // A good configuration for the same listener is taken afterwards.
    let updates = envoy.stat("listener_manager.lds.update_success").unwrap_or(0);
    let static_group = r#"{"identity":{"preset":"authentik","static_groups":["viewers"]}}"#;
    replace_atomically(&lds_path, &with_plugin_config(&good_lds, 1, static_group));
    assert!(envoy.wait_for_stat("listener_manager.lds.update_success", updates + 1, Duration::from_secs(10)).is_some());
    assert!(
        eventually(Duration::from_secs(10), || {
            upstream.clear();
            harness::client::send(port(ports[1]), &authentik_user()).is_ok_and(|r| r.status == 200)
                && upstream.last().is_some_and(|r| text_values(&r, "impersonate-group").contains(&"viewers".to_string()))
        }),
        "the new configuration serves: {}",
        envoy.log()
    );
    assert_eq!(mapped_user(&upstream, ports[0], &oauth2_proxy_user()).as_deref(), Some("alice"));
}

/// The LDS file `lds` with the plugin configuration of listener `index` replaced by `plugin`.
fn with_plugin_config(lds: &str, index: usize, plugin: &str) -> String {
    let mut resources: serde_json::Value = serde_json::from_str(lds).unwrap();
    let pointer = format!("/resources/{index}/filter_chains/0/filters/0/typed_config/http_filters/0/typed_config/config/configuration/value");
    let value = resources.pointer_mut(&pointer).expect("the listener's plugin configuration");
    assert_ne!(value.as_str(), Some(plugin));
    *value = serde_json::json!(plugin);
    serde_json::to_string(&resources).unwrap()
}

/// Moves every listener of `bootstrap` into a file-based LDS resource; returns the bootstrap
/// (YAML) and the LDS file.
fn listeners_from_lds(dir: &std::path::Path, mut bootstrap: serde_json::Value) -> (String, std::path::PathBuf) {
    let listeners = bootstrap["static_resources"].as_object_mut().unwrap().remove("listeners").expect("listeners");
    let resources: Vec<serde_json::Value> = listeners
        .as_array()
        .unwrap()
        .iter()
        .map(|listener| {
            let mut listener = listener.clone();
            listener["@type"] = serde_json::json!("type.googleapis.com/envoy.config.listener.v3.Listener");
            listener
        })
        .collect();
    let lds_path = write(dir, "lds.yaml", &serde_json::to_string(&serde_json::json!({ "resources": resources })).unwrap());
    bootstrap["node"] = serde_json::json!({ "id": "kha-test", "cluster": "kha-test" });
    bootstrap["dynamic_resources"] = serde_json::json!({ "lds_config": { "path_config_source": { "path": lds_path } } });
    (serde_json::to_string(&bootstrap).unwrap(), lds_path)
}
