//! Channel subscriptions on one worker: each `/ws` connection's list of channels, and the
//! worker's index from channel to its local subscribers (what a delivery fans out to).

use std::collections::HashMap;
use std::sync::Arc;

use slab::Slab;

use crate::codec::protocol::OpError;
use crate::hub::{Hub, Subscription};

/// A `/ws` connection's channel state (boxed in its `Conn`; `/echo` has none).
#[derive(Debug, Default)]
pub struct Session {
    /// Name given with `?user=`, for presence.
    pub user: Option<Box<str>>,
    /// `format=raw`: messages arrive as bare payload frames, no JSON envelope.
    pub raw: bool,
    pub subs: Vec<SubRef>,
    /// Held long-poll: whether the connection stays open after the reply, and the CORS
    /// headers the reply carries.
    pub keep_alive: bool,
    pub cors: Option<Box<str>>,
    /// May send `publish` (see `ws::Plan::from_request`).
    pub may_publish: bool,
}

/// One of a connection's subscriptions: the channel, its slot in the local index, and the
/// last id the connection was sent (the resume cursor of SSE and long-polling).
#[derive(Debug, Clone, Copy)]
pub struct SubRef {
    pub channel_id: u64,
    pub slot: u32,
    pub last_seq: u64,
}

impl Session {
    /// Sets the connection's position in `channel_id` (the last id it has been sent).
    pub fn set_position(&mut self, channel_id: u64, seq: u64) {
        if let Some(r) = self.subs.iter_mut().find(|r| r.channel_id == channel_id) {
            r.last_seq = seq;
        }
    }

    /// Notes that message `seq` of `channel_id` was sent.
    pub fn advance(&mut self, channel_id: u64, seq: u64) {
        if let Some(r) = self.subs.iter_mut().find(|r| r.channel_id == channel_id) {
            r.last_seq = r.last_seq.max(seq);
        }
    }
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
    pub subs: Slab<Sub>,
}

/// Channel → this worker's subscribers.
#[derive(Debug, Default)]
pub struct LocalIndex {
    channels: HashMap<u64, LocalChannel>,
}

/// Who is subscribing, for [`subscribe`].
#[derive(Debug, Clone, Copy)]
pub struct Subscriber {
    pub worker: usize,
    pub key: u32,
    pub gen: u32,
}

impl LocalIndex {
    pub fn get(&self, channel_id: u64) -> Option<&LocalChannel> {
        self.channels.get(&channel_id)
    }

    pub fn name_of(&self, r: &SubRef) -> Option<&str> {
        self.channels.get(&r.channel_id).map(|c| &*c.name)
    }

    /// Channels with at least one local subscriber.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }
}

/// Subscribes a connection; returns what to replay (see [`Hub::subscribe`]).
#[allow(clippy::too_many_arguments)] // each is a distinct fact about the subscription
pub fn subscribe(
    hub: &Hub,
    index: &mut LocalIndex,
    session: &mut Session,
    who: Subscriber,
    channel: &str,
    since: Option<u64>,
    presence: bool,
    max_subscriptions: usize,
) -> Result<Subscription, OpError> {
    if session
        .subs
        .iter()
        .any(|r| index.name_of(r) == Some(channel))
    {
        return Err(OpError::AlreadySubscribed);
    }
    if session.subs.len() >= max_subscriptions {
        return Err(OpError::TooManySubscriptions(max_subscriptions));
    }
    let sub = hub.subscribe(channel, who.worker, since, session.user.as_deref());
    let local = index
        .channels
        .entry(sub.channel_id)
        .or_insert_with(|| LocalChannel {
            name: channel.into(),
            subs: Slab::new(),
        });
    let slot = local.subs.insert(Sub {
        key: who.key,
        gen: who.gen,
        min_seq: sub.last_seq,
        raw: session.raw,
        presence,
    });
    session.subs.push(SubRef {
        channel_id: sub.channel_id,
        slot: slot as u32,
        last_seq: sub.last_seq,
    });
    Ok(sub)
}

/// Unsubscribes a connection from one channel.
pub fn unsubscribe(
    hub: &Hub,
    index: &mut LocalIndex,
    session: &mut Session,
    worker: usize,
    channel: &str,
) -> Result<(), OpError> {
    let pos = session
        .subs
        .iter()
        .position(|r| index.name_of(r) == Some(channel))
        .ok_or(OpError::NotSubscribed)?;
    let r = session.subs.swap_remove(pos);
    remove(hub, index, r, worker, session.user.as_deref());
    Ok(())
}

/// Drops every subscription of a closing connection (presence ends at once).
pub fn unsubscribe_all(hub: &Hub, index: &mut LocalIndex, session: &mut Session, worker: usize) {
    for r in session.subs.drain(..) {
        remove(hub, index, r, worker, session.user.as_deref());
    }
}

fn remove(hub: &Hub, index: &mut LocalIndex, r: SubRef, worker: usize, user: Option<&str>) {
    let Some(local) = index.channels.get_mut(&r.channel_id) else {
        return;
    };
    local.subs.try_remove(r.slot as usize);
    hub.unsubscribe(&local.name, worker, user);
    // Slots are referenced by index, so a channel's slab keeps its peak capacity until the
    // channel has no local subscribers left.
    if local.subs.is_empty() {
        index.channels.remove(&r.channel_id);
    }
}
