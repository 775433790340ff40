//! One non-blocking connection to one Redis server, on the Redis thread's poll: connecting
//! (TCP or a unix socket), the handshake (AUTH, SELECT) pipelined ahead of everything else,
//! commands written as they come without waiting for replies (pipelining), replies decoded
//! as they arrive. Down on any error, with the reason kept for health and logs; the owner
//! reconnects after a jittered, growing back-off ([`backoff`]).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

use crate::config::{RedisTarget, RedisUrl};
use crate::hub::redis::resp::{self, Value};

/// Bytes of commands a connection may hold unwritten; past it new work is refused
/// (`unavailable`) instead of queued without bound.
pub const MAX_UNWRITTEN_BYTES: usize = 64 * 1024 * 1024;
/// Reconnect back-off: the first wait and the longest.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(50);
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long a connect (and the handshake) may take before it counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a connection may owe replies without a byte arriving before it counts as lost:
/// a Redis that hangs (stopped, or a network that drops packets without a reset) keeps the
/// socket open, and without this everything sent to it would wait forever while health
/// said all is well.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Read chunk.
const READ_BYTES: usize = 64 * 1024;

/// The wait before reconnect attempt `attempt` (0-based): half an exponential ceiling plus a
/// random part of the other half, so many nodes losing Redis at once do not come back in
/// one wave.
pub fn backoff(attempt: u32, random: u64) -> Duration {
    let ceiling = BACKOFF_FIRST
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_MAX);
    let ms = ceiling.as_millis().max(2) as u64;
    Duration::from_millis(ms / 2 + random % (ms / 2 + 1))
}

/// A fresh random number (for jitter).
pub fn random() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.read(buf),
            Sock::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.write(buf),
            Sock::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sock {
    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Sock::Tcp(s) => s,
            Sock::Unix(s) => s,
        }
    }

    /// Whether a non-blocking connect has finished (`Err` if it failed).
    fn connected(&mut self) -> io::Result<bool> {
        match self {
            Sock::Tcp(s) => {
                if let Some(e) = s.take_error()? {
                    return Err(e);
                }
                match s.peer_addr() {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Sock::Unix(s) => {
                if let Some(e) = s.take_error()? {
                    return Err(e);
                }
                Ok(true)
            }
        }
    }
}

/// Where a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not connected; a new attempt is due at `retry_at`.
    Down {
        retry_at: Instant,
        attempt: u32,
    },
    /// Connecting (and handshaking) since `since`.
    Connecting {
        since: Instant,
        attempt: u32,
    },
    Ready,
}

/// What a connection reports after an event.
#[derive(Debug)]
pub enum Event {
    /// The handshake is done: commands flow.
    Up,
    /// A reply, in the order the commands were sent (handshake replies excluded).
    Reply(Value),
    /// The connection is lost (or could not be made); everything sent and not answered is
    /// lost with it.
    Down(String),
}

pub struct Conn {
    url: RedisUrl,
    /// Resolved once at start: a name lookup blocks, and this thread must not.
    addrs: Vec<SocketAddr>,
    token: Token,
    sock: Option<Sock>,
    pub state: State,
    out: Vec<u8>,
    written: usize,
    inbuf: Vec<u8>,
    /// Handshake replies still expected before `Up`.
    handshake: usize,
    /// Commands sent and not yet answered (on a subscription connection, pushes answer too,
    /// so this only tells "something is owed").
    unanswered: usize,
    /// Since when replies are owed with nothing received ([`REPLY_TIMEOUT`]).
    owed_since: Option<Instant>,
    /// Why it is down (for health), `None` while up.
    pub reason: Option<String>,
}

impl Conn {
    /// A connection to `url`, down until [`Conn::connect`]; host names are resolved here.
    pub fn new(url: &RedisUrl, token: Token) -> io::Result<Conn> {
        let addrs = match &url.target {
            RedisTarget::Tcp { host, port } => (host.as_str(), *port)
                .to_socket_addrs()
                .map_err(|e| io::Error::new(e.kind(), format!("redis {url}: {e}")))?
                .collect(),
            RedisTarget::Unix(_) => Vec::new(),
        };
        Ok(Conn {
            url: url.clone(),
            addrs,
            token,
            sock: None,
            state: State::Down {
                retry_at: Instant::now(),
                attempt: 0,
            },
            out: Vec::new(),
            written: 0,
            inbuf: Vec::new(),
            handshake: 0,
            unanswered: 0,
            owed_since: None,
            reason: Some("not connected yet".into()),
        })
    }

