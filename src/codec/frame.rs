//! RFC 6455 §5.2 frame headers: decoding what clients send, encoding what the server sends.
//!
//! Pure functions over byte slices. Decoding never consumes anything: it reports either a
//! complete header (and its length) or that more bytes are needed, so the caller can keep a
//! partial header for the next read. Every rule that can be checked from the header alone is
//! checked here, before a single payload byte is read.

use crate::error::ProtocolError;

/// The longest possible frame header: 2 bytes + 8-byte length + 4-byte mask key.
pub const MAX_HEADER_LEN: usize = 14;
/// Control frames carry at most 125 payload bytes (§5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Result<Self, ProtocolError> {
        Ok(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return Err(ProtocolError::ReservedOpcode),
        })
    }

    pub fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A decoded client frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    pub opcode: OpCode,
    pub mask: [u8; 4],
    pub payload_len: u64,
    /// Bytes the header itself took.
    pub header_len: usize,
    /// RSV1: with permessage-deflate, "this message is compressed" (RFC 7692 §6).
    pub rsv1: bool,
}

/// Decodes a client-to-server frame header from the start of `buf`.
///
/// `Ok(None)`: `buf` holds only part of a header. Errors are the RFC violations a header
/// alone shows: RSV bits without an extension, reserved opcodes, an unmasked client frame,
/// a fragmented or oversized control frame, a 64-bit length with the top bit set, and a
/// length that cannot be minimal-encoded is *not* an error (the RFC only says "must" for the
/// sender, and Autobahn expects it to be accepted).
pub fn decode_client_header(buf: &[u8]) -> Result<Option<Header>, ProtocolError> {
    decode_client_header_ext(buf, false)
}

/// [`decode_client_header`] for a connection with an extension that gives RSV1 a meaning
/// (permessage-deflate): with `rsv1_allowed`, RSV1 is reported in [`Header::rsv1`] rather
/// than refused; which frames may carry it is the decoder's rule (it knows the message).
pub fn decode_client_header_ext(
    buf: &[u8],
    rsv1_allowed: bool,
) -> Result<Option<Header>, ProtocolError> {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    let reserved = if rsv1_allowed { 0x30 } else { 0x70 };
    if b0 & reserved != 0 {
        return Err(ProtocolError::ReservedBits);
    }
    let rsv1 = b0 & 0x40 != 0;
    let fin = b0 & 0x80 != 0;
    let opcode = OpCode::from_bits(b0 & 0x0F)?;
    if b1 & 0x80 == 0 {
        return Err(ProtocolError::UnmaskedFrame);
    }
    let (payload_len, len_bytes) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 2),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut be = [0u8; 8];
                be.copy_from_slice(b);
                let len = u64::from_be_bytes(be);
                if len >> 63 != 0 {
                    return Err(ProtocolError::LengthTopBitSet);
                }
                (len, 8)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 0),
    };
    if opcode.is_control() {
        if !fin {
            return Err(ProtocolError::FragmentedControl);
        }
        if payload_len > MAX_CONTROL_PAYLOAD as u64 {
            return Err(ProtocolError::ControlTooLong);
        }
    }
    let mask_at = 2 + len_bytes;
    let Some(m) = buf.get(mask_at..mask_at + 4) else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin,
        opcode,
        mask: [m[0], m[1], m[2], m[3]],
        payload_len,
        header_len: mask_at + 4,
        rsv1,
    }))
}

/// Encodes an unmasked server frame header into `out`; returns the bytes written (2, 4 or 10).
pub fn encode_server_header(
    out: &mut [u8; MAX_HEADER_LEN],
    fin: bool,
    opcode: OpCode,
    payload_len: usize,
) -> usize {
    encode_server_header_rsv1(out, fin, false, opcode, payload_len)
}

/// [`encode_server_header`] with RSV1 set as given: a permessage-deflate compressed
/// message sets it on its first frame (RFC 7692 §6.1).
pub fn encode_server_header_rsv1(
    out: &mut [u8; MAX_HEADER_LEN],
    fin: bool,
    rsv1: bool,
    opcode: OpCode,
    payload_len: usize,
) -> usize {
    let first = (if fin { 0x80 } else { 0 }) | (if rsv1 { 0x40 } else { 0 }) | opcode.bits();
    encode_header(out, first, payload_len)
}

/// A header with `first` as its first byte and the payload length in the shortest of the
/// three encodings; the mask bit clear.
fn encode_header(out: &mut [u8; MAX_HEADER_LEN], first: u8, payload_len: usize) -> usize {
    out[0] = first;
    if payload_len < 126 {
        out[1] = payload_len as u8;
        2
    } else if let Ok(len) = u16::try_from(payload_len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        10
    }
}

