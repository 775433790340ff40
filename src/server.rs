//! Starting and stopping: fd limit, listeners, one thread per worker, signals.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use mio::{Poll, Waker};

use crate::config::{Config, FD_RESERVE};
use crate::sys::{self, Signal};
use crate::token::WAKER;
use crate::worker::{Cmd, Shared, Worker};
use crate::{info, warn};

/// How to reach a worker from another thread.
struct WorkerHandle {
    tx: Sender<Cmd>,
    waker: Arc<Waker>,
}

/// A running server: its bound addresses and the means to stop it.
pub struct Server {
    addrs: Vec<SocketAddr>,
    handles: Vec<WorkerHandle>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    shared: Arc<Shared>,
}

impl Server {
    /// Raises the fd limit, binds every listener and starts the workers.
    pub fn start(cfg: Config) -> io::Result<Server> {
        let fd_limit = sys::raise_fd_limit()?;
        let per_worker_fds = (cfg.listen.len() as u64 + 3) * cfg.workers as u64;
        let derived = fd_limit.saturating_sub(FD_RESERVE + per_worker_fds).max(1) as usize;
        let max_connections = match cfg.max_connections {
            Some(n) => {
                if n > derived {
                    warn!("--max-connections {n} is above what the fd limit ({fd_limit}) allows; connections past {derived} will be refused by the kernel's limit");
                }
                n
            }
            None => derived,
        };
        let (listeners, addrs) = crate::listener::bind_all(&cfg.listen, cfg.workers)?;
        let workers = cfg.workers;
        let shared = Arc::new(Shared {
            cfg,
            max_connections,
            open: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
        });
        let mut handles = Vec::with_capacity(workers);
        let mut threads = Vec::with_capacity(workers);
        for (id, l) in listeners.into_iter().enumerate() {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let (tx, rx) = crossbeam_channel::unbounded();
            let worker = Worker::new(id, poll, l, shared.clone(), rx)?;
            let thread = std::thread::Builder::new()
                .name(format!("worker-{id}"))
                .spawn(move || worker.run())?;
            handles.push(WorkerHandle { tx, waker });
            threads.push(thread);
        }
        info!("started {workers} workers; max connections {max_connections} (fd limit {fd_limit})");
        Ok(Server {
            addrs,
            handles,
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
            handles: self
                .handles
                .iter()
                .map(|h| (h.tx.clone(), h.waker.clone()))
                .collect(),
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
    handles: Vec<(Sender<Cmd>, Arc<Waker>)>,
    shared: Arc<Shared>,
}

impl Stopper {
    /// Returns false if shutdown had already been requested.
    pub fn shutdown(&self) -> bool {
        if self.shared.shutting_down.swap(true, Ordering::AcqRel) {
            return false;
        }
        for (tx, waker) in &self.handles {
            let _ = tx.send(Cmd::Shutdown);
            let _ = waker.wake();
        }
        true
    }
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
    let stopper = server.stopper();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            match sys::wait_signal() {
                Ok(Signal::Terminate | Signal::Interrupt) => {
                    if stopper.shutdown() {
                        info!("shutting down: closing connections (a second signal exits at once)");
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
