//! The DEFLATE side of permessage-deflate (RFC 7692 §7.2): one message compressed into a
//! frame payload, and one compressed message inflated under a size bound.
//!
//! Both directions run without context takeover, so a compressor or decompressor holds
//! nothing of a connection between messages: a worker keeps one of each ([`Deflate`]) and
//! resets it per message, and a connection with compression costs no DEFLATE memory while
//! idle. They are created on first use, so a server that never compresses never pays for
//! them (a zlib compressor is a few hundred KiB).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::negotiate::{MAX_WINDOW_BITS, MIN_WINDOW_BITS};

/// §7.2.1: a message compressed with a sync flush ends with an empty stored block,
/// `00 00 ff ff`; the sender removes it and the receiver appends it back.
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// zlib's default level: most of the ratio of level 9 at a fraction of its cost. A broadcast
/// is compressed once however many subscribers get it, so the ratio matters more than the
/// time.
const LEVEL: u32 = 6;
/// First output buffer of an inflate, before it grows (doubling, up to the bound).
const INFLATE_START_BYTES: usize = 16 * 1024;

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates to more than the bound (the inflating stopped there).
    TooBig,
    /// Not valid DEFLATE data.
    Corrupt,
}

/// A worker's compressors (one per window size a client asked for, made when first needed)
/// and its decompressor.
#[derive(Default)]
pub struct Deflate {
    compressors: [Option<Compress>; (MAX_WINDOW_BITS - MIN_WINDOW_BITS + 1) as usize],
    inflater: Option<Inflater>,
    /// Output of [`Deflate::compress_message`], reused message after message.
    scratch: Vec<u8>,
    counts: DeflateCounts,
}

/// What a worker's compressor has done since it started (the metrics show the sum). A
/// broadcast counts once however many subscribers it reaches: that is how the "compressed
/// once" promise is checked from outside.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeflateCounts {
    pub messages: u64,
    pub plain_bytes: u64,
    pub compressed_bytes: u64,
}

impl std::fmt::Debug for Deflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let made = self.compressors.iter().filter(|c| c.is_some()).count();
        f.debug_struct("Deflate")
            .field("compressors", &made)
            .field("inflater", &self.inflater.is_some())
            .finish()
    }
}

impl Deflate {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `payload` compressed for a peer that allows our window `window_bits` (9..=15;
    /// anything else is clamped into it) to `out`, without the §7.2.1 tail: the payload of
    /// a frame with RSV1 set.
    pub fn compress(&mut self, payload: &[u8], window_bits: u8, out: &mut Vec<u8>) {
        let bits = window_bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
        let slot = usize::from(bits - MIN_WINDOW_BITS);
        let c = self.compressors[slot].get_or_insert_with(|| {
            Compress::new_with_window_bits(Compression::new(LEVEL), false, bits)
        });
        c.reset();
        let start = out.len();
        // DEFLATE grows incompressible data by 5 bytes per stored block; the loop grows the
        // buffer further if the backend wants more room.
        out.reserve(payload.len() + payload.len() / 1024 + 64);
        let mut fed = 0;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(256));
            }
            let before = c.total_in();
            let rest = payload.get(fed..).unwrap_or_default();
            // An error would be a bug in the backend (the input is just bytes); the output
            // is left as far as it got rather than retried forever.
            let status = c.compress_vec(rest, out, FlushCompress::Sync);
            fed += (c.total_in() - before) as usize;
            // All input taken with room to spare: the sync flush is complete (zlib's
            // contract for `avail_out != 0`).
            if status.is_err() || (fed == payload.len() && out.len() < out.capacity()) {
                break;
            }
        }
        if out.ends_with(&TAIL) && out.len() - start >= TAIL.len() {
            out.truncate(out.len() - TAIL.len());
        }
        if out.len() == start {
            // §7.2.3.6: an empty message is one byte, an empty non-final stored block
            // without its length (the tail the receiver appends completes it).
            out.push(0x00);
        }
        self.counts.messages += 1;
        self.counts.plain_bytes += payload.len() as u64;
        self.counts.compressed_bytes += (out.len() - start) as u64;
    }

    /// `payload` compressed (as [`Deflate::compress`]) into the worker's scratch buffer, or
    /// `None` when that would not make it smaller (it then goes out uncompressed, RSV1
    /// clear: the extension lets every message choose).
    pub fn compress_message(&mut self, payload: &[u8], window_bits: u8) -> Option<&[u8]> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        self.compress(payload, window_bits, &mut scratch);
        self.scratch = scratch;
        (self.scratch.len() < payload.len()).then_some(&self.scratch[..])
    }

    pub fn counts(&self) -> DeflateCounts {
        self.counts
    }

    /// The worker's decompressor, taken out while a connection's input is decoded (and put
    /// back with [`Deflate::put_inflater`]), so it can be used alongside the rest of the
    /// worker's state.
    pub fn take_inflater(&mut self) -> Inflater {
        self.inflater.take().unwrap_or_default()
    }

    pub fn put_inflater(&mut self, inflater: Inflater) {
        self.inflater = Some(inflater);
    }
}

