//! The end of a connection's batch: what it produced is written (the batch buffer, then its
//! queue), backpressure applied, its timer kept right — or the connection closed, releasing
//! its subscriptions and its slot.

use std::io::{self, Write};
use std::net::Shutdown;
use std::sync::atomic::Ordering;

use crate::net::conn::Conn;
use crate::net::token;
use crate::net::write::{flush_queue, Flushed};
use crate::transport::conn::Phase;
use crate::transport::cx::Verdict;
use crate::transport::out::OutQueue;
use crate::transport::router::Route;
use crate::transport::session;

use super::timers::next_check;
use super::{cx, Worker};

impl Worker {
    pub(super) fn finish_batch(&mut self, key: usize) {
        self.finish_batch_verdict(key, Verdict::Keep);
    }

    /// End of a batch for one connection: flush gathered output, apply backpressure, keep its
    /// timer right, or drop it.
    pub(super) fn finish_batch_verdict(&mut self, key: usize, verdict: Verdict) {
        if verdict == Verdict::Drop || self.flush(key) == Verdict::Drop {
            self.wbuf.clear();
            self.close_conn(key);
            return;
        }
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let st = &mut conn.st;
        if st.phase == Phase::Finishing && st.fin_sent && st.peer_eof {
            self.close_conn(key);
            return;
        }
        // Backpressure: a peer that does not read what it asked for stops being read.
        if st.queued_bytes() > self.shared.cfg.max_outbound_bytes {
            st.read_paused = true;
        }
        if std::mem::take(&mut st.reread) && !st.peer_eof {
            self.revisit.push(token::pack(key, conn.gen));
        }
        let mut want = next_check(st, &self.ticks, self.now);
        // Draining: a connection still open is also due at its turn to close.
        if let Some(sd) = self.shutdown {
            let at = sd.close_at(key);
            if at > self.now && matches!(st.phase, Phase::Open | Phase::Request) {
                want = want.min(at);
            }
        }
        if want < self.wheel.due(key).unwrap_or(u32::MAX) {
            self.wheel.schedule(key, want);
        }
    }

    /// Writes gathered output (the worker's batch buffer, then the connection's queue).
    pub(super) fn flush(&mut self, key: usize) -> Verdict {
        let Some(conn) = self.conns.get_mut(key) else {
            self.wbuf.clear();
            return Verdict::Drop;
        };
        let before = self.wbuf.len() + conn.st.queued_bytes();
        let result = write_out(conn, &mut self.wbuf);
        self.wbuf.clear();
        let written = before.saturating_sub(conn.st.queued_bytes());
        self.stats
            .bytes_out
            .fetch_add(written as u64, Ordering::Relaxed);
        if result.is_err() {
            return Verdict::Drop;
        }
        let gen = conn.gen;
        let st = &mut conn.st;
        if st.outq.is_none() {
            if st.transport == Some(Route::Sse) {
                // Progress for a stream that never reads (see on_timer).
                st.last_recv = self.now;
            }
            if st.read_paused {
                st.read_paused = false;
                if !st.peer_eof {
                    self.revisit.push(token::pack(key, gen));
                }
            }
            if st.phase == Phase::Finishing && !st.fin_sent {
                st.fin_sent = true;
                if st.peer_eof {
                    // Everything is read and written: closing sends the FIN. A `shutdown`
                    // first would be one more system call per client-initiated close (and
                    // fails with ENOTCONN once the peer has reset).
                    return Verdict::Drop;
                }
                let _ = conn.socket.shutdown(Shutdown::Write);
            }
        } else if st.read_paused && st.queued_bytes() <= self.shared.cfg.max_outbound_bytes / 2 {
            st.read_paused = false;
            self.revisit.push(token::pack(key, gen));
        }
        Verdict::Keep
    }

    pub(super) fn close_conn(&mut self, key: usize) {
        if !self.conns.contains(key) {
            return;
        }
        let mut conn = self.conns.remove(key);
        self.wheel.cancel(key);
        self.buckets.forget(key);
        let _ = self.poll.registry().deregister(&mut conn.socket);
        if let Some(mut s) = conn.st.session.take() {
            session::end(&mut cx!(self, key, conn.gen), &mut s);
        }
        if let Some(t) = conn.st.transport {
            self.stats.closed(t);
        }
        if conn.st.rejected {
            self.lingering_rejects = self.lingering_rejects.saturating_sub(1);
        } else {
            self.shared.access.release(conn.st.client);
            self.shared.release();
        }
    }
}

/// Writes the batch buffer and queued output; keeps what the socket does not take.
fn write_out(conn: &mut Conn, wbuf: &mut Vec<u8>) -> io::Result<()> {
    if let Some(q) = conn.st.outq.as_mut() {
        q.push_bytes(wbuf);
        wbuf.clear();
        if flush_queue(q, &mut conn.socket)? == Flushed::All {
            conn.st.outq = None;
        }
        return Ok(());
    }
    let mut written = 0;
    while written < wbuf.len() {
        match conn.socket.write(&wbuf[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if written < wbuf.len() {
        let mut q = OutQueue::new();
        q.push_bytes(&wbuf[written..]);
        conn.st.outq = Some(Box::new(q));
    }
    Ok(())
}
