//! Running wrk and reading its output.
//!
//! The wrk script (`bench/request.lua`, or any `--script` with the same `done()` hook) prints one
//! exact line: `KHA_BENCH requests=.. duration_us=.. p50_us=.. p90_us=.. p99_us=.. max_us=..
//! mean_us=.. non2xx=.. connect=.. read=.. write=.. timeout=..`. wrk's own text rounds to two
//! decimals, so the driver reads only that line.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// One wrk run.
#[derive(Clone, Debug, PartialEq)]
pub struct WrkResult {
    pub requests: u64,
    /// Completed requests per second.
    pub rps: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    /// Responses with a status outside 2xx/3xx.
    pub non2xx: u64,
    /// connect + read + write + timeout errors.
    pub socket_errors: u64,
}

/// The `KHA_BENCH` line of wrk's stdout.
pub fn parse(out: &str) -> Option<WrkResult> {
    let rest = out.lines().find_map(|l| l.trim().strip_prefix("KHA_BENCH "))?;
    let kv: BTreeMap<&str, &str> = rest.split_whitespace().filter_map(|p| p.split_once('=')).collect();
    let u = |k: &str| kv.get(k).and_then(|v| v.parse::<u64>().ok());
    let f = |k: &str| kv.get(k).and_then(|v| v.parse::<f64>().ok());
    let requests = u("requests")?;
    let duration_us = u("duration_us").filter(|&d| d > 0)?;
    Some(WrkResult {
        requests,
        rps: requests as f64 / (duration_us as f64 / 1e6),
        p50_us: f("p50_us")?,
        p90_us: f("p90_us")?,
        p99_us: f("p99_us")?,
        max_us: f("max_us")?,
        non2xx: u("non2xx")?,
        socket_errors: u("connect")? + u("read")? + u("write")? + u("timeout")?,
    })
}

/// How to run wrk.
#[derive(Clone, Debug)]
pub struct WrkArgs<'a> {
    pub bin: &'a Path,
    pub script: &'a Path,
    pub threads: u32,
    pub connections: u32,
    pub duration: Duration,
    /// Pin wrk to this CPU (with `taskset`).
    pub cpu: Option<usize>,
}

/// Runs `wrk -tT -cC -dDs -s script url` and parses its output.
pub fn run(args: &WrkArgs<'_>, url: &str) -> Result<WrkResult, String> {
    let mut cmd = match args.cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string()]).arg(args.bin);
            c
        }
        None => Command::new(args.bin),
    };
    cmd.arg(format!("-t{}", args.threads))
        .arg(format!("-c{}", args.connections))
        .arg(format!("-d{}s", args.duration.as_secs().max(1)))
        .arg("-s")
        .arg(args.script)
        .arg(url)
        .stdin(Stdio::null());
    let out = cmd.output().map_err(|e| format!("cannot run {}: {e}", args.bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("wrk failed ({}):\n{stdout}{}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    parse(&stdout).ok_or_else(|| format!("no complete KHA_BENCH line in the wrk output:\n{stdout}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_exact_line() {
        let out = "Running 5s test\n  1 threads\nKHA_BENCH requests=250000 duration_us=5000000 p50_us=331 p90_us=499 \
                   p99_us=1187 max_us=5003 mean_us=351.7 non2xx=2 connect=0 read=1 write=0 timeout=3\n";
        let r = parse(out).unwrap();
        assert_eq!(r.rps, 50000.0);
        assert_eq!((r.p50_us, r.p90_us, r.p99_us, r.max_us), (331.0, 499.0, 1187.0, 5003.0));
        assert_eq!((r.requests, r.non2xx, r.socket_errors), (250000, 2, 4));
    }

    #[test]
    fn rejects_incomplete_output() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("Requests/sec: 10\n"), None);
        assert_eq!(parse("KHA_BENCH requests=x\n"), None);
        assert_eq!(parse("KHA_BENCH requests=1 duration_us=0 p50_us=1\n"), None);
    }
}
