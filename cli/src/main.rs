//! `kiali-header-auth`: the command line (`kha_cli::app`) on the process's streams.

use std::process::ExitCode;

fn main() -> ExitCode {
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let mut io = kha_cli::app::Io { stdin: &mut stdin.lock(), out: &mut stdout.lock(), err: &mut stderr.lock() };
    let code = kha_cli::app::run(std::env::args_os(), &mut io);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