    pub fn url(&self) -> &RedisUrl {
        &self.url
    }

    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// Starts connecting (when down and due); the handshake is queued ahead of any command.
    pub fn connect(&mut self, registry: &Registry, now: Instant) -> Option<Event> {
        let State::Down { retry_at, attempt } = self.state else {
            return None;
        };
        if now < retry_at {
            return None;
        }
        let sock = match &self.url.target {
            RedisTarget::Tcp { .. } => match self.addrs.first() {
                Some(a) => TcpStream::connect(*a).map(Sock::Tcp),
                None => Err(io::Error::other("no address")),
            },
            RedisTarget::Unix(path) => UnixStream::connect(path).map(Sock::Unix),
        };
        let mut sock = match sock {
            Ok(s) => s,
            Err(e) => return Some(self.down(format!("connect: {e}"), now, attempt)),
        };
        if let Err(e) = registry.register(
            sock.source(),
            self.token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            return Some(self.down(format!("register: {e}"), now, attempt));
        }
        self.sock = Some(sock);
        self.state = State::Connecting {
            since: now,
            attempt,
        };
        self.out.clear();
        self.written = 0;
        self.inbuf.clear();
        self.handshake = 0;
        self.unanswered = 0;
        self.owed_since = None;
        if let Some(p) = self.url.password.clone() {
            match self.url.username.clone() {
                Some(u) => self.queue(&[b"AUTH", u.as_bytes(), p.as_bytes()]),
                None => self.queue(&[b"AUTH", p.as_bytes()]),
            }
            self.handshake += 1;
        }
        if self.url.db != 0 {
            self.queue(&[b"SELECT", self.url.db.to_string().as_bytes()]);
            self.handshake += 1;
        }
        // A PING answers once the connection works, handshake or not.
        self.queue(&[b"PING"]);
        self.handshake += 1;
        None
    }

    fn down(&mut self, why: String, now: Instant, attempt: u32) -> Event {
        // Closing the socket takes it out of the poll (nothing else holds its descriptor).
        self.sock = None;
        let retry_at = now + backoff(attempt, random());
        self.state = State::Down {
            retry_at,
            attempt: attempt.saturating_add(1),
        };
        self.out.clear();
        self.written = 0;
        self.inbuf.clear();
        let why = format!("redis {}: {why}", self.url);
        self.reason = Some(why.clone());
        Event::Down(why)
    }

    /// Fails the connection (a protocol error seen by the owner, a timeout).
    pub fn fail(&mut self, why: &str, now: Instant) -> Event {
        let attempt = match self.state {
            State::Connecting { attempt, .. } => attempt,
            _ => 0,
        };
        self.down(why.into(), now, attempt)
    }

    /// Queues a command (written at the next [`Conn::flush`]). Refused while down or when too
    /// much is unwritten.
    pub fn send(&mut self, args: &[&[u8]]) -> Result<(), String> {
        if matches!(self.state, State::Down { .. }) {
            return Err(self
                .reason
                .clone()
                .unwrap_or_else(|| format!("redis {}: down", self.url)));
        }
        if self.out.len() - self.written > MAX_UNWRITTEN_BYTES {
            return Err(format!(
                "redis {}: too many commands waiting to be sent",
                self.url
            ));
        }
        self.queue(args);
        self.unanswered += 1;
        if self.owed_since.is_none() && self.state == State::Ready {
            self.owed_since = Some(Instant::now());
        }
        Ok(())
    }

    fn queue(&mut self, args: &[&[u8]]) {
        resp::encode(&mut self.out, args);
    }

