//! The node's users in cluster mode: how many local connections each user has and in which
//! channels it is present, what Redis is told of it (the registry and presence entries of
//! `presence.rs`: on the first connection or join at once, on the last close at once, and
//! all of them again every heartbeat in batches), and the answers to presence and registry
//! questions. Runs on the Redis thread.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::codec::protocol::Data;
use crate::hub::engine::{Answered, EngineError, ReplyTo, UserInfo};
use crate::hub::link::{self, Cmd, Workers};
use crate::hub::msg::Msg;
use crate::hub::redis::presence::{self, Inbox};
use crate::hub::redis::resp::Value;
use crate::hub::redis::scripts::{redis_error, Shas};
use crate::hub::redis::shard::{send_script, shard_of, Expect, Shard};
use crate::hub::redis::wire::{self, Kind};

/// Entries written per script call in a heartbeat batch (the calls of one shard go out in
/// one write: a round trip per shard per heartbeat, not one per user).
pub const REFRESH_BATCH: usize = 500;

/// What the node holds of its users.
#[derive(Debug)]
pub struct Users {
    node: Box<str>,
    ttl: Duration,
    /// Local connections per user.
    conns: HashMap<Box<str>, u32>,
    /// Local subscriptions per (channel, user).
    present: HashMap<(Box<str>, Box<str>), u32>,
    /// Users whose registry entry changed this turn (written at the end of the turn).
    dirty: HashSet<Box<str>>,
    /// Batch questions answered by several shards: what is known so far.
    online: HashMap<u64, Online>,
    next_batch: u64,
}

#[derive(Debug)]
struct Online {
    reply: ReplyTo,
    result: Vec<bool>,
    shards_left: usize,
}

fn unavailable(why: impl Into<Box<str>>) -> EngineError {
    EngineError::Unavailable(why.into())
}

impl Users {
    pub fn new(node: &str, ttl: Duration) -> Users {
        Users {
            node: node.into(),
            ttl,
            conns: HashMap::new(),
            present: HashMap::new(),
            dirty: HashSet::new(),
            online: HashMap::new(),
            next_batch: 1,
        }
    }

    /// How often entries are refreshed: well inside the TTL (25 s of 60 by default).
    pub fn refresh_every(&self) -> Duration {
        (self.ttl * 5 / 12).max(Duration::from_millis(200))
    }

    /// How long an entry lives without a refresh; the scripts add it to Redis' own clock.
    fn ttl_ms(&self) -> String {
        self.ttl.as_millis().to_string()
    }

    fn key_ttl(&self) -> String {
        self.ttl.as_secs().max(1).to_string()
    }

    /// How long a channel's users key outlives its last refresh (see `users_key_ttl_s`).
    fn users_key_ttl(&self) -> String {
        presence::users_key_ttl_s(self.ttl.as_secs().max(1)).to_string()
    }

    pub fn connected(&mut self, user: &str) {
        *self.conns.entry(user.into()).or_insert(0) += 1;
        self.dirty.insert(user.into());
    }

