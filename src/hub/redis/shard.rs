//! One Redis shard as the Redis thread drives it: its command connection (with the FIFO of
//! what each command sent waits for) and its subscription connection, and the stable hash
//! that places a channel (or a user) on a shard.

use std::collections::VecDeque;

use crate::codec::position::Since;
use crate::hub::engine::ReplyTo;
use crate::hub::redis::conn::Conn;

/// What a command sent on a shard's command connection waits for.
#[derive(Debug)]
pub enum Expect {
    Setup,
    /// An update whose reply only matters if it is an error (logged).
    Quiet,
    Publish(ReplyTo),
    Read(u64),
    History {
        reply: ReplyTo,
        since: Option<Since>,
        channel: Box<str>,
    },
    Top(Box<str>),
    Presence(ReplyTo),
    Online {
        batch: u64,
        slots: Vec<usize>,
    },
    Sent(ReplyTo),
    Info(ReplyTo),
}

pub struct Shard {
    pub cmd: Conn,
    pub sub: Conn,
    pub expect: VecDeque<Expect>,
    /// Channels to SSUBSCRIBE / SUNSUBSCRIBE at the end of the turn (batched).
    pub to_subscribe: Vec<Box<str>>,
    pub to_unsubscribe: Vec<Box<str>>,
    /// Scripts are being loaded again after a NOSCRIPT (one reload for a burst of them).
    pub reloading: bool,
}

/// The stable hash that places a channel on a shard: FNV-1a (64 bits) of its name, so every
/// node, whatever its build, agrees.
pub fn shard_of(channel: &str, shards: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in channel.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % shards.max(1) as u64) as usize
}

/// Sends `EVALSHA sha numkeys args...`, expecting `expect`.
pub fn send_script(
    shard: &mut Shard,
    sha: &str,
    keys: usize,
    args: &[Vec<u8>],
    expect: Expect,
) -> Result<(), String> {
    if !shard.cmd.is_ready() {
        return Err(shard
            .cmd
            .reason
            .as_deref()
            .unwrap_or("redis down")
            .to_string());
    }
    let keys = keys.to_string();
    let mut all: Vec<&[u8]> = vec![b"EVALSHA", sha.as_bytes(), keys.as_bytes()];
    all.extend(args.iter().map(Vec::as_slice));
    shard.cmd.send(&all)?;
    shard.expect.push_back(expect);
    Ok(())
}
