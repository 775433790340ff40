//! Samples the server's resident memory, its CPU time, and the kernel's TCP socket memory
//! from /proc.

use serde::Serialize;

use crate::sys;

/// `/proc/net/sockstat` counts socket memory in pages of this size on x86-64 and arm64.
pub const PAGE_BYTES: u64 = 4096;
/// `/proc/PID/stat` counts CPU time in USER_HZ ticks, which Linux fixes at 100 for user space
/// on every architecture it runs this on (whatever the kernel's own HZ).
const USER_HZ: u64 = 100;

/// One sample; a field is `None` when it could not be read (no `--server-pid`, or /proc gone).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// When it was taken: "before", "ready", "run", "after".
    pub label: String,
    /// Seconds since the run started.
    pub t_s: f64,
    pub rss_kb: Option<u64>,
    pub tcp_inuse: Option<u64>,
    pub tcp_mem_pages: Option<u64>,
    /// The server's CPU time so far (user + system), in milliseconds: the difference between
    /// two samples is what the server spent in between.
    pub cpu_ms: Option<u64>,
}

/// The process's user + system CPU time in milliseconds (`/proc/PID/stat` fields 14 and 15,
/// in clock ticks).
pub fn read_cpu_ms(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it start with field 3.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 1000 / USER_HZ)
}

/// The server's VmRSS in KiB.
pub fn read_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// TCP sockets in use and TCP memory in pages, system-wide (client and server ends alike).
pub fn read_sockstat() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let line = text.lines().find(|l| l.starts_with("TCP:"))?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    let value = |name: &str| {
        let at = fields.iter().position(|f| *f == name)?;
        fields.get(at + 1)?.parse::<u64>().ok()
    };
    Some((value("inuse")?, value("mem")?))
}

/// Every sample of one run, kept in order (one a second at most, so a bounded list).
#[derive(Debug, Clone)]
pub struct MemTrack {
    pid: Option<u32>,
    start_us: u64,
    pub samples: Vec<Sample>,
}

impl MemTrack {
    pub fn new(pid: Option<u32>) -> Self {
        MemTrack {
            pid,
            start_us: sys::monotonic_us(),
            samples: Vec::new(),
        }
    }

    pub fn sample(&mut self, label: &str) {
        let sock = read_sockstat();
        self.samples.push(Sample {
            label: label.to_string(),
            t_s: sys::monotonic_us().saturating_sub(self.start_us) as f64 / 1e6,
            rss_kb: self.pid.and_then(read_rss_kb),
            tcp_inuse: sock.map(|s| s.0),
            tcp_mem_pages: sock.map(|s| s.1),
            cpu_ms: self.pid.and_then(read_cpu_ms),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process_and_sockstat() {
        assert!(read_rss_kb(std::process::id()).is_some_and(|kb| kb > 0));
        assert!(read_cpu_ms(std::process::id()).is_some());
        assert!(read_sockstat().is_some());
    }
}
