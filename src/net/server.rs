//! Starting and stopping: fd limit, listeners, one thread per worker, signals.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mio::{Poll, Waker};

use crate::config::{Config, FD_RESERVE, MAX_LISTENERS};
use crate::hub::link::{WorkerLink, Workers};
use crate::hub::redis::request::Settings;
use crate::hub::redis::RedisEngine;
use crate::hub::{Cmd, HistoryLimits, Hub};
use crate::net::notify::{status_line, Notifier, Progress};
use crate::net::sys::{self, Signal};
use crate::net::token::WAKER;
use crate::net::worker::{Worker, MAX_LINGERING_REJECTS};
use crate::net::{listener, notify};
use crate::transport::access::Access;
use crate::transport::shared::Shared;
use crate::transport::stats::WorkerStats;
use crate::{info, warn};

/// How often systemd hears the connection count (and, with a watchdog, that we are alive).
const STATUS_INTERVAL: Duration = Duration::from_secs(5);
/// How often the hub's janitor expires history (one shard per step).
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// A running server: its bound addresses and the means to stop it.
pub struct Server {
    addrs: Vec<SocketAddr>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    shared: Arc<Shared>,
}

impl Server {
    /// Raises the fd limit, binds every listener and starts the workers.
    pub fn start(cfg: Config) -> io::Result<Server> {
        // First: a key that cannot be used stops the start before anything is bound.
        let access =
            Access::new(&cfg).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let fd_limit = sys::raise_fd_limit()?;
        // Descriptors kept back from connections: listeners, poll and waker per worker, and
        // a reserve (a quarter of a small limit) for logs, the accept reserve and the 503s
        // that linger until the client has read them.
        let per_worker_fds = (cfg.listen.len() as u64 + 3) * cfg.workers as u64;
        let reserve = FD_RESERVE.min(fd_limit / 4);
        // Descriptors already open (stdio, and whatever a wrapper or supervisor leaked into
        // the process) are not available to connections either.
        let already_open = sys::open_fds().unwrap_or(3) as u64;
        let derived = fd_limit
            .saturating_sub(reserve + per_worker_fds + already_open)
            .max(1) as usize;
        let max_connections = match cfg.max_connections {
            // Past the fd limit, accept would fail: clients get a 503 at capacity instead.
            Some(n) if n > derived => {
                warn!("--max-connections {n} is more than the fd limit ({fd_limit}) allows; using {derived} (raise LimitNOFILE / ulimit -n for more)");
                derived
            }
            Some(n) => n,
            None => derived,
        };
        let lingering_rejects =
            (reserve as usize / (2 * cfg.workers)).clamp(1, MAX_LINGERING_REJECTS);
        let activated = notify::listen_fds();
        let (listeners, addrs) = if activated > 0 {
            if activated > MAX_LISTENERS {
                return Err(io::Error::other(format!(
                    "socket activation passed {activated} sockets; at most {MAX_LISTENERS}"
                )));
            }
            info!("socket activation: serving on {activated} inherited socket(s); --listen is not used");
            let got = listener::inherited(notify::LISTEN_FDS_START, activated, cfg.workers)?;
            // Children of this process must not take the sockets for theirs.
            notify::forget_listen_fds();
            got
        } else {
            listener::bind_all(&cfg.listen, cfg.workers)?
        };
        let workers = cfg.workers;
        let mut polls = Vec::with_capacity(workers);
        let mut links = Vec::with_capacity(workers);
        let mut receivers = Vec::with_capacity(workers);
        for _ in 0..workers {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            // Unbounded: a publisher must never block on a worker; the worker drains its
            // queue every turn, and slow subscribers are cut off at --max-outbound-bytes.
            let (tx, rx) = crossbeam_channel::unbounded();
            links.push(WorkerLink::new(tx, waker));
            receivers.push(rx);
            polls.push(poll);
        }
        let links: Workers = links.into();
        let hub = if cfg.redis.is_empty() {
            let limits = HistoryLimits {
                size: cfg.history_size,
                ttl: cfg.history_ttl,
                max_bytes: cfg.history_max_bytes,
                max_channels: cfg.max_channels,
            };
            Hub::in_memory(limits, links, cfg.defer_answers, &cfg.node_id)
        } else {
            let settings = Settings {
                history_size: cfg.history_size,
                history_ttl_s: cfg.history_ttl.as_secs(),
                max_channels: cfg.max_channels,
                node: cfg.node_id.as_str().into(),
                presence_ttl: cfg.presence_ttl,
            };
            let engine = RedisEngine::start(&cfg.redis, links.clone(), settings)?;
            let shards: Vec<String> = cfg.redis.iter().map(ToString::to_string).collect();
            info!(
                "cluster mode: node {} on redis {} ({} shard{})",
                cfg.node_id,
                shards.join(", "),
                shards.len(),
                if shards.len() == 1 { "" } else { "s" }
            );
            Hub::new(Box::new(engine), links)
        };
        warn_if_open(&cfg, &addrs, &access);
        let shared = Arc::new(Shared {
            access,
            cfg,
            max_connections,
            lingering_rejects,
            fd_limit: sys::fd_limit(),
            open: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            hub,
            stats: (0..workers)
                .map(|_| Arc::new(WorkerStats::default()))
                .collect(),
        });
        let mut threads = Vec::with_capacity(workers);
        for (id, ((poll, rx), l)) in polls.into_iter().zip(receivers).zip(listeners).enumerate() {
            let worker = Worker::new(id, poll, l, shared.clone(), rx)?;
            threads.push(
                std::thread::Builder::new()
                    .name(format!("worker-{id}"))
                    .spawn(move || worker.run())?,
            );
        }
        let janitor = shared.clone();
        std::thread::Builder::new()
            .name("hub-janitor".into())
            .spawn(move || {
                let mut steps = 0u32;
                while !janitor.shutting_down.load(Ordering::Acquire) {
                    std::thread::sleep(SWEEP_INTERVAL);
                    janitor.hub.engine.maintain();
                    steps = steps.wrapping_add(1);
                    if steps.is_multiple_of(10) {
                        janitor.access.sweep();
                    }
                }
            })?;
        info!("started {workers} workers; max connections {max_connections} (fd limit {fd_limit})");
        Ok(Server {
            addrs,
            threads,
            shared,
        })
    }

    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// A handle that can ask the server to shut down from another thread.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            shared: self.shared.clone(),
        }
    }

    /// Waits for every worker to finish.
    pub fn join(self) -> io::Result<()> {
        let mut result = Ok(());
        for t in self.threads {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(_) => result = Err(io::Error::other("a worker thread panicked")),
            }
        }
        result
    }
}

