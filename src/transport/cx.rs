//! What a transport needs, besides the connection, to handle a request or a message: the
//! shared state, the worker's batch buffer, subscriber index and requests in flight, and
//! who is asking.

use crate::codec::deflate::{Deflate, Window};
use crate::config::Config;
use crate::hub::engine::ReplyTo;
use crate::hub::subs::LocalIndex;
use crate::hub::Hub;
use crate::transport::access::HttpBuckets;
use crate::transport::out::{Compressing, Out, OutQueue};
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
    /// The worker's permessage-deflate (de)compressor.
    pub deflate: &'a mut Deflate,
    /// The asking connection compresses its WebSocket messages with this window. Set from
    /// the connection's state where the transports take it up (`dispatch`, `direct`, the
    /// upgrade); `None` for everything else.
    pub window: Option<Window>,
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

/// The worker's parts a [`Cx`] borrows besides the shared state: its batch buffer,
/// (de)compressor, subscriber index, requests in flight and plain HTTP publish buckets.
pub struct WorkerParts<'a> {
    pub wbuf: &'a mut Vec<u8>,
    pub deflate: &'a mut Deflate,
    pub index: &'a mut LocalIndex,
    pub pending: &'a mut Pending,
    pub buckets: &'a mut HttpBuckets,
}

impl<'a> Cx<'a> {
    pub fn new(
        shared: &'a Shared,
        parts: WorkerParts<'a>,
        stats: &'a WorkerStats,
        now: u32,
        tick_ms: u64,
        who: ConnId,
    ) -> Self {
        Cx {
            shared,
            cfg: &shared.cfg,
            hub: &shared.hub,
            wbuf: parts.wbuf,
            deflate: parts.deflate,
            window: None,
            now,
            tick_ms,
            index: parts.index,
            pending: parts.pending,
            who,
            stats,
            buckets: parts.buckets,
        }
    }

    /// Where the asking connection's WebSocket output goes: like [`Out::new`], with data
    /// frames compressed when the connection negotiated permessage-deflate.
    pub fn out<'b>(&'b mut self, outq: &'b mut Option<Box<OutQueue>>) -> Out<'b> {
        let deflate = self.window.map(|window| Compressing {
            codec: &mut *self.deflate,
            window,
            min_bytes: self.cfg.compression_min_bytes,
        });
        Out::with_deflate(self.wbuf, outq, deflate)
    }

    /// Where the engine sends a later answer to a request of this connection.
    pub fn reply_to(&self) -> ReplyTo {
        self.pending.reply_to(self.who)
    }

    /// Keeps what a request was until its later answer.
    pub fn park(&mut self, to: ReplyTo, op: PendingOp) {
        self.pending.park(to, self.who, op);
    }
}
