//! Requests waiting for the engine's later answer: a worker's table from ticket to what the
//! request was, so the answer can be turned into the right reply (or, if the connection
//! closed meanwhile, undone). An engine that answers at once never fills it.

use std::collections::HashMap;

use crate::hub::engine::ReplyTo;

/// What a request waiting for an answer was: enough to write its reply later.
#[derive(Debug)]
pub enum PendingOp {
    /// A `/ws` operation; `reference` is its `ref` as raw JSON.
    Ws {
        op: WsOp,
        reference: Option<Box<str>>,
    },
    /// One channel of an SSE stream or a long-poll being set up.
    StreamSubscribe {
        channel: Box<str>,
        user: Option<Box<str>>,
    },
    /// A plain HTTP request held until its answer.
    Http(HttpOp),
}

#[derive(Debug)]
pub enum WsOp {
    Publish {
        channel: Box<str>,
    },
    Subscribe {
        channel: Box<str>,
        presence: bool,
        /// Asked in the connect URL rather than by an op.
        from_url: bool,
        /// The user joining the channel's presence (to undo it if the connection is gone).
        user: Option<Box<str>>,
    },
    History {
        channel: Box<str>,
    },
    Presence {
        channel: Box<str>,
    },
}

#[derive(Debug)]
pub enum HttpOp {
    Publish { channel: Box<str> },
    History { channel: Box<str> },
    Presence { channel: Box<str> },
    Users { users: Vec<Box<str>> },
    UserSend { user: Box<str> },
    UserDisconnect { user: Box<str> },
    UserInfo { user: Box<str> },
}

/// The connection a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnId {
    pub worker: usize,
    pub key: u32,
    pub gen: u32,
}

/// A worker's requests in flight.
#[derive(Debug, Default)]
pub struct Pending {
    next_ticket: u32,
    ops: HashMap<u32, (ConnId, PendingOp)>,
}

impl Pending {
    /// The address a request from `who` gives the engine; [`Pending::park`] keeps it if the
    /// answer is to come later.
    pub fn reply_to(&self, who: ConnId) -> ReplyTo {
        ReplyTo {
            worker: who.worker as u32,
            key: who.key,
            gen: who.gen,
            ticket: self.next_ticket,
        }
    }

    /// Remembers a request whose answer comes later.
    pub fn park(&mut self, to: ReplyTo, who: ConnId, op: PendingOp) {
        self.ops.insert(to.ticket, (who, op));
        self.next_ticket = self.next_ticket.wrapping_add(1);
    }

    /// Takes the request an answer is for.
    pub fn take(&mut self, to: &ReplyTo) -> Option<(ConnId, PendingOp)> {
        self.ops.remove(&to.ticket)
    }

    /// Forgets a request nobody waits for any more (its answer, if it comes, is dropped).
    pub fn cancel(&mut self, ticket: u32) {
        self.ops.remove(&ticket);
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}
