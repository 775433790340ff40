//! What Redis answers, as the Redis thread takes it: each reply matched to what its command
//! waits for ([`Expect`]) and turned into an answer for a worker or work for the channel
//! table, a push on a subscription connection (a message, a presence event, the node's
//! inbox), and what becomes of the commands a lost connection took with it.

use std::sync::Arc;
use std::time::Instant;

use crate::codec::position::{Epoch, Since};
use crate::hub::engine::{Answered, EngineError, History};
use crate::hub::link;
use crate::hub::redis::presence;
use crate::hub::redis::resp::Value;
use crate::hub::redis::scripts;
use crate::hub::redis::shard::Expect;
use crate::hub::redis::thread::Thread;
use crate::hub::redis::users;
use crate::hub::redis::wire::{self, Kept};
use crate::warn;

impl Thread {
    /// Answers a request whose command was lost with `unavailable`. A publish lost this way
    /// may or may not have happened (documented: a retried publish may be a duplicate).
    pub(super) fn fail(&mut self, e: Expect, why: &str) {
        let err = EngineError::Unavailable(why.into());
        match e {
            Expect::Setup | Expect::Top(_) | Expect::Quiet => {}
            Expect::Presence(reply) => {
                link::answer(&self.workers, reply, Answered::Presence(Err(err)))
            }
            Expect::Online { batch, .. } => self.users.fail_online(&self.workers, batch, why),
            Expect::Sent(reply) => link::answer(&self.workers, reply, Answered::Sent(Err(err))),
            Expect::Info(reply) => link::answer(&self.workers, reply, Answered::User(Err(err))),
            Expect::Publish(reply) => {
                link::answer(&self.workers, reply, Answered::Published(Err(err)))
            }
            Expect::History { reply, .. } => {
                link::answer(&self.workers, reply, Answered::History(Err(err)))
            }
            Expect::Read(tag) => {
                let (mut cmds, node) = self.cmds();
                node.on_read(&mut cmds, tag, Err(err));
            }
        }
    }

    pub(super) fn on_reply(&mut self, i: usize, v: Value) {
        let Some(e) = self.shards.get_mut(i).and_then(|s| s.expect.pop_front()) else {
            return;
        };
        // Someone ran SCRIPT FLUSH: this call fails (answered as an error like any other),
        // and the scripts are loaded again for the ones behind it.
        let noscript = matches!(&v, Value::Error(err) if err.starts_with("NOSCRIPT"));
        if noscript && self.shards.get(i).is_some_and(|s| !s.reloading) {
            warn!("redis shard {i}: scripts were flushed; loading them again");
            self.load_scripts(i);
            if let Some(s) = self.shards.get_mut(i) {
                s.reloading = true;
            }
        }
        match e {
            Expect::Setup => {
                if let Some(s) = self.shards.get_mut(i) {
                    s.reloading = false;
                }
                if let Value::Error(err) = v {
                    warn!("redis shard {i}: loading a script failed: {err}");
                }
            }
            Expect::Quiet => {
                if let Value::Error(err) = v {
                    warn!("redis shard {i}: a presence update failed: {err}");
                }
            }
            Expect::Presence(reply) => {
                let answer = users::presence_reply(v);
                link::answer(&self.workers, reply, Answered::Presence(answer));
            }
            Expect::Online { batch, slots } => {
                self.users.on_online(&self.workers, batch, &slots, v)
            }
            Expect::Sent(reply) => {
                link::answer(&self.workers, reply, Answered::Sent(users::sent_reply(v)))
            }
            Expect::Info(reply) => {
                link::answer(&self.workers, reply, Answered::User(users::info_reply(v)))
            }
            Expect::Publish(reply) => link::answer(
                &self.workers,
                reply,
                Answered::Published(scripts::published(v)),
            ),
            Expect::Read(tag) => {
                let result = scripts::kept(v);
                let (mut cmds, node) = self.cmds();
                node.on_read(&mut cmds, tag, result);
            }
            Expect::History {
                reply,
                since,
                channel,
            } => {
                let answer = scripts::kept(v).map(|k| history(&channel, since.as_ref(), k));
                link::answer(&self.workers, reply, Answered::History(answer));
            }
            Expect::Top(channel) => {
                let parts = v.as_array().unwrap_or_default();
                let epoch = parts.first().and_then(Value::as_str).and_then(Epoch::parse);
                let top = parts.get(1).and_then(Value::as_int).unwrap_or(0).max(0) as u64;
                if parts.get(2).and_then(Value::as_int) == Some(1) {
                    warn!(
                        "channel {channel}: stream went back in redis (it lost writes): new epoch"
                    );
                    self.node.rewinds += 1;
                }
                if let Some(epoch) = epoch {
                    let (mut cmds, node) = self.cmds();
                    node.on_top(&mut cmds, &channel, epoch, top);
                }
            }
        }
    }

    /// A push on a subscription connection: a confirmation, a message, a presence event, or
    /// something for this node's inbox.
    pub(super) fn on_push(&mut self, v: Value) {
        let Some(parts) = v.as_array() else {
            return;
        };
        let kind = parts.first().and_then(Value::as_bytes).unwrap_or_default();
        let on = parts.get(1).and_then(Value::as_bytes).unwrap_or_default();
        if kind == b"smessage" && on == self.inbox.as_bytes() {
            let payload = parts.get(2).and_then(Value::as_bytes).unwrap_or_default();
            return users::on_inbox(&self.workers, payload);
        }
        let Some(channel) = parts
            .get(1)
            .and_then(Value::as_bytes)
            .and_then(wire::channel_of)
            .map(str::to_owned)
        else {
            return;
        };
        let (mut cmds, node) = self.cmds();
        match kind {
            b"ssubscribe" => node.on_subscribed(&mut cmds, &channel),
            b"smessage" => {
                let payload = parts.get(2).and_then(Value::as_bytes).unwrap_or_default();
                if let Some((join, user)) = presence::decode_presence_event(payload) {
                    return node.on_presence(&channel, join, user);
                }
                match wire::decode_published(payload) {
                    Some((entry, epoch)) => node.on_message(&mut cmds, &channel, entry, epoch),
                    None => warn!("redis: a message on {channel} is not one of ours"),
                }
            }
            _ => {}
        }
    }
}

fn history(channel: &str, since: Option<&Since>, k: Kept) -> History {
    let at = Instant::now();
    History {
        recovered: k.recovered(since),
        messages: k
            .entries
            .iter()
            .map(|e| Arc::new(e.encode_at(channel, at)))
            .collect(),
        epoch: k.epoch,
    }
}
