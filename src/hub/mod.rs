//! The hub: every channel's sequence numbers, history and presence, and the hand-off of each
//! publish to the workers that have subscribers.
//!
//! Channels live in shards, each behind its own lock. Whoever publishes takes the channel's
//! shard lock, assigns the next id, stores the message in history and queues it to each
//! interested worker *before releasing the lock*; so every worker's queue holds a channel's
//! messages in id order, and a subscribe (which reads history and registers the worker under
//! the same lock) splits the stream exactly: ids up to the one it saw come from history,
//! later ids arrive through the queue. That is what makes resume gap-free and duplicate-free.
//!
//! A publish is encoded once into shared frames (`Arc<[u8]>`); workers queue the same bytes on
//! every subscriber.

pub mod fanout;
pub mod session;

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mio::Waker;

use crate::codec::frame::{self, OpCode};
use crate::codec::protocol::{self, Data};

/// Lock shards for channels (and for the user table). A power of two well above the worker
/// count keeps two publishers on different channels from contending.
pub const SHARDS: usize = 64;

/// One published message, encoded once for every kind of subscriber.
#[derive(Debug)]
pub struct Msg {
    pub seq: u64,
    pub at: Instant,
    /// The `message` envelope as a complete server text frame.
    pub frame: Arc<[u8]>,
    /// Where the envelope JSON starts in `frame` (after the frame header).
    json_at: usize,
    /// The payload alone as a complete frame, for `format=raw` subscribers.
    pub raw_frame: Arc<[u8]>,
    /// Server-Sent Events `data:` lines (envelope, raw), built by the first worker with an
    /// SSE subscriber, then shared.
    sse: [OnceLock<Arc<[u8]>>; 2],
}

impl Msg {
    /// The `message` object as JSON text (for history replies).
    pub fn json(&self) -> &str {
        self.frame
            .get(self.json_at..)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("null")
    }

    /// The `data:` lines of this message as an SSE event (without its `id:` and the blank
    /// line that ends it): the JSON envelope, or with `raw` the payload itself (binary
    /// payloads base64-encoded).
    pub fn sse_data(&self, raw: bool) -> &Arc<[u8]> {
        self.sse[usize::from(raw)].get_or_init(|| {
            let mut out = Vec::new();
            if !raw {
                crate::transport::sse::write_data_lines(&mut out, self.json());
            } else {
                let (text, payload) = frame_payload(&self.raw_frame);
                match std::str::from_utf8(payload) {
                    Ok(t) if text => crate::transport::sse::write_data_lines(&mut out, t),
                    _ => {
                        use base64::Engine;
                        let b64 = base64::engine::general_purpose::STANDARD.encode(payload);
                        crate::transport::sse::write_data_lines(&mut out, &b64);
                    }
                }
            }
            out.into()
        })
    }
}

/// Whether a server frame is text, and its payload (server frames are unmasked).
fn frame_payload(frame: &[u8]) -> (bool, &[u8]) {
    let text = frame.first().is_some_and(|b| b & 0x0F == 0x1);
    let header = match frame.get(1).map(|b| b & 0x7F) {
        Some(126) => 4,
        Some(127) => 10,
        _ => 2,
    };
    (text, frame.get(header..).unwrap_or_default())
}

/// What a worker is handed for one of its channels.
#[derive(Debug, Clone)]
pub enum Delivery {
    Message(Arc<Msg>),
    /// A join/leave event frame, for subscribers that asked for presence events.
    Presence(Arc<[u8]>),
}

/// Work handed to a worker from other threads.
#[derive(Debug)]
pub enum Cmd {
    /// Stop accepting, close every connection with 1001, exit once they are gone or the
    /// shutdown timeout passes.
    Shutdown,
    Deliver {
        channel: u64,
        item: Delivery,
    },
}

/// How to reach a worker from another thread.
#[derive(Debug)]
pub struct WorkerLink {
    pub tx: Sender<Cmd>,
    pub waker: Arc<Waker>,
    /// Set by whoever queues work, cleared by the worker before it drains: one wake-up
    /// syscall per drain, not per message.
    pub wake_pending: AtomicBool,
    /// Deliveries queued and not yet drained (for metrics and bounds).
    pub queued: AtomicUsize,
}

