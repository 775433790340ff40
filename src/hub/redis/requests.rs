//! The workers' requests, as the Redis thread takes them up: each turned into commands on
//! the right shard (or the channel table's work), and answered with `unavailable` at once
//! when that shard is down.

use crossbeam_channel::TryRecvError;

use crate::codec::position::Epoch;
use crate::hub::engine::{Answered, EngineError};
use crate::hub::link;
use crate::hub::redis::presence::Inbox;
use crate::hub::redis::request::Request;
use crate::hub::redis::scripts;
use crate::hub::redis::shard::{send_script, shard_of, Expect};
use crate::hub::redis::thread::Thread;

impl Thread {
    /// Takes the workers' requests; false on `Stop`.
    pub(super) fn take_requests(&mut self) -> bool {
        loop {
            let req = match self.rx.try_recv() {
                Ok(r) => r,
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            };
            match req {
                Request::Stop => return false,
                Request::Publish {
                    channel,
                    kind,
                    payload,
                    reply,
                } => {
                    let args = scripts::publish_args(
                        &channel,
                        kind,
                        &payload,
                        &Epoch::random(),
                        self.settings.history_size,
                        self.settings.history_ttl_s,
                    );
                    let n = self.shards.len();
                    let sent = match self.shards.get_mut(shard_of(&channel, n)) {
                        Some(s) => {
                            send_script(s, &self.shas.publish, 3, &args, Expect::Publish(reply))
                        }
                        None => Err("no shard".into()),
                    };
                    if let Err(why) = sent {
                        let err = EngineError::Unavailable(why.into());
                        link::answer(&self.workers, reply, Answered::Published(Err(err)));
                    }
                }
                Request::Subscribe {
                    channel,
                    worker,
                    since,
                    user,
                    reply,
                } => {
                    let (mut cmds, node) = self.cmds();
                    node.subscribe(&mut cmds, &channel, worker, since, user, reply);
                }
                Request::Unsubscribe {
                    channel,
                    worker,
                    user,
                } => {
                    let (mut cmds, node) = self.cmds();
                    node.unsubscribe(&mut cmds, &channel, worker, user.as_deref());
                }
                Request::Presence { channel, reply } => self.users.ask_presence(
                    &mut self.shards,
                    &self.shas,
                    &self.workers,
                    &channel,
                    reply,
                ),
                Request::Online { users, reply } => {
                    self.users
                        .ask_online(&mut self.shards, &self.shas, &self.workers, users, reply)
                }
                Request::UserConnected(u) => self.users.connected(&u),
                Request::UserDisconnected(u) => self.users.disconnected(&u),
                Request::ToUser { user, send, reply } => {
                    let what = match send {
                        Some((kind, payload)) => Inbox::Send {
                            user: user.to_string(),
                            kind: kind.byte(),
                            payload,
                        },
                        None => Inbox::Disconnect {
                            user: user.to_string(),
                        },
                    };
                    let (shards, shas) = (&mut self.shards, &self.shas);
                    self.users
                        .send(shards, shas, &self.workers, &user, &what, reply);
                }
                Request::UserInfo { user, reply } => {
                    let (shards, shas) = (&mut self.shards, &self.shas);
                    self.users
                        .ask_info(shards, shas, &self.workers, &user, reply);
                }
                Request::History {
                    channel,
                    since,
                    limit,
                    reply,
                } => {
                    let (id, epoch) = since
                        .as_ref()
                        .map_or((0, None), |s| (s.id, s.epoch.as_ref()));
                    let args = scripts::read_args(
                        &channel,
                        id,
                        epoch,
                        limit,
                        self.settings.history_ttl_s,
                        &Epoch::random(),
                    );
                    let n = self.shards.len();
                    let expect = Expect::History {
                        reply,
                        since: since.clone(),
                        channel: channel.clone(),
                    };
                    let sent = match self.shards.get_mut(shard_of(&channel, n)) {
                        Some(s) => send_script(s, &self.shas.read, 2, &args, expect),
                        None => Err("no shard".into()),
                    };
                    if let Err(why) = sent {
                        let err = EngineError::Unavailable(why.into());
                        link::answer(&self.workers, reply, Answered::History(Err(err)));
                    }
                }
            }
        }
    }
}
