//! The embedded engine: the whole channel space in this process.
//!
//! Channels live in shards, each behind its own lock. Whoever publishes takes the channel's
//! shard lock, assigns the next id, stores the message in history and queues it to each
//! interested worker *before releasing the lock*; so every worker's mailbox holds a
//! channel's messages in id order, and a subscribe (which reads history and registers the
//! worker under the same lock) splits the stream exactly: ids up to the one it saw come from
//! history, later ids arrive through the mailbox. Every answer is given at once.
//!
//! All history together is bounded in bytes, and live channels in number (`table`): past
//! the budget the oldest history is evicted, a channel over the count is refused.
//!
//! The epoch is one per process: ids restart with the process, and so does the epoch.
//!
//! With `defer` (a test seam, `--defer-answers`), every answer goes through the asking
//! worker's mailbox instead, as a remote engine's does; a subscription's answer is queued
//! under the channel's lock, at its exact place in the channel's stream.

pub mod channel;
pub mod cost;
pub mod presence;
pub mod shard;
pub mod table;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::codec::protocol::Data;
use crate::hub::engine::{
    Answer, Answered, Engine, EngineError, EngineStats, Epoch, Health, History, Published, ReplyTo,
    Since, SubscribeReq, Subscription, UserInfo,
};
use crate::hub::link::{self, Cmd, Delivery, Wakes, Workers};
use crate::hub::msg::Msg;
use channel::{Channel, HistoryLimits};
use presence::Users;
use shard::{hash, lock, shard_of, SHARDS};
use table::{Bounds, Shard};

#[derive(Debug)]
pub struct MemoryEngine {
    limits: HistoryLimits,
    bounds: Bounds,
    epoch: Epoch,
    shards: Box<[Mutex<Shard>]>,
    users: Users,
    workers: Workers,
    next_channel_id: AtomicU64,
    sweep_cursor: AtomicUsize,
    /// Answer through the mailbox (see the module doc).
    defer: bool,
    /// This node's name (the only node of its channel space).
    node: Box<str>,
}

impl MemoryEngine {
    pub fn new(limits: HistoryLimits, workers: Workers, defer: bool, node: &str) -> Self {
        MemoryEngine {
            limits,
            bounds: Bounds::new(limits.max_bytes, limits.max_channels),
            epoch: Epoch::random(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            users: Users::new(),
            workers,
            next_channel_id: AtomicU64::new(1),
            sweep_cursor: AtomicUsize::new(0),
            defer,
            node: node.into(),
        }
    }

    /// An answer now, or (deferred) in the asking worker's mailbox.
    fn answer<T>(
        &self,
        reply: ReplyTo,
        result: Result<T, EngineError>,
        wrap: fn(Result<T, EngineError>) -> Answered,
    ) -> Answer<T> {
        if !self.defer {
            return Answer::Now(result);
        }
        link::answer(&self.workers, reply, wrap(result));
        Answer::Later
    }

    fn shard(&self, name: &str) -> MutexGuard<'_, Shard> {
        // `shard_of` is below SHARDS, the length of `shards`.
        lock(&self.shards[shard_of(name)])
    }

    /// The channel named `name` in its (locked) shard, created if `--max-channels` allows.
    fn channel<'s>(
        &self,
        shard: &'s mut Shard,
        name: &str,
    ) -> Result<&'s mut Channel, EngineError> {
        let new_id = || self.next_channel_id.fetch_add(1, Ordering::Relaxed);
        shard.channel(&self.bounds, name, new_id, self.workers.len())
    }
}

