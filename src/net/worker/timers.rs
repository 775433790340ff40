//! Timers and shutdown: what is due for a connection when its wheel entry fires (handshake
//! and close timeouts, pings, reaping the silent, answering an expired long-poll or a held
//! request), and the graceful shutdown that closes every connection once.

use std::sync::atomic::Ordering;

use crate::codec::frame::{close_code, OpCode};
use crate::transport::conn::{ConnState, Phase};
use crate::transport::cx::Verdict;
use crate::transport::out::Out;
use crate::transport::router::Route;
use crate::transport::{poll, request, sse};
use crate::{debug, info};

use super::{cx, Ticks, Worker};

impl Worker {
    pub(super) fn on_timer(&mut self, key: usize) {
        let now = self.now;
        let t = self.ticks;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let gen = conn.gen;
        let st = &mut conn.st;
        let verdict = match (st.phase, st.transport) {
            (Phase::Request, _) if now >= st.phase_since + t.handshake => {
                debug!("worker {}: request timeout", self.id);
                self.stats
                    .handshake_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                Verdict::Drop
            }
            (Phase::Closing | Phase::Finishing, _) if now >= st.phase_since + t.close => {
                Verdict::Drop
            }
            (Phase::Open, Some(Route::Poll)) => {
                if now >= st.phase_since + t.poll {
                    // Nothing arrived: answer with no messages and the unchanged cursor.
                    let mut cx = cx!(self, key, gen);
                    poll::expire(st, false, &mut cx);
                    request::release(st, &mut cx)
                } else {
                    Verdict::Keep
                }
            }
            (Phase::Open, Some(route)) if route.is_held() => {
                if now >= st.phase_since + t.handshake {
                    debug!("worker {}: held request timed out", self.id);
                    request::expire_held(st, &mut cx!(self, key, gen))
                } else {
                    Verdict::Keep
                }
            }
            // An SSE stream never sends, so for it `last_recv` is the last time all our
            // output was taken: a reader stalled for the idle timeout is reaped.
            (Phase::Open, Some(Route::Sse))
                if now >= st.last_recv + t.idle && st.outq.is_some() =>
            {
                debug!("worker {}: reaped a stalled event stream", self.id);
                self.stats.reaped.fetch_add(1, Ordering::Relaxed);
                Verdict::Drop
            }
            (Phase::Open, Some(Route::Sse)) if now >= st.last_recv + t.ping => {
                sse::write_ping(&mut Out::new(&mut self.wbuf, &mut st.outq));
                Verdict::Keep
            }
            (Phase::Open, _) if now >= st.last_recv + t.idle => {
                debug!("worker {}: reaped a silent connection", self.id);
                self.stats.reaped.fetch_add(1, Ordering::Relaxed);
                Verdict::Drop
            }
            (Phase::Open, _) if now >= st.last_recv + t.ping => {
                Out::new(&mut self.wbuf, &mut st.outq).frame(OpCode::Ping, b"");
                Verdict::Keep
            }
            _ => Verdict::Keep,
        };
        self.finish_batch_verdict(key, verdict);
    }

    pub(super) fn begin_shutdown(&mut self) {
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
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            let gen = conn.gen;
            let st = &mut conn.st;
            let verdict = match (st.phase, st.transport) {
                // A held poll is answered (nothing new) and the connection closed.
                (Phase::Open, Some(Route::Poll)) => {
                    let mut cx = cx!(self, key, gen);
                    poll::expire(st, true, &mut cx);
                    request::release(st, &mut cx)
                }
                // A held request waits for its answer (the engine still gives it); the
                // shutdown timeout bounds the wait.
                (Phase::Open, Some(route)) if route.is_held() => Verdict::Keep,
                // An event stream ends after what is queued (EventSource reconnects, with its
                // Last-Event-ID, to whichever server comes up).
                (Phase::Open, Some(Route::Sse)) => {
                    st.set_phase(Phase::Finishing, self.now);
                    Verdict::Keep
                }
                (Phase::Open, _) => {
                    Out::new(&mut self.wbuf, &mut st.outq)
                        .close(close_code::GOING_AWAY, "server shutting down");
                    st.set_phase(Phase::Closing, self.now);
                    Verdict::Keep
                }
                (Phase::Request, _) => Verdict::Drop,
                _ => Verdict::Keep,
            };
            self.finish_batch_verdict(key, verdict);
        }
    }

    /// Whether shutdown is complete: every connection gone, or the timeout passed (then the
    /// rest are dropped).
    pub(super) fn shutdown_finished(&mut self) -> bool {
        let Some(deadline) = self.shutdown_deadline else {
            return false;
        };
        if !self.conns.is_empty() && self.now < deadline {
            return false;
        }
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
        true
    }
}

/// The tick at which a connection next needs attention.
pub(super) fn next_check(st: &ConnState, t: &Ticks, now: u32) -> u32 {
    match (st.phase, st.transport) {
        (Phase::Request, _) => st.phase_since + t.handshake,
        (Phase::Closing | Phase::Finishing, _) => st.phase_since + t.close,
        (Phase::Open, Some(Route::Poll)) => st.phase_since + t.poll,
        (Phase::Open, Some(route)) if route.is_held() => st.phase_since + t.handshake,
        (Phase::Open, _) => {
            // Ping once the connection has been silent for the ping interval (the ping goes
            // out when this check fires), then reap at the idle timeout. Receiving anything
            // moves both.
            let ping_at = st.last_recv + t.ping;
            if now < ping_at {
                ping_at
            } else {
                st.last_recv + t.idle
            }
        }
    }
}
