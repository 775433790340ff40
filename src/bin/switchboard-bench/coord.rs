//! How a running mode talks to whoever started it.
//!
//! A stand-alone process prints its own progress line and samples memory itself. A child
//! started by `--procs` instead prints machine-readable lines on stdout (`progress ...`,
//! `ready`, `teardown`, then its JSON report) and waits for `go` on stdin, so the parent can
//! start every child's measurement at the same moment and sample memory once for all.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mio::Waker;

use crate::cli::{Config, Mode};
use crate::memprobe::MemTrack;
use crate::progress::{Printer, Progress};

/// After the connections are closed, how long the server gets to free them before the
/// "after" memory sample.
pub const SETTLE_BEFORE_AFTER_SAMPLE: Duration = Duration::from_secs(1);

const WAITING: u8 = 0;
const GO: u8 = 1;
const ABORT: u8 = 2;

/// What the parent has said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Wait,
    Go,
    Abort,
}

/// Whether the "after" sample waits for the server to free connections: when the server's
/// memory is watched, and in the modes whose point is memory (connect, churn).
pub fn settle_before_after_sample(cfg: &Config) -> bool {
    cfg.server_pid.is_some() || matches!(cfg.mode, Mode::Connect | Mode::Churn)
}

#[derive(Debug)]
pub enum Coord {
    Local {
        mem: MemTrack,
        printer: Option<Printer>,
        settle: bool,
    },
    Child {
        go: Arc<AtomicU8>,
    },
}

impl Coord {
    pub fn local(cfg: &Config) -> Coord {
        Coord::Local {
            mem: MemTrack::new(cfg.server_pid),
            printer: (!cfg.quiet).then(Printer::default),
            settle: settle_before_after_sample(cfg),
        }
    }

    pub fn child() -> Coord {
        Coord::Child {
            go: Arc::new(AtomicU8::new(WAITING)),
        }
    }

    /// A child starts listening for `go` on stdin; the waker ends the loop's poll at once.
    pub fn attach(&self, waker: Arc<Waker>) {
        if let Coord::Child { go } = self {
            let go = Arc::clone(go);
            std::thread::spawn(move || {
                let mut verdict = ABORT;
                for line in std::io::stdin().lock().lines() {
                    match line {
                        Ok(l) if l.trim() == "go" => {
                            verdict = GO;
                            break;
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                // End of input before `go` means the parent is gone: abort the run.
                go.store(verdict, Ordering::Release);
                let _ = waker.wake();
            });
        }
    }

    /// Before any connection is opened.
    pub fn before(&mut self) {
        if let Coord::Local { mem, .. } = self {
            mem.sample("before");
        }
    }

    /// Every connection has been attempted and settled.
    pub fn ready(&mut self) {
        match self {
            Coord::Local { mem, .. } => mem.sample("ready"),
            Coord::Child { .. } => child_line("ready"),
        }
    }

    pub fn signal(&self) -> Signal {
        match self {
            Coord::Local { .. } => Signal::Go,
            Coord::Child { go } => match go.load(Ordering::Acquire) {
                GO => Signal::Go,
                ABORT => Signal::Abort,
                _ => Signal::Wait,
            },
        }
    }

    /// Once a second.
    pub fn tick(&mut self, p: &Progress) {
        match self {
            Coord::Local { mem, printer, .. } => {
                if let Some(printer) = printer {
                    printer.print(p);
                }
                // Phase 2 is the run: these are the "during" samples.
                if p.phase == 2 {
                    mem.sample("run");
                }
            }
            Coord::Child { .. } => child_line(&p.to_line()),
        }
    }

    /// About to close every connection.
    pub fn teardown(&mut self) {
        if let Coord::Child { .. } = self {
            child_line("teardown");
        }
    }

    /// Every connection is closed: a last memory sample once the server had time to free them.
    pub fn after(&mut self) {
        if let Coord::Local { mem, settle, .. } = self {
            if *settle {
                std::thread::sleep(SETTLE_BEFORE_AFTER_SAMPLE);
            }
            mem.sample("after");
        }
    }

    pub fn take_memory(&mut self) -> Vec<crate::memprobe::Sample> {
        match self {
            Coord::Local { mem, .. } => std::mem::take(&mut mem.samples),
            Coord::Child { .. } => Vec::new(),
        }
    }
}

/// One line on a child's stdout; if the parent stopped reading there is no one to tell.
fn child_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
