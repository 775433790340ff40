//! The client event loop: one mio `Poll`, connections in a slab, edge-triggered I/O.
//!
//! Owners (the modes) open connections and call `turn` repeatedly; each turn polls once,
//! reads every ready socket until `WouldBlock`, feeds the bytes to `conn::ingest`, and flushes
//! whatever the handlers queued with one write per connection. Failures found anywhere are
//! reported through the handler as `Event::Closed` at the end of a batch.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use socket2::{Domain, Protocol, Socket, Type};
use switchboard::codec::frame::OpCode;

use crate::cause::Cause;
use crate::conn::{self, Conn, Event, Handle, Phase};
use crate::rng::Rng;
use crate::sys;
use crate::wire;

/// Reserved for the waker; slab keys never get near it.
const WAKE: Token = Token(usize::MAX);
/// One receive buffer per loop, shared by every connection (per-connection buffers hold only
/// carry-over bytes).
const SCRATCH_BYTES: usize = 256 * 1024;
/// Readiness events taken per poll.
const EVENTS_PER_POLL: usize = 4096;

pub struct Net {
    poll: Poll,
    events: Events,
    conns: Slab<Conn>,
    scratch: Vec<u8>,
    rng: Rng,
    /// (deadline µs, slab id, generation) in creation order: the timeout is the same for every
    /// connection, so deadlines are already sorted and expiry is a pop from the front.
    deadlines: VecDeque<(u64, usize, u32)>,
    /// Connections found dead outside a handler, reported at the next reap.
    doomed: Vec<usize>,
    next_gen: u32,
    connect_timeout_us: u64,
    waker: Arc<Waker>,
    connecting: usize,
    open: usize,
    accept_masked: bool,
    offer_deflate: bool,
}

/// Whether a non-blocking connect has finished.
enum ConnectState {
    Pending,
    Done,
}

