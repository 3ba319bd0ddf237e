//! Running wrk and reading its output.
//!
//! The bench's wrk script (`bench/request.lua`) prints one exact line from its `done()` hook:
//! `KHA_BENCH requests=.. duration_us=.. p50_us=.. p90_us=.. p99_us=.. max_us=.. mean_us=..
//! non2xx=.. connect=.. read=.. write=.. timeout=..`. When that line is missing (another script),
//! the human output of `wrk --latency` is parsed instead (rounded by wrk to two decimals).

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// One wrk run.
#[derive(Clone, Debug, PartialEq)]
pub struct WrkResult {
    pub requests: u64,
    pub duration_us: u64,
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
    /// Parsed from the exact `KHA_BENCH` line (true) or from wrk's rounded text (false).
    pub exact: bool,
}

/// `"351.74us"`, `"1.20ms"`, `"2.00s"`, `"1.50m"` -> microseconds.
pub fn parse_time_us(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => return None,
    };
    Some(n * scale)
}

fn parse_exact(line: &str) -> Option<WrkResult> {
    let rest = line.trim().strip_prefix("KHA_BENCH ")?;
    let kv: BTreeMap<&str, &str> = rest
        .split_whitespace()
        .filter_map(|p| p.split_once('='))
        .collect();
    let u = |k: &str| kv.get(k).and_then(|v| v.parse::<u64>().ok());
    let f = |k: &str| kv.get(k).and_then(|v| v.parse::<f64>().ok());
    let requests = u("requests")?;
    let duration_us = u("duration_us")?;
    if duration_us == 0 {
        return None;
    }
    Some(WrkResult {
        requests,
        duration_us,
        rps: requests as f64 / (duration_us as f64 / 1e6),
        p50_us: f("p50_us")?,
        p90_us: f("p90_us")?,
        p99_us: f("p99_us")?,
        max_us: f("max_us")?,
        non2xx: u("non2xx")?,
        socket_errors: u("connect")? + u("read")? + u("write")? + u("timeout")?,
        exact: true,
    })
}

fn parse_text(out: &str) -> Result<WrkResult, String> {
    let mut rps = None;
    let mut requests = None;
    let mut duration_us = None;
    let mut pct: BTreeMap<String, f64> = BTreeMap::new();
    let mut max_us = 0.0;
    let mut non2xx = 0;
    let mut socket_errors = 0;
    for line in out.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            non2xx = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            socket_errors = v
                .split(',')
                .filter_map(|p| p.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
        } else if t.starts_with("Latency ") && !t.contains("Distribution") {
            // "Latency   351.74us  123.45us   5.00ms   90.00%": avg, stdev, max
            if let Some(m) = t.split_whitespace().nth(3).and_then(parse_time_us) {
                max_us = m;
            }
        } else if let Some((p, v)) = t.split_once("%  ").or_else(|| t.split_once("% ")) {
            if let (Ok(p), Some(v)) = (p.trim().parse::<f64>(), parse_time_us(v)) {
                pct.insert(format!("{p}"), v);
            }
        } else if t.contains(" requests in ") {
            // "276000 requests in 5.00s, 20.00MB read"
            let mut it = t.split_whitespace();
            requests = it.next().and_then(|n| n.parse::<u64>().ok());
            duration_us = t
                .split(" requests in ")
                .nth(1)
                .and_then(|r| r.split(',').next())
                .and_then(parse_time_us)
                .map(|d| d as u64);
        }
    }
    let rps = rps.ok_or("no `Requests/sec:` line in the wrk output")?;
    let get = |p: &str| {
        pct.get(p)
            .copied()
            .ok_or_else(|| format!("no {p}% latency line (run wrk with --latency)"))
    };
    Ok(WrkResult {
        requests: requests.unwrap_or(0),
        duration_us: duration_us.unwrap_or(0),
        rps,
        p50_us: get("50")?,
        p90_us: get("90")?,
        p99_us: get("99")?,
        max_us,
        non2xx,
        socket_errors,
        exact: false,
    })
}

