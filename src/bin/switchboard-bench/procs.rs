//! `--procs K`: re-executes this binary K times, each child with its share of the connections
//! and source addresses, starts their measurements together and merges their reports.
//!
//! Children speak a line protocol on stdout (`progress ...`, `ready`, `teardown`, then one
//! JSON report) and wait for `go` on stdin; see `coord`. Histograms are merged bucket by
//! bucket, so the percentiles printed are those of all processes' samples together.

use std::io::{self, BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use crate::cli::{Config, Mode};
use crate::coord::SETTLE_BEFORE_AFTER_SAMPLE;
use crate::memprobe::MemTrack;
use crate::progress::{Printer, Progress};
use crate::report::Report;
use crate::sys;

/// Slack on top of the longest a run can legitimately take before children are killed.
const GRACE_US: u64 = 30_000_000;
const SECOND_US: u64 = 1_000_000;

struct ChildState {
    child: Child,
    stdin: Option<ChildStdin>,
    progress: Progress,
    ready: bool,
    done: bool,
    report: Option<Report>,
}

/// Kills and reaps children already started (used when starting the rest failed).
fn kill_all(children: &mut [ChildState]) {
    for c in children {
        let _ = c.child.kill();
        let _ = c.child.wait();
    }
}

pub fn run_parent(cfg: &Config) -> io::Result<Report> {
    let exe = std::env::current_exe()?;
    let mut mem = MemTrack::new(cfg.server_pid);
    mem.sample("before");
    let (tx, rx) = mpsc::channel::<(usize, Option<String>)>();
    let mut children: Vec<ChildState> = Vec::new();
    for i in 0..cfg.procs {
        let spawned = Command::new(&exe)
            .args(child_args(cfg, i))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                kill_all(&mut children);
                return Err(io::Error::other(format!("starting child {i}: {e}")));
            }
        };
        let Some(stdout) = child.stdout.take() else {
            kill_all(&mut children);
            return Err(io::Error::other("child stdout was not captured"));
        };
        let tx = tx.clone();
        let idx = children.len();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((idx, Some(line))).is_err() {
                    return;
                }
            }
            let _ = tx.send((idx, None));
        });
        children.push(ChildState {
            stdin: child.stdin.take(),
            child,
            progress: Progress::default(),
            ready: false,
            done: false,
            report: None,
        });
    }
    drop(tx);

    let start = sys::monotonic_us();
    let ramp_bound = if cfg.ramp_rate > 0.0 {
        (cfg.connections as f64 / cfg.ramp_rate * 1e6) as u64
    } else {
        0
    };
    let deadline =
        start + ramp_bound + cfg.connect_timeout_us + cfg.duration_us + cfg.drain_us + GRACE_US;
    let mut printer = (!cfg.quiet).then(Printer::default);
    let mut next_tick = start + SECOND_US;
    let (mut go_sent, mut teardown_seen) = (false, false);
    let mut errors = Vec::new();

    loop {
        let now = sys::monotonic_us();
        let wait = Duration::from_micros(next_tick.saturating_sub(now).max(1_000));
        match rx.recv_timeout(wait) {
            Ok((i, Some(line))) => {
                if let Some(c) = children.get_mut(i) {
                    if line == "ready" {
                        c.ready = true;
                    } else if line == "teardown" {
                        teardown_seen = true;
                    } else if let Some(p) = Progress::from_line(&line) {
                        c.progress = p;
                    } else if line.starts_with('{') {
                        match Report::from_json(&line) {
                            Ok(r) => c.report = Some(r),
                            Err(e) => errors.push(format!("child {i}: unreadable report: {e}")),
                        }
                    }
                }
            }
            Ok((i, None)) => {
                if let Some(c) = children.get_mut(i) {
                    c.done = true;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let now = sys::monotonic_us();
        if !go_sent && children.iter().all(|c| c.ready || c.done) {
            // Every child holds its connections: the moment to measure the server's memory.
            mem.sample("ready");
            for c in &mut children {
                if let Some(stdin) = &mut c.stdin {
                    let _ = writeln!(stdin, "go").and_then(|()| stdin.flush());
                }
            }
            go_sent = true;
        }
        if now >= next_tick {
            let mut total = Progress {
                elapsed_s: (now - start) as f64 / 1e6,
                phase: u8::MAX,
                ..Progress::default()
            };
            for c in children.iter().filter(|c| !c.done) {
                total.add(&c.progress);
            }
            if total.phase == u8::MAX {
                total.phase = 3;
            }
            if let Some(p) = &mut printer {
                p.print(&total);
            }
            if go_sent && !teardown_seen {
                mem.sample("run");
            }
            next_tick += SECOND_US;
        }
        if children.iter().all(|c| c.done) {
            break;
        }
        if now > deadline {
            errors.push("children overran the run's time bound and were killed".into());
            for c in children.iter_mut().filter(|c| !c.done) {
                let _ = c.child.kill();
            }
            break;
        }
    }

    let mut total = Report::new(cfg.mode.name());
    for (i, mut c) in children.into_iter().enumerate() {
        // Closing stdin tells a child still waiting for `go` to give up.
        drop(c.stdin.take());
        match c.child.wait() {
            Ok(status) if !status.success() => {
                errors.push(format!("child {i} exited with {status}"))
            }
            Err(e) => errors.push(format!("child {i}: {e}")),
            Ok(_) => {}
        }
        match c.report {
            Some(r) => total.merge(r),
            None => errors.push(format!("child {i} produced no report")),
        }
    }
    if crate::coord::settle_before_after_sample(cfg) {
        std::thread::sleep(SETTLE_BEFORE_AFTER_SAMPLE);
    }
    mem.sample("after");
    total.memory = mem.samples;
    total.procs = u64::from(cfg.procs);
    crate::modes::describe(cfg, &mut total);
    total.errors.extend(errors);
    Ok(total)
}

/// The share `i` of `k` gets of `total` (the first `total % k` get one more).
pub fn share(total: u64, i: u32, k: u32) -> u64 {
    let (i, k) = (u64::from(i), u64::from(k.max(1)));
    total / k + u64::from(i < total % k)
}

/// The flags that make child `i` of `cfg.procs` run its share of the work.
pub fn child_args(cfg: &Config, i: u32) -> Vec<String> {
    let k = cfg.procs;
    let mut a: Vec<String> = vec![cfg.mode.name().into()];
    let mut push = |flag: &str, value: String| {
        a.push(flag.into());
        a.push(value);
    };
    for t in &cfg.targets {
        push("--target", t.to_string());
    }
    // Each child gets its own slice of the source addresses when there are enough of them,
    // so no two processes compete for the same (source, target) port space.
    let n_src = cfg.sources.len() as u64;
    let sources: Vec<String> = if n_src >= u64::from(k) {
        let start: u64 = (0..i).map(|j| share(n_src, j, k)).sum();
        cfg.sources
            .iter()
            .skip(start as usize)
            .take(share(n_src, i, k) as usize)
            .map(ToString::to_string)
            .collect()
    } else {
        cfg.sources.iter().map(ToString::to_string).collect()
    };
    if !sources.is_empty() {
        push("--source", sources.join(","));
    }
    push("--connections", share(cfg.connections, i, k).to_string());
    let per_child = |r: f64| if r > 0.0 { r / f64::from(k) } else { r };
    let rate = match cfg.mode {
        Mode::Connect | Mode::Echo | Mode::Churn | Mode::Publish | Mode::Drain => {
            per_child(cfg.rate)
        }
        // Only child 0 publishes, at the full rate.
        Mode::Broadcast => cfg.rate,
    };
    push("--rate", rate.to_string());
    push("--ramp-rate", per_child(cfg.ramp_rate).to_string());
    push("--duration", (cfg.duration_us as f64 / 1e6).to_string());
    push(
        "--connect-timeout",
        (cfg.connect_timeout_us as f64 / 1e6).to_string(),
    );
    push("--drain", (cfg.drain_us as f64 / 1e6).to_string());
    push("--path", cfg.path.clone());
    push("--size", cfg.size.to_string());
    push("--depth", cfg.depth.to_string());
    push("--channel", cfg.channel.clone());
    push("--publish-rate", cfg.publish_rate.to_string());
    push("--warmup", cfg.warmup_publishes.to_string());
    push(
        "--churn-start",
        (cfg.churn_start_us as f64 / 1e6).to_string(),
    );
    if let Some(stop) = cfg.churn_stop_us {
        push("--churn-stop", (stop as f64 / 1e6).to_string());
    }
    push("--publish-mode", cfg.publish_mode.name().into());
    push("--publish-via", cfg.publish_via.name().into());
    push("--child-index", i.to_string());
    let offset: u64 = (0..i).map(|j| share(cfg.connections, j, k)).sum();
    push("--client-offset", offset.to_string());
    if let Some(t) = cfg.publish_target {
        push("--publish-target", t.to_string());
    }
    if let Some(u) = &cfg.send_to {
        push("--send-to", u.clone());
    }
    if let Some(t) = cfg.receiver {
        push("--receiver", t.to_string());
    }
    if cfg.text {
        a.push("--text".into());
    }
    if cfg.accept_masked {
        a.push("--accept-masked".into());
    }
    if cfg.json_records {
        a.push("--json-records".into());
    }
    if cfg.compression {
        a.push("--compression".into());
    }
    a.push("--json".into());
    a
}