impl Net {
    pub fn new(connect_timeout_us: u64, salt: u64) -> io::Result<Net> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        Ok(Net {
            poll,
            events: Events::with_capacity(EVENTS_PER_POLL),
            conns: Slab::new(),
            scratch: vec![0; SCRATCH_BYTES],
            rng: Rng::seeded(salt),
            deadlines: VecDeque::new(),
            doomed: Vec::new(),
            next_gen: 0,
            connect_timeout_us,
            waker,
            connecting: 0,
            open: 0,
            accept_masked: false,
            offer_deflate: false,
        })
    }

    /// Take masked server frames on connections opened from now on (`--accept-masked`).
    pub fn set_accept_masked(&mut self, yes: bool) {
        self.accept_masked = yes;
    }

    /// Offer permessage-deflate on WebSockets opened from now on (`--compression`).
    pub fn set_offer_deflate(&mut self, yes: bool) {
        self.offer_deflate = yes;
    }

    /// A handle another thread can use to end a `turn` early.
    pub fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    /// WebSockets open now.
    pub fn open_count(&self) -> usize {
        self.open
    }

    /// Connections still connecting or upgrading.
    pub fn connecting_count(&self) -> usize {
        self.connecting
    }

    pub fn is_open(&self, id: usize) -> bool {
        self.conns.get(id).is_some_and(|c| c.phase == Phase::Open)
    }

    /// Starts a WebSocket connection to `target` for `path`.
    pub fn open_ws(
        &mut self,
        target: SocketAddr,
        source: Option<IpAddr>,
        path: &str,
        tag: u32,
    ) -> Result<usize, Cause> {
        self.open(target, source, tag, Some(path))
    }

    /// Starts a plain HTTP/1.1 connection (reports `HttpReady` once connected).
    pub fn open_http(
        &mut self,
        target: SocketAddr,
        source: Option<IpAddr>,
        tag: u32,
    ) -> Result<usize, Cause> {
        self.open(target, source, tag, None)
    }

    fn open(
        &mut self,
        target: SocketAddr,
        source: Option<IpAddr>,
        tag: u32,
        path: Option<&str>,
    ) -> Result<usize, Cause> {
        let io = |e: io::Error| Cause::from_io(&e);
        let sock = Socket::new(
            Domain::for_address(target),
            Type::STREAM,
            Some(Protocol::TCP),
        )
        .map_err(io)?;
        sock.set_nonblocking(true).map_err(io)?;
        // Frames are small and latency is what we measure.
        sock.set_tcp_nodelay(true).map_err(io)?;
        if let Some(src) = source {
            if src.is_ipv4() {
                sys::set_bind_address_no_port(&sock).map_err(io)?;
            }
            sock.bind(&SocketAddr::new(src, 0).into()).map_err(io)?;
        }
        match sock.connect(&target.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(io(e)),
        }
        let mut stream = TcpStream::from_std(std::net::TcpStream::from(sock));
        let entry = self.conns.vacant_entry();
        let id = entry.key();
        self.poll
            .registry()
            .register(
                &mut stream,
                Token(id),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(io)?;
        self.next_gen = self.next_gen.wrapping_add(1);
        let gen = self.next_gen;
        let key = self.rng.key16();
        let mut conn = Conn::new(stream, tag, gen, path.is_none(), key);
        conn.accept_masked = self.accept_masked;
        conn.offer_deflate = self.offer_deflate;
        if let Some(path) = path {
            let host = target.to_string();
            let offer = self.offer_deflate;
            wire::write_upgrade_request(conn.out_mut(), &host, path, &key, offer);
        }
        entry.insert(conn);
        self.connecting += 1;
        self.deadlines
            .push_back((sys::monotonic_us() + self.connect_timeout_us, id, gen));
        Ok(id)
    }

    /// Queues a data frame on an open WebSocket; false if it is not open.
    pub fn queue(&mut self, id: usize, opcode: OpCode, payload: &[u8]) -> bool {
        match self.conns.get_mut(id) {
            Some(c) => c.queue_frame(&mut self.rng, opcode, payload),
            None => false,
        }
    }

    /// Queues raw bytes on an HTTP connection; false if it is not ready.
    pub fn queue_raw(&mut self, id: usize, bytes: &[u8]) -> bool {
        match self.conns.get_mut(id) {
            Some(c) if c.phase == Phase::Http && c.dead.is_none() => {
                c.out_mut().extend_from_slice(bytes);
                true
            }
            _ => false,
        }
    }

    /// Writes what is queued on `id`; a write failure is reported at the next turn.
    pub fn flush(&mut self, id: usize) {
        if let Some(c) = self.conns.get_mut(id) {
            if c.phase != Phase::Connecting && c.dead.is_none() {
                if let Err(cause) = c.flush() {
                    c.dead = Some(cause);
                    self.doomed.push(id);
                }
            }
        }
    }

    /// Ends a connection now: a Close frame if it is open (best effort, no wait for the
    /// server's answer), then the socket is dropped. No `Closed` event follows.
    pub fn close(&mut self, id: usize) -> Option<u32> {
        let c = self.conns.get_mut(id)?;
        if c.phase == Phase::Open {
            c.queue_normal_close(&mut self.rng);
            // Whatever the kernel does not take now is lost with the socket; that is fine for
            // a connection we are abandoning anyway.
            let _ = c.flush();
        }
        let tag = c.tag;
        self.remove(id);
        Some(tag)
    }

    /// Closes every connection (end of a run).
    pub fn close_all(&mut self) {
        let ids: Vec<usize> = self.conns.iter().map(|(id, _)| id).collect();
        for id in ids {
            self.close(id);
        }
    }

    fn remove(&mut self, id: usize) -> Option<Conn> {
        let mut c = self.conns.try_remove(id)?;
        // Deregistering before the drop keeps the poller from reporting a closed descriptor
        // that a new socket may already reuse.
        let _ = self.poll.registry().deregister(&mut c.stream);
        match c.phase {
            Phase::Connecting | Phase::Upgrading => self.connecting -= 1,
            Phase::Open => self.open -= 1,
            Phase::Http => {}
        }
        Some(c)
    }

    /// Polls once (at most `timeout`), handles every ready connection, expires connect
    /// timeouts and reports deaths. Returns whether the waker fired.
    pub fn turn<H>(&mut self, timeout: Duration, handler: &mut H) -> io::Result<bool>
    where
        H: FnMut(&mut Handle<'_>, Event<'_>),
    {
        self.reap(handler);
        if let Err(e) = self.poll.poll(&mut self.events, Some(timeout)) {
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(e);
        }
        let mut woken = false;
        // The events are taken out of `self` so handling can borrow `self` mutably; connections
        // are only created between turns, so a slot freed in this batch is never reused by it.
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for event in events.iter() {
            if event.token() == WAKE {
                woken = true;
                continue;
            }
            self.handle(
                event.token().0,
                event.is_readable() || event.is_read_closed() || event.is_error(),
                handler,
            );
        }
        self.events = events;
        self.expire();
        self.reap(handler);
        Ok(woken)
    }

    fn handle<H>(&mut self, id: usize, readable: bool, handler: &mut H)
    where
        H: FnMut(&mut Handle<'_>, Event<'_>),
    {
        let Net {
            conns,
            scratch,
            rng,
            ..
        } = self;
        // Sporadic events for a slot already reaped are ignored, as in mio's examples.
        let Some(c) = conns.get_mut(id) else {
            return;
        };
        if c.dead.is_some() {
            return;
        }
        let before = c.phase;
        if c.phase == Phase::Connecting {
            match connect_state(&c.stream) {
                Ok(ConnectState::Pending) => return,
                Ok(ConnectState::Done) if c.is_http() => {
                    c.phase = Phase::Http;
                    handler(&mut Handle::new(id, c, rng), Event::HttpReady);
                }
                Ok(ConnectState::Done) => c.phase = Phase::Upgrading,
                Err(cause) => c.dead = Some(cause),
            }
        }
        if c.dead.is_none() && c.has_output() {
            if let Err(cause) = c.flush() {
                c.dead = Some(cause);
            }
        }
        if readable && c.dead.is_none() {
            read_until_blocked(id, c, rng, scratch, handler);
        }
        // One write for everything the handlers queued during this batch of reads; a Close
        // echo is worth trying even on a dying connection.
        if c.has_output() {
            if let Err(cause) = c.flush() {
                c.dead.get_or_insert(cause);
            }
        }
        let after = c.phase;
        let dead = c.dead.is_some();
        self.account(before, after);
        if dead {
            self.doomed.push(id);
        }
    }

    /// Keeps the connecting/open counters in step with a phase change.
    fn account(&mut self, before: Phase, after: Phase) {
        let pending = |p| matches!(p, Phase::Connecting | Phase::Upgrading);
        if pending(before) && !pending(after) {
            self.connecting -= 1;
        }
        if before != Phase::Open && after == Phase::Open {
            self.open += 1;
        }
    }

    /// Marks connections whose connect + handshake deadline passed.
    fn expire(&mut self) {
        let now = sys::monotonic_us();
        while let Some(&(deadline, id, gen)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            if let Some(c) = self.conns.get_mut(id) {
                let pending = matches!(c.phase, Phase::Connecting | Phase::Upgrading);
                if c.gen == gen && pending && c.dead.is_none() {
                    c.dead = Some(Cause::Timeout);
                    self.doomed.push(id);
                }
            }
        }
    }

    /// Removes dead connections and reports each one.
    fn reap<H>(&mut self, handler: &mut H)
    where
        H: FnMut(&mut Handle<'_>, Event<'_>),
    {
        while let Some(id) = self.doomed.pop() {
            // A doomed id may have been closed by its owner meanwhile (and its slot reused).
            let Some(cause) = self.conns.get(id).and_then(|c| c.dead) else {
                continue;
            };
            let was_open = self
                .conns
                .get(id)
                .is_some_and(|c| matches!(c.phase, Phase::Open | Phase::Http));
            if let Some(c) = self.conns.get_mut(id) {
                handler(
                    &mut Handle::new(id, c, &mut self.rng),
                    Event::Closed { cause, was_open },
                );
            }
            self.remove(id);
        }
    }
}