impl WorkerLink {
    pub fn new(tx: Sender<Cmd>, waker: Arc<Waker>) -> Self {
        WorkerLink {
            tx,
            waker,
            wake_pending: AtomicBool::new(false),
            queued: AtomicUsize::new(0),
        }
    }

    pub fn send(&self, cmd: Cmd) {
        self.queued.fetch_add(1, Ordering::Relaxed);
        let _ = self.tx.send(cmd);
    }

    pub fn wake(&self) {
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct HubConfig {
    pub history_size: usize,
    pub history_ttl: Duration,
}

#[derive(Debug)]
struct Channel {
    id: u64,
    next_seq: u64,
    history: VecDeque<Arc<Msg>>,
    /// Subscribers per worker.
    subscribers: Vec<u32>,
    /// Present users and how many of their connections are subscribed.
    present: HashMap<Box<str>, u32>,
}

impl Channel {
    fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    fn has_subscribers(&self) -> bool {
        self.subscribers.iter().any(|&n| n > 0)
    }

    fn trim(&mut self, cfg: &HubConfig, now: Instant) {
        while self.history.len() > cfg.history_size {
            self.history.pop_front();
        }
        while self
            .history
            .front()
            .is_some_and(|m| now.duration_since(m.at) > cfg.history_ttl)
        {
            self.history.pop_front();
        }
    }

    /// Messages after `since` (at most `limit`), and whether they are all there are: false
    /// when `since` is older than the history kept, or newer than any id handed out (the
    /// server restarted, or the client is confused).
    fn after(
        &self,
        since: u64,
        limit: usize,
        cfg: &HubConfig,
        now: Instant,
    ) -> (bool, Vec<Arc<Msg>>) {
        let live = |m: &&Arc<Msg>| now.duration_since(m.at) <= cfg.history_ttl;
        let oldest_kept = self
            .history
            .iter()
            .find(live)
            .map_or(self.next_seq, |m| m.seq);
        let recovered = since <= self.last_seq() && since.saturating_add(1) >= oldest_kept;
        let from = if since > self.last_seq() { 0 } else { since };
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

/// Named users online and how many connections each has.
type UserCounts = HashMap<Box<str>, u32>;

/// Slots per shard remembering the last id of channels that were forgotten (see
/// [`Shard::retired`]): 64 × 16,384 slots of 8 bytes, allocated zeroed so untouched pages
/// cost no memory.
const RETIRED_SLOTS_PER_SHARD: usize = 16 * 1024;

#[derive(Debug)]
struct Shard {
    channels: HashMap<Box<str>, Channel>,
    /// A channel with no subscribers and no history is forgotten to bound memory, but its
    /// ids must never be handed out again (a client resuming with `since` would skip the
    /// new messages that reuse them). So the last id of a forgotten channel is kept here, in a
    /// slot chosen by the name's hash, and a channel created later starts after it. Two names
    /// sharing a slot only make the newer one start higher: ids never repeat, and stay
    /// consecutive while a channel lives.
    retired: Vec<u64>,
}

impl Shard {
    fn new() -> Self {
        Shard {
            channels: HashMap::new(),
            retired: vec![0; RETIRED_SLOTS_PER_SHARD],
        }
    }

    fn retired_slot(name: &str) -> usize {
        (hash(name) / SHARDS as u64) as usize % RETIRED_SLOTS_PER_SHARD
    }

    fn retire(retired: &mut [u64], name: &str, last_seq: u64) {
        if let Some(slot) = retired.get_mut(Self::retired_slot(name)) {
            *slot = (*slot).max(last_seq);
        }
    }
}

/// The result of a subscribe: where the live stream starts and what to replay before it.
#[derive(Debug)]
pub struct Subscription {
    pub channel_id: u64,
    /// Live deliveries with an id above this are for the new subscriber.
    pub last_seq: u64,
    pub recovered: bool,
    pub replay: Vec<Arc<Msg>>,
}

/// Counters read by metrics.
#[derive(Debug, Default)]
pub struct HubStats {
    pub publishes: AtomicU64,
}

#[derive(Debug)]
pub struct Hub {
    cfg: HubConfig,
    shards: Box<[Mutex<Shard>]>,
    users: Box<[Mutex<UserCounts>]>,
    workers: Vec<WorkerLink>,
    next_channel_id: AtomicU64,
    sweep_cursor: AtomicUsize,
    pub stats: HubStats,
}

fn hash(name: &str) -> u64 {
    let mut h = DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

fn shard_of(name: &str) -> usize {
    (hash(name) % SHARDS as u64) as usize
}

/// A poisoned lock means a thread panicked while holding it; the channel data is still
/// consistent enough to keep serving (every mutation is a few field updates), so go on.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hub {
    pub fn new(cfg: HubConfig, workers: Vec<WorkerLink>) -> Self {
        Hub {
            cfg,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::new())).collect(),
            users: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            workers,
            next_channel_id: AtomicU64::new(1),
            sweep_cursor: AtomicUsize::new(0),
            stats: HubStats::default(),
        }
    }

    pub fn workers(&self) -> &[WorkerLink] {
        &self.workers
    }

    /// The channel named `name` in its (locked) shard, created if needed (starting after
    /// any id a forgotten channel of that name handed out).
    fn channel<'s>(&self, shard: &'s mut Shard, name: &str) -> &'s mut Channel {
        let Shard { channels, retired } = shard;
        channels.entry(name.into()).or_insert_with(|| Channel {
            id: self.next_channel_id.fetch_add(1, Ordering::Relaxed),
            next_seq: retired.get(Shard::retired_slot(name)).copied().unwrap_or(0) + 1,
            history: VecDeque::new(),
            subscribers: vec![0; self.workers.len()],
            present: HashMap::new(),
        })
    }

