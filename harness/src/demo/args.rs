//! The `demo` command line and the curl commands it prints.

use clap::Parser;
use std::path::PathBuf;

/// Starts the Kiali stand-in (echo upstream) and the token-service stand-in, then Envoy with
/// the given config (run from the repository root, so relative paths such as the wasm module
/// resolve), waits until it is ready, prints example curl commands, then one line per request
/// that reached the Kiali stand-in and one per refusal, until Ctrl-C or until Envoy exits.
#[derive(Parser, Clone, Debug, PartialEq, Eq)]
#[command(name = "demo")]
pub struct DemoArgs {
    /// Envoy bootstrap
    #[arg(long)]
    pub envoy_config: PathBuf,
    /// Kiali stand-in port
    #[arg(long, default_value_t = 18080, value_parser = clap::value_parser!(u16).range(1..))]
    pub upstream_port: u16,
    /// Token service port
    #[arg(long, default_value_t = 18443, value_parser = clap::value_parser!(u16).range(1..))]
    pub token_port: u16,
    /// Bearer the TokenRequest endpoint requires [default: none]
    #[arg(long)]
    pub required_bearer: Option<String>,
    /// Client the /oauth2/token endpoint requires [default: any]
    #[arg(long, value_name = "ID:SECRET", value_parser = id_and_secret)]
    pub oauth_client: Option<(String, String)>,
    /// Issue JWT-shaped tokens
    #[arg(long)]
    pub jwt_tokens: bool,
    /// Envoy listener port (for the printed curl)
    #[arg(long, default_value_t = 10000, value_parser = clap::value_parser!(u16).range(1..))]
    pub listener_port: u16,
    /// Envoy admin port [default: scanned from the config, else 9901]
    #[arg(long)]
    pub admin_port: Option<u16>,
    /// Envoy worker threads
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,
    /// Extra header in the printed curl commands (repeatable)
    #[arg(long = "curl-header", value_name = "NAME: VALUE")]
    pub curl_headers: Vec<String>,
    /// Path in the printed curl commands
    #[arg(long, default_value = "/kiali/api/namespaces")]
    pub curl_path: String,
    /// Where Envoy's own log (and its access log) goes [default: target/demo/envoy.log]
    #[arg(long)]
    pub envoy_log: Option<PathBuf>,
}

fn id_and_secret(value: &str) -> Result<(String, String), String> {
    let (id, secret) = value.split_once(':').ok_or("expected <id>:<secret>")?;
    Ok((id.to_string(), secret.to_string()))
}

/// Single-quotes for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The example curl commands printed when the demo is ready: a spoofed identity, the status
/// and headers of an identified request, a request without identity.
pub fn curl_commands(a: &DemoArgs) -> Vec<String> {
    let url = shell_quote(&format!("http://127.0.0.1:{}{}", a.listener_port, a.curl_path));
    let curl = |options: &str, headers: &[&str]| {
        let headers: String = headers.iter().map(|h| format!(" -H {}", shell_quote(h))).collect();
        format!("curl -sS{options}{headers} {url}")
    };
    let identity: Vec<&str> = a.curl_headers.iter().map(String::as_str).collect();
    let spoofed: Vec<&str> = ["Impersonate-User: system:admin", "Impersonate-Group: system:masters"]
        .into_iter()
        .chain(identity.iter().copied())
        .collect();
    vec![curl("", &spoofed), curl(" -i", &identity), curl("", &[])]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<DemoArgs, clap::Error> {
        DemoArgs::try_parse_from(std::iter::once("demo").chain(v.iter().copied()))
    }

    #[test]
    fn defaults_flags_and_curl_commands() {
        let a = parse(&["--envoy-config", "envoy.yaml"]).unwrap();
        assert_eq!((a.upstream_port, a.token_port, a.listener_port, a.concurrency), (18080, 18443, 10000, 2));
        assert_eq!((a.required_bearer, a.admin_port, a.envoy_log), (None, None, None));
        let b = parse(&["--envoy-config=x.yaml", "--listener-port", "3", "--oauth-client", "kiali:s3:cret"]).unwrap();
        let b = DemoArgs { curl_headers: vec!["X-Forwarded-User: alice".into()], curl_path: "/api".into(), ..b };
        assert_eq!(b.oauth_client, Some(("kiali".into(), "s3:cret".into())));
        assert_eq!(
            curl_commands(&b),
            vec![
                "curl -sS -H 'Impersonate-User: system:admin' -H 'Impersonate-Group: system:masters' -H 'X-Forwarded-User: alice' 'http://127.0.0.1:3/api'",
                "curl -sS -i -H 'X-Forwarded-User: alice' 'http://127.0.0.1:3/api'",
                "curl -sS 'http://127.0.0.1:3/api'",
            ]
        );
    }

    #[test]
    fn errors() {
        for bad in [
            &[][..],
            &["--envoy-config"],
            &["--envoy-config", "x", "--upstream-port", "70000"],
            &["--envoy-config", "x", "--upstream-port", "0"],
            &["--envoy-config", "x", "--bogus"],
            &["--envoy-config", "x", "--oauth-client", "nocolon"],
            &["--envoy-config", "x", "--concurrency", "0"],
            &["--envoy-config", "x", "--jwt-tokens=1"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse(&["--help"]).unwrap_err().kind(), clap::error::ErrorKind::DisplayHelp);
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
