//! The Lua scripts that make each step atomic in Redis, and the decoding of their replies.
//!
//! **publish** — in one step: create the stream's epoch if it has none (the node proposes a
//! random one), take the next id, append to history (capped by count; entries older than the
//! history TTL are dropped from its head a few per publish, and the whole history expires
//! with the TTL after the last publish), and SPUBLISH the message. One step, so the id order
//! is the delivery order on every node.
//!
//! **read** — the epoch, the last id, and the live entries after `since` (from the stream's
//! start if the caller's epoch is not the stream's), in one round trip.
//!
//! **fence** — where the stream stands (epoch, last id), and a new epoch for it when a node
//! proves it went back: Redis lost writes (a crash inside `appendfsync everysec`, a failover
//! to a replica that lagged) and hands out ids it had handed out before, for other messages.
//! Positions in the old epoch then name two different messages; a new epoch voids them
//! (resumes answer `recovered:false`) instead of letting a client skip what it never saw.
//!
//! All are loaded with SCRIPT LOAD when a connection comes up (so a Redis restart, which
//! forgets them, is covered) and called with EVALSHA.

use crate::codec::position::Epoch;
use crate::hub::engine::{EngineError, Published};
use crate::hub::redis::resp::Value;
use crate::hub::redis::wire::{Entry, Kept, Kind};

/// How long a channel's meta (epoch and last id) outlives its last publish: much longer than
/// history, so a client at the top of an idle channel still resumes exactly.
pub const META_TTL_S: u64 = 7 * 24 * 3600;
/// Expired history entries dropped from the head per publish (publishes add one each, so
/// the expired part shrinks).
const TRIM_PER_PUBLISH: u32 = 4;

/// KEYS: meta, history, pubsub channel. ARGV: kind, payload, epoch proposal, history size,
/// history TTL (s), meta TTL (s), trim per publish. Returns {id, epoch}.
pub const PUBLISH: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[3]
  redis.call('HSET', KEYS[1], 'e', epoch)
end
local id = redis.call('HINCRBY', KEYS[1], 't', 1)
redis.call('EXPIRE', KEYS[1], ARGV[6])
local size = tonumber(ARGV[4])
if size > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local ttl_ms = tonumber(ARGV[5]) * 1000
  redis.call('XADD', KEYS[2], 'MAXLEN', size, id .. '-0', 'k', ARGV[1], 'd', ARGV[2], 't', now)
  for _ = 1, tonumber(ARGV[7]) do
    local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
    if #head == 0 or tonumber(head[1][2][6]) >= now - ttl_ms then break end
    redis.call('XDEL', KEYS[2], head[1][1])
  end
  redis.call('EXPIRE', KEYS[2], ARGV[5])
end
redis.call('SPUBLISH', KEYS[3], id .. ' ' .. epoch .. ' ' .. ARGV[1] .. ARGV[2])
return {id, epoch}
"#;

/// KEYS: meta, history. ARGV: since, the caller's epoch ('' for none), limit, history TTL
/// (s), epoch proposal, meta TTL (s). Returns {epoch, top, {id, kind, payload}...}: entries
/// after `since` (after 0 if the epoch differs) not older than the TTL, at most `limit`. A
/// stream read before its first publish is created (its epoch set), so the subscriber and the
/// first publisher agree on it.
pub const READ: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[5]
  redis.call('HSET', KEYS[1], 'e', epoch, 't', 0)
  redis.call('EXPIRE', KEYS[1], ARGV[6])
end
local top = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
local since = tonumber(ARGV[1])
if ARGV[2] ~= '' and ARGV[2] ~= epoch then since = 0 end
local out = {epoch, top}
local limit = tonumber(ARGV[3])
if limit == 0 or since >= top then return out end
local t = redis.call('TIME')
local oldest_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[4]) * 1000
local entries = redis.call('XRANGE', KEYS[2], '(' .. since .. '-0', '+', 'COUNT', limit)
for _, e in ipairs(entries) do
  local f = e[2]
  if tonumber(f[6]) >= oldest_ms then
    local id = string.match(e[1], '^(%d+)-')
    table.insert(out, {tonumber(id), f[2], f[4]})
  end
end
return out
"#;

