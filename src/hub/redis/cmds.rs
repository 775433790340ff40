//! The node's commands to Redis ([`Store`]), on the shards' connections: what the channel
//! table asks (subscriptions, reads) and the presence changes its subscribers make.

use crate::codec::position::Epoch;
use crate::hub::redis::node::Store;
use crate::hub::redis::request::Settings;
use crate::hub::redis::scripts::{self, Shas};
use crate::hub::redis::shard::{send_script, shard_of, Expect, Shard};
use crate::hub::redis::users::Users;

/// The node's commands to Redis, on the shards' connections (see [`Store`]).
pub struct Cmds<'a> {
    pub shards: &'a mut [Shard],
    pub shas: &'a Shas,
    pub settings: &'a Settings,
    pub users: &'a mut Users,
}

impl Store for Cmds<'_> {
    fn subscribe(&mut self, channel: &str) -> Result<(), String> {
        let n = self.shards.len();
        let shard = self
            .shards
            .get_mut(shard_of(channel, n))
            .ok_or("no shard")?;
        if !shard.sub.is_ready() {
            return Err(shard
                .sub
                .reason
                .as_deref()
                .unwrap_or("redis down")
                .to_string());
        }
        shard.to_subscribe.push(channel.into());
        Ok(())
    }

    fn unsubscribe(&mut self, channel: &str) {
        let n = self.shards.len();
        if let Some(shard) = self.shards.get_mut(shard_of(channel, n)) {
            shard.to_unsubscribe.push(channel.into());
        }
    }

    fn read(
        &mut self,
        channel: &str,
        since: u64,
        epoch: Option<&Epoch>,
        limit: usize,
        tag: u64,
    ) -> Result<(), String> {
        let n = self.shards.len();
        let shard = self
            .shards
            .get_mut(shard_of(channel, n))
            .ok_or("no shard")?;
        let args = scripts::read_args(
            channel,
            since,
            epoch,
            limit,
            self.settings.history_ttl_s,
            &Epoch::random(),
        );
        send_script(shard, &self.shas.read, 2, &args, Expect::Read(tag))
    }

    fn fence(&mut self, channel: &str, epoch: &Epoch, top: u64, force: bool, digest: Option<&str>) {
        let n = self.shards.len();
        if let Some(shard) = self.shards.get_mut(shard_of(channel, n)) {
            let args = scripts::fence_args(channel, epoch, top, force, digest);
            // Refused only while down: the check after the reconnect fences again.
            let _ = send_script(
                shard,
                &self.shas.fence,
                2,
                &args,
                Expect::Top(channel.into()),
            );
        }
    }

    fn join(&mut self, channel: &str, user: &str) {
        self.users.join(self.shards, self.shas, channel, user);
    }

    fn leave(&mut self, channel: &str, user: &str) {
        self.users.leave(self.shards, self.shas, channel, user);
    }
}