impl Engine for MemoryEngine {
    fn publish(&self, channel: &str, data: &Data<'_>, reply: ReplyTo) -> Answer<Published> {
        let now = Instant::now();
        let mut wakes = Wakes::default();
        let i = shard_of(channel);
        let seq = {
            let mut shard = lock(&self.shards[i]);
            let ch = match self.channel(&mut shard, channel) {
                Ok(ch) => ch,
                Err(e) => return self.answer(reply, Err(e), Answered::Published),
            };
            let seq = ch.next_seq;
            ch.next_seq += 1;
            let msg = Arc::new(Msg::encode(channel, seq, data, now));
            let item = Delivery::Message(msg.clone());
            link::deliver(&self.workers, &ch.subscribers, ch.id, &item, &mut wakes);
            shard.keep(&self.bounds, channel, msg, |ch| ch.trim(&self.limits, now));
            shard.skip_gone(&self.bounds);
            self.bounds.restamp(i, &shard);
            seq
        };
        wakes.wake(&self.workers);
        self.bounds.enforce(&self.shards);
        let published = Published {
            id: seq,
            epoch: self.epoch.clone(),
        };
        self.answer(reply, Ok(published), Answered::Published)
    }

    fn subscribe(&self, req: SubscribeReq<'_>, reply: ReplyTo) -> Answer<Subscription> {
        let now = Instant::now();
        let mut wakes = Wakes::default();
        let sub = {
            let mut shard = self.shard(req.channel);
            let ch = match self.channel(&mut shard, req.channel) {
                Ok(ch) => ch,
                Err(e) => return self.answer(reply, Err(e), Answered::Subscribed),
            };
            if let Some(n) = ch.subscribers.get_mut(req.worker) {
                *n += 1;
            }
            let (recovered, replay) = match req.since {
                Some(since) => ch.after(Some(since), &self.epoch, usize::MAX, &self.limits, now),
                None => (true, Vec::new()),
            };
            if let Some(user) = req.user {
                presence::change(&self.workers, ch, req.channel, user, true, &mut wakes);
            }
            let sub = Subscription {
                channel_id: ch.id,
                epoch: self.epoch.clone(),
                last_seq: ch.last_seq(),
                recovered,
                replay,
            };
            // Deferred, the answer must be queued before the lock lets the next publish in.
            self.answer(reply, Ok(sub), Answered::Subscribed)
        };
        wakes.wake(&self.workers);
        sub
    }

    fn unsubscribe(&self, channel: &str, worker: usize, user: Option<&str>) {
        let mut wakes = Wakes::default();
        {
            let mut shard = self.shard(channel);
            let Some(ch) = shard.channels.get_mut(channel) else {
                return;
            };
            if let Some(n) = ch.subscribers.get_mut(worker) {
                *n = n.saturating_sub(1);
            }
            if let Some(user) = user {
                presence::change(&self.workers, ch, channel, user, false, &mut wakes);
            }
            shard.forget_if_idle(&self.bounds, channel);
        }
        wakes.wake(&self.workers);
    }

    fn history(
        &self,
        channel: &str,
        since: Option<&Since>,
        limit: usize,
        reply: ReplyTo,
    ) -> Answer<History> {
        let shard = self.shard(channel);
        let (recovered, messages) = match shard.channels.get(channel) {
            Some(ch) => ch.after(since, &self.epoch, limit, &self.limits, Instant::now()),
            // A channel never published to, or forgotten: nothing was lost only if the
            // client had seen its last id (0: nothing), as a subscribe would find.
            None => {
                let last = shard.retired.last(hash(channel));
                (since.is_none_or(|s| s.id == last), Vec::new())
            }
        };
        let history = History {
            epoch: self.epoch.clone(),
            recovered,
            messages,
        };
        self.answer(reply, Ok(history), Answered::History)
    }

    fn presence(&self, channel: &str, reply: ReplyTo) -> Answer<Vec<Box<str>>> {
        let members = self
            .shard(channel)
            .channels
            .get(channel)
            .map_or_else(Vec::new, presence::members);
        self.answer(reply, Ok(members), Answered::Presence)
    }

    fn users_online(&self, users: &[&str], reply: ReplyTo) -> Answer<Vec<bool>> {
        let online = users.iter().map(|u| self.users.online(u)).collect();
        self.answer(reply, Ok(online), Answered::Users)
    }

    fn user_connected(&self, user: &str) {
        self.users.connected(user);
    }

    fn user_disconnected(&self, user: &str) {
        self.users.disconnected(user);
    }

