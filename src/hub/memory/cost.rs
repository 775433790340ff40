//! What history really costs in memory, as charged to `--history-max-bytes`: not only the
//! payload but every allocation a kept message and its channel hold, with the allocator's
//! own overhead. Estimates from the types' sizes, so they follow the structures as they
//! change; the unit tests check the result stays in a sane range.
//!
//! Not charged: a message's Server-Sent Events lines (built, and kept with the message, only
//! once an SSE subscriber receives it), and what a channel's subscribers and present users
//! cost (bounded by connections and `--max-subscriptions` instead).

use std::mem::size_of;
use std::sync::Arc;

use crate::hub::msg::Msg;

/// The two reference counts before the value in an `Arc`'s allocation.
const ARC_HEADER: usize = 2 * size_of::<usize>();

/// What the allocator takes for a request of `n` bytes: glibc's malloc adds an 8-byte header
/// and rounds the chunk up to 16 bytes, 32 at least.
pub const fn alloc(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    let chunk = (n + 8 + 15) & !15;
    if chunk < 32 {
        32
    } else {
        chunk
    }
}

/// A message kept in a channel's history: the shared `Msg` (its `Arc`), its two encoded
/// frames (each an `Arc<[u8]>` of its own), and its slot in the channel's ring, counted
/// twice because the ring's capacity may be up to double its length.
pub fn message(m: &Msg) -> usize {
    alloc(ARC_HEADER + size_of::<Msg>())
        + alloc(ARC_HEADER + m.frame.len())
        + alloc(ARC_HEADER + m.raw_frame.len())
        + 2 * size_of::<Arc<Msg>>()
}

/// A channel that holds history, beyond its messages: its bucket in the shard's table (the
/// key and the channel's struct of `struct_size` bytes, plus a control byte, at a table load
/// of about two thirds), the name (an `Arc<str>`), the subscriber counts per worker, and the
/// history ring's first buffer (four slots).
pub fn channel(struct_size: usize, name_len: usize, workers: usize) -> usize {
    let bucket = (size_of::<Arc<str>>() + struct_size + 1) * 3 / 2;
    bucket
        + alloc(ARC_HEADER + name_len)
        + alloc(workers * size_of::<u32>())
        + alloc(4 * size_of::<Arc<Msg>>())
}

/// One entry of a shard's eviction order (see `budget::Entry`): its size, with the same
/// allowance for the ring's spare capacity.
pub fn order_entry(entry_size: usize) -> usize {
    entry_size * 3 / 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::protocol::Data;
    use std::time::Instant;

    #[test]
    fn allocations_round_like_malloc() {
        assert_eq!(alloc(0), 0);
        assert_eq!(alloc(1), 32);
        assert_eq!(alloc(24), 32);
        assert_eq!(alloc(25), 48);
        assert_eq!(alloc(100), 112);
    }

    #[test]
    fn a_channel_with_one_100_byte_message_costs_what_it_really_does() {
        let body = "x".repeat(100);
        let m = Msg::encode("ch123456", 1, &Data::Text(&body), Instant::now());
        let msg = message(&m);
        let total = msg + channel(160, "ch123456".len(), 1) + order_entry(32);
        // Payload twice (the envelope and the raw frame), plus structures: ~800 B measured.
        assert!((400..2000).contains(&total), "{total} B (message {msg} B)");
        assert!(msg > 2 * 100, "both frames are counted: {msg}");
    }
}
