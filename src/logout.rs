//! `logout`: a path the filter answers itself, ending Kiali's session and sending the browser to
//! the authenticating proxy's sign-out.
//!
//! Kiali hides its Logout in header mode, and its session cookies outlive a sign-out at the
//! authenticating proxy. Kiali's cookie session persistor (`handlers/authentication/
//! session_persistor.go`, and `business/authentication/` before it) names them `kiali-token`,
//! `kiali-token-<cluster>`, chunks `kiali-token[-<cluster>]-<i>`, the chunk count
//! `kiali-token-chunks[-<cluster>]`, and in older releases `kiali-token-aes`,
//! `kiali-token-aes-<i>`; all with `Path` = Kiali's web root. So the reply expires every cookie
//! the request carries whose name starts with `kiali-token`, the base names of every release,
//! and the chunks a chunk count names (`kiali-token-chunks=<n>`: `kiali-token-aes-1` ..
//! `kiali-token-aes-<n-1>` and `kiali-token-1` .. `kiali-token-<n-1>`;
//! `kiali-token-chunks-<cluster>=<n>`: `kiali-token-<cluster>-1` ..), on the web root.

/// The validated `logout` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logout {
    pub path: String,
    pub redirect: String,
    pub web_root: String,
}

/// Cookies always expired, present or not (the base names of current and older Kiali releases).
const BASE_COOKIES: [&str; 3] = ["kiali-token", "kiali-token-aes", "kiali-token-chunks"];
const COOKIE_PREFIX: &str = "kiali-token";
/// Browsers keep at most about 180 cookies per domain; Kiali refuses more chunks than that.
const MAX_COOKIES: usize = 200;

impl Logout {
    /// Whether a request for `path` (the `:path` pseudo-header, query included) is the logout.
    pub fn matches(&self, path: &[u8]) -> bool {
        let without_query = path.split(|byte| *byte == b'?').next().unwrap_or_default();
        without_query == self.path.as_bytes()
    }

    /// The `Set-Cookie` values that expire Kiali's session cookies, from the request's
    /// `cookie` header lines.
    pub fn expired_cookies(&self, cookie_lines: &[&[u8]]) -> Vec<String> {
        let mut names: Vec<String> = BASE_COOKIES.iter().map(|name| name.to_string()).collect();
        let add = |name: String, names: &mut Vec<String>| {
            if !names.contains(&name) && names.len() < MAX_COOKIES {
                names.push(name);
            }
        };
        for line in cookie_lines {
            let Ok(text) = std::str::from_utf8(line) else {
                continue;
            };
            for pair in text.split(';') {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                let name = name.trim();
                let valid = name.starts_with(COOKIE_PREFIX)
                    && name.bytes().all(crate::names::is_token_byte);
                if !valid {
                    continue;
                }
                add(name.to_string(), &mut names);
                for chunk in chunk_names(name, value.trim()) {
                    add(chunk, &mut names);
                }
            }
        }
        names
            .iter()
            .map(|name| format!("{name}=; Path={}; Max-Age=0; HttpOnly; SameSite=Strict", self.web_root))
            .collect()
    }
}

/// The chunk cookies a chunk count names (see the module comment); none for any other cookie.
fn chunk_names(name: &str, value: &str) -> Vec<String> {
    let Some(rest) = name.strip_prefix("kiali-token-chunks") else {
        return Vec::new();
    };
    let count = value.parse::<usize>().unwrap_or(0).min(MAX_COOKIES);
    let stems: Vec<String> = match rest.strip_prefix('-') {
        None if rest.is_empty() => vec!["kiali-token-aes".into(), "kiali-token".into()],
        Some(cluster) if !cluster.is_empty() => vec![format!("kiali-token-{cluster}")],
        _ => Vec::new(),
    };
    stems
        .iter()
        .flat_map(|stem| (1..count).map(move |i| format!("{stem}-{i}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logout() -> Logout {
        Logout {
            path: "/kiali/logout".into(),
            redirect: "/oauth2/sign_out?rd=%2Fkiali%2F".into(),
            web_root: "/kiali".into(),
        }
    }

    #[test]
    fn matches_the_path_with_or_without_a_query_only() {
        assert!(logout().matches(b"/kiali/logout"));
        assert!(logout().matches(b"/kiali/logout?x=1"));
        assert!(!logout().matches(b"/kiali/logout/x"));
        assert!(!logout().matches(b"/kiali/api/logout"));
    }

    #[test]
    fn expires_every_kiali_session_cookie_on_the_web_root() {
        let cookies = logout().expired_cookies(&[
            b"kiali-token-cluster1=abc; other=1; kiali-token-cluster1-1=def",
            b"kiali-token-chunks-cluster1=2; kiali-token-nonce-x=n; kiali-token-aes-1=zz",
            &[0xff, 0xfe],
        ]);
        let names: Vec<&str> = cookies.iter().map(|c| c.split('=').next().unwrap()).collect();
        assert_eq!(
            names,
            vec![
                "kiali-token",
                "kiali-token-aes",
                "kiali-token-chunks",
                "kiali-token-cluster1",
                "kiali-token-cluster1-1",
                "kiali-token-chunks-cluster1",
                "kiali-token-nonce-x",
                "kiali-token-aes-1"
            ]
        );
        assert!(cookies.iter().all(|c| c.ends_with("=; Path=/kiali; Max-Age=0; HttpOnly; SameSite=Strict")));
        let many = (0..500).map(|i| format!("kiali-token-x-{i}=1")).collect::<Vec<_>>().join("; ");
        assert_eq!(logout().expired_cookies(&[b"kiali-token-chunks=100000"]).len(), MAX_COOKIES);
        assert_eq!(logout().expired_cookies(&[many.as_bytes()]).len(), MAX_COOKIES);
    }

    #[test]
    fn a_chunk_count_names_the_chunks_the_request_did_not_carry() {
        let names = |line: &[u8]| -> Vec<String> {
            logout().expired_cookies(&[line]).iter().map(|c| c.split('=').next().unwrap().to_string()).collect()
        };
        let chunked = names(b"kiali-token-chunks=3");
        for name in ["kiali-token-aes-1", "kiali-token-aes-2", "kiali-token-1", "kiali-token-2"] {
            assert!(chunked.iter().any(|n| n == name), "{name} in {chunked:?}");
        }
        assert!(!chunked.iter().any(|n| n == "kiali-token-aes-3"), "n chunks: the base cookie and 1..n-1");
        let cluster = names(b"kiali-token-chunks-east=2");
        assert!(cluster.iter().any(|n| n == "kiali-token-east-1") && !cluster.iter().any(|n| n == "kiali-token-east-2"));
        assert_eq!(names(b"kiali-token-chunks=x").len(), 3, "a count that is not a number names nothing");
    }
}
