//! How other threads hand work to a worker: its mailbox of [`Cmd`]s and the waker that gets
//! its event loop to drain it. Deliveries for one channel are queued in id order by whoever
//! orders the channel, so each worker's mailbox preserves every channel's order.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;
use mio::Waker;

use crate::hub::engine::{Answered, Epoch, ReplyTo};
use crate::hub::msg::Msg;

/// What a worker is handed for one of its channels.
#[derive(Debug, Clone)]
pub enum Delivery {
    Message(Arc<Msg>),
    /// A join/leave event frame, for subscribers that asked for presence events.
    Presence(Arc<[u8]>),
    /// The channel's stream is not the one its subscribers are positioned in any more (a new
    /// epoch, or messages lost that history no longer holds): every subscriber is placed at
    /// `id` of stream `epoch` and told (`frame`: a `subscribed` reply with `recovered:false`).
    Reset {
        epoch: Epoch,
        id: u64,
        frame: Arc<[u8]>,
    },
}

/// Work handed to a worker from other threads.
#[derive(Debug)]
pub enum Cmd {
    /// Stop accepting, close every connection with 1001, exit once they are gone or the
    /// shutdown timeout passes.
    Shutdown,
    Deliver {
        channel: u64,
        item: Delivery,
    },
    /// The later answer to a request one of the worker's connections made.
    Answer {
        to: ReplyTo,
        answer: Answered,
    },
    /// A direct message for every local connection of `user` (`msg` is its `direct`
    /// envelope, encoded once).
    Direct {
        user: Arc<str>,
        msg: Arc<Msg>,
    },
    /// Close every local connection of `user`.
    Disconnect {
        user: Arc<str>,
    },
}

/// How to reach a worker from another thread.
#[derive(Debug)]
pub struct WorkerLink {
    pub tx: Sender<Cmd>,
    pub waker: Arc<Waker>,
    /// Set by whoever queues work, cleared by the worker before it drains: one wake-up
    /// syscall per drain, not per message.
    pub wake_pending: AtomicBool,
    /// Commands queued and not yet drained (for metrics).
    pub queued: AtomicUsize,
}

impl WorkerLink {
    pub fn new(tx: Sender<Cmd>, waker: Arc<Waker>) -> Self {
        WorkerLink {
            tx,
            waker,
            wake_pending: AtomicBool::new(false),
            queued: AtomicUsize::new(0),
        }
    }

    pub fn send(&self, cmd: Cmd) {
        self.queued.fetch_add(1, Ordering::Relaxed);
        let _ = self.tx.send(cmd);
    }

    pub fn wake(&self) {
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
    }
}

/// Every worker's link, indexed by worker id.
pub type Workers = Arc<[WorkerLink]>;

/// Which workers were handed something and need waking (after the lock that ordered the
/// hand-over is released: a wake-up is a system call).
#[derive(Debug, Default)]
pub struct Wakes(u64);

impl Wakes {
    pub fn add(&mut self, worker: usize) {
        // Workers past 64 share the last bit, and are all woken when it is set.
        self.0 |= 1 << worker.min(63);
    }

    pub fn wake(self, workers: &[WorkerLink]) {
        if self.0 == 0 {
            return;
        }
        for (w, link) in workers.iter().enumerate() {
            if self.0 & (1 << w.min(63)) != 0 {
                link.wake();
            }
        }
    }
}

/// Queues `item` of `channel` to every worker with a subscriber (`counts[w] > 0`).
pub fn deliver(
    workers: &[WorkerLink],
    counts: &[u32],
    channel: u64,
    item: &Delivery,
    wakes: &mut Wakes,
) {
    for (w, (&n, link)) in counts.iter().zip(workers).enumerate() {
        if n > 0 {
            link.send(Cmd::Deliver {
                channel,
                item: item.clone(),
            });
            wakes.add(w);
        }
    }
}

/// Hands a command to every worker (a user's connections may be on any).
pub fn broadcast(workers: &[WorkerLink], cmd: impl Fn() -> Cmd) {
    for link in workers {
        link.send(cmd());
        link.wake();
    }
}

/// Hands a later answer to the worker that asked.
pub fn answer(workers: &[WorkerLink], to: ReplyTo, answer: Answered) {
    if let Some(link) = workers.get(to.worker as usize) {
        link.send(Cmd::Answer { to, answer });
        link.wake();
    }
}
