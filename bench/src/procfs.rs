//! Processes' memory and CPU time, from `/proc/<pid>`: the server's
//! (`--server-pid`), the bench's own and the `--cpu-pid` processes', and the
//! readings a run takes of them at its marks.

use std::time::Duration;

use anyhow::Context;

/// One reading of a process's counters.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProcSample {
    /// Resident set size in KiB (`VmRSS`).
    pub(crate) rss_kb: u64,
    /// User + system CPU time in nanoseconds.
    pub(crate) cpu_ns: u64,
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux when unknown).
pub(crate) fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// Reads `/proc/<pid>/status` and `/proc/<pid>/stat` (`pid` may be "self").
pub(crate) fn sample(pid: &str, ticks_per_sec: u64) -> anyhow::Result<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces and parentheses):
    // state is field 3, utime field 14, stime field 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("malformed /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .with_context(|| format!("malformed /proc/{pid}/stat field {}", i + 3))
    };
    let ticks = tick(11)? + tick(12)?;
    Ok(ProcSample {
        rss_kb,
        cpu_ns: ticks.saturating_mul(1_000_000_000) / ticks_per_sec,
    })
}

/// Reads the server (`--server-pid`, when given), the bench itself and the
/// `--cpu-pid` processes.
pub(crate) struct Probe {
    pid: Option<String>,
    ticks: u64,
}

impl Probe {
    pub(crate) fn new(server_pid: Option<u32>) -> Probe {
        Probe {
            pid: server_pid.map(|p| p.to_string()),
            ticks: clock_ticks(),
        }
    }

    /// The server's counters; `None` without `--server-pid`.
    pub(crate) fn server(&self) -> anyhow::Result<Option<ProcSample>> {
        match &self.pid {
            Some(pid) => sample(pid, self.ticks)
                .map(Some)
                .with_context(|| format!("--server-pid {pid}")),
            None => Ok(None),
        }
    }

    /// A run's readings, starting with the server's before any client
    /// connects.
    pub(crate) fn before_connect(&self) -> anyhow::Result<Readings> {
        Ok(Readings {
            before_connect: self.server()?,
            ..Readings::default()
        })
    }

    /// The server's counters after `settle` (`--settle`: the clients are
    /// up, the server's memory is let settle first).
    pub(crate) async fn server_after(
        &self,
        settle: Duration,
    ) -> anyhow::Result<Option<ProcSample>> {
        tokio::time::sleep(settle).await;
        self.server()
    }

    /// The bench's own counters (`None` where `/proc` cannot tell).
    pub(crate) fn bench(&self) -> Option<ProcSample> {
        sample("self", self.ticks).ok()
    }

    /// CPU time (ns) of each `--cpu-pid` process, in order.
    pub(crate) fn others(&self, pids: &[(String, u32)]) -> anyhow::Result<Vec<u64>> {
        pids.iter()
            .map(|(name, pid)| {
                sample(&pid.to_string(), self.ticks)
                    .map(|s| s.cpu_ns)
                    .with_context(|| format!("--cpu-pid {name}={pid}"))
            })
            .collect()
    }
}

/// What a run read at its marks: the server before the clients connect,
/// once they are up (the measured phase starts), and after the measured
/// phase and its drain; the bench itself over the measured phase.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Readings {
    pub(crate) before_connect: Option<ProcSample>,
    pub(crate) after_connect: Option<ProcSample>,
    pub(crate) after_push: Option<ProcSample>,
    pub(crate) bench_start: Option<ProcSample>,
    pub(crate) bench_end: Option<ProcSample>,
}

impl Readings {
    /// The server's RSS growth while `connections` clients connected, per
    /// client, in KiB to two decimals.
    pub(crate) fn rss_per_conn_kb(&self, connections: u64) -> Option<f64> {
        let (b, a) = (self.before_connect?, self.after_connect?);
        (connections > 0).then(|| {
            let v = (a.rss_kb as f64 - b.rss_kb as f64) / connections as f64;
            (v * 100.0).round() / 100.0
        })
    }

    /// The server's CPU time over the measured phase and drain.
    pub(crate) fn server_cpu_ns(&self) -> Option<u64> {
        let (b, a) = (self.after_connect?, self.after_push?);
        Some(a.cpu_ns.saturating_sub(b.cpu_ns))
    }

    /// The bench's own CPU time over the measured phase and drain.
    pub(crate) fn bench_cpu_ms(&self) -> Option<u64> {
        let (b, a) = (self.bench_start?, self.bench_end?);
        Some(a.cpu_ns.saturating_sub(b.cpu_ns) / 1_000_000)
    }

    /// The bench's RSS at the end.
    pub(crate) fn bench_rss_kb(&self) -> Option<u64> {
        self.bench_end.map(|s| s.rss_kb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let s = sample("self", clock_ticks()).expect("own /proc entry");
        assert!(s.rss_kb > 0);
    }
}
