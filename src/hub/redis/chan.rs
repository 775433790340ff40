//! One channel's state on this node in cluster mode, and how its stream moves forward:
//! messages handed to the workers in id order, a subscriber's replay merged from history and
//! what arrived meanwhile, gaps filled from history, and resets when the stream is not the
//! one the subscribers are in. Used by [`crate::hub::redis::node`] on the Redis thread.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use crate::codec::frame::{self, OpCode};
use crate::codec::position::{Epoch, Since};
use crate::codec::protocol;
use crate::hub::engine::{Answered, ReplyTo, Subscription};
use crate::hub::link::{self, Delivery, Wakes, Workers};
use crate::hub::msg::Msg;
use crate::hub::redis::wire::{Entry, Kept};

/// A subscription waiting for Redis.
#[derive(Debug)]
pub struct Asked {
    pub worker: usize,
    pub since: Option<Since>,
    /// Joins the channel's presence as this user once subscribed.
    pub user: Option<Box<str>>,
    pub reply: ReplyTo,
}

/// Where a channel's stream stands on this node.
#[derive(Debug, Clone)]
pub struct Stream {
    pub epoch: Epoch,
    /// The last id handed to the workers.
    pub top: u64,
    /// The last id that came by Pub/Sub in this epoch. Pub/Sub brings a stream's messages in
    /// the order Redis numbered them, so one that comes at or below it proves the stream went
    /// back (ids handed out again), unlike one at or below `top`, which a read may have
    /// delivered first.
    pub live: u64,
    /// The epoch the stream had before its last reset. A message of it that comes after
    /// the reset (Pub/Sub can lag the command connection that brought the new epoch) was
    /// published before the new epoch began, so the reset's replay from history had it.
    pub former: Option<Epoch>,
    /// The message at `top` when it came straight from Pub/Sub (kept, not copied): the check
    /// sends its digest, so Redis can tell the node it now keeps another message at that id.
    pub last: Option<Entry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Unsubscribed,
    Subscribing,
    Subscribed,
}

#[derive(Debug)]
pub struct Chan {
    /// The node's key for the channel (deliveries carry it).
    pub id: u64,
    /// Answered subscribers per worker.
    pub counts: Vec<u32>,
    /// Subscribers answered or waiting: the channel stays subscribed in Redis while any.
    pub wanted: u32,
    pub link: Link,
    pub stream: Option<Stream>,
    /// Subscribes waiting for the Redis subscription to be confirmed.
    pub queue: Vec<Asked>,
    /// Reads in flight for this channel.
    pub reads: u32,
    /// Resets not yet counted by the node (for `/metrics`).
    pub resets: u32,
    /// Messages delivered (or, before the first read, received) while reads are in flight:
    /// what a subscriber's replay needs beyond the history it read.
    pub recent: VecDeque<Arc<Msg>>,
    /// A fill read is in flight: later messages wait here.
    pub filling: bool,
    pub held: Vec<Arc<Msg>>,
}

/// Most messages kept per channel while reads are in flight, or held during a fill; past
/// it the oldest go (a read that slow is answered from history, or marks a gap).
pub const MAX_RECENT: usize = 10_000;

/// Keeps a message that must wait for a fill (bounded: one dropped here is a gap the next
/// fill reads from history).
pub fn hold(ch: &mut Chan, msg: Arc<Msg>) {
    if ch.held.len() < MAX_RECENT {
        ch.held.push(msg);
    }
}

pub fn push_bounded(q: &mut VecDeque<Arc<Msg>>, msg: Arc<Msg>) {
    if q.len() == MAX_RECENT {
        q.pop_front();
    }
    q.push_back(msg);
}

/// Hands the next message to the workers with subscribers.
pub fn deliver(workers: &Workers, ch: &mut Chan, msg: Arc<Msg>, wakes: &mut Wakes) {
    if let Some(s) = ch.stream.as_mut() {
        s.top = msg.seq;
    }
    if ch.reads > 0 {
        push_bounded(&mut ch.recent, msg.clone());
    }
    link::deliver(workers, &ch.counts, ch.id, &Delivery::Message(msg), wakes);
}

/// Takes a message of a stream just reset: delivered if it is the stream's first, else the
/// subscribers already know they must resume (the reset told them).
pub fn accept(workers: &Workers, ch: &mut Chan, msg: Arc<Msg>, wakes: &mut Wakes) {
    let top = ch.stream.as_ref().map_or(0, |s| s.top);
    if msg.seq == top + 1 {
        deliver(workers, ch, msg, wakes);
    } else if let Some(s) = ch.stream.as_mut() {
        s.top = msg.seq;
    }
}