    pub fn disconnected(&mut self, user: &str) {
        if let Some(n) = self.conns.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                self.conns.remove(user);
            }
            self.dirty.insert(user.into());
        }
    }

    /// A subscriber that named `user` joined `channel` here.
    pub fn join(&mut self, shards: &mut [Shard], shas: &Shas, channel: &str, user: &str) {
        let n = self
            .present
            .entry((channel.into(), user.into()))
            .or_insert(0);
        *n += 1;
        if *n > 1 {
            return;
        }
        let args = vec![
            presence::channel_users_key(channel).into_bytes(),
            presence::channel_user_nodes_key(channel, user).into_bytes(),
            user.as_bytes().to_vec(),
            self.node.as_bytes().to_vec(),
            self.ttl_ms().into_bytes(),
            self.key_ttl().into_bytes(),
            wire::pubsub_channel(channel).into_bytes(),
            self.users_key_ttl().into_bytes(),
        ];
        send_on(shards, channel, &shas.join, 2, &args);
    }

    /// It left (unsubscribed or closed): the last one here removes this node's entry.
    pub fn leave(&mut self, shards: &mut [Shard], shas: &Shas, channel: &str, user: &str) {
        let key = (channel.into(), user.into());
        match self.present.get_mut(&key) {
            Some(n) if *n > 1 => {
                *n -= 1;
                return;
            }
            Some(_) => {
                self.present.remove(&key);
            }
            None => return,
        }
        let args = vec![
            presence::channel_users_key(channel).into_bytes(),
            presence::channel_user_nodes_key(channel, user).into_bytes(),
            user.as_bytes().to_vec(),
            self.node.as_bytes().to_vec(),
            wire::pubsub_channel(channel).into_bytes(),
        ];
        send_on(shards, channel, &shas.leave, 2, &args);
    }

    /// Writes the registry entries that changed this turn.
    pub fn write_dirty(&mut self, shards: &mut [Shard], shas: &Shas) {
        if self.dirty.is_empty() {
            return;
        }
        let users: Vec<Box<str>> = self.dirty.drain().collect();
        self.register(shards, shas, users);
    }

    /// The heartbeat: every local entry again, with a new expiry, in batches per shard.
    pub fn refresh(&mut self, shards: &mut [Shard], shas: &Shas) {
        let users: Vec<Box<str>> = self.conns.keys().cloned().collect();
        self.register(shards, shas, users);
        let mut by_shard: BTreeMap<usize, Vec<(&str, &str)>> = BTreeMap::new();
        for (channel, user) in self.present.keys() {
            by_shard
                .entry(shard_of(channel, shards.len()))
                .or_default()
                .push((channel, user));
        }
        let (ttl_ms, key_ttl, users_key_ttl) =
            (self.ttl_ms(), self.key_ttl(), self.users_key_ttl());
        for (s, pairs) in by_shard {
            for batch in pairs.chunks(REFRESH_BATCH) {
                let mut args: Vec<Vec<u8>> = Vec::with_capacity(3 * batch.len() + 5);
                for (c, u) in batch {
                    args.push(presence::channel_users_key(c).into_bytes());
                    args.push(presence::channel_user_nodes_key(c, u).into_bytes());
                }
                args.push(self.node.as_bytes().to_vec());
                args.push(ttl_ms.clone().into_bytes());
                args.push(key_ttl.clone().into_bytes());
                args.push(users_key_ttl.clone().into_bytes());
                args.extend(batch.iter().map(|(_, u)| u.as_bytes().to_vec()));
                if let Some(shard) = shards.get_mut(s) {
                    let _ =
                        send_script(shard, &shas.refresh, 2 * batch.len(), &args, Expect::Quiet);
                }
            }
        }
    }

    /// Ends the presence of users whose nodes died in `channels` (those this node is subscribed
    /// to), with leave events: one call per batch of channels per shard.
    pub fn sweep<'a>(
        &self,
        shards: &mut [Shard],
        shas: &Shas,
        channels: impl Iterator<Item = &'a str>,
    ) {
        let mut by_shard: BTreeMap<usize, Vec<Vec<u8>>> = BTreeMap::new();
        for c in channels {
            by_shard
                .entry(shard_of(c, shards.len()))
                .or_default()
                .push(presence::channel_users_key(c).into_bytes());
        }
        for (s, keys) in by_shard {
            for batch in keys.chunks(REFRESH_BATCH) {
                if let Some(shard) = shards.get_mut(s) {
                    let _ = send_script(shard, &shas.sweep, batch.len(), batch, Expect::Quiet);
                }
            }
        }
    }

    /// Sets this node's registry entry (its connection count, 0 to remove) for `users`.
    fn register(&self, shards: &mut [Shard], shas: &Shas, users: Vec<Box<str>>) {
        let mut by_shard: BTreeMap<usize, Vec<Box<str>>> = BTreeMap::new();
        for u in users {
            by_shard
                .entry(shard_of(&u, shards.len()))
                .or_default()
                .push(u);
        }
        let (ttl_ms, key_ttl) = (self.ttl_ms(), self.key_ttl());
        for (s, users) in by_shard {
            for batch in users.chunks(REFRESH_BATCH) {
                let mut args: Vec<Vec<u8>> = Vec::with_capacity(3 * batch.len() + 3);
                for u in batch {
                    args.push(presence::user_key(u).into_bytes());
                    args.push(presence::user_counts_key(u).into_bytes());
                }
                args.push(self.node.as_bytes().to_vec());
                args.push(ttl_ms.clone().into_bytes());
                args.push(key_ttl.clone().into_bytes());
                for u in batch {
                    let n = self.conns.get(u).copied().unwrap_or(0);
                    args.push(n.to_string().into_bytes());
                }
                if let Some(shard) = shards.get_mut(s) {
                    let _ =
                        send_script(shard, &shas.register, 2 * batch.len(), &args, Expect::Quiet);
                }
            }
        }
    }

    /// Who is in `channel`, cluster-wide.
    pub fn ask_presence(
        &self,
        shards: &mut [Shard],
        shas: &Shas,
        workers: &Workers,
        channel: &str,
        reply: ReplyTo,
    ) {
        let args = vec![presence::channel_users_key(channel).into_bytes()];
        let sent = match shards.get_mut(shard_of(channel, shards.len())) {
            Some(shard) => send_script(shard, &shas.present, 1, &args, Expect::Presence(reply)),
            None => Err("no shard".into()),
        };
        if let Err(why) = sent {
            link::answer(workers, reply, Answered::Presence(Err(unavailable(why))));
        }
    }

    /// Which of `users` are online anywhere: one script call per shard.
    pub fn ask_online(
        &mut self,
        shards: &mut [Shard],
        shas: &Shas,
        workers: &Workers,
        users: Vec<Box<str>>,
        reply: ReplyTo,
    ) {
        let batch = self.next_batch;
        self.next_batch += 1;
        let mut by_shard: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, u) in users.iter().enumerate() {
            by_shard
                .entry(shard_of(u, shards.len()))
                .or_default()
                .push(i);
        }
        self.online.insert(
            batch,
            Online {
                reply,
                result: vec![false; users.len()],
                shards_left: by_shard.len(),
            },
        );
        for (s, slots) in by_shard {
            let args: Vec<Vec<u8>> = slots
                .iter()
                .filter_map(|&i| users.get(i))
                .map(|u| presence::user_key(u).into_bytes())
                .collect();
            let n = slots.len();
            let expect = Expect::Online { batch, slots };
            let sent = match shards.get_mut(s) {
                Some(shard) => send_script(shard, &shas.online, n, &args, expect),
                None => Err("no shard".into()),
            };
            if let Err(why) = sent {
                self.online.remove(&batch);
                link::answer(workers, reply, Answered::Users(Err(unavailable(why))));
                return;
            }
        }
        if let Some(o) = self.online.get(&batch).filter(|o| o.shards_left == 0) {
            link::answer(workers, o.reply, Answered::Users(Ok(Vec::new())));
            self.online.remove(&batch);
        }
    }

    /// One shard's part of a batch question came back.
    pub fn on_online(&mut self, workers: &Workers, batch: u64, slots: &[usize], v: Value) {
        let Some(o) = self.online.get_mut(&batch) else {
            return;
        };
        let err = match &v {
            Value::Error(e) => Some(redis_error(e)),
            _ => None,
        };
        if let Some(e) = err {
            let o = self.online.remove(&batch);
            if let Some(o) = o {
                link::answer(workers, o.reply, Answered::Users(Err(e)));
            }
            return;
        }
        for (slot, x) in slots.iter().zip(v.as_array().unwrap_or_default()) {
            if let Some(r) = o.result.get_mut(*slot) {
                *r = x.as_int() == Some(1);
            }
        }
        o.shards_left -= 1;
        if o.shards_left == 0 {
            if let Some(o) = self.online.remove(&batch) {
                link::answer(workers, o.reply, Answered::Users(Ok(o.result)));
            }
        }
    }

    /// A shard's command connection went down: its part of every batch question fails.
    pub fn fail_online(&mut self, workers: &Workers, batch: u64, why: &str) {
        if let Some(o) = self.online.remove(&batch) {
            link::answer(workers, o.reply, Answered::Users(Err(unavailable(why))));
        }
    }

    /// Sends a direct message or a disconnect to the nodes holding `user`.
    pub fn send(
        &self,
        shards: &mut [Shard],
        shas: &Shas,
        workers: &Workers,
        user: &str,
        what: &Inbox,
        reply: ReplyTo,
    ) {
        let args = vec![
            presence::user_key(user).into_bytes(),
            presence::encode_inbox(what),
        ];
        let sent = match shards.get_mut(shard_of(user, shards.len())) {
            Some(shard) => send_script(shard, &shas.send, 1, &args, Expect::Sent(reply)),
            None => Err("no shard".into()),
        };
        if let Err(why) = sent {
            link::answer(workers, reply, Answered::Sent(Err(unavailable(why))));
        }
    }

    /// Where `user`'s connections are.
    pub fn ask_info(
        &self,
        shards: &mut [Shard],
        shas: &Shas,
        workers: &Workers,
        user: &str,
        reply: ReplyTo,
    ) {
        let args = vec![
            presence::user_key(user).into_bytes(),
            presence::user_counts_key(user).into_bytes(),
        ];
        let sent = match shards.get_mut(shard_of(user, shards.len())) {
            Some(shard) => send_script(shard, &shas.nodes, 2, &args, Expect::Info(reply)),
            None => Err("no shard".into()),
        };
        if let Err(why) = sent {
            link::answer(workers, reply, Answered::User(Err(unavailable(why))));
        }
    }
}

