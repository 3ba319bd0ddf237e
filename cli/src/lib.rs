//! The `kiali-header-auth` command line: `check`, `explain` and `rbac`, built on the filter's own
//! configuration, planner and RBAC modules (the `kiali-header-auth` library) and on the Kiali and
//! API-server stand-ins of the `harness` crate. No rule is copied here.

pub mod app;
pub mod check;
pub mod explain;
pub mod input;
pub mod rbac;
pub mod render;
pub mod simulate;
pub mod warnings;

/// Exit codes: 0 ok, 1 invalid (a configuration, a refused check), 2 usage.
pub const EXIT_OK: i32 = 0;
pub const EXIT_INVALID: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
