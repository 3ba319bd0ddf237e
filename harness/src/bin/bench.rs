//! `make bench`: throughput and latency of Envoy with no filter, with an equivalent Lua filter,
//! and with kiali-header-auth (full impersonation and strip-only), on a `direct_response` route
//! and on a proxied route, measured side by side with wrk. See `bench/run.sh` and `bench --help`.
//!
//! Layout (one run of this binary):
//! - one stand-in `TokenService` for the whole bench (it counts every token fetch);
//! - a Lua-vs-wasm equivalence check against an `EchoUpstream` (both must hand the upstream the
//!   same `Impersonate-*` headers, replace `Authorization`, and refuse a request without user);
//! - one upstream Envoy (`direct_response`, 1 worker) behind the proxied route: a second Envoy is
//!   faster and steadier than the threaded `EchoUpstream`;
//! - one Envoy under test per (route, variant), `--concurrency 1`, all started before the first
//!   round and alive to the end, so each full-impersonation process fetches its token once;
//! - a warm-up run per Envoy, then `rounds` rounds round-robin over all of them; medians;
//! - on 2+ CPUs the Envoy under test is pinned to the first CPU, wrk and the upstream Envoy to
//!   the second, so a run measures one worker on one core.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use harness::bench::report::{self, Memory, Meta, Series, Tokens};
use harness::bench::{procfs, wrk, wrk_script_headers, wrk_script_path};
use harness::{
    client, paths, ClientRequest, EchoUpstream, Envoy, EnvoyConfig, Filter, TokenService,
};

const STAT: &str = "wasmcustom.kiali_header_auth.";
const TOKEN_CLUSTER: &str = "outbound|443||kubernetes.default.svc.cluster.local";
const BOOTSTRAP: &str = "bench-bootstrap-bearer";
const LUA_TOKEN: &str = "kha-lua-cached-token";

/// Throughput and latency: no filter vs. an equivalent Lua filter vs. kiali-header-auth.
#[derive(clap::Parser, Debug)]
#[command(name = "bench", after_help = "Environment: ENVOY_BIN (the Envoy binary), KHA_WASM (the filter).")]
struct Opts {
    /// Measured rounds, round-robin over every variant and route (min 1)
    #[arg(long, value_name = "N", default_value_t = 5)]
    rounds: usize,
    /// Seconds per measured wrk run (min 1)
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = seconds)]
    duration: Duration,
    /// Seconds of the warm-up run per Envoy
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = seconds)]
    warmup: Duration,
    /// wrk connections (min 1)
    #[arg(long, value_name = "N", default_value_t = 20)]
    connections: u32,
    /// wrk threads (min 1)
    #[arg(long, value_name = "N", default_value_t = 1)]
    threads: u32,
    /// wrk binary
    #[arg(long, value_name = "PATH", default_value = "wrk")]
    wrk: PathBuf,
    /// wrk script
    #[arg(long, value_name = "PATH", default_value_os_t = paths::repo_root().join("bench/request.lua"))]
    script: PathBuf,
    /// The equivalent Lua filter
    #[arg(long, value_name = "PATH", default_value_os_t = paths::repo_root().join("bench/equivalent.lua"))]
    lua: PathBuf,
    /// The strip-only Lua filter
    #[arg(long, value_name = "PATH", default_value_os_t = paths::repo_root().join("bench/strip_only.lua"))]
    lua_strip: PathBuf,
    /// Another build of the filter, measured in the same run as `wasm (NAME)` variants (full and
    /// strip-only; keys NAME_full, NAME_strip; NAME defaults to compare): an A/B of builds; may
    /// be repeated
    #[arg(long, value_name = "[NAME=]PATH", value_parser = parse_compare_wasm)]
    compare_wasm: Vec<(String, PathBuf)>,
    /// Only this route: direct_response (or direct) or proxied [default: both]
    #[arg(long, value_name = "ROUTE", value_parser = parse_route)]
    route: Option<RouteKind>,
    /// Only these variants, comma-separated keys (none,lua,lua_strip,wasm_full,wasm_strip,
    /// compare_full,compare_strip); `none` and `lua` are always kept
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = trimmed)]
    variants: Option<Vec<String>>,
    /// Where latest.md and latest.json go
    #[arg(long, value_name = "DIR", default_value_os_t = paths::repo_root().join("bench/results"))]
    out: PathBuf,
    /// Do not pin Envoy / wrk to CPUs
    #[arg(long)]
    no_pin: bool,
    /// Total time the bench may wait, before runs, for other processes to leave the CPUs alone
    /// (0: never wait)
    #[arg(long, value_name = "SECS", default_value = "90", value_parser = seconds)]
    quiet_wait: Duration,
}

impl Opts {
    /// `--route`, or both routes.
    fn routes(&self) -> Vec<RouteKind> {
        self.route.map_or_else(|| vec![RouteKind::Direct, RouteKind::Proxied], |route| vec![route])
    }
}