/// Sends a script on the shard `routing` hashes to; a failure only loses this update (the
/// next heartbeat or change writes it again).
fn send_on(shards: &mut [Shard], routing: &str, sha: &str, keys: usize, args: &[Vec<u8>]) {
    let n = shards.len();
    if let Some(shard) = shards.get_mut(shard_of(routing, n)) {
        let _ = send_script(shard, sha, keys, args, Expect::Quiet);
    }
}

/// Decodes the reply to a presence question.
pub fn presence_reply(v: Value) -> Result<Vec<Box<str>>, EngineError> {
    if let Value::Error(e) = &v {
        return Err(redis_error(e));
    }
    let mut users: Vec<Box<str>> = v
        .as_array()
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_str)
        .map(Into::into)
        .collect();
    users.sort();
    users.dedup();
    Ok(users)
}

/// Decodes the reply to a registry question.
pub fn info_reply(v: Value) -> Result<UserInfo, EngineError> {
    if let Value::Error(e) = &v {
        return Err(redis_error(e));
    }
    let parts = v.as_array().unwrap_or_default();
    let nodes = parts
        .chunks(2)
        .filter_map(|p| {
            let node = p.first()?.as_str()?;
            let n = p.get(1).and_then(Value::as_int).unwrap_or(0).max(0) as u64;
            Some((node.into(), n))
        })
        .collect();
    Ok(UserInfo { nodes })
}

