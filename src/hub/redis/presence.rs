//! Presence and the connection registry in Redis, kept alive by heartbeats: every entry has an
//! expiry time (a sorted set's score), each node refreshes its own entries in batches well
//! inside the TTL, a clean close removes them at once, and a node that dies leaves entries
//! that readers ignore once expired and Redis drops with their key — no cleanup job. What
//! readers ignore, subscribers must still hear of: every node sweeps the channels it is
//! subscribed to, so a user whose entries all expired leaves with an event like a clean close.
//!
//! Keys (hash tags keep a channel's keys on its shard, a user's on the user's):
//! - `sb:{C}:pz` — users present in channel C (score: the latest expiry of any node's entry);
//! - `sb:{C}:pn:<user>` — the nodes that hold `user` in C (score: expiry);
//! - `sb:u:{U}` — the nodes holding a connection of user U (score: expiry), the registry;
//! - `sb:u:{U}:c` — how many connections each of those nodes holds.
//!
//! Join and leave events go out on the channel's Pub/Sub channel as `p+<user>` / `p-<user>`
//! (message payloads start with a digit), once per cluster-wide change: a join when no node
//! held the user in the channel, a leave when the last node lets go.

/// Prepends the shard's own clock (ms) as `now`: expiry times are written and compared by
/// the same Redis that keeps them, so nodes' clocks need not agree.
macro_rules! with_now {
    ($body:literal) => {
        concat!(
            "local t = redis.call('TIME')\n",
            "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n",
            $body
        )
    };
}

/// KEYS: pz, pn. ARGV: user, node, TTL ms, key TTL s, pubsub channel, pz key TTL s.
/// Adds this node's entry; publishes a join if no live entry had the user. The `pz` key
/// outlives its entries (see [`users_key_ttl_s`]) so a sweep still finds the expired ones.
pub const JOIN: &str = with_now!(
    r#"
local expiry = now + tonumber(ARGV[3])
local was = redis.call('ZSCORE', KEYS[1], ARGV[1])
local live = was and tonumber(was) > now
-- Expired but not yet swept: the leave its subscribers have not heard goes first.
if was and not live then redis.call('SPUBLISH', ARGV[5], 'p-' .. ARGV[1]) end
redis.call('ZADD', KEYS[2], expiry, ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[1], 'GT', expiry, ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[6])
if not live then redis.call('SPUBLISH', ARGV[5], 'p+' .. ARGV[1]) end
return live and 0 or 1
"#
);

/// KEYS: pz, pn. ARGV: user, node, pubsub channel.
/// Removes this node's entry; when no live node holds the user any more, the user leaves
/// the channel (and a leave is published).
pub const LEAVE: &str = with_now!(
    r#"
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) > 0 then return 0 end
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('SPUBLISH', ARGV[3], 'p-' .. ARGV[1])
end
return 1
"#
);

/// KEYS: pz1, pn1, pz2, pn2, ... ARGV: node, TTL ms, key TTL s, pz key TTL s, user1, user2, ...
/// Refreshes this node's channel entries in one call (a batch of the heartbeat). A user the
/// channel had lost meanwhile (this node's refreshes were late past the TTL, and a sweep
/// published its leave) joins again, with the event. The Pub/Sub channel is the `pz` key
/// without its last letter (so a heartbeat need not send both; a unit test holds the key
/// layouts to it).
pub const REFRESH: &str = with_now!(
    r#"
local expiry = now + tonumber(ARGV[2])
for i = 5, #ARGV do
  local pz, pn = KEYS[2 * (i - 4) - 1], KEYS[2 * (i - 4)]
  local was = redis.call('ZSCORE', pz, ARGV[i])
  if not was or tonumber(was) <= now then
    local pubsub = string.sub(pz, 1, -2)
    if was then redis.call('SPUBLISH', pubsub, 'p-' .. ARGV[i]) end
    redis.call('SPUBLISH', pubsub, 'p+' .. ARGV[i])
  end
  redis.call('ZADD', pn, expiry, ARGV[1])
  redis.call('EXPIRE', pn, ARGV[3])
  redis.call('ZADD', pz, 'GT', expiry, ARGV[i])
  redis.call('EXPIRE', pz, ARGV[4])
end
return #ARGV - 4
"#
);

