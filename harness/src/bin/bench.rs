//! `make bench`: the cost of kiali-header-auth (full impersonation and strip-only) next to no
//! filter and next to equivalent Lua filters, on a `direct_response` route and a proxied route.
//! See `bench/README.md` and `bench --help`.
//!
//! One run:
//! - a Lua-vs-wasm equivalence check against an `EchoUpstream` (both do the same job);
//! - timing rounds (unless `--instructions-only`): one Envoy per (route, variant), `--concurrency
//!   1`, all started first and alive to the end; a warm-up each, then `rounds` rounds of wrk
//!   round-robin; medians. On 2+ CPUs the Envoy under test is pinned to the first CPU, wrk and
//!   the upstream Envoy to the second;
//! - with `--instructions`: instructions per request of each variant under callgrind
//!   (deterministic, unlike wall-clock rounds on a shared machine).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use harness::bench::callgrind::{self, GrindEnvoy};
use harness::bench::report::{self, Instructions, Series, Tokens};
use harness::bench::{procfs, wrk, wrk_script_headers, wrk_script_path};
use harness::{client, paths, ClientRequest, EchoUpstream, Envoy, EnvoyConfig, Filter, TokenService};

const STAT: &str = "wasmcustom.kiali_header_auth.token_fetch.success";
const TOKEN_CLUSTER: &str = "outbound|443||kubernetes.default.svc.cluster.local";
const BOOTSTRAP: &str = "bench-bootstrap-bearer";
const LUA_TOKEN: &str = "kha-lua-cached-token";

/// No filter vs. equivalent Lua filters vs. kiali-header-auth: time rounds and instructions.
#[derive(clap::Parser, Debug)]
// A repeated option takes its last value: bench/run.sh passes `--out` first, a caller may override it.
#[command(name = "bench", args_override_self = true, after_help = "Environment: ENVOY_BIN (the Envoy binary), KHA_WASM (the filter).")]
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
    /// wrk script (its `done()` must print the `KHA_BENCH` line, as bench/request.lua does)
    #[arg(long, value_name = "PATH", default_value_os_t = paths::repo_root().join("bench/request.lua"))]
    script: PathBuf,
    /// The equivalent Lua filter
    #[arg(long, value_name = "PATH", default_value_os_t = paths::repo_root().join("bench/equivalent.lua"))]
    lua: PathBuf,
    /// The strip-only Lua filter
    #[arg(long, value_name = "PATH", default_value_os_t = paths::repo_root().join("bench/strip_only.lua"))]
    lua_strip: PathBuf,
    /// Another build of the filter, measured in the same run as `wasm (NAME)` variants (full and
    /// strip-only; keys NAME_full, NAME_strip; NAME defaults to compare); may be repeated
    #[arg(long, value_name = "[NAME=]PATH", value_parser = parse_compare_wasm)]
    compare_wasm: Vec<(String, PathBuf)>,
    /// Only this route: direct_response (or direct) or proxied [default: both]
    #[arg(long, value_name = "ROUTE", value_parser = parse_route)]
    route: Option<&'static str>,
    /// Only these variants, comma-separated keys (none,lua,lua_strip,wasm_full,wasm_identity_full,wasm_strip,
    /// NAME_full,NAME_strip); `none` and `lua` are always kept
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    variants: Option<Vec<String>>,
    /// Where latest.md and latest.json go
    #[arg(long, value_name = "DIR", default_value_os_t = paths::repo_root().join("bench/results"))]
    out: PathBuf,
    /// Do not pin Envoy / wrk to CPUs
    #[arg(long)]
    no_pin: bool,
    /// Also measure instructions per request under callgrind (direct_response route; minutes)
    #[arg(long)]
    instructions: bool,
    /// Only the callgrind measurement, no time rounds (a quick, deterministic A/B of builds)
    #[arg(long)]
    instructions_only: bool,
    /// Seconds of load per variant under callgrind
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds)]
    instructions_duration: Duration,
}

fn seconds(value: &str) -> Result<Duration, String> {
    value.parse().map(Duration::from_secs).map_err(|_| format!("not a number: {value}"))
}

fn parse_compare_wasm(value: &str) -> Result<(String, PathBuf), String> {
    let (name, file) = value.split_once('=').unwrap_or(("compare", value));
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!("name {name:?} must be letters, digits, _"));
    }
    Ok((name.to_string(), PathBuf::from(file)))
}

