//! `kiali-header-auth check | explain | rbac`: answers, before deploying, whether the plugin will
//! start, what it does with a request and what the cluster will believe, and which ClusterRole it
//! needs. Results go to stdout, errors to stderr. Exit codes: 0 ok, 1 invalid, 2 usage.
//!
//! [`run`] is the whole command with its streams passed in: `main.rs` hands it the process's,
//! the tests their buffers.

use std::io::{Read, Write};

use clap::{Parser, Subcommand, ValueEnum};
use harness::apiserver::ImpersonationRules;
use kiali_header_auth::config::FilterConfig;

use crate::explain::{self, Request};
use crate::input::{self, Found};
use crate::{check, rbac, render, simulate, warnings, EXIT_INVALID, EXIT_OK, EXIT_USAGE};

#[derive(Parser)]
#[command(name = "kiali-header-auth", version, about = "Check a kiali-header-auth configuration, explain what it does with a request, print the RBAC it needs.")]
#[command(after_help = "Exit codes: 0 ok, 1 invalid configuration (or a failed check), 2 usage error.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Validate every configuration in FILEs (plugin JSON, WasmPlugin/TrafficExtension, Envoy bootstrap,
    /// EnvoyFilter, multi-document streams, directories, Markdown ```json blocks; `-` is stdin).
    #[command(after_help = warning_help())]
    Check {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<String>,
        /// Warnings fail the check (exit 1), except those named with --allow.
        #[arg(long)]
        strict: bool,
        /// Accept this warning code (repeatable): reported, never a failure.
        #[arg(long, value_name = "CODE", value_parser = warning_code)]
        allow: Vec<String>,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
        /// Text output: only failures, warnings not allowed, and the summary.
        #[arg(short, long)]
        quiet: bool,
    },
    /// What the filter does with one request, and what Kiali and the API server then believe.
    Explain {
        /// A file holding one configuration (any form `check` reads).
        #[arg(long, value_name = "FILE")]
        config: String,
        /// Only the configuration whose origin contains this text, when FILE holds several.
        #[arg(long, value_name = "TEXT")]
        pick: Option<String>,
        /// A request header, `Name: value` (repeatable); `Host` is the `:authority` (default localhost).
        #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
        /// The JWT payload Envoy's jwt_authn verified (JSON), or @FILE.
        #[arg(long, value_name = "JSON")]
        jwt_payload: Option<String>,
        /// The direct peer: an address (ip or ip:port) or an mTLS principal (repeatable, one of each).
        #[arg(long, value_name = "ADDRESS|PRINCIPAL")]
        peer: Vec<String>,
        /// The impersonator's ClusterRole(s) (YAML); default: exactly what `rbac` prints for the configuration.
        #[arg(long, value_name = "FILE")]
        cluster_role: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// The ClusterRole (and binding) the configurations need, as YAML ready to apply.
    Rbac {
        /// Files holding the configurations (any form `check` reads); the role covers all of them.
        #[arg(long, value_name = "FILE", required = true, num_args = 1..)]
        config: Vec<String>,
    },
}

fn warning_help() -> String {
    let mut text = String::from("Warning codes:\n");
    for (code, meaning) in warnings::CODES {
        text.push_str(&format!("  {code:<28} {meaning}\n"));
    }
    text
}

fn warning_code(code: &str) -> Result<String, String> {
    if warnings::CODES.iter().any(|(known, _)| *known == code) {
        Ok(code.to_string())
    } else {
        let known: Vec<&str> = warnings::CODES.iter().map(|(c, _)| *c).collect();
        Err(format!("unknown warning code; one of {}", known.join(", ")))
    }
}

/// A failure with its exit code and the message for stderr.
struct Failure(i32, String);

/// The streams of one run.
pub struct Io<'a> {
    pub stdin: &'a mut dyn Read,
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
}

impl Io<'_> {
    /// Results; a closed pipe (`| head`) is not worth a failure.
    fn emit(&mut self, text: &str) {
        let _ = self.out.write_all(text.as_bytes()).and_then(|()| self.out.flush());
    }

    fn error(&mut self, text: &str) {
        let _ = self.err.write_all(text.as_bytes());
    }
}

/// Runs the command line `args` (the program name first) and returns the exit code.
pub fn run<I, T>(args: I, io: &mut Io<'_>) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let text = error.render().to_string();
            return if error.use_stderr() {
                io.error(&text);
                EXIT_USAGE
            } else {
                io.emit(&text);
                EXIT_OK
            };
        }
    };
    let result = match cli.command {
        Command::Check { files, strict, allow, output, quiet } => run_check(io, &files, strict, &allow, output, quiet),
        Command::Explain { config, pick, headers, jwt_payload, peer, cluster_role, output } => {
            run_explain(io, &config, pick.as_deref(), &headers, jwt_payload.as_deref(), &peer, cluster_role.as_deref(), output)
        }
        Command::Rbac { config } => run_rbac(io, &config),
    };
    match result {
        Ok(()) => EXIT_OK,
        Err(Failure(code, message)) => {
            if !message.is_empty() {
                io.error(&format!("error: {message}\n"));
            }
            code
        }
    }
}

