//! The stand-in Kiali (echo) and stand-in Kubernetes TokenRequest API, without Envoy: what
//! docker-compose.yaml runs next to the official Envoy image. `make run` uses `demo` instead,
//! which starts the same stand-ins and a local Envoy.

use std::net::{IpAddr, SocketAddr};

use harness::{EchoUpstream, TokenService};

const USAGE: &str = "usage: standins [--upstream-port 18080] [--token-port 18443] [--bind 127.0.0.1] [--required-bearer TOKEN] [--bootstrap-token-dir DIR]";

fn main() {
    let mut upstream_port: u16 = 18080;
    let mut token_port: u16 = 18443;
    let mut bind: IpAddr = IpAddr::from([127, 0, 0, 1]);
    let mut required_bearer: Option<String> = None;
    let mut bootstrap_token_dir: Option<std::path::PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next();
        let parsed = match (flag.as_str(), value.as_deref()) {
            ("--upstream-port", Some(v)) => v.parse().map(|p| upstream_port = p).is_ok(),
            ("--token-port", Some(v)) => v.parse().map(|p| token_port = p).is_ok(),
            ("--bind", Some(v)) => v.parse().map(|ip| bind = ip).is_ok(),
            ("--required-bearer", Some(v)) => {
                required_bearer = Some(v.to_string());
                true
            }
            // Write a bootstrap token there, rotate it, and accept only the current one.
            ("--bootstrap-token-dir", Some(v)) => {
                bootstrap_token_dir = Some(v.into());
                true
            }
            _ => false,
        };
        if !parsed {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
    let upstream = EchoUpstream::start_at(SocketAddr::new(bind, upstream_port)).unwrap_or_else(|e| {
        eprintln!("cannot bind the stand-in Kiali on {bind}:{upstream_port}: {e}");
        std::process::exit(1)
    });
    let tokens = TokenService::start_at(SocketAddr::new(bind, token_port)).unwrap_or_else(|e| {
        eprintln!("cannot bind the stand-in token service on {bind}:{token_port}: {e}");
        std::process::exit(1)
    });
    tokens.set_required_bearer(required_bearer.as_deref());
    let _bootstrap_token = bootstrap_token_dir.map(|dir| {
        harness::bootstrap_token::Refresher::start(&dir, harness::bootstrap_token::DEMO_ROTATION_PERIOD, &tokens)
            .unwrap_or_else(|e| {
                eprintln!("cannot write the bootstrap token in {}: {e}", dir.display());
                std::process::exit(1)
            })
    });
    upstream.keep_at_most(10_000);
    println!(
        "stand-in Kiali on {}, stand-in Kubernetes TokenRequest API on {}",
        upstream.addr(),
        tokens.addr()
    );
    loop {
        std::thread::park();
    }
}