/// Reads until `WouldBlock`, feeding each chunk (after any carried-over bytes) to `ingest`.
fn read_until_blocked<H>(
    id: usize,
    c: &mut Conn,
    rng: &mut Rng,
    scratch: &mut [u8],
    handler: &mut H,
) where
    H: FnMut(&mut Handle<'_>, Event<'_>),
{
    let mut held = std::mem::take(&mut c.inbuf);
    loop {
        match c.stream.read(scratch) {
            Ok(0) => {
                c.dead = Some(Cause::Eof);
                break;
            }
            Ok(n) => {
                let chunk = scratch.get(..n).unwrap_or(&[]);
                if held.is_empty() {
                    // The common case: parse straight from the shared buffer, keep only a tail.
                    let used = conn::ingest(id, c, rng, chunk, handler);
                    held.extend_from_slice(chunk.get(used..).unwrap_or(&[]));
                } else {
                    held.extend_from_slice(chunk);
                    let used = conn::ingest(id, c, rng, &held, handler);
                    held.drain(..used.min(held.len()));
                }
                if c.dead.is_some() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                c.dead = Some(Cause::from_io(&e));
                break;
            }
        }
    }
    conn::trim_buffer(&mut held);
    c.inbuf = held;
}

/// Whether a non-blocking connect finished, and how.
fn connect_state(stream: &TcpStream) -> Result<ConnectState, Cause> {
    if let Ok(Some(e)) | Err(e) = stream.take_error() {
        return Err(Cause::from_io(&e));
    }
    match stream.peer_addr() {
        Ok(_) => Ok(ConnectState::Done),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(ConnectState::Pending),
        Err(e) => Err(Cause::from_io(&e)),
    }
}
