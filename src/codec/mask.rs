//! RFC 6455 §5.3 payload masking, a machine word at a time.
//!
//! Masking is its own inverse, so the same function masks and unmasks. The payload of one
//! frame may arrive in several reads; `offset` is how many payload bytes of the frame came
//! before `buf`, so the key stays aligned across reads.

/// XORs `buf` in place with the 4-byte `key`, starting `offset` bytes into the frame payload.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // A payload usually starts 6, 8 or 14 bytes into the read buffer; bytes up to the next
    // 8-byte boundary are done one at a time so the word loop runs on aligned words (about
    // twice as fast as on misaligned ones, measured in benches/codec.rs). Short payloads
    // skip it: there the extra byte loop costs more than alignment saves.
    let head = if buf.len() < 64 {
        0
    } else {
        buf.as_ptr().align_offset(8).min(buf.len())
    };
    let (front, rest) = buf.split_at_mut(head);
    apply_mask_bytewise(front, key, offset);
    let key = rotate(key, offset + head);
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = rest.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // What is left is shorter than 8 bytes and starts a multiple of 8 (so of 4) bytes after
    // the rotated key's origin.
    for (byte, k) in chunks.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

/// The key as seen from payload byte `offset`.
fn rotate(key: [u8; 4], offset: usize) -> [u8; 4] {
    let mut k = key;
    k.rotate_left(offset % 4);
    k
}

/// The byte-at-a-time definition from the RFC, kept as the reference the fast path is tested
/// against (and used by benchmarks as the baseline).
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[(offset + i) % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_hello_example() {
        // RFC 6455 §5.7: "A single-frame masked text message" with key 37 fa 21 3d.
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }

    #[test]
    fn matches_bytewise_at_every_length_offset_and_alignment() {
        let key = [0x12, 0x9a, 0xfe, 0x01];
        let source: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for align in 0..8 {
            for len in 0..(source.len() - align) {
                for offset in 0..4 {
                    let mut fast = source[align..align + len].to_vec();
                    let mut slow = fast.clone();
                    apply_mask(&mut fast, key, offset);
                    apply_mask_bytewise(&mut slow, key, offset);
                    assert_eq!(fast, slow, "align {align} len {len} offset {offset}");
                }
            }
        }
    }

    #[test]
    fn split_payload_unmasks_like_whole() {
        let key = [1, 2, 3, 4];
        let original: Vec<u8> = (0..101u8).collect();
        let mut whole = original.clone();
        apply_mask(&mut whole, key, 0);
        for cut in 0..original.len() {
            let mut parts = original.clone();
            let (a, b) = parts.split_at_mut(cut);
            apply_mask(a, key, 0);
            apply_mask(b, key, cut);
            assert_eq!(parts, whole, "cut at {cut}");
        }
    }

    #[test]
    fn masking_twice_restores() {
        let mut data = b"switchboard".to_vec();
        apply_mask(&mut data, [9, 8, 7, 6], 3);
        apply_mask(&mut data, [9, 8, 7, 6], 3);
        assert_eq!(data, b"switchboard");
    }
}
