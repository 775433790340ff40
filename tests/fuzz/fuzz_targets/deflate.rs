//! Inbound permessage-deflate: the streaming decoder with an inflater, on client streams
//! built from a script, so the fuzzer reaches well-formed compressed messages as easily as
//! broken ones.
//!
//! Input layout: byte 0 as in `frames` (low 3 bits: the message size limit; high 4 bits: how
//! many little-endian u16 cut points follow). The rest is a script of records
//! `tag, len (u16 LE), len bytes`:
//! - `tag % 4 == 0`: the bytes as a message we compress (window `9 + tag>>5 % 7`), in
//!   `1 + (tag>>2) % 4` fragments, RSV1 on the first; text when `tag & 0x10` and the bytes are
//!   UTF-8, else binary;
//! - `1`: the bytes as they are (any frames at all, RSV bits included);
//! - `2`: one frame with RSV1 whose payload is the bytes (arbitrary "compressed" data; the
//!   opcode from `tag>>2 % 16`, so also control frames and continuations);
//! - `3`: one uncompressed frame, opcode `tag>>2 % 16`, FIN from `tag & 0x40`.
//!
//! The stream is decoded whole and in pieces with the same inflater (it must hold nothing
//! between messages): both must give the same events and end the same way; no message is
//! over the limit, text is UTF-8; and when every record was a message we compressed and
//! nothing failed, the messages are exactly those bytes.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use switchboard::codec::decoder::{Event, Flow};
use switchboard::codec::deflate::{Deflate, Inflater};
use switchboard::codec::frame::write_client_frame;

mod split;
use split::End;

thread_local! {
    /// Kept across inputs, as a worker keeps its own for its life: building zlib state per
    /// input would be most of the time spent, and reuse is what must be safe.
    static DEFLATE: RefCell<Deflate> = RefCell::new(Deflate::new());
}

#[derive(Debug, PartialEq)]
enum Seen {
    Message { text: bool, payload: Vec<u8> },
    Control,
}

/// A masked client frame; RSV bits as given in `rsv` (bits 4-6 of the first byte).
fn frame(out: &mut Vec<u8>, fin: bool, rsv: u8, opcode: u8, payload: &[u8]) {
    let first = if fin { 0x80 } else { 0 } | (rsv & 0x70) | (opcode & 0x0F);
    write_client_frame(out, first, payload, [0x37, 0xfa, 0x21, 0x3d]);
}

/// The client stream a script describes, and the messages it must decode to when every
/// record was a message we compressed (`None` otherwise).
fn build(mut script: &[u8], deflate: &mut Deflate) -> (Vec<u8>, Option<Vec<Seen>>) {
    let mut stream = Vec::new();
    let mut expect = Some(Vec::new());
    while let [tag, lo, hi, rest @ ..] = script {
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(rest.len());
        let (bytes, next) = rest.split_at(len);
        script = next;
        let tag = *tag;
        match tag % 4 {
            0 => {
                let text = tag & 0x10 != 0 && std::str::from_utf8(bytes).is_ok();
                let mut z = Vec::new();
                deflate.compress(bytes, 9 + (tag >> 5) % 7, &mut z);
                let parts = 1 + usize::from((tag >> 2) % 4);
                let size = z.len().div_ceil(parts).max(1);
                let chunks: Vec<&[u8]> = z.chunks(size).collect();
                for (i, c) in chunks.iter().enumerate() {
                    let (op, rsv) = match (i, text) {
                        (0, true) => (1, 0x40),
                        (0, false) => (2, 0x40),
                        _ => (0, 0),
                    };
                    frame(&mut stream, i + 1 == chunks.len(), rsv, op, c);
                }
                if let Some(e) = expect.as_mut() {
                    e.push(Seen::Message {
                        text,
                        payload: bytes.to_vec(),
                    });
                }
            }
            1 => {
                stream.extend_from_slice(bytes);
                expect = None;
            }
            2 => {
                frame(&mut stream, true, 0x40, (tag >> 2) % 16, bytes);
                expect = None;
            }
            _ => {
                frame(&mut stream, tag & 0x40 != 0, 0, (tag >> 2) % 16, bytes);
                expect = None;
            }
        }
    }
    (stream, expect)
}

fn run(stream: &[u8], cuts: &[usize], max: usize, inflater: &mut Inflater) -> (Vec<Seen>, End) {
    split::run(stream, cuts, |decoder, piece, seen| {
        decoder.decode_with(piece, max, Some(&mut *inflater), |event| {
            let (s, flow) = match event {
                Event::Message { text, payload } => {
                    let payload = payload.as_slice();
                    assert!(payload.len() <= max, "{} over {max}", payload.len());
                    if text {
                        assert!(std::str::from_utf8(payload).is_ok(), "invalid UTF-8 text");
                    }
                    let payload = payload.to_vec();
                    (Seen::Message { text, payload }, Flow::Continue)
                }
                Event::Ping(_) | Event::Pong(_) => (Seen::Control, Flow::Continue),
                Event::Close { .. } => (Seen::Control, Flow::Stop),
            };
            seen.push(s);
            flow
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((max, cut_bytes, script)) = split::header(data) else {
        return;
    };
    let (stream, expect) = DEFLATE.with(|d| build(script, &mut d.borrow_mut()));
    let cuts = split::cuts(cut_bytes, stream.len());

    // One inflater for both runs (and every input), as a worker shares one across its
    // connections.
    let mut inflater = DEFLATE.with(|d| d.borrow_mut().take_inflater());
    let whole = run(&stream, &[], max, &mut inflater);
    let split = run(&stream, &cuts, max, &mut inflater);
    DEFLATE.with(|d| d.borrow_mut().put_inflater(inflater));
    assert_eq!(whole, split, "cuts {cuts:?}, max {max}");
    if let (Some(expect), (seen, End::OutOfInput)) = (expect, whole) {
        assert_eq!(seen, expect, "our own compressed messages, max {max}");
    }
});
