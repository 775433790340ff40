//! The Redis thread: every Redis connection of the node (per shard, one for commands and one
//! for the sharded Pub/Sub subscriptions), all non-blocking on one poll, and the node's
//! channel table ([`Node`]). Workers hand it requests through a queue and its waker; answers
//! and deliveries go back through the workers' mailboxes. Nothing here ever blocks a worker,
//! and a slow or dead Redis only makes requests fail fast with `unavailable`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::{Events, Poll, Token};

use crate::config::RedisUrl;
use crate::hub::engine::EngineStats;
use crate::hub::link::Workers;
use crate::hub::redis::cmds::Cmds;
use crate::hub::redis::conn::{Conn, Event};
use crate::hub::redis::node::Node;
use crate::hub::redis::presence;
use crate::hub::redis::request::{HealthState, Request, Settings};
use crate::hub::redis::scripts::{self, Shas};
use crate::hub::redis::shard::{shard_of, Expect, Shard};
use crate::hub::redis::users::Users;
use crate::hub::redis::wire;
use crate::{info, warn};

/// How often the node compares where its channels stand with Redis (a message lost at the
/// end of a stream shows no jump until the next publish).
pub const TOP_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// Channels per SSUBSCRIBE when (re)subscribing many.
const SUBSCRIBE_BATCH: usize = 128;
/// The waker's token; connection tokens are 2 × shard (+1 for its subscription connection).
pub const WAKER: Token = Token(usize::MAX);

pub struct Thread {
    pub(super) poll: Poll,
    pub(super) rx: Receiver<Request>,
    /// Cleared before each drain of `rx` (see `RedisEngine::ask`).
    pub(super) woken: Arc<AtomicBool>,
    pub(super) shards: Vec<Shard>,
    pub(super) node: Node,
    pub(super) workers: Workers,
    pub(super) settings: Settings,
    pub(super) health: HealthState,
    /// This node's inbox channel (direct messages, disconnects).
    pub(super) inbox: String,
    pub(super) shas: Shas,
    pub(super) users: Users,
    pub(super) next_check: Instant,
    pub(super) next_refresh: Instant,
    /// When the channels' expired presence is next swept (leave events for dead nodes' users).
    pub(super) next_sweep: Instant,
    /// Counted here, published to the report with the health.
    pub(super) stats: EngineStats,
}

impl Thread {
    pub fn new(
        urls: &[RedisUrl],
        rx: Receiver<Request>,
        poll: Poll,
        workers: Workers,
        settings: Settings,
        health: HealthState,
    ) -> std::io::Result<Thread> {
        let mut shards = Vec::with_capacity(urls.len());
        for (i, url) in urls.iter().enumerate() {
            shards.push(Shard {
                cmd: Conn::new(url, Token(2 * i))?,
                sub: Conn::new(url, Token(2 * i + 1))?,
                expect: VecDeque::new(),
                to_subscribe: Vec::new(),
                to_unsubscribe: Vec::new(),
                reloading: false,
            });
        }
        Ok(Thread {
            poll,
            rx,
            woken: Arc::new(AtomicBool::new(false)),
            shards,
            node: Node::new(
                workers.clone(),
                settings.history_size,
                settings.max_channels,
            ),
            workers,
            inbox: presence::inbox(&settings.node),
            users: Users::new(&settings.node, settings.presence_ttl),
            settings,
            health,
            shas: Shas::new(),
            next_check: Instant::now() + TOP_CHECK_INTERVAL,
            next_refresh: Instant::now(),
            next_sweep: Instant::now(),
            stats: EngineStats::default(),
        })
    }

