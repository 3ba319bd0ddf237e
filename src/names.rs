//! Predicates on header names and identity values that several layers share. A leaf: it imports
//! nothing from the crate, so the configuration, the planner and the key rules can all use it
//! without importing each other.

/// One request header as Envoy hands it over: name and raw value bytes (values may hold any
/// byte Envoy lets through, including obs-text that is not UTF-8).
pub type Header<'h> = (&'h [u8], &'h [u8]);

/// A byte of an RFC 7230 token (`tchar`): what a header name may hold.
pub fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// `system:` identities (system:masters, system:admin, system:serviceaccount:...) are the keys to
/// the cluster. Compared without regard to letter case to fail closed.
pub fn is_system_identity(value: &str) -> bool {
    value
        .as_bytes()
        .get(..7)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"system:"))
}

/// `value` without the spaces and horizontal tabs Go's header reader trims from both ends of a
/// value (`net/textproto` `ReadMIMEHeader`: `bytes.TrimLeft(v, " \t")` and `trim` on the line),
/// which Kiali and the API server both use. Every value the filter forwards goes through this
/// before any check, so `" system:masters"` is checked as `system:masters`, the identity the API
/// server would see. Only these two characters: trimming more (Rust's `str::trim` also removes
/// U+00A0 and other Unicode spaces) would merge identities that Go keeps apart.
pub fn trim_like_go(value: &str) -> &str {
    value.trim_matches([' ', '\t'])
}
