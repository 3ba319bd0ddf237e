//! The stand-in Kiali (echo) and stand-in Kubernetes TokenRequest API, without Envoy: what
//! docker-compose.yaml runs next to the official Envoy image. `make run` uses `demo` instead,
//! which starts the same stand-ins and a local Envoy.

use std::net::{IpAddr, SocketAddr};

use clap::Parser;
use harness::{EchoUpstream, TokenService};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 18080)]
    upstream_port: u16,
    #[arg(long, default_value_t = 18443)]
    token_port: u16,
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Bearer the TokenRequest endpoint requires [default: none]
    #[arg(long, value_name = "TOKEN")]
    required_bearer: Option<String>,
    /// Write a bootstrap token in DIR, replace it every minute (as the kubelet does) and accept
    /// only the current one
    #[arg(long, value_name = "DIR")]
    bootstrap_token_dir: Option<std::path::PathBuf>,
}

fn main() {
    let args = Args::parse();
    let upstream = EchoUpstream::start_at(SocketAddr::new(args.bind, args.upstream_port)).unwrap_or_else(|e| {
        eprintln!("cannot bind the stand-in Kiali on {}:{}: {e}", args.bind, args.upstream_port);
        std::process::exit(1)
    });
    let tokens = TokenService::start_at(SocketAddr::new(args.bind, args.token_port)).unwrap_or_else(|e| {
        eprintln!("cannot bind the stand-in token service on {}:{}: {e}", args.bind, args.token_port);
        std::process::exit(1)
    });
    tokens.set_required_bearer(args.required_bearer.as_deref());
    let _bootstrap_token = args.bootstrap_token_dir.map(|dir| {
        harness::bootstrap_token::Refresher::start(&dir, harness::bootstrap_token::DEMO_ROTATION_PERIOD, &tokens)
            .unwrap_or_else(|e| {
                eprintln!("cannot write the bootstrap token in {}: {e}", dir.display());
                std::process::exit(1)
            })
    });
    upstream.keep_at_most(10_000);
    println!("stand-in Kiali on {}, stand-in Kubernetes TokenRequest API on {}", upstream.addr(), tokens.addr());
    loop {
        std::thread::park();
    }
}