/// Appends one masked client frame (RFC 6455 §5.3) whose first byte is `first` as given —
/// FIN, RSV bits and opcode, valid or not — for the load generator's frames and for tests
/// and fuzzers that must also write the ones a server refuses.
pub fn write_client_frame(out: &mut Vec<u8>, first: u8, payload: &[u8], mask: [u8; 4]) {
    let mut header = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&mut header, first, payload.len());
    header[1] |= 0x80;
    out.reserve(n + 4 + payload.len());
    out.extend_from_slice(&header[..n]);
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    crate::codec::mask::apply_mask(&mut out[start..], mask, 0);
}

/// Appends a complete unmasked server frame (header + payload) to `out`.
pub fn write_server_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    let mut header = [0u8; MAX_HEADER_LEN];
    let n = encode_server_header(&mut header, true, opcode, payload.len());
    out.reserve(n + payload.len());
    out.extend_from_slice(&header[..n]);
    out.extend_from_slice(payload);
}

/// Appends a complete compressed server frame: RSV1 set, `deflated` already the
/// permessage-deflate payload (RFC 7692 §7.2.1).
pub fn write_compressed_frame(out: &mut Vec<u8>, opcode: OpCode, deflated: &[u8]) {
    let mut header = [0u8; MAX_HEADER_LEN];
    let n = encode_server_header_rsv1(&mut header, true, true, opcode, deflated.len());
    out.reserve(n + deflated.len());
    out.extend_from_slice(&header[..n]);
    out.extend_from_slice(deflated);
}

/// Whether a complete server frame (unmasked, as [`write_server_frame`] makes it) is text,
/// and its payload.
pub fn server_payload(frame: &[u8]) -> (bool, &[u8]) {
    let text = frame.first().is_some_and(|b| b & 0x0F == 0x1);
    let header = match frame.get(1).map(|b| b & 0x7F) {
        Some(126) => 4,
        Some(127) => 10,
        _ => 2,
    };
    (text, frame.get(header..).unwrap_or_default())
}

/// Close status codes live with the errors that map to them; re-exported where frames are.
pub use crate::error::close_code;

