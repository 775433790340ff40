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

use crate::net::timer;

use super::{cx, Ticks, Worker};

impl Worker {
    pub(super) fn on_timer(&mut self, key: usize) {
        let now = self.now;
        let t = self.ticks;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if let Some(sd) = self.shutdown {
            let open = matches!(conn.st.phase, Phase::Open | Phase::Request);
            if open && now >= sd.close_at(key) {
                return self.close_for_shutdown(key);
            }
        }
        let gen = conn.gen;
        let st = &mut conn.st;
        let expired = st
            .session
            .as_ref()
            .and_then(|s| s.expires())
            .is_some_and(|at| now >= at);
        let verdict = match (st.phase, st.transport) {
            (Phase::Open, Some(Route::Ws)) if expired => {
                debug!("worker {}: a token expired", self.id);
                self.stats.tokens_expired.fetch_add(1, Ordering::Relaxed);
                let out = &mut Out::new(&mut self.wbuf, &mut st.outq);
                out.close(close_code::TOKEN_EXPIRED, "token expired");
                st.set_phase(Phase::Closing, now);
                Verdict::Keep
            }
            (Phase::Open, Some(Route::Sse)) if expired => {
                self.stats.tokens_expired.fetch_add(1, Ordering::Relaxed);
                st.set_phase(Phase::Finishing, now);
                Verdict::Keep
            }
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

    /// Stops accepting and closes every connection: at once, or with `--drain-seconds`
    /// each at its own moment in the window (see [`Shutdown::close_at`]).
    pub(super) fn begin_shutdown(&mut self) {
        if self.shutdown.is_some() {
            return;
        }
        let span = timer::ticks(self.shared.cfg.drain);
        let sd = Shutdown {
            deadline: self.now + span + self.ticks.shutdown,
            start: self.now,
            span,
            seed: seed(),
        };
        self.shutdown = Some(sd);
        for mut l in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut l);
        }
        // A scan over all connections, once, at shutdown.
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            if span == 0 {
                self.close_for_shutdown(key);
            } else {
                let at = sd.close_at(key);
                if at < self.wheel.due(key).unwrap_or(u32::MAX) {
                    self.wheel.schedule(key, at);
                }
            }
        }
    }

    /// A connection's turn to close at shutdown: a WebSocket gets 1001, an event stream ends
    /// after what is queued, a held poll is answered, a connection between requests goes.
    fn close_for_shutdown(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
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

    /// Whether shutdown is complete: every connection gone, or the timeout passed (then the
    /// rest are dropped).
    pub(super) fn shutdown_finished(&mut self) -> bool {
        let Some(Shutdown { deadline, .. }) = self.shutdown else {
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

/// A shutdown under way.
#[derive(Debug, Clone, Copy)]
pub(super) struct Shutdown {
    /// Tick by which every connection is gone (the rest are then dropped).
    deadline: u32,
    /// The drain: connections close from `start` over `span` ticks (0: all at once).
    start: u32,
    span: u32,
    /// Makes each process's spread its own.
    seed: u64,
}

impl Shutdown {
    /// The tick connection `key` closes at: spread evenly over the drain window by a hash of
    /// its key, so no time needs storing per connection and reconnects arrive elsewhere at
    /// an even rate rather than all in one second.
    pub(super) fn close_at(&self, key: usize) -> u32 {
        if self.span == 0 {
            return self.start;
        }
        self.start + (mix(key as u64 ^ self.seed) % u64::from(self.span)) as u32
    }
}

/// splitmix64's finalizer: consecutive keys land far apart.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// The tick at which a connection next needs attention: what its phase waits for, or its
/// token's expiry if that comes first.
pub(super) fn next_check(st: &ConnState, t: &Ticks, now: u32) -> u32 {
    let due = phase_check(st, t, now);
    match (st.phase, st.session.as_ref().and_then(|s| s.expires())) {
        (Phase::Open, Some(at)) => due.min(at),
        _ => due,
    }
}

fn phase_check(st: &ConnState, t: &Ticks, now: u32) -> u32 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_spreads_keys_over_its_window() {
        let sd = Shutdown {
            deadline: 0,
            start: 100,
            span: 100,
            seed: 7,
        };
        let mut per_tenth = [0u32; 10];
        for key in 0..10_000 {
            let at = sd.close_at(key);
            assert!((100..200).contains(&at), "{at}");
            per_tenth[((at - 100) / 10) as usize] += 1;
        }
        // 1,000 expected in each tenth of the window.
        assert!(
            per_tenth.iter().all(|&n| (850..1150).contains(&n)),
            "{per_tenth:?}"
        );
        let now = Shutdown { span: 0, ..sd };
        assert_eq!(now.close_at(12345), 100, "no drain: all at once");
    }
}
