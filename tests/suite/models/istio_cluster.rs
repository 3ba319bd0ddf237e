//! What Istio really builds, not our reading of it: the outbound cluster istiod sends a sidecar
//! for a TLS Service port with a DestinationRule's `tls.mode: SIMPLE`, and istiod's EnvoyFilter
//! CLUSTER MERGE. Each rule names the istio/istio source file it models (master of 2026-08,
//! commit 86c9f01f; the same code on release-1.29 to 1.31).
//!
//! Two substitutions, so that a plain Envoy can run the result without istiod and pilot-agent;
//! [`runnable`] makes them and nothing else:
//! - the cluster is `type: EDS` fed over ADS; the test gives it the same endpoint statically;
//! - the CA of the DestinationRule is an SDS resource `file-root:<caCertificates>` that pilot-agent
//!   serves from that file (pkg/security/security.go GetRootResourceName); the test serves it as a
//!   static secret of the same name, from a local file.

#![allow(dead_code)]

use std::net::SocketAddr;

use serde_json::{json, Map, Value};

/// The fields of `envoy.config.cluster.v3.Cluster` (and messages inside it) that are protobuf
/// `map<>`s, not messages (envoy/config/cluster/v3/cluster.proto: typed_extension_protocol_options;
/// envoy/config/core/v3/base.proto Metadata: filter_metadata, typed_filter_metadata).
const MAP_FIELDS: &[&str] = &[
    "typed_extension_protocol_options",
    "filter_metadata",
    "typed_filter_metadata",
];

/// Oneofs of Cluster (cluster.proto `cluster_discovery_type`, `lb_config`): setting one member
/// clears the others, as protobuf-go's `Message.Set` does on a oneof field.
const ONEOFS: &[&[&str]] = &[
    &["type", "cluster_type"],
    &[
        "ring_hash_lb_config",
        "maglev_lb_config",
        "original_dst_lb_config",
        "least_request_lb_config",
        "round_robin_lb_config",
    ],
];

/// DestinationRule `trafficPolicy.tls` with `mode: SIMPLE`, the fields Istio reads.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub sni: String,
    pub subject_alt_names: Vec<String>,
    pub ca_certificates: String,
}

impl ClientTls {
    /// From a DestinationRule document (any other mode is not modelled: panics).
    pub fn from_destination_rule(rule: &Value) -> ClientTls {
        let tls = &rule["spec"]["trafficPolicy"]["tls"];
        assert_eq!(tls["mode"], "SIMPLE", "only tls.mode SIMPLE is modelled: {tls}");
        assert!(
            tls.get("credentialName").is_none() && tls.get("insecureSkipVerify").is_none(),
            "credentialName / insecureSkipVerify are not modelled: {tls}"
        );
        ClientTls {
            sni: tls["sni"].as_str().unwrap_or_default().to_string(),
            subject_alt_names: tls["subjectAltNames"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
            // ptr.NonEmptyOrDefault(tls.CaCertificates, "system") in cluster_tls.go.
            ca_certificates: tls["caCertificates"].as_str().unwrap_or("system").to_string(),
        }
    }

    /// pkg/security/security.go `SdsCertificateConfig.GetRootResourceName`.
    pub fn root_resource_name(&self) -> String {
        format!("file-root:{}", self.ca_certificates)
    }
}

/// The Service port's protocol as Istio derives it from the port name
/// (pkg/config/protocol/instance.go `Parse`: "https" -> HTTPS; the `kubernetes` Service's only
/// port is named `https`).
pub fn protocol_from_port_name(name: &str) -> &'static str {
    match name.to_ascii_lowercase().as_str() {
        "http" => "HTTP",
        "http2" => "HTTP2",
        "grpc" => "GRPC",
        "https" => "HTTPS",
        "tls" => "TLS",
        "tcp" => "TCP",
        _ => "UnsupportedProtocol",
    }
}

