//! The node's view of the channels it has subscribers for, in cluster mode: which it is
//! subscribed to in Redis, where each channel's stream stands (epoch, last id delivered to
//! the workers), and the merge that makes a subscription gap-free: subscribe in Redis first,
//! keep what arrives, read history, and answer the subscriber at the exact point of the
//! stream its replay ends at.
//!
//! A state machine on the Redis thread: requests from workers and events from Redis in,
//! commands to Redis ([`Store`]) and hand-overs to the workers' mailboxes out. No I/O here,
//! so it is tested with a fake store.
//!
//! Every message of a channel goes to the workers in id order, once: a message whose id jumps
//! past the next expected one is held while the gap is read from history; one at or below
//! the last delivered is a duplicate and dropped. A gap history no longer holds, or a new
//! epoch (Redis lost the stream), is a [`Delivery::Reset`] for the channel's subscribers.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::codec::frame::{self, OpCode};
use crate::codec::position::{Epoch, Since};
use crate::codec::protocol;
use crate::hub::engine::{Answered, EngineError, ReplyTo};
use crate::hub::link::{self, Delivery, Wakes, Workers};
use crate::hub::redis::chan::{
    accept, answer, deliver, fill, hold, push_bounded, reset, Asked, Chan, Link,
};
use crate::hub::redis::wire::{Entry, Kept};
use crate::warn;

/// What the node asks of Redis. The driver implements it; tests use a fake.
pub trait Store {
    /// Sharded-subscribes to the channel (confirmed later by [`Node::on_subscribed`]); `Err`
    /// (why) if that cannot be sent now.
    fn subscribe(&mut self, channel: &str) -> Result<(), String>;
    fn unsubscribe(&mut self, channel: &str);
    /// Reads the channel's stream after `since` (from its start when `epoch` is not the
    /// stream's), at most `limit` entries; answered by [`Node::on_read`] with `tag`, or
    /// `Err` (why) if it cannot be sent now.
    fn read(
        &mut self,
        channel: &str,
        since: u64,
        epoch: Option<&Epoch>,
        limit: usize,
        tag: u64,
    ) -> Result<(), String>;
    /// Asks where the channel's stream stands (answered by [`Node::on_top`]), giving it a
    /// new epoch if it is still `epoch` and went back: `force` when the node has proof, else
    /// when its top is below `top` or the message it keeps at `top` is not the one whose
    /// digest ([`Entry::digest`]) the node gives.
    fn fence(&mut self, channel: &str, epoch: &Epoch, top: u64, force: bool, digest: Option<&str>);
    /// `user` joined / left the channel here (presence).
    fn join(&mut self, channel: &str, user: &str);
    fn leave(&mut self, channel: &str, user: &str);
}

/// What a read in flight is for.
#[derive(Debug)]
enum Read {
    /// A subscriber's replay.
    Subscribe { channel: Box<str>, asked: Asked },
    /// Messages the node missed (a jump in ids, a reconnect, a periodic check) after `since`
    /// of `epoch`, where the node stood when it asked.
    Fill {
        channel: Box<str>,
        since: u64,
        epoch: Epoch,
    },
}

#[derive(Debug)]
pub struct Node {
    workers: Workers,
    /// Entries a replay or a fill reads at most (the history kept per channel).
    history_size: usize,
    /// Channels with local subscribers at most (`--max-channels`).
    max_channels: usize,
    chans: HashMap<Box<str>, Chan>,
    reads: HashMap<u64, Read>,
    next_tag: u64,
    next_channel_id: u64,
    /// Gaps read back from history, and streams reset (`recovered:false`), for `/metrics`.
    pub gap_fills: u64,
    pub resets: u64,
    /// Messages received from Redis for this node's channels.
    pub messages_in: u64,
    /// Subscribes refused at `max_channels`.
    pub refused: u64,
    /// Streams this node's fences gave a new epoch (they went back in Redis).
    pub rewinds: u64,
}

impl Node {
    pub fn new(workers: Workers, history_size: usize, max_channels: usize) -> Node {
        Node {
            workers,
            history_size,
            max_channels,
            chans: HashMap::new(),
            reads: HashMap::new(),
            next_tag: 1,
            next_channel_id: 1,
            gap_fills: 0,
            resets: 0,
            messages_in: 0,
            refused: 0,
            rewinds: 0,
        }
    }

    /// Channels the node has local subscribers for (or is still answering).
    pub fn tracked(&self) -> usize {
        self.chans.len()
    }