    /// Publishes `data` on `channel` (a valid name); returns its id.
    pub fn publish(&self, channel: &str, data: &Data<'_>) -> u64 {
        let (raw, text) = data.raw();
        let mut raw_frame = Vec::with_capacity(raw.len() + frame::MAX_HEADER_LEN);
        frame::write_server_frame(
            &mut raw_frame,
            if text { OpCode::Text } else { OpCode::Binary },
            &raw,
        );
        let raw_frame: Arc<[u8]> = raw_frame.into();
        let now = Instant::now();
        let mut wake = [false; 64];
        let seq;
        {
            let mut shard = lock(&self.shards[shard_of(channel)]);
            let ch = self.channel(&mut shard, channel);
            seq = ch.next_seq;
            ch.next_seq += 1;
            let json = protocol::message_json(channel, seq, data);
            let mut env = Vec::with_capacity(json.len() + frame::MAX_HEADER_LEN);
            frame::write_server_frame(&mut env, OpCode::Text, json.as_bytes());
            let json_at = env.len() - json.len();
            let msg = Arc::new(Msg {
                seq,
                at: now,
                frame: env.into(),
                json_at,
                raw_frame,
                sse: Default::default(),
            });
            ch.history.push_back(msg.clone());
            ch.trim(&self.cfg, now);
            for (w, &n) in ch.subscribers.iter().enumerate() {
                if n > 0 {
                    if let Some(link) = self.workers.get(w) {
                        link.send(Cmd::Deliver {
                            channel: ch.id,
                            item: Delivery::Message(msg.clone()),
                        });
                        if let Some(flag) = wake.get_mut(w) {
                            *flag = true;
                        }
                    }
                }
            }
        }
        self.stats.publishes.fetch_add(1, Ordering::Relaxed);
        self.wake(&wake);
        seq
    }

    fn wake(&self, which: &[bool]) {
        for (w, link) in self.workers.iter().enumerate() {
            // Workers past the flag array (more than 64) are simply always woken.
            if which.get(w).copied().unwrap_or(true) {
                link.wake();
            }
        }
    }