    /// Runs until a `Stop` request.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            let now = Instant::now();
            self.connect_due(now);
            let timeout = self.timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    warn!("redis thread: poll failed: {e}");
                    return;
                }
            }
            let now = Instant::now();
            for event in events.iter() {
                let t = event.token();
                if t == WAKER {
                    continue;
                }
                self.on_conn(t.0 / 2, t.0 % 2 == 1, now);
            }
            // A swap, not a store: reading the waking request's write orders its send
            // before the drain below.
            self.woken.swap(false, Ordering::AcqRel);
            if !self.take_requests() {
                return;
            }
            if now >= self.next_check {
                self.next_check = now + TOP_CHECK_INTERVAL;
                self.check_tops();
                self.ping();
            }
            if now >= self.next_refresh {
                self.next_refresh = now + self.users.refresh_every();
                self.users.refresh(&mut self.shards, &self.shas);
            }
            if now >= self.next_sweep {
                self.next_sweep = now + self.users.refresh_every().min(TOP_CHECK_INTERVAL);
                let channels = self.node.channels();
                self.users.sweep(&mut self.shards, &self.shas, channels);
            }
            self.users.write_dirty(&mut self.shards, &self.shas);
            self.flush(Instant::now());
            self.update_health();
        }
    }

    fn timeout(&self, now: Instant) -> Duration {
        let mut due = self.next_check.min(self.next_refresh).min(self.next_sweep);
        for s in &self.shards {
            for d in [s.cmd.deadline(), s.sub.deadline()].into_iter().flatten() {
                due = due.min(d);
            }
        }
        due.saturating_duration_since(now)
            .max(Duration::from_millis(1))
    }

    /// Connects what is down and due, and fails connects and connections that take too long.
    fn connect_due(&mut self, now: Instant) {
        for i in 0..self.shards.len() {
            for sub in [false, true] {
                let Some(shard) = self.shards.get_mut(i) else {
                    continue;
                };
                let conn = if sub { &mut shard.sub } else { &mut shard.cmd };
                if let Some(e) = conn.on_time(self.poll.registry(), now) {
                    self.on_event(i, sub, e);
                }
            }
        }
    }

    fn on_conn(&mut self, i: usize, sub: bool, now: Instant) {
        let mut got = Vec::new();
        let Some(shard) = self.shards.get_mut(i) else {
            return;
        };
        let conn = if sub { &mut shard.sub } else { &mut shard.cmd };
        if let Some(e) = conn.flush(now) {
            got.push(e);
        }
        conn.read(now, |e| got.push(e));
        for e in got {
            self.on_event(i, sub, e);
        }
    }

    pub(super) fn cmds(&mut self) -> (Cmds<'_>, &mut Node) {
        (
            Cmds {
                shards: &mut self.shards,
                shas: &self.shas,
                settings: &self.settings,
                users: &mut self.users,
            },
            &mut self.node,
        )
    }

    fn on_event(&mut self, i: usize, sub: bool, e: Event) {
        match &e {
            Event::Up => self.stats.connects += 1,
            Event::Down(_) => self.stats.disconnects += 1,
            Event::Reply(_) => {}
        }
        match (sub, e) {
            (false, Event::Up) => self.on_cmd_up(i),
            (true, Event::Up) => {
                info!("redis shard {i}: subscription connection up");
                // This node's inbox, on every shard (a user's registry entry may be on any).
                if let Some(s) = self.shards.get_mut(i) {
                    let _ = s.sub.send(&[b"SSUBSCRIBE", self.inbox.as_bytes()]);
                }
                let n = self.shards.len();
                let (mut cmds, node) = self.cmds();
                node.resubscribe(&mut cmds, |c| shard_of(c, n) == i);
            }
            (false, Event::Reply(v)) => self.on_reply(i, v),
            (true, Event::Reply(v)) => self.on_push(v),
            (false, Event::Down(why)) => self.on_cmd_down(i, &why),
            (true, Event::Down(why)) => {
                warn!("{why}");
                let n = self.shards.len();
                if let Some(s) = self.shards.get_mut(i) {
                    s.to_subscribe.clear();
                    s.to_unsubscribe.clear();
                }
                let lost: Vec<Box<str>> = self
                    .node
                    .channels()
                    .filter(|c| shard_of(c, n) == i)
                    .map(Into::into)
                    .collect();
                for c in lost {
                    self.node.on_unsubscribed(&c, &why);
                }
            }
        }
    }

    fn on_cmd_up(&mut self, i: usize) {
        info!("redis shard {i}: command connection up");
        // Redis forgets scripts when it restarts: load them before anything uses them.
        self.load_scripts(i);
        // Anything missed while it was down (the subscriptions come back on their own
        // connection, and fill from history then).
        self.check_tops();
    }

    pub(super) fn load_scripts(&mut self, i: usize) {
        let Some(shard) = self.shards.get_mut(i) else {
            return;
        };
        for script in scripts::all() {
            if shard
                .cmd
                .send(&[b"SCRIPT", b"LOAD", script.as_bytes()])
                .is_ok()
            {
                shard.expect.push_back(Expect::Setup);
            }
        }
    }

    fn on_cmd_down(&mut self, i: usize, why: &str) {
        warn!("{why}");
        let Some(shard) = self.shards.get_mut(i) else {
            return;
        };
        let lost: Vec<Expect> = shard.expect.drain(..).collect();
        for e in lost {
            self.fail(e, why);
        }
    }

    /// A PING on every connection, so one that went silent (a hung Redis, a dead network)
    /// owes a reply and fails after `REPLY_TIMEOUT` even when the node has nothing to send.
    fn ping(&mut self) {
        for shard in &mut self.shards {
            if shard.cmd.is_ready() && shard.cmd.send(&[b"PING"]).is_ok() {
                shard.expect.push_back(Expect::Quiet);
            }
            if shard.sub.is_ready() {
                // Answered by a push (`pong`) that `on_push` passes over.
                let _ = shard.sub.send(&[b"PING"]);
            }
        }
    }

    /// Asks every shard where the node's channels stand (one pipelined fence each).
    fn check_tops(&mut self) {
        let (mut cmds, node) = self.cmds();
        node.check(&mut cmds);
    }

    /// Writes every connection's queued commands (subscriptions batched first).
    fn flush(&mut self, now: Instant) {
        let mut events = Vec::new();
        for (i, shard) in self.shards.iter_mut().enumerate() {
            for (verb, list) in [
                (&b"SSUBSCRIBE"[..], &mut shard.to_subscribe),
                (&b"SUNSUBSCRIBE"[..], &mut shard.to_unsubscribe),
            ] {
                for batch in list.chunks(SUBSCRIBE_BATCH) {
                    let names: Vec<String> =
                        batch.iter().map(|c| wire::pubsub_channel(c)).collect();
                    let mut args: Vec<&[u8]> = vec![verb];
                    args.extend(names.iter().map(|n| n.as_bytes()));
                    // Refused only while down: the reconnect subscribes again.
                    let _ = shard.sub.send(&args);
                }
                list.clear();
            }
            if let Some(e) = shard.cmd.flush(now) {
                events.push((i, false, e));
            }
            if let Some(e) = shard.sub.flush(now) {
                events.push((i, true, e));
            }
        }
        for (i, sub, e) in events {
            self.on_event(i, sub, e);
        }
    }

    fn update_health(&mut self) {
        let down = self
            .shards
            .iter()
            .flat_map(|s| [&s.cmd, &s.sub])
            .find_map(|c| c.reason.clone());
        let now = down.map(|why| format!("redis unavailable ({why})").into_boxed_str());
        let links = self.shards.iter().flat_map(|s| [&s.cmd, &s.sub]);
        let stats = EngineStats {
            links: links.clone().count() as u64,
            links_up: links.filter(|c| c.is_ready()).count() as u64,
            channels: self.node.tracked() as u64,
            channels_refused: self.node.refused,
            gap_fills: self.node.gap_fills,
            resets: self.node.resets,
            rewinds: self.node.rewinds,
            messages_in: self.node.messages_in,
            ..self.stats
        };
        let mut report = self.health.lock().unwrap_or_else(|p| p.into_inner());
        if report.down != now {
            report.down = now;
        }
        report.stats = stats;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::position::{Epoch, Since};
    use crate::hub::redis::wire::Kept;

    #[test]
    fn channels_land_on_the_same_shard_everywhere() {
        // FNV-1a 64, pinned: every node, whatever its build, must agree.
        let three: Vec<usize> = ["room:1", "news", "c0", "c1", "c2", "c3", "c4", "c5"]
            .iter()
            .map(|c| shard_of(c, 3))
            .collect();
        assert_eq!(three, [2, 0, 1, 2, 2, 0, 2, 0]);
        assert_eq!(shard_of("anything", 1), 0);
    }

    #[test]
    fn recovered_as_the_memory_engine_decides() {
        let e = Epoch::parse("e1").unwrap();
        let k = Kept {
            epoch: e.clone(),
            top: 10,
            oldest: 6,
            entries: Vec::new(),
        };
        let at = |id, epoch: Option<&str>| Since {
            id,
            epoch: epoch.map(|x| Epoch::parse(x).unwrap()),
        };
        assert!(k.recovered(None));
        assert!(
            k.recovered(Some(&at(5, Some("e1")))),
            "6 is the oldest kept"
        );
        assert!(!k.recovered(Some(&at(4, Some("e1")))), "5 is gone");
        assert!(!k.recovered(Some(&at(7, Some("other")))));
        assert!(!k.recovered(Some(&at(11, None))), "never handed out");
        assert!(k.recovered(Some(&at(10, None))));
    }
}
