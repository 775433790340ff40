//! What the cluster engine keeps in Redis and how it reads it back: the key layout, the
//! payload of a message on its Pub/Sub channel, and the decoded forms of the scripts'
//! replies. Pure: bytes in, values out.
//!
//! Keys of one channel share the hash tag `{channel}`, so they live on one shard (and one
//! slot of a Redis Cluster): `sb:{C}:m` (meta hash: `e` epoch, `t` last id), `sb:{C}:h`
//! (history: a stream whose entry ids are the message ids, `<id>-0`, fields `k` kind, `d`
//! payload, `t` publish time in ms) and the sharded Pub/Sub channel `sb:{C}:p`.

use std::time::Instant;

use crate::codec::position::Epoch;
use crate::codec::protocol::Data;
use crate::hub::msg::Msg;

/// The Pub/Sub channel of `channel`.
pub fn pubsub_channel(channel: &str) -> String {
    format!("sb:{{{channel}}}:p")
}

/// The channel a Pub/Sub channel name belongs to.
pub fn channel_of(pubsub: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(pubsub).ok()?;
    s.strip_prefix("sb:{")?.strip_suffix("}:p")
}

pub fn meta_key(channel: &str) -> String {
    format!("sb:{{{channel}}}:m")
}

pub fn history_key(channel: &str) -> String {
    format!("sb:{{{channel}}}:h")
}

/// How a payload was published: JSON, text, or bytes (one byte on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Json,
    Text,
    Binary,
}

impl Kind {
    pub fn byte(self) -> u8 {
        match self {
            Kind::Json => b'j',
            Kind::Text => b't',
            Kind::Binary => b'b',
        }
    }

    pub fn from_byte(b: u8) -> Option<Kind> {
        match b {
            b'j' => Some(Kind::Json),
            b't' => Some(Kind::Text),
            b'b' => Some(Kind::Binary),
            _ => None,
        }
    }

    /// The kind and bytes a published payload is stored as.
    pub fn of<'a>(data: &Data<'a>) -> (Kind, &'a [u8]) {
        match *data {
            Data::Json(j) => (Kind::Json, j.as_bytes()),
            Data::Text(t) => (Kind::Text, t.as_bytes()),
            Data::Binary(b) => (Kind::Binary, b),
        }
    }
}

/// One message as Redis keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: u64,
    pub kind: Kind,
    pub payload: Vec<u8>,
}

impl Entry {
    /// The payload as the publisher gave it (text that is not UTF-8 is taken as bytes).
    pub fn data(&self) -> Data<'_> {
        match (self.kind, std::str::from_utf8(&self.payload)) {
            (Kind::Json, Ok(s)) => Data::Json(s),
            (Kind::Text, Ok(s)) => Data::Text(s),
            _ => Data::Binary(&self.payload),
        }
    }

    /// What the fence script compares with the entry Redis keeps at this id: SHA-1 (hex) of
    /// the kind byte and the payload, as Lua's `redis.sha1hex(k .. d)` computes it.
    pub fn digest(&self) -> String {
        use sha1::{Digest, Sha1};
        let mut h = Sha1::new();
        h.update([self.kind.byte()]);
        h.update(&self.payload);
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Encodes the message once for every subscriber (see [`Msg`]).
    pub fn encode(&self, channel: &str) -> Msg {
        self.encode_at(channel, Instant::now())
    }

    pub fn encode_at(&self, channel: &str, at: Instant) -> Msg {
        Msg::encode(channel, self.id, &self.data(), at)
    }
}

/// A channel's stream as a read found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub epoch: Epoch,
    /// The last id handed out.
    pub top: u64,
    /// The first id still kept after the read's `since` (history is trimmed by count and
    /// age); `top + 1` when nothing after it is kept.
    pub oldest: u64,
    /// Entries after `since`, oldest first.
    pub entries: Vec<Entry>,
}