fn parse_route(value: &str) -> Result<&'static str, String> {
    match value {
        "direct_response" | "direct" => Ok(DIRECT),
        "proxied" => Ok(PROXIED),
        _ => Err(format!("direct_response or proxied, not {value}")),
    }
}

const DIRECT: &str = "direct_response";
const PROXIED: &str = "proxied";

/// One filter setup; `wasm` overrides the module (a `--compare-wasm` build).
#[derive(Clone, Debug)]
struct Variant {
    key: String,
    label: String,
    filter: Filter,
    wasm: Option<PathBuf>,
}

impl Variant {
    fn new(key: &str, label: &str, filter: Filter, wasm: Option<&PathBuf>) -> Self {
        Variant { key: key.into(), label: label.into(), filter, wasm: wasm.cloned() }
    }

    /// Full impersonation: the filter holds a token from the stand-in token service.
    fn has_token_source(&self) -> bool {
        matches!(&self.filter, Filter::Wasm { plugin_config, .. } if !plugin_config.is_empty())
    }

    /// Starts an Envoy with this variant on `base` (a route); see [`start_envoy`].
    fn start(&self, base: EnvoyConfig, tokens: &TokenService, acct: &mut Tokens) -> Result<Envoy, String> {
        start_envoy(&self.config(base, tokens), acct).map_err(|e| format!("{}: {e}", self.label))
    }

    fn config(&self, base: EnvoyConfig, tokens: &TokenService) -> EnvoyConfig {
        let cfg = base.concurrency(1).filter(self.filter.clone());
        let cfg = if let Some(file) = &self.wasm { cfg.wasm_file(file) } else { cfg };
        if self.has_token_source() {
            cfg.token_cluster(TOKEN_CLUSTER, tokens.addr())
        } else {
            cfg
        }
    }
}

