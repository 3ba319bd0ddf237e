//! Instructions per request under Valgrind's callgrind: a deterministic cost (repeat runs agree
//! within about 0.5%) where wall-clock rounds on a shared machine spread by 8-28%.
//!
//! Envoy runs under `valgrind --tool=callgrind`; `callgrind_control -z` zeroes its counters and
//! `-d` dumps them to `NAME.PID.out.K`. An idle window gives the background rate (the filter's
//! 200 ms tick, Envoy's timers), which is subtracted from the load window.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{client, ClientRequest, EnvoyConfig};

/// The total instruction count of a callgrind output file: its `summary:` or `totals:` line.
pub fn parse_total(out: &str) -> Option<u64> {
    out.lines().find_map(|line| {
        let rest = line.strip_prefix("summary:").or_else(|| line.strip_prefix("totals:"))?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// One zeroed-then-dumped window: instructions counted and its wall-clock length.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub instructions: u64,
    pub seconds: f64,
}

/// Instructions per request of a load window, less what the process spends idle in as long:
/// `(load - idle_rate * load_seconds) / requests`.
pub fn per_request(load: Window, idle: Window, requests: u64) -> Option<f64> {
    if requests == 0 || idle.seconds <= 0.0 {
        return None;
    }
    let background = idle.instructions as f64 / idle.seconds * load.seconds;
    Some((load.instructions as f64 - background) / requests as f64)
}

/// An Envoy under callgrind, killed on drop (its dump files stay in `dir`).
pub struct GrindEnvoy {
    child: Child,
    dir: PathBuf,
    name: String,
    cfg: EnvoyConfig,
}

impl GrindEnvoy {
    /// Writes `cfg` to `dir/NAME.yaml` and starts Envoy under callgrind without waiting.
    pub fn spawn(envoy_bin: &Path, cfg: &EnvoyConfig, dir: &Path, name: &str, base_id: u32) -> Result<Self, String> {
        let config = dir.join(format!("{name}.yaml"));
        std::fs::write(&config, cfg.render()).map_err(|e| format!("{}: {e}", config.display()))?;
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).map_err(|e| e.to_string())?;
        let child = Command::new("valgrind")
            // V8 writes and runs JIT code: callgrind must re-check modified code.
            .args(["--tool=callgrind", "--smc-check=all-non-file"])
            .arg(format!("--callgrind-out-file={}/{name}.%p.out", dir.display()))
            .arg(envoy_bin)
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", "1", "--log-level", "warn", "--disable-hot-restart"])
            .args(["--base-id", &base_id.to_string()])
            .current_dir(crate::paths::repo_root())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run valgrind: {e}"))?;
        Ok(GrindEnvoy { child, dir: dir.to_path_buf(), name: name.into(), cfg: cfg.clone() })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.cfg.listener_port)
    }

    fn admin(&self, path: &str) -> Option<String> {
        let addr = ([127, 0, 0, 1], self.cfg.admin_port).into();
        let r = client::send(addr, &ClientRequest::get(path).timeout(Duration::from_secs(10))).ok()?;
        (r.status == 200).then(|| r.text())
    }

    /// Polls `/ready` (startup under valgrind takes about 80 s).
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        self.poll("ready", timeout, |g| g.admin("/ready").is_some())
    }

    /// Polls until the counter `name` is at least 1 (a token fetched).
    pub fn wait_for_stat(&mut self, name: &str, timeout: Duration) -> Result<(), String> {
        self.poll(name, timeout, |g| g.stat(name).is_some_and(|n| n >= 1))
    }

    /// Checks `done` every second until it holds, the process exits or `timeout` passes.
    fn poll(&mut self, what: &str, timeout: Duration, done: impl Fn(&Self) -> bool) -> Result<(), String> {
        let start = Instant::now();
        while !done(self) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("{}: exited ({status}); see {}/{}.log", self.name, self.dir.display(), self.name));
            }
            if start.elapsed() > timeout {
                return Err(format!("{}: not {what} after {timeout:?}", self.name));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        Ok(())
    }

    /// A counter from admin `/stats` (text format `name: value`).
    pub fn stat(&self, name: &str) -> Option<u64> {
        let body = self.admin(&format!("/stats?filter={name}"))?;
        body.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(": ")?.trim().parse().ok())
    }

    fn control(&self, flag: &str) -> Result<(), String> {
        let out = Command::new("callgrind_control")
            .args([flag, &self.child.id().to_string()])
            .output()
            .map_err(|e| format!("callgrind_control: {e}"))?;
        out.status
            .success()
            .then_some(())
            .ok_or_else(|| format!("callgrind_control {flag} failed: {}", String::from_utf8_lossy(&out.stderr)))
    }

    /// Zeroes the counters; the window starts now.
    pub fn zero(&self) -> Result<Instant, String> {
        self.control("-z")?;
        Ok(Instant::now())
    }

    /// Dumps the counters and reads the total of the newest dump file.
    pub fn dump(&self, since: Instant) -> Result<Window, String> {
        self.control("-d")?;
        let seconds = since.elapsed().as_secs_f64();
        let prefix = format!("{}.{}.out.", self.name, self.child.id());
        let newest = std::fs::read_dir(&self.dir)
            .map_err(|e| e.to_string())?
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                let k: u32 = name.strip_prefix(&prefix)?.parse().ok()?;
                Some((k, name))
            })
            .max()
            .ok_or_else(|| format!("no dump file {prefix}K in {}", self.dir.display()))?;
        let text = std::fs::read_to_string(self.dir.join(&newest.1)).map_err(|e| e.to_string())?;
        let instructions = parse_total(&text).ok_or_else(|| format!("{}: no summary/totals line", newest.1))?;
        Ok(Window { instructions, seconds })
    }
}

impl Drop for GrindEnvoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_total_from_summary_or_totals() {
        let dump = "version: 1\ncreator: callgrind-3.19.0\npid: 4242\ncmd: envoy -c x.yaml\n\
                    events: Ir\nsummary: 1572864000\n\nfn=(1) main\n12 5\ntotals: 1572864000\n";
        assert_eq!(parse_total(dump), Some(1_572_864_000));
        assert_eq!(parse_total("events: Ir\ntotals: 77 3\n"), Some(77));
        assert_eq!(parse_total("events: Ir\nfn=(1)\n"), None);
        assert_eq!(parse_total("summary: lots\n"), None);
    }

    #[test]
    fn subtracts_the_idle_rate_over_the_load_window() {
        // 1e6 instructions idle in 5 s = 200k/s; a 10 s load window then holds 2e6 of background.
        let idle = Window { instructions: 1_000_000, seconds: 5.0 };
        let load = Window { instructions: 1_502_000_000, seconds: 10.0 };
        assert_eq!(per_request(load, idle, 10_000), Some(150_000.0));
        assert_eq!(per_request(load, idle, 0), None);
        assert_eq!(per_request(load, Window { instructions: 0, seconds: 0.0 }, 5), None);
    }
}
