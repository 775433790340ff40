//! One event-loop thread: its own poll, listeners, slab of connections and timing wheel.
//!
//! The loop reads like the data flow: accept (`accept.rs`) → read, handshake, frames and
//! dispatch into the transports (`read.rs`) → write what a batch produced (`output.rs`);
//! then the mailbox — deliveries fanned out and later answers from the engine
//! (`deliver.rs`) — and timers and shutdown (`timers.rs`). Reads go into one scratch buffer
//! per worker; whatever a read batch produces for a connection is gathered and written with
//! one system call at the end of the batch.

mod accept;
mod deliver;
mod output;
mod read;
mod timers;

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::codec::deflate::Deflate;
use crate::hub::plan::Batch;
use crate::hub::subs::LocalIndex;
use crate::hub::Cmd;
use crate::net::conn::Conn;
use crate::net::sys::ReserveFd;
use crate::net::timer::{self, Wheel};
use crate::net::token::{self, WAKER};
use crate::transport::access::HttpBuckets;
use crate::transport::pending::Pending;
use crate::transport::shared::Shared;
use crate::transport::stats::WorkerStats;

/// Refused connections kept open briefly so the 503 is read before the socket closes
/// (closing with unread input would reset the connection and could destroy the response).
/// Per worker, at most; fewer when the fd reserve is small (`Shared::lingering_rejects`).
pub const MAX_LINGERING_REJECTS: usize = 64;
/// Per-worker read buffer: every connection reads into this, none keeps its own.
pub const READ_BUF_BYTES: usize = 128 * 1024;
/// Events fetched per poll.
const EVENTS_CAPACITY: usize = 1024;

/// Timeouts converted to ticks once.
#[derive(Debug, Clone, Copy)]
struct Ticks {
    ping: u32,
    idle: u32,
    handshake: u32,
    close: u32,
    shutdown: u32,
    poll: u32,
}

pub struct Worker {
    id: usize,
    poll: Poll,
    listeners: Vec<TcpListener>,
    conns: Slab<Conn>,
    next_gen: u32,
    wheel: Wheel,
    shared: Arc<Shared>,
    stats: Arc<WorkerStats>,
    rx: Receiver<Cmd>,
    ticks: Ticks,
    start: Instant,
    now: u32,
    scratch: Vec<u8>,
    wbuf: Vec<u8>,
    /// permessage-deflate: one compressor (per window size asked for) and one decompressor
    /// for all of this worker's connections, made on first use and reset per message.
    deflate: Deflate,
    /// Connections with input left after their read budget.
    revisit: Vec<Token>,
    /// Channel → local subscribers.
    index: LocalIndex,
    /// Requests waiting for the engine's later answer.
    pending: Pending,
    /// Publish buckets of plain HTTP connections.
    buckets: HttpBuckets,
    /// Deliveries being drained, and who is owed which.
    batch: Batch,
    commands_left: bool,
    reserve: ReserveFd,
    accept_paused_until: Option<u32>,
    fd_exhausted: bool,
    lingering_rejects: usize,
    shutdown: Option<timers::Shutdown>,
}

/// The transports' view of the worker for one connection: built from disjoint fields, so
/// it can be used while that connection is borrowed from the slab.
macro_rules! cx {
    ($w:expr, $key:expr, $gen:expr) => {
        $crate::transport::cx::Cx::new(
            &$w.shared,
            $crate::transport::cx::WorkerParts {
                wbuf: &mut $w.wbuf,
                deflate: &mut $w.deflate,
                index: &mut $w.index,
                pending: &mut $w.pending,
                buckets: &mut $w.buckets,
            },
            &$w.stats,
            $w.now,
            $crate::net::timer::TICK_MS,
            $crate::transport::pending::ConnId {
                worker: $w.id,
                key: $key as u32,
                gen: $gen,
            },
        )
    };
}
pub(crate) use cx;

