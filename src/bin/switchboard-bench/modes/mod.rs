//! The run shared by every mode (ramp, wait for the other processes, run, drain, teardown)
//! and the `Workload` hooks through which each mode adds its own traffic.

pub mod broadcast;
pub mod churn;
pub mod connect;
pub mod drain;
pub mod echo;
pub mod publish;
pub mod publisher;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::cause::Cause;
use crate::cli::{Config, Mode, PublishMode};
use crate::conn::{Event, Handle};
use crate::coord::{Coord, Signal};
use crate::net::Net;
use crate::pacer::Pacer;
use crate::progress::Progress;
use crate::report::Report;
use crate::sys;

/// Longest single poll: bounds how late the loop notices a deadline or a second tick.
const MAX_POLL_US: u64 = 50_000;
const SECOND_US: u64 = 1_000_000;

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Ramp = 0,
    Wait = 1,
    Run = 2,
    Drain = 3,
}

/// A mode's traffic on top of the shared run. Clients are numbered `0..n` and that number is
/// the tag of their connection; other connections (the publisher) use tags `>= n`.
pub trait Workload {
    /// Request path for client `i`'s next connection.
    fn path(&self, client: u32) -> String;
    /// Whether clients are plain HTTP/1.1 connections (`path` unused) instead of WebSockets.
    fn http_clients(&self) -> bool {
        false
    }
    /// Before the ramp: open helper connections.
    fn start(&mut self, _net: &mut Net, _now: u64) {}
    /// Every event of every connection.
    fn on_event(&mut self, h: &mut Handle<'_>, ev: &Event<'_>, now: u64, phase: Phase);
    /// A connection for client `i` was started as `id` (or failed to start).
    fn on_opening(&mut self, _client: u32, _id: Result<usize, Cause>, _now: u64) {}
    /// Whether helper connections have settled, so the ramp may end.
    fn ready(&self) -> bool {
        true
    }
    /// The measurement starts.
    fn go(&mut self, _net: &mut Net, _now: u64) {}
    /// Periodic work in the run and drain phases; returns µs until it next needs to run.
    fn work(&mut self, _net: &mut Net, _now: u64, _phase: Phase) -> u64 {
        MAX_POLL_US
    }
    /// Whether the measurement is complete before `--duration` is over (ends the run early).
    fn done(&self, _now: u64) -> bool {
        false
    }
    /// `--duration` is over: stop generating new traffic.
    fn stop(&mut self, _now: u64) {}
    /// Nothing more is expected in flight.
    fn drained(&self, _now: u64) -> bool {
        true
    }
    /// Messages counted so far (for the progress line).
    fn messages(&self) -> u64 {
        0
    }
    /// Adds the mode's counts to the report.
    fn finish(&mut self, report: &mut Report);
}

/// Round robin over targets, then sources: client `i` uses target `(i + c) % T` and source
/// `(i / T) % S`, where `c` is this process's `--child-index` (0 alone). Consecutive clients
/// go to different targets, so every target gets within one of `n / T` clients, and
/// children's extra clients land on different targets; every (source, target) pair, each with
/// its own ~28k ephemeral ports, gets an equal share.
pub fn endpoint(cfg: &Config, client: u32) -> (SocketAddr, Option<IpAddr>) {
    let i = client as usize;
    let t = cfg.targets.len().max(1);
    let s = cfg.sources.len().max(1);
    let c = cfg.child_index.unwrap_or(0) as usize;
    let source = cfg.sources.get((i / t) % s).copied();
    let target = cfg
        .targets
        .get((i + c) % t)
        .or_else(|| cfg.targets.first())
        .copied()
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    (target, source)
}

