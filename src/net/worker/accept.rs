//! Accepting: every connection waiting on the worker's listeners, admitted against
//! `--max-connections` (a 503 at capacity) and the descriptor limit (a reserve descriptor to
//! refuse cleanly, then a pause — never a spin on EMFILE).

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use mio::net::TcpStream;
use mio::Interest;

use crate::codec::http;
use crate::error::HandshakeError;
use crate::net::conn::Conn;
use crate::net::sys;
use crate::net::timer;
use crate::net::token;
use crate::transport::conn::Phase;
use crate::{debug, info, warn};

use super::Worker;

/// How long accepting pauses after the process runs out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(200);

impl Worker {
    pub(super) fn accept_all(&mut self) {
        if self.accept_paused_until.is_some() || self.shutdown.is_some() {
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
                Ok((stream, peer)) => {
                    self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                    if self.fd_exhausted {
                        self.fd_exhausted = false;
                        self.reserve.restore();
                        info!("worker {}: descriptors available again, accepting", self.id);
                    }
                    self.admit(stream, peer);
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

    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        // Small frames must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        if !self.shared.try_claim() {
            self.reject(stream, HandshakeError::AtCapacity);
            return;
        }
        let client = match self.shared.access.admit(peer.ip()) {
            Ok(c) => c,
            Err(e) => {
                self.shared.release();
                debug!("worker {}: refused {peer}: {}", self.id, e.reason());
                self.reject(stream, e);
                return;
            }
        };
        match self.insert(stream, false) {
            Some(key) => {
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.st.client = client;
                }
            }
            None => {
                self.shared.access.release(client);
                self.shared.release();
            }
        }
    }

    fn insert(&mut self, stream: TcpStream, rejected: bool) -> Option<usize> {
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let mut conn = Conn::new(stream, gen, self.now);
        conn.st.rejected = rejected;
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

    /// At `--max-connections` or a per-address limit: answer at once (503, 429) and keep
    /// the socket only long enough for the client to read it.
    fn reject(&mut self, mut stream: TcpStream, why: HandshakeError) {
        let mut resp = Vec::new();
        http::write_error(&mut resp, why);
        let _ = stream.write(&resp);
        let _ = stream.shutdown(Shutdown::Write);
        debug!("worker {}: refused a connection: {}", self.id, why.reason());
        self.stats.refused(why);
        if self.lingering_rejects >= self.shared.lingering_rejects {
            return;
        }
        if let Some(key) = self.insert(stream, true) {
            self.lingering_rejects += 1;
            if let Some(conn) = self.conns.get_mut(key) {
                conn.st.set_phase(Phase::Finishing, self.now);
                conn.st.fin_sent = true;
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
