//! mio tokens: a slab index plus a generation, so an event for a slot that was freed and
//! reused within one poll batch is recognised as stale and skipped (nginx's "instance" bit,
//! widened).

use mio::Token;

use crate::config::MAX_LISTENERS;

/// The worker's cross-thread waker.
pub const WAKER: Token = Token(usize::MAX);

/// The worker's `i`th listener, just below the waker.
pub fn listener(i: usize) -> Token {
    Token(usize::MAX - 1 - i)
}

/// Which listener a token names, if any.
pub fn listener_index(t: Token) -> Option<usize> {
    let i = usize::MAX.checked_sub(t.0)?.checked_sub(1)?;
    (i < MAX_LISTENERS).then_some(i)
}

/// Packs a slab key and generation. Keys stay far below 2^32 - MAX_LISTENERS - 1 (a worker
/// holds at most the fd limit), so no connection token equals a reserved one; generations
/// wrap.
pub fn pack(key: usize, gen: u32) -> Token {
    Token(((gen as usize) << 32) | (key & 0xFFFF_FFFF))
}

pub fn unpack(token: Token) -> (usize, u32) {
    (token.0 & 0xFFFF_FFFF, (token.0 >> 32) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_reserved_tokens_do_not_collide() {
        for (k, g) in [(0, 0), (1, 7), (123_456, u32::MAX), (0xFFFF_0000, 0)] {
            let t = pack(k, g);
            assert_eq!(unpack(t), (k, g));
            assert_eq!(listener_index(t), None);
            assert_ne!(t, WAKER);
        }
        for i in 0..MAX_LISTENERS {
            assert_eq!(listener_index(listener(i)), Some(i));
            assert_ne!(listener(i), WAKER);
        }
        assert_eq!(listener_index(WAKER), None);
    }
}
