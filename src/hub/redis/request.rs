//! What workers ask of the Redis thread, and what the thread is set up with.

use std::sync::{Arc, Mutex};

use crate::codec::position::Since;
use crate::hub::engine::{EngineStats, ReplyTo};
use crate::hub::redis::wire::Kind;

/// What a worker asks of the Redis thread.
#[derive(Debug)]
pub enum Request {
    Publish {
        channel: Box<str>,
        kind: Kind,
        payload: Vec<u8>,
        reply: ReplyTo,
    },
    Subscribe {
        channel: Box<str>,
        worker: usize,
        since: Option<Since>,
        user: Option<Box<str>>,
        reply: ReplyTo,
    },
    Unsubscribe {
        channel: Box<str>,
        worker: usize,
        user: Option<Box<str>>,
    },
    History {
        channel: Box<str>,
        since: Option<Since>,
        limit: usize,
        reply: ReplyTo,
    },
    Presence {
        channel: Box<str>,
        reply: ReplyTo,
    },
    Online {
        users: Vec<Box<str>>,
        reply: ReplyTo,
    },
    UserConnected(Box<str>),
    UserDisconnected(Box<str>),
    /// A direct message (`Some`: kind and payload) or a disconnect (`None`) for a user.
    ToUser {
        user: Box<str>,
        send: Option<(Kind, Vec<u8>)>,
        reply: ReplyTo,
    },
    UserInfo {
        user: Box<str>,
        reply: ReplyTo,
    },
    Stop,
}

/// Settings the thread needs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub history_size: usize,
    pub history_ttl_s: u64,
    /// Channels this node may have subscribers for at once (`--max-channels`).
    pub max_channels: usize,
    /// This node's name (its registry entries and inbox).
    pub node: Box<str>,
    /// How long a presence or registry entry lives without a refresh.
    pub presence_ttl: std::time::Duration,
}

/// What the Redis thread tells the rest of the node: why the engine cannot serve (`down`,
/// `None` while every connection is up) and its counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Report {
    pub down: Option<Box<str>>,
    pub stats: EngineStats,
}

pub type HealthState = Arc<Mutex<Report>>;
