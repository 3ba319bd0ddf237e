//! Every integration test in one crate: one link of hyper, tokio, jsonschema and the harness
//! instead of one per suite (issue 22, the fresh-clone `make test` time). Each suite is a module:
//! `cargo test --profile e2e --test suite token::` runs one (the Makefile's `validate`, `soak` and
//! `test-envoy-matrix` do so).

mod common;

mod adversarial;
mod bootstrap_rotation;
mod claims_properties;
mod cli;
mod config_failures;
mod config_files;
mod identity;
mod image;
mod jwt;
mod kiali_cache;
mod layering;
mod manifests;
mod models;
mod mtls_peers;
mod per_identity;
mod properties;
mod rbac_check;
mod rbac_review;
mod readme_examples;
mod real_clients;
mod soak;
mod standin_chain;
mod strip;
mod token;
