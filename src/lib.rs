//! kiali-header-auth: the reverse-proxy half of Kiali's `header` auth strategy, as a Proxy-Wasm
//! filter. The pure modules below are compiled and tested natively; the proxy-wasm adapters only
//! exist on `wasm32`.

pub mod config;
pub mod extra_key;
pub mod identity;
pub mod json_path;
pub mod peer;
pub mod random;
pub mod refusal;
pub mod token;

#[cfg(target_arch = "wasm32")]
mod host;
#[cfg(target_arch = "wasm32")]
mod http;
#[cfg(target_arch = "wasm32")]
mod metrics;
#[cfg(target_arch = "wasm32")]
mod reply;
#[cfg(target_arch = "wasm32")]
mod root;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::Root::new(context_id))
    });
}}
