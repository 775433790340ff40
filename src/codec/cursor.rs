//! The resume cursors of SSE and long-polling: `5` (every channel from id 5) or a cursor over
//! several channels, `room:1:5@E1,news:9@E2` — each channel's last id and, after `@`, the
//! epoch of its stream (channel names may contain `:` and `@`, never `,`; the position is
//! after the last `:`, and an epoch is letters and digits only). An id without `@epoch` is
//! accepted, as cursors handed out before epochs were; it is trusted as it is.

use crate::codec::position::{Epoch, Since};
use crate::codec::protocol;

/// Where a client asks to resume from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// From now: no replay.
    Live,
    /// Every channel from this position.
    All(Since),
    /// Each listed channel from its own position; others from now.
    PerChannel(Vec<(String, Since)>),
}

impl Resume {
    /// Parses a cursor or a bare id; `None` if it is neither.
    pub fn parse(s: &str) -> Option<Resume> {
        let s = s.trim();
        if s.is_empty() {
            return Some(Resume::Live);
        }
        if let Some(all) = position(s) {
            return Some(Resume::All(all));
        }
        let mut list = Vec::new();
        for part in s.split(',') {
            let (name, at) = part.trim().rsplit_once(':')?;
            if !protocol::valid_channel(name) {
                return None;
            }
            list.push((name.to_string(), position(at)?));
        }
        Some(Resume::PerChannel(list))
    }

    /// The `since` for one channel.
    pub fn since(&self, channel: &str) -> Option<Since> {
        match self {
            Resume::Live => None,
            Resume::All(s) => Some(s.clone()),
            Resume::PerChannel(list) => list
                .iter()
                .find(|(c, _)| c == channel)
                .map(|(_, s)| s.clone()),
        }
    }
}

/// `5` or `5@E`.
fn position(s: &str) -> Option<Since> {
    let (id, epoch) = match s.split_once('@') {
        Some((id, e)) => (id, Some(Epoch::parse(e)?)),
        None => (s, None),
    };
    Some(Since {
        id: id.parse().ok()?,
        epoch,
    })
}

/// Writes a cursor over `entries` (channel, last id sent, epoch): `a:5@E1,b:9@E2`.
pub fn write_cursor<'a>(
    out: &mut String,
    entries: impl IntoIterator<Item = (&'a str, u64, Option<&'a Epoch>)>,
) {
    for (i, (name, seq, epoch)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push(':');
        out.push_str(&seq.to_string());
        if let Some(e) = epoch {
            out.push('@');
            out.push_str(e.as_str());
        }
    }
}

/// The `user=` a stream request names, if any (a bad one is a 400).
pub fn user_of(query: &str) -> Result<Option<Box<str>>, crate::error::HandshakeError> {
    match crate::codec::query::first(query, "user") {
        None => Ok(None),
        Some(u) if protocol::valid_user(&u) => Ok(Some(u.into_owned().into_boxed_str())),
        Some(_) => Err(crate::error::HandshakeError::Malformed("invalid user name")),
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
        assert_eq!(Resume::parse("42"), Some(Resume::All(Since::id(42))));
        let r = Resume::parse("room:1:5,news:9").unwrap();
        assert_eq!(r.since("room:1"), Some(Since::id(5)));
        assert_eq!(r.since("news"), Some(Since::id(9)));
        assert_eq!(r.since("other"), None);
        assert_eq!(Resume::parse("nocolon"), None);
        assert_eq!(Resume::parse("a:x"), None);
        assert_eq!(Resume::parse("a b:1"), None);
        assert_eq!(Resume::parse("-1"), None);
    }

    #[test]
    fn positions_carry_their_epoch_both_ways() {
        let e = Epoch::parse("k3j2h1").unwrap();
        let at = |id| Since {
            id,
            epoch: Some(e.clone()),
        };
        let r = Resume::parse("a@b:c:5@k3j2h1,news:9").unwrap();
        assert_eq!(r.since("a@b:c"), Some(at(5)), "names may hold @ and :");
        assert_eq!(r.since("news"), Some(Since::id(9)));
        assert_eq!(Resume::parse("7@k3j2h1"), Some(Resume::All(at(7))));
        assert_eq!(Resume::parse("a:5@"), None, "an empty epoch");
        assert_eq!(
            Resume::parse("a:5@x-y"),
            None,
            "an epoch is letters and digits"
        );
        let mut out = String::new();
        write_cursor(&mut out, [("a@b:c", 5, Some(&e)), ("news", 9, None)]);
        assert_eq!(out, "a@b:c:5@k3j2h1,news:9");
        assert_eq!(Resume::parse(&out), Some(r));
        assert_eq!(Resume::parse("-1"), None);
    }
}
