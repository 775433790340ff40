//! The cluster engine: the channel space in Redis, shared by every node that points at the
//! same Redis servers (`--redis`, one per shard: a channel lives on the shard its name
//! hashes to). Each channel's ids, epoch and history are in Redis; a publish is one atomic
//! script there (next id, history, sharded Pub/Sub), and a node subscribes in Redis to a
//! channel while it has local subscribers. Every call answers later, from the Redis thread
//! (`thread.rs`), through the asking worker's mailbox.

pub mod chan;
pub mod cmds;
pub mod conn;
pub mod node;
pub mod presence;
pub mod replies;
pub mod request;
pub mod requests;
pub mod resp;
pub mod scripts;
pub mod shard;
pub mod thread;
pub mod users;
pub mod wire;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;
use mio::{Poll, Waker};

use crate::codec::protocol::Data;
use crate::config::RedisUrl;
use crate::hub::engine::{
    Answer, Engine, EngineStats, Health, History, Published, ReplyTo, Since, SubscribeReq,
    Subscription, UserInfo,
};
use crate::hub::link::Workers;
use request::{HealthState, Report, Request, Settings};
use thread::{Thread, WAKER};
use wire::Kind;

#[derive(Debug)]
pub struct RedisEngine {
    tx: Sender<Request>,
    waker: Arc<Waker>,
    /// Set by the request that wakes the thread, cleared by the thread before it drains.
    woken: Arc<AtomicBool>,
    health: HealthState,
}

impl RedisEngine {
    /// Starts the Redis thread (it connects in the background; until then the engine is
    /// unavailable, and says so in its health).
    pub fn start(urls: &[RedisUrl], workers: Workers, settings: Settings) -> std::io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = crossbeam_channel::unbounded();
        let health: HealthState = Arc::new(Mutex::new(Report {
            down: Some("connecting to redis".into()),
            stats: EngineStats::default(),
        }));
        let woken = Arc::new(AtomicBool::new(false));
        let mut thread = Thread::new(urls, rx, poll, workers, settings, health.clone())?;
        thread.woken = woken.clone();
        std::thread::Builder::new()
            .name("redis".into())
            .spawn(move || thread.run())?;
        Ok(RedisEngine {
            tx,
            waker,
            woken,
            health,
        })
    }

    fn report(&self) -> std::sync::MutexGuard<'_, Report> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ask(&self, req: Request) {
        // The thread lives as long as the process; if it is gone the request is simply never
        // answered, which cannot happen before shutdown.
        let _ = self.tx.send(req);
        // The thread clears `woken` and then drains the queue to empty, so a request sent
        // while the flag is set will be taken by that drain: only the first after a clear
        // needs to wake it. Under load that is one wake-up (a system call) per batch
        // instead of one per request.
        if !self.woken.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
    }
}

impl Drop for RedisEngine {
    fn drop(&mut self) {
        self.ask(Request::Stop);
    }
}

impl Engine for RedisEngine {
    fn publish(&self, channel: &str, data: &Data<'_>, reply: ReplyTo) -> Answer<Published> {
        let (kind, payload) = Kind::of(data);
        self.ask(Request::Publish {
            channel: channel.into(),
            kind,
            payload: payload.to_vec(),
            reply,
        });
        Answer::Later
    }

    fn subscribe(&self, req: SubscribeReq<'_>, reply: ReplyTo) -> Answer<Subscription> {
        self.ask(Request::Subscribe {
            channel: req.channel.into(),
            worker: req.worker,
            since: req.since.cloned(),
            user: req.user.map(Into::into),
            reply,
        });
        Answer::Later
    }

    fn unsubscribe(&self, channel: &str, worker: usize, user: Option<&str>) {
        self.ask(Request::Unsubscribe {
            channel: channel.into(),
            worker,
            user: user.map(Into::into),
        });
    }

    fn history(
        &self,
        channel: &str,
        since: Option<&Since>,
        limit: usize,
        reply: ReplyTo,
    ) -> Answer<History> {
        self.ask(Request::History {
            channel: channel.into(),
            since: since.cloned(),
            limit,
            reply,
        });
        Answer::Later
    }

    fn presence(&self, channel: &str, reply: ReplyTo) -> Answer<Vec<Box<str>>> {
        self.ask(Request::Presence {
            channel: channel.into(),
            reply,
        });
        Answer::Later
    }

    fn users_online(&self, users: &[&str], reply: ReplyTo) -> Answer<Vec<bool>> {
        self.ask(Request::Online {
            users: users.iter().map(|&u| u.into()).collect(),
            reply,
        });
        Answer::Later
    }

    fn user_connected(&self, user: &str) {
        self.ask(Request::UserConnected(user.into()));
    }

    fn user_disconnected(&self, user: &str) {
        self.ask(Request::UserDisconnected(user.into()));
    }

    fn send_to_user(&self, user: &str, data: &Data<'_>, reply: ReplyTo) -> Answer<usize> {
        let (kind, payload) = Kind::of(data);
        self.ask(Request::ToUser {
            user: user.into(),
            send: Some((kind, payload.to_vec())),
            reply,
        });
        Answer::Later
    }

    fn disconnect_user(&self, user: &str, reply: ReplyTo) -> Answer<usize> {
        self.ask(Request::ToUser {
            user: user.into(),
            send: None,
            reply,
        });
        Answer::Later
    }

    fn user_info(&self, user: &str, reply: ReplyTo) -> Answer<UserInfo> {
        self.ask(Request::UserInfo {
            user: user.into(),
            reply,
        });
        Answer::Later
    }

    /// History expires in Redis by itself.
    fn maintain(&self) {}

    /// History is in Redis, not in this process.
    fn history_len(&self) -> usize {
        0
    }

    fn health(&self) -> Health {
        match &self.report().down {
            None => Ok(()),
            Some(why) => Err(why.clone()),
        }
    }

    fn stats(&self) -> EngineStats {
        self.report().stats
    }
}
