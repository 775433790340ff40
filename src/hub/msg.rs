//! One published message, encoded once for every kind of subscriber: the `message` envelope
//! and the bare payload as complete server frames, and (built by the first worker that needs
//! them, then shared) its Server-Sent Events lines.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use base64::Engine as _;

use crate::codec::frame::{self, OpCode};
use crate::codec::protocol::{self, Data};
use crate::codec::sse;

#[derive(Debug)]
pub struct Msg {
    pub seq: u64,
    pub at: Instant,
    /// The `message` envelope as a complete server text frame.
    pub frame: Arc<[u8]>,
    /// Where the envelope JSON starts in `frame` (after the frame header).
    json_at: usize,
    /// The payload alone as a complete frame, for `format=raw` subscribers.
    pub raw_frame: Arc<[u8]>,
    /// Server-Sent Events `data:` lines (envelope, raw).
    sse: [OnceLock<Arc<[u8]>>; 2],
}

impl Msg {
    /// Encodes message `seq` of `channel` once, for every subscriber it will reach.
    pub fn encode(channel: &str, seq: u64, data: &Data<'_>, at: Instant) -> Msg {
        let (raw, text) = data.raw();
        let mut raw_frame = Vec::with_capacity(raw.len() + frame::MAX_HEADER_LEN);
        let opcode = if text { OpCode::Text } else { OpCode::Binary };
        frame::write_server_frame(&mut raw_frame, opcode, &raw);
        let json = protocol::message_json(channel, seq, data);
        let mut env = Vec::with_capacity(json.len() + frame::MAX_HEADER_LEN);
        frame::write_server_frame(&mut env, OpCode::Text, json.as_bytes());
        let json_at = env.len() - json.len();
        Msg {
            seq,
            at,
            frame: env.into(),
            json_at,
            raw_frame: raw_frame.into(),
            sse: Default::default(),
        }
    }

    /// A direct message to a user's connections: the `direct` envelope and the bare
    /// payload, as a message has them (id 0: direct messages are not part of a stream).
    pub fn direct(data: &Data<'_>) -> Msg {
        let (raw, text) = data.raw();
        let mut raw_frame = Vec::with_capacity(raw.len() + frame::MAX_HEADER_LEN);
        let opcode = if text { OpCode::Text } else { OpCode::Binary };
        frame::write_server_frame(&mut raw_frame, opcode, &raw);
        let json = protocol::direct_json(data);
        let mut env = Vec::with_capacity(json.len() + frame::MAX_HEADER_LEN);
        frame::write_server_frame(&mut env, OpCode::Text, json.as_bytes());
        let json_at = env.len() - json.len();
        Msg {
            seq: 0,
            at: Instant::now(),
            frame: env.into(),
            json_at,
            raw_frame: raw_frame.into(),
            sse: Default::default(),
        }
    }

    /// The `message` object as JSON text (for history replies).
    pub fn json(&self) -> &str {
        self.frame
            .get(self.json_at..)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("null")
    }

    /// The `data:` lines of this message as an SSE event (without its `id:` and the blank
    /// line that ends it): the JSON envelope, or with `raw` the payload itself (binary
    /// payloads base64-encoded).
    pub fn sse_data(&self, raw: bool) -> &Arc<[u8]> {
        self.sse[usize::from(raw)].get_or_init(|| {
            let mut out = Vec::new();
            if !raw {
                sse::write_data_lines(&mut out, self.json());
            } else {
                let (text, payload) = frame::server_payload(&self.raw_frame);
                match std::str::from_utf8(payload) {
                    Ok(t) if text => sse::write_data_lines(&mut out, t),
                    _ => {
                        let b64 = base64::engine::general_purpose::STANDARD.encode(payload);
                        sse::write_data_lines(&mut out, &b64);
                    }
                }
            }
            out.into()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_and_raw_frames() {
        let m = Msg::encode("c", 1, &Data::Json("\"hi\""), Instant::now());
        assert_eq!(
            m.json(),
            r#"{"type":"message","channel":"c","id":1,"data":"hi"}"#
        );
        assert_eq!(&m.frame[..2], &[0x81, m.json().len() as u8]);
        assert_eq!(&*m.raw_frame, &[0x81, 2, b'h', b'i']);
    }

    #[test]
    fn sse_lines_are_built_once_and_shared() {
        let m = Msg::encode("c", 7, &Data::Binary(&[0, 1, 2]), Instant::now());
        let a = m.sse_data(true).clone();
        assert!(Arc::ptr_eq(&a, m.sse_data(true)));
        assert_eq!(&*a, b"data: AAEC\n");
        assert!(m
            .sse_data(false)
            .starts_with(b"data: {\"type\":\"message\""));
    }
}
