//! The name rules every wing checks against: channels are 1 to 128 bytes and users 1 to 64
//! bytes of `A-Z a-z 0-9 _ - . : @`. In the base, under all wings, because the protocol
//! (codec) and token claims (auth) must agree on them and are siblings.

/// Longest channel name, in bytes.
pub const MAX_CHANNEL_BYTES: usize = 128;
/// Longest user name (presence, a token's `sub`), in bytes.
pub const MAX_USER_BYTES: usize = 64;

/// Whether `name` is a valid channel name.
pub fn valid_channel(name: &str) -> bool {
    valid_name(name, MAX_CHANNEL_BYTES)
}

/// Whether `name` is a valid user name.
pub fn valid_user(name: &str) -> bool {
    valid_name(name, MAX_USER_BYTES)
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

    #[test]
    fn the_charset_and_the_bounds() {
        for b in 0..=255u8 {
            let s = [b'a', b];
            let ok = std::str::from_utf8(&s).is_ok_and(valid_channel);
            assert_eq!(
                ok,
                b"_-.:@".contains(&b) || b.is_ascii_alphanumeric(),
                "{b}"
            );
        }
        assert!(!valid_channel("") && !valid_user(""));
        assert!(valid_channel(&"c".repeat(128)) && !valid_channel(&"c".repeat(129)));
        assert!(valid_user(&"u".repeat(64)) && !valid_user(&"u".repeat(65)));
        assert!(!valid_user("é") && !valid_channel("a b"));
    }
}