/// KEYS: meta, history. ARGV: the node's epoch, the last id it received in it, force ('1':
/// the node has proof the stream went back), epoch proposal, the digest of the message the
/// node has at that id ('' if unknown). Returns {epoch or nil, top, 1 if this call gave it a
/// new epoch else 0}. Ids only grow within an epoch, so a top below an id the node received
/// is proof too, and this check cannot be fooled by a publish racing it; the digest catches
/// a node that was away while the ids were handed out again past its position.
pub const FENCE: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'e')
local top = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
local rotated = 0
local back = ARGV[3] == '1' or top < tonumber(ARGV[2])
if epoch and epoch == ARGV[1] and not back and ARGV[5] ~= '' then
  local at = redis.call('XRANGE', KEYS[2], ARGV[2] .. '-0', ARGV[2] .. '-0')
  back = #at == 1 and redis.sha1hex(at[1][2][2] .. at[1][2][4]) ~= ARGV[5]
end
if epoch and epoch == ARGV[1] and back then
  epoch = ARGV[4]
  redis.call('HSET', KEYS[1], 'e', epoch)
  rotated = 1
end
return {epoch or false, top, rotated}
"#;

/// Every script the engine runs, for SCRIPT LOAD at connect.
pub fn all() -> Vec<&'static str> {
    let mut all = vec![PUBLISH, READ, FENCE];
    all.extend(crate::hub::redis::presence::ALL);
    all
}

/// The SHA1 of each script, as EVALSHA names it.
#[derive(Debug, Clone)]
pub struct Shas {
    pub publish: String,
    pub read: String,
    pub fence: String,
    pub join: String,
    pub leave: String,
    pub refresh: String,
    pub sweep: String,
    pub present: String,
    pub register: String,
    pub online: String,
    pub nodes: String,
    pub send: String,
}

impl Shas {
    pub fn new() -> Shas {
        use crate::hub::redis::presence as p;
        Shas {
            publish: sha1_hex(PUBLISH),
            read: sha1_hex(READ),
            fence: sha1_hex(FENCE),
            join: sha1_hex(p::JOIN),
            leave: sha1_hex(p::LEAVE),
            refresh: sha1_hex(p::REFRESH),
            sweep: sha1_hex(p::SWEEP),
            present: sha1_hex(p::PRESENT),
            register: sha1_hex(p::REGISTER),
            online: sha1_hex(p::ONLINE),
            nodes: sha1_hex(p::NODES),
            send: sha1_hex(p::SEND),
        }
    }
}

impl Default for Shas {
    fn default() -> Self {
        Self::new()
    }
}

