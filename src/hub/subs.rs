//! A worker's index from channel to its local subscribers: what a delivery fans out to.
//! Each worker owns its own (no lock on the delivery path); the engine knows only how many
//! subscribers each worker has per channel.

use std::collections::HashMap;
use std::sync::Arc;

use slab::Slab;

use crate::hub::engine::Epoch;

/// One of a connection's subscriptions: the channel, its slot in the local index, and the
/// last id the connection was sent (the resume cursor of SSE and long-polling).
#[derive(Debug, Clone, Copy)]
pub struct SubRef {
    pub channel_id: u64,
    pub slot: u32,
    pub last_seq: u64,
}

/// A subscriber as the worker's fan-out sees it.
#[derive(Debug, Clone, Copy)]
pub struct Sub {
    pub key: u32,
    pub gen: u32,
    /// Deliveries with ids up to this were already covered by the subscribe (replayed, or
    /// published before it); only later ones are sent.
    pub min_seq: u64,
    pub raw: bool,
    /// Wants join/leave events.
    pub presence: bool,
}

#[derive(Debug)]
pub struct LocalChannel {
    pub name: Arc<str>,
    /// The stream the subscribers are positioned in.
    pub epoch: Epoch,
    pub subs: Slab<Sub>,
}

/// Channel → this worker's subscribers.
#[derive(Debug, Default)]
pub struct LocalIndex {
    channels: HashMap<u64, LocalChannel>,
}

impl LocalIndex {
    pub fn get(&self, channel_id: u64) -> Option<&LocalChannel> {
        self.channels.get(&channel_id)
    }

    pub fn name_of(&self, r: &SubRef) -> Option<&str> {
        self.channels.get(&r.channel_id).map(|c| &*c.name)
    }

    /// Registers a subscriber of `channel_id` (named `name`, in stream `epoch`); returns its
    /// slot.
    pub fn add(&mut self, channel_id: u64, name: &str, epoch: &Epoch, sub: Sub) -> u32 {
        let local = self
            .channels
            .entry(channel_id)
            .or_insert_with(|| LocalChannel {
                name: name.into(),
                epoch: epoch.clone(),
                subs: Slab::new(),
            });
        local.subs.insert(sub) as u32
    }

    /// Removes a subscriber; returns the channel's name if that was the worker's last
    /// subscriber of it (the engine is told either way by the caller).
    pub fn remove(&mut self, r: &SubRef) -> Option<Arc<str>> {
        let local = self.channels.get_mut(&r.channel_id)?;
        local.subs.try_remove(r.slot as usize);
        let name = local.name.clone();
        // Slots are referenced by index, so a channel's slab keeps its peak capacity until
        // the channel has no local subscribers left.
        if local.subs.is_empty() {
            self.channels.remove(&r.channel_id);
        }
        Some(name)
    }

    /// Channels with at least one local subscriber.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }
}