impl Worker {
    pub fn new(
        id: usize,
        poll: Poll,
        listeners: Vec<TcpListener>,
        shared: Arc<Shared>,
        rx: Receiver<Cmd>,
    ) -> io::Result<Self> {
        let cfg = &shared.cfg;
        let ticks = Ticks {
            ping: timer::ticks(cfg.ping_interval),
            idle: timer::ticks(cfg.idle_timeout),
            handshake: timer::ticks(cfg.handshake_timeout),
            close: timer::ticks(cfg.close_timeout),
            shutdown: timer::ticks(cfg.shutdown_timeout),
            poll: timer::ticks(cfg.poll_timeout),
        };
        let mut worker = Worker {
            id,
            poll,
            listeners,
            conns: Slab::new(),
            next_gen: 0,
            wheel: Wheel::new(0),
            stats: shared.stats.get(id).cloned().unwrap_or_default(),
            shared,
            rx,
            ticks,
            start: Instant::now(),
            now: 0,
            scratch: vec![0; READ_BUF_BYTES],
            wbuf: Vec::with_capacity(64 * 1024),
            deflate: Deflate::new(),
            revisit: Vec::new(),
            index: LocalIndex::default(),
            pending: Pending::default(),
            buckets: HttpBuckets::default(),
            batch: Batch::default(),
            commands_left: false,
            reserve: ReserveFd::new(),
            accept_paused_until: None,
            fd_exhausted: false,
            lingering_rejects: 0,
            shutdown: None,
        };
        for (i, l) in worker.listeners.iter_mut().enumerate() {
            worker
                .poll
                .registry()
                .register(l, token::listener(i), Interest::READABLE)?;
        }
        Ok(worker)
    }

    /// Runs until shutdown completes.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let mut expired = Vec::new();
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.now = self.tick_now();
            // Liveness for the systemd watchdog: every worker must keep turning.
            self.stats.loop_turns.fetch_add(1, Ordering::Relaxed);
            let mut woken = self.commands_left;
            for event in events.iter() {
                match event.token() {
                    WAKER => woken = true,
                    t if token::listener_index(t).is_some() => self.accept_all(),
                    t => self.on_conn_event(t, event),
                }
            }
            if woken {
                self.drain_commands();
            }
            self.revisit_pending();
            if self.accept_paused_until.is_some_and(|t| self.now >= t) {
                self.accept_paused_until = None;
                self.accept_all();
            }
            self.wheel.expire(self.now, &mut expired);
            for key in expired.drain(..) {
                self.on_timer(key);
            }
            if self.shared.cfg.compression {
                self.publish_deflate_counts();
            }
            if self.shutdown_finished() {
                return Ok(());
            }
        }
    }

    /// Copies the compressor's counts where the metrics read them (three relaxed stores a
    /// turn, rather than atomics inside the codec, which stays free of shared state).
    fn publish_deflate_counts(&self) {
        let c = self.deflate.counts();
        self.stats
            .deflated_messages
            .store(c.messages, Ordering::Relaxed);
        self.stats
            .deflated_plain_bytes
            .store(c.plain_bytes, Ordering::Relaxed);
        self.stats
            .deflated_bytes
            .store(c.compressed_bytes, Ordering::Relaxed);
    }

    fn tick_now(&self) -> u32 {
        let ms = self.start.elapsed().as_millis() as u64;
        u32::try_from(ms / timer::TICK_MS).unwrap_or(u32::MAX)
    }

    /// Until the next tick, or zero while connections or commands wait for a revisit.
    fn poll_timeout(&self) -> Duration {
        if !self.revisit.is_empty() || self.commands_left {
            return Duration::ZERO;
        }
        let elapsed = self.start.elapsed().as_millis() as u64;
        let next_tick_ms = (elapsed / timer::TICK_MS + 1) * timer::TICK_MS;
        Duration::from_millis(next_tick_ms - elapsed)
    }
}