    /// Registers a subscriber on `worker`; with `since`, also returns the messages after it.
    /// A `user` is added to the channel's presence (a join event goes out if it is new).
    pub fn subscribe(
        &self,
        channel: &str,
        worker: usize,
        since: Option<u64>,
        user: Option<&str>,
    ) -> Subscription {
        let now = Instant::now();
        let mut wake = [false; 64];
        let sub = {
            let mut shard = lock(&self.shards[shard_of(channel)]);
            let ch = self.channel(&mut shard, channel);
            if let Some(n) = ch.subscribers.get_mut(worker) {
                *n += 1;
            }
            let (recovered, replay) = match since {
                Some(since) => ch.after(since, usize::MAX, &self.cfg, now),
                None => (true, Vec::new()),
            };
            if let Some(user) = user {
                self.presence_change(ch, channel, user, true, &mut wake);
            }
            Subscription {
                channel_id: ch.id,
                last_seq: ch.last_seq(),
                recovered,
                replay,
            }
        };
        self.wake(&wake);
        sub
    }

    /// Removes a subscriber registered by [`Hub::subscribe`].
    pub fn unsubscribe(&self, channel: &str, worker: usize, user: Option<&str>) {
        let mut wake = [false; 64];
        {
            let mut shard = lock(&self.shards[shard_of(channel)]);
            let Some(ch) = shard.channels.get_mut(channel) else {
                return;
            };
            if let Some(n) = ch.subscribers.get_mut(worker) {
                *n = n.saturating_sub(1);
            }
            if let Some(user) = user {
                self.presence_change(ch, channel, user, false, &mut wake);
            }
            if !ch.has_subscribers() && ch.history.is_empty() {
                let last = ch.last_seq();
                shard.channels.remove(channel);
                Shard::retire(&mut shard.retired, channel, last);
            }
        }
        self.wake(&wake);
    }

    /// Counts a user's connection in or out of a channel; on the first in or last out,
    /// queues a join/leave event to the workers with subscribers (under the channel lock, so
    /// it is ordered with the channel's messages).
    fn presence_change(
        &self,
        ch: &mut Channel,
        channel: &str,
        user: &str,
        join: bool,
        wake: &mut [bool; 64],
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
        if !changed {
            return;
        }
        let json = protocol::presence_event_json(channel, user, join);
        let mut f = Vec::with_capacity(json.len() + 4);
        frame::write_server_frame(&mut f, OpCode::Text, json.as_bytes());
        let f: Arc<[u8]> = f.into();
        for (w, &n) in ch.subscribers.iter().enumerate() {
            if n > 0 {
                if let Some(link) = self.workers.get(w) {
                    link.send(Cmd::Deliver {
                        channel: ch.id,
                        item: Delivery::Presence(f.clone()),
                    });
                    if let Some(flag) = wake.get_mut(w) {
                        *flag = true;
                    }
                }
            }
        }
    }

    /// Users present in a channel, sorted.
    pub fn presence(&self, channel: &str) -> Vec<Box<str>> {
        let shard = lock(&self.shards[shard_of(channel)]);
        let mut users: Vec<Box<str>> = shard
            .channels
            .get(channel)
            .map_or_else(Vec::new, |ch| ch.present.keys().cloned().collect());
        users.sort();
        users
    }

    /// Messages after `since` (all kept if `None`), at most `limit`, and whether nothing
    /// between `since` and them was lost.
    pub fn history(
        &self,
        channel: &str,
        since: Option<u64>,
        limit: usize,
    ) -> (bool, Vec<Arc<Msg>>) {
        let shard = lock(&self.shards[shard_of(channel)]);
        match shard.channels.get(channel) {
            Some(ch) => {
                let (recovered, msgs) =
                    ch.after(since.unwrap_or(0), limit, &self.cfg, Instant::now());
                (since.is_none() || recovered, msgs)
            }
            // A channel never published to (or long idle): nothing was lost only if the
            // client had seen nothing either.
            None => (since.unwrap_or(0) == 0, Vec::new()),
        }
    }

    /// Counts a named user's connection (for the batch presence query).
    pub fn user_connected(&self, user: &str) {
        let mut users = lock(&self.users[shard_of(user)]);
        *users.entry(user.into()).or_insert(0) += 1;
    }

