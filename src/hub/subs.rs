//! A worker's index from channel to its local subscribers: what a delivery fans out to.
//! Each worker owns its own (no lock on the delivery path); the engine knows only how many
//! subscribers each worker has per channel.
//!
//! Kept small, because a subscriber may hold its subscription for hours and a worker holds
//! hundreds of thousands: a subscriber is 16 bytes in its channel's dense array, and a
//! connection refers to it with 8 bytes ([`SubRef`]: the worker-local channel and the slot).

use std::collections::HashMap;
use std::sync::Arc;

use slab::Slab;

use crate::hub::engine::Epoch;

/// A connection's handle on one of its subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubRef {
    /// The channel's key in this worker's index (not the engine's id).
    pub channel: u32,
    pub slot: u32,
}

/// Marks a free slot (no connection key reaches it: keys are below the fd limit).
const VACANT: u32 = u32::MAX;
/// Flag bits kept in the top of a subscriber's connection key (keys stay far below 2^30).
const RAW: u32 = 1 << 31;
const PRESENCE: u32 = 1 << 30;
const FLAGS: u32 = RAW | PRESENCE;

/// A subscriber as the worker's fan-out sees it: 16 bytes.
#[derive(Debug, Clone, Copy)]
pub struct Sub {
    /// The connection's slab key, with the `RAW` and `PRESENCE` flags on top.
    key_flags: u32,
    pub gen: u32,
    /// Deliveries with ids up to this were already covered (replayed, published before the
    /// subscription, or sent): only later ones go out. For SSE and long-polling, also the
    /// connection's position in the channel (the resume cursor).
    pub position: u64,
}

impl Sub {
    pub fn new(key: u32, gen: u32, position: u64, raw: bool, presence: bool) -> Sub {
        let mut key_flags = key & !FLAGS;
        if raw {
            key_flags |= RAW;
        }
        if presence {
            key_flags |= PRESENCE;
        }
        Sub {
            key_flags,
            gen,
            position,
        }
    }

    pub fn key(&self) -> u32 {
        self.key_flags & !FLAGS
    }

    /// Takes bare payloads (`format=raw`).
    pub fn raw(&self) -> bool {
        self.key_flags & RAW != 0
    }

    /// Wants join/leave events.
    pub fn presence(&self) -> bool {
        self.key_flags & PRESENCE != 0
    }

    fn is_vacant(&self) -> bool {
        self.key_flags == VACANT
    }
}

/// A channel's subscribers on this worker: a dense array with free slots chained through
/// their `position`, so a slot never moves while it is held and fan-out walks one array.
#[derive(Debug, Default)]
pub struct Subscribers {
    slots: Vec<Sub>,
    free: Option<u32>,
    len: usize,
}

impl Subscribers {
    fn insert(&mut self, sub: Sub) -> u32 {
        self.len += 1;
        match self.free {
            Some(slot) => {
                if let Some(s) = self.slots.get_mut(slot as usize) {
                    let next = s.position;
                    self.free = u32::try_from(next).ok().filter(|&n| n != VACANT);
                    *s = sub;
                }
                slot
            }
            None => {
                self.slots.push(sub);
                (self.slots.len() - 1) as u32
            }
        }
    }

    fn remove(&mut self, slot: u32) {
        let Some(s) = self.slots.get_mut(slot as usize).filter(|s| !s.is_vacant()) else {
            return;
        };
        *s = Sub {
            key_flags: VACANT,
            gen: 0,
            position: u64::from(self.free.unwrap_or(VACANT)),
        };
        self.free = Some(slot);
        self.len -= 1;
    }

    pub fn get(&self, slot: u32) -> Option<&Sub> {
        self.slots.get(slot as usize).filter(|s| !s.is_vacant())
    }

    fn get_mut(&mut self, slot: u32) -> Option<&mut Sub> {
        self.slots.get_mut(slot as usize).filter(|s| !s.is_vacant())
    }

    /// Every subscriber, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = &Sub> {
        self.slots.iter().filter(|s| !s.is_vacant())
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[derive(Debug)]
pub struct LocalChannel {
    /// The engine's id of the channel (deliveries carry it).
    pub id: u64,
    pub name: Arc<str>,
    /// The stream the subscribers are positioned in.
    pub epoch: Epoch,
    pub subs: Subscribers,
}

/// Channel → this worker's subscribers, and user → this worker's connections that named the
/// user (what a direct message or a disconnect goes to).
#[derive(Debug, Default)]
pub struct LocalIndex {
    channels: Slab<LocalChannel>,
    by_id: HashMap<u64, u32>,
    users: HashMap<Arc<str>, Vec<(u32, u32)>>,
}

impl LocalIndex {
    /// The channel a delivery (carrying the engine's id) is for.
    pub fn get(&self, channel_id: u64) -> Option<&LocalChannel> {
        let local = *self.by_id.get(&channel_id)?;
        self.channels.get(local as usize)
    }

    pub fn channel(&self, r: &SubRef) -> Option<&LocalChannel> {
        self.channels.get(r.channel as usize)
    }

    pub fn name_of(&self, r: &SubRef) -> Option<&str> {
        self.channel(r).map(|c| &*c.name)
    }

    pub fn sub(&self, r: &SubRef) -> Option<&Sub> {
        self.channel(r)?.subs.get(r.slot)
    }

    /// A subscriber's position (see [`Sub::position`]).
    pub fn position(&self, r: &SubRef) -> Option<u64> {
        self.sub(r).map(|s| s.position)
    }

