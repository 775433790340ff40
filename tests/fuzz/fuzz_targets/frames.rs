//! Split-anywhere equivalence of the streaming decoder.
//!
//! Input layout: byte 0 picks the message size limit (low 3 bits) and how many cut points
//! follow (high 4 bits, 0..=15); each cut point is a little-endian u16 taken modulo the
//! stream length + 1 (so repeated cuts give empty reads). The rest is the client's byte
//! stream, masked as on the wire.
//!
//! The stream is decoded whole by one decoder and in pieces by another. Both must report the
//! same events (messages, pings, pongs, close) and end the same way (the same error, a stop
//! after Close, or running out of input). Every text message must be valid UTF-8, no message
//! may exceed the limit, and control payloads stay within 125 bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::codec::decoder::{Decoder, Event, Flow};
use switchboard::codec::frame::{close_code, MAX_CONTROL_PAYLOAD};
use switchboard::error::ProtocolError;

/// Message size limits to try: zero, tiny, around a control frame, the 16-bit length boundary
/// and a server-like 1 MiB.
const MAX_MESSAGE: [usize; 8] = [0, 1, 125, 126, 1000, 65_535, 65_536, 1 << 20];

#[derive(Debug, PartialEq)]
enum Seen {
    Message { text: bool, payload: Vec<u8> },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

#[derive(Debug, PartialEq)]
enum End {
    /// All input consumed, nothing refused.
    OutOfInput,
    /// The handler stopped after a Close.
    Stopped,
    Failed(ProtocolError),
}

/// Decodes `stream` split at `cuts` (sorted offsets into it) with one decoder.
fn run(stream: &[u8], cuts: &[usize], max: usize) -> (Vec<Seen>, End) {
    let mut decoder = Decoder::new();
    let mut seen = Vec::new();
    let mut start = 0;
    for end in cuts.iter().copied().chain([stream.len()]) {
        let mut piece = stream[start..end].to_vec();
        start = end;
        let result = decoder.decode(&mut piece, max, |event| {
            let (s, flow) = match event {
                Event::Message { text, payload } => {
                    let payload = payload.as_slice();
                    assert!(
                        payload.len() <= max,
                        "message of {} over {max}",
                        payload.len()
                    );
                    if text {
                        assert!(std::str::from_utf8(payload).is_ok(), "invalid UTF-8 text");
                    }
                    let payload = payload.to_vec();
                    (Seen::Message { text, payload }, Flow::Continue)
                }
                Event::Ping(p) => {
                    assert!(p.len() <= MAX_CONTROL_PAYLOAD);
                    (Seen::Ping(p.to_vec()), Flow::Continue)
                }
                Event::Pong(p) => {
                    assert!(p.len() <= MAX_CONTROL_PAYLOAD);
                    (Seen::Pong(p.to_vec()), Flow::Continue)
                }
                Event::Close { code, reason } => {
                    if let Some(c) = code {
                        assert!(close_code::is_valid_on_wire(c), "close code {c}");
                    }
                    assert!(reason.len() + 2 <= MAX_CONTROL_PAYLOAD);
                    (Seen::Close(code, reason.to_string()), Flow::Stop)
                }
            };
            seen.push(s);
            flow
        });
        match result {
            Ok(Flow::Continue) => {}
            Ok(Flow::Stop) => return (seen, End::Stopped),
            Err(e) => return (seen, End::Failed(e)),
        }
    }
    (seen, End::OutOfInput)
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let max = MAX_MESSAGE[usize::from(control & 0x07)];
    let n_cuts = usize::from(control >> 4);
    let Some((cut_bytes, stream)) = rest.split_at_checked(2 * n_cuts) else {
        return;
    };
    let mut cuts: Vec<usize> = cut_bytes
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();

    let whole = run(stream, &[], max);
    let split = run(stream, &cuts, max);
    assert_eq!(whole, split, "cuts {cuts:?}, max {max}");
});