fn seconds(value: &str) -> Result<Duration, String> {
    value.parse().map(Duration::from_secs).map_err(|_| format!("not a number: {value}"))
}

fn trimmed(value: &str) -> Result<String, String> {
    Ok(value.trim().to_string())
}

fn parse_compare_wasm(value: &str) -> Result<(String, PathBuf), String> {
    let (name, file) = value.split_once('=').unwrap_or(("compare", value));
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!("name {name:?} must be letters, digits, _"));
    }
    Ok((name.to_string(), PathBuf::from(file)))
}

fn parse_route(value: &str) -> Result<RouteKind, String> {
    match value {
        "direct_response" | "direct" => Ok(RouteKind::Direct),
        "proxied" => Ok(RouteKind::Proxied),
        _ => Err(format!("direct_response or proxied, not {value}")),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    None,
    Lua,
    LuaStrip,
    WasmFull,
    WasmStrip,
    /// The same two jobs with the n-th `--compare-wasm` build.
    CompareFull(usize),
    CompareStrip(usize),
}

const VARIANTS: [Variant; 5] = [
    Variant::None,
    Variant::Lua,
    Variant::LuaStrip,
    Variant::WasmFull,
    Variant::WasmStrip,
];

thread_local! {
    /// Names of the `--compare-wasm` builds, for variant keys and labels.
    static COMPARE_NAMES: std::cell::RefCell<Vec<&'static str>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn compare_name(index: usize) -> &'static str {
    COMPARE_NAMES.with(|names| names.borrow().get(index).copied().unwrap_or("compare"))
}

/// A string for the life of the process (a handful of variant keys and labels per run).
fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

impl Variant {
    fn key(self) -> &'static str {
        match self {
            Variant::None => report::NONE,
            Variant::Lua => report::LUA,
            Variant::LuaStrip => report::LUA_STRIP,
            Variant::WasmFull => "wasm_full",
            Variant::WasmStrip => "wasm_strip",
            Variant::CompareFull(i) => leak(format!("{}_full", compare_name(i))),
            Variant::CompareStrip(i) => leak(format!("{}_strip", compare_name(i))),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Variant::None => "no filter",
            Variant::Lua => "Lua (equivalent)",
            Variant::LuaStrip => "Lua strip-only (equivalent)",
            Variant::WasmFull => "wasm: full impersonation",
            Variant::WasmStrip => "wasm: strip-only",
            Variant::CompareFull(i) => leak(format!("wasm ({}): full impersonation", compare_name(i))),
            Variant::CompareStrip(i) => leak(format!("wasm ({}): strip-only", compare_name(i))),
        }
    }

    fn has_token_source(self) -> bool {
        matches!(self, Variant::WasmFull | Variant::CompareFull(_))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RouteKind {
    Direct,
    Proxied,
}

impl RouteKind {
    fn key(self) -> &'static str {
        match self {
            RouteKind::Direct => "direct_response",
            RouteKind::Proxied => "proxied",
        }
    }
}

/// The full-impersonation configuration: oauth2-proxy preset + Kubernetes TokenRequest.
fn full_config() -> String {
    format!(
        r#"{{"identity":{{"preset":"oauth2-proxy"}},"token_source":{{"type":"kubernetes_token_request","cluster":"{TOKEN_CLUSTER}","namespace":"kiali-auth","service_account":"kiali-impersonator","expiration_seconds":600,"credential_env":"TOKEN_REQUESTER_BEARER"}}}}"#
    )
}

fn full_filter() -> Filter {
    Filter::Wasm {
        plugin_config: full_config(),
        vm_env: vec![("TOKEN_REQUESTER_BEARER".into(), BOOTSTRAP.into())],
        fail_open: false,
    }
}

fn filter_for(variant: Variant, lua: &str, lua_strip: &str) -> Filter {
    match variant {
        Variant::None => Filter::None,
        Variant::Lua => Filter::lua(lua),
        Variant::LuaStrip => Filter::lua(lua_strip),
        Variant::WasmFull | Variant::CompareFull(_) => full_filter(),
        Variant::WasmStrip | Variant::CompareStrip(_) => Filter::wasm(""),
    }
}

/// Starts an Envoy for the bench: log level `info` without the tests' `wasm:debug`, so every
/// variant runs as in production.
fn start_envoy(cfg: &EnvoyConfig) -> Result<Envoy, String> {
    Envoy::try_start(&cfg.clone().wasm_debug_log(false))
}

fn wait_for_token(envoy: &Envoy) -> Result<(), String> {
    let name = format!("{STAT}token_fetch.success");
    match envoy.wait_for_stat(&name, 1, Duration::from_secs(15)) {
        Some(n) if n >= 1 => Ok(()),
        other => Err(format!(
            "{name} is {other:?} after 15 s; Envoy log:\n{}",
            envoy.log()
        )),
    }
}

fn token_successes(envoy: &Envoy) -> u64 {
    envoy
        .stat(&format!("{STAT}token_fetch.success"))
        .unwrap_or(0)
}

fn request(path: &str, headers: &[(String, String)]) -> ClientRequest {
    headers
        .iter()
        .fold(ClientRequest::get(path), |r, (n, v)| r.header(n, v))
}

/// What the upstream saw that matters for the comparison.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    impersonate: Vec<(String, String)>,
    forwarded: Vec<String>,
    authorization: Vec<String>,
}

fn seen(req: &harness::RawRequest) -> Seen {
    let lower = |b: &[u8]| String::from_utf8_lossy(b).to_ascii_lowercase();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut impersonate: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(n, _)| lower(n).starts_with("impersonate-"))
        .map(|(n, v)| (lower(n), text(v)))
        .collect();
    impersonate.sort();
    Seen {
        impersonate,
        forwarded: req
            .headers
            .iter()
            .map(|(n, _)| lower(n))
            .filter(|n| {
                n.starts_with("x-forwarded-user")
                    || n.starts_with("x-forwarded-groups")
                    || n.starts_with("x-forwarded-email")
            })
            .collect(),
        authorization: req
            .headers
            .iter()
            .filter(|(n, _)| lower(n) == "authorization")
            .map(|(_, v)| text(v))
            .collect(),
    }
}

