//! What workers ask of the Redis thread, and what the thread is set up with.

use std::sync::{Arc, Mutex};

use crate::codec::position::Since;
use crate::hub::engine::ReplyTo;
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
        reply: ReplyTo,
    },
    Unsubscribe {
        channel: Box<str>,
        worker: usize,
    },
    History {
        channel: Box<str>,
        since: Option<Since>,
        limit: usize,
        reply: ReplyTo,
    },
    Stop,
}

/// Settings the thread needs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub history_size: usize,
    pub history_ttl_s: u64,
}

/// Why the engine cannot serve, for health: `None` while every connection is up.
pub type HealthState = Arc<Mutex<Option<Box<str>>>>;
