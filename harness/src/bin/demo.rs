//! `make run`: see `harness::demo` and `demo --help`.

use clap::Parser;

fn main() {
    std::process::exit(harness::demo::run(harness::demo::DemoArgs::parse()));
}