/// Sends the bench request through the Lua filter and through the wasm filter (full mode) to an
/// echo upstream and compares what the upstream received; then a request without a user.
fn equivalence_check(
    tokens: &TokenService,
    lua: &str,
    path: &str,
    headers: &[(String, String)],
    acct: &mut Tokens,
) -> Result<String, String> {
    let echo = EchoUpstream::start();
    let lua_envoy = start_envoy(&EnvoyConfig::proxy(echo.addr()).filter(Filter::lua(lua)))?;
    let wasm_envoy = start_envoy(
        &EnvoyConfig::proxy(echo.addr())
            .token_cluster(TOKEN_CLUSTER, tokens.addr())
            .filter(full_filter()),
    )?;
    acct.processes += 1;
    let result = (|| {
        wait_for_token(&wasm_envoy)?;
        let req = request(path, headers);
        let mut views = Vec::new();
        for (name, p) in [("Lua", &lua_envoy), ("wasm", &wasm_envoy)] {
            echo.clear();
            let r = client::send(p.addr(), &req).map_err(|e| format!("{name}: {e}"))?;
            if r.status != 200 {
                return Err(format!("{name}: status {} {}", r.status, r.text()));
            }
            let got = echo
                .last()
                .ok_or_else(|| format!("{name}: the upstream got nothing"))?;
            views.push(seen(&got));
        }
        let (l, w) = (&views[0], &views[1]);
        let issued = tokens.issued();
        let token = issued.last().map(|t| t.token.clone()).unwrap_or_default();
        let mut problems = Vec::new();
        if l.impersonate != w.impersonate {
            problems.push(format!(
                "Impersonate-* differ: Lua {:?} vs wasm {:?}",
                l.impersonate, w.impersonate
            ));
        }
        if !l.impersonate.iter().any(|(n, _)| n == "impersonate-user") {
            problems.push("no impersonate-user".into());
        }
        if !l.forwarded.is_empty() || !w.forwarded.is_empty() {
            problems.push(format!(
                "source headers left: Lua {:?}, wasm {:?}",
                l.forwarded, w.forwarded
            ));
        }
        if l.authorization != [format!("Bearer {LUA_TOKEN}")] {
            problems.push(format!("Lua Authorization {:?}", l.authorization));
        }
        if w.authorization != [format!("Bearer {token}")] {
            problems.push(format!(
                "wasm Authorization {:?} (issued {token})",
                w.authorization
            ));
        }
        let anonymous: Vec<(String, String)> = headers
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("x-forwarded-user"))
            .cloned()
            .collect();
        for (name, p) in [("Lua", &lua_envoy), ("wasm", &wasm_envoy)] {
            echo.clear();
            let r = client::send(p.addr(), &request(path, &anonymous))
                .map_err(|e| format!("{name}: {e}"))?;
            let reason = r
                .json()
                .get("reason")
                .and_then(|v| v.as_str().map(str::to_string));
            if r.status != 401 || reason.as_deref() != Some("identity_missing") || echo.count() != 0
            {
                problems.push(format!(
                    "{name} without user: status {}, reason {reason:?}, upstream saw {}",
                    r.status,
                    echo.count()
                ));
            }
        }
        if problems.is_empty() {
            let groups = w
                .impersonate
                .iter()
                .filter(|(n, _)| n == "impersonate-group")
                .count();
            let names: Vec<String> = w
                .impersonate
                .iter()
                .map(|(n, v)| format!("{n}: {v}"))
                .collect();
            Ok(format!(
                "passed: both hand the upstream the same {} `Impersonate-*` headers ({}; {groups} groups), their own `Authorization`, no source or spoofed headers; both answer 401 `identity_missing` without a user",
                w.impersonate.len(),
                names.join(", ")
            ))
        } else {
            Err(format!("Lua and wasm differ: {}", problems.join("; ")))
        }
    })();
    acct.per_process_success
        .push(token_successes(&wasm_envoy));
    result
}

