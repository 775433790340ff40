//! Channel permissions, as a token's `subscribe` or `publish` claim grants them: a list of
//! exact names (`room:1`), prefix patterns (`room:*`) and `*` (every channel).
//!
//! Semantics, decided here and relied on by the transports:
//! - `*` stands only at the end and matches any rest, the empty one included: `room:*`
//!   allows `room:` itself (it starts with `room:`, as the issue words it), `room:1`,
//!   `room:a:b`, and not `room` or `rooms`. `room*` (no colon) allows `room`, `rooms`,
//!   `room:1`. `*` alone allows every channel.
//! - A pattern is a valid channel name optionally followed by one `*`, or `*` alone. Anything
//!   else (`a*b`, `**`, a space, a non-ASCII byte, over 128 bytes before the `*`) makes the
//!   whole list invalid, and the token carrying it is refused: a list half understood is a
//!   permission half guessed.
//! - An empty list allows nothing. (Whether an *absent* claim is empty is the token's
//!   decision: see [`crate::auth::token`].)
//!
//! A connection holds two of these for hours, so the list is one boxed string: the patterns
//! sorted, without duplicates, joined by a space (in no channel name): 16 bytes inline, no
//! allocation for "nothing" and two bytes for "everything".

use std::fmt;

use crate::names::valid_channel;

/// The pattern that matches every channel.
pub const ANY: &str = "*";

/// Channels a connection may use for one kind of operation.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Perms {
    /// Sorted, deduplicated patterns joined by `' '`; `""` is nothing and `"*"` everything
    /// (a list holding `*` keeps only it).
    list: Box<str>,
}

/// A permission list held an entry that is not a valid pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPattern;

impl fmt::Display for BadPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a channel pattern is not a channel name with an optional trailing *")
    }
}

impl std::error::Error for BadPattern {}

impl Perms {
    /// Allows no channel.
    pub fn none() -> Perms {
        Perms::default()
    }

    /// Allows every channel.
    pub fn all() -> Perms {
        Perms { list: ANY.into() }
    }

    /// Builds the list from a claim's entries; one invalid entry refuses the whole list.
    pub fn parse<I, S>(patterns: I) -> Result<Perms, BadPattern>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let owned: Vec<S> = patterns.into_iter().collect();
        let mut list: Vec<&str> = Vec::with_capacity(owned.len());
        for p in &owned {
            let p = p.as_ref();
            if !valid_pattern(p) {
                return Err(BadPattern);
            }
            list.push(p);
        }
        if list.contains(&ANY) {
            return Ok(Perms::all());
        }
        list.sort_unstable();
        list.dedup();
        Ok(Perms {
            list: list.join(" ").into_boxed_str(),
        })
    }

    /// Whether `channel` is covered by an entry. The channel name itself is not checked
    /// here: the protocol layer refuses invalid names before asking.
    pub fn allows(&self, channel: &str) -> bool {
        if self.is_all() {
            return true;
        }
        self.patterns().any(|p| match p.strip_suffix('*') {
            Some(prefix) => channel.starts_with(prefix),
            None => p == channel,
        })
    }

    pub fn is_none(&self) -> bool {
        self.list.is_empty()
    }

    pub fn is_all(&self) -> bool {
        &*self.list == ANY
    }

    /// The patterns, sorted and without duplicates.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.list.split(' ').filter(|p| !p.is_empty())
    }
}

impl fmt::Debug for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.patterns()).finish()
    }
}

/// Whether `p` is `*`, or a valid channel name optionally followed by one `*`.
pub fn valid_pattern(p: &str) -> bool {
    if p == ANY {
        return true;
    }
    valid_channel(p.strip_suffix('*').unwrap_or(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::MAX_CHANNEL_BYTES;

    fn perms(list: &[&str]) -> Perms {
        Perms::parse(list).unwrap()
    }

    #[test]
    fn nothing_allows_nothing() {
        for p in [Perms::none(), perms(&[])] {
            assert!(p.is_none() && !p.is_all());
            assert!(!p.allows("room:1") && !p.allows("*") && !p.allows(""));
            assert_eq!(p.patterns().count(), 0);
        }
    }

    #[test]
    fn star_allows_everything_and_absorbs_the_rest() {
        for p in [Perms::all(), perms(&["*"]), perms(&["room:1", "*", "a:*"])] {
            assert!(p.is_all() && !p.is_none());
            assert!(p.allows("room:1") && p.allows("x") && p.allows(&"c".repeat(128)));
            assert_eq!(p.patterns().collect::<Vec<_>>(), ["*"]);
        }
    }

    #[test]
    fn exact_names_match_only_themselves() {
        let p = perms(&["room:1", "lobby"]);
        assert!(p.allows("room:1") && p.allows("lobby"));
        for no in [
            "room:10", "room:", "room", "room:2", "lobby2", "lobb", "Lobby",
        ] {
            assert!(!p.allows(no), "{no}");
        }
    }

    #[test]
    fn prefix_patterns_match_what_starts_with_the_prefix() {
        let p = perms(&["room:*"]);
        for yes in ["room:1", "room:abc", "room:a:b", "room:"] {
            assert!(p.allows(yes), "{yes}");
        }
        for no in ["room", "rooms", "roo", "other", "xroom:1", "Room:1"] {
            assert!(!p.allows(no), "{no}");
        }
        let p = perms(&["room*"]);
        for yes in ["room", "rooms", "room:1"] {
            assert!(p.allows(yes), "{yes}");
        }
        assert!(!p.allows("roo"));
    }

    #[test]
    fn mixed_lists_allow_the_union() {
        let p = perms(&["chat:*", "news", "user:alice:*"]);
        for yes in ["chat:1", "news", "user:alice:inbox"] {
            assert!(p.allows(yes), "{yes}");
        }
        for no in ["news:1", "user:bob:inbox", "chat"] {
            assert!(!p.allows(no), "{no}");
        }
    }

    #[test]
    fn invalid_patterns_refuse_the_whole_list() {
        let long = "a".repeat(MAX_CHANNEL_BYTES + 1);
        for bad in [
            "", "**", "a*b", "*a", "a**", "room:**", "a b", " *", "a,b", "é", "ä*", "\0", &long,
        ] {
            assert!(!valid_pattern(bad), "{bad:?}");
            assert_eq!(Perms::parse(["ok", bad]), Err(BadPattern), "{bad:?}");
        }
        let longest = "a".repeat(MAX_CHANNEL_BYTES);
        assert!(valid_pattern(&longest) && valid_pattern(&format!("{longest}*")));
    }

    #[test]
    fn lists_are_sorted_and_deduplicated() {
        let p = perms(&["b", "a:*", "b", "a:*", "c"]);
        assert_eq!(p.patterns().collect::<Vec<_>>(), ["a:*", "b", "c"]);
        assert_eq!(p, perms(&["c", "a:*", "b"]));
        assert_eq!(format!("{p:?}"), r#"["a:*", "b", "c"]"#);
    }

    #[test]
    fn compact() {
        assert_eq!(std::mem::size_of::<Perms>(), 16);
        assert_eq!(
            Perms::parse(["a:*", "b"]).unwrap().list.len(),
            "a:* b".len()
        );
    }
}