    fn send_to_user(&self, user: &str, data: &Data<'_>, reply: ReplyTo) -> Answer<usize> {
        let online = self.users.online(user);
        if online {
            let (user, msg): (Arc<str>, _) = (user.into(), Arc::new(Msg::direct(data)));
            link::broadcast(&self.workers, || Cmd::Direct {
                user: user.clone(),
                msg: msg.clone(),
            });
        }
        self.answer(reply, Ok(usize::from(online)), Answered::Sent)
    }

    fn disconnect_user(&self, user: &str, reply: ReplyTo) -> Answer<usize> {
        let online = self.users.online(user);
        if online {
            let user: Arc<str> = user.into();
            link::broadcast(&self.workers, || Cmd::Disconnect { user: user.clone() });
        }
        self.answer(reply, Ok(usize::from(online)), Answered::Sent)
    }

    fn user_info(&self, user: &str, reply: ReplyTo) -> Answer<UserInfo> {
        let n = self.users.count(user);
        let info = UserInfo {
            nodes: if n > 0 {
                vec![(self.node.clone(), u64::from(n))]
            } else {
                Vec::new()
            },
        };
        self.answer(reply, Ok(info), Answered::User)
    }

    /// Expires history and forgets idle channels in one shard per call (a full pass every
    /// `SHARDS` calls), so no call scans everything.
    fn maintain(&self) {
        let i = self.sweep_cursor.fetch_add(1, Ordering::Relaxed) % SHARDS;
        let now = Instant::now();
        let Some(shard) = self.shards.get(i) else {
            return;
        };
        let mut shard = lock(shard);
        shard.sweep(&self.bounds, |ch| ch.trim(&self.limits, now));
        self.bounds.restamp(i, &shard);
    }