/// Sends the bench request through the strip-only Lua filter and the strip-only wasm filter to an
/// echo upstream: both must hand it every header but the client's `impersonate-*` ones, unchanged.
fn strip_equivalence_check(
    lua_strip: &str,
    path: &str,
    headers: &[(String, String)],
) -> Result<String, String> {
    let echo = EchoUpstream::start();
    let lua_envoy = start_envoy(&EnvoyConfig::proxy(echo.addr()).filter(Filter::lua(lua_strip)))?;
    let wasm_envoy = start_envoy(&EnvoyConfig::proxy(echo.addr()).filter(Filter::wasm("")))?;
    let lower = |b: &[u8]| String::from_utf8_lossy(b).to_ascii_lowercase();
    let mut views = Vec::new();
    for (name, p) in [("Lua strip-only", &lua_envoy), ("wasm strip-only", &wasm_envoy)] {
        echo.clear();
        let r = client::send(p.addr(), &request(path, headers))
            .map_err(|e| format!("{name}: {e}"))?;
        if r.status != 200 {
            return Err(format!("{name}: status {} {}", r.status, r.text()));
        }
        let got = echo.last().ok_or_else(|| format!("{name}: the upstream got nothing"))?;
        // What the client sent, as the upstream saw it (Envoy adds its own x-request-id etc.).
        let mut sent: Vec<(String, String)> = got
            .headers
            .iter()
            .map(|(n, v)| (lower(n), String::from_utf8_lossy(v).into_owned()))
            .filter(|(n, _)| headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(n)))
            .collect();
        sent.sort();
        views.push(sent);
    }
    let expected: Vec<String> = headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .filter(|n| !n.starts_with("impersonate-"))
        .collect();
    for view in &views {
        let names: Vec<&String> = view.iter().map(|(n, _)| n).collect();
        if names.iter().any(|n| n.starts_with("impersonate-")) || names.len() != expected.len() {
            return Err(format!("strip-only: upstream saw {view:?}, expected only {expected:?}"));
        }
    }
    if views[0] != views[1] {
        return Err(format!("strip-only Lua and wasm differ: {:?} vs {:?}", views[0], views[1]));
    }
    Ok(format!(
        "strip-only passed: both drop the spoofed `Impersonate-*` header and pass the other {} client headers unchanged",
        expected.len()
    ))
}

struct Target {
    route: RouteKind,
    variant: Variant,
    proc: Envoy,
    series: Series,
    rss_warm_kib: u64,
    runs: Vec<serde_json::Value>,
}

impl Target {
    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.proc.addr(), path)
    }
    fn name(&self) -> String {
        format!("{} / {}", self.route.key(), self.variant.label())
    }
}

struct Cpus {
    envoy: Option<usize>,
    load: Option<usize>,
}

fn pin(pid: u32, cpu: Option<usize>) {
    if let Some(c) = cpu {
        if let Err(e) = procfs::pin_process(pid, c) {
            eprintln!("bench: cannot pin pid {pid} to CPU {c}: {e}");
        }
    }
}

struct RunResult {
    wrk: wrk::WrkResult,
    envoy_cpu_s: f64,
    upstream_cpu_s: f64,
    wrk_cpu_s: f64,
    machine_busy_s: f64,
    wall_s: f64,
}

fn measure(
    t: &Target,
    upstream: &Envoy,
    args: &wrk::WrkArgs<'_>,
    path: &str,
) -> Result<RunResult, String> {
    let pid = t.proc.pid();
    let up = upstream.pid();
    let (c0, u0, m0, w0) = (
        procfs::cpu_time_ns(pid),
        procfs::cpu_time_ns(up),
        procfs::machine_busy_seconds(),
        procfs::children_cpu_seconds(),
    );
    let start = Instant::now();
    let r = wrk::run(args, &t.url(path))?;
    let wall_s = start.elapsed().as_secs_f64();
    let (c1, u1, m1, w1) = (
        procfs::cpu_time_ns(pid),
        procfs::cpu_time_ns(up),
        procfs::machine_busy_seconds(),
        procfs::children_cpu_seconds(),
    );
    let ns = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e9,
        _ => f64::NAN,
    };
    Ok(RunResult {
        wrk: r,
        envoy_cpu_s: ns(c0, c1),
        upstream_cpu_s: ns(u0, u1),
        wrk_cpu_s: w1 - w0,
        machine_busy_s: match (m0, m1) {
            (Some(a), Some(b)) => b - a,
            _ => f64::NAN,
        },
        wall_s,
    })
}

