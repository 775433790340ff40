//! Presence in the memory engine: who is in each channel (counted per connection, so a user
//! with two tabs leaves when the last closes), the join/leave events that go to subscribers
//! who asked, and the node-wide table of users with any connection open.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::codec::frame::{self, OpCode};
use crate::codec::protocol;
use crate::hub::link::{self, Delivery, Wakes, WorkerLink};
use crate::hub::memory::channel::Channel;
use crate::hub::memory::shard::{lock, shard_of, SHARDS};

/// Counts a user's connection in or out of a channel; on the first in or last out, queues a
/// join/leave event to the workers with subscribers (under the channel's lock, so it is
/// ordered with the channel's messages).
pub fn change(
    workers: &[WorkerLink],
    ch: &mut Channel,
    channel: &str,
    user: &str,
    join: bool,
    wakes: &mut Wakes,
) {
    let changed = if join {
        let n = ch.present.entry(user.into()).or_insert(0);
        *n += 1;
        *n == 1
    } else {
        match ch.present.get_mut(user) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                ch.present.remove(user);
                true
            }
            None => false,
        }
    };
    if !changed || !ch.has_subscribers() {
        return;
    }
    let json = protocol::presence_event_json(channel, user, join);
    let mut f = Vec::with_capacity(json.len() + 4);
    frame::write_server_frame(&mut f, OpCode::Text, json.as_bytes());
    let event = Delivery::Presence(f.into());
    link::deliver(workers, &ch.subscribers, ch.id, &event, wakes);
}

/// Users present in a channel, sorted.
pub fn members(ch: &Channel) -> Vec<Box<str>> {
    let mut users: Vec<Box<str>> = ch.present.keys().cloned().collect();
    users.sort();
    users
}

/// Connections per named user, in one lock shard.
type Counts = Mutex<HashMap<Box<str>, u32>>;

/// Named users with at least one connection open, and how many.
#[derive(Debug)]
pub struct Users(Box<[Counts]>);

impl Users {
    pub fn new() -> Users {
        Users((0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect())
    }

    fn shard(&self, user: &str) -> &Counts {
        // SHARDS entries exist by construction; `shard_of` is below SHARDS.
        &self.0[shard_of(user)]
    }

    pub fn connected(&self, user: &str) {
        *lock(self.shard(user)).entry(user.into()).or_insert(0) += 1;
    }

    pub fn disconnected(&self, user: &str) {
        let mut users = lock(self.shard(user));
        if let Some(n) = users.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                users.remove(user);
            }
        }
    }

    pub fn online(&self, user: &str) -> bool {
        self.count(user) > 0
    }

    /// Connections open that named `user`.
    pub fn count(&self, user: &str) -> u32 {
        lock(self.shard(user)).get(user).copied().unwrap_or(0)
    }
}

impl Default for Users {
    fn default() -> Self {
        Self::new()
    }
}
