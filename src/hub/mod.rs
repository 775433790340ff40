//! The hub: the channel space as this node sees it. What keeps channels (ids and epochs,
//! history, presence) is an [`Engine`] — in memory by default; the hub adds what every
//! engine shares: the workers' mailboxes, each worker's subscriber index and fan-out plan,
//! and the encoded form of a message. No sockets here.

pub mod engine;
pub mod link;
pub mod memory;
pub mod msg;
pub mod plan;
pub mod redis;
pub mod subs;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::codec::protocol::Data;
use engine::{Answer, Engine, Published, ReplyTo};
use link::{WorkerLink, Workers};

pub use link::{Cmd, Delivery};
pub use memory::channel::HistoryLimits;
pub use msg::Msg;

/// Counters read by metrics.
#[derive(Debug, Default)]
pub struct HubStats {
    /// Publishes made through this node.
    pub publishes: AtomicU64,
}

#[derive(Debug)]
pub struct Hub {
    pub engine: Box<dyn Engine>,
    workers: Workers,
    pub stats: HubStats,
}

impl Hub {
    pub fn new(engine: Box<dyn Engine>, workers: Workers) -> Hub {
        Hub {
            engine,
            workers,
            stats: HubStats::default(),
        }
    }

    /// The embedded default: every channel in this process (`defer`: a test seam, see
    /// [`memory`]).
    pub fn in_memory(limits: HistoryLimits, workers: Workers, defer: bool, node: &str) -> Hub {
        let engine = memory::MemoryEngine::new(limits, workers.clone(), defer, node);
        Hub::new(Box::new(engine), workers)
    }

    pub fn workers(&self) -> &[WorkerLink] {
        &self.workers
    }

    /// Publishes `data` on `channel` (a valid name).
    pub fn publish(&self, channel: &str, data: &Data<'_>, reply: ReplyTo) -> Answer<Published> {
        self.stats.publishes.fetch_add(1, Ordering::Relaxed);
        self.engine.publish(channel, data, reply)
    }
}