/// Other processes' CPU use (in CPUs) below which a run may start, and above which a measured
/// run is repeated once.
const QUIET: f64 = 0.15;
const NOISY: f64 = 0.30;

/// CPU use of the whole machine, in CPUs, over `d` (while the bench's own processes idle,
/// that is everything else).
fn machine_load(d: Duration) -> f64 {
    let a = procfs::machine_busy_seconds();
    std::thread::sleep(d);
    match (a, procfs::machine_busy_seconds()) {
        (Some(a), Some(b)) => (b - a) / d.as_secs_f64(),
        _ => 0.0,
    }
}

/// Waits (from `budget`) until other processes use less than [`QUIET`] CPUs.
fn wait_for_quiet(budget: &mut Duration) {
    let step = Duration::from_millis(500);
    let mut announced = false;
    while machine_load(step) >= QUIET && !budget.is_zero() {
        if !announced {
            eprintln!("bench: the machine is busy (other processes); waiting for it to calm down (budget left {:.0} s)", budget.as_secs_f64());
            announced = true;
        }
        *budget = budget.saturating_sub(step);
    }
}

fn envoy_version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let s = String::from_utf8_lossy(&o.stdout).into_owned();
            let v = s.split("version:").nth(1)?.trim().to_string();
            // "<sha>/1.40.0/Clean/RELEASE/BoringSSL" -> "1.40.0 (<sha7>, Clean/RELEASE/BoringSSL)"
            let parts: Vec<&str> = v.split('/').collect();
            Some(if parts.len() >= 3 {
                format!(
                    "{} ({}, {})",
                    parts[1],
                    &parts[0][..parts[0].len().min(12)],
                    parts[2..].join("/")
                )
            } else {
                v
            })
        })
        .unwrap_or_else(|| "unknown".into())
}

fn main() {
    let mut opts = <Opts as clap::Parser>::parse();
    opts.rounds = opts.rounds.max(1);
    opts.duration = opts.duration.max(Duration::from_secs(1));
    opts.connections = opts.connections.max(1);
    opts.threads = opts.threads.max(1);
    match run(&opts) {
        Ok(ok) => std::process::exit(if ok { 0 } else { 1 }),
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(1);
        }
    }
}

