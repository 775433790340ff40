//! The user and channel name rules that token claims are checked against: 1 to 64 (users) or
//! 128 (channels) bytes of `A-Z a-z 0-9 _ - . : @`.
//!
//! The same rule as `codec::protocol::{valid_user, valid_channel}`, restated here because
//! `auth` and `codec` are sibling wings (rank 1 both) and may not import each other. A test
//! holds the two copies equal byte for byte; once the rule moves under both wings (base), this
//! file becomes a re-export.

/// Longest user name, in bytes (the `sub` claim).
pub const MAX_USER_BYTES: usize = 64;
/// Longest channel name, in bytes.
pub const MAX_CHANNEL_BYTES: usize = 128;

/// Whether `name` is a valid user name.
pub fn valid_user(name: &str) -> bool {
    valid_name(name, MAX_USER_BYTES)
}

/// Whether `name` is a valid channel name.
pub fn valid_channel(name: &str) -> bool {
    valid_name(name, MAX_CHANNEL_BYTES)
}

fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty() && name.len() <= max && name.bytes().all(name_byte)
}

/// Whether `b` may appear in a user or channel name.
fn name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::protocol;

    /// Every byte, alone and inside a name, at every length around both bounds: this copy and
    /// the codec's agree.
    #[test]
    fn same_rule_as_the_protocol() {
        assert_eq!(MAX_USER_BYTES, protocol::MAX_USER_BYTES);
        assert_eq!(MAX_CHANNEL_BYTES, protocol::MAX_CHANNEL_BYTES);
        for b in 0..=0x7fu8 {
            let c = char::from(b);
            for name in [c.to_string(), format!("a{c}b"), format!("{c}x")] {
                assert_eq!(valid_user(&name), protocol::valid_user(&name), "{name:?}");
                assert_eq!(
                    valid_channel(&name),
                    protocol::valid_channel(&name),
                    "{name:?}"
                );
            }
        }
        for name in ["é", "aé", "a b", "a*", "*"] {
            assert_eq!(valid_user(name), protocol::valid_user(name), "{name:?}");
            assert_eq!(
                valid_channel(name),
                protocol::valid_channel(name),
                "{name:?}"
            );
        }
        for len in [0, 1, 63, 64, 65, 127, 128, 129] {
            let name = "a".repeat(len);
            assert_eq!(valid_user(&name), protocol::valid_user(&name), "{len}");
            assert_eq!(
                valid_channel(&name),
                protocol::valid_channel(&name),
                "{len}"
            );
        }
    }
}