/// Decodes the reply to a send or disconnect: the nodes it reached.
pub fn sent_reply(v: Value) -> Result<usize, EngineError> {
    match v {
        Value::Error(e) => Err(redis_error(&e)),
        v => Ok(v.as_int().unwrap_or(0).max(0) as usize),
    }
}

/// A message in this node's inbox: handed to every worker (the user's connections may be on
/// any).
pub fn on_inbox(workers: &Workers, payload: &[u8]) {
    match presence::decode_inbox(payload) {
        Some(Inbox::Send {
            user,
            kind,
            payload,
        }) => {
            let data = match (Kind::from_byte(kind), std::str::from_utf8(&payload)) {
                (Some(Kind::Json), Ok(s)) => Data::Json(s),
                (Some(Kind::Text), Ok(s)) => Data::Text(s),
                _ => Data::Binary(&payload),
            };
            let msg = Arc::new(Msg::direct(&data));
            let user: Arc<str> = user.into();
            link::broadcast(workers, || Cmd::Direct {
                user: user.clone(),
                msg: msg.clone(),
            });
        }
        Some(Inbox::Disconnect { user }) => {
            let user: Arc<str> = user.into();
            link::broadcast(workers, || Cmd::Disconnect { user: user.clone() });
        }
        None => {}
    }
}