    /// Channels the node is subscribed to (or subscribing) in Redis.
    pub fn channels(&self) -> impl Iterator<Item = &str> {
        self.chans
            .iter()
            .filter(|(_, c)| c.link != Link::Unsubscribed)
            .map(|(n, _)| &**n)
    }

    /// A worker's subscriber asks for `channel` from `since`.
    pub fn subscribe(
        &mut self,
        store: &mut dyn Store,
        channel: &str,
        worker: usize,
        since: Option<Since>,
        user: Option<Box<str>>,
        reply: ReplyTo,
    ) {
        if self.chans.len() >= self.max_channels && !self.chans.contains_key(channel) {
            self.refused += 1;
            let refused = Answered::Subscribed(Err(EngineError::TooManyChannels));
            return link::answer(&self.workers, reply, refused);
        }
        let workers = self.workers.len();
        let next_id = &mut self.next_channel_id;
        let ch = self.chans.entry(channel.into()).or_insert_with(|| {
            *next_id += 1;
            Chan {
                id: *next_id - 1,
                counts: vec![0; workers],
                wanted: 0,
                link: Link::Unsubscribed,
                stream: None,
                queue: Vec::new(),
                reads: 0,
                resets: 0,
                recent: VecDeque::new(),
                filling: false,
                held: Vec::new(),
            }
        });
        ch.wanted += 1;
        let asked = Asked {
            worker,
            since,
            user,
            reply,
        };
        match ch.link {
            Link::Unsubscribed => {
                ch.link = Link::Subscribing;
                ch.queue.push(asked);
                if let Err(why) = store.subscribe(channel) {
                    self.on_unsubscribed(channel, &why);
                    self.forget_if_unwanted(store, channel);
                }
            }
            Link::Subscribing => ch.queue.push(asked),
            Link::Subscribed => self.start_read(store, channel, asked),
        }
    }

    fn start_read(&mut self, store: &mut dyn Store, channel: &str, asked: Asked) {
        let Some(ch) = self.chans.get_mut(channel) else {
            return;
        };
        // A subscriber from now, to a stream this node already follows with nothing in
        // flight: where it stands is known here, and every message up to it has already
        // gone to the workers' mailboxes, so the answer queued behind them is exact. A
        // crowd subscribing to one channel then costs Redis nothing.
        let settled = ch.reads == 0 && !ch.filling && ch.held.is_empty();
        if let (None, true, Some(stream)) = (&asked.since, settled, ch.stream.as_ref()) {
            let kept = Kept {
                epoch: stream.epoch.clone(),
                top: stream.top,
                oldest: stream.top + 1,
                entries: Vec::new(),
            };
            if let Some(u) = asked.user.as_deref() {
                store.join(channel, u);
            }
            let mut wakes = Wakes::default();
            answer(&self.workers, ch, channel, asked, kept, &mut wakes);
            wakes.wake(&self.workers);
            return;
        }
        ch.reads += 1;
        let tag = self.next_tag;
        self.next_tag += 1;
        // Without `since`, only where the stream stands is needed.
        let (since, epoch, limit) = match &asked.since {
            Some(s) => (s.id, s.epoch.clone(), self.history_size),
            None => (0, None, 0),
        };
        let read = Read::Subscribe {
            channel: channel.into(),
            asked,
        };
        self.reads.insert(tag, read);
        if let Err(why) = store.read(channel, since, epoch.as_ref(), limit, tag) {
            self.on_read(store, tag, Err(EngineError::Unavailable(why.into())));
        }
    }

    fn start_fill(&mut self, store: &mut dyn Store, channel: &str) {
        let Some(ch) = self.chans.get_mut(channel) else {
            return;
        };
        let Some(stream) = ch.stream.as_ref() else {
            return;
        };
        if ch.filling {
            return;
        }
        ch.filling = true;
        ch.reads += 1;
        self.gap_fills += 1;
        let (since, epoch) = (stream.top, stream.epoch.clone());
        let tag = self.next_tag;
        self.next_tag += 1;
        self.reads.insert(
            tag,
            Read::Fill {
                channel: channel.into(),
                since,
                epoch: epoch.clone(),
            },
        );
        if let Err(why) = store.read(channel, since, Some(&epoch), self.history_size, tag) {
            self.on_read(store, tag, Err(EngineError::Unavailable(why.into())));
        }
    }