    /// When the connection is due for attention (a retry, a connect or a reply timeout).
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Down { retry_at, .. } => Some(retry_at),
            State::Connecting { since, .. } => Some(since + CONNECT_TIMEOUT),
            State::Ready => self.owed_since.map(|t| t + REPLY_TIMEOUT),
        }
    }

    /// What is due at `now`: a connect attempt, or failing a connect or a silent connection
    /// that took too long.
    pub fn on_time(&mut self, registry: &Registry, now: Instant) -> Option<Event> {
        match self.state {
            State::Connecting { since, .. } if now >= since + CONNECT_TIMEOUT => {
                Some(self.fail("connect timed out", now))
            }
            State::Ready if self.owed_since.is_some_and(|t| now >= t + REPLY_TIMEOUT) => {
                let why = format!("no reply for {} s", REPLY_TIMEOUT.as_secs());
                Some(self.fail(&why, now))
            }
            _ => self.connect(registry, now),
        }
    }

    /// Writes what is queued, as much as the socket takes.
    pub fn flush(&mut self, now: Instant) -> Option<Event> {
        let attempt = match self.state {
            State::Ready => 0,
            State::Connecting { attempt, .. } => attempt,
            State::Down { .. } => return None,
        };
        let sock = self.sock.as_mut()?;
        if let State::Connecting { .. } = self.state {
            match sock.connected() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => return Some(self.down(format!("connect: {e}"), now, attempt)),
            }
        }
        while self.written < self.out.len() {
            match sock.write(&self.out[self.written..]) {
                Ok(0) => return Some(self.down("write: connection closed".into(), now, attempt)),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some(self.down(format!("write: {e}"), now, attempt)),
            }
        }
        if self.written == self.out.len() {
            self.out.clear();
            self.written = 0;
        } else if self.written > READ_BYTES {
            self.out.drain(..self.written);
            self.written = 0;
        }
        None
    }

    /// Reads what arrived; hands each event to `on`.
    pub fn read(&mut self, now: Instant, mut on: impl FnMut(Event)) {
        let attempt = match self.state {
            State::Connecting { attempt, .. } => attempt,
            _ => 0,
        };
        let Some(sock) = self.sock.as_mut() else {
            return;
        };
        let mut chunk = [0u8; READ_BYTES];
        let mut closed = None;
        let mut got = false;
        loop {
            match sock.read(&mut chunk) {
                Ok(0) => {
                    closed = Some("connection closed by Redis".to_string());
                    break;
                }
                Ok(n) => {
                    self.inbuf.extend_from_slice(&chunk[..n]);
                    got = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    closed = Some(format!("read: {e}"));
                    break;
                }
            }
        }
        let mut used = 0;
        loop {
            match resp::decode(&self.inbuf[used..]) {
                Ok(Some((v, n))) => {
                    used += n;
                    if self.handshake > 0 {
                        self.handshake -= 1;
                        if let Value::Error(e) = v {
                            return on(self.down(format!("handshake: {e}"), now, attempt));
                        }
                        if self.handshake == 0 {
                            self.state = State::Ready;
                            self.reason = None;
                            // Commands sent while connecting are owed from now.
                            self.owed_since = (self.unanswered > 0).then_some(now);
                            on(Event::Up);
                        }
                    } else {
                        self.unanswered = self.unanswered.saturating_sub(1);
                        on(Event::Reply(v));
                    }
                }
                Ok(None) => break,
                Err(e) => return on(self.down(e.to_string(), now, attempt)),
            }
        }
        self.inbuf.drain(..used);
        if got && self.state == State::Ready {
            self.owed_since = (self.unanswered > 0).then_some(now);
        }
        if let Some(why) = closed {
            on(self.down(why, now, attempt));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_ceiling_with_jitter() {
        for attempt in 0..30 {
            for r in [0, 1, 7, u64::MAX] {
                let d = backoff(attempt, r);
                let ceiling = (BACKOFF_FIRST * (1 << attempt.min(16))).min(BACKOFF_MAX);
                assert!(d >= ceiling / 2 && d <= ceiling, "{attempt} {r}: {d:?}");
            }
        }
        assert!(backoff(0, 0) >= Duration::from_millis(25));
        assert_eq!(backoff(40, 0), BACKOFF_MAX / 2);
    }
}
