//! Per-worker counters: plain relaxed atomics written only by their worker (no shared lock or
//! contended cache line per message), summed when metrics are read.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::HandshakeError;
use crate::router::Route;

/// Close codes counted separately for frame errors (others go to `other`).
pub const FRAME_ERROR_CODES: [u16; 3] = [1002, 1007, 1009];

#[derive(Debug, Default)]
pub struct WorkerStats {
    pub open_ws_echo: AtomicU64,
    pub open_ws: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected_capacity: AtomicU64,
    pub rejected_origin: AtomicU64,
    pub rejected_handshake: AtomicU64,
    pub messages_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub deliveries: AtomicU64,
    pub bytes_out: AtomicU64,
    pub slow_consumers: AtomicU64,
    pub reaped: AtomicU64,
    pub handshake_timeouts: AtomicU64,
    pub frame_errors: [AtomicU64; 4],
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl WorkerStats {
    pub fn upgraded(&self, route: Route) {
        match route {
            Route::Echo => inc(&self.open_ws_echo),
            _ => inc(&self.open_ws),
        }
    }

    pub fn closed(&self, route: Route, was_open: bool) {
        if was_open {
            let c = if route == Route::Echo {
                &self.open_ws_echo
            } else {
                &self.open_ws
            };
            c.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub fn refused(&self, err: HandshakeError) {
        match err {
            HandshakeError::AtCapacity => inc(&self.rejected_capacity),
            HandshakeError::OriginNotAllowed => inc(&self.rejected_origin),
            _ => inc(&self.rejected_handshake),
        }
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
