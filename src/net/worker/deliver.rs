//! The worker's mailbox: deliveries fanned out to local subscribers (gathered per drain,
//! then written per connection straight from the shared frames), later answers from the
//! engine handed to the connection that asked, and the shutdown command.

use std::sync::atomic::Ordering;

use crossbeam_channel::TryRecvError;

use crate::codec::frame::close_code;
use crate::debug;
use crate::hub::engine::{Answered, ReplyTo};
use crate::hub::plan::{deflate_owed, Item, Owed};
use crate::hub::{Cmd, Delivery};
use crate::net::write::{deliver_ws, Delivered};
use crate::transport::conn::{ConnState, Phase};
use crate::transport::cx::{Cx, Verdict};
use crate::transport::out::Out;
use crate::transport::router::Route;
use crate::transport::{direct, dispatch};
use crate::transport::{poll, request, sse};

use super::{cx, Worker};

/// Commands taken per loop turn before sockets get their turn again.
const COMMANDS_PER_TURN: usize = 4096;

impl Worker {
    pub(super) fn drain_commands(&mut self) {
        self.commands_left = false;
        if let Some(link) = self.shared.hub.workers().get(self.id) {
            // Cleared before draining: a command queued after this point wakes us again.
            link.wake_pending.store(false, Ordering::Release);
        }
        let mut taken = 0;
        loop {
            if taken == COMMANDS_PER_TURN {
                self.commands_left = true;
                break;
            }
            match self.rx.try_recv() {
                Ok(Cmd::Deliver { channel, item }) => self.gather(channel, item),
                Ok(Cmd::Answer { to, answer }) => {
                    // Deliveries queued before the answer go out before it, as queued.
                    self.write_owed();
                    self.on_answer(to, answer);
                }
                Ok(Cmd::Direct { user, msg }) => {
                    self.write_owed();
                    self.each_of_user(&user, |st, cx| direct::deliver(st, &msg, cx));
                }
                Ok(Cmd::Disconnect { user }) => {
                    self.write_owed();
                    self.each_of_user(&user, direct::disconnect);
                }
                Ok(Cmd::Shutdown) | Err(TryRecvError::Disconnected) => {
                    // Whatever was published before the signal goes out before the 1001.
                    self.write_owed();
                    self.begin_shutdown();
                    if self.rx.is_empty() {
                        break;
                    }
                }
                Err(TryRecvError::Empty) => break,
            }
            taken += 1;
        }
        if let Some(link) = self.shared.hub.workers().get(self.id) {
            link.queued.fetch_sub(
                taken.min(link.queued.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
        }
        self.write_owed();
    }

    fn gather(&mut self, channel: u64, item: Delivery) {
        if let Delivery::Reset { epoch, id, .. } = &item {
            // Positions move to the new stream before anything of it is gathered.
            self.index.reset(channel, epoch, *id);
        }
        self.batch.gather(&self.index, channel, item);
    }

    /// Hands a later answer to the connection that asked, or undoes it if that connection
    /// is gone.
    fn on_answer(&mut self, to: ReplyTo, answer: Answered) {
        let Some((who, op)) = self.pending.take(&to) else {
            return;
        };
        let key = who.key as usize;
        let Some(conn) = self.conns.get_mut(key).filter(|c| c.gen == who.gen) else {
            let mut cx = cx!(self, key, who.gen);
            return dispatch::orphan(op, answer, &mut cx);
        };
        let mut cx = cx!(self, key, who.gen);
        let verdict = dispatch::on_answer(&mut conn.st, op, answer, &mut cx);
        self.finish_batch_verdict(key, verdict);
    }

    /// Does `what` to every local connection of `user`.
    fn each_of_user(
        &mut self,
        user: &str,
        mut what: impl FnMut(&mut ConnState, &mut Cx<'_>) -> Verdict,
    ) {
        for (key, gen) in self.index.user_conns(user).to_vec() {
            let key = key as usize;
            let Some(conn) = self.conns.get_mut(key).filter(|c| c.gen == gen) else {
                continue;
            };
            let mut cx = cx!(self, key, gen);
            let verdict = what(&mut conn.st, &mut cx);
            self.finish_batch_verdict(key, verdict);
        }
    }

    /// Writes what `gather` noted, connection by connection.
    pub(super) fn write_owed(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let mut batch = std::mem::take(&mut self.batch);
        batch.drain(|group, items| {
            if let Some(first) = group.first() {
                self.deliver_to(first.key as usize, first.gen, group, items);
            }
        });
        self.batch = batch;
    }

    fn deliver_to(&mut self, key: usize, gen: u32, group: &[Owed], items: &[Item]) {
        let max = self.shared.cfg.max_outbound_bytes;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.gen != gen || conn.st.phase != Phase::Open {
            return;
        }
        self.stats
            .deliveries
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        self.stats
            .messages_out
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        let st = &mut conn.st;
        let (verdict, over_cap) = match (st.transport, st.session.as_deref_mut()) {
            (Some(Route::Sse), Some(s)) => {
                let mut out = Out::new(&mut self.wbuf, &mut st.outq);
                sse::deliver(&mut out, s, &mut self.index, group, items);
                (Verdict::Keep, st.queued_bytes() + self.wbuf.len() > max)
            }
            (Some(Route::Poll), Some(_)) => {
                let mut cx = cx!(self, key, gen);
                poll::deliver(st, group, items, &mut cx);
                (request::release(st, &mut cx), false)
            }
            _ => {
                let window = st.deflate;
                if window.is_some() {
                    let min = self.shared.cfg.compression_min_bytes;
                    deflate_owed(group, items, &mut self.deflate, min);
                }
                match deliver_ws(&mut conn.socket, &mut st.outq, group, items, max, window) {
                    Ok(Delivered::Ok(written)) => {
                        self.stats
                            .bytes_out
                            .fetch_add(written as u64, Ordering::Relaxed);
                        (Verdict::Keep, false)
                    }
                    Ok(Delivered::OverCap) => (Verdict::Keep, true),
                    Err(_) => (Verdict::Drop, false),
                }
            }
        };
        if over_cap {
            self.cut_off(key);
        }
        self.finish_batch_verdict(key, verdict);
    }

    /// A subscriber whose queued output passed `--max-outbound-bytes` is closed (1008 for a
    /// WebSocket) rather than allowed to hold memory or delay others; it can resume from
    /// history when it reconnects.
    fn cut_off(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        self.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
        debug!("worker {}: slow consumer cut off", self.id);
        if conn.st.transport.is_some_and(Route::is_websocket) {
            Out::new(&mut self.wbuf, &mut conn.st.outq)
                .close(close_code::POLICY_VIOLATION, "slow consumer");
        }
        conn.st.set_phase(Phase::Finishing, self.now);
    }
}
