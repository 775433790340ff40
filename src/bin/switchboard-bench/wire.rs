//! The client side of RFC 6455: the upgrade request, checking the server's 101, masked frames
//! out and unmasked frames in.
//!
//! Pure functions over byte slices, like the server's codecs: decoding never consumes anything
//! and reports `Ok(None)` when more bytes are needed. The server-side crate decodes only masked
//! (client) frames, so the unmasked decoder lives here; encoding and masking reuse the crate.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use switchboard::codec::frame::{self, OpCode};
use switchboard::codec::http::{accept_key, find_head_end};

/// A 101 head bigger than this is not a server we want to talk to.
pub const MAX_RESPONSE_HEAD_BYTES: usize = 8 * 1024;
/// Header lines looked at in a response; more is treated as a broken response.
const MAX_RESPONSE_HEADERS: usize = 32;
/// Largest message the bench accepts; anything bigger is a protocol failure, not a reason to
/// grow a buffer without bound.
pub const MAX_MESSAGE_BYTES: u64 = 64 * 1024 * 1024;

/// What the bench offers with `--compression`: a browser's offer.
pub const DEFLATE_OFFER: &[u8] =
    b"\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits";

/// Appends the HTTP/1.1 upgrade request for `path` with the given 16-byte key, offering
/// permessage-deflate when `offer_deflate`.
pub fn write_upgrade_request(
    out: &mut Vec<u8>,
    host: &str,
    path: &str,
    key: &[u8; 16],
    offer_deflate: bool,
) {
    let key = BASE64.encode(key);
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(
        b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ",
    );
    out.extend_from_slice(key.as_bytes());
    if offer_deflate {
        out.extend_from_slice(DEFLATE_OFFER);
    }
    out.extend_from_slice(b"\r\n\r\n");
}

/// What a (possibly partial) response to the upgrade request says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    /// The head is not complete yet.
    Incomplete,
    /// 101 with the right accept key; frames start at `head_len`. `deflate`: it agreed
    /// permessage-deflate.
    Accepted { head_len: usize, deflate: bool },
    /// A complete non-101 response.
    Refused { status: u16 },
    /// A 101 that fails RFC 6455 §4.1 checks, or a head that is not HTTP.
    Invalid,
}

/// Checks the server's answer to an upgrade request sent with `key` (and a permessage-deflate
/// offer when `offered`: an extension we did not offer makes the 101 invalid).
pub fn parse_upgrade_response(buf: &[u8], key: &[u8; 16], offered: bool) -> Upgrade {
    let Some(head_len) = find_head_end(buf, 0) else {
        return if buf.len() > MAX_RESPONSE_HEAD_BYTES {
            Upgrade::Invalid
        } else {
            Upgrade::Incomplete
        };
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let Some(head) = buf.get(..head_len) else {
        return Upgrade::Invalid;
    };
    match resp.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Upgrade::Invalid,
    }
    let Some(status) = resp.code else {
        return Upgrade::Invalid;
    };
    if status != 101 {
        return Upgrade::Refused { status };
    }
    let expected = accept_key(&BASE64.encode(key));
    let (mut upgrade, mut connection, mut accept) = (false, false, false);
    let mut extension = None;
    for h in resp.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("");
        if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade |= value.trim().eq_ignore_ascii_case("websocket");
        } else if h.name.eq_ignore_ascii_case("connection") {
            connection |= value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
        } else if h.name.eq_ignore_ascii_case("sec-websocket-accept") {
            accept |= value.trim() == expected;
        } else if h.name.eq_ignore_ascii_case("sec-websocket-extensions") {
            let name = value.split(';').next().unwrap_or("").trim();
            extension = Some(name.eq_ignore_ascii_case("permessage-deflate"));
        }
    }
    let deflate = match extension {
        None => false,
        Some(true) if offered => true,
        Some(_) => return Upgrade::Invalid,
    };
    if upgrade && connection && accept {
        Upgrade::Accepted { head_len, deflate }
    } else {
        Upgrade::Invalid
    }
}

