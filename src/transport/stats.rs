//! Per-worker counters: plain relaxed atomics written only by their worker (no shared lock or
//! contended cache line per message), summed when metrics are read.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::HandshakeError;
use crate::transport::router::Route;

/// Close codes counted separately for frame errors (others go to `other`).
pub const FRAME_ERROR_CODES: [u16; 3] = [1002, 1007, 1009];

#[derive(Debug, Default)]
pub struct WorkerStats {
    pub open_ws_echo: AtomicU64,
    pub open_ws: AtomicU64,
    pub open_sse: AtomicU64,
    /// Long-polls being held.
    pub open_poll: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected_capacity: AtomicU64,
    pub rejected_origin: AtomicU64,
    pub rejected_handshake: AtomicU64,
    /// Requests for an unknown path or with a method the path does not take (404/405).
    pub rejected_route: AtomicU64,
    /// Stream requests without a valid token (401), and with channels it does not allow (403).
    pub rejected_token: AtomicU64,
    pub rejected_forbidden: AtomicU64,
    /// Connections refused by a per-address limit: too many open, or connecting too fast.
    pub rejected_per_ip: AtomicU64,
    pub rejected_connect_rate: AtomicU64,
    /// Operations refused on an open connection: not allowed by the token, over the
    /// publish rate.
    pub forbidden: AtomicU64,
    pub rate_limited: AtomicU64,
    /// Connections closed (4001) because their token expired without a refresh; refreshes.
    pub tokens_expired: AtomicU64,
    pub tokens_refreshed: AtomicU64,
    pub messages_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub deliveries: AtomicU64,
    pub bytes_out: AtomicU64,
    pub slow_consumers: AtomicU64,
    pub reaped: AtomicU64,
    pub handshake_timeouts: AtomicU64,
    pub frame_errors: [AtomicU64; 4],
    /// Data messages written to clients: echoes, channel deliveries and protocol replies.
    pub messages_out: AtomicU64,
    /// Event-loop turns (at least one per timer tick while the worker is alive): the systemd
    /// watchdog is fed only while every worker's count moves.
    pub loop_turns: AtomicU64,
    /// The worker's compressor's counts ([`crate::codec::deflate::DeflateCounts`]), copied
    /// once per event-loop turn: messages compressed, their bytes before and after.
    pub deflated_messages: AtomicU64,
    pub deflated_plain_bytes: AtomicU64,
    pub deflated_bytes: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl WorkerStats {
    /// The gauge of open connections on a streaming transport.
    fn gauge(&self, transport: Route) -> Option<&AtomicU64> {
        match transport {
            Route::Echo => Some(&self.open_ws_echo),
            Route::Ws => Some(&self.open_ws),
            Route::Sse => Some(&self.open_sse),
            Route::Poll => Some(&self.open_poll),
            _ => None,
        }
    }

    /// A connection became a streaming transport.
    pub fn opened(&self, transport: Route) {
        if let Some(g) = self.gauge(transport) {
            inc(g);
        }
    }

    /// A streaming transport ended (connection closed, or a held poll answered).
    pub fn closed(&self, transport: Route) {
        if let Some(g) = self.gauge(transport) {
            g.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub fn refused(&self, err: HandshakeError) {
        match err {
            HandshakeError::AtCapacity => inc(&self.rejected_capacity),
            HandshakeError::OriginNotAllowed => inc(&self.rejected_origin),
            HandshakeError::NotFound | HandshakeError::MethodNotAllowed => {
                inc(&self.rejected_route)
            }
            HandshakeError::Unauthorized(_) => inc(&self.rejected_token),
            HandshakeError::Forbidden => inc(&self.rejected_forbidden),
            HandshakeError::TooManyFromAddress | HandshakeError::TooManyClients => {
                inc(&self.rejected_per_ip)
            }
            HandshakeError::ConnectingTooFast(_) => inc(&self.rejected_connect_rate),
            _ => inc(&self.rejected_handshake),
        }
    }

    pub fn count(c: &AtomicU64) {
        inc(c);
    }

    pub fn message_in(&self, bytes: usize) {
        inc(&self.messages_in);
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn frame_error(&self, code: u16) {
        let i = FRAME_ERROR_CODES
            .iter()
            .position(|&c| c == code)
            .unwrap_or(FRAME_ERROR_CODES.len());
        if let Some(c) = self.frame_errors.get(i) {
            inc(c);
        }
    }
}