    pub fn user_disconnected(&self, user: &str) {
        let mut users = lock(&self.users[shard_of(user)]);
        if let Some(n) = users.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                users.remove(user);
            }
        }
    }

    pub fn user_online(&self, user: &str) -> bool {
        lock(&self.users[shard_of(user)]).contains_key(user)
    }

    /// Expires history and forgets idle channels in one shard per call (a full pass every
    /// `SHARDS` calls), so no call scans everything.
    pub fn sweep_step(&self) {
        let i = self.sweep_cursor.fetch_add(1, Ordering::Relaxed) % SHARDS;
        let now = Instant::now();
        let mut shard = lock(&self.shards[i]);
        let Shard { channels, retired } = &mut *shard;
        channels.retain(|name, ch| {
            ch.trim(&self.cfg, now);
            let keep = ch.has_subscribers() || !ch.history.is_empty();
            if !keep {
                Shard::retire(retired, name, ch.last_seq());
            }
            keep
        });
        if shard.channels.capacity() > 64 && shard.channels.len() < shard.channels.capacity() / 4 {
            shard.channels.shrink_to_fit();
        }
    }

    /// Messages held in history across all channels (for metrics; takes every lock briefly).
    pub fn history_len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                lock(s)
                    .channels
                    .values()
                    .map(|c| c.history.len())
                    .sum::<usize>()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::Receiver;
    use mio::{Poll, Token};

    fn hub(workers: usize, history_size: usize) -> (Hub, Vec<Receiver<Cmd>>, Vec<Poll>) {
        let mut links = Vec::new();
        let mut rxs = Vec::new();
        let mut polls = Vec::new();
        for _ in 0..workers {
            let poll = Poll::new().expect("poll");
            let waker = Arc::new(Waker::new(poll.registry(), Token(0)).expect("waker"));
            let (tx, rx) = crossbeam_channel::unbounded();
            links.push(WorkerLink::new(tx, waker));
            rxs.push(rx);
            polls.push(poll);
        }
        (
            Hub::new(
                HubConfig {
                    history_size,
                    history_ttl: Duration::from_secs(300),
                },
                links,
            ),
            rxs,
            polls,
        )
    }

    fn seqs(rx: &Receiver<Cmd>) -> Vec<u64> {
        rx.try_iter()
            .filter_map(|c| match c {
                Cmd::Deliver {
                    item: Delivery::Message(m),
                    ..
                } => Some(m.seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn publish_goes_only_to_workers_with_subscribers_in_order() {
        let (hub, rxs, _polls) = hub(2, 10);
        hub.publish("c", &Data::Text("before"));
        let sub = hub.subscribe("c", 1, None, None);
        assert_eq!(sub.last_seq, 1);
        for i in 0..5 {
            hub.publish("c", &Data::Json(&i.to_string()));
        }
        assert!(seqs(&rxs[0]).is_empty());
        assert_eq!(seqs(&rxs[1]), vec![2, 3, 4, 5, 6]);
    }

    #[test]
    fn resume_splits_history_and_live_exactly() {
        let (hub, rxs, _polls) = hub(1, 100);
        for _ in 0..10 {
            hub.publish("c", &Data::Text("x"));
        }
        let sub = hub.subscribe("c", 0, Some(4), None);
        assert!(sub.recovered);
        assert_eq!(
            sub.replay.iter().map(|m| m.seq).collect::<Vec<_>>(),
            (5..=10).collect::<Vec<_>>()
        );
        hub.publish("c", &Data::Text("y"));
        let live: Vec<u64> = seqs(&rxs[0])
            .into_iter()
            .filter(|&s| s > sub.last_seq)
            .collect();
        assert_eq!(live, vec![11]);
    }

    #[test]
    fn resume_past_the_buffer_is_not_recovered() {
        let (hub, _rxs, _polls) = hub(1, 3);
        for _ in 0..10 {
            hub.publish("c", &Data::Text("x"));
        }
        let sub = hub.subscribe("c", 0, Some(2), None);
        assert!(!sub.recovered);
        assert_eq!(
            sub.replay.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![8, 9, 10]
        );
        let sub = hub.subscribe("c", 0, Some(7), None);
        assert!(sub.recovered, "7 is just before the oldest kept (8)");
        let sub = hub.subscribe("c", 0, Some(99), None);
        assert!(!sub.recovered, "an id never handed out");
        let (recovered, msgs) = hub.history("c", Some(8), 1);
        assert!(recovered);
        assert_eq!(msgs.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![9]);
    }

    #[test]
    fn history_ttl_hides_old_messages() {
        let (mut hub, _rxs, _polls) = hub(1, 10);
        hub.cfg.history_ttl = Duration::from_millis(0);
        hub.publish("c", &Data::Text("x"));
        std::thread::sleep(Duration::from_millis(5));
        let (recovered, msgs) = hub.history("c", Some(0), 10);
        assert!(msgs.is_empty());
        assert!(!recovered);
    }

    #[test]
    fn envelope_and_raw_frames() {
        let (hub, rxs, _polls) = hub(1, 10);
        hub.subscribe("c", 0, None, None);
        hub.publish("c", &Data::Json("\"hi\""));
        let Ok(Cmd::Deliver {
            item: Delivery::Message(m),
            ..
        }) = rxs[0].try_recv()
        else {
            panic!()
        };
        assert_eq!(
            m.json(),
            r#"{"type":"message","channel":"c","id":1,"data":"hi"}"#
        );
        assert_eq!(&m.frame[..2], &[0x81, m.json().len() as u8]);
        assert_eq!(&*m.raw_frame, &[0x81, 2, b'h', b'i']);
    }

    #[test]
    fn presence_counts_connections_and_emits_join_leave_once() {
        let (hub, rxs, _polls) = hub(1, 10);
        hub.subscribe("c", 0, None, Some("alice"));
        hub.subscribe("c", 0, None, Some("alice"));
        hub.subscribe("c", 0, None, Some("bob"));
        assert_eq!(hub.presence("c"), vec!["alice".into(), "bob".into()]);
        hub.unsubscribe("c", 0, Some("alice"));
        assert_eq!(hub.presence("c").len(), 2);
        hub.unsubscribe("c", 0, Some("alice"));
        assert_eq!(hub.presence("c"), vec![Box::<str>::from("bob")]);
        let events: Vec<String> = rxs[0]
            .try_iter()
            .filter_map(|c| match c {
                Cmd::Deliver {
                    item: Delivery::Presence(f),
                    ..
                } => Some(String::from_utf8_lossy(&f[2..]).into_owned()),
                _ => None,
            })
            .collect();
        assert_eq!(events.len(), 3, "{events:?}");
        assert!(events[0].contains("\"join\"") && events[0].contains("alice"));
        assert!(events[2].contains("\"leave\"") && events[2].contains("alice"));
    }

    #[test]
    fn a_forgotten_channel_never_hands_out_an_id_again() {
        let (hub, _rxs, _polls) = hub(1, 0);
        hub.subscribe("c", 0, None, None);
        assert_eq!(hub.publish("c", &Data::Text("a")), 1);
        assert_eq!(hub.publish("c", &Data::Text("b")), 2);
        hub.unsubscribe("c", 0, None); // no subscribers, no history: forgotten
        assert_eq!(lock(&hub.shards[shard_of("c")]).channels.len(), 0);
        assert_eq!(
            hub.publish("c", &Data::Text("c")),
            3,
            "ids continue after the last one"
        );
        let sub = hub.subscribe("c", 0, Some(2), None);
        assert!(!sub.recovered, "id 3 was published and not kept");
        hub.unsubscribe("c", 0, None);
        // The same through the janitor's sweep: a publish re-creates "c" with no subscribers
        // and (history size 0) no history, so a full sweep forgets it.
        assert_eq!(hub.publish("c", &Data::Text("d")), 4);
        assert_eq!(lock(&hub.shards[shard_of("c")]).channels.len(), 1);
        for _ in 0..SHARDS {
            hub.sweep_step();
        }
        assert_eq!(lock(&hub.shards[shard_of("c")]).channels.len(), 0);
        assert_eq!(hub.publish("c", &Data::Text("e")), 5);
    }

    #[test]
    fn idle_channels_are_forgotten() {
        let (hub, _rxs, _polls) = hub(1, 10);
        hub.subscribe("gone", 0, None, None);
        hub.unsubscribe("gone", 0, None);
        assert_eq!(lock(&hub.shards[shard_of("gone")]).channels.len(), 0);
        hub.user_connected("u");
        hub.user_connected("u");
        hub.user_disconnected("u");
        assert!(hub.user_online("u"));
        hub.user_disconnected("u");
        assert!(!hub.user_online("u"));
    }
}