/// Appends one complete masked client frame (RFC 6455 §5.3: every client frame is masked),
/// the whole message in one frame.
pub fn write_client_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8], mask: [u8; 4]) {
    frame::write_client_frame(out, 0x80 | opcode.bits(), payload, mask);
}

/// Appends a masked Close frame carrying `code`.
pub fn write_client_close(out: &mut Vec<u8>, code: u16, mask: [u8; 4]) {
    write_client_frame(out, OpCode::Close, &code.to_be_bytes(), mask);
}

/// A decoded server frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerHeader {
    pub fin: bool,
    pub opcode: OpCode,
    pub payload_len: usize,
    pub header_len: usize,
    /// RSV1: a compressed message (only where permessage-deflate was agreed).
    pub rsv1: bool,
}

/// Why a server frame is unacceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// RSV bits without an extension, or a reserved opcode.
    Reserved,
    /// §5.1: "A server MUST NOT mask any frames that it sends to the client."
    Masked,
    /// A control frame that is fragmented or over 125 bytes.
    BadControl,
    /// Over `MAX_MESSAGE_BYTES`.
    TooBig,
}

const OPCODES: [OpCode; 6] = [
    OpCode::Continuation,
    OpCode::Text,
    OpCode::Binary,
    OpCode::Close,
    OpCode::Ping,
    OpCode::Pong,
];