/// Runs `cfg.mode` in this process and returns its (unmerged, unfinalized) report.
pub fn run(cfg: &Config, coord: &mut Coord) -> io::Result<Report> {
    let n = u32::try_from(cfg.connections)
        .map_err(|_| io::Error::other("--connections is too large for one process"))?;
    let salt = u64::from(cfg.child_index.unwrap_or(0));
    let mut wl: Box<dyn Workload> = match cfg.mode {
        Mode::Connect => Box::new(connect::Connect::new(cfg)),
        Mode::Echo => Box::new(echo::Echo::new(cfg, n)),
        Mode::Broadcast => Box::new(broadcast::Broadcast::new(cfg, n)),
        Mode::Churn => Box::new(churn::Churn::new(cfg, n)),
        Mode::Publish => Box::new(publish::Publish::new(cfg, n)),
        Mode::Drain => Box::new(drain::Drain::new(cfg, n)),
    };
    let mut report = Report::new(cfg.mode.name());
    let mut net = Net::new(cfg.connect_timeout_us, salt)?;
    net.set_accept_masked(cfg.accept_masked);
    net.set_offer_deflate(cfg.compression);
    coord.attach(net.waker());
    coord.before();

    let t0 = sys::monotonic_us();
    wl.start(&mut net, t0);
    let mut pacer = Pacer::new(cfg.ramp_rate, t0);
    let mut next_client = 0u32;
    let mut phase = Phase::Ramp;
    let mut next_tick = t0 + SECOND_US;
    let (mut run_start, mut run_end) = (t0, t0);
    // Client connections open now, failed attempts and dropped connections (the report's
    // counters, kept as plain numbers for the progress line too).
    let (mut clients_open, mut opened, mut failed) = (0u64, 0u64, 0u64);

    loop {
        let now = sys::monotonic_us();
        let mut wait_us = MAX_POLL_US;
        match phase {
            Phase::Ramp => {
                let due = pacer.due(now).min(u64::from(n - next_client));
                for _ in 0..due {
                    let (target, source) = endpoint(cfg, next_client);
                    let started = if wl.http_clients() {
                        net.open_http(target, source, next_client)
                    } else {
                        net.open_ws(target, source, &wl.path(next_client), next_client)
                    };
                    if let Err(cause) = started {
                        report.fail(&cause.key());
                        failed += 1;
                    }
                    wl.on_opening(next_client, started, now);
                    next_client += 1;
                }
                pacer.took(due);
                report.add("attempted", due);
                if next_client < n {
                    wait_us = wait_us.min(pacer.next_in_us(now));
                } else if net.connecting_count() == 0 && wl.ready() {
                    report.ramp_s = (now - t0) as f64 / 1e6;
                    report.add("open_at_ready", clients_open);
                    coord.ready();
                    phase = Phase::Wait;
                    continue;
                }
            }
            Phase::Wait => match coord.signal() {
                Signal::Go => {
                    run_start = now;
                    wl.go(&mut net, now);
                    phase = Phase::Run;
                    continue;
                }
                Signal::Abort => {
                    net.close_all();
                    return Err(io::Error::other("the parent process went away"));
                }
                Signal::Wait => {}
            },
            Phase::Run => {
                if now >= run_start + cfg.duration_us || wl.done(now) {
                    run_end = now;
                    wl.stop(now);
                    phase = Phase::Drain;
                    continue;
                }
                wait_us = wait_us
                    .min(wl.work(&mut net, now, phase))
                    .min(run_start + cfg.duration_us - now);
            }
            Phase::Drain => {
                if wl.drained(now) || now >= run_end + cfg.drain_us {
                    break;
                }
                wait_us = wait_us.min(wl.work(&mut net, now, phase));
            }
        }
        if now >= next_tick {
            coord.tick(&Progress {
                elapsed_s: (now - t0) as f64 / 1e6,
                phase: phase as u8,
                open: net.open_count() as u64,
                connecting: net.connecting_count() as u64,
                opened_total: opened,
                failed,
                messages: wl.messages(),
            });
            next_tick += SECOND_US;
        }
        wait_us = wait_us.min(next_tick.saturating_sub(now));
        net.turn(Duration::from_micros(wait_us), &mut |h, ev| {
            let client = h.tag() < n;
            match &ev {
                Event::Open | Event::HttpReady if client => {
                    clients_open += 1;
                    opened += 1;
                    // The connect rate is about the ramp; churn's reconnections count apart.
                    let key = if phase == Phase::Ramp {
                        "opened"
                    } else {
                        "reopened"
                    };
                    report.add(key, 1);
                }
                Event::Closed { cause, was_open } if client => {
                    if *was_open {
                        clients_open -= 1;
                        report.add(&format!("dropped_{}", cause.key()), 1);
                    } else {
                        report.fail(&cause.key());
                    }
                    failed += 1;
                }
                _ => {}
            }
            wl.on_event(h, &ev, now, phase);
        })?;
    }
    report.run_s = (run_end - run_start) as f64 / 1e6;
    coord.teardown();
    net.close_all();
    coord.after();
    wl.finish(&mut report);
    report.memory = coord.take_memory();
    describe(cfg, &mut report);
    Ok(report)
}

/// The run-wide settings shown with the results (a parent overrides its children's shares).
pub fn describe(cfg: &Config, report: &mut Report) {
    report.param("connections", cfg.connections);
    report.param("targets", cfg.targets.len());
    let rate = |r: f64| {
        if r > 0.0 {
            r.to_string()
        } else {
            "unlimited".into()
        }
    };
    match cfg.mode {
        Mode::Connect | Mode::Echo | Mode::Publish | Mode::Drain => {
            report.param("connect_rate", rate(cfg.ramp_rate))
        }
        Mode::Broadcast if cfg.publish_mode == PublishMode::Serial => {}
        Mode::Broadcast => report.param("publish_rate", rate(cfg.publish_rate)),
        Mode::Churn => {
            report.param("reconnect_rate", rate(cfg.rate));
            report.param("publish_rate", rate(cfg.publish_rate));
        }
    }
    if !cfg.sources.is_empty() {
        report.param("sources", cfg.sources.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(line: &str) -> Config {
        match crate::cli::parse(line.split_whitespace()) {
            Ok(c) => c,
            Err(e) => panic!("{line}: {e}"),
        }
    }

    #[test]
    fn clients_go_round_robin_over_targets_and_pairs() {
        let mut cfg = config(
            "connect --target 127.0.0.1:1,127.0.0.1:2,127.0.0.1:3 \
             --source 127.0.0.2-127.0.0.3 -n 12",
        );
        let ends: Vec<_> = (0..12).map(|i| endpoint(&cfg, i)).collect();
        let ports: Vec<u16> = ends.iter().map(|(t, _)| t.port()).collect();
        assert_eq!(ports, [1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3]);
        // Every (source, target) pair exactly twice.
        for (t, s) in &ends {
            assert_eq!(ends.iter().filter(|e| e == &&(*t, *s)).count(), 2);
        }
        // A child starts one target further, so the remainders of the shares spread out.
        cfg.child_index = Some(1);
        assert_eq!(endpoint(&cfg, 0).0.port(), 2);
        // Without sources, no source; with one target, always that target.
        let cfg = config("connect --target 127.0.0.1:7");
        assert_eq!(
            endpoint(&cfg, 5),
            (SocketAddr::from(([127, 0, 0, 1], 7)), None)
        );
    }
}