/// KEYS: pz1, pz2, ...
/// Users whose every entry in a channel expired (their nodes died) leave it, with the leave
/// event a clean close would have published; each removed before its event, so the sweeps of
/// many nodes publish it once. Returns how many left.
pub const SWEEP: &str = with_now!(
    r#"
local left = 0
for i = 1, #KEYS do
  for _, user in ipairs(redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', now)) do
    if redis.call('ZREM', KEYS[i], user) == 1 then
      redis.call('SPUBLISH', string.sub(KEYS[i], 1, -2), 'p-' .. user)
      left = left + 1
    end
  end
end
return left
"#
);

/// KEYS: pz. Who is present in the channel (live entries).
pub const PRESENT: &str = with_now!(
    r#"
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
"#
);

/// KEYS: z1, c1, z2, c2, ... ARGV: node, TTL ms, key TTL s, count1, count2, ...
/// Sets this node's registry entry for each user (count 0 removes it), in one call.
pub const REGISTER: &str = with_now!(
    r#"
local expiry = now + tonumber(ARGV[2])
for i = 4, #ARGV do
  local z, c = KEYS[2 * (i - 3) - 1], KEYS[2 * (i - 3)]
  if tonumber(ARGV[i]) > 0 then
    redis.call('ZADD', z, expiry, ARGV[1])
    redis.call('HSET', c, ARGV[1], ARGV[i])
    redis.call('EXPIRE', z, ARGV[3])
    redis.call('EXPIRE', c, ARGV[3])
  else
    redis.call('ZREM', z, ARGV[1])
    redis.call('HDEL', c, ARGV[1])
  end
end
return #ARGV - 3
"#
);

/// KEYS: z1, z2, ... Which users have a live registry entry (1/0 each).
pub const ONLINE: &str = with_now!(
    r#"
local out = {}
for i = 1, #KEYS do
  out[i] = redis.call('ZCOUNT', KEYS[i], '(' .. now, '+inf') > 0 and 1 or 0
end
return out
"#
);

/// KEYS: z, c. The user's live nodes and the connections each holds:
/// {node1, count1, node2, count2, ...}.
pub const NODES: &str = with_now!(
    r#"
local nodes = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
local out = {}
for _, n in ipairs(nodes) do
  table.insert(out, n)
  table.insert(out, redis.call('HGET', KEYS[2], n) or '0')
end
return out
"#
);

/// KEYS: z. ARGV: payload. Publishes `payload` to the inbox of every node holding a
/// connection of the user; returns how many.
pub const SEND: &str = with_now!(
    r#"
local nodes = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
for _, n in ipairs(nodes) do
  redis.call('SPUBLISH', 'sb:n:{' .. n .. '}', ARGV[1])
end
return #nodes
"#
);

/// Every script of this module, for loading at connect.
pub const ALL: [&str; 9] = [
    JOIN, LEAVE, REFRESH, SWEEP, PRESENT, REGISTER, ONLINE, NODES, SEND,
];

/// How long a channel's `pz` key lives after its last refresh: its entries' TTL, then time
/// for the sweeps (every 5/12 of the TTL, at most 5 s) to find them expired and publish the
/// leaves; past that Redis drops the key itself.
pub fn users_key_ttl_s(ttl_s: u64) -> u64 {
    2 * ttl_s + 10
}

pub fn channel_users_key(channel: &str) -> String {
    format!("sb:{{{channel}}}:pz")
}

pub fn channel_user_nodes_key(channel: &str, user: &str) -> String {
    format!("sb:{{{channel}}}:pn:{user}")
}

pub fn user_key(user: &str) -> String {
    format!("sb:u:{{{user}}}")
}

pub fn user_counts_key(user: &str) -> String {
    format!("sb:u:{{{user}}}:c")
}

/// A node's inbox: direct messages and disconnects for its users (subscribed on every shard,
/// since a user's registry lives on the user's shard).
pub fn inbox(node: &str) -> String {
    format!("sb:n:{{{node}}}")
}

/// What arrives in a node's inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbox {
    /// A direct message for the user's connections: kind byte and payload.
    Send {
        user: String,
        kind: u8,
        payload: Vec<u8>,
    },
    /// Close every connection of the user.
    Disconnect { user: String },
}