/// Decodes a server-to-client frame header at the start of `buf`; `Ok(None)` if incomplete.
///
/// With `accept_masked` a masked frame is taken too (its 4-byte key counted in `header_len`,
/// the payload left masked): only for `--accept-masked`, where the server is the raw TCP echo
/// of `benches/peers/mio-tcp` that sends the client's own frames back unchanged.
///
/// With `rsv1_allowed` (permessage-deflate agreed), RSV1 is reported rather than refused; the
/// caller checks it is on a message's first frame.
pub fn decode_server_header(
    buf: &[u8],
    accept_masked: bool,
    rsv1_allowed: bool,
) -> Result<Option<ServerHeader>, FrameError> {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    let reserved = if rsv1_allowed { 0x30 } else { 0x70 };
    if b0 & reserved != 0 {
        return Err(FrameError::Reserved);
    }
    let opcode = OPCODES
        .into_iter()
        .find(|op| op.bits() == b0 & 0x0F)
        .ok_or(FrameError::Reserved)?;
    let masked = b1 & 0x80 != 0;
    if masked && !accept_masked {
        return Err(FrameError::Masked);
    }
    let fin = b0 & 0x80 != 0;
    let (len, mut header_len) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(&[a, b]) => (u64::from(u16::from_be_bytes([a, b])), 4),
            _ => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut be = [0u8; 8];
                be.copy_from_slice(b);
                (u64::from_be_bytes(be), 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if opcode.is_control() && (!fin || len > 125) {
        return Err(FrameError::BadControl);
    }
    if len > MAX_MESSAGE_BYTES {
        return Err(FrameError::TooBig);
    }
    if masked {
        header_len += 4;
        if buf.len() < header_len {
            return Ok(None);
        }
    }
    let payload_len = usize::try_from(len).map_err(|_| FrameError::TooBig)?;
    Ok(Some(ServerHeader {
        fin,
        opcode,
        payload_len,
        header_len,
        rsv1: b0 & 0x40 != 0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard::codec::frame::write_server_frame;

    #[test]
    fn rfc6455_masked_hello_round_trips() {
        // §5.7: masked "Hello" with key 37 fa 21 3d.
        let mut out = Vec::new();
        write_client_frame(&mut out, OpCode::Text, b"Hello", [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(
            out,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        let h = switchboard::codec::frame::decode_client_header(&out)
            .ok()
            .flatten()
            .map(|h| (h.payload_len, h.header_len));
        assert_eq!(h, Some((5, 6)));
    }

    #[test]
    fn server_frames_decode_at_every_length_class() {
        for len in [0usize, 5, 125, 126, 65535, 65536] {
            let mut out = Vec::new();
            write_server_frame(&mut out, OpCode::Binary, &vec![7u8; len]);
            let h = decode_server_header(&out, false, false);
            assert!(
                matches!(h, Ok(Some(h)) if h.payload_len == len && h.header_len + len == out.len())
            );
            for cut in 0..h.ok().flatten().map_or(0, |h| h.header_len) {
                assert_eq!(
                    decode_server_header(&out[..cut], false, false),
                    Ok(None),
                    "len {len} cut {cut}"
                );
            }
        }
    }

    #[test]
    fn server_frame_rule_violations() {
        assert_eq!(
            decode_server_header(&[0x81, 0x85], false, false),
            Err(FrameError::Masked)
        );
        // --accept-masked: the mask key belongs to the header.
        assert_eq!(
            decode_server_header(&[0x81, 0x85, 1, 2, 3], true, false),
            Ok(None)
        );
        assert_eq!(
            decode_server_header(&[0x81, 0x85, 1, 2, 3, 4], true, false)
                .map(|h| h.map(|h| (h.payload_len, h.header_len))),
            Ok(Some((5, 6)))
        );
        assert_eq!(
            decode_server_header(&[0xC1, 0x00], false, false),
            Err(FrameError::Reserved)
        );
        assert_eq!(
            decode_server_header(&[0x83, 0x00], false, false),
            Err(FrameError::Reserved)
        );
        assert_eq!(
            decode_server_header(&[0x09, 0x00], false, false),
            Err(FrameError::BadControl)
        );
        assert_eq!(
            decode_server_header(&[0x89, 126, 0, 126], false, false),
            Err(FrameError::BadControl)
        );
    }

    #[test]
    fn upgrade_response_checks() {
        // RFC 6455 §1.3 example key.
        let key: [u8; 16] = *b"the sample nonce";
        let good = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x00";
        let head_len = good.len() - 2;
        assert_eq!(
            parse_upgrade_response(good, &key, false),
            Upgrade::Accepted {
                head_len,
                deflate: false
            }
        );
        assert_eq!(
            parse_upgrade_response(&good[..40], &key, false),
            Upgrade::Incomplete
        );
        let wrong = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAA\r\n\r\n";
        assert_eq!(parse_upgrade_response(wrong, &key, false), Upgrade::Invalid);
        let busy = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\r\n";
        assert_eq!(
            parse_upgrade_response(busy, &key, false),
            Upgrade::Refused { status: 503 }
        );
        let mut req = Vec::new();
        write_upgrade_request(&mut req, "127.0.0.1:1", "/echo", &key, false);
        assert!(req.ends_with(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"));
    }

    #[test]
    fn permessage_deflate_offer_and_answer() {
        let key: [u8; 16] = *b"the sample nonce";
        let mut req = Vec::new();
        write_upgrade_request(&mut req, "127.0.0.1:1", "/echo", &key, true);
        assert!(req.ends_with(b"permessage-deflate; client_max_window_bits\r\n\r\n"));
        let agreed = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n";
        assert_eq!(
            parse_upgrade_response(agreed, &key, true),
            Upgrade::Accepted {
                head_len: agreed.len(),
                deflate: true
            }
        );
        // Not offered: a server that answers with it anyway is broken.
        assert_eq!(
            parse_upgrade_response(agreed, &key, false),
            Upgrade::Invalid
        );
        assert_eq!(
            decode_server_header(&[0xC1, 0x00], false, true).map(|h| h.map(|h| h.rsv1)),
            Ok(Some(true))
        );
        assert_eq!(
            decode_server_header(&[0xA1, 0x00], false, true),
            Err(FrameError::Reserved)
        );
    }
}
