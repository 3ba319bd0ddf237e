//! Instructions per request under Valgrind's callgrind: a deterministic cost (repeat runs agree
//! within about 0.5%) where wall-clock rounds on a shared machine spread by 8-28%.
//!
//! Envoy runs under `valgrind --tool=callgrind`; `callgrind_control -z` zeroes its counters and
//! `-d` dumps them to `NAME.PID.out.K`. An idle window gives the background rate (the filter's
//! 200 ms tick, Envoy's timers), which is subtracted from the load window.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::envoy::Launch;
use crate::{client, ClientRequest, Envoy, EnvoyConfig};

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

/// An Envoy under callgrind (stopped on drop like any [`Envoy`]; its dump files stay in `dir`).
pub struct GrindEnvoy {
    pub envoy: Envoy,
    dir: PathBuf,
    name: String,
}

impl GrindEnvoy {
    /// Writes `cfg` to `dir/NAME.yaml` and starts Envoy under callgrind without waiting (startup
    /// under valgrind takes about 80 s). Log level, worker count and flags are those of every
    /// [`Envoy`], without the tests' `wasm:debug` log.
    pub fn spawn(cfg: &EnvoyConfig, dir: &Path, name: &str) -> Result<Self, String> {
        let config = dir.join(format!("{name}.yaml"));
        std::fs::write(&config, cfg.render()).map_err(|e| format!("{}: {e}", config.display()))?;
        let mut launch = Launch::new(&config, cfg.listener_port, cfg.admin_port);
        launch.log_file = dir.join(format!("{name}.log"));
        launch.wasm_debug_log = false;
        launch.wrapper = vec![
            "valgrind".into(),
            "--tool=callgrind".into(),
            // V8 writes and runs JIT code: callgrind must re-check modified code.
            "--smc-check=all-non-file".into(),
            format!("--callgrind-out-file={}/{name}.%p.out", dir.display()),
        ];
        let envoy = Envoy::spawn(launch)?;
        Ok(GrindEnvoy { envoy, dir: dir.to_path_buf(), name: name.into() })
    }

    /// One counter from admin `/stats?filter=` (text format `name: value`): a small answer, so
    /// reading it inside a measured window adds little to the count.
    pub fn counter(&self, name: &str) -> Option<u64> {
        let request = ClientRequest::get(&format!("/stats?filter={name}")).timeout(Duration::from_secs(10));
        let body = client::send(self.envoy.admin_addr(), &request).ok().filter(|r| r.status == 200)?.text();
        body.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(": ")?.trim().parse().ok())
    }

    fn control(&self, flag: &str) -> Result<(), String> {
        let out = Command::new("callgrind_control")
            .args([flag, &self.envoy.pid().to_string()])
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
        let prefix = format!("{}.{}.out.", self.name, self.envoy.pid());
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