/// The outbound cluster `outbound|<port>||<host>` Istio builds for a sidecar, for a Service port
/// whose protocol is HTTPS or TLS, with a DestinationRule's SIMPLE TLS.
///
/// - pilot/pkg/networking/core/cluster_builder.go `buildCluster`: name, discovery type, an empty
///   common_lb_config; `setUpstreamProtocol`: HTTP2/GRPC get http2 options, HTTP or sniffed ports
///   use_downstream_protocol (sidecars), and HTTPS/TLS ports NOTHING, so `clusterWrapper.build`
///   marshals no `typed_extension_protocol_options` at all;
/// - pkg/config/mesh/mesh.go `DefaultMeshConfig`: connectTimeout 10s;
/// - pilot/pkg/networking/core/cluster_traffic_policy.go `getDefaultCircuitBreakerThresholds`;
/// - pilot/pkg/networking/core/cluster_tls.go `applyUpstreamTLSSettings` and
///   `constructUpstreamTLS`: transport socket `envoy.transport_sockets.tls`, an UpstreamTlsContext
///   with the rule's sni, `defaultUpstreamCommonTLSContext` (TLS 1.2 to 1.3) and a combined
///   validation context: the SANs to match, the CA as SDS resource `file-root:<path>` from
///   pilot-agent (pkg/model/authentication.go `constructSdsSecretConfig`, cluster `sds-grpc`).
pub fn outbound_tls_cluster(
    host: &str,
    port: u16,
    port_name: &str,
    service: (&str, &str),
    tls: &ClientTls,
) -> Value {
    let protocol = protocol_from_port_name(port_name);
    assert!(
        protocol == "HTTPS" || protocol == "TLS",
        "this model covers TLS ports only, not {protocol}"
    );
    let name = format!("outbound|{port}||{host}");
    let max = u32::MAX;
    json!({
        "name": name,
        "type": "EDS",
        "eds_cluster_config": {
            "service_name": name,
            "eds_config": { "ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3" },
        },
        "connect_timeout": "10s",
        "common_lb_config": {},
        "circuit_breakers": { "thresholds": [{
            "max_connections": max, "max_pending_requests": max, "max_requests": max,
            "max_retries": max, "track_remaining": true,
        }] },
        "metadata": { "filter_metadata": { "istio": { "services": [{
            "host": host, "name": service.0, "namespace": service.1,
        }] } } },
        "transport_socket": {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": tls.sni,
                "common_tls_context": {
                    "tls_params": {
                        "tls_minimum_protocol_version": "TLSv1_2",
                        "tls_maximum_protocol_version": "TLSv1_3",
                    },
                    "combined_validation_context": {
                        "default_validation_context": {
                            "match_subject_alt_names": tls.subject_alt_names.iter()
                                .map(|san| json!({ "exact": san })).collect::<Vec<_>>(),
                        },
                        "validation_context_sds_secret_config": {
                            "name": tls.root_resource_name(),
                            "sds_config": {
                                "api_config_source": {
                                    "api_type": "GRPC",
                                    "set_node_on_first_message_only": true,
                                    "transport_api_version": "V3",
                                    "grpc_services": [{ "envoy_grpc": { "cluster_name": "sds-grpc" } }],
                                },
                                "resource_api_version": "V3",
                            },
                        },
                    },
                },
            },
        },
    })
}

/// The two substitutions of the module comment: the endpoint given statically, and the CA
/// resource `file-root:<path>` looked up among the bootstrap's static secrets (an
/// SdsSecretConfig without sds_config), served from `local_ca`. Returns the secret to add to
/// `static_resources.secrets`.
pub fn runnable(cluster: &mut Value, endpoint: SocketAddr, local_ca: &str) -> Value {
    let name = cluster["name"].clone();
    let object = cluster.as_object_mut().expect("a cluster");
    object.remove("eds_cluster_config");
    object.insert("type".into(), json!("STATIC"));
    object.insert(
        "load_assignment".into(),
        json!({ "cluster_name": name, "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
            "socket_address": { "address": endpoint.ip().to_string(), "port_value": endpoint.port() },
        } } }] }] }),
    );
    let sds = &mut cluster["transport_socket"]["typed_config"]["common_tls_context"]
        ["combined_validation_context"]["validation_context_sds_secret_config"];
    let resource = sds["name"].clone();
    sds.as_object_mut().expect("an SDS config").remove("sds_config");
    json!({ "name": resource, "validation_context": { "trusted_ca": { "filename": local_ca } } })
}

fn is_any(value: &Value) -> bool {
    value.get("@type").is_some()
}

/// protobuf merge as istiod runs it for EnvoyFilter MERGE (pkg/proto/merge/merge.go, called by
/// pilot/pkg/networking/core/envoyfilter/util.go `mergePatchValue`), on the JSON form:
/// - a repeated field APPENDS the patch's elements (`mergeList`);
/// - a map field sets each of the patch's keys to the patch's value, REPLACING an existing entry
///   rather than merging into it (`mergeMap`: "Merge semantics replaces, rather than merges into
///   existing entries");
/// - a message field merges recursively (`mergeMessage`), except a `google.protobuf.Any`, whose
///   `type_url` and `value` bytes are both replaced: a packed message is replaced whole;
/// - a scalar (and a Duration, `ReplaceMergeFn`) is replaced.
pub fn proto_merge(dst: &mut Map<String, Value>, src: &Map<String, Value>) {
    for (key, value) in src {
        if let Some(group) = ONEOFS.iter().find(|g| g.contains(&key.as_str())) {
            for other in group.iter().filter(|o| **o != key) {
                dst.remove(*other);
            }
        }
        match value {
            Value::Array(items) => {
                let entry = dst.entry(key.clone()).or_insert_with(|| json!([]));
                match entry.as_array_mut() {
                    Some(list) => list.extend(items.iter().cloned()),
                    None => *entry = value.clone(),
                }
            }
            Value::Object(entries) if MAP_FIELDS.contains(&key.as_str()) => {
                let map = dst.entry(key.clone()).or_insert_with(|| json!({}));
                let map = map.as_object_mut().expect("a map field");
                for (map_key, map_value) in entries {
                    map.insert(map_key.clone(), map_value.clone());
                }
            }
            Value::Object(_) if is_any(value) || dst.get(key).is_some_and(is_any) => {
                dst.insert(key.clone(), value.clone());
            }
            Value::Object(entries) => {
                let target = dst.entry(key.clone()).or_insert_with(|| json!({}));
                match target.as_object_mut() {
                    Some(target) => proto_merge(target, entries),
                    None => *target = value.clone(),
                }
            }
            _ => {
                dst.insert(key.clone(), value.clone());
            }
        }
    }
}

