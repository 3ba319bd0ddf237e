//! YAML as kubectl reads it (YAML 1.1 typing of plain scalars): `harness::yaml`, which the
//! command line uses too, with the manifest tests' convention of failing on bad input, naming the
//! file.

pub use harness::yaml::{Document, Retyped};

/// Every non-empty document of a multi-document YAML text; panics naming `origin` if it is not
/// YAML kubectl accepts.
pub fn documents(text: &str, origin: &str) -> Vec<Document> {
    harness::yaml::documents(text).unwrap_or_else(|error| panic!("{origin}: {error}"))
}

/// A file that must hold exactly one document.
pub fn single(text: &str, origin: &str) -> serde_json::Value {
    let mut all = documents(text, origin);
    assert_eq!(all.len(), 1, "{origin}: expected exactly one YAML document");
    all.remove(0).value
}
