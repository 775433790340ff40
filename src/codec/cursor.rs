//! Resume positions as the wire carries them: a stream's epoch, a position in it, and the
//! cursors of SSE and long-polling: `5` (every channel from id 5) or a cursor over several
//! channels, `room:1:5,news:9` (channel names may contain `:`, never `,`; the id is after
//! the last `:`).

use std::fmt;
use std::sync::Arc;

use crate::codec::protocol;

/// The identity of a channel's stream. Ids compare only within one epoch: a new epoch means
/// the stream started again (a restarted single node, or a channel Redis lost), so a
/// position from another epoch cannot be resumed exactly.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Epoch(Arc<str>);

/// Longest epoch accepted from a client.
pub const MAX_EPOCH_BYTES: usize = 32;

impl Epoch {
    /// An epoch given by a client or read from a store: 1 to [`MAX_EPOCH_BYTES`] ASCII
    /// letters and digits (so it needs no escaping in JSON, cursors or URLs).
    pub fn parse(s: &str) -> Option<Epoch> {
        let ok = !s.is_empty()
            && s.len() <= MAX_EPOCH_BYTES
            && s.bytes().all(|b| b.is_ascii_alphanumeric());
        ok.then(|| Epoch(s.into()))
    }

    /// A fresh random epoch (64 bits from the OS-seeded hasher keys, base 36).
    pub fn random() -> Epoch {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        let mut n = h.finish();
        let mut s = String::with_capacity(13);
        while s.len() < 12 {
            let digit = (n % 36) as u32;
            s.push(char::from_digit(digit, 36).unwrap_or('0'));
            n /= 36;
        }
        Epoch(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a client asks to resume: after message `id`, of stream `epoch` when it knows it
/// (without one, ids are trusted as they are — unsafe across restarts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Since {
    pub id: u64,
    pub epoch: Option<Epoch>,
}

impl Since {
    pub fn id(id: u64) -> Since {
        Since { id, epoch: None }
    }
}

/// Where a client asks to resume from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// From now: no replay.
    Live,
    /// Every channel from this id.
    All(u64),
    /// Each listed channel from its own id; others from now.
    PerChannel(Vec<(String, u64)>),
}

impl Resume {
    /// Parses a cursor or a bare id; `None` if it is neither.
    pub fn parse(s: &str) -> Option<Resume> {
        let s = s.trim();
        if s.is_empty() {
            return Some(Resume::Live);
        }
        if let Ok(n) = s.parse::<u64>() {
            return Some(Resume::All(n));
        }
        let mut list = Vec::new();
        for part in s.split(',') {
            let (name, id) = part.trim().rsplit_once(':')?;
            if !protocol::valid_channel(name) {
                return None;
            }
            list.push((name.to_string(), id.parse().ok()?));
        }
        Some(Resume::PerChannel(list))
    }

    /// The `since` for one channel.
    pub fn since(&self, channel: &str) -> Option<u64> {
        match self {
            Resume::Live => None,
            Resume::All(n) => Some(*n),
            Resume::PerChannel(list) => list.iter().find(|(c, _)| c == channel).map(|&(_, n)| n),
        }
    }
}

/// Writes a cursor over `entries` (channel, last id sent): `a:5,b:9`.
pub fn write_cursor<'a>(out: &mut String, entries: impl IntoIterator<Item = (&'a str, u64)>) {
    for (i, (name, seq)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push(':');
        out.push_str(&seq.to_string());
    }
}

/// The channels a stream request names (`?channel=a&channel=b`): at least one, each valid,
/// at most `max`.
pub fn channels_of(query: &str, max: usize) -> Result<Vec<String>, crate::error::HandshakeError> {
    use crate::error::HandshakeError::Malformed;
    let mut channels: Vec<String> = Vec::new();
    for c in crate::codec::query::all(query, "channel") {
        if !protocol::valid_channel(&c) {
            return Err(Malformed("invalid channel name"));
        }
        if !channels.iter().any(|x| *x == c) {
            channels.push(c.into_owned());
        }
    }
    if channels.is_empty() {
        return Err(Malformed("give at least one ?channel="));
    }
    if channels.len() > max {
        return Err(Malformed("more channels than --max-subscriptions"));
    }
    Ok(channels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_and_cursors() {
        assert_eq!(Resume::parse(""), Some(Resume::Live));
        assert_eq!(Resume::parse("42"), Some(Resume::All(42)));
        let r = Resume::parse("room:1:5,news:9").unwrap();
        assert_eq!(r.since("room:1"), Some(5));
        assert_eq!(r.since("news"), Some(9));
        assert_eq!(r.since("other"), None);
        assert_eq!(Resume::parse("nocolon"), None);
        assert_eq!(Resume::parse("a:x"), None);
        assert_eq!(Resume::parse("a b:1"), None);
        assert_eq!(Resume::parse("-1"), None);
    }

    #[test]
    fn epochs_are_short_safe_and_differ() {
        let a = Epoch::random();
        let b = Epoch::random();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 12);
        assert_eq!(Epoch::parse(a.as_str()), Some(a));
        assert_eq!(Epoch::parse(""), None);
        assert_eq!(Epoch::parse("a b"), None);
        assert_eq!(Epoch::parse("a:b"), None);
        assert_eq!(Epoch::parse(&"x".repeat(33)), None);
    }
}
