//! Reading: a connection's readiness, its bytes read into the worker's scratch buffer and
//! handed to the transports (`dispatch::on_bytes`) — HTTP requests, the upgrade, frames —
//! with a per-event budget so one busy peer cannot starve the rest.

use std::io::{self, Read};

use mio::event::Event as PollEvent;
use mio::Token;

use crate::net::token;
use crate::transport::conn::Phase;
use crate::transport::cx::Verdict;
use crate::transport::dispatch;
use crate::transport::router::Route;

use super::{cx, Worker};

/// Reads per readiness event before the connection yields to others (it is revisited on the
/// next turn of the loop, since no new edge will come for data already waiting).
const READS_PER_EVENT: usize = 16;
/// Gathered output is written out once it reaches this, even mid-batch.
const BATCH_FLUSH_BYTES: usize = 256 * 1024;

impl Worker {
    pub(super) fn on_conn_event(&mut self, token: Token, event: &PollEvent) {
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

    pub(super) fn revisit_pending(&mut self) {
        for token in std::mem::take(&mut self.revisit) {
            let (key, gen) = token::unpack(token);
            if self.conns.get(key).is_some_and(|c| c.gen == gen) {
                self.read_ready(key, true);
            }
        }
    }

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
            if conn.st.peer_eof || conn.st.read_paused || conn.st.input_full {
                break;
            }
            match conn.socket.read(&mut self.scratch) {
                Ok(0) => {
                    conn.st.peer_eof = true;
                    // Whatever is already queued still goes out (a client may half-close
                    // after its request); nothing more will be read.
                    let pending = !self.wbuf.is_empty() || conn.st.outq.is_some();
                    if conn.st.phase == Phase::Request || !pending {
                        verdict = Verdict::Drop;
                    } else {
                        conn.st.set_phase(Phase::Finishing, self.now);
                    }
                    break;
                }
                Ok(n) => {
                    conn.st.last_recv = self.now;
                    let was_sse = conn.st.transport == Some(Route::Sse);
                    let data = &mut self.scratch[..n];
                    let mut cx = cx!(self, key, conn.gen);
                    verdict = dispatch::on_bytes(&mut conn.st, data, &mut cx);
                    if !was_sse && conn.st.transport == Some(Route::Sse) {
                        // A stream never hears from its reader, so a peer that vanished
                        // without FIN would only be noticed when the send buffer fills. With
                        // TCP_USER_TIMEOUT the kernel drops the connection once sent data
                        // (our pings) stays unacknowledged for the idle timeout, and the
                        // error event reaps it.
                        let _ = socket2::SockRef::from(&conn.socket)
                            .set_tcp_user_timeout(Some(self.shared.cfg.idle_timeout));
                    }
                    if verdict == Verdict::Drop {
                        break;
                    }
                    if self.wbuf.len() + conn.st.queued_bytes() >= BATCH_FLUSH_BYTES {
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
                if !conn.st.peer_eof && !conn.st.read_paused && !conn.st.input_full {
                    // Budget spent with input possibly left: come back next turn.
                    self.revisit.push(token::pack(key, conn.gen));
                }
            }
        }
        self.finish_batch_verdict(key, verdict);
    }
}
