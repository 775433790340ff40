//! switchboard-bench: the load generator shipped with switchboard.
//!
//! `cargo run --release --bin switchboard-bench -- MODE --target 127.0.0.1:PORT ...`; modes
//! and flags are in `--help` (declared in `cli`). One mio loop per process, like the server; `--procs` runs
//! several processes and merges their results. Loopback targets only.

mod addrs;
mod cause;
mod cli;
mod conn;
mod coord;
mod http;
mod memprobe;
mod modes;
mod net;
mod pacer;
mod procs;
mod progress;
mod report;
mod rng;
mod scan;
mod sys;
mod table;
mod wire;

use std::io::Write;
use std::process::ExitCode;

use coord::Coord;

/// Descriptors a process needs besides its connections (stdio, poll, waker, pipes, /proc).
const FD_RESERVE: u64 = 64;

fn main() -> ExitCode {
    let cfg = match cli::parse(std::env::args_os().skip(1)) {
        Ok(cfg) => cfg,
        // `--help`/`--version` on stdout with status 0; a refusal on stderr with status 2.
        Err(e) => e.exit(),
    };
    match sys::raise_nofile_limit() {
        Ok(limit) => {
            let per_process = cfg.connections / u64::from(cfg.procs) + 1;
            if cfg.child_index.is_none() && per_process + FD_RESERVE > limit {
                eprintln!(
                    "switchboard-bench: warning: {per_process} connections per process but the \
                     descriptor limit is {limit}; expect emfile failures (use --procs)"
                );
            }
        }
        Err(e) => eprintln!("switchboard-bench: warning: could not raise RLIMIT_NOFILE: {e}"),
    }

    let result = if cfg.procs > 1 && cfg.child_index.is_none() {
        procs::run_parent(&cfg)
    } else {
        let mut coord = if cfg.child_index.is_some() {
            Coord::child()
        } else {
            Coord::local(&cfg)
        };
        modes::run(&cfg, &mut coord)
    };
    let mut report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchboard-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    if cfg.child_index.is_some() {
        // Raw material for the parent's merge; a vanished parent has no use for it either.
        return match report.to_json(true) {
            Ok(json) => {
                let _ = writeln!(out, "{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("switchboard-bench: encoding the report: {e}");
                ExitCode::FAILURE
            }
        };
    }
    report.procs = u64::from(cfg.procs);
    report.finalize();
    let written = if cfg.json {
        report
            .to_json(false)
            .map_err(std::io::Error::from)
            .and_then(|json| writeln!(out, "{json}"))
    } else {
        write!(out, "{}", report.render())
    };
    if written.is_err() || !report.errors.is_empty() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