/// istiod turns the patch value into a Cluster with `xds.BuildXDSObjectFromStruct(.., false)`
/// (pilot/pkg/model/envoyfilter.go): non-strict, so it DROPS fields it does not know where the
/// test's Envoy rejects them; the test is the stricter of the two.
///
/// pilot/pkg/networking/core/envoyfilter/cluster_patch.go `ApplyClusterMerge` for one patch: a
/// patch carrying `transport_socket` goes through `mergeTransportSocketCluster` instead (not
/// modelled: none is shipped, and the model refuses it rather than guess).
pub fn apply_cluster_merge(cluster: &mut Value, patch_value: &Value) {
    assert!(
        patch_value.get("transport_socket").is_none(),
        "a CLUSTER MERGE with transport_socket takes Istio's mergeTransportSocketCluster path, which this model does not implement"
    );
    let src = patch_value.as_object().expect("a patch value is a Cluster");
    proto_merge(cluster.as_object_mut().expect("a cluster"), src);
}

/// Whether an EnvoyFilter applies to a pod: its `workloadSelector.labels` (pilot/pkg/model/
/// envoyfilter.go) are all among the pod's labels, and no selector matches every workload. Placed
/// in the mesh's root namespace (usually istio-system) it applies to pods of EVERY namespace
/// (pilot/pkg/model/push_context.go `EnvoyFilters`: "First get all the filter configs from the
/// config root namespace").
pub fn selects(envoy_filter: &Value, pod_labels: &Map<String, Value>) -> bool {
    match envoy_filter["spec"]["workloadSelector"]["labels"].as_object() {
        None => true,
        Some(wanted) => wanted.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
    }
}

/// Applies every CLUSTER patch of `envoy_filters` that matches `cluster` on a sidecar with
/// `pod_labels` (context SIDECAR_OUTBOUND or ANY, `match.cluster.name` equal to the cluster's;
/// pilot/pkg/networking/core/envoyfilter/cluster_patch.go `clusterMatch`, `commonConditionMatch`),
/// in order. Returns how many were applied. Only MERGE is modelled.
pub fn apply_envoy_filters(
    cluster: &mut Value,
    envoy_filters: &[Value],
    pod_labels: &Map<String, Value>,
) -> usize {
    let mut applied = 0;
    for filter in envoy_filters.iter().filter(|f| selects(f, pod_labels)) {
        for patch in filter["spec"]["configPatches"].as_array().into_iter().flatten() {
            if patch["applyTo"] != "CLUSTER" {
                continue;
            }
            let context = patch["match"]["context"].as_str().unwrap_or("ANY");
            if context != "SIDECAR_OUTBOUND" && context != "ANY" {
                continue;
            }
            if patch["match"]["cluster"]["name"] != cluster["name"] {
                continue;
            }
            assert_eq!(
                patch["patch"]["operation"], "MERGE",
                "only MERGE is modelled: {patch}"
            );
            apply_cluster_merge(cluster, &patch["patch"]["value"]);
            applied += 1;
        }
    }
    applied
}

#[cfg(test)]
mod model_tests {
    use super::*;

    #[test]
    fn merge_appends_lists_replaces_map_entries_and_any_and_merges_messages() {
        let mut dst = json!({
            "a": [1], "m": { "x": 1 },
            "typed_extension_protocol_options": { "k": { "@type": "t", "keep": 1 } },
            "t": { "@type": "t1", "f": 1 },
            "type": "EDS",
        });
        let src = json!({
            "a": [2], "m": { "y": 2 },
            "typed_extension_protocol_options": { "k": { "@type": "t", "new": 2 } },
            "t": { "@type": "t2", "g": 2 },
            "cluster_type": { "name": "c" },
        });
        proto_merge(dst.as_object_mut().unwrap(), src.as_object().unwrap());
        assert_eq!(
            dst,
            json!({
                "a": [1, 2], "m": { "x": 1, "y": 2 },
                "typed_extension_protocol_options": { "k": { "@type": "t", "new": 2 } },
                "t": { "@type": "t2", "g": 2 },
                "cluster_type": { "name": "c" },
            })
        );
    }
}
