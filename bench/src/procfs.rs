//! The server process's memory and CPU time, from `/proc/<pid>`.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let s = sample("self", clock_ticks()).expect("own /proc entry");
        assert!(s.rss_kb > 0);
    }
}