fn sha1_hex(script: &str) -> String {
    use sha1::{Digest, Sha1};
    Sha1::digest(script.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The arguments of a publish (after `EVALSHA sha 3`).
pub fn publish_args(
    channel: &str,
    kind: Kind,
    payload: &[u8],
    proposal: &Epoch,
    history_size: usize,
    history_ttl_s: u64,
) -> Vec<Vec<u8>> {
    vec![
        crate::hub::redis::wire::meta_key(channel).into_bytes(),
        crate::hub::redis::wire::history_key(channel).into_bytes(),
        crate::hub::redis::wire::pubsub_channel(channel).into_bytes(),
        vec![kind.byte()],
        payload.to_vec(),
        proposal.as_str().as_bytes().to_vec(),
        history_size.to_string().into_bytes(),
        history_ttl_s.max(1).to_string().into_bytes(),
        META_TTL_S.to_string().into_bytes(),
        TRIM_PER_PUBLISH.to_string().into_bytes(),
    ]
}

/// The arguments of a read (after `EVALSHA sha 2`).
pub fn read_args(
    channel: &str,
    since: u64,
    epoch: Option<&Epoch>,
    limit: usize,
    history_ttl_s: u64,
    proposal: &Epoch,
) -> Vec<Vec<u8>> {
    vec![
        crate::hub::redis::wire::meta_key(channel).into_bytes(),
        crate::hub::redis::wire::history_key(channel).into_bytes(),
        since.to_string().into_bytes(),
        epoch.map_or(Vec::new(), |e| e.as_str().as_bytes().to_vec()),
        limit.to_string().into_bytes(),
        history_ttl_s.max(1).to_string().into_bytes(),
        proposal.as_str().as_bytes().to_vec(),
        META_TTL_S.to_string().into_bytes(),
    ]
}

/// The arguments of a fence (after `EVALSHA sha 1`).
pub fn fence_args(
    channel: &str,
    epoch: &Epoch,
    top: u64,
    force: bool,
    digest: Option<&str>,
) -> Vec<Vec<u8>> {
    vec![
        crate::hub::redis::wire::meta_key(channel).into_bytes(),
        crate::hub::redis::wire::history_key(channel).into_bytes(),
        epoch.as_str().as_bytes().to_vec(),
        top.to_string().into_bytes(),
        vec![if force { b'1' } else { b'0' }],
        Epoch::random().as_str().as_bytes().to_vec(),
        digest.unwrap_or("").as_bytes().to_vec(),
    ]
}

fn bad(what: &str, v: &Value) -> EngineError {
    EngineError::Unavailable(format!("unexpected reply to {what}: {v:?}").into())
}

/// A Redis error reply as the client is told it.
pub fn redis_error(e: &str) -> EngineError {
    EngineError::Unavailable(format!("redis: {e}").into())
}

/// Decodes a publish reply.
pub fn published(v: Value) -> Result<Published, EngineError> {
    if let Value::Error(e) = &v {
        return Err(redis_error(e));
    }
    let parts = v.as_array().unwrap_or_default();
    match (
        parts.first().and_then(Value::as_int),
        parts.get(1).and_then(Value::as_str),
    ) {
        (Some(id), Some(e)) if id > 0 => Ok(Published {
            id: id as u64,
            epoch: Epoch::parse(e).ok_or_else(|| bad("publish", &v))?,
        }),
        _ => Err(bad("publish", &v)),
    }
}

/// Decodes a read reply.
pub fn kept(v: Value) -> Result<Kept, EngineError> {
    if let Value::Error(e) = &v {
        return Err(redis_error(e));
    }
    let parts = v.as_array().ok_or_else(|| bad("read", &v))?;
    let epoch = parts
        .first()
        .and_then(Value::as_str)
        .and_then(Epoch::parse)
        .ok_or_else(|| bad("read", &v))?;
    let top = parts.get(1).and_then(Value::as_int).unwrap_or(0).max(0) as u64;
    let mut entries = Vec::new();
    for e in parts.iter().skip(2) {
        let f = e.as_array().ok_or_else(|| bad("read", &v))?;
        let id = f
            .first()
            .and_then(Value::as_int)
            .ok_or_else(|| bad("read", &v))?;
        let kind = f
            .get(1)
            .and_then(Value::as_bytes)
            .and_then(|k| k.first().copied())
            .and_then(Kind::from_byte)
            .ok_or_else(|| bad("read", &v))?;
        let payload = f
            .get(2)
            .and_then(Value::as_bytes)
            .unwrap_or_default()
            .to_vec();
        entries.push(Entry {
            id: id.max(0) as u64,
            kind,
            payload,
        });
    }
    let oldest = entries.first().map_or(top + 1, |e| e.id);
    Ok(Kept {
        epoch,
        top,
        oldest,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::Bulk(Some(s.as_bytes().to_vec()))
    }

    #[test]
    fn publish_replies() {
        let ok = Value::Array(Some(vec![Value::Int(7), bulk("e1")]));
        let p = published(ok).unwrap();
        assert_eq!((p.id, p.epoch.as_str()), (7, "e1"));
        assert!(published(Value::Error("NOSCRIPT x".into())).is_err());
        assert!(published(Value::Int(3)).is_err());
    }

    #[test]
    fn read_replies() {
        let v = Value::Array(Some(vec![
            bulk("e1"),
            Value::Int(9),
            Value::Array(Some(vec![Value::Int(8), bulk("t"), bulk("a")])),
            Value::Array(Some(vec![Value::Int(9), bulk("b"), bulk("\u{0}")])),
        ]));
        let k = kept(v).unwrap();
        assert_eq!((k.epoch.as_str(), k.top, k.oldest), ("e1", 9, 8));
        assert_eq!(k.entries.len(), 2);
        assert_eq!(
            (k.entries[1].kind, &k.entries[1].payload[..]),
            (Kind::Binary, &[0u8][..])
        );
        let empty = Value::Array(Some(vec![bulk("fresh"), Value::Int(0)]));
        let k = kept(empty).unwrap();
        assert_eq!((k.epoch.as_str(), k.top, k.oldest), ("fresh", 0, 1));
        assert!(kept(Value::Array(Some(vec![Value::Bulk(None)]))).is_err());
    }
}
