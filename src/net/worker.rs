//! One event-loop thread: its own poll, listeners, slab of connections and timing wheel.
//!
//! The loop reads like the data flow: accept → handshake → frames → dispatch → write, then
//! timers. Reads go into one scratch buffer per worker; whatever a read batch produces for a
//! connection is gathered and written with one syscall at the end of the batch.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use mio::event::Event as PollEvent;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::codec::frame::{close_code, OpCode};
use crate::codec::http;
use crate::config::Config;
use crate::error::HandshakeError;
use crate::hub::fanout::{self, Batch, Delivered, Item, Owed};
use crate::hub::session::{self, LocalIndex, Subscriber};
use crate::hub::{Cmd, Delivery, Hub};
use crate::net::conn::{Conn, Phase};
use crate::net::outq::{Flushed, OutQueue};
use crate::net::sys::{self, ReserveFd};
use crate::net::timer::{self, Wheel};
use crate::net::token::{self, WAKER};
use crate::transport::dispatch::{self, Cx, Out, Verdict};
use crate::transport::router::Route;
use crate::transport::stats::WorkerStats;
use crate::transport::{poll, sse, ws};
use crate::{debug, info, warn};

/// Per-worker read buffer: every connection reads into this, none keeps its own.
pub const READ_BUF_BYTES: usize = 128 * 1024;
/// Reads per readiness event before the connection yields to others (it is revisited on the
/// next turn of the loop, since no new edge will come for data already waiting).
const READS_PER_EVENT: usize = 16;
/// Gathered output is written out once it reaches this, even mid-batch.
const BATCH_FLUSH_BYTES: usize = 256 * 1024;
/// Refused connections kept open briefly so the 503 is read before the socket closes
/// (closing with unread input would reset the connection and could destroy the response).
/// Per worker, at most; fewer when the fd reserve is small (`Shared::lingering_rejects`).
pub const MAX_LINGERING_REJECTS: usize = 64;
/// How long accepting pauses after the process runs out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(200);
/// Events fetched per poll.
const EVENTS_CAPACITY: usize = 1024;
/// Commands (deliveries) taken per loop turn before sockets get their turn again.
const COMMANDS_PER_TURN: usize = 4096;

/// State shared by all workers.
#[derive(Debug)]
pub struct Shared {
    pub cfg: Config,
    pub max_connections: usize,
    /// Refused connections each worker may keep lingering (they use reserved descriptors).
    pub lingering_rejects: usize,
    /// Connections counted against `max_connections` (all workers).
    pub open: AtomicUsize,
    pub shutting_down: AtomicBool,
    pub hub: Hub,
    /// One per worker, indexed by worker id.
    pub stats: Vec<Arc<WorkerStats>>,
}