    /// Sets a subscriber's position.
    pub fn set_position(&mut self, r: &SubRef, position: u64) {
        if let Some(s) = self
            .channels
            .get_mut(r.channel as usize)
            .and_then(|c| c.subs.get_mut(r.slot))
        {
            s.position = position;
        }
    }

    /// Registers a subscriber of `channel_id` (named `name`, in stream `epoch`).
    pub fn add(&mut self, channel_id: u64, name: &str, epoch: &Epoch, sub: Sub) -> SubRef {
        let local = match self.by_id.get(&channel_id) {
            Some(&local) => local,
            None => {
                let local = self.channels.insert(LocalChannel {
                    id: channel_id,
                    name: name.into(),
                    epoch: epoch.clone(),
                    subs: Subscribers::default(),
                }) as u32;
                self.by_id.insert(channel_id, local);
                local
            }
        };
        let slot = self
            .channels
            .get_mut(local as usize)
            .map_or(0, |c| c.subs.insert(sub));
        SubRef {
            channel: local,
            slot,
        }
    }

    /// Removes a subscriber; returns the channel's name (the caller tells the engine).
    pub fn remove(&mut self, r: &SubRef) -> Option<Arc<str>> {
        let local = self.channels.get_mut(r.channel as usize)?;
        local.subs.remove(r.slot);
        let name = local.name.clone();
        // A channel's array keeps its peak length until it has no local subscriber left
        // (slots are held by index).
        if local.subs.is_empty() {
            let id = local.id;
            self.channels.remove(r.channel as usize);
            self.by_id.remove(&id);
        }
        Some(name)
    }

    /// A channel's stream was reset: every local subscriber is placed at `id` of `epoch`.
    pub fn reset(&mut self, channel_id: u64, epoch: &Epoch, id: u64) {
        let Some(&local) = self.by_id.get(&channel_id) else {
            return;
        };
        if let Some(c) = self.channels.get_mut(local as usize) {
            c.epoch = epoch.clone();
            for s in c.subs.slots.iter_mut().filter(|s| !s.is_vacant()) {
                s.position = id;
            }
        }
    }

    /// Notes connection `key` (generation `gen`) as one of `user`'s.
    pub fn add_user(&mut self, user: &str, key: u32, gen: u32) {
        match self.users.get_mut(user) {
            Some(conns) => conns.push((key, gen)),
            None => {
                self.users.insert(user.into(), vec![(key, gen)]);
            }
        }
    }

    pub fn remove_user(&mut self, user: &str, key: u32, gen: u32) {
        if let Some(conns) = self.users.get_mut(user) {
            conns.retain(|&c| c != (key, gen));
            if conns.is_empty() {
                self.users.remove(user);
            }
        }
    }

    /// This worker's connections of `user`: (key, generation).
    pub fn user_conns(&self, user: &str) -> &[(u32, u32)] {
        self.users.get(user).map_or(&[], Vec::as_slice)
    }

    /// Channels with at least one local subscriber.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscriber_is_sixteen_bytes_and_keeps_its_flags() {
        assert_eq!(std::mem::size_of::<Sub>(), 16);
        let s = Sub::new(12345, 7, 99, true, false);
        assert_eq!((s.key(), s.gen, s.position), (12345, 7, 99));
        assert!(s.raw() && !s.presence());
        let s = Sub::new(1, 0, 0, false, true);
        assert!(!s.raw() && s.presence());
    }

    #[test]
    fn slots_are_reused_and_never_move() {
        let mut index = LocalIndex::default();
        let e = Epoch::random();
        let a = index.add(7, "c", &e, Sub::new(1, 0, 0, false, false));
        let b = index.add(7, "c", &e, Sub::new(2, 0, 0, false, false));
        let c = index.add(7, "c", &e, Sub::new(3, 0, 0, false, false));
        assert_eq!((a.slot, b.slot, c.slot), (0, 1, 2));
        index.remove(&b);
        index.remove(&a);
        let keys: Vec<u32> = index.get(7).unwrap().subs.iter().map(Sub::key).collect();
        assert_eq!(keys, [3]);
        assert_eq!(index.sub(&c).map(Sub::key), Some(3), "c did not move");
        let d = index.add(7, "c", &e, Sub::new(4, 0, 0, false, false));
        let f = index.add(7, "c", &e, Sub::new(5, 0, 0, false, false));
        assert_eq!(
            (d.slot, f.slot),
            (0, 1),
            "freed slots are taken again, last freed first"
        );
        let g = index.add(7, "c", &e, Sub::new(6, 0, 0, false, false));
        assert_eq!(g.slot, 3);
        assert_eq!(index.get(7).unwrap().subs.len(), 4);
        for r in [c, d, f, g] {
            index.remove(&r);
        }
        assert!(
            index.is_empty(),
            "the last subscriber takes the channel with it"
        );
        assert!(index.get(7).is_none());
    }

    #[test]
    fn a_removed_slot_removed_again_changes_nothing() {
        let mut index = LocalIndex::default();
        let e = Epoch::random();
        let a = index.add(1, "x", &e, Sub::new(1, 0, 0, false, false));
        let _b = index.add(1, "x", &e, Sub::new(2, 0, 0, false, false));
        index.remove(&a);
        index.remove(&a);
        assert_eq!(index.get(1).unwrap().subs.len(), 1);
    }
}