/// Every variant: baselines, the current build's two jobs, each `--compare-wasm` build's two jobs.
fn variants(o: &Opts, lua: &str, lua_strip: &str) -> Vec<Variant> {
    let mut all = vec![
        Variant::new(report::NONE, "no filter", Filter::None, None),
        Variant::new(report::LUA, "Lua (equivalent)", Filter::lua(lua), None),
        Variant::new(report::LUA_STRIP, "Lua strip-only (equivalent)", Filter::lua(lua_strip), None),
        Variant::new("wasm_full", "wasm: full impersonation", full_filter(), None),
        Variant::new("wasm_identity_full", "wasm: full impersonation, per_identity", full_filter_with(r#","per_identity":true"#), None),
        Variant::new("wasm_strip", "wasm: strip-only", Filter::wasm(""), None),
    ];
    for (name, file) in &o.compare_wasm {
        all.push(Variant::new(&format!("{name}_full"), &format!("wasm ({name}): full impersonation"), full_filter(), Some(file)));
        all.push(Variant::new(&format!("{name}_strip"), &format!("wasm ({name}): strip-only"), Filter::wasm(""), Some(file)));
    }
    all
}

/// The full-impersonation filter: oauth2-proxy preset + Kubernetes TokenRequest.
fn full_filter() -> Filter {
    full_filter_with("")
}

/// [`full_filter`] with more `token_source` fields (`per_identity`: the request path computes the
/// identity key and looks its token up).
fn full_filter_with(token_source_extra: &str) -> Filter {
    let config = format!(
        r#"{{"identity":{{"preset":"oauth2-proxy"}},"token_source":{{"type":"kubernetes_token_request","cluster":"{TOKEN_CLUSTER}","namespace":"kiali-auth","service_account":"kiali-impersonator","expiration_seconds":3600,"credential_env":"TOKEN_REQUESTER_BEARER"{token_source_extra}}}}}"#
    );
    Filter::Wasm { plugin_config: config, vm_env: vec![("TOKEN_REQUESTER_BEARER".into(), BOOTSTRAP.into())], fail_open: false }
}

/// The bench request (the wrk script's path and headers). A `per_identity` variant fetches its
/// identity's token on that identity's first request, not at start: this request primes it.
static PRIME: OnceLock<ClientRequest> = OnceLock::new();

fn per_identity(cfg: &EnvoyConfig) -> bool {
    cfg.filters.iter().any(|f| matches!(f, Filter::Wasm { plugin_config, .. } if plugin_config.contains(r#""per_identity":true"#)))
}

/// Sends the bench request once to a `per_identity` Envoy, so its identity's token is fetched
/// before the measurement (the answer does not matter: a request that waited out
/// `max_request_wait_ms` has still started the fetch).
fn prime(cfg: &EnvoyConfig, envoy: &Envoy) {
    if let (true, Some(request)) = (per_identity(cfg), PRIME.get()) {
        let _ = client::send(envoy.addr(), request);
    }
}

/// Starts an Envoy without the tests' `wasm:debug` log, so every variant runs as in production;
/// one with a token source is ready once it holds its token.
fn start_envoy(cfg: &EnvoyConfig, acct: &mut Tokens) -> Result<Envoy, String> {
    let envoy = Envoy::try_start(&cfg.clone().wasm_debug_log(false))?;
    if !cfg.clusters.is_empty() {
        acct.processes += 1;
        prime(cfg, &envoy);
        if envoy.wait_for_stat(STAT, 1, Duration::from_secs(15)).unwrap_or(0) < 1 {
            return Err(format!("{STAT} still 0 after 15 s; Envoy log:\n{}", envoy.log()));
        }
    }
    Ok(envoy)
}

/// Whether a (lower-cased name, value) header's name starts with one of `prefixes`.
fn named((name, _): &(String, String), prefixes: &[&str]) -> bool {
    prefixes.iter().any(|p| name.starts_with(p))
}

fn request(path: &str, headers: &[(String, String)]) -> ClientRequest {
    headers.iter().fold(ClientRequest::get(path), |r, (n, v)| r.header(n, v))
}

/// The headers the upstream received for `req` through `envoy`, lower-cased names, sorted.
fn upstream_view(envoy: &Envoy, echo: &EchoUpstream, req: &ClientRequest) -> Result<Vec<(String, String)>, String> {
    echo.clear();
    let r = client::send(envoy.addr(), req).map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("status {} {}", r.status, r.text()));
    }
    let got = echo.last().ok_or("the upstream got nothing")?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut view: Vec<(String, String)> = got.headers.iter().map(|(n, v)| (text(n).to_ascii_lowercase(), text(v))).collect();
    view.sort();
    Ok(view)
}

/// Proves the Lua filters and the wasm filter do the same job: the bench request through each to
/// an echo upstream must arrive with the same `Impersonate-*` headers, their own `Authorization`,
/// no source or spoofed headers (strip-only: every other client header unchanged), and a request
/// without a user must be refused alike.
fn equivalence_check(ctx: &Context, headers: &[(String, String)], acct: &mut Tokens) -> Result<String, String> {
    let echo = EchoUpstream::start();
    let start = |key: &str, acct: &mut Tokens| match ctx.all_variants.iter().find(|v| v.key == key) {
        Some(v) => v.start(EnvoyConfig::proxy(echo.addr()), &ctx.tokens, acct),
        None => Err(format!("no variant {key}")),
    };
    let (lua_envoy, wasm_envoy) = (start(report::LUA, acct)?, start("wasm_full", acct)?);
    let (path, tokens) = (ctx.path.as_str(), &ctx.tokens);
    let req = request(path, headers);
    let impersonate = |view: &[(String, String)]| view.iter().filter(|h| named(h, &["impersonate-"])).cloned().collect::<Vec<_>>();
    let (l, w) = (upstream_view(&lua_envoy, &echo, &req)?, upstream_view(&wasm_envoy, &echo, &req)?);
    let token = tokens.issued().last().map(|t| t.token.clone()).unwrap_or_default();
    let auth = |view: &[(String, String)]| view.iter().filter(|(n, _)| n == "authorization").map(|(_, v)| v.clone()).collect::<Vec<_>>();
    let mut problems = Vec::new();
    if impersonate(&l) != impersonate(&w) || !impersonate(&l).iter().any(|(n, _)| n == "impersonate-user") {
        problems.push(format!("Impersonate-*: Lua {:?} vs wasm {:?}", impersonate(&l), impersonate(&w)));
    }
    if l.iter().chain(&w).any(|h| named(h, &["x-forwarded-user", "x-forwarded-groups", "x-forwarded-email"])) {
        problems.push("source headers left".into());
    }
    if auth(&l) != [format!("Bearer {LUA_TOKEN}")] || auth(&w) != [format!("Bearer {token}")] {
        problems.push(format!("Authorization: Lua {:?}, wasm {:?} (issued {token})", auth(&l), auth(&w)));
    }
    let anonymous: Vec<(String, String)> = headers.iter().filter(|(n, _)| !n.eq_ignore_ascii_case("x-forwarded-user")).cloned().collect();
    for (name, envoy) in [("Lua", &lua_envoy), ("wasm", &wasm_envoy)] {
        echo.clear();
        let r = client::send(envoy.addr(), &request(path, &anonymous)).map_err(|e| format!("{name}: {e}"))?;
        let reason = r.json().get("reason").and_then(|v| v.as_str().map(str::to_string));
        if r.status != 401 || reason.as_deref() != Some("identity_missing") || echo.count() != 0 {
            problems.push(format!("{name} without user: status {}, reason {reason:?}, upstream saw {}", r.status, echo.count()));
        }
    }
    acct.per_process_success.push(wasm_envoy.stat(STAT).unwrap_or(0));

    // Strip-only: what the client sent, as the upstream saw it (Envoy adds x-request-id etc.).
    let (lua_envoy, wasm_envoy) = (start(report::LUA_STRIP, acct)?, start("wasm_strip", acct)?);
    let sent = |view: Vec<(String, String)>| {
        view.into_iter().filter(|(n, _)| headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(n))).collect::<Vec<_>>()
    };
    let (ls, ws) = (sent(upstream_view(&lua_envoy, &echo, &req)?), sent(upstream_view(&wasm_envoy, &echo, &req)?));
    let kept = headers.iter().filter(|(n, _)| !n.to_ascii_lowercase().starts_with("impersonate-")).count();
    if ls != ws || ls.len() != kept || ls.iter().any(|h| named(h, &["impersonate-"])) {
        problems.push(format!("strip-only: Lua {ls:?} vs wasm {ws:?}, expected the {kept} client headers but impersonate-*"));
    }
    if !problems.is_empty() {
        return Err(format!("Lua and wasm differ: {}", problems.join("; ")));
    }
    let names: Vec<String> = impersonate(&w).iter().map(|(n, v)| format!("{n}: {v}")).collect();
    Ok(format!(
        "passed: both hand the upstream the same `Impersonate-*` headers ({}), their own `Authorization`, no source or spoofed headers, \
         and answer 401 `identity_missing` without a user; strip-only: both drop `Impersonate-*` and pass the other {kept} client headers unchanged",
        names.join(", ")
    ))
}

/// One Envoy under test in the time rounds, with its measurements (route, variant, label).
struct Target {
    envoy: Envoy,
    series: Series,
}

/// Runs wrk against `t`; returns its result, the Envoy's CPU seconds, and the CPUs (1.0 = one
/// core busy) every process but that Envoy, the upstream Envoy (proxied route) and wrk used.
fn measure(t: &Target, upstream: &Envoy, args: &wrk::WrkArgs<'_>, path: &str) -> Result<(wrk::WrkResult, f64, f64), String> {
    let proxied = t.series.route == PROXIED;
    let read = || {
        let cpu = |pid| procfs::cpu_seconds(pid).unwrap_or(f64::NAN);
        let upstream_cpu = if proxied { cpu(upstream.pid()) } else { 0.0 };
        let busy = procfs::machine_busy_seconds().unwrap_or(f64::NAN);
        (cpu(t.envoy.pid()), busy - upstream_cpu - procfs::children_cpu_seconds())
    };
    let (before, start) = (read(), Instant::now());
    let r = wrk::run(args, &format!("http://{}{path}", t.envoy.addr()))?;
    let (after, wall_s) = (read(), start.elapsed().as_secs_f64());
    let envoy_cpu_s = after.0 - before.0;
    Ok((r, envoy_cpu_s, (after.1 - before.1 - envoy_cpu_s) / wall_s))
}

/// Everything the time rounds produce.
#[derive(Default)]
struct Rounds {
    series: Vec<Series>,
    other_cpus: Vec<f64>,
    non2xx: u64,
}

/// Starts one Envoy per (route, variant), warms each up, runs `o.rounds` rounds round-robin.
fn time_rounds(o: &Opts, ctx: &Context, cpus: (Option<usize>, Option<usize>), acct: &mut Tokens) -> Result<Rounds, String> {
    let upstream = start_envoy(&EnvoyConfig::new(), acct)?;
    procfs::pin(upstream.pid(), cpus.1);
    let routes = o.route.map_or(vec![DIRECT, PROXIED], |r| vec![r]);
    let mut targets = Vec::new();
    for route in routes {
        for variant in &ctx.variants {
            let base = if route == DIRECT { EnvoyConfig::new() } else { EnvoyConfig::proxy(upstream.addr()) };
            let envoy = variant.start(base, &ctx.tokens, acct).map_err(|e| format!("{route} / {e}"))?;
            let series = Series { route: route.into(), variant: variant.key.clone(), label: variant.label.clone(), ..Series::default() };
            targets.push(Target { envoy, series });
        }
    }
    let wrk_args = |duration: Duration| wrk::WrkArgs {
        bin: &o.wrk,
        script: &o.script,
        threads: o.threads,
        connections: o.connections,
        duration,
        cpu: cpus.1,
    };
    eprintln!("bench: warm-up");
    for t in &mut targets {
        procfs::pin(t.envoy.pid(), cpus.0);
        let (w, ..) = measure(t, &upstream, &wrk_args(o.warmup.max(Duration::from_secs(1))), &ctx.path)?;
        if w.non2xx > 0 {
            return Err(format!("{} / {}: {} non-2xx responses during warm-up", t.series.route, t.series.label, w.non2xx));
        }
        // Threads Envoy starts during the first requests get pinned too.
        procfs::pin(t.envoy.pid(), cpus.0);
        t.series.rss_kib = procfs::vm_rss_kib(t.envoy.pid()).unwrap_or(0);
    }
    let mut out = Rounds::default();
    let n = targets.len();
    for round in 0..o.rounds {
        for k in 0..n {
            // Each round starts one variant later, so no variant always follows the same one.
            let t = &mut targets[(k + round) % n];
            let (w, envoy_cpu_s, other) = measure(t, &upstream, &wrk_args(o.duration), &ctx.path)?;
            let (round, name, cpu) =
                (round + 1, format!("{} / {}", t.series.route, t.series.label), envoy_cpu_s * 1e6 / w.requests.max(1) as f64);
            eprintln!(
                "[round {round}/{}] {name:<50} {:>8.0} req/s  p50 {:>6.3} ms  p99 {:>6.3} ms  Envoy CPU {cpu:>5.1} µs/req  other {:>3.0}%  non-2xx {}",
                o.rounds,
                w.rps,
                w.p50_us / 1e3,
                w.p99_us / 1e3,
                other.max(0.0) * 100.0,
                w.non2xx
            );
            out.non2xx += w.non2xx;
            out.other_cpus.push(other);
            t.series.rps.push(w.rps);
            t.series.p50_us.push(w.p50_us);
            t.series.p99_us.push(w.p99_us);
            t.series.envoy_cpu_us_per_req.push(cpu);
        }
    }
    for t in targets {
        if t.series.variant.ends_with("_full") {
            acct.per_process_success.push(t.envoy.stat(STAT).unwrap_or(0));
        }
        out.series.push(t.series);
    }
    Ok(out)
}

/// Instructions per request of every variant on the direct_response route under callgrind. All
/// start at once (about 80 s each under valgrind), then each is measured alone: warm-up, an idle
/// window for the background rate, a load window.
/// Token fetches are counted apart (the returned note): valgrind slows a first fetch down enough
/// that it may time out and be retried, which says nothing about the filter's hot path.
fn instructions(o: &Opts, ctx: &Context) -> Result<(Vec<Instructions>, String), String> {
    const WARMUP: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(5);
    let dir = tempfile::Builder::new().prefix("kha-callgrind-").tempdir().map_err(|e| e.to_string())?;
    eprintln!("bench: starting {} Envoys under callgrind (logs and dumps in {})", ctx.variants.len(), dir.path().display());
    let fetched_before = ctx.tokens.count();
    let mut grinds = Vec::new();
    for v in &ctx.variants {
        let cfg = v.config(EnvoyConfig::new(), &ctx.tokens);
        grinds.push((v, GrindEnvoy::spawn(&cfg, dir.path(), &v.key)?, cfg));
    }
    let load = |url: &str, duration: Duration| {
        let args = wrk::WrkArgs { bin: &o.wrk, script: &o.script, threads: 1, connections: 4, duration, cpu: None };
        let r = wrk::run(&args, url)?;
        if r.non2xx > 0 {
            return Err(format!("{url}: {} non-2xx responses under callgrind", r.non2xx));
        }
        Ok(r)
    };
    // All ready before the first measurement: a process still starting would take the CPU from
    // the one measured, and too few requests would fit in its window.
    for (v, grind, cfg) in &grinds {
        grind.envoy.wait_ready(Duration::from_secs(300), None).map_err(|e| format!("{}: {e}", v.label))?;
        prime(cfg, &grind.envoy);
        if v.has_token_source() && grind.envoy.wait_for_stat(STAT, 1, Duration::from_secs(120)).unwrap_or(0) < 1 {
            return Err(format!("{}: {STAT} still 0 after 120 s under callgrind", v.label));
        }
    }
    let fetched_ready = ctx.tokens.count();
    let mut rows = Vec::new();
    for (v, grind, _) in grinds {
        let url = format!("http://{}{}", grind.envoy.addr(), ctx.path);
        load(&url, WARMUP)?;
        let since = grind.zero()?;
        std::thread::sleep(IDLE);
        let idle = grind.dump(since)?;
        let counted = || grind.counter("http.ingress.downstream_rq_total").ok_or("no http.ingress.downstream_rq_total");
        let since = grind.zero()?;
        let before = counted()?;
        load(&url, o.instructions_duration)?;
        let requests = counted()? - before;
        let window = grind.dump(since)?;
        let per_request = callgrind::per_request(window, idle, requests).ok_or(format!("{}: no requests counted", v.label))?;
        eprintln!("bench: {:<45} {requests:>6} requests  {:>7.1}k instructions/request", v.label, per_request / 1e3);
        let idle_per_second = idle.instructions as f64 / idle.seconds;
        rows.push(Instructions {
            variant: v.key.clone(),
            label: v.label.clone(),
            requests,
            per_request,
            idle_per_second,
            ..Default::default()
        });
    }
    report::compare_instructions(&mut rows);
    let processes = ctx.variants.iter().filter(|v| v.has_token_source()).count();
    let (at_start, measuring) = (fetched_ready - fetched_before, ctx.tokens.count() - fetched_ready);
    let note = format!(
        "Under callgrind, the token service received {at_start} fetch(es) while {processes} Envoy process(es) with a token source started \
         (valgrind can slow a first fetch past its timeout, and it is retried) and {measuring} during the measurements."
    );
    Ok((rows, note))
}

/// What both measurements share.
struct Context {
    /// The variants measured, and all of them (the equivalence check needs both Lua filters).
    variants: Vec<Variant>,
    all_variants: Vec<Variant>,
    path: String,
    tokens: TokenService,
    envoy_bin: PathBuf,
}

/// The version Envoy prints, e.g. `<sha>/1.40.0/Clean/RELEASE/BoringSSL`.
fn envoy_version(bin: &std::path::Path) -> String {
    let out = Command::new(bin).arg("--version").output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    out.split("version:").nth(1).unwrap_or("unknown").trim().to_string()
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

fn read(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs the bench and writes the report; `Ok(false)` when the report shows a broken invariant
/// (non-2xx responses, token fetches not exactly one per process).
fn run(o: &Opts) -> Result<bool, String> {
    let t0 = Instant::now();
    let script = read(&o.script)?;
    let headers = wrk_script_headers(&script);
    if headers.is_empty() {
        return Err(format!("{} sets no wrk.headers[...]", o.script.display()));
    }
    let tokens = TokenService::start();
    tokens.set_required_bearer(Some(BOOTSTRAP));
    let _ = PRIME.set(request(&wrk_script_path(&script).unwrap_or_else(|| "/".into()), &headers));
    let all = variants(o, &read(&o.lua)?, &read(&o.lua_strip)?);
    let keep = |v: &Variant| o.variants.as_ref().is_none_or(|only| only.iter().any(|k| k.trim() == v.key));
    let ctx = Context {
        all_variants: all.clone(),
        // `--variants` keeps a subset, plus the baselines every cost is computed from.
        variants: all.into_iter().filter(|v| v.key == report::NONE || v.key == report::LUA || keep(v)).collect(),
        path: wrk_script_path(&script).unwrap_or_else(|| "/".into()),
        tokens,
        envoy_bin: paths::envoy_bin(),
    };
    let allowed = procfs::allowed_cpus();
    let cpus = if !o.no_pin && allowed.len() >= 2 { (Some(allowed[0]), Some(allowed[1])) } else { (None, None) };
    let pinning = match cpus {
        (Some(e), Some(l)) => format!("Envoy under test pinned to CPU {e}; wrk and the upstream Envoy to CPU {l}"),
        _ => "not pinned".into(),
    };
    let mut acct = Tokens::default();

    eprintln!("bench: Lua vs wasm equivalence check");
    let equivalence = equivalence_check(&ctx, &headers, &mut acct)?;
    eprintln!("bench: equivalence {equivalence}");
    let rounds = if o.instructions_only { Rounds::default() } else { time_rounds(o, &ctx, cpus, &mut acct)? };
    acct.fetches_received = ctx.tokens.count();
    let (instructions, callgrind_note) = match o.instructions || o.instructions_only {
        true => instructions(o, &ctx)?,
        false => (Vec::new(), String::new()),
    };
    let bad_fetches: Vec<String> = ctx
        .tokens
        .requests()
        .iter()
        .filter(|r| !(r.method == "POST" && r.path.ends_with("/serviceaccounts/kiali-impersonator/token")))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    let mut extra = vec![callgrind_note];
    if !bad_fetches.is_empty() {
        extra.push(format!("Unexpected calls to the token service: {bad_fetches:?}."));
    }
    if !rounds.other_cpus.is_empty() {
        let other = report::median(&rounds.other_cpus).max(0.0) * 100.0;
        extra.push(format!(
            "Background: other processes used {other:.0}% of a CPU on median during the timed runs{}.",
            if other >= 30.0 { " — **the machine was busy: the timings are noisy; the instruction counts are not**" } else { "" }
        ));
    }
    let wasm = paths::wasm_path();
    let wasm_bytes = std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0);
    let (mem_gib, wall) = (procfs::mem_total_kib().unwrap_or(0) as f64 / 1048576.0, t0.elapsed().as_secs_f64());
    let request: Vec<String> = headers.iter().map(|(n, v)| format!("`{n}: {v}`")).collect();
    let load = match o.instructions_only {
        true => "no time rounds (`--instructions-only`)".to_string(),
        false => format!(
            "`wrk -t{} -c{} -d{}s`, {} rounds round-robin, median per variant",
            o.threads,
            o.connections,
            o.duration.as_secs(),
            o.rounds
        ),
    };
    let facts: Vec<(String, String)> = [
        ("date", harness::time::rfc3339(SystemTime::now())),
        ("machine", format!("{} CPUs, {}, {mem_gib:.1} GiB RAM", allowed.len(), procfs::cpu_model())),
        ("Envoy", envoy_version(&ctx.envoy_bin)),
        ("wasm", format!("`{}`: {wasm_bytes} bytes", wasm.strip_prefix(paths::repo_root()).unwrap_or(&wasm).display())),
        ("load", load),
        ("Envoy under test", "`--concurrency 1`, one process per variant and route; proxied: to a second Envoy's `direct_response`".into()),
        ("CPUs", pinning),
        ("request", format!("`GET {}` keep-alive, {}", ctx.path, request.join(", "))),
        ("Lua equivalence check", equivalence),
        ("bench wall time", format!("{wall:.0} s")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let summaries = report::summarize(&rounds.series);
    let md = report::markdown(&facts, &summaries, &instructions, &acct, ("wasm_full", wasm_bytes), &extra);
    let meta: serde_json::Map<String, serde_json::Value> = facts.into_iter().map(|(k, v)| (k, v.into())).collect();
    let json = serde_json::json!({
        "meta": meta, "summaries": summaries, "series": rounds.series, "tokens": acct, "instructions": instructions,
    });
    std::fs::create_dir_all(&o.out).map_err(|e| format!("{}: {e}", o.out.display()))?;
    std::fs::write(o.out.join("latest.md"), &md).map_err(|e| e.to_string())?;
    std::fs::write(o.out.join("latest.json"), serde_json::to_string_pretty(&json).unwrap_or_default()).map_err(|e| e.to_string())?;
    eprintln!("bench: wrote {} and latest.json ({wall:.0} s)", o.out.join("latest.md").display());

    let tokens_ok = acct.ok() && bad_fetches.is_empty();
    if !tokens_ok {
        eprintln!("bench: token fetches are not exactly one per Envoy process with a token source: {acct:?}");
    }
    if rounds.non2xx > 0 {
        eprintln!("bench: {} non-2xx responses during the rounds", rounds.non2xx);
    }
    Ok(tokens_ok && rounds.non2xx == 0)
}
