//! What a transport needs, besides the connection, to handle a request or a message: the
//! shared state, the worker's batch buffer, subscriber index and requests in flight, and
//! who is asking.

use crate::config::Config;
use crate::hub::engine::ReplyTo;
use crate::hub::subs::LocalIndex;
use crate::hub::Hub;
use crate::transport::access::HttpBuckets;
use crate::transport::pending::{ConnId, Pending, PendingOp};
use crate::transport::shared::Shared;
use crate::transport::stats::WorkerStats;

/// What to do with a connection after handling an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    Drop,
}

pub struct Cx<'a> {
    pub shared: &'a Shared,
    pub cfg: &'a Config,
    pub hub: &'a Hub,
    /// The worker's batch buffer: output of connections with nothing queued.
    pub wbuf: &'a mut Vec<u8>,
    pub now: u32,
    /// Milliseconds per tick of `now`.
    pub tick_ms: u64,
    pub index: &'a mut LocalIndex,
    pub pending: &'a mut Pending,
    pub who: ConnId,
    pub stats: &'a WorkerStats,
    /// Publish buckets of plain HTTP connections (`--publish-rate`).
    pub buckets: &'a mut HttpBuckets,
}

impl Cx<'_> {
    /// Where the engine sends a later answer to a request of this connection.
    pub fn reply_to(&self) -> ReplyTo {
        self.pending.reply_to(self.who)
    }

    /// Keeps what a request was until its later answer.
    pub fn park(&mut self, to: ReplyTo, op: PendingOp) {
        self.pending.park(to, self.who, op);
    }
}
