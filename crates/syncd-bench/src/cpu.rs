//! CPU time of the cluster's processes and of the load generator, from `/proc` (Linux), so a run can say how much
//! CPU each backend spends per operation. On a 2-core machine shared by three servers and the load generator, CPU
//! is often what bounds the throughput.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`): 100 on every mainstream Linux build.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds (user + system) used so far by `pid` (`None`: the process itself), or `None` when unreadable.
fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    parse_stat(&stat)
}

/// utime + stime of a `/proc/<pid>/stat` line, in seconds. The command name may hold spaces and parentheses, so
/// fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the man page, utime 14 and stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SECOND)
}

/// CPU seconds the whole machine has spent busy so far (every CPU: user, nice, system, irq, softirq, steal; not
/// idle or iowait), from the first line of `/proc/stat`.
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine_busy(stat.lines().next()?)
}

/// The busy ticks of the `cpu` line of `/proc/stat`, in seconds.
fn parse_machine_busy(line: &str) -> Option<f64> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let ticks: Vec<u64> = fields.map(|f| f.parse().ok()).collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is already part of user).
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|i| ticks.get(*i).copied().unwrap_or(0))
        .sum::<u64>();
    Some(busy as f64 / TICKS_PER_SECOND)
}

/// A reading of the servers', the load generator's and the whole machine's CPU time.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    servers: Option<f64>,
    bench: Option<f64>,
    machine: Option<f64>,
}

impl CpuSample {
    /// Reads the CPU time of `servers` (summed; `None` if any is unreadable or none is given) and of this process.
    pub fn take(servers: &[u32]) -> CpuSample {
        let servers = if servers.is_empty() {
            None
        } else {
            servers
                .iter()
                .map(|pid| cpu_seconds(Some(*pid)))
                .sum::<Option<f64>>()
        };
        CpuSample {
            servers,
            bench: cpu_seconds(None),
            machine: machine_busy_seconds(),
        }
    }

    /// The CPU used between `earlier` and `self`, over `wall` of elapsed time and `ops` operations.
    pub fn since(&self, earlier: &CpuSample, wall: Duration, ops: u64) -> CpuUse {
        let wall = wall.as_secs_f64().max(f64::MIN_POSITIVE);
        let servers = match (self.servers, earlier.servers) {
            (Some(now), Some(then)) => Some(now - then),
            _ => None,
        };
        let bench = match (self.bench, earlier.bench) {
            (Some(now), Some(then)) => Some(now - then),
            _ => None,
        };
        let machine = match (self.machine, earlier.machine) {
            (Some(now), Some(then)) => Some(now - then),
            _ => None,
        };
        CpuUse {
            server_cores: servers.map(|s| s / wall),
            server_ms_per_op: servers.filter(|_| ops > 0).map(|s| s * 1000.0 / ops as f64),
            bench_cores: bench.map(|b| b / wall),
            machine_cores: machine.map(|m| m / wall),
        }
    }
}

/// CPU used during a measured window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuUse {
    /// Cores kept busy by all server processes together (CPU seconds per wall second).
    pub server_cores: Option<f64>,
    /// Server CPU milliseconds per operation.
    pub server_ms_per_op: Option<f64>,
    /// Cores kept busy by the load generator.
    pub bench_cores: Option<f64>,
    /// Cores kept busy by the whole machine (servers, load generator and anything else that ran meanwhile).
    #[serde(default)]
    pub machine_cores: Option<f64>,
}

impl CpuUse {
    /// Cores used by processes that are neither the servers nor the load generator (the kernel's own work for
    /// them included): interference, when well above zero.
    pub fn other_cores(&self) -> Option<f64> {
        Some((self.machine_cores? - self.server_cores? - self.bench_cores?).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat() {
        let line =
            "4242 (syncd (x) y) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat(line), Some(3.0));
        assert_eq!(parse_stat("garbage"), None);
        let machine = "cpu  100 5 50 9000 40 3 2 0 7 0";
        assert_eq!(parse_machine_busy(machine), Some(1.6));
        assert_eq!(parse_machine_busy("cpu0 1 2 3"), None);
        assert!(machine_busy_seconds().is_some());
        assert!(cpu_seconds(None).is_some());
    }

    #[test]
    fn cpu_use_over_a_window() {
        let then = CpuSample {
            servers: Some(10.0),
            bench: Some(1.0),
            machine: Some(100.0),
        };
        let now = CpuSample {
            servers: Some(13.0),
            bench: Some(2.0),
            machine: Some(104.5),
        };
        let used = now.since(&then, Duration::from_secs(2), 1000);
        assert_eq!(used.server_cores, Some(1.5));
        assert_eq!(used.server_ms_per_op, Some(3.0));
        assert_eq!(used.bench_cores, Some(0.5));
        assert_eq!(used.machine_cores, Some(2.25));
        assert_eq!(used.other_cores(), Some(0.25));
        let unknown = CpuSample::take(&[]);
        assert_eq!(
            unknown
                .since(&unknown, Duration::from_secs(1), 1)
                .server_cores,
            None
        );
    }
}
