//! Linux `/proc` readings for the bench: resident memory, CPU time, CPU pinning, machine facts.

/// `VmRSS` of a process in KiB (`/proc/<pid>/status`).
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    field_kib(&status, "VmRSS:")
}

/// A `Name:   123 kB` line of `/proc/<pid>/status` or `/proc/meminfo`.
pub fn field_kib(text: &str, name: &str) -> Option<u64> {
    let value = text.lines().find_map(|l| l.strip_prefix(name))?;
    value.split_whitespace().next()?.parse().ok()
}

/// User + system CPU seconds of a whole process (all threads, `/proc/<pid>/stat`).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_cpu_ticks(&stat).map(|t| t as f64 / clock_ticks_per_second())
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line; the command name in
/// parentheses may hold spaces, so fields are counted after its closing `)`.
pub fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Pins every thread of `pid` to `cpu` with util-linux `taskset`.
pub fn pin(pid: u32, cpu: Option<usize>) {
    let Some(cpu) = cpu else { return };
    let ok = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("bench: cannot pin pid {pid} to CPU {cpu}");
    }
}

/// CPUs this process may run on (its affinity mask), in order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills the zeroed local set; CPU_ISSET only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect()
    }
}

/// The first `model name` of `/proc/cpuinfo`.
pub fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "model name").then(|| v.trim().to_string())
    });
    model.unwrap_or_else(|| "unknown".into())
}

/// `MemTotal` in KiB.
pub fn mem_total_kib() -> Option<u64> {
    field_kib(&std::fs::read_to_string("/proc/meminfo").ok()?, "MemTotal:")
}

/// Busy CPU seconds of the whole machine, to tell how much other processes used during a run.
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    machine_busy_ticks(&stat).map(|t| t as f64 / clock_ticks_per_second())
}

/// user + nice + system + irq + softirq + steal of the aggregate `cpu` line of `/proc/stat`
/// (idle and iowait are not busy; guest time is already inside user and nice).
pub fn machine_busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|n| n.parse().ok()).collect();
    (v.len() >= 8).then(|| v[0] + v[1] + v[2] + v[5] + v[6] + v[7])
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

/// CPU seconds of this process's waited-for children: its difference around a wrk run is wrk's.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_texts() {
        assert_eq!(field_kib("Name:\tenvoy\nVmRSS:\t   45678 kB\n", "VmRSS:"), Some(45678));
        assert_eq!(field_kib("Name: x\n", "VmRSS:"), None);
        let stat = "4242 (envoy worker) S 1 2 3 4 5 6 7 8 9 10 250 31 0 0 20\n";
        assert_eq!(stat_cpu_ticks(stat), Some(281));
        let cpu = "cpu  100 2 30 5000 7 1 4 3 9 0\ncpu0 50 1 15 2500 3 0 2 1 0 0\n";
        assert_eq!(machine_busy_ticks(cpu), Some(100 + 2 + 30 + 1 + 4 + 3));
        assert_eq!(machine_busy_ticks("cpu  1 2\n"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(vm_rss_kib(me).is_some_and(|k| k > 0));
        assert!(cpu_seconds(me).is_some());
        assert!(mem_total_kib().is_some());
        assert!(!allowed_cpus().is_empty());
        assert!(machine_busy_seconds().is_some_and(|s| s > 0.0));
    }
}
