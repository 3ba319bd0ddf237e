//! kiali-header-auth: the reverse-proxy half of Kiali's `header` auth strategy, as a Proxy-Wasm
//! filter. The pure modules below are compiled and tested natively; the proxy-wasm adapters
//! (`abi` entry points, `host` calls, `root` and `http` contexts) only exist on `wasm32`.

pub mod config;
pub mod extra_key;
pub mod identity;
pub mod json_path;
pub mod logout;
pub mod peer;
pub mod random;
pub mod rbac;
pub mod refusal;
pub mod token;
pub mod upstream_hosts;

#[cfg(target_arch = "wasm32")]
mod abi;
#[cfg(target_arch = "wasm32")]
mod host;
#[cfg(target_arch = "wasm32")]
mod http;
#[cfg(target_arch = "wasm32")]
mod identity_tokens;
#[cfg(target_arch = "wasm32")]
mod logger;
#[cfg(target_arch = "wasm32")]
mod metrics;
#[cfg(target_arch = "wasm32")]
mod rbac_runtime;
#[cfg(target_arch = "wasm32")]
mod reply;
#[cfg(target_arch = "wasm32")]
mod root;
