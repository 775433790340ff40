//! One published message, encoded once for every kind of subscriber: the `message` envelope
//! and the bare payload as complete server frames, and (built by the first worker that needs
//! them, then shared) its Server-Sent Events lines and its permessage-deflate frames — so a
//! broadcast is compressed once, not once per subscriber.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use base64::Engine as _;

use crate::codec::deflate::{Deflate, Window};
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
    /// The envelope and raw frames compressed (RSV1 set), with a 15-bit window; `None`:
    /// not worth it (under `--compression-min-bytes`, or no smaller).
    deflated: [OnceLock<Option<Arc<[u8]>>>; 2],
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
            deflated: Default::default(),
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
            deflated: Default::default(),
        }
    }

    /// The frame for a WebSocket subscriber: the envelope, or with `raw` the payload alone.
    pub fn ws_frame(&self, raw: bool) -> &Arc<[u8]> {
        if raw {
            &self.raw_frame
        } else {
            &self.frame
        }
    }

    /// Builds the compressed frame (envelope or raw) if no worker has yet, with this
    /// worker's compressor; later calls, from any worker, share it.
    pub fn deflate(&self, raw: bool, codec: &mut Deflate, min_bytes: usize) {
        self.deflated[usize::from(raw)].get_or_init(|| {
            let (text, payload) = frame::server_payload(self.ws_frame(raw));
            if payload.len() < min_bytes {
                return None;
            }
            let deflated = codec.compress_message(payload, Window::MAX.bits())?;
            let opcode = if text { OpCode::Text } else { OpCode::Binary };
            let mut f = Vec::with_capacity(deflated.len() + frame::MAX_HEADER_LEN);
            frame::write_compressed_frame(&mut f, opcode, deflated);
            Some(f.into())
        });
    }

    /// The frame for a WebSocket subscriber whose connection compresses with `window`
    /// (`None`: it does not): the compressed one when [`Msg::deflate`] built one and the
    /// peer can inflate it. It was compressed with a 15-bit window, but a message no longer
    /// than a smaller window holds no back-reference beyond it (each message starts
    /// afresh), so it also suits a peer that limited our window; a longer one goes to such
    /// a peer uncompressed.
    pub fn ws_frame_for(&self, raw: bool, window: Option<Window>) -> &Arc<[u8]> {
        let plain = self.ws_frame(raw);
        let Some(window) = window else {
            return plain;
        };
        match self.deflated[usize::from(raw)].get() {
            Some(Some(z))
                if window == Window::MAX
                    || frame::server_payload(plain).1.len() <= 1 << window.bits() =>
            {
                z
            }
            _ => plain,
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

    #[test]
    fn compressed_frames_are_built_once_and_shared() {
        let data = format!("{{\"text\":\"{}\"}}", "hello ".repeat(50));
        let m = Msg::encode("c", 1, &Data::Json(&data), Instant::now());
        let mut codec = Deflate::new();
        // Not built yet: the plain frame.
        assert!(Arc::ptr_eq(
            m.ws_frame_for(false, Some(Window::MAX)),
            &m.frame
        ));
        m.deflate(false, &mut codec, 128);
        m.deflate(true, &mut codec, 128);
        let z = m.ws_frame_for(false, Some(Window::MAX)).clone();
        assert_eq!(z[0], 0xC1, "FIN, RSV1, text");
        assert!(z.len() < m.frame.len() / 2);
        m.deflate(false, &mut Deflate::new(), 128);
        assert!(Arc::ptr_eq(&z, m.ws_frame_for(false, Some(Window::MAX))));
        // A subscriber without compression gets the plain frame.
        assert!(Arc::ptr_eq(m.ws_frame_for(false, None), &m.frame));
        let (_, payload) = frame::server_payload(&z);
        let back = crate::codec::deflate::Inflater::default()
            .inflate(&[payload], 1 << 20)
            .unwrap();
        assert_eq!(back, m.json().as_bytes());
        let raw = m.ws_frame_for(true, Some(Window::MAX));
        assert_eq!(raw[0], 0xC1);
    }

    #[test]
    fn small_messages_and_small_windows() {
        let m = Msg::encode("c", 1, &Data::Json("\"hi\""), Instant::now());
        let mut codec = Deflate::new();
        m.deflate(false, &mut codec, 128);
        m.deflate(true, &mut codec, 128);
        assert!(Arc::ptr_eq(
            m.ws_frame_for(false, Some(Window::MAX)),
            &m.frame
        ));
        assert!(Arc::ptr_eq(
            m.ws_frame_for(true, Some(Window::MAX)),
            &m.raw_frame
        ));
        // 2000 bytes: compressed for a 15- or 11-bit window, not for a 10-bit (1 KiB) one.
        let big = format!("\"{}\"", "abcd".repeat(500));
        let m = Msg::encode("c", 1, &Data::Json(&big), Instant::now());
        m.deflate(true, &mut codec, 128);
        let w = |bits| {
            crate::codec::deflate::negotiate([format!(
                "permessage-deflate; server_max_window_bits={bits}"
            )
            .as_str()])
            .map(|a| a.window())
        };
        assert!(!Arc::ptr_eq(m.ws_frame_for(true, w(11)), &m.raw_frame));
        assert!(Arc::ptr_eq(m.ws_frame_for(true, w(10)), &m.raw_frame));
    }
}
