//! A real Kubernetes client through the filter: `kubectl --as/--as-group` sends impersonation
//! headers, exactly what a client must never get through.

use crate::common;

use std::process::Command;

use common::*;

fn kubectl(envoy: &harness::Envoy, extra: &[&str]) -> std::process::Output {
    let server = format!("http://{}", envoy.addr());
    let kubeconfig = std::env::temp_dir().join(format!("kha-no-kubeconfig-{}", std::process::id()));
    Command::new("kubectl")
        .env("KUBECONFIG", &kubeconfig)
        .args(["--server", &server, "--request-timeout", "10s"])
        .args(["--as", "system:admin", "--as-group", "system:masters", "--as-group", "cluster-admins"])
        .args(extra)
        .output()
        .expect("kubectl (make test installs Debian's kubernetes-client where it is missing)")
}

#[test]
fn kubectl_impersonation_is_stripped_in_strip_only_mode() {
    let (upstream, envoy) = envoy_with("", 1);
    let output = kubectl(&envoy, &["get", "--raw", "/api/v1/namespaces"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // kubectl may send more than one request (discovery); every one carried three
    // impersonation headers and none reached the upstream.
    let seen = upstream.last().expect("the upstream got kubectl's request");
    assert!(seen.path.starts_with("/api/v1/namespaces"), "{}", seen.path);
    assert!(text_values(&seen, "user-agent")[0].starts_with("kubectl/"));
    assert!(impersonation_headers(&seen).is_empty(), "{:?}", impersonation_headers(&seen));
    let requests = upstream.count() as u64;
    assert!(upstream.requests().iter().all(|r| impersonation_headers(r).is_empty()));
    assert_eq!(
        wait_stat(&envoy, "impersonation_headers_stripped_total", 3 * requests),
        3 * requests
    );
}

#[test]
fn kubectl_without_a_trusted_identity_is_refused() {
    let (upstream, envoy) = envoy_with(r#"{"identity":{"preset":"oauth2-proxy"}}"#, 1);
    let output = kubectl(&envoy, &["get", "--raw", "/api/v1/namespaces"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("provide credentials") || stderr.contains("Unauthorized"), "{stderr}");
    assert_eq!(upstream.count(), 0);
    assert!(wait_stat(&envoy, "refused.identity_missing", 1) >= 1);
}
