//! Resume positions for SSE and long-polling: `5` (every channel from id 5) or a cursor over
//! several channels, `room:1:5,news:9` (channel names may contain `:`, never `,`; the id is
//! after the last `:`).

use crate::codec::protocol;
use crate::hub::session::{LocalIndex, Session};

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

/// A session's current position, for an SSE `id:` or a poll reply.
pub struct Cursor<'a> {
    entries: Vec<(&'a str, u64)>,
}

impl<'a> Cursor<'a> {
    pub fn of(session: &Session, index: &'a LocalIndex) -> Cursor<'a> {
        Cursor {
            entries: session
                .subs
                .iter()
                .filter_map(|r| Some((index.name_of(r)?, r.last_seq)))
                .collect(),
        }
    }

    pub fn write(&self, out: &mut String) {
        for (i, (name, seq)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(name);
            out.push(':');
            out.push_str(&seq.to_string());
        }
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
}