/// Parses wrk's stdout: the `KHA_BENCH` line when present, else the `--latency` text.
pub fn parse(out: &str) -> Result<WrkResult, String> {
    if let Some(r) = out.lines().find_map(parse_exact) {
        return Ok(r);
    }
    parse_text(out)
}

/// How to run wrk.
#[derive(Clone, Debug)]
pub struct WrkArgs<'a> {
    pub bin: &'a Path,
    pub script: &'a Path,
    pub threads: u32,
    pub connections: u32,
    pub duration: Duration,
    /// Pin wrk to this CPU.
    pub cpu: Option<usize>,
}

/// Runs `wrk --latency -tT -cC -dDs -s script url` and parses its output.
pub fn run(args: &WrkArgs<'_>, url: &str) -> Result<WrkResult, String> {
    let mut cmd = Command::new(args.bin);
    cmd.arg("--latency")
        .arg(format!("-t{}", args.threads))
        .arg(format!("-c{}", args.connections))
        .arg(format!("-d{}s", args.duration.as_secs().max(1)))
        .arg("-s")
        .arg(args.script)
        .arg(url)
        .stdin(Stdio::null());
    if let Some(cpu) = args.cpu {
        // SAFETY: sched_setaffinity is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                super::procfs::set_affinity(0, cpu)?;
                Ok(())
            });
        }
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", args.bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "wrk failed ({}):\n{}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    parse(&stdout).map_err(|e| format!("{e}; wrk output:\n{stdout}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "Running 5s test @ http://127.0.0.1:10000/
  1 threads and 20 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   351.74us  123.45us   5.00ms   90.00%
    Req/Sec    55.12k     2.01k   60.00k    80.00%
  Latency Distribution
     50%  330.00us
     75%  400.00us
     90%  500.00us
     99%    1.20ms
  276000 requests in 5.00s, 20.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  55123.45
Transfer/sec:      4.00MB
";

    #[test]
    fn time_units() {
        assert_eq!(parse_time_us("351.74us"), Some(351.74));
        assert_eq!(parse_time_us("1.20ms"), Some(1200.0));
        assert_eq!(parse_time_us("2.00s"), Some(2_000_000.0));
        assert_eq!(parse_time_us("1.50m"), Some(90_000_000.0));
        assert_eq!(parse_time_us("12"), None);
        assert_eq!(parse_time_us("1.0xs"), None);
        assert_eq!(parse_time_us(""), None);
    }

    #[test]
    fn parses_the_latency_text() {
        let r = parse(TEXT).unwrap();
        assert!(!r.exact);
        assert_eq!(r.rps, 55123.45);
        assert_eq!(r.p50_us, 330.0);
        assert_eq!(r.p90_us, 500.0);
        assert_eq!(r.p99_us, 1200.0);
        assert_eq!(r.max_us, 5000.0);
        assert_eq!(r.requests, 276000);
        assert_eq!(r.duration_us, 5_000_000);
        assert_eq!(r.non2xx, 5);
        assert_eq!(r.socket_errors, 3);
    }

    #[test]
    fn prefers_the_exact_line() {
        let out = format!(
            "{TEXT}KHA_BENCH requests=250000 duration_us=5000000 p50_us=331 p90_us=499 p99_us=1187 max_us=5003 mean_us=351.7 non2xx=0 connect=0 read=0 write=0 timeout=0\n"
        );
        let r = parse(&out).unwrap();
        assert!(r.exact);
        assert_eq!(r.rps, 50000.0);
        assert_eq!(
            (r.p50_us, r.p90_us, r.p99_us, r.max_us),
            (331.0, 499.0, 1187.0, 5003.0)
        );
        assert_eq!((r.non2xx, r.socket_errors), (0, 0));
    }

    #[test]
    fn rejects_output_without_numbers() {
        assert!(parse("").is_err());
        assert!(parse("Requests/sec: 10\n").unwrap_err().contains("50%"));
        // A broken exact line falls back to the text.
        assert!(parse("KHA_BENCH requests=x\n").is_err());
        assert!(
            !parse(&format!("KHA_BENCH requests=1 duration_us=0\n{TEXT}"))
                .unwrap()
                .exact
        );
    }
}
