//! Support for the `bench` binary (`make bench`): wrk output parsing, `/proc` readings, the
//! statistics and the Markdown report, callgrind. Pure where possible, so it is unit-tested natively.

pub mod callgrind;
pub mod procfs;
pub mod report;
pub mod wrk;

/// The headers a wrk script sets with lines of the form `wrk.headers["Name"] = "value"`,
/// in order (used to send the very same request in the equivalence check).
pub fn wrk_script_headers(script: &str) -> Vec<(String, String)> {
    script
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("wrk.headers[\"")?;
            let (name, rest) = rest.split_once("\"]")?;
            let value = rest.trim().strip_prefix('=')?.trim();
            let value = value.strip_prefix('"')?.strip_suffix('"')?;
            Some((name.to_string(), value.to_string()))
        })
        .collect()
}

/// The request path a wrk script sets with `wrk.path = "..."`, if any.
pub fn wrk_script_path(script: &str) -> Option<String> {
    script.lines().find_map(|line| {
        let value = line.trim().strip_prefix("wrk.path")?.trim().strip_prefix('=')?.trim();
        Some(value.strip_prefix('"')?.strip_suffix('"')?.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_headers_and_path_from_a_wrk_script() {
        let script = "-- comment wrk.headers[\"No\"] = \"x\"\nwrk.method = \"GET\"\nwrk.path = \"/api/namespaces\"\n\
                      wrk.headers[\"X-Forwarded-User\"] = \"alice\"\n  wrk.headers[\"X-Forwarded-Groups\"]=\"a, b ,c\"\n\
                      wrk.headers[\"Broken\"] = nope\n";
        assert_eq!(
            wrk_script_headers(script),
            vec![("X-Forwarded-User".to_string(), "alice".to_string()), ("X-Forwarded-Groups".to_string(), "a, b ,c".to_string()),]
        );
        assert_eq!(wrk_script_path(script).as_deref(), Some("/api/namespaces"));
        assert_eq!(wrk_script_path("wrk.method = \"GET\""), None);
    }
}