impl Shared {
    /// Claims a connection slot, or says the server is at capacity.
    fn try_claim(&self) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_connections).then_some(n + 1)
            })
            .is_ok()
    }

    fn release(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

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
    /// Connections with input left after their read budget.
    revisit: Vec<Token>,
    /// Channel → local subscribers.
    index: LocalIndex,
    /// Deliveries being drained, and who is owed which.
    batch: Batch,
    commands_left: bool,
    reserve: ReserveFd,
    accept_paused_until: Option<u32>,
    fd_exhausted: bool,
    lingering_rejects: usize,
    shutdown_deadline: Option<u32>,
}

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
            revisit: Vec::new(),
            index: LocalIndex::default(),
            batch: Batch::default(),
            commands_left: false,
            reserve: ReserveFd::new(),
            accept_paused_until: None,
            fd_exhausted: false,
            lingering_rejects: 0,
            shutdown_deadline: None,
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
            if let Some(deadline) = self.shutdown_deadline {
                if self.conns.is_empty() || self.now >= deadline {
                    if !self.conns.is_empty() {
                        info!(
                            "worker {}: shutdown timeout, dropping {} connections",
                            self.id,
                            self.conns.len()
                        );
                    }
                    let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
                    for key in keys {
                        self.close_conn(key);
                    }
                    return Ok(());
                }
            }
        }
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

    // ------------------------------------------------------------------ accept

    fn accept_all(&mut self) {
        if self.accept_paused_until.is_some() || self.shutdown_deadline.is_some() {
            return;
        }
        for i in 0..self.listeners.len() {
            self.accept_from(i);
        }
    }

    fn accept_from(&mut self, i: usize) {
        loop {
            let Some(listener) = self.listeners.get(i) else {
                return;
            };
            match listener.accept() {
                Ok((stream, _peer)) => {
                    self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                    if self.fd_exhausted {
                        self.fd_exhausted = false;
                        self.reserve.restore();
                        info!("worker {}: descriptors available again, accepting", self.id);
                    }
                    self.admit(stream);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) if sys::is_resource_exhaustion(&e) => {
                    if !self.fd_exhausted {
                        self.fd_exhausted = true;
                        warn!("worker {}: accept failed ({e}); refusing new connections until descriptors free up", self.id);
                    }
                    // Another thread may have taken the descriptor freed last time; try again.
                    self.reserve.restore();
                    if self.reserve.is_held() {
                        // Use the held-back descriptor to take one connection off the queue
                        // and refuse it properly, then try to hold one back again.
                        self.reserve.release();
                        let refused = match self.listeners.get(i).map(|l| l.accept()) {
                            Some(Ok((stream, _))) => {
                                refuse_now(stream);
                                self.stats.refused(HandshakeError::AtCapacity);
                                true
                            }
                            _ => false,
                        };
                        self.reserve.restore();
                        // Linux reports EMFILE before it looks at the queue, so only go on
                        // while connections are actually being taken off it; an empty queue
                        // (WouldBlock on the retry) ends the round instead of spinning.
                        if refused && self.reserve.is_held() {
                            continue;
                        }
                        if !refused && self.reserve.is_held() {
                            return;
                        }
                    }
                    // No descriptor to spare: back off instead of spinning on a full queue.
                    let backoff = timer::ticks(ACCEPT_BACKOFF).max(1);
                    self.accept_paused_until = Some(self.now + backoff);
                    return;
                }
                Err(e) => {
                    warn!("worker {}: accept failed: {e}", self.id);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, stream: TcpStream) {
        // Small frames must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        if !self.shared.try_claim() {
            self.reject_at_capacity(stream);
            return;
        }
        if self.insert(stream, false).is_none() {
            self.shared.release();
        }
    }

    fn insert(&mut self, stream: TcpStream, rejected: bool) -> Option<usize> {
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let mut conn = Conn::new(stream, gen, self.now);
        conn.rejected = rejected;
        if let Err(e) = self.poll.registry().register(
            &mut conn.socket,
            token::pack(key, gen),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            warn!("worker {}: cannot register connection: {e}", self.id);
            return None;
        }
        entry.insert(conn);
        let due = self.now
            + if rejected {
                self.ticks.close
            } else {
                self.ticks.handshake
            };
        self.wheel.schedule(key, due);
        Some(key)
    }

    /// At `--max-connections`: answer 503 at once and keep the socket only long enough for
    /// the client to read it.
    fn reject_at_capacity(&mut self, mut stream: TcpStream) {
        let mut resp = Vec::new();
        http::write_error(&mut resp, HandshakeError::AtCapacity);
        let _ = stream.write(&resp);
        let _ = stream.shutdown(Shutdown::Write);
        debug!("worker {}: at capacity, refused a connection", self.id);
        self.stats.refused(HandshakeError::AtCapacity);
        if self.lingering_rejects >= self.shared.lingering_rejects {
            return;
        }
        if let Some(key) = self.insert(stream, true) {
            self.lingering_rejects += 1;
            if let Some(conn) = self.conns.get_mut(key) {
                conn.set_phase(Phase::Finishing, self.now);
                conn.fin_sent = true;
            }
        }
    }

    // ------------------------------------------------------------------ commands

    fn drain_commands(&mut self) {
        self.commands_left = false;
        let hub = &self.shared.hub;
        if let Some(link) = hub.workers().get(self.id) {
            // Cleared before draining: a command queued after this point wakes us again.
            link.wake_pending.store(false, Ordering::Release);
        }
        let mut taken = 0;
        loop {
            if taken == COMMANDS_PER_TURN {
                self.commands_left = true;
                break;
            }
            match self.rx.try_recv() {
                Ok(Cmd::Deliver { channel, item }) => self.gather(channel, item),
                Ok(Cmd::Shutdown) | Err(TryRecvError::Disconnected) => {
                    // Whatever was published before the signal goes out before the 1001.
                    self.write_owed();
                    self.begin_shutdown();
                    if self.rx.is_empty() {
                        break;
                    }
                }
                Err(TryRecvError::Empty) => break,
            }
            taken += 1;
        }
        if let Some(link) = self.shared.hub.workers().get(self.id) {
            link.queued.fetch_sub(
                taken.min(link.queued.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
        }
        self.write_owed();
    }

    fn gather(&mut self, channel: u64, item: Delivery) {
        self.batch.gather(&self.index, channel, item);
    }

    /// Writes what `gather` noted, connection by connection.
    fn write_owed(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let mut batch = std::mem::take(&mut self.batch);
        batch.drain(|group, items| {
            if let Some(first) = group.first() {
                self.deliver_to(first.key as usize, first.gen, group, items);
            }
        });
        self.batch = batch;
    }

    fn deliver_to(&mut self, key: usize, gen: u32, group: &[Owed], items: &[Item]) {
        let max = self.shared.cfg.max_outbound_bytes;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.gen != gen || conn.phase != Phase::Open {
            return;
        }
        self.stats
            .deliveries
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        self.stats
            .messages_out
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        let mut out = Out {
            wbuf: &mut self.wbuf,
            outq: &mut conn.outq,
        };
        let over_cap = match (conn.transport, conn.session.as_deref_mut()) {
            (Some(Route::Sse), Some(s)) => {
                sse::deliver(&mut out, s, &self.index, group, items);
                conn.queued_bytes() + self.wbuf.len() > max
            }
            (Some(Route::Poll), Some(s)) => {
                poll::deliver(&mut out, s, &self.index, group, items);
                self.end_poll(key);
                false
            }
            _ => match fanout::deliver_ws(&mut conn.socket, &mut conn.outq, group, items, max) {
                Ok(Delivered::Ok(written)) => {
                    self.stats
                        .bytes_out
                        .fetch_add(written as u64, Ordering::Relaxed);
                    false
                }
                Ok(Delivered::OverCap) => true,
                Err(_) => {
                    self.close_conn(key);
                    return;
                }
            },
        };
        if over_cap {
            self.cut_off(key);
        }
        self.finish_batch(key);
    }

    /// A subscriber whose queued output passed `--max-outbound-bytes` is closed (1008 for a
    /// WebSocket) rather than allowed to hold memory or delay others; it can resume from
    /// history when it reconnects.
    fn cut_off(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        self.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
        debug!("worker {}: slow consumer cut off", self.id);
        if matches!(conn.transport, Some(Route::Echo | Route::Ws)) {
            let mut out = Out {
                wbuf: &mut self.wbuf,
                outq: &mut conn.outq,
            };
            out.close(close_code::POLICY_VIOLATION, "slow consumer");
        }
        conn.set_phase(Phase::Finishing, self.now);
    }

    /// A held poll was answered: unsubscribe, and wait for the next request (or close).
    fn end_poll(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Some(mut session) = conn.session.take() else {
            return;
        };
        session::unsubscribe_all(&self.shared.hub, &mut self.index, &mut session, self.id);
        self.stats.closed(Route::Poll);
        conn.transport = None;
        conn.set_phase(
            if session.keep_alive {
                Phase::Request
            } else {
                Phase::Finishing
            },
            self.now,
        );
        // Requests pipelined behind the poll are answered now, in order (no readiness
        // event will come for bytes already read).
        if conn.phase == Phase::Request && conn.head.is_some() {
            let who = Subscriber {
                worker: self.id,
                key: key as u32,
                gen: conn.gen,
            };
            let mut cx = Cx::new(
                &self.shared,
                &mut self.wbuf,
                &mut self.index,
                &self.stats,
                self.now,
                who,
            );
            if dispatch::resume_requests(conn, &mut cx) == Verdict::Drop {
                self.close_conn(key);
            }
        }
    }

    fn begin_shutdown(&mut self) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        self.shutdown_deadline = Some(self.now + self.ticks.shutdown);
        for mut l in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut l);
        }
        // A scan over all connections, once, at shutdown.
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let verdict = match self.conns.get_mut(key) {
                Some(conn) if conn.phase == Phase::Open => {
                    let mut out = Out {
                        wbuf: &mut self.wbuf,
                        outq: &mut conn.outq,
                    };
                    match (conn.transport, conn.session.as_deref_mut()) {
                        // A held poll is answered (nothing new) and the connection closed.
                        (Some(Route::Poll), Some(s)) => {
                            s.keep_alive = false;
                            poll::write_reply(&mut out, [], s, &self.index, false);
                            conn.set_phase(Phase::Finishing, self.now);
                        }
                        // An event stream ends after what is queued (EventSource reconnects,
                        // with its Last-Event-ID, to whichever server comes up).
                        (Some(Route::Sse), _) => conn.set_phase(Phase::Finishing, self.now),
                        _ => {
                            out.close(close_code::GOING_AWAY, "server shutting down");
                            conn.set_phase(Phase::Closing, self.now);
                        }
                    }
                    Verdict::Keep
                }
                Some(conn) if conn.phase == Phase::Request => Verdict::Drop,
                _ => Verdict::Keep,
            };
            match verdict {
                Verdict::Drop => self.close_conn(key),
                Verdict::Keep => self.finish_batch(key),
            }
        }
    }

    // ------------------------------------------------------------------ connection I/O

    fn on_conn_event(&mut self, token: Token, event: &PollEvent) {
        let (key, gen) = token::unpack(token);
        // An event for a slot freed (and maybe reused) earlier in this batch is stale.
        if self.conns.get(key).is_none_or(|c| c.gen != gen) {
            return;
        }
        if event.is_writable() && self.flush(key) == Verdict::Drop {
            self.close_conn(key);
            return;
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            // A FIN or an error must be read to the end: no further edge will announce it.
            let until_blocked = event.is_read_closed() || event.is_error();
            self.read_ready(key, until_blocked);
        } else {
            self.finish_batch(key);
        }
    }

    fn revisit_pending(&mut self) {
        for token in std::mem::take(&mut self.revisit) {
            let (key, gen) = token::unpack(token);
            if self.conns.get(key).is_some_and(|c| c.gen == gen) {
                self.read_ready(key, true);
            }
        }
    }

    /// Reads until WouldBlock (or the per-event budget), processing each read.
    /// Reads and dispatches what the socket holds. A read shorter than the buffer means the
    /// receive queue was empty at that moment, and anything arriving later raises a new
    /// edge, so unless `until_blocked` it ends there instead of paying one more `recv` for
    /// EAGAIN (a sixth of the system calls of a handshake).
    fn read_ready(&mut self, key: usize, until_blocked: bool) {
        let mut verdict = Verdict::Keep;
        for _ in 0..READS_PER_EVENT {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.peer_eof || conn.read_paused {
                break;
            }
            match conn.socket.read(&mut self.scratch) {
                Ok(0) => {
                    conn.peer_eof = true;
                    // Whatever is already queued still goes out (a client may half-close
                    // after its request); nothing more will be read.
                    let pending = !self.wbuf.is_empty() || conn.outq.is_some();
                    if conn.phase == Phase::Request || !pending {
                        verdict = Verdict::Drop;
                    } else {
                        conn.set_phase(Phase::Finishing, self.now);
                    }
                    break;
                }
                Ok(n) => {
                    conn.last_recv = self.now;
                    let data = &mut self.scratch[..n];
                    let who = Subscriber {
                        worker: self.id,
                        key: key as u32,
                        gen: conn.gen,
                    };
                    let mut cx = Cx::new(
                        &self.shared,
                        &mut self.wbuf,
                        &mut self.index,
                        &self.stats,
                        self.now,
                        who,
                    );
                    verdict = dispatch::on_bytes(conn, data, &mut cx);
                    if verdict == Verdict::Drop {
                        break;
                    }
                    if self.wbuf.len() + conn.queued_bytes() >= BATCH_FLUSH_BYTES {
                        verdict = self.flush(key);
                        if verdict == Verdict::Drop {
                            break;
                        }
                    }
                    if n < self.scratch.len() && !until_blocked {
                        self.finish_batch_verdict(key, Verdict::Keep);
                        return;
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.finish_batch_verdict(key, Verdict::Keep);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    verdict = Verdict::Drop;
                    break;
                }
            }
        }
        if verdict == Verdict::Keep {
            if let Some(conn) = self.conns.get(key) {
                if !conn.peer_eof && !conn.read_paused {
                    // Budget spent with input possibly left: come back next turn.
                    self.revisit.push(token::pack(key, conn.gen));
                }
            }
        }
        self.finish_batch_verdict(key, verdict);
    }

    fn finish_batch(&mut self, key: usize) {
        self.finish_batch_verdict(key, Verdict::Keep);
    }

    /// End of a batch for one connection: flush gathered output, apply backpressure, keep its
    /// timer right, or drop it.
    fn finish_batch_verdict(&mut self, key: usize, verdict: Verdict) {
        if verdict == Verdict::Drop || self.flush(key) == Verdict::Drop {
            self.wbuf.clear();
            self.close_conn(key);
            return;
        }
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.phase == Phase::Finishing && conn.fin_sent && conn.peer_eof {
            self.close_conn(key);
            return;
        }
        // Backpressure: a peer that does not read what it asked for stops being read.
        let queued = conn.queued_bytes();
        if queued > self.shared.cfg.max_outbound_bytes {
            conn.read_paused = true;
        }
        let want = next_check(conn, &self.ticks, self.now);
        if want < self.wheel.due(key).unwrap_or(u32::MAX) {
            self.wheel.schedule(key, want);
        }
    }

    /// Writes gathered output (the worker's batch buffer, then the connection's queue).
    fn flush(&mut self, key: usize) -> Verdict {
        let Some(conn) = self.conns.get_mut(key) else {
            self.wbuf.clear();
            return Verdict::Drop;
        };
        let before = self.wbuf.len() + conn.queued_bytes();
        let result = write_out(conn, &mut self.wbuf);
        self.wbuf.clear();
        let written = before.saturating_sub(conn.queued_bytes());
        self.stats
            .bytes_out
            .fetch_add(written as u64, Ordering::Relaxed);
        if result.is_err() {
            return Verdict::Drop;
        }
        if conn.outq.is_none() {
            if conn.transport == Some(Route::Sse) {
                // Progress for a stream that never reads (see on_timer).
                conn.last_recv = self.now;
            }
            if conn.read_paused {
                conn.read_paused = false;
                if !conn.peer_eof {
                    self.revisit.push(token::pack(key, conn.gen));
                }
            }
            if conn.phase == Phase::Finishing && !conn.fin_sent {
                conn.fin_sent = true;
                if conn.peer_eof {
                    // Everything is read and written: closing sends the FIN. A `shutdown`
                    // first would be one more system call per client-initiated close (and
                    // fails with ENOTCONN once the peer has reset).
                    return Verdict::Drop;
                }
                let _ = conn.socket.shutdown(Shutdown::Write);
            }
        } else if conn.read_paused && conn.queued_bytes() <= self.shared.cfg.max_outbound_bytes / 2
        {
            conn.read_paused = false;
            self.revisit.push(token::pack(key, conn.gen));
        }
        Verdict::Keep
    }

    fn close_conn(&mut self, key: usize) {
        if !self.conns.contains(key) {
            return;
        }
        let mut conn = self.conns.remove(key);
        self.wheel.cancel(key);
        let _ = self.poll.registry().deregister(&mut conn.socket);
        if let Some(session) = conn.session.take() {
            ws::end(session, &self.shared.hub, &mut self.index, self.id);
        }
        if let Some(t) = conn.transport {
            self.stats.closed(t);
        }
        if conn.rejected {
            self.lingering_rejects = self.lingering_rejects.saturating_sub(1);
        } else {
            self.shared.release();
        }
    }

    // ------------------------------------------------------------------ timers

    fn on_timer(&mut self, key: usize) {
        let now = self.now;
        let t = self.ticks;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let verdict = match conn.phase {
            Phase::Request if now >= conn.phase_since + t.handshake => {
                debug!("worker {}: request timeout", self.id);
                self.stats
                    .handshake_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                Verdict::Drop
            }
            Phase::Closing | Phase::Finishing if now >= conn.phase_since + t.close => Verdict::Drop,
            Phase::Open if conn.transport == Some(Route::Poll) => {
                if now >= conn.phase_since + t.poll {
                    // Nothing arrived: answer with no messages and the unchanged cursor.
                    if let Some(s) = conn.session.as_deref() {
                        let mut out = Out {
                            wbuf: &mut self.wbuf,
                            outq: &mut conn.outq,
                        };
                        poll::write_reply(&mut out, [], s, &self.index, false);
                    }
                    self.end_poll(key);
                }
                Verdict::Keep
            }
            // An SSE stream never sends, so for it `last_recv` is the last time all our
            // output was taken: a reader stalled for the idle timeout is reaped.
            Phase::Open
                if conn.transport == Some(Route::Sse)
                    && now >= conn.last_recv + t.idle
                    && conn.outq.is_some() =>
            {
                debug!("worker {}: reaped a stalled event stream", self.id);
                self.stats.reaped.fetch_add(1, Ordering::Relaxed);
                Verdict::Drop
            }
            Phase::Open if conn.transport == Some(Route::Sse) && now >= conn.last_recv + t.ping => {
                sse::write_ping(&mut Out {
                    wbuf: &mut self.wbuf,
                    outq: &mut conn.outq,
                });
                Verdict::Keep
            }
            Phase::Open if conn.transport != Some(Route::Sse) && now >= conn.last_recv + t.idle => {
                debug!("worker {}: reaped a silent connection", self.id);
                self.stats.reaped.fetch_add(1, Ordering::Relaxed);
                Verdict::Drop
            }
            Phase::Open if conn.transport != Some(Route::Sse) && now >= conn.last_recv + t.ping => {
                let mut out = Out {
                    wbuf: &mut self.wbuf,
                    outq: &mut conn.outq,
                };
                out.frame(OpCode::Ping, b"");
                Verdict::Keep
            }
            _ => Verdict::Keep,
        };
        match verdict {
            Verdict::Drop => self.close_conn(key),
            Verdict::Keep => self.finish_batch(key),
        }
    }
}

