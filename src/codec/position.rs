//! A position in a channel's stream as the wire carries it: the stream's [`Epoch`] and an
//! id in it ([`Since`]). Ids compare only within one epoch.

use std::fmt;
use std::sync::Arc;

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

#[cfg(test)]
mod tests {
    use super::*;

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
