//! `make run`: see `harness::demo` and `demo --help`.

fn main() {
    match harness::demo::parse_args(std::env::args().skip(1)) {
        Ok(harness::demo::Parsed::Help) => print!("{}", harness::demo::USAGE),
        Ok(harness::demo::Parsed::Run(args)) => std::process::exit(harness::demo::run(args)),
        Err(e) => {
            eprintln!("demo: {e}\n\n{}", harness::demo::USAGE);
            std::process::exit(2);
        }
    }
}