/// Runs the bench and writes the report; `Ok(false)` when the report shows a broken invariant
/// (refusals, token fetches not exactly one per process).
fn run(o: &Opts) -> Result<bool, String> {
    let t0 = Instant::now();
    let script =
        std::fs::read_to_string(&o.script).map_err(|e| format!("{}: {e}", o.script.display()))?;
    let lua = std::fs::read_to_string(&o.lua).map_err(|e| format!("{}: {e}", o.lua.display()))?;
    let lua_strip = std::fs::read_to_string(&o.lua_strip)
        .map_err(|e| format!("{}: {e}", o.lua_strip.display()))?;
    let headers = wrk_script_headers(&script);
    let path = wrk_script_path(&script).unwrap_or_else(|| "/".into());
    if headers.is_empty() {
        return Err(format!("{} sets no wrk.headers[...]", o.script.display()));
    }
    let envoy_bin = paths::envoy_bin();
    let wasm = paths::wasm_path();
    let wasm_bytes = procfs::file_size(&wasm).unwrap_or(0);

    let cpus_allowed = procfs::allowed_cpus();
    let cpus = if !o.no_pin && cpus_allowed.len() >= 2 {
        Cpus {
            envoy: Some(cpus_allowed[0]),
            load: Some(cpus_allowed[1]),
        }
    } else {
        Cpus {
            envoy: None,
            load: None,
        }
    };
    let pinning = match (cpus.envoy, cpus.load) {
        (Some(e), Some(l)) => format!(
            "Envoy under test pinned to CPU {e}; wrk and the upstream Envoy pinned to CPU {l} (of {} allowed)",
            cpus_allowed.len()
        ),
        _ => "not pinned".into(),
    };
    let mut variants: Vec<Variant> = VARIANTS.to_vec();
    for (index, (name, _)) in o.compare_wasm.iter().enumerate() {
        COMPARE_NAMES.with(|names| names.borrow_mut().push(leak(name.clone())));
        variants.extend([Variant::CompareFull(index), Variant::CompareStrip(index)]);
    }
    if let Some(only) = &o.variants {
        // The baselines every cost is computed from stay.
        variants.retain(|v| {
            matches!(v, Variant::None | Variant::Lua) || only.iter().any(|k| k == v.key())
        });
    }
    let runs_per_round = variants.len() * o.routes().len();
    let total_rounds_s = (o.duration.as_secs_f64() + 0.3) * (o.rounds * runs_per_round) as f64
        + (o.warmup.as_secs_f64() + 0.3) * runs_per_round as f64;
    eprintln!(
        "bench: {} rounds x {runs_per_round} runs of {} s (+ warm-up {} s each): about {:.0} s of load; {pinning}",
        o.rounds,
        o.duration.as_secs(),
        o.warmup.as_secs(),
        total_rounds_s
    );

    let tokens = TokenService::start();
    tokens.set_required_bearer(Some(BOOTSTRAP));
    let mut acct = Tokens::default();

    eprintln!("bench: Lua vs wasm equivalence check");
    let equivalence = equivalence_check(&tokens, &lua, &path, &headers, &mut acct)?;
    let equivalence = format!(
        "{equivalence}; {}",
        strip_equivalence_check(&lua_strip, &path, &headers)?
    );
    eprintln!("bench: equivalence {equivalence}");

    let upstream = start_envoy(&EnvoyConfig::new())?;
    pin(upstream.pid(), cpus.load);

    let mut targets: Vec<Target> = Vec::new();
    for route in o.routes() {
        for &variant in &variants {
            let mut cfg = match route {
                RouteKind::Direct => EnvoyConfig::new(),
                RouteKind::Proxied => EnvoyConfig::proxy(upstream.addr()),
            }
            .concurrency(1)
            .filter(filter_for(variant, &lua, &lua_strip));
            if variant.has_token_source() {
                cfg = cfg.token_cluster(TOKEN_CLUSTER, tokens.addr());
            }
            if let Variant::CompareFull(i) | Variant::CompareStrip(i) = variant {
                if let Some((_, file)) = o.compare_wasm.get(i) {
                    cfg = cfg.wasm_file(file);
                }
            }
            let proc = start_envoy(&cfg)
                .map_err(|e| format!("{} / {}: {e}", route.key(), variant.label()))?;
            if variant.has_token_source() {
                acct.processes += 1;
                wait_for_token(&proc)?;
            }
            pin(proc.pid(), cpus.envoy);
            targets.push(Target {
                route,
                variant,
                proc,
                series: Series {
                    route: route.key().into(),
                    variant: variant.key().into(),
                    label: variant.label().into(),
                    ..Series::default()
                },
                rss_warm_kib: 0,
                runs: Vec::new(),
            });
        }
    }
    let fetched_before_load = tokens.count();

    // Every Envoy answers the bench request with 200 before any load.
    let req = request(&path, &headers);
    for t in &targets {
        let r =
            client::send(t.proc.addr(), &req).map_err(|e| format!("{}: {e}", t.name()))?;
        if r.status != 200 {
            return Err(format!(
                "{}: the bench request got {} {}",
                t.name(),
                r.status,
                r.text()
            ));
        }
    }

    let wrk_args = |d: Duration| wrk::WrkArgs {
        bin: &o.wrk,
        script: &o.script,
        threads: o.threads,
        connections: o.connections,
        duration: d,
        cpu: cpus.load,
    };
    let measured = wrk_args(o.duration);
    let warm = wrk_args(o.warmup.max(Duration::from_secs(1)));
    if !o.warmup.is_zero() {
        eprintln!("bench: warm-up");
        for t in &targets {
            let r = measure(t, &upstream, &warm, &path)?;
            if r.wrk.non2xx > 0 {
                return Err(format!(
                    "{}: {} non-2xx responses during warm-up",
                    t.name(),
                    r.wrk.non2xx
                ));
            }
        }
    }
    for t in &mut targets {
        // Threads started lazily (during the first requests) are pinned too.
        pin(t.proc.pid(), cpus.envoy);
        t.rss_warm_kib = procfs::vm_rss_kib(t.proc.pid()).unwrap_or(0);
    }
    pin(upstream.pid(), cpus.load);

    let mut invariant_ok = true;
    let mut other_cpu: Vec<f64> = Vec::new();
    let mut quiet_budget = o.quiet_wait;
    let n = targets.len();
    let mut repeats_left = (o.rounds * n).div_ceil(4);
    let mut repeated = 0usize;
    let mut noisy_kept = 0usize;
    for round in 0..o.rounds {
        for k in 0..n {
            let i = (k + round) % n;
            let mut attempt = 0;
            let (r, other) = loop {
                wait_for_quiet(&mut quiet_budget);
                let r = measure(&targets[i], &upstream, &measured, &path)?;
                let upstream_cpu = if targets[i].route == RouteKind::Proxied {
                    r.upstream_cpu_s
                } else {
                    0.0
                };
                let other =
                    (r.machine_busy_s - r.envoy_cpu_s - upstream_cpu - r.wrk_cpu_s) / r.wall_s;
                if other >= NOISY {
                    if attempt == 0 && repeats_left > 0 {
                        eprintln!(
                            "bench: {}: other processes used {:.0}% of a CPU during the run; repeating it",
                            targets[i].name(),
                            other * 100.0
                        );
                        attempt += 1;
                        repeats_left -= 1;
                        repeated += 1;
                        continue;
                    }
                    noisy_kept += 1;
                }
                break (r, other);
            };
            let t = &mut targets[i];
            let w = &r.wrk;
            let upstream_cpu = if t.route == RouteKind::Proxied {
                r.upstream_cpu_s
            } else {
                0.0
            };
            other_cpu.push(other);
            eprintln!(
                "[round {}/{}] {:<42} {:>8.0} req/s  p50 {:>6.3} ms  p99 {:>6.3} ms  Envoy CPU {:>3.0}%  upstream {:>3.0}%  wrk {:>3.0}%  other {:>3.0}%{}",
                round + 1,
                o.rounds,
                t.name(),
                w.rps,
                w.p50_us / 1e3,
                w.p99_us / 1e3,
                r.envoy_cpu_s / r.wall_s * 100.0,
                upstream_cpu / r.wall_s * 100.0,
                r.wrk_cpu_s / r.wall_s * 100.0,
                other.max(0.0) * 100.0,
                if w.non2xx + w.socket_errors > 0 { format!("  NON-2XX {} SOCKET ERRORS {}", w.non2xx, w.socket_errors) } else { String::new() }
            );
            if w.non2xx > 0 {
                invariant_ok = false;
            }
            t.series.rps.push(w.rps);
            t.series.p50_us.push(w.p50_us);
            t.series.p99_us.push(w.p99_us);
            t.series.envoy_cpu_us_per_req.push(if w.requests > 0 {
                r.envoy_cpu_s * 1e6 / w.requests as f64
            } else {
                f64::NAN
            });
            t.series.envoy_cpu_util.push(r.envoy_cpu_s / r.wall_s);
            t.runs.push(serde_json::json!({
                "round": round + 1, "rps": w.rps, "requests": w.requests, "p50_us": w.p50_us, "p90_us": w.p90_us,
                "p99_us": w.p99_us, "max_us": w.max_us, "non2xx": w.non2xx, "socket_errors": w.socket_errors,
                "envoy_cpu_s": r.envoy_cpu_s, "upstream_cpu_s": upstream_cpu, "wrk_cpu_s": r.wrk_cpu_s,
                "machine_busy_s": r.machine_busy_s, "wall_s": r.wall_s,
            }));
        }
    }

    let memory: Vec<Memory> = targets
        .iter()
        .map(|t| Memory {
            route: t.route.key().into(),
            variant: t.variant.key().into(),
            label: t.variant.label().into(),
            rss_after_warmup_kib: t.rss_warm_kib,
            rss_at_end_kib: procfs::vm_rss_kib(t.proc.pid()).unwrap_or(0),
        })
        .collect();
    for t in &targets {
        if t.variant.has_token_source() {
            acct.per_process_success
                .push(token_successes(&t.proc));
        }
    }
    let fetched_during_load = tokens.count() - fetched_before_load;

    // Marginal memory of one more worker: the same pair at --concurrency 2.
    eprintln!("bench: memory at --concurrency 2");
    let c2 = (|| -> Result<(u64, u64), String> {
        let none = start_envoy(&EnvoyConfig::new().concurrency(2))?;
        let full = start_envoy(
            &EnvoyConfig::new()
                .concurrency(2)
                .token_cluster(TOKEN_CLUSTER, tokens.addr())
                .filter(full_filter()),
        )?;
        acct.processes += 1;
        let res = (|| {
            wait_for_token(&full)?;
            let warm2 = wrk::WrkArgs {
                connections: o.connections,
                cpu: None,
                ..wrk_args(Duration::from_secs(2))
            };
            for p in [&none, &full] {
                let r = wrk::run(&warm2, &format!("http://{}{}", p.addr(), path))?;
                if r.non2xx > 0 {
                    return Err(format!("{} non-2xx at --concurrency 2", r.non2xx));
                }
            }
            Ok((
                procfs::vm_rss_kib(none.pid()).unwrap_or(0),
                procfs::vm_rss_kib(full.pid()).unwrap_or(0),
            ))
        })();
        acct.per_process_success.push(token_successes(&full));
        res
    })();
    acct.fetches_received = tokens.count();
    let bad_fetches: Vec<String> = tokens
        .requests()
        .iter()
        .filter(|r| {
            !(r.method == "POST"
                && r.path
                    .ends_with("/serviceaccounts/kiali-impersonator/token"))
        })
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();

    let wall = t0.elapsed().as_secs_f64();
    let series: Vec<Series> = targets.iter().map(|t| t.series.clone()).collect();
    let summaries = report::summarize(&series);

    let mib = |k: f64| k / 1024.0;
    let rss = |route: RouteKind, v: Variant, end: bool| {
        memory
            .iter()
            .find(|m| m.route == route.key() && m.variant == v.key())
            .map(|m| if end { m.rss_at_end_kib } else { m.rss_after_warmup_kib } as f64)
            .unwrap_or(f64::NAN)
    };
    let vm1 = rss(RouteKind::Direct, Variant::WasmFull, false)
        - rss(RouteKind::Direct, Variant::None, false);
    let mut extra = vec![format!(
        "Wasm VM memory, `--concurrency 1` (direct_response route, full impersonation, after warm-up): **{:+.2} MiB** of VmRSS over the \
         no-filter Envoy. At concurrency 1 this holds the module and two VM instances (Envoy keeps one on the main thread besides the worker's).",
        mib(vm1)
    )];
    match c2 {
        Ok((none2, full2)) => {
            let vm2 = full2 as f64 - none2 as f64;
            extra.push(format!(
                "At `--concurrency 2` (after 2 s of load): {:+.2} MiB; so each additional worker adds about **{:+.2} MiB** (difference of the two deltas).",
                mib(vm2),
                mib(vm2 - vm1)
            ));
        }
        Err(e) => extra.push(format!("`--concurrency 2` memory measurement failed: {e}")),
    }
    extra.push(String::new());
    extra.push(format!(
        "Token fetches: {} before the first measured run (the warm-up and rounds added {}), {} in all including the equivalence check and the \
         `--concurrency 2` run{}.",
        fetched_before_load,
        fetched_during_load,
        acct.fetches_received,
        if bad_fetches.is_empty() { String::new() } else { format!("; unexpected calls: {bad_fetches:?}") }
    ));
    let mut oc = other_cpu.clone();
    oc.sort_by(|a, b| a.total_cmp(b));
    extra.push(format!(
        "Background: processes other than the Envoy under test, the upstream Envoy and wrk used {:.0}% of a CPU on median during the measured \
         runs (max {:.0}%); a high value means the machine was not quiet and the numbers are noisier.",
        report::median(&oc).max(0.0) * 100.0,
        oc.last().copied().unwrap_or(f64::NAN).max(0.0) * 100.0
    ));
    extra.push(format!(
        "Runs repeated because other processes used ≥ {:.0}% of a CPU: {repeated}; noisy runs kept (repeat budget spent or still noisy): {noisy_kept}; \
         time spent waiting for a quiet machine: {:.0} s.",
        NOISY * 100.0,
        (o.quiet_wait - quiet_budget).as_secs_f64()
    ));
    if report::median(&oc) >= NOISY {
        extra.push("**Warning: the machine was busy during most runs; these numbers are not reliable. Run `make bench` again on a quiet machine.**".into());
    }
    extra.push(format!(
        "Load average at the end: {}.",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    ));

    let meta = Meta {
        date: harness::time::rfc3339(SystemTime::now()),
        nproc: procfs::nproc(),
        cpu_model: procfs::cpu_model(),
        mem_total_kib: procfs::mem_total_kib(),
        envoy_version: envoy_version(&envoy_bin),
        wasm_path: wasm
            .strip_prefix(paths::repo_root())
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| wasm.display().to_string()),
        wasm_bytes,
        wrk_command: format!("wrk --latency -t{} -c{} -d{}s -s bench/request.lua", o.threads, o.connections, o.duration.as_secs()),
        rounds: o.rounds,
        warmup: format!("{} s", o.warmup.as_secs()),
        pinning,
        upstream: "a second Envoy (`direct_response` 200 \"ok\", `--concurrency 1`) — faster and steadier than the threaded EchoUpstream".into(),
        request: headers.clone(),
        equivalence: equivalence.clone(),
        wall_seconds: wall,
    };
    let md = report::markdown(
        &meta,
        &summaries,
        &memory,
        &acct,
        Variant::WasmFull.key(),
        &extra,
    );
    let runs: BTreeMap<String, Vec<serde_json::Value>> = targets
        .iter()
        .map(|t| {
            (
                format!("{}/{}", t.route.key(), t.variant.key()),
                t.runs.clone(),
            )
        })
        .collect();
    let json = serde_json::json!({
        "meta": meta, "summaries": summaries, "series": series, "memory": memory, "tokens": acct, "runs": runs,
        "vm_memory_kib_concurrency_1": vm1,
    });
    std::fs::create_dir_all(&o.out).map_err(|e| format!("{}: {e}", o.out.display()))?;
    std::fs::write(o.out.join("latest.md"), &md).map_err(|e| e.to_string())?;
    std::fs::write(
        o.out.join("latest.json"),
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    eprintln!(
        "bench: wrote {} and latest.json ({wall:.0} s)",
        o.out.join("latest.md").display()
    );

    if !acct.ok() || !bad_fetches.is_empty() {
        eprintln!(
            "bench: token fetches are not exactly one per Envoy process with a token source: {} fetches, {} processes, per process {:?}",
            acct.fetches_received, acct.processes, acct.per_process_success
        );
        invariant_ok = false;
    }
    if !invariant_ok {
        eprintln!("bench: the report shows a broken invariant (see above)");
    }
    Ok(invariant_ok)
}
