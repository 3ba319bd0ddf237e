//! Native end-to-end test harness for the kiali-header-auth Proxy-Wasm filter.
//!
//! Everything binds 127.0.0.1 and stops on Drop. See `docs/HARNESS_SPEC.md`.

pub mod api_status;
pub mod apiserver;
pub mod bench;
pub mod bootstrap_token;
pub mod client;
pub mod demo;
pub mod envoy;
pub mod go_header;
pub mod jwt;
pub mod kiali;
pub mod kiali_cache;
pub mod message;
pub mod paths;
pub mod ports;
pub mod recording;
pub mod server;
pub mod ssar;
pub mod time;
pub mod token_service;
pub mod upstream;
pub mod yaml;

pub use client::{ClientRequest, Connection};
pub use envoy::{Envoy, EnvoyConfig, Filter, Route};
pub use message::{RawRequest, Response};
pub use token_service::{Behavior, IssuedToken, TokenService};
pub use upstream::EchoUpstream;