/// The tick at which a connection next needs attention.
fn next_check(conn: &Conn, t: &Ticks, now: u32) -> u32 {
    match conn.phase {
        Phase::Request => conn.phase_since + t.handshake,
        Phase::Closing | Phase::Finishing => conn.phase_since + t.close,
        Phase::Open if conn.transport == Some(Route::Poll) => conn.phase_since + t.poll,
        Phase::Open => {
            // Ping once the connection has been silent for the ping interval (the ping goes
            // out when this check fires), then reap at the idle timeout. Receiving anything
            // moves both.
            let ping_at = conn.last_recv + t.ping;
            if now < ping_at {
                ping_at
            } else {
                conn.last_recv + t.idle
            }
        }
    }
}

/// Refuses a connection accepted with the reserve descriptor: a 503, then close.
fn refuse_now(mut stream: TcpStream) {
    let mut resp = Vec::new();
    http::write_error(&mut resp, HandshakeError::AtCapacity);
    let _ = stream.write(&resp);
}

/// Writes the batch buffer and queued output; keeps what the socket does not take.
fn write_out(conn: &mut Conn, wbuf: &mut Vec<u8>) -> io::Result<()> {
    if let Some(q) = conn.outq.as_mut() {
        q.push_bytes(wbuf);
        wbuf.clear();
        if q.flush_to(&mut conn.socket)? == Flushed::All {
            conn.outq = None;
        }
        return Ok(());
    }
    let mut written = 0;
    while written < wbuf.len() {
        match conn.socket.write(&wbuf[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if written < wbuf.len() {
        let mut q = OutQueue::new();
        q.push_bytes(&wbuf[written..]);
        conn.outq = Some(Box::new(q));
    }
    Ok(())
}
