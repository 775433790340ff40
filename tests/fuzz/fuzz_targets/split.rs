//! The split-anywhere harness the `frames` and `deflate` targets share: how their input
//! names a size limit and cut points, and a stream decoded in pieces cut at those points.

use switchboard::codec::decoder::{Decoder, Flow};
use switchboard::error::ProtocolError;

/// Message size limits to try: zero, tiny, around a control frame, the 16-bit length boundary
/// and a server-like 1 MiB.
const MAX_MESSAGE: [usize; 8] = [0, 1, 125, 126, 1000, 65_535, 65_536, 1 << 20];

/// How a run ended.
#[derive(Debug, PartialEq)]
pub enum End {
    /// All input consumed, nothing refused.
    OutOfInput,
    /// The handler stopped after a Close.
    Stopped,
    Failed(ProtocolError),
}

/// Byte 0 (low 3 bits: the size limit; high 4 bits: how many cut points follow), then the
/// cut points as little-endian u16s: returns the limit, the cut bytes and the rest.
pub fn header(data: &[u8]) -> Option<(usize, &[u8], &[u8])> {
    let (&control, rest) = data.split_first()?;
    let max = MAX_MESSAGE[usize::from(control & 0x07)];
    let (cuts, rest) = rest.split_at_checked(2 * usize::from(control >> 4))?;
    Some((max, cuts, rest))
}

/// The cut points into a stream of `len` bytes, sorted (repeats give empty pieces).
pub fn cuts(cut_bytes: &[u8], len: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = cut_bytes
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (len + 1))
        .collect();
    cuts.sort_unstable();
    cuts
}

/// Feeds `stream` to one decoder in pieces cut at `cuts`; `decode` decodes a piece, pushing
/// what it sees.
pub fn run<S>(
    stream: &[u8],
    cuts: &[usize],
    mut decode: impl FnMut(&mut Decoder, &mut [u8], &mut Vec<S>) -> Result<Flow, ProtocolError>,
) -> (Vec<S>, End) {
    let mut decoder = Decoder::new();
    let mut seen = Vec::new();
    let mut start = 0;
    for end in cuts.iter().copied().chain([stream.len()]) {
        let mut piece = stream[start..end].to_vec();
        start = end;
        match decode(&mut decoder, &mut piece, &mut seen) {
            Ok(Flow::Continue) => {}
            Ok(Flow::Stop) => return (seen, End::Stopped),
            Err(e) => return (seen, End::Failed(e)),
        }
    }
    (seen, End::OutOfInput)
}