/// A decompressor for whole messages, reset before each: it never holds a message across
/// calls, so one can serve every connection of a worker.
pub struct Inflater {
    d: Decompress,
}

impl Default for Inflater {
    fn default() -> Self {
        // The client's window is at most 15 bits; we never ask it to use fewer.
        Inflater {
            d: Decompress::new_with_window_bits(false, MAX_WINDOW_BITS),
        }
    }
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inflater")
    }
}

impl Inflater {
    /// Inflates one message's compressed payload (all its fragments, in order) with the
    /// §7.2.2 tail appended. The output never grows past `max + 1` bytes: the moment the
    /// message would inflate to more than `max`, inflating stops with
    /// [`InflateError::TooBig`] — a bomb costs at most the bound, not what it expands to.
    pub fn inflate(&mut self, parts: &[&[u8]], max: usize) -> Result<Vec<u8>, InflateError> {
        self.d.reset(false);
        let limit = max.saturating_add(1);
        let compressed: usize = parts.iter().map(|p| p.len()).sum();
        let mut out = Vec::with_capacity(
            compressed
                .saturating_mul(4)
                .max(INFLATE_START_BYTES)
                .min(limit),
        );
        for part in parts.iter().copied().chain([&TAIL[..]]) {
            let mut fed = 0;
            loop {
                if out.len() == out.capacity() {
                    if out.len() >= limit {
                        return Err(InflateError::TooBig);
                    }
                    let grow = out
                        .capacity()
                        .max(INFLATE_START_BYTES)
                        .min(limit - out.len());
                    out.reserve_exact(grow);
                }
                let (in_before, out_before) = (self.d.total_in(), out.len());
                let status = self
                    .d
                    .decompress_vec(
                        part.get(fed..).unwrap_or_default(),
                        &mut out,
                        FlushDecompress::Sync,
                    )
                    .map_err(|_| InflateError::Corrupt)?;
                fed += (self.d.total_in() - in_before) as usize;
                if out.len() > max {
                    return Err(InflateError::TooBig);
                }
                match status {
                    // A final block (BFINAL) ends the message; anything after it is ignored.
                    Status::StreamEnd => return Ok(out),
                    _ if fed == part.len() && out.len() < out.capacity() => break,
                    // No progress with input left and room to write: the data is stuck.
                    Status::BufError if out.len() == out_before && out.len() < out.capacity() => {
                        return Err(InflateError::Corrupt)
                    }
                    _ => {}
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compress(payload: &[u8], bits: u8) -> Vec<u8> {
        let mut out = Vec::new();
        Deflate::new().compress(payload, bits, &mut out);
        out
    }

    fn inflate(data: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
        Inflater::default().inflate(&[data], max)
    }

    #[test]
    fn rfc7692_hello() {
        // §7.2.3.1: "Hello" compressed, tail removed.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate(&hello, 100).unwrap(), b"Hello");
        assert_eq!(compress(b"Hello", 15), hello);
        // §7.2.3.2: the same with no compression (a stored block).
        let stored = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        assert_eq!(inflate(&stored, 100).unwrap(), b"Hello");
        // §7.2.3.4: a final block (BFINAL set) ends the message.
        let bfinal = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate(&bfinal, 100).unwrap(), b"Hello");
    }

    #[test]
    fn the_tail_is_stripped_and_an_empty_message_is_one_byte() {
        let out = compress(&[b'a'; 1000], 15);
        assert!(!out.ends_with(&TAIL));
        assert_eq!(compress(b"", 15), [0x00]);
        assert_eq!(inflate(&[0x00], 10).unwrap(), b"");
    }

    #[test]
    fn round_trips_at_every_window_and_size() {
        let mut d = Deflate::new();
        let mut inf = Inflater::default();
        let json: Vec<u8> = (0..3000)
            .flat_map(|i| format!("{{\"id\":{i},\"name\":\"user{}\"}},", i % 17).into_bytes())
            .collect();
        let noise: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for bits in 9..=15 {
            for data in [&b""[..], b"x", &json[..100], &json, &noise] {
                let mut out = Vec::new();
                d.compress(data, bits, &mut out);
                // Fragments are inflated together, split anywhere.
                let (a, b) = out.split_at(out.len() / 3);
                let back = inf.inflate(&[a, b], 1 << 22).unwrap();
                assert_eq!(back, data, "bits {bits}, {} bytes", data.len());
            }
        }
        let mut out = Vec::new();
        d.compress(&json, 15, &mut out);
        assert!(out.len() * 4 < json.len(), "JSON compresses");
    }

    #[test]
    fn a_bomb_stops_at_the_bound() {
        // 16 MiB of zeros compresses to ~16 KiB; bound 1 MiB.
        let zeros = vec![0u8; 16 << 20];
        let bomb = compress(&zeros, 15);
        assert!(bomb.len() < 20 * 1024, "{}", bomb.len());
        let mut inf = Inflater::default();
        assert_eq!(inf.inflate(&[&bomb], 1 << 20), Err(InflateError::TooBig));
        // Exactly at the bound is fine; one over is not.
        let exact = compress(&zeros[..1000], 15);
        assert_eq!(inf.inflate(&[&exact], 1000).map(|v| v.len()), Ok(1000));
        assert_eq!(inf.inflate(&[&exact], 999), Err(InflateError::TooBig));
        // And the inflater is usable for the next message.
        assert_eq!(inf.inflate(&[&compress(b"ok", 15)], 10).unwrap(), b"ok");
    }

    #[test]
    fn corrupt_data_is_an_error() {
        // BTYPE 11 is reserved.
        assert_eq!(
            inflate(&[0xff, 0xff, 0xff], 100),
            Err(InflateError::Corrupt)
        );
        // A stored block whose length check fails.
        assert_eq!(
            inflate(&[0x00, 0x05, 0x00, 0x00, 0x00, 1, 2, 3, 4, 5], 100),
            Err(InflateError::Corrupt)
        );
    }

    #[test]
    fn a_message_that_does_not_shrink_is_not_compressed() {
        let mut d = Deflate::new();
        assert_eq!(d.compress_message(b"ab", 15), None);
        let json =
            br#"{"type":"message","channel":"news","data":{"a":"aaaaaaaaaaaaaaaaaaaaaaaa"}}"#;
        let z = d.compress_message(json, 15).unwrap().to_vec();
        assert_eq!(Inflater::default().inflate(&[&z], 1000).unwrap(), json);
    }

    #[test]
    fn compressors_are_made_per_window_on_demand() {
        let mut d = Deflate::new();
        let mut out = Vec::new();
        d.compress(b"abc", 12, &mut out);
        assert_eq!(d.compressors.iter().filter(|c| c.is_some()).count(), 1);
        d.compress(b"abc", 3, &mut out);
        assert!(d.compressors[0].is_some(), "clamped to 9");
    }
}