impl Kept {
    /// Whether a resume from `since` is exact (decided as the memory engine does): the same
    /// epoch, no newer than the stream, and every message after it still kept.
    pub fn recovered(&self, since: Option<&crate::codec::position::Since>) -> bool {
        match since {
            None => true,
            Some(s) if s.epoch.as_ref().is_some_and(|e| *e != self.epoch) => false,
            Some(s) => s.id <= self.top && s.id + 1 >= self.oldest,
        }
    }
}

/// The Pub/Sub payload of a message: `<id> <epoch> <kind byte><payload bytes>`.
pub fn encode_published(id: u64, epoch: &Epoch, kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 40);
    out.extend_from_slice(id.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(epoch.as_str().as_bytes());
    out.push(b' ');
    out.push(kind.byte());
    out.extend_from_slice(payload);
    out
}

/// Decodes a Pub/Sub payload; `None` if it is not one of ours.
pub fn decode_published(bytes: &[u8]) -> Option<(Entry, Epoch)> {
    let sp = bytes.iter().position(|&b| b == b' ')?;
    let id: u64 = std::str::from_utf8(bytes.get(..sp)?).ok()?.parse().ok()?;
    let rest = bytes.get(sp + 1..)?;
    let sp = rest.iter().position(|&b| b == b' ')?;
    let epoch = Epoch::parse(std::str::from_utf8(rest.get(..sp)?).ok()?)?;
    let kind = Kind::from_byte(*rest.get(sp + 1)?)?;
    let payload = rest.get(sp + 2..)?.to_vec();
    Some((Entry { id, kind, payload }, epoch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_sha1_of_the_kind_byte_and_the_payload() {
        // As Lua's redis.sha1hex('t' .. 'hi') (Python: hashlib.sha1(b'thi')).
        let e = Entry {
            id: 1,
            kind: Kind::Text,
            payload: b"hi".to_vec(),
        };
        assert_eq!(e.digest(), "25a2bca7ae5a8ea03be09ca8d282480c08c13052");
    }

    #[test]
    fn keys_share_the_channel_as_hash_tag() {
        assert_eq!(meta_key("room:1"), "sb:{room:1}:m");
        assert_eq!(history_key("room:1"), "sb:{room:1}:h");
        assert_eq!(pubsub_channel("a@b"), "sb:{a@b}:p");
        assert_eq!(channel_of(b"sb:{a@b}:p"), Some("a@b"));
        assert_eq!(channel_of(b"other"), None);
    }

    #[test]
    fn published_payloads_round_trip_any_bytes() {
        let e = Epoch::parse("k3j2").unwrap();
        for (kind, payload) in [
            (Kind::Json, &b"{\"a\": [1, 2]}"[..]),
            (Kind::Text, b"two words \n and a line"),
            (Kind::Binary, &[0, 255, b' ', 10][..]),
            (Kind::Text, b""),
        ] {
            let wire = encode_published(42, &e, kind, payload);
            let (entry, epoch) = decode_published(&wire).unwrap();
            assert_eq!(
                (entry.id, entry.kind, &entry.payload[..]),
                (42, kind, payload)
            );
            assert_eq!(epoch, e);
        }
        assert_eq!(decode_published(b"x k3j2 jnull"), None);
        assert_eq!(decode_published(b"1 k3j2 xnull"), None);
        assert_eq!(decode_published(b"1 bad-epoch jnull"), None);
        assert_eq!(decode_published(b"1 k3j2"), None);
    }

    #[test]
    fn entries_give_back_what_was_published() {
        let entry = |kind, payload: &[u8]| Entry {
            id: 1,
            kind,
            payload: payload.to_vec(),
        };
        let m = entry(Kind::Json, b"{\"x\":1}").encode("c");
        assert_eq!(
            m.json(),
            r#"{"type":"message","channel":"c","id":1,"data":{"x":1}}"#
        );
        let m = entry(Kind::Text, b"hi").encode("c");
        assert_eq!(
            m.json(),
            r#"{"type":"message","channel":"c","id":1,"data":"hi"}"#
        );
        let bad = entry(Kind::Text, &[0xff]).encode("c");
        assert!(
            bad.json().contains("\"encoding\":\"base64\""),
            "not UTF-8: bytes"
        );
    }
}