    /// A subscriber left (or its subscription was refused at the worker).
    pub fn unsubscribe(
        &mut self,
        store: &mut dyn Store,
        channel: &str,
        worker: usize,
        user: Option<&str>,
    ) {
        let Some(ch) = self.chans.get_mut(channel) else {
            return;
        };
        if let Some(n) = ch.counts.get_mut(worker).filter(|n| **n > 0) {
            *n -= 1;
            ch.wanted = ch.wanted.saturating_sub(1);
            if let Some(u) = user {
                store.leave(channel, u);
            }
        }
        self.forget_if_unwanted(store, channel);
    }

    fn forget_if_unwanted(&mut self, store: &mut dyn Store, channel: &str) {
        let Some(ch) = self.chans.get(channel) else {
            return;
        };
        if ch.wanted == 0 && ch.reads == 0 {
            if ch.link != Link::Unsubscribed {
                store.unsubscribe(channel);
            }
            self.chans.remove(channel);
        }
    }

    /// Redis confirmed the subscription: the waiting subscribers' reads go out; a channel
    /// whose stream the node already followed (a resubscription after a reconnect) reads
    /// what it missed meanwhile.
    pub fn on_subscribed(&mut self, store: &mut dyn Store, channel: &str) {
        let Some(ch) = self.chans.get_mut(channel) else {
            return;
        };
        ch.link = Link::Subscribed;
        let queued = std::mem::take(&mut ch.queue);
        let known = ch.stream.is_some();
        for asked in queued {
            self.start_read(store, channel, asked);
        }
        if known {
            self.start_fill(store, channel);
        }
    }

    /// The subscription was lost (its Redis connection went down): waiting subscribers are
    /// refused; answered ones stay, and the channel is subscribed again on reconnect.
    pub fn on_unsubscribed(&mut self, channel: &str, why: &str) {
        let Some(ch) = self.chans.get_mut(channel) else {
            return;
        };
        ch.link = Link::Unsubscribed;
        for asked in std::mem::take(&mut ch.queue) {
            ch.wanted = ch.wanted.saturating_sub(1);
            let err = EngineError::Unavailable(why.into());
            link::answer(&self.workers, asked.reply, Answered::Subscribed(Err(err)));
        }
    }

