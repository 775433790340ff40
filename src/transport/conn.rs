//! A connection's protocol state, everything but its socket: where it is in its life, the
//! input kept between reads, the output the socket has not taken, and its channel session.
//! Kept small: it lives in the worker's slab for the whole life of the connection, and an
//! idle WebSocket owns no buffer (all the `Option<Box<..>>` fields are `None` while nothing
//! is in flight).

use crate::codec::decoder::Decoder;
use crate::codec::deflate::Window;
use crate::transport::out::OutQueue;
use crate::transport::router::Route;
use crate::transport::session::Session;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading an HTTP request (bounded by the handshake timeout; on a keep-alive
    /// connection, the next request).
    Request,
    /// A stream: an open WebSocket, an event stream, or a held request (long-poll, or an
    /// API call waiting for the engine's answer).
    Open,
    /// We sent a Close and wait for the peer's (bounded by the close timeout).
    Closing,
    /// Our last bytes (Close reply, HTTP response) are queued: flush them, send FIN, and
    /// discard input until the peer closes or the close timeout passes.
    Finishing,
}

#[derive(Debug)]
pub struct ConnState {
    /// Tick of the last byte received.
    pub last_recv: u32,
    /// Tick the current phase began.
    pub phase_since: u32,
    pub phase: Phase,
    /// The streaming transport this connection became (WebSocket route, SSE, held
    /// request); `None` while it speaks plain HTTP.
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
    /// Reading is paused because the requests pipelined behind a held one fill their bound
    /// (`request::behind_held`): backpressure, not a reset, for a client that pipelines
    /// publishes to a cluster node (each one held for Redis). Cleared when the held request
    /// is answered; `reread` then asks the event loop to read the socket again (its edge
    /// was consumed while we did not read).
    pub input_full: bool,
    pub reread: bool,
    /// permessage-deflate was negotiated: our compressor's window for this connection. One
    /// byte, in what was padding: compression costs an idle connection nothing (no DEFLATE
    /// state is kept per connection; the worker's is reset per message).
    pub deflate: Option<Window>,
    /// A request head that arrived in pieces, or requests pipelined behind a held one.
    pub head: Option<Box<Vec<u8>>>,
    /// Frame or message in progress.
    pub decoder: Option<Box<Decoder>>,
    /// Output the socket has not taken yet.
    pub outq: Option<Box<OutQueue>>,
    /// Channel state of a `/ws`, `/sse` or `/poll` connection, or a held request's.
    pub session: Option<Box<Session>>,
    /// The client address as the per-address limits count it (`access::NOT_COUNTED`: not).
    pub client: u64,
}

impl ConnState {
    pub fn new(now: u32) -> Self {
        ConnState {
            last_recv: now,
            phase_since: now,
            phase: Phase::Request,
            transport: None,
            rejected: false,
            peer_eof: false,
            fin_sent: false,
            read_paused: false,
            input_full: false,
            reread: false,
            deflate: None,
            body_pending: false,
            head: None,
            decoder: None,
            outq: None,
            session: None,
            client: crate::transport::access::NOT_COUNTED,
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