/// Appends a server Close frame with `code` and a reason (truncated to fit 125 bytes on a
/// character boundary).
pub fn write_close_frame(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    write_server_frame(out, OpCode::Close, &payload[..2 + end]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_masked_hello() {
        // §5.7: 0x81 0x85 0x37 0xfa 0x21 0x3d 0x7f 0x9f 0x4d 0x51 0x58
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let h = decode_client_header(&bytes).unwrap().unwrap();
        assert_eq!(
            h,
            Header {
                fin: true,
                opcode: OpCode::Text,
                mask: [0x37, 0xfa, 0x21, 0x3d],
                payload_len: 5,
                header_len: 6,
                rsv1: false,
            }
        );
    }

    #[test]
    fn client_frames_are_written_byte_for_byte() {
        let mut out = Vec::new();
        write_client_frame(&mut out, 0x81, b"Hello", [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(
            out,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        // Any first byte as given (no FIN, RSV1, a reserved opcode); a 16-bit length.
        out.clear();
        write_client_frame(&mut out, 0x43, &[0; 200], [1, 2, 3, 4]);
        assert_eq!(out[..8], [0x43, 0xFE, 0x00, 0xC8, 1, 2, 3, 4]);
        assert_eq!(out[8..12], [1, 2, 3, 4], "zeros masked are the key");
        assert_eq!(out.len(), 8 + 200);
    }

    #[test]
    fn every_prefix_of_a_header_needs_more() {
        let mut long = vec![0x82, 0xFF];
        long.extend_from_slice(&70_000u64.to_be_bytes());
        long.extend_from_slice(&[1, 2, 3, 4]);
        let mut medium = vec![0x82, 0xFE, 0x01, 0x00, 9, 9, 9, 9];
        let short = vec![0x89, 0x80, 5, 6, 7, 8];
        for full in [&mut long, &mut medium, &short.clone()] {
            for cut in 0..full.len() {
                assert_eq!(decode_client_header(&full[..cut]), Ok(None), "cut {cut}");
            }
            assert!(decode_client_header(full).unwrap().is_some());
        }
        let h = decode_client_header(&long).unwrap().unwrap();
        assert_eq!(
            (h.payload_len, h.header_len, h.mask),
            (70_000, 14, [1, 2, 3, 4])
        );
        let h = decode_client_header(&medium).unwrap().unwrap();
        assert_eq!((h.payload_len, h.header_len), (256, 8));
    }

    #[test]
    fn header_rule_violations() {
        use ProtocolError::*;
        let cases: &[(&[u8], ProtocolError)] = &[
            (&[0xC1, 0x80], ReservedBits),      // RSV1
            (&[0xA1, 0x80], ReservedBits),      // RSV2
            (&[0x91, 0x80], ReservedBits),      // RSV3
            (&[0x83, 0x80], ReservedOpcode),    // 0x3
            (&[0x87, 0x80], ReservedOpcode),    // 0x7
            (&[0x8B, 0x80], ReservedOpcode),    // 0xB
            (&[0x8F, 0x80], ReservedOpcode),    // 0xF
            (&[0x81, 0x05], UnmaskedFrame),     // text without mask bit
            (&[0x09, 0x80], FragmentedControl), // ping without FIN
            (&[0x88, 0xFE, 0, 126], ControlTooLong),
            (&[0x8A, 0xFE], ControlTooLong), // checked once the length is known
        ];
        for (bytes, want) in cases {
            match decode_client_header(bytes) {
                Err(e) => assert_eq!(e, *want, "{bytes:02x?}"),
                Ok(r) if *want == ControlTooLong && r.is_none() => {}
                Ok(r) => panic!("{bytes:02x?} decoded as {r:?}, wanted {want:?}"),
            }
        }
        let mut top_bit = vec![0x82, 0xFF];
        top_bit.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(decode_client_header(&top_bit), Err(LengthTopBitSet));
    }

    #[test]
    fn rsv1_with_an_extension() {
        let compressed = [0xC1, 0x80, 0, 0, 0, 0];
        let h = decode_client_header_ext(&compressed, true)
            .unwrap()
            .unwrap();
        assert!(h.rsv1);
        assert_eq!(
            decode_client_header_ext(&compressed, false),
            Err(ProtocolError::ReservedBits)
        );
        // RSV2 and RSV3 stay reserved.
        for b0 in [0xE1, 0xD1, 0xA1, 0x91] {
            assert_eq!(
                decode_client_header_ext(&[b0, 0x80], true),
                Err(ProtocolError::ReservedBits),
                "{b0:02x}"
            );
        }
        let mut h = [0u8; MAX_HEADER_LEN];
        assert_eq!(
            encode_server_header_rsv1(&mut h, true, true, OpCode::Text, 7),
            2
        );
        assert_eq!(&h[..2], &[0xC1, 7]);
        let mut f = Vec::new();
        write_compressed_frame(&mut f, OpCode::Binary, &[0xf2, 0x48]);
        assert_eq!(f, [0xC2, 2, 0xf2, 0x48]);
    }

    #[test]
    fn ping_of_exactly_125_bytes_is_allowed() {
        assert!(decode_client_header(&[0x89, 0xFD, 0, 0, 0, 0])
            .unwrap()
            .is_some());
        assert_eq!(
            decode_client_header(&[0x89, 0xFE, 0, 126, 0, 0, 0, 0]),
            Err(ProtocolError::ControlTooLong)
        );
    }

    #[test]
    fn server_header_lengths() {
        let mut h = [0u8; MAX_HEADER_LEN];
        assert_eq!(encode_server_header(&mut h, true, OpCode::Text, 5), 2);
        assert_eq!(&h[..2], &[0x81, 0x05]);
        assert_eq!(encode_server_header(&mut h, true, OpCode::Binary, 125), 2);
        assert_eq!(&h[..2], &[0x82, 125]);
        assert_eq!(encode_server_header(&mut h, true, OpCode::Binary, 126), 4);
        assert_eq!(&h[..4], &[0x82, 126, 0, 126]);
        assert_eq!(encode_server_header(&mut h, false, OpCode::Text, 65535), 4);
        assert_eq!(&h[..4], &[0x01, 126, 0xFF, 0xFF]);
        assert_eq!(
            encode_server_header(&mut h, true, OpCode::Binary, 65536),
            10
        );
        assert_eq!(&h[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn rfc6455_unmasked_frames() {
        // §5.7: unmasked "Hello" and an unmasked ping with body "Hello".
        let mut out = Vec::new();
        write_server_frame(&mut out, OpCode::Text, b"Hello");
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        out.clear();
        write_server_frame(&mut out, OpCode::Pong, b"Hello");
        assert_eq!(out, [0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    }

    #[test]
    fn close_frame_reason_is_truncated_on_a_char_boundary() {
        let mut out = Vec::new();
        write_close_frame(&mut out, 1001, "bye");
        assert_eq!(out, [0x88, 5, 0x03, 0xE9, b'b', b'y', b'e']);
        out.clear();
        let long = "é".repeat(100); // 200 bytes
        write_close_frame(&mut out, 1000, &long);
        assert_eq!(out[1] as usize, 2 + 122);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }

    #[test]
    fn close_code_validity() {
        for ok in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 3000, 3999, 4000, 4999,
        ] {
            assert!(close_code::is_valid_on_wire(ok), "{ok}");
        }
        for bad in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!close_code::is_valid_on_wire(bad), "{bad}");
        }
    }
}
