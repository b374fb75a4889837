//! What the bench reads of the processes it measures from `/proc`: CPU time, memory, the load
//! average, the scheduler's time per thread, and which processes are the PostgreSQL server's.

use std::time::Duration;

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// A `kB` line of /proc/<pid>/status (`VmRSS`, `VmHWM`), in bytes.
pub fn proc_status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        Some(v.split_whitespace().next()?.parse::<u64>().ok()? * 1024)
    })
}

/// User plus system CPU time of a process so far, in clock ticks (/proc/<pid>/stat).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The PostgreSQL server whose data directory is under `dir` and its children (one backend per
/// connection; the replicas' pools keep theirs open for the whole run).
pub fn postgres_pids(dir: &std::path::Path) -> Vec<u32> {
    let procs: Vec<(u32, u32, String)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat[stat.rfind(')')? + 2..]
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .replace('\0', " ");
            Some((pid, ppid, cmdline))
        })
        .collect();
    let dir = dir.display().to_string();
    let Some(server) = procs
        .iter()
        .find(|(_, _, cmd)| cmd.contains("postgres") && cmd.contains(&dir))
        .map(|p| p.0)
    else {
        return Vec::new();
    };
    std::iter::once(server)
        .chain(procs.iter().filter(|p| p.1 == server).map(|p| p.0))
        .collect()
}

/// CPU ticks of each of `pids` so far.
pub fn cpu_ticks_of(pids: &[u32]) -> Vec<(u32, u64)> {
    pids.iter()
        .filter_map(|&p| Some((p, cpu_ticks(p)?)))
        .collect()
}

pub fn clock_ticks_per_s() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Every thread of a process so far, from /proc/<pid>/task/*/schedstat: its id, nanoseconds on
/// a CPU and nanoseconds runnable but waiting for one.
pub fn thread_sched(pid: u32) -> Vec<(u32, u64, u64)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let tid: u32 = e.file_name().to_str()?.parse().ok()?;
            let line = std::fs::read_to_string(e.path().join("schedstat")).ok()?;
            let mut f = line.split_whitespace().map(|v| v.parse::<u64>().ok());
            Some((tid, f.next()??, f.next()??))
        })
        .collect()
}

/// Where one process's threads spent a span of wall time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SchedShare {
    /// CPUs used on average (1.0: one core all the time).
    pub cores: f64,
    /// Threads runnable but not running, on average: time its work waited for a CPU.
    pub waiting: f64,
    /// The share of the span the busiest thread ran (1.0: it never stopped).
    pub busiest: f64,
}

impl SchedShare {
    /// From two `thread_sched` snapshots `span` apart; a thread started in between counts from
    /// zero.
    pub fn between(before: &[(u32, u64, u64)], after: &[(u32, u64, u64)], span: Duration) -> Self {
        let span_ns = span.as_nanos().max(1) as f64;
        let (mut cpu, mut wait, mut busiest) = (0u64, 0u64, 0u64);
        for &(tid, run, waited) in after {
            let (run0, wait0) = before
                .iter()
                .find(|b| b.0 == tid)
                .map_or((0, 0), |b| (b.1, b.2));
            let ran = run.saturating_sub(run0);
            cpu += ran;
            wait += waited.saturating_sub(wait0);
            busiest = busiest.max(ran);
        }
        SchedShare {
            cores: cpu as f64 / span_ns,
            waiting: wait as f64 / span_ns,
            busiest: busiest as f64 / span_ns,
        }
    }
}

/// The whole machine's CPU time so far from /proc/stat, in clock ticks: (busy, all).
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
    let all: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4)?;
    Some((all - idle, all))
}