fn run_check(io: &mut Io<'_>, files: &[String], strict: bool, allow: &[String], output: Output, quiet: bool) -> Result<(), Failure> {
    let texts = input::read_inputs(files, io.stdin).map_err(|e| Failure(EXIT_USAGE, e))?;
    let report = check::check(input::scan(&texts), strict, allow);
    if output == Output::Json {
        io.emit(&format!("{}\n", serde_json::to_string_pretty(&report).unwrap_or_default()));
    } else {
        let (mut out, mut err) = (String::new(), String::new());
        check::render_text(&report, quiet, &mut out, &mut err);
        io.error(&err);
        io.emit(&out);
    }
    if report.ok {
        Ok(())
    } else {
        // The report said why.
        Err(Failure(EXIT_INVALID, String::new()))
    }
}

/// The configurations in `files`, each validated; an invalid one is a failure with its message.
fn load(stdin: &mut dyn Read, files: &[String], pick: Option<&str>) -> Result<Vec<(String, FilterConfig)>, Failure> {
    let texts = input::read_inputs(files, stdin).map_err(|e| Failure(EXIT_USAGE, e))?;
    let scan = input::scan(&texts);
    if let Some(line) = scan.unreadable.first() {
        return Err(Failure(EXIT_INVALID, line.clone()));
    }
    let found: Vec<Found> = scan.found.into_iter().filter(|f| pick.is_none_or(|p| f.origin.contains(p))).collect();
    if found.is_empty() {
        return Err(Failure(EXIT_INVALID, format!("no kiali-header-auth configuration found in {}", files.join(", "))));
    }
    found
        .into_iter()
        .map(|f| match FilterConfig::from_json(f.json.as_bytes()) {
            Ok(config) => Ok((f.origin, config)),
            Err(error) => Err(Failure(EXIT_INVALID, format!("{}: {error}", f.origin))),
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn run_explain(
    io: &mut Io<'_>,
    file: &str,
    pick: Option<&str>,
    headers: &[String],
    jwt_payload: Option<&str>,
    peers: &[String],
    cluster_role: Option<&str>,
    output: Output,
) -> Result<(), Failure> {
    let mut configs = load(io.stdin, &[file.to_string()], pick)?;
    if configs.len() > 1 {
        let origins: Vec<&str> = configs.iter().map(|(origin, _)| origin.as_str()).collect();
        return Err(Failure(EXIT_USAGE, format!("{file} holds {} configurations; choose one with --pick: {}", configs.len(), origins.join("; "))));
    }
    let Some((origin, config)) = configs.pop() else {
        return Err(Failure(EXIT_INVALID, format!("no configuration in {file}")));
    };
    let mut request = Request::default();
    for line in headers {
        request.headers.push(explain::parse_header(line).map_err(|e| Failure(EXIT_USAGE, e))?);
    }
    if !request.headers.iter().any(|(name, _)| name == ":authority") {
        request.headers.insert(0, (":authority".to_string(), "localhost".to_string()));
    }
    for peer in peers {
        explain::apply_peer(&mut request, peer);
    }
    if let Some(text) = jwt_payload {
        let text = match text.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path).map_err(|e| Failure(EXIT_USAGE, format!("{path}: {e}")))?,
            None => text.to_string(),
        };
        let payload = serde_json::from_str(&text).map_err(|e| Failure(EXIT_USAGE, format!("--jwt-payload: not JSON: {e}")))?;
        request.jwt_payload = Some(payload);
    }
    let (rules, rules_from) = match cluster_role {
        Some(path) => (
            ImpersonationRules::from_cluster_role_file(path).map_err(|e| Failure(EXIT_USAGE, e))?,
            format!("the ClusterRole(s) in {path}"),
        ),
        None => (
            simulate::needed_rules(config.identity.as_ref()),
            "exactly what `kiali-header-auth rbac` prints for this configuration (--cluster-role FILE to use yours)".to_string(),
        ),
    };
    let explanation = explain::explain(&origin, &config, &request, &rules, &rules_from);
    if output == Output::Json {
        io.emit(&format!("{}\n", serde_json::to_string_pretty(&explanation).unwrap_or_default()));
    } else {
        io.emit(&render::explanation(&explanation));
    }
    Ok(())
}

fn run_rbac(io: &mut Io<'_>, files: &[String]) -> Result<(), Failure> {
    let configs = load(io.stdin, files, None)?;
    io.emit(&rbac::cluster_role_yaml(&configs));
    Ok(())
}