    /// Channels to subscribe again after a reconnect (those still wanted).
    pub fn resubscribe(&mut self, store: &mut dyn Store, of_shard: impl Fn(&str) -> bool) {
        let names: Vec<Box<str>> = self
            .chans
            .iter()
            .filter(|(n, c)| c.link == Link::Unsubscribed && c.wanted > 0 && of_shard(n))
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            if let Some(ch) = self.chans.get_mut(&name) {
                ch.link = Link::Subscribing;
                if let Err(why) = store.subscribe(&name) {
                    self.on_unsubscribed(&name, &why);
                }
            }
        }
    }

    /// Asks where each followed stream stands in Redis (a periodic check, a reconnect):
    /// missed messages are filled, a stream that went back gets a new epoch.
    pub fn check(&mut self, store: &mut dyn Store) {
        for (name, ch) in &self.chans {
            if let (Some(s), true) = (&ch.stream, ch.link != Link::Unsubscribed) {
                let top = s.top.max(s.live);
                let digest = s.last.as_ref().filter(|l| l.id == top).map(Entry::digest);
                store.fence(name, &s.epoch, top, false, digest.as_deref());
            }
        }
    }

    /// A message from the channel's Redis subscription.
    pub fn on_message(&mut self, store: &mut dyn Store, channel: &str, e: Entry, epoch: Epoch) {
        self.messages_in += 1;
        let Some(ch) = self.chans.get_mut(channel) else {
            return; // Unsubscribed meanwhile.
        };
        if let Some(s) = ch
            .stream
            .as_ref()
            .filter(|s| s.epoch == epoch && e.id <= s.live)
        {
            // Not delivered: it is in history, and the reset the new epoch brings replays it.
            warn!(
                "channel {channel}: redis numbered a message {} after {} in the same stream",
                e.id, s.live
            );
            let (at, epoch) = (s.top.max(s.live), s.epoch.clone());
            store.fence(channel, &epoch, at, true, None);
            return;
        }
        let seq = e.id;
        let msg = Arc::new(e.encode(channel));
        let mut wakes = Wakes::default();
        match ch.stream.as_ref() {
            // No read has placed the stream yet: kept for the first subscriber's replay.
            None => push_bounded(&mut ch.recent, msg),
            Some(s) if s.former.as_ref() == Some(&epoch) => {}
            Some(s) if s.epoch != epoch => {
                reset(&self.workers, ch, channel, epoch.clone(), 0, &mut wakes);
                accept(&self.workers, ch, msg, &mut wakes);
            }
            Some(s) if msg.seq <= s.top => {}
            Some(_) if ch.filling => hold(ch, msg),
            Some(s) if msg.seq == s.top + 1 => {
                deliver(&self.workers, ch, msg, &mut wakes);
                if let Some(s) = ch.stream.as_mut() {
                    s.last = Some(e);
                }
            }
            // A jump: what is between comes from history first.
            Some(_) => {
                hold(ch, msg);
                if let Some(s) = ch.stream.as_mut() {
                    s.live = seq;
                }
                wakes.wake(&self.workers);
                return self.start_fill(store, channel);
            }
        }
        if let Some(s) = ch.stream.as_mut().filter(|s| s.epoch == epoch) {
            s.live = s.live.max(seq);
        }
        self.resets += u64::from(std::mem::take(&mut ch.resets));
        wakes.wake(&self.workers);
    }

    /// A join or leave of `user` in the channel, from Redis: to the local subscribers that
    /// asked for presence events.
    pub fn on_presence(&mut self, channel: &str, join: bool, user: &str) {
        let Some(ch) = self.chans.get(channel) else {
            return;
        };
        let json = protocol::presence_event_json(channel, user, join);
        let mut f = Vec::with_capacity(json.len() + 4);
        frame::write_server_frame(&mut f, OpCode::Text, json.as_bytes());
        let mut wakes = Wakes::default();
        link::deliver(
            &self.workers,
            &ch.counts,
            ch.id,
            &Delivery::Presence(f.into()),
            &mut wakes,
        );
        wakes.wake(&self.workers);
    }

    /// Where a channel's stream stands in Redis (a periodic check or a reconnect): a newer
    /// top than delivered means messages were lost on the way, unseen until now.
    pub fn on_top(&mut self, store: &mut dyn Store, channel: &str, epoch: Epoch, top: u64) {
        let Some(s) = self.chans.get(channel).and_then(|c| c.stream.as_ref()) else {
            return;
        };
        if s.epoch != epoch || s.top < top {
            self.start_fill(store, channel);
        }
    }

    /// A read came back.
    pub fn on_read(&mut self, store: &mut dyn Store, tag: u64, result: Result<Kept, EngineError>) {
        let Some(read) = self.reads.remove(&tag) else {
            return;
        };
        let channel = match &read {
            Read::Subscribe { channel, .. } | Read::Fill { channel, .. } => channel.clone(),
        };
        let Some(ch) = self.chans.get_mut(&*channel) else {
            return;
        };
        ch.reads = ch.reads.saturating_sub(1);
        let mut wakes = Wakes::default();
        let mut again = false;
        match read {
            Read::Subscribe { asked, .. } => match result {
                Ok(kept) => {
                    if let Some(u) = asked.user.as_deref() {
                        store.join(&channel, u);
                    }
                    answer(&self.workers, ch, &channel, asked, kept, &mut wakes)
                }
                Err(e) => {
                    ch.wanted = ch.wanted.saturating_sub(1);
                    link::answer(&self.workers, asked.reply, Answered::Subscribed(Err(e)));
                }
            },
            Read::Fill { since, epoch, .. } => {
                ch.filling = false;
                match result {
                    // Below an id the node received in the same epoch: it went back.
                    Ok(kept) if kept.epoch == epoch && kept.top < since => {
                        warn!(
                            "channel {channel}: redis is at id {} of a stream this node saw at \
                             {since}",
                            kept.top
                        );
                        store.fence(&channel, &epoch, since, true, None);
                    }
                    Ok(kept) => again = fill(&self.workers, ch, &channel, kept, &mut wakes),
                    // Tried again at the next message, check or reconnect.
                    Err(_) => ch.held.clear(),
                }
            }
        }
        if ch.reads == 0 {
            ch.recent.clear();
        }
        self.resets += u64::from(std::mem::take(&mut ch.resets));
        wakes.wake(&self.workers);
        if again {
            self.start_fill(store, &channel);
        }
        self.forget_if_unwanted(store, &channel);
    }
}

#[cfg(test)]
#[path = "node_tests.rs"]
mod tests;