/// `d<user> <kind><payload>` or `x<user>`.
pub fn encode_inbox(i: &Inbox) -> Vec<u8> {
    match i {
        Inbox::Send {
            user,
            kind,
            payload,
        } => {
            let mut out = Vec::with_capacity(user.len() + payload.len() + 3);
            out.push(b'd');
            out.extend_from_slice(user.as_bytes());
            out.push(b' ');
            out.push(*kind);
            out.extend_from_slice(payload);
            out
        }
        Inbox::Disconnect { user } => {
            let mut out = vec![b'x'];
            out.extend_from_slice(user.as_bytes());
            out
        }
    }
}

pub fn decode_inbox(b: &[u8]) -> Option<Inbox> {
    match b.split_first()? {
        (b'd', rest) => {
            let sp = rest.iter().position(|&c| c == b' ')?;
            let user = std::str::from_utf8(rest.get(..sp)?).ok()?.to_string();
            let kind = *rest.get(sp + 1)?;
            Some(Inbox::Send {
                user,
                kind,
                payload: rest.get(sp + 2..)?.to_vec(),
            })
        }
        (b'x', rest) => Some(Inbox::Disconnect {
            user: std::str::from_utf8(rest).ok()?.to_string(),
        }),
        _ => None,
    }
}

/// A join (`true`) or leave of `user`, from a channel's Pub/Sub payload `p+user` / `p-user`.
pub fn decode_presence_event(b: &[u8]) -> Option<(bool, &str)> {
    let (join, user) = match b {
        [b'p', b'+', user @ ..] => (true, user),
        [b'p', b'-', user @ ..] => (false, user),
        _ => return None,
    };
    Some((join, std::str::from_utf8(user).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbox_messages_round_trip() {
        for i in [
            Inbox::Send {
                user: "alice".into(),
                kind: b'j',
                payload: b"{\"hi\": \"x y\"}".to_vec(),
            },
            Inbox::Send {
                user: "a@b".into(),
                kind: b'b',
                payload: vec![0, 255, b' '],
            },
            Inbox::Disconnect { user: "bob".into() },
        ] {
            assert_eq!(decode_inbox(&encode_inbox(&i)), Some(i));
        }
        assert_eq!(decode_inbox(b"q"), None);
        assert_eq!(decode_inbox(b"dnospace"), None);
    }

    #[test]
    fn presence_events_are_not_messages() {
        assert_eq!(decode_presence_event(b"p+alice"), Some((true, "alice")));
        assert_eq!(decode_presence_event(b"p-alice"), Some((false, "alice")));
        assert_eq!(decode_presence_event(b"12 e j{}"), None);
    }

    #[test]
    fn keys_share_their_hash_tags() {
        assert_eq!(channel_users_key("c"), "sb:{c}:pz");
        assert_eq!(channel_user_nodes_key("c", "u"), "sb:{c}:pn:u");
        assert_eq!(user_key("u"), "sb:u:{u}");
        assert_eq!(user_counts_key("u"), "sb:u:{u}:c");
        assert_eq!(inbox("n1"), "sb:n:{n1}");
        // REFRESH and SWEEP derive the Pub/Sub channel in Lua: string.sub(pz, 1, -2).
        for c in ["c", "room:1", "a.b-c_d@e"] {
            let pz = channel_users_key(c);
            let pubsub = crate::hub::redis::wire::pubsub_channel(c);
            assert_eq!(pz.strip_suffix('z'), Some(pubsub.as_str()));
        }
    }
}
