//! `drain`: N WebSockets (`--path`, `{i}` allowed), then SIGTERM to `--server-pid` when the
//! run starts, and the moment each connection ends, counted from the signal: in 1 s buckets
//! (`closed_at_s_NN`), as a histogram, and by how it ended (a Close frame's code, or EOF).
//! The run ends once every connection is gone, or after `--duration`.
//!
//! The signal goes through `kill(1)` (the bench's only unsafe code stays the three calls in
//! `sys`); the clock starts just before it is spawned, so the fork adds to the first bucket,
//! not to the spread.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::cli::Config;
use crate::conn::{Event, Handle};
use crate::modes::connect::client_path;
use crate::modes::{Phase, Workload};
use crate::net::Net;
use crate::report::{self, Report};
use crate::sys;

/// Histogram name: signal → connection closed.
pub const CLOSED_AT: &str = "closed_after_signal_us";
const SECOND_US: u64 = 1_000_000;

pub struct Drain {
    path: String,
    offset: u64,
    server_pid: Option<u32>,
    open: u64,
    signalled_at: Option<u64>,
    closed_at: Histogram<u64>,
    /// Closes per whole second after the signal.
    buckets: BTreeMap<u64, u64>,
    /// How the connections ended (cause key → count).
    ends: BTreeMap<String, u64>,
    closed_before_signal: u64,
    signal_error: Option<String>,
}

impl Drain {
    pub fn new(cfg: &Config, _n: u32) -> Self {
        Drain {
            path: cfg.path.clone(),
            offset: cfg.client_offset,
            server_pid: cfg.server_pid,
            open: 0,
            signalled_at: None,
            closed_at: report::new_hist(),
            buckets: BTreeMap::new(),
            ends: BTreeMap::new(),
            closed_before_signal: 0,
            signal_error: None,
        }
    }
}

impl Workload for Drain {
    fn path(&self, client: u32) -> String {
        client_path(&self.path, self.offset, client)
    }

    fn on_event(&mut self, _h: &mut Handle<'_>, ev: &Event<'_>, _now: u64, _phase: Phase) {
        match ev {
            Event::Open => self.open += 1,
            Event::Closed {
                cause,
                was_open: true,
            } => {
                self.open = self.open.saturating_sub(1);
                let Some(t0) = self.signalled_at else {
                    self.closed_before_signal += 1;
                    return;
                };
                let after = sys::monotonic_us().saturating_sub(t0);
                self.closed_at.saturating_record(after.max(1));
                *self.buckets.entry(after / SECOND_US).or_insert(0) += 1;
                *self.ends.entry(cause.key()).or_insert(0) += 1;
            }
            _ => {}
        }
    }

    fn go(&mut self, _net: &mut Net, _now: u64) {
        let Some(pid) = self.server_pid else {
            return;
        };
        self.signalled_at = Some(sys::monotonic_us());
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => self.signal_error = Some(format!("kill -TERM {pid}: {s}")),
            Err(e) => self.signal_error = Some(format!("kill -TERM {pid}: {e}")),
        }
    }

    fn done(&self, _now: u64) -> bool {
        self.signalled_at.is_some() && self.open == 0
    }

    fn messages(&self) -> u64 {
        self.closed_at.len()
    }

    fn finish(&mut self, report: &mut Report) {
        for (s, n) in &self.buckets {
            report.add(&format!("closed_at_s_{s:02}"), *n);
        }
        for (k, n) in &self.ends {
            report.add(&format!("ended_{k}"), *n);
        }
        report.add("closed_before_signal", self.closed_before_signal);
        report.add("still_open_at_end", self.open);
        if let Some(e) = self.signal_error.take() {
            report.errors.push(e);
        }
        report.set_hist(
            CLOSED_AT,
            std::mem::replace(&mut self.closed_at, report::new_hist()),
        );
        report.param("path", &self.path);
    }
}