/// Asks all workers to shut down gracefully.
#[derive(Clone)]
pub struct Stopper {
    shared: Arc<Shared>,
}

impl Stopper {
    /// Returns false if shutdown had already been requested.
    pub fn shutdown(&self) -> bool {
        if self.shared.shutting_down.swap(true, Ordering::AcqRel) {
            return false;
        }
        for link in self.shared.hub.workers() {
            // Behind every delivery already queued, so those go out before the 1001.
            link.send(Cmd::Shutdown);
            let _ = link.waker.wake();
        }
        true
    }
}

/// Says at start who may connect, and warns loudly when anyone on the network may do
/// anything: a non-loopback address with no tokens and no API key.
fn warn_if_open(cfg: &Config, addrs: &[SocketAddr], access: &Access) {
    if let Some(v) = &access.verifier {
        let algs: Vec<&str> = v.algorithms().map(|a| a.name()).collect();
        info!("connection tokens required ({})", algs.join(", "));
    }
    let public: Vec<String> = addrs
        .iter()
        .filter(|a| !a.ip().is_loopback())
        .map(ToString::to_string)
        .collect();
    if public.is_empty() || access.tokens_on() || cfg.api_key.is_some() {
        return;
    }
    warn!(
        "WARNING: listening on {} with no --token-secret/--token-public-key and no --api-key: \
         anyone who can reach it may subscribe to any channel, claim any user name and publish",
        public.join(", ")
    );
}

/// Runs the server until SIGTERM/SIGINT and its graceful shutdown; a second signal exits at
/// once. Prints `listening on ADDR` for each bound address on stdout.
pub fn run(cfg: Config) -> io::Result<()> {
    // Before any thread exists, so every thread inherits the mask and only the signal thread
    // sees these signals.
    sys::block_signals()?;
    let server = Server::start(cfg)?;
    {
        let mut out = io::stdout().lock();
        for addr in server.local_addrs() {
            writeln!(out, "listening on {addr}")?;
        }
        out.flush()?;
    }
    let notifier = Arc::new(Notifier::from_env());
    let shared = server.shared.clone();
    let status = move || {
        status_line(
            shared.open.load(Ordering::Relaxed),
            shared.max_connections,
            shared.shutting_down.load(Ordering::Relaxed),
            &shared.hub.engine.health(),
        )
    };
    // The first status goes with READY=1, so `systemctl status` shows one from the start.
    notifier.send(&[("READY", "1"), ("STATUS", &status())]);
    if notifier.is_enabled() {
        let notifier = notifier.clone();
        let shared = server.shared.clone();
        let status = status.clone();
        let period = notifier
            .watchdog_interval()
            .map_or(STATUS_INTERVAL, |w| w.min(STATUS_INTERVAL));
        std::thread::Builder::new()
            .name("sd-notify".into())
            .spawn(move || {
                let mut progress = Progress::default();
                // Until the process exits: a drain (and its watchdog) outlasts the signal.
                loop {
                    std::thread::sleep(period);
                    notifier.status(&status());
                    // Fed only while every worker's loop keeps turning: a stuck worker lets
                    // systemd's watchdog restart the service.
                    let turns = shared
                        .stats
                        .iter()
                        .map(|s| s.loop_turns.load(Ordering::Relaxed));
                    if notifier.watchdog_interval().is_some() && progress.advanced(turns) {
                        notifier.watchdog();
                    }
                }
            })?;
    }
    let stopper = server.stopper();
    let on_stop = notifier.clone();
    let drain = server.shared.cfg.drain;
    let open = server.shared.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            match sys::wait_signal() {
                Ok(Signal::Terminate | Signal::Interrupt) => {
                    // Before the workers are told: with no connections they finish at once
                    // and the process may exit before this thread runs again.
                    let n = open.open.load(Ordering::Relaxed);
                    let status = if drain.is_zero() {
                        format!("stopping: closing {n} connections")
                    } else {
                        format!(
                            "draining: closing {n} connections over {}s",
                            drain.as_secs()
                        )
                    };
                    on_stop.send(&[("STOPPING", "1"), ("STATUS", &status)]);
                    if stopper.shutdown() {
                        info!("shutting down: {status} (a second signal exits at once)");
                    } else {
                        warn!("second signal: exiting now");
                        std::process::exit(1);
                    }
                }
                Ok(Signal::Hangup) => info!("SIGHUP ignored: nothing is reloadable yet"),
                Err(e) => {
                    warn!("signal wait failed: {e}");
                    return;
                }
            }
        })?;
    server.join()?;
    info!("stopped");
    Ok(())
}