    fn history_len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).history_len()).sum()
    }

    fn health(&self) -> Health {
        Ok(())
    }

    /// No links (everything is in this process): the history budget and the channel count.
    fn stats(&self) -> EngineStats {
        let c = self.bounds.counts();
        EngineStats {
            channels: c.live as u64,
            channels_refused: c.refused,
            history_bytes: c.bytes as u64,
            history_max_bytes: self.bounds.max_bytes as u64,
            history_evicted: c.evicted,
            ..EngineStats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::link::WorkerLink;
    use crossbeam_channel::Receiver;
    use mio::{Poll, Token, Waker};
    use std::time::Duration;

    const R: ReplyTo = ReplyTo {
        worker: 0,
        key: 0,
        gen: 0,
        ticket: 0,
    };

    fn engine(workers: usize, size: usize) -> (MemoryEngine, Vec<Receiver<Cmd>>, Vec<Poll>) {
        engine_bounded(workers, size, usize::MAX, usize::MAX)
    }

    fn engine_bounded(
        workers: usize,
        size: usize,
        max_bytes: usize,
        max_channels: usize,
    ) -> (MemoryEngine, Vec<Receiver<Cmd>>, Vec<Poll>) {
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
        let limits = HistoryLimits {
            size,
            ttl: Duration::from_secs(300),
            max_bytes,
            max_channels,
        };
        (
            MemoryEngine::new(limits, links.into(), false, "n1"),
            rxs,
            polls,
        )
    }

    fn now<T>(a: Answer<T>) -> T {
        match a {
            Answer::Now(Ok(t)) => t,
            other => panic!("expected an answer now, got {:?}", other.is_later()),
        }
    }

    impl<T> Answer<T> {
        fn is_later(&self) -> bool {
            matches!(self, Answer::Later)
        }
    }

    fn publish(e: &MemoryEngine, ch: &str, text: &str) -> u64 {
        now(e.publish(ch, &Data::Text(text), R)).id
    }

    fn subscribe(
        e: &MemoryEngine,
        ch: &str,
        w: usize,
        since: Option<u64>,
        user: Option<&str>,
    ) -> Subscription {
        let since = since.map(Since::id);
        let req = SubscribeReq {
            channel: ch,
            worker: w,
            since: since.as_ref(),
            user,
        };
        now(e.subscribe(req, R))
    }

    fn history(e: &MemoryEngine, ch: &str, since: Option<u64>, limit: usize) -> (bool, Vec<u64>) {
        let since = since.map(Since::id);
        let h = now(e.history(ch, since.as_ref(), limit, R));
        (h.recovered, h.messages.iter().map(|m| m.seq).collect())
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

    fn channels_in_shard(e: &MemoryEngine, name: &str) -> usize {
        lock(&e.shards[shard_of(name)]).channels.len()
    }

    #[test]
    fn publish_goes_only_to_workers_with_subscribers_in_order() {
        let (e, rxs, _polls) = engine(2, 10);
        publish(&e, "c", "before");
        let sub = subscribe(&e, "c", 1, None, None);
        assert_eq!(sub.last_seq, 1);
        for i in 0..5 {
            now(e.publish("c", &Data::Json(&i.to_string()), R));
        }
        assert!(seqs(&rxs[0]).is_empty());
        assert_eq!(seqs(&rxs[1]), vec![2, 3, 4, 5, 6]);
    }

    #[test]
    fn resume_splits_history_and_live_exactly() {
        let (e, rxs, _polls) = engine(1, 100);
        for _ in 0..10 {
            publish(&e, "c", "x");
        }
        let sub = subscribe(&e, "c", 0, Some(4), None);
        assert!(sub.recovered);
        assert_eq!(
            sub.replay.iter().map(|m| m.seq).collect::<Vec<_>>(),
            (5..=10).collect::<Vec<_>>()
        );
        publish(&e, "c", "y");
        let live: Vec<u64> = seqs(&rxs[0])
            .into_iter()
            .filter(|&s| s > sub.last_seq)
            .collect();
        assert_eq!(live, vec![11]);
    }

    #[test]
    fn resume_past_the_buffer_is_not_recovered() {
        let (e, _rxs, _polls) = engine(1, 3);
        for _ in 0..10 {
            publish(&e, "c", "x");
        }
        let sub = subscribe(&e, "c", 0, Some(2), None);
        assert!(!sub.recovered);
        assert_eq!(
            sub.replay.iter().map(|m| m.seq).collect::<Vec<_>>(),
            vec![8, 9, 10]
        );
        let sub = subscribe(&e, "c", 0, Some(7), None);
        assert!(sub.recovered, "7 is just before the oldest kept (8)");
        let sub = subscribe(&e, "c", 0, Some(99), None);
        assert!(!sub.recovered, "an id never handed out");
        assert_eq!(history(&e, "c", Some(8), 1), (true, vec![9]));
    }

    #[test]
    fn a_position_from_another_epoch_is_not_recovered() {
        let (e, _rxs, _polls) = engine(1, 10);
        for _ in 0..3 {
            publish(&e, "c", "x");
        }
        let other = Since {
            id: 1,
            epoch: Epoch::parse("elsewhere"),
        };
        let h = now(e.history("c", Some(&other), 10, R));
        assert!(!h.recovered);
        assert_eq!(h.messages.len(), 3, "what is kept is still replayed");
        let ours = Since {
            id: 1,
            epoch: Some(h.epoch.clone()),
        };
        let h = now(e.history("c", Some(&ours), 10, R));
        assert!(h.recovered);
        assert_eq!(h.messages.len(), 2);
    }

    #[test]
    fn history_ttl_hides_old_messages() {
        let (mut e, _rxs, _polls) = engine(1, 10);
        e.limits.ttl = Duration::from_millis(0);
        publish(&e, "c", "x");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(history(&e, "c", Some(0), 10), (false, vec![]));
    }

    #[test]
    fn presence_counts_connections_and_emits_join_leave_once() {
        let (e, rxs, _polls) = engine(1, 10);
        subscribe(&e, "c", 0, None, Some("alice"));
        subscribe(&e, "c", 0, None, Some("alice"));
        subscribe(&e, "c", 0, None, Some("bob"));
        assert_eq!(now(e.presence("c", R)), vec!["alice".into(), "bob".into()]);
        e.unsubscribe("c", 0, Some("alice"));
        assert_eq!(now(e.presence("c", R)).len(), 2);
        e.unsubscribe("c", 0, Some("alice"));
        assert_eq!(now(e.presence("c", R)), vec![Box::<str>::from("bob")]);
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
        let (e, _rxs, _polls) = engine(1, 0);
        subscribe(&e, "c", 0, None, None);
        assert_eq!(publish(&e, "c", "a"), 1);
        assert_eq!(publish(&e, "c", "b"), 2);
        e.unsubscribe("c", 0, None); // no subscribers, no history: forgotten
        assert_eq!(channels_in_shard(&e, "c"), 0);
        assert_eq!(publish(&e, "c", "c"), 3, "ids continue after the last one");
        let sub = subscribe(&e, "c", 0, Some(2), None);
        assert!(!sub.recovered, "id 3 was published and not kept");
        e.unsubscribe("c", 0, None);
        // The same through the janitor's sweep: a publish re-creates "c" with no subscribers
        // and (history size 0) no history, so a full sweep forgets it.
        assert_eq!(publish(&e, "c", "d"), 4);
        assert_eq!(channels_in_shard(&e, "c"), 1);
        for _ in 0..SHARDS {
            e.maintain();
        }
        assert_eq!(channels_in_shard(&e, "c"), 0);
        assert_eq!(publish(&e, "c", "e"), 5);
    }

    #[test]
    fn a_deferred_subscription_answer_sits_at_its_place_in_the_stream() {
        let (mut e, rxs, _polls) = engine(1, 10);
        e.defer = true;
        subscribe_later(&e, "c"); // a first subscriber, so deliveries flow to worker 0
        publish_later(&e, "c");
        subscribe_later(&e, "c");
        publish_later(&e, "c");
        let order: Vec<String> = rxs[0]
            .try_iter()
            .map(|c| match c {
                Cmd::Deliver {
                    item: Delivery::Message(m),
                    ..
                } => format!("message {}", m.seq),
                Cmd::Answer {
                    answer: Answered::Subscribed(Ok(s)),
                    ..
                } => format!("subscribed at {}", s.last_seq),
                Cmd::Answer {
                    answer: Answered::Published(Ok(p)),
                    ..
                } => format!("published {}", p.id),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            order,
            [
                "subscribed at 0",
                "message 1",
                "published 1",
                "subscribed at 1",
                "message 2",
                "published 2"
            ]
        );
    }

    fn subscribe_later(e: &MemoryEngine, ch: &str) {
        let req = SubscribeReq {
            channel: ch,
            worker: 0,
            since: None,
            user: None,
        };
        assert!(e.subscribe(req, R).is_later());
    }

    fn publish_later(e: &MemoryEngine, ch: &str) {
        assert!(e.publish(ch, &Data::Text("x"), R).is_later());
    }

    #[test]
    fn idle_channels_are_forgotten_and_users_counted() {
        let (e, _rxs, _polls) = engine(1, 10);
        subscribe(&e, "gone", 0, None, None);
        e.unsubscribe("gone", 0, None);
        assert_eq!(channels_in_shard(&e, "gone"), 0);
        e.user_connected("u");
        e.user_connected("u");
        e.user_disconnected("u");
        assert_eq!(now(e.users_online(&["u", "v"], R)), vec![true, false]);
        e.user_disconnected("u");
        assert_eq!(now(e.users_online(&["u"], R)), vec![false]);
    }

    fn sweep_all(e: &MemoryEngine) {
        for _ in 0..SHARDS {
            e.maintain();
        }
    }

    #[test]
    fn the_budget_evicts_the_oldest_history_and_counts_it() {
        let (e, _rxs, _polls) = engine_bounded(1, 100, 64 * 1024, usize::MAX);
        let body = "x".repeat(100);
        for i in 0..2000 {
            publish(&e, &format!("ch{i}"), &body);
        }
        let s = e.stats();
        assert!(s.history_bytes <= 64 * 1024, "{s:?}");
        assert!(s.history_evicted > 1000, "{s:?}");
        assert_eq!(s.history_max_bytes, 64 * 1024);
        // The newest channels are kept, the oldest evicted (and, with no subscribers,
        // forgotten): the count follows.
        assert_eq!(history(&e, "ch1999", None, 10), (true, vec![1]));
        assert_eq!(history(&e, "ch0", Some(0), 10), (false, vec![]));
        assert_eq!(s.channels as usize, e.history_len());
        // A forgotten channel's ids go on.
        assert_eq!(publish(&e, "ch0", "again"), 2);
    }

    #[test]
    fn a_resume_from_an_evicted_id_is_not_recovered() {
        let (e, _rxs, _polls) = engine_bounded(1, 1000, 32 * 1024, usize::MAX);
        subscribe(&e, "kept", 0, None, None);
        for _ in 0..10 {
            publish(&e, "kept", "x");
        }
        let body = "y".repeat(200);
        for i in 0..500 {
            publish(&e, &format!("flood{i}"), &body);
        }
        assert!(e.stats().history_evicted >= 10);
        let sub = subscribe(&e, "kept", 0, Some(3), None);
        assert!(!sub.recovered, "ids 4..=10 were evicted");
        assert_eq!(sub.last_seq, 10, "the channel (subscribed) lives on");
        assert_eq!(publish(&e, "kept", "z"), 11);
        let sub = subscribe(&e, "kept", 0, Some(10), None);
        assert!(sub.recovered);
        assert_eq!(sub.replay.iter().map(|m| m.seq).collect::<Vec<_>>(), [11]);
    }

    #[test]
    fn the_counter_returns_to_zero_when_history_is_gone() {
        let (mut e, _rxs, _polls) = engine_bounded(2, 3, usize::MAX, usize::MAX);
        subscribe(&e, "a", 1, None, None);
        for i in 0..50 {
            publish(&e, &format!("c{}", i % 7), "some payload");
            publish(&e, "a", "x");
        }
        let s = e.stats();
        assert!(s.history_bytes > 0);
        assert_eq!(s.channels, 8);
        e.limits.ttl = Duration::ZERO;
        std::thread::sleep(Duration::from_millis(2));
        sweep_all(&e);
        let s = e.stats();
        assert_eq!((s.history_bytes, s.channels), (0, 1), "{s:?}");
        e.unsubscribe("a", 1, None);
        assert_eq!(e.stats().channels, 0);
        assert_eq!(
            e.stats().history_evicted,
            0,
            "ttl and size trims are not evictions"
        );
    }

    #[test]
    fn new_channels_past_the_bound_are_refused_until_some_are_forgotten() {
        let (mut e, _rxs, _polls) = engine_bounded(1, 10, usize::MAX, 2);
        publish(&e, "a", "x");
        subscribe(&e, "b", 0, None, None);
        let refused =
            |a: Answer<Published>| matches!(a, Answer::Now(Err(EngineError::TooManyChannels)));
        assert!(refused(e.publish("c", &Data::Text("x"), R)));
        let req = SubscribeReq {
            channel: "c",
            worker: 0,
            since: None,
            user: None,
        };
        assert!(matches!(
            e.subscribe(req, R),
            Answer::Now(Err(EngineError::TooManyChannels))
        ));
        // Existing channels keep working; reads of unknown ones create nothing.
        assert_eq!(publish(&e, "a", "y"), 2);
        assert_eq!(publish(&e, "b", "y"), 1);
        assert_eq!(history(&e, "d", None, 10), (true, vec![]));
        assert!(now(e.presence("d", R)).is_empty());
        let s = e.stats();
        assert_eq!((s.channels, s.channels_refused), (2, 2));
        // Once unsubscribed and their history expired, both are forgotten.
        e.unsubscribe("b", 0, None);
        e.limits.ttl = Duration::ZERO;
        std::thread::sleep(Duration::from_millis(2));
        sweep_all(&e);
        assert_eq!(e.stats().channels, 0);
        assert_eq!(publish(&e, "c", "x"), 1);
        assert_eq!(publish(&e, "a", "x"), 3, "ids of a forgotten channel go on");
    }
}
