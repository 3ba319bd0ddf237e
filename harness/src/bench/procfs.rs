//! Linux `/proc` readings for the bench: resident memory, CPU time, CPU pinning, machine facts.

use std::io;
use std::path::Path;

/// `VmRSS` of a process in KiB (`/proc/<pid>/status`).
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss_kib(&status)
}

/// The `VmRSS:` line of a `/proc/<pid>/status` text, in KiB.
pub fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Task (thread) ids of a process.
pub fn tasks(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// CPU time (nanoseconds on a CPU) of every thread of a process, summed, from
/// `/proc/<pid>/task/<tid>/schedstat` (nanosecond resolution, unlike `/proc/<pid>/stat`).
/// Threads that exited are not counted: read it for processes whose threads live on (Envoy).
pub fn cpu_time_ns(pid: u32) -> Option<u64> {
    let tids = tasks(pid);
    if tids.is_empty() {
        return None;
    }
    let mut sum = 0u64;
    for tid in tids {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")) {
            sum += s
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Some(sum)
}

/// Pins one thread (`0`: the calling thread) to `cpu`. Async-signal-safe (used in `pre_exec`).
pub fn set_affinity(tid: u32, cpu: usize) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity only
    // touch that local set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(
            tid as libc::pid_t,
            std::mem::size_of::<libc::cpu_set_t>(),
            &set,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Pins every current thread of `pid` to `cpu`; returns how many threads were pinned.
pub fn pin_process(pid: u32, cpu: usize) -> io::Result<usize> {
    let tids = tasks(pid);
    if tids.is_empty() {
        return Err(io::Error::other(format!(
            "process {pid} has no threads in /proc"
        )));
    }
    let mut n = 0;
    for tid in tids {
        // A thread may exit in between; that is fine.
        if set_affinity(tid, cpu).is_ok() {
            n += 1;
        }
    }
    Ok(n)
}

/// CPUs this process may run on (what `nproc` prints).
pub fn nproc() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The first `model name` of `/proc/cpuinfo` (falls back to `Hardware`/`cpu model`, or "unknown").
pub fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    parse_cpu_model(&info).unwrap_or_else(|| "unknown".into())
}

pub fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    ["model name", "Hardware", "cpu model"]
        .iter()
        .find_map(|key| {
            cpuinfo.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == *key && !v.trim().is_empty()).then(|| v.trim().to_string())
            })
        })
}

/// CPUs this process may run on (its affinity mask), in order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills the zeroed local set; CPU_ISSET only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Busy CPU time of the whole machine in seconds (`/proc/stat` line `cpu`: everything but
/// idle and iowait), to see how much other processes used while a run was measured.
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine_busy_ticks(&stat).map(|t| t as f64 / clock_ticks_per_second())
}

/// Busy ticks of the aggregate `cpu` line: user + nice + system + irq + softirq + steal
/// (guest time is already inside user and nice).
pub fn parse_machine_busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    if v.len() < 8 {
        return None;
    }
    Some(v[0] + v[1] + v[2] + v[5] + v[6] + v[7])
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// User + system CPU seconds of this process's terminated and waited-for children
/// (`getrusage(RUSAGE_CHILDREN)`): its difference around a `wrk` run is wrk's CPU time.
pub fn children_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zeroed local struct.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) != 0 {
            return 0.0;
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }
}

/// `MemTotal` in KiB.
pub fn mem_total_kib() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Size of a file in bytes.
pub fn file_size(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_cpuinfo() {
        let status = "Name:\tenvoy\nVmPeak:\t  100 kB\nVmRSS:\t   45678 kB\nThreads:\t9\n";
        assert_eq!(parse_vm_rss_kib(status), Some(45678));
        assert_eq!(parse_vm_rss_kib("Name: x\n"), None);
        let info = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n";
        assert_eq!(parse_cpu_model(info).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(parse_cpu_model("processor: 0\n"), None);
        let stat = "cpu  100 2 30 5000 7 1 4 3 9 0\ncpu0 50 1 15 2500 3 0 2 1 0 0\n";
        assert_eq!(
            parse_machine_busy_ticks(stat),
            Some(100 + 2 + 30 + 1 + 4 + 3)
        );
        assert_eq!(parse_machine_busy_ticks("cpu  1 2\n"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(vm_rss_kib(me).is_some_and(|k| k > 0));
        assert!(!tasks(me).is_empty());
        let before = cpu_time_ns(me).unwrap();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_time_ns(me).unwrap() >= before);
        assert!(nproc() >= 1);
        assert!(mem_total_kib().is_some());
        assert!(!allowed_cpus().is_empty());
        assert!(machine_busy_seconds().is_some_and(|s| s > 0.0));
        assert!(children_cpu_seconds() >= 0.0);
    }
}
