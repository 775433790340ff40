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
use switchboard::codec::decoder::{Event, Flow};
use switchboard::codec::frame::{close_code, MAX_CONTROL_PAYLOAD};

mod split;
use split::End;

#[derive(Debug, PartialEq)]
enum Seen {
    Message { text: bool, payload: Vec<u8> },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

/// Decodes `stream` split at `cuts` (sorted offsets into it) with one decoder.
fn run(stream: &[u8], cuts: &[usize], max: usize) -> (Vec<Seen>, End) {
    split::run(stream, cuts, |decoder, piece, seen| {
        decoder.decode(piece, max, |event| {
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
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((max, cut_bytes, stream)) = split::header(data) else {
        return;
    };
    let cuts = split::cuts(cut_bytes, stream.len());
    let whole = run(stream, &[], max);
    let split = run(stream, &cuts, max);
    assert_eq!(whole, split, "cuts {cuts:?}, max {max}");
});
