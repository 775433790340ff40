//! A shard's table of channels, and the two bounds on all tables together: the history byte
//! budget (`--history-max-bytes`) and the live-channel count (`--max-channels`).
//!
//! **Budget.** Every kept message and every channel holding history is charged what it costs
//! ([`cost`]) to one counter. Each shard also keeps its history in publish order (an entry
//! per message: the channel, the id, when), so past the budget the oldest history goes first:
//! a publish that leaves the counter over the budget takes, after releasing its own lock,
//! the shard whose oldest entry is the oldest of all (each shard publishes that time in an
//! atomic) and evicts from it, one lock at a time. Entries of messages already gone (trimmed
//! by count or age) are skipped when they reach the front; they are charged too, so the
//! order cannot outgrow the budget. Each entry is popped once: eviction is O(1) amortized
//! per publish, plus a scan of the [`SHARDS`] times.
//!
//! **Channels.** A channel is live while it has subscribers or history; creating one takes a
//! slot of `--max-channels` (or fails with `TooManyChannels`), forgetting it gives it back.
//! A forgotten channel's last id is kept in [`Retired`], so ids never repeat.

use std::collections::{HashMap, VecDeque};
use std::mem::size_of;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::hub::engine::EngineError;
use crate::hub::memory::channel::{Channel, Retired};
use crate::hub::memory::cost;
use crate::hub::memory::shard::{hash, lock, SHARDS};
use crate::hub::msg::Msg;

/// Entries evicted under one lock before the next shard is considered.
const EVICT_BATCH: usize = 64;

/// One message in a shard's publish order.
#[derive(Debug)]
struct Entry {
    channel: Arc<str>,
    seq: u64,
    /// When it was published, in nanoseconds since the budget's start.
    stamp: u64,
}

/// The channels of one shard.
#[derive(Debug, Default)]
pub struct Shard {
    pub channels: HashMap<Arc<str>, Channel>,
    pub retired: Retired,
    /// Kept messages in publish order (see the module doc).
    order: VecDeque<Entry>,
}

/// The bounds shared by every shard, and their counters.
#[derive(Debug)]
pub struct Bounds {
    pub max_bytes: usize,
    pub max_channels: usize,
    /// Bytes charged.
    bytes: AtomicUsize,
    /// Messages evicted for the budget.
    evicted: AtomicU64,
    /// Live channels, and new ones refused at `max_channels`.
    live: AtomicUsize,
    refused: AtomicU64,
    /// Per shard, the stamp of its oldest entry (`u64::MAX`: none).
    oldest: Box<[AtomicU64]>,
    start: Instant,
}

/// The counters, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub bytes: usize,
    pub evicted: u64,
    pub live: usize,
    pub refused: u64,
}

impl Bounds {
    pub fn new(max_bytes: usize, max_channels: usize) -> Bounds {
        Bounds {
            max_bytes,
            max_channels,
            bytes: AtomicUsize::new(0),
            evicted: AtomicU64::new(0),
            live: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            oldest: (0..SHARDS).map(|_| AtomicU64::new(u64::MAX)).collect(),
            start: Instant::now(),
        }
    }

    pub fn counts(&self) -> Counts {
        Counts {
            bytes: self.bytes.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            live: self.live.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }

    pub fn over(&self) -> bool {
        self.bytes.load(Ordering::Relaxed) > self.max_bytes
    }

    /// Moves the counter from what something was charged (`before`) to what it is now.
    fn recharge(&self, before: usize, after: usize) {
        if after > before {
            self.bytes.fetch_add(after - before, Ordering::Relaxed);
        } else if before > after {
            self.bytes.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    /// Takes a live-channel slot, or counts a refusal.
    fn admit(&self) -> Result<(), EngineError> {
        let max = self.max_channels;
        let taken = self
            .live
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            });
        taken.map(|_| ()).map_err(|_| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            EngineError::TooManyChannels
        })
    }

    /// Evicts the oldest history until the budget holds, one shard lock at a time; call it
    /// holding no shard lock. Bounded work per call; what is left goes on the next call.
    pub fn enforce(&self, shards: &[Mutex<Shard>]) {
        for _ in 0..SHARDS {
            if !self.over() {
                return;
            }
            let Some((i, shard)) = self.oldest_shard().and_then(|i| Some((i, shards.get(i)?)))
            else {
                return;
            };
            let mut shard = lock(shard);
            for _ in 0..EVICT_BATCH {
                if !self.over() || !shard.evict_oldest(self) {
                    break;
                }
            }
            self.restamp(i, &shard);
        }
    }

    /// The shard holding the oldest history entry.
    fn oldest_shard(&self) -> Option<usize> {
        let (i, stamp) = self
            .oldest
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .enumerate()
            .min_by_key(|&(_, stamp)| stamp)?;
        (stamp != u64::MAX).then_some(i)
    }

