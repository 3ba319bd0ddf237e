//! kiali-header-auth: the reverse-proxy half of Kiali's `header` auth strategy, as a Proxy-Wasm
//! filter. The pure modules below are compiled and tested natively; the proxy-wasm adapters
//! (`abi` entry points, `host` calls, `root` and `http` contexts) only exist on `wasm32`.
//!
//! Layers, each importing only from the ones below it (`tests/suite/layering.rs` checks there is no
//! cycle):
//! - `names`: predicates on header names and identity values; imports nothing from the crate.
//! - pure: `refusal`, `peer`, `extra_key`, `logout`, `upstream_hosts`, `json_path` ->
//!   `config` -> `identity`, `rbac`, `token`.
//! - adapters, one line: `abi` -> `http` / `root` -> `rbac_runtime` -> `vm_state` ->
//!   `identity_tokens`, `rbac_gate`, `local_token` -> `metrics`, `reply`, `logger` -> `host`.

pub mod config;
pub mod extra_key;
pub mod identity;
pub mod json_path;
pub mod logout;
pub mod names;
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
mod local_token;
#[cfg(target_arch = "wasm32")]
mod logger;
#[cfg(target_arch = "wasm32")]
mod metrics;
#[cfg(target_arch = "wasm32")]
mod rbac_gate;
#[cfg(target_arch = "wasm32")]
mod rbac_runtime;
#[cfg(target_arch = "wasm32")]
mod reply;
#[cfg(target_arch = "wasm32")]
mod root;
#[cfg(target_arch = "wasm32")]
mod vm_state;
