//! The seam between the node and whatever keeps the channel space: one narrow interface for
//! publish, subscribe, history and presence. The in-memory engine (`memory`) is the embedded
//! default; a cluster engine keeps the same promises with the state somewhere else.
//!
//! Every call that needs an answer may give it at once ([`Answer::Now`]) or later
//! ([`Answer::Later`]): then the answer arrives in the asking worker's mailbox as
//! [`crate::hub::Cmd::Answer`], addressed with the [`ReplyTo`] the call carried. A remote
//! engine answers later; the memory engine always answers now. Either way, a subscription's
//! answer is placed in the worker's mailbox at the exact point of the channel's stream it
//! describes: every delivery queued before it has an id up to `last_seq`, every delivery
//! after it an id above. That is what makes resume gap-free and duplicate-free.

use std::fmt;
use std::sync::Arc;

pub use crate::codec::position::{Epoch, Since};
use crate::codec::protocol::Data;
use crate::hub::msg::Msg;

/// A publish's place in its channel.
#[derive(Debug, Clone)]
pub struct Published {
    pub id: u64,
    pub epoch: Epoch,
}

/// The result of a subscribe: where the live stream starts and what to replay before it.
#[derive(Debug)]
pub struct Subscription {
    /// The node's key for the channel: deliveries carry it.
    pub channel_id: u64,
    pub epoch: Epoch,
    /// Live deliveries with an id above this are for the new subscriber.
    pub last_seq: u64,
    /// Whether `replay` holds every message after the asked position.
    pub recovered: bool,
    pub replay: Vec<Arc<Msg>>,
}

/// Messages of a channel after a position.
#[derive(Debug)]
pub struct History {
    pub epoch: Epoch,
    pub recovered: bool,
    pub messages: Vec<Arc<Msg>>,
}

/// Where a user's connections are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    /// Nodes holding a connection of the user, and how many each.
    pub nodes: Vec<(Box<str>, u64)>,
}

impl UserInfo {
    pub fn connections(&self) -> u64 {
        self.nodes.iter().map(|(_, n)| n).sum()
    }
}

/// What subscribing needs to know.
#[derive(Debug, Clone, Copy)]
pub struct SubscribeReq<'a> {
    pub channel: &'a str,
    pub worker: usize,
    pub since: Option<&'a Since>,
    /// Joins the channel's presence as this user.
    pub user: Option<&'a str>,
}

/// Where a later answer goes: a connection of a worker, and which of its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyTo {
    pub worker: u32,
    pub key: u32,
    pub gen: u32,
    pub ticket: u32,
}

/// An answer now, or a promise of one through the worker's mailbox.
#[derive(Debug)]
pub enum Answer<T> {
    Now(Result<T, EngineError>),
    Later,
}

/// An answer that came later, as the worker's mailbox carries it.
#[derive(Debug)]
pub enum Answered {
    Published(Result<Published, EngineError>),
    Subscribed(Result<Subscription, EngineError>),
    History(Result<History, EngineError>),
    Presence(Result<Vec<Box<str>>, EngineError>),
    Users(Result<Vec<bool>, EngineError>),
    /// A direct message or disconnect went to this many nodes (0: the user is offline).
    Sent(Result<usize, EngineError>),
    User(Result<UserInfo, EngineError>),
}

/// Why the engine could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineError {
    /// The store behind the engine is out of reach (the reason is for operators).
    Unavailable(Box<str>),
    /// A new channel would pass `--max-channels`.
    TooManyChannels,
}

impl EngineError {
    pub fn reason(&self) -> &str {
        match self {
            EngineError::Unavailable(why) => why,
            EngineError::TooManyChannels => "too many channels (--max-channels)",
        }
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Unavailable(why) => write!(f, "unavailable: {why}"),
            EngineError::TooManyChannels => f.write_str(self.reason()),
        }
    }
}

/// Whether the engine can serve; `Err` carries the reason (health checks and systemd's
/// status line show it).
pub type Health = Result<(), Box<str>>;

/// What the engine reports for `/metrics`: its channels, its history budget (the embedded
/// engine), and the links to the store behind it and how the streams from it went (the
/// cluster engine; all zero for the embedded engine, which has no links).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    /// Connections to the store (two per Redis shard), and how many of them are up.
    pub links: u64,
    pub links_up: u64,
    /// Links established (a reconnect counts again) and lost.
    pub connects: u64,
    pub disconnects: u64,
    /// Live channels, counted against `--max-channels` (cluster: those this node has local
    /// subscribers for, each subscribed in the store).
    pub channels: u64,
    /// New channels refused at `--max-channels`.
    pub channels_refused: u64,
    /// What all history costs in memory, its budget (0: not this engine's to bound, the
    /// store keeps history), and messages evicted to stay within it.
    pub history_bytes: u64,
    pub history_max_bytes: u64,
    pub history_evicted: u64,
    /// Messages received from the store's Pub/Sub for local subscribers.
    pub messages_in: u64,
    /// Gaps in a channel's ids read back from history, and streams whose subscribers were
    /// told they lost messages (`recovered:false`).
    pub gap_fills: u64,
    pub resets: u64,
    /// Streams this node proved went back in the store (ids handed out again after it
    /// lost writes), each given a new epoch.
    pub rewinds: u64,
}

/// The channel space as the node sees it.
pub trait Engine: Send + Sync + fmt::Debug {
    /// Assigns `data` the channel's next id, keeps it in history and delivers it to every
    /// worker with subscribers, in id order.
    fn publish(&self, channel: &str, data: &Data<'_>, reply: ReplyTo) -> Answer<Published>;

    /// Registers a subscriber on `req.worker` (and `req.user` in the channel's presence)
    /// and, with `since`, returns the messages after it.
    fn subscribe(&self, req: SubscribeReq<'_>, reply: ReplyTo) -> Answer<Subscription>;

    /// Removes a subscriber registered by [`Engine::subscribe`].
    fn unsubscribe(&self, channel: &str, worker: usize, user: Option<&str>);

    /// At most `limit` messages after `since` (all kept without it).
    fn history(
        &self,
        channel: &str,
        since: Option<&Since>,
        limit: usize,
        reply: ReplyTo,
    ) -> Answer<History>;

    /// Users present in a channel, sorted.
    fn presence(&self, channel: &str, reply: ReplyTo) -> Answer<Vec<Box<str>>>;

    /// Which of `users` have a connection open, in the same order.
    fn users_online(&self, users: &[&str], reply: ReplyTo) -> Answer<Vec<bool>>;

    /// Counts a connection that named `user` (for [`Engine::users_online`], the registry).
    fn user_connected(&self, user: &str);
    fn user_disconnected(&self, user: &str);

    /// Sends `data` to every connection of `user`, on every node that holds one (at most
    /// once, not stored); answers how many nodes it went to.
    fn send_to_user(&self, user: &str, data: &Data<'_>, reply: ReplyTo) -> Answer<usize>;

    /// Closes every connection of `user` on every node; answers how many nodes.
    fn disconnect_user(&self, user: &str, reply: ReplyTo) -> Answer<usize>;

    /// Which nodes hold connections of `user`, and how many.
    fn user_info(&self, user: &str, reply: ReplyTo) -> Answer<UserInfo>;

    /// Periodic upkeep (expiring history, forgetting idle channels), a bounded step per call.
    fn maintain(&self);

    /// Messages held in history (for metrics; may take locks briefly).
    fn history_len(&self) -> usize;

    fn health(&self) -> Health;

    fn stats(&self) -> EngineStats;
}
