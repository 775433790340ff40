//! One channel of the memory engine: its next id, its history (capped by count and age, and
//! what it costs counted for the engine's byte budget), which workers have subscribers, and
//! who is present. Always used under its shard's lock.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::hub::engine::{Epoch, Since};
use crate::hub::memory::cost;
use crate::hub::memory::shard::SHARDS;
use crate::hub::msg::Msg;

/// History limits, from the flags.
#[derive(Debug, Clone, Copy)]
pub struct HistoryLimits {
    /// Messages kept per channel.
    pub size: usize,
    pub ttl: Duration,
    /// Bytes all history may cost together (`--history-max-bytes`).
    pub max_bytes: usize,
    /// Live channels: with subscribers or history (`--max-channels`).
    pub max_channels: usize,
}

#[derive(Debug)]
pub struct Channel {
    /// The node's key for this channel (deliveries carry it).
    pub id: u64,
    pub next_seq: u64,
    pub history: VecDeque<Arc<Msg>>,
    /// Subscribers per worker.
    pub subscribers: Vec<u32>,
    /// Present users and how many of their connections are subscribed.
    pub present: HashMap<Box<str>, u32>,
    /// What the messages in `history` cost ([`cost::message`]).
    history_bytes: usize,
    /// What the channel itself costs while it holds history ([`cost::channel`]).
    overhead: usize,
}

impl Channel {
    pub fn new(id: u64, first_seq: u64, name: &str, workers: usize) -> Channel {
        Channel {
            id,
            next_seq: first_seq,
            history: VecDeque::new(),
            subscribers: vec![0; workers],
            present: HashMap::new(),
            history_bytes: 0,
            overhead: cost::channel(std::mem::size_of::<Channel>(), name.len(), workers),
        }
    }

    /// What the channel is charged to the history budget: its history and, while it holds
    /// any, itself (a channel without history is forgotten once it has no subscribers).
    pub fn charged(&self) -> usize {
        if self.history.is_empty() {
            0
        } else {
            self.overhead + self.history_bytes
        }
    }

    pub fn push(&mut self, msg: Arc<Msg>) {
        self.history_bytes += cost::message(&msg);
        self.history.push_back(msg);
    }

    /// Drops the oldest message kept.
    pub fn pop_front(&mut self) -> Option<Arc<Msg>> {
        let m = self.history.pop_front()?;
        self.history_bytes = self.history_bytes.saturating_sub(cost::message(&m));
        Some(m)
    }

    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    pub fn has_subscribers(&self) -> bool {
        self.subscribers.iter().any(|&n| n > 0)
    }

    /// Whether the channel holds nothing worth remembering but its last id.
    pub fn is_idle(&self) -> bool {
        !self.has_subscribers() && self.history.is_empty()
    }

    pub fn trim(&mut self, limits: &HistoryLimits, now: Instant) {
        while self.history.len() > limits.size {
            self.pop_front();
        }
        while self
            .history
            .front()
            .is_some_and(|m| now.duration_since(m.at) > limits.ttl)
        {
            self.pop_front();
        }
        if self.history.capacity() > 64 && self.history.len() < self.history.capacity() / 4 {
            self.history.shrink_to_fit();
        }
    }

    /// Messages after `since` (at most `limit`), and whether they are all there are: false
    /// when `since` is of another epoch, older than the history kept, or newer than any id
    /// handed out (the server restarted, or the client is confused). Without `since`, all
    /// that is kept.
    pub fn after(
        &self,
        since: Option<&Since>,
        epoch: &Epoch,
        limit: usize,
        limits: &HistoryLimits,
        now: Instant,
    ) -> (bool, Vec<Arc<Msg>>) {
        let live = |m: &&Arc<Msg>| now.duration_since(m.at) <= limits.ttl;
        let (recovered, from) = match since {
            None => (true, 0),
            Some(s) if s.epoch.as_ref().is_some_and(|e| e != epoch) => (false, 0),
            Some(s) => {
                let oldest_kept = self
                    .history
                    .iter()
                    .find(live)
                    .map_or(self.next_seq, |m| m.seq);
                let recovered = s.id <= self.last_seq() && s.id.saturating_add(1) >= oldest_kept;
                (recovered, if s.id > self.last_seq() { 0 } else { s.id })
            }
        };
        let msgs = self
            .history
            .iter()
            .filter(live)
            .filter(|m| m.seq > from)
            .take(limit)
            .cloned()
            .collect();
        (recovered, msgs)
    }
}

/// Slots per shard remembering the last id of channels that were forgotten (see
/// [`Retired`]): 64 × 4,096 slots of 8 bytes (2 MiB once a flood of channels has touched
/// them all: a fixed cost outside the history budget), allocated zeroed so untouched pages
/// cost nothing. More slots would only make fewer new channels start above 1.
pub const RETIRED_SLOTS_PER_SHARD: usize = 4 * 1024;

/// A channel with no subscribers and no history is forgotten to bound memory, but its ids
/// must never be handed out again (a client resuming with `since` would skip the new
/// messages that reuse them). So the last id of a forgotten channel is kept here, in a slot
/// chosen by the name's hash, and a channel created later starts after it. Two names
/// sharing a slot only make the newer one start higher: ids never repeat, and stay
/// consecutive while a channel lives.
#[derive(Debug)]
pub struct Retired(Vec<u64>);

impl Retired {
    pub fn new() -> Retired {
        Retired(vec![0; RETIRED_SLOTS_PER_SHARD])
    }

    /// The id a channel whose name hashes to `hash` starts after.
    pub fn last(&self, hash: u64) -> u64 {
        self.0.get(Self::slot(hash)).copied().unwrap_or(0)
    }

    pub fn retire(&mut self, hash: u64, last_seq: u64) {
        if let Some(slot) = self.0.get_mut(Self::slot(hash)) {
            *slot = (*slot).max(last_seq);
        }
    }

    fn slot(hash: u64) -> usize {
        // The low bits chose the shard; use the others.
        (hash / SHARDS as u64) as usize % RETIRED_SLOTS_PER_SHARD
    }
}

impl Default for Retired {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_channel_struct_is_what_the_cost_assumes() {
        // `cost`'s test prices a channel of 160 bytes; keep it honest if the struct grows.
        assert!(std::mem::size_of::<Channel>() <= 160);
    }
}