/// The stream is not the one the subscribers are positioned in (a new epoch) or lost
/// messages history cannot give back: they are told, and follow from `top`.
pub fn reset(
    workers: &Workers,
    ch: &mut Chan,
    name: &str,
    epoch: Epoch,
    top: u64,
    wakes: &mut Wakes,
) {
    let json = protocol::subscribed_json(name, top, &epoch, false, None);
    let mut frame = Vec::with_capacity(json.len() + 4);
    frame::write_server_frame(&mut frame, OpCode::Text, json.as_bytes());
    let former = ch.stream.take().map(|s| s.epoch).filter(|e| *e != epoch);
    ch.stream = Some(Stream {
        epoch: epoch.clone(),
        top,
        live: 0,
        former,
        last: None,
    });
    ch.held.clear();
    ch.recent.clear();
    ch.resets += 1;
    let reset = Delivery::Reset {
        epoch,
        id: top,
        frame: frame.into(),
    };
    link::deliver(workers, &ch.counts, ch.id, &reset, wakes);
}

/// A subscriber's read came back: its replay is history after `since`, then what the node
/// delivered since the read was sent; it is registered at that exact point of the stream.
pub fn answer(
    workers: &Workers,
    ch: &mut Chan,
    channel: &str,
    asked: Asked,
    kept: Kept,
    wakes: &mut Wakes,
) {
    let now = Instant::now();
    // Read before the stream's last new epoch (the command connection answered late): the
    // entries are still the stream's, but the positions are the old epoch's.
    let stale = ch
        .stream
        .as_ref()
        .is_some_and(|s| s.former.as_ref() == Some(&kept.epoch));
    match ch.stream.as_ref() {
        None => {
            // The first read places the stream; what arrived before it and lies beyond it
            // (contiguous) is the start of the live stream.
            let mut top = kept.top;
            for m in ch.recent.iter() {
                if m.seq == top + 1 {
                    top = m.seq;
                }
            }
            ch.stream = Some(Stream {
                epoch: kept.epoch.clone(),
                top,
                live: 0,
                former: None,
                last: None,
            });
        }
        Some(s) if s.epoch != kept.epoch && !stale => {
            reset(workers, ch, channel, kept.epoch.clone(), kept.top, wakes)
        }
        Some(_) => {}
    }
    let top = ch.stream.as_ref().map_or(kept.top, |s| s.top);
    let mut replay: Vec<Arc<Msg>> = kept
        .entries
        .iter()
        .map(|e| Arc::new(e.encode_at(channel, now)))
        .collect();
    if asked.since.is_some() {
        // What the node delivered after the read's view, up to where it stands now.
        let read_top = replay.last().map_or(kept.top, |m| m.seq).max(kept.top);
        replay.extend(
            ch.recent
                .iter()
                .filter(|m| m.seq > read_top && m.seq <= top)
                .cloned(),
        );
    }
    let recovered = !stale && kept.recovered(asked.since.as_ref());
    if let Some(n) = ch.counts.get_mut(asked.worker) {
        *n += 1;
    }
    let epoch = match ch.stream.as_ref() {
        Some(s) if stale => s.epoch.clone(),
        _ => kept.epoch,
    };
    let sub = Subscription {
        channel_id: ch.id,
        epoch,
        last_seq: top.max(kept.top),
        recovered,
        replay,
    };
    link::answer(workers, asked.reply, Answered::Subscribed(Ok(sub)));
}

/// A fill read came back: the missed messages go out in order, then what was held; what
/// history no longer has is a reset. Returns whether held messages are still not contiguous
/// (another fill is needed).
pub fn fill(
    workers: &Workers,
    ch: &mut Chan,
    channel: &str,
    kept: Kept,
    wakes: &mut Wakes,
) -> bool {
    let now = Instant::now();
    let Some(top) = ch.stream.as_ref().map(|s| s.top) else {
        return false;
    };
    if ch.stream.as_ref().and_then(|s| s.former.as_ref()) == Some(&kept.epoch) {
        // Read before the stream's new epoch: nothing in it is news (see `answer`).
        return !ch.held.is_empty();
    }
    let same = ch.stream.as_ref().is_some_and(|s| s.epoch == kept.epoch);
    let first = kept.entries.first().map_or(kept.top + 1, |e| e.id);
    if !same || first > top + 1 && kept.top > top {
        let at = first.saturating_sub(1).min(kept.top);
        reset(workers, ch, channel, kept.epoch.clone(), at, wakes);
    }
    for e in &kept.entries {
        let next = ch.stream.as_ref().map_or(0, |s| s.top) + 1;
        if e.id == next {
            deliver(workers, ch, Arc::new(e.encode_at(channel, now)), wakes);
        }
    }
    let mut held = std::mem::take(&mut ch.held);
    held.sort_by_key(|m| m.seq);
    for m in held {
        let next = ch.stream.as_ref().map_or(0, |s| s.top) + 1;
        if m.seq == next {
            deliver(workers, ch, m, wakes);
        } else if m.seq > next {
            ch.held.push(m);
        }
    }
    !ch.held.is_empty()
}