    /// Publishes shard `i`'s oldest stamp; call it under the shard's lock after its order
    /// changed at the front.
    pub fn restamp(&self, i: usize, shard: &Shard) {
        let stamp = shard.order.front().map_or(u64::MAX, |e| e.stamp);
        if let Some(slot) = self.oldest.get(i) {
            // Most publishes leave the front alone: read first, so they do not write a line
            // the other shards' publishers read.
            if slot.load(Ordering::Relaxed) != stamp {
                slot.store(stamp, Ordering::Relaxed);
            }
        }
    }
}

impl Shard {
    /// The channel named `name`, created if needed (starting after any id a forgotten
    /// channel of that name handed out), unless that would pass `--max-channels`.
    pub fn channel(
        &mut self,
        bounds: &Bounds,
        name: &str,
        new_id: impl FnOnce() -> u64,
        workers: usize,
    ) -> Result<&mut Channel, EngineError> {
        let Shard {
            channels, retired, ..
        } = self;
        if !channels.contains_key(name) {
            bounds.admit()?;
            let ch = Channel::new(new_id(), retired.last(hash(name)) + 1, name, workers);
            channels.insert(name.into(), ch);
        }
        channels
            .get_mut(name)
            .ok_or(EngineError::Unavailable("channel table".into()))
    }

    /// Keeps `msg` in `name`'s history (trimmed to the limits), charging what it costs.
    pub fn keep(
        &mut self,
        bounds: &Bounds,
        name: &str,
        msg: Arc<Msg>,
        trim: impl FnOnce(&mut Channel),
    ) {
        let Some(key) = self.channels.get_key_value(name).map(|(k, _)| k.clone()) else {
            return;
        };
        let Some(ch) = self.channels.get_mut(name) else {
            return;
        };
        let before = ch.charged();
        let entry = Entry {
            channel: key,
            seq: msg.seq,
            stamp: stamp(bounds.start, msg.at),
        };
        ch.push(msg);
        trim(ch);
        bounds.recharge(before, ch.charged());
        self.order.push_back(entry);
        bounds.recharge(0, cost::order_entry(size_of::<Entry>()));
    }

    /// Forgets `name` if it holds nothing but its last id (no subscribers, no history).
    pub fn forget_if_idle(&mut self, bounds: &Bounds, name: &str) {
        if self.channels.get(name).is_some_and(Channel::is_idle) {
            self.forget(bounds, name);
        }
    }

    fn forget(&mut self, bounds: &Bounds, name: &str) {
        if let Some(ch) = self.channels.remove(name) {
            self.retired.retire(hash(name), ch.last_seq());
            bounds.recharge(ch.charged(), 0);
            bounds.live.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Trims every channel's history to the limits and forgets idle channels (the sweep).
    pub fn sweep(&mut self, bounds: &Bounds, trim: impl Fn(&mut Channel)) {
        let Shard {
            channels, retired, ..
        } = self;
        channels.retain(|name, ch| {
            let before = ch.charged();
            trim(ch);
            bounds.recharge(before, ch.charged());
            let keep = !ch.is_idle();
            if !keep {
                retired.retire(hash(name), ch.last_seq());
                bounds.live.fetch_sub(1, Ordering::Relaxed);
            }
            keep
        });
        if channels.capacity() > 64 && channels.len() < channels.capacity() / 4 {
            channels.shrink_to_fit();
        }
        self.skip_gone(bounds);
    }

    /// Drops entries at the front of the order whose message is gone already.
    pub fn skip_gone(&mut self, bounds: &Bounds) {
        while let Some(e) = self.order.front() {
            let kept = self
                .channels
                .get(&*e.channel)
                .and_then(|ch| ch.history.front())
                .is_some_and(|m| m.seq <= e.seq);
            if kept {
                break;
            }
            self.pop_entry(bounds);
        }
        if self.order.capacity() > 1024 && self.order.len() < self.order.capacity() / 4 {
            self.order.shrink_to_fit();
        }
    }

    fn pop_entry(&mut self, bounds: &Bounds) -> Option<Entry> {
        let e = self.order.pop_front()?;
        bounds.recharge(cost::order_entry(size_of::<Entry>()), 0);
        Some(e)
    }

    /// Evicts the shard's oldest entry (the message, if still kept, and any older one of its
    /// channel); a channel left with neither history nor subscribers is forgotten. Returns
    /// false when the shard has no history left.
    fn evict_oldest(&mut self, bounds: &Bounds) -> bool {
        let Some(e) = self.pop_entry(bounds) else {
            return false;
        };
        if let Some(ch) = self.channels.get_mut(&*e.channel) {
            let before = ch.charged();
            let mut n = 0;
            while ch.history.front().is_some_and(|m| m.seq <= e.seq) {
                ch.pop_front();
                n += 1;
            }
            bounds.recharge(before, ch.charged());
            bounds.evicted.fetch_add(n, Ordering::Relaxed);
            if ch.is_idle() {
                self.forget(bounds, &e.channel);
            }
        }
        true
    }

    /// Messages kept in all of the shard's channels.
    pub fn history_len(&self) -> usize {
        self.channels.values().map(|c| c.history.len()).sum()
    }
}

fn stamp(start: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(start).as_nanos()).unwrap_or(u64::MAX - 1)
}
