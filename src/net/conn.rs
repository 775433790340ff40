//! One client connection's state, kept small: it lives in the worker's slab for the whole
//! life of the connection, and an idle WebSocket owns no buffer (all the `Option<Box<..>>`
//! fields are `None` while nothing is in flight).

use mio::net::TcpStream;

use crate::codec::decoder::Decoder;
use crate::hub::session::Session;
use crate::net::outq::OutQueue;
use crate::transport::router::Route;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading an HTTP request (bounded by the handshake timeout; on a keep-alive
    /// connection, the next request).
    Request,
    /// An open WebSocket.
    Open,
    /// We sent a Close and wait for the peer's (bounded by the close timeout).
    Closing,
    /// Our last bytes (Close reply, HTTP response) are queued: flush them, send FIN, and
    /// discard input until the peer closes or the close timeout passes.
    Finishing,
}

#[derive(Debug)]
pub struct Conn {
    pub socket: TcpStream,
    /// Generation of this slot, carried in the mio token.
    pub gen: u32,
    /// Tick of the last byte received.
    pub last_recv: u32,
    /// Tick the current phase began.
    pub phase_since: u32,
    pub phase: Phase,
    /// The streaming transport this connection became (WebSocket route, SSE, held poll);
    /// `None` while it speaks plain HTTP.
    pub transport: Option<Route>,
    /// Refused at capacity: not counted as an open connection.
    pub rejected: bool,
    /// The peer sent FIN: nothing more to read.
    pub peer_eof: bool,
    /// We sent FIN (after our last bytes).
    pub fin_sent: bool,
    /// `head` holds a complete request head whose body has not all arrived.
    pub body_pending: bool,
    /// Reading is paused until queued output drains (the peer reads slower than it sends).
    pub read_paused: bool,
    /// A request head that arrived in pieces.
    pub head: Option<Box<Vec<u8>>>,
    /// Frame or message in progress.
    pub decoder: Option<Box<Decoder>>,
    /// Output the socket has not taken yet.
    pub outq: Option<Box<OutQueue>>,
    /// Channel state of a `/ws` connection.
    pub session: Option<Box<Session>>,
}

impl Conn {
    pub fn new(socket: TcpStream, gen: u32, now: u32) -> Self {
        Conn {
            socket,
            gen,
            last_recv: now,
            phase_since: now,
            phase: Phase::Request,
            transport: None,
            rejected: false,
            peer_eof: false,
            fin_sent: false,
            read_paused: false,
            body_pending: false,
            head: None,
            decoder: None,
            outq: None,
            session: None,
        }
    }

    pub fn set_phase(&mut self, phase: Phase, now: u32) {
        if self.phase != phase {
            self.phase = phase;
            self.phase_since = now;
        }
    }

    pub fn queued_bytes(&self) -> usize {
        self.outq.as_ref().map_or(0, |q| q.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_stays_small() {
        // The per-idle-connection budget is 256 bytes of RSS in total; the slab entry is the
        // bulk of it.
        let size = std::mem::size_of::<Conn>();
        assert!(size <= 72, "Conn grew to {size} bytes");
        assert!(std::mem::size_of::<slab::Slab<Conn>>() > 0);
    }
}
