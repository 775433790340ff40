//! Streaming RFC 6455 decoder: bytes in, messages and control frames out (§5.4 fragmentation,
//! §5.5 control frames, §5.6 UTF-8 text, §7.1.5–7.1.6 close payloads).
//!
//! Pure: no I/O. The caller hands over whatever one `read` returned; the decoder unmasks it in
//! place and emits events. A frame that arrives whole in one read is handed out as a slice of
//! the caller's buffer (no copy); only a frame cut by a read boundary, or a fragmented message,
//! is copied into the decoder's own buffer, once. When [`Decoder::is_idle`] the decoder holds
//! nothing worth keeping and the connection may drop it, so an idle connection owns no buffer.
//!
//! With permessage-deflate (RFC 7692), RSV1 on a message's first frame marks it compressed:
//! its frames are collected and inflated once, at its end, by the worker's inflater (which
//! is passed in per call, so it never holds half a message of one connection while it
//! serves another), under the message size bound; UTF-8 is then checked on the inflated
//! text.

use crate::codec::deflate::{InflateError, Inflater};
use crate::codec::frame::{self, close_code, Header, OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use crate::codec::mask::apply_mask;
use crate::codec::utf8::Utf8Validator;
use crate::error::ProtocolError;

/// At most this much is reserved up front for a message whose header announces more: a
/// client that announces 1 MiB and sends nothing must not cost 1 MiB.
const MESSAGE_PREALLOC_BYTES: usize = 64 * 1024;

/// Payload of a complete data message.
#[derive(Debug)]
pub enum Payload<'a> {
    /// The message arrived whole in one read: a slice of the read buffer, unmasked in place.
    Borrowed(&'a [u8]),
    /// The message was assembled from several reads or fragments; ownership passes on.
    Owned(Vec<u8>),
}

impl Payload<'_> {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Borrowed(s) => s,
            Payload::Owned(v) => v,
        }
    }
}

/// What the decoder found.
#[derive(Debug)]
pub enum Event<'a> {
    /// A complete Text (UTF-8 checked) or Binary message.
    Message {
        text: bool,
        payload: Payload<'a>,
    },
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    /// A valid Close frame. `code` is `None` for an empty payload.
    Close {
        code: Option<u16>,
        reason: &'a str,
    },
}

/// The handler's answer to an event: keep decoding, or stop (after a Close, or when the
/// connection is being failed) and ignore the rest of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// Where a piece of a data frame's payload stands.
#[derive(Debug, Clone, Copy)]
struct Bytes {
    fin: bool,
    /// The message's only frame, all of it in this read.
    whole_message_here: bool,
    /// The frame's last payload byte is in this piece.
    complete: bool,
}

#[derive(Debug, Clone, Copy)]
struct FrameState {
    fin: bool,
    opcode: OpCode,
    mask: [u8; 4],
    len: u64,
    /// Payload bytes of this frame already consumed.
    done: u64,
}

/// Per-connection decoding state between reads.
#[derive(Debug, Default)]
pub struct Decoder {
    header: [u8; MAX_HEADER_LEN],
    header_len: u8,
    frame: Option<FrameState>,
    /// Text or Binary once a message has started and until its final frame.
    message: Option<bool>,
    /// The message in progress is compressed (RSV1 on its first frame).
    compressed: bool,
    message_buf: Vec<u8>,
    utf8: Utf8Validator,
    /// Payload of a control frame cut by a read boundary.
    control_buf: Vec<u8>,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Nothing is buffered and no frame or message is in progress.
    pub fn is_idle(&self) -> bool {
        self.header_len == 0 && self.frame.is_none() && self.message.is_none()
    }

    /// Decodes `data` (masked bytes exactly as read), calling `on_event` for each complete
    /// message and control frame. All of `data` is consumed unless `on_event` says stop.
    /// `max_message` bounds a message's total payload (all fragments).
    pub fn decode<F>(
        &mut self,
        data: &mut [u8],
        max_message: usize,
        on_event: F,
    ) -> Result<Flow, ProtocolError>
    where
        F: FnMut(Event<'_>) -> Flow,
    {
        self.decode_with(data, max_message, None, on_event)
    }

    /// [`Decoder::decode`] on a connection that negotiated permessage-deflate when
    /// `inflater` is given: RSV1 marks a compressed message, which is inflated with
    /// `max_message` bounding its inflated size (and its compressed size as it arrives).
    pub fn decode_with<F>(
        &mut self,
        data: &mut [u8],
        max_message: usize,
        mut inflater: Option<&mut Inflater>,
        mut on_event: F,
    ) -> Result<Flow, ProtocolError>
    where
        F: FnMut(Event<'_>) -> Flow,
    {
        let mut pos = 0;
        loop {
            if self.frame.is_none() {
                let Some(header) = self.next_header(data, &mut pos, inflater.is_some())? else {
                    return Ok(Flow::Continue);
                };
                self.start_frame(header, max_message)?;
            }
            let Some(mut f) = self.frame else {
                return Ok(Flow::Continue);
            };
            let rest = data.get_mut(pos..).unwrap_or_default();
            let avail =
                usize::try_from(f.len - f.done).map_or(rest.len(), |left| left.min(rest.len()));
            let chunk = &mut rest[..avail];
            apply_mask(chunk, f.mask, f.done as usize);
            let whole_frame_here = f.done == 0 && avail as u64 == f.len;
            f.done += avail as u64;
            pos += avail;
            let complete = f.done == f.len;
            self.frame = if complete { None } else { Some(f) };

            let flow = if f.opcode.is_control() {
                self.on_control_bytes(f.opcode, chunk, whole_frame_here, complete, &mut on_event)?
            } else {
                // A whole message in this read: its only frame, all of it here.
                let whole_message_here =
                    whole_frame_here && f.fin && f.opcode != OpCode::Continuation;
                let at = Bytes {
                    fin: f.fin,
                    whole_message_here,
                    complete,
                };
                if self.compressed {
                    let inflater = inflater.as_deref_mut();
                    self.on_compressed_bytes(at, chunk, inflater, max_message, &mut on_event)?
                } else {
                    self.on_data_bytes(at, chunk, &mut on_event)?
                }
            };
            if flow == Flow::Stop {
                return Ok(Flow::Stop);
            }
            if !complete {
                return Ok(Flow::Continue);
            }
        }
    }

    /// The next frame header, completing a partial one kept from the last read; stashes a
    /// partial header and returns `None` when the input runs out first.
    fn next_header(
        &mut self,
        data: &[u8],
        pos: &mut usize,
        rsv1_allowed: bool,
    ) -> Result<Option<Header>, ProtocolError> {
        let rest = data.get(*pos..).unwrap_or_default();
        if self.header_len == 0 {
            return match frame::decode_client_header_ext(rest, rsv1_allowed)? {
                Some(h) => {
                    *pos += h.header_len;
                    Ok(Some(h))
                }
                None => {
                    // Shorter than a full header, so it fits.
                    self.header[..rest.len()].copy_from_slice(rest);
                    self.header_len = rest.len() as u8;
                    *pos = data.len();
                    Ok(None)
                }
            };
        }
        let have = usize::from(self.header_len);
        let take = (MAX_HEADER_LEN - have).min(rest.len());
        self.header[have..have + take].copy_from_slice(&rest[..take]);
        match frame::decode_client_header_ext(&self.header[..have + take], rsv1_allowed)? {
            Some(h) => {
                *pos += h.header_len - have;
                self.header_len = 0;
                Ok(Some(h))
            }
            None => {
                self.header_len = (have + take) as u8;
                *pos = data.len();
                Ok(None)
            }
        }
    }

    fn start_frame(&mut self, h: Header, max_message: usize) -> Result<(), ProtocolError> {
        // RFC 7692 §6.1: RSV1 (allowed at all only with the extension) marks a message's
        // first frame; on anything else it is a protocol error.
        if h.rsv1 && h.opcode.is_control() {
            return Err(ProtocolError::CompressedControl);
        }
        if h.rsv1 && h.opcode == OpCode::Continuation {
            return Err(ProtocolError::CompressedContinuation);
        }
        match h.opcode {
            OpCode::Continuation if self.message.is_none() => {
                return Err(ProtocolError::UnexpectedContinuation)
            }
            OpCode::Text | OpCode::Binary if self.message.is_some() => {
                return Err(ProtocolError::ExpectedContinuation)
            }
            OpCode::Text | OpCode::Binary => {
                self.message = Some(h.opcode == OpCode::Text);
                self.compressed = h.rsv1;
                self.utf8 = Utf8Validator::new();
            }
            _ => {}
        }
        if !h.opcode.is_control() {
            let total = (self.message_buf.len() as u64).saturating_add(h.payload_len);
            if total > max_message as u64 {
                return Err(ProtocolError::MessageTooBig);
            }
        }
        self.frame = Some(FrameState {
            fin: h.fin,
            opcode: h.opcode,
            mask: h.mask,
            len: h.payload_len,
            done: 0,
        });
        Ok(())
    }

    fn on_data_bytes<F>(
        &mut self,
        at: Bytes,
        chunk: &[u8],
        on_event: &mut F,
    ) -> Result<Flow, ProtocolError>
    where
        F: FnMut(Event<'_>) -> Flow,
    {
        let Bytes {
            fin,
            whole_message_here,
            complete,
        } = at;
        let text = self.message.unwrap_or(false);
        if text {
            self.utf8
                .feed(chunk)
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        if whole_message_here {
            // The common case: a whole unfragmented message in one read; no copy.
            self.message = None;
            if text && !self.utf8.is_complete() {
                return Err(ProtocolError::InvalidUtf8);
            }
            return Ok(on_event(Event::Message {
                text,
                payload: Payload::Borrowed(chunk),
            }));
        }
        self.buffer(chunk);
        if !(complete && fin) {
            return Ok(Flow::Continue);
        }
        self.message = None;
        if text && !self.utf8.is_complete() {
            return Err(ProtocolError::InvalidUtf8);
        }
        let payload = std::mem::take(&mut self.message_buf);
        Ok(on_event(Event::Message {
            text,
            payload: Payload::Owned(payload),
        }))
    }

    /// Keeps a piece of a message that did not arrive whole in one read.
    fn buffer(&mut self, chunk: &[u8]) {
        if self.message_buf.capacity() == 0 {
            let announced = self.frame.map_or(chunk.len() as u64, |f| f.len);
            self.message_buf.reserve(
                usize::try_from(announced)
                    .unwrap_or(usize::MAX)
                    .min(MESSAGE_PREALLOC_BYTES),
            );
        }
        self.message_buf.extend_from_slice(chunk);
    }

    /// Bytes of a compressed message: collected until its last frame ends, then inflated
    /// in one go (straight from the read buffer when the message arrived whole).
    fn on_compressed_bytes<F>(
        &mut self,
        at: Bytes,
        chunk: &[u8],
        inflater: Option<&mut Inflater>,
        max_message: usize,
        on_event: &mut F,
    ) -> Result<Flow, ProtocolError>
    where
        F: FnMut(Event<'_>) -> Flow,
    {
        if !at.whole_message_here {
            self.buffer(chunk);
            if !(at.complete && at.fin) {
                return Ok(Flow::Continue);
            }
        }
        let text = self.message.take().unwrap_or(false);
        self.compressed = false;
        let buffered = std::mem::take(&mut self.message_buf);
        let compressed = if at.whole_message_here {
            chunk
        } else {
            &buffered[..]
        };
        // Without an inflater RSV1 was refused with the header; this is only a fallback.
        let inflater = inflater.ok_or(ProtocolError::InvalidCompressedData)?;
        let payload = inflater
            .inflate(&[compressed], max_message)
            .map_err(|e| match e {
                InflateError::TooBig => ProtocolError::MessageTooBig,
                InflateError::Corrupt => ProtocolError::InvalidCompressedData,
            })?;
        if text {
            let mut utf8 = Utf8Validator::new();
            utf8.feed(&payload)
                .map_err(|_| ProtocolError::InvalidUtf8)?;
            if !utf8.is_complete() {
                return Err(ProtocolError::InvalidUtf8);
            }
        }
        Ok(on_event(Event::Message {
            text,
            payload: Payload::Owned(payload),
        }))
    }

    fn on_control_bytes<F>(
        &mut self,
        opcode: OpCode,
        chunk: &[u8],
        whole_frame_here: bool,
        complete: bool,
        on_event: &mut F,
    ) -> Result<Flow, ProtocolError>
    where
        F: FnMut(Event<'_>) -> Flow,
    {
        if !whole_frame_here {
            self.control_buf.reserve_exact(MAX_CONTROL_PAYLOAD);
            self.control_buf.extend_from_slice(chunk);
            if !complete {
                return Ok(Flow::Continue);
            }
        }
        let buffered = std::mem::take(&mut self.control_buf);
        let payload = if whole_frame_here {
            chunk
        } else {
            &buffered[..]
        };
        let event = match opcode {
            OpCode::Ping => Event::Ping(payload),
            OpCode::Pong => Event::Pong(payload),
            _ => parse_close(payload)?,
        };
        Ok(on_event(event))
    }
}

/// §5.5.1 / §7.1.5: empty, or a valid 2-byte code followed by a UTF-8 reason.
fn parse_close(payload: &[u8]) -> Result<Event<'_>, ProtocolError> {
    match payload {
        [] => Ok(Event::Close {
            code: None,
            reason: "",
        }),
        [_] => Err(ProtocolError::CloseTooShort),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !close_code::is_valid_on_wire(code) {
                return Err(ProtocolError::InvalidCloseCode);
            }
            let reason = std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Event::Close {
                code: Some(code),
                reason,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame, as a conforming client would send it.
    pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let first = (if fin { 0x80 } else { 0 }) | opcode;
        crate::codec::frame::write_client_frame(&mut out, first, payload, [0xA1, 0xB2, 0xC3, 0xD4]);
        out
    }

    #[derive(Debug, PartialEq)]
    enum Seen {
        Msg(bool, Vec<u8>, bool),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<u16>, String),
    }

    /// Feeds `stream` cut at `cuts`; returns the events and the first error.
    fn run(stream: &[u8], cuts: &[usize], max: usize) -> (Vec<Seen>, Option<ProtocolError>) {
        run_with(stream, cuts, max, false)
    }

    /// [`run`], with permessage-deflate negotiated when `deflate`.
    fn run_with(
        stream: &[u8],
        cuts: &[usize],
        max: usize,
        deflate: bool,
    ) -> (Vec<Seen>, Option<ProtocolError>) {
        let mut inflater = deflate.then(Inflater::default);
        let mut d = Decoder::new();
        let mut seen = Vec::new();
        let mut bounds = vec![0];
        bounds.extend(cuts.iter().copied().filter(|&c| c < stream.len()));
        bounds.push(stream.len());
        for w in bounds.windows(2) {
            let mut piece = stream[w[0]..w[1]].to_vec();
            let r = d.decode_with(&mut piece, max, inflater.as_mut(), |e| {
                let stop = matches!(e, Event::Close { .. });
                seen.push(match e {
                    Event::Message { text, payload } => {
                        let borrowed = matches!(payload, Payload::Borrowed(_));
                        Seen::Msg(text, payload.as_slice().to_vec(), borrowed)
                    }
                    Event::Ping(p) => Seen::Ping(p.to_vec()),
                    Event::Pong(p) => Seen::Pong(p.to_vec()),
                    Event::Close { code, reason } => Seen::Close(code, reason.to_string()),
                });
                if stop {
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            });
            match r {
                Err(e) => return (seen, Some(e)),
                Ok(Flow::Stop) => return (seen, None),
                Ok(Flow::Continue) => {}
            }
        }
        (seen, None)
    }

    fn strip_borrowed(seen: Vec<Seen>) -> Vec<Seen> {
        seen.into_iter()
            .map(|s| match s {
                Seen::Msg(t, p, _) => Seen::Msg(t, p, false),
                other => other,
            })
            .collect()
    }

    #[test]
    fn whole_frame_in_one_read_is_borrowed() {
        let stream = client_frame(true, 1, b"Hello");
        let (seen, err) = run(&stream, &[], 1 << 20);
        assert_eq!(err, None);
        assert_eq!(seen, vec![Seen::Msg(true, b"Hello".to_vec(), true)]);
    }

    #[test]
    fn any_split_gives_the_same_events() {
        let mut stream = client_frame(false, 1, "κόσ".as_bytes());
        stream.extend(client_frame(true, 9, b"ping!"));
        stream.extend(client_frame(true, 0, "με".as_bytes()));
        stream.extend(client_frame(true, 2, &[0u8; 300]));
        stream.extend(client_frame(true, 10, b""));
        stream.extend(client_frame(true, 2, &vec![7u8; 70_000]));
        stream.extend(client_frame(true, 8, &[0x03, 0xE8, b'o', b'k']));
        let want = vec![
            Seen::Ping(b"ping!".to_vec()),
            Seen::Msg(true, "κόσμε".as_bytes().to_vec(), false),
            Seen::Msg(false, vec![0u8; 300], false),
            Seen::Pong(vec![]),
            Seen::Msg(false, vec![7u8; 70_000], false),
            Seen::Close(Some(1000), "ok".into()),
        ];
        for cut in 0..stream.len().min(400) {
            let (seen, err) = run(&stream, &[cut], 1 << 20);
            assert_eq!(err, None, "cut {cut}");
            assert_eq!(strip_borrowed(seen), want, "cut {cut}");
        }
        for step in [1, 2, 3, 7, 13, 64, 1000] {
            let cuts: Vec<usize> = (1..stream.len()).step_by(step).collect();
            let (seen, err) = run(&stream, &cuts, 1 << 20);
            assert_eq!(err, None, "step {step}");
            assert_eq!(strip_borrowed(seen), want, "step {step}");
        }
    }

    #[test]
    fn decoder_is_idle_only_between_messages() {
        let mut d = Decoder::new();
        let stream = client_frame(false, 2, b"abc");
        let mut part = stream[..3].to_vec();
        d.decode(&mut part, 100, |_| Flow::Continue).unwrap();
        assert!(!d.is_idle(), "partial header");
        let mut part = stream[3..].to_vec();
        d.decode(&mut part, 100, |_| Flow::Continue).unwrap();
        assert!(!d.is_idle(), "fragmented message open");
        let mut last = client_frame(true, 0, b"d");
        let mut got = Vec::new();
        d.decode(&mut last, 100, |e| {
            if let Event::Message { payload, .. } = e {
                got = payload.as_slice().to_vec();
            }
            Flow::Continue
        })
        .unwrap();
        assert!(d.is_idle());
        assert_eq!(got, b"abcd");
        assert_eq!(d.message_buf.capacity(), 0, "buffer handed out, not kept");
    }

    #[test]
    fn fragmentation_rules() {
        let cont = client_frame(true, 0, b"x");
        assert_eq!(
            run(&cont, &[], 100).1,
            Some(ProtocolError::UnexpectedContinuation)
        );
        let mut two_starts = client_frame(false, 1, b"a");
        two_starts.extend(client_frame(true, 1, b"b"));
        assert_eq!(
            run(&two_starts, &[], 100).1,
            Some(ProtocolError::ExpectedContinuation)
        );
    }

    #[test]
    fn utf8_fails_fast_before_the_frame_ends() {
        // The invalid byte is in the first read; the rest of the frame never arrives.
        let mut payload = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80".to_vec();
        payload.extend_from_slice(b"edited");
        let stream = client_frame(true, 1, &payload);
        let mut first = stream[..6 + 13].to_vec();
        let mut d = Decoder::new();
        assert_eq!(
            d.decode(&mut first, 100, |_| Flow::Continue),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn utf8_across_fragments_and_incomplete_end() {
        let mut ok = client_frame(false, 1, b"\xe2\x82");
        ok.extend(client_frame(true, 0, b"\xac"));
        let (seen, err) = run(&ok, &[], 100);
        assert_eq!(err, None);
        assert_eq!(seen, vec![Seen::Msg(true, "€".as_bytes().to_vec(), false)]);
        let cut_short = client_frame(true, 1, b"\xe2\x82");
        assert_eq!(
            run(&cut_short, &[], 100).1,
            Some(ProtocolError::InvalidUtf8)
        );
        let binary_is_not_checked = client_frame(true, 2, b"\xff\xfe");
        assert_eq!(run(&binary_is_not_checked, &[], 100).1, None);
    }

    #[test]
    fn message_size_limit_counts_all_fragments() {
        let exact = client_frame(true, 2, &[1u8; 100]);
        assert_eq!(run(&exact, &[], 100).1, None);
        let over = client_frame(true, 2, &[1u8; 101]);
        assert_eq!(run(&over, &[], 100).1, Some(ProtocolError::MessageTooBig));
        let mut fragments = client_frame(false, 2, &[1u8; 60]);
        fragments.extend(client_frame(true, 0, &[1u8; 60]));
        assert_eq!(
            run(&fragments, &[], 100).1,
            Some(ProtocolError::MessageTooBig)
        );
        // Refused from the header alone, before the payload arrives.
        let header_only = &client_frame(true, 2, &[1u8; 101])[..8];
        let mut d = Decoder::new();
        let mut h = header_only.to_vec();
        assert_eq!(
            d.decode(&mut h, 100, |_| Flow::Continue),
            Err(ProtocolError::MessageTooBig)
        );
    }

    #[test]
    fn close_payload_rules() {
        let close = |p: &[u8]| run(&client_frame(true, 8, p), &[], 100);
        assert_eq!(close(b"").0, vec![Seen::Close(None, String::new())]);
        assert_eq!(close(b"\x03").1, Some(ProtocolError::CloseTooShort));
        assert_eq!(
            close(b"\x03\xe8").0,
            vec![Seen::Close(Some(1000), String::new())]
        );
        assert_eq!(
            close(b"\x03\xed").1,
            Some(ProtocolError::InvalidCloseCode),
            "1005"
        );
        assert_eq!(close(b"\x00\x00").1, Some(ProtocolError::InvalidCloseCode));
        assert_eq!(
            close(b"\x0b\xb8").0,
            vec![Seen::Close(Some(3000), String::new())]
        );
        assert_eq!(close(b"\x03\xe8\xff").1, Some(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn nothing_after_a_close_is_decoded() {
        let mut stream = client_frame(true, 8, b"\x03\xe8");
        stream.extend(client_frame(true, 1, b"late"));
        let (seen, err) = run(&stream, &[], 100);
        assert_eq!(err, None);
        assert_eq!(seen, vec![Seen::Close(Some(1000), String::new())]);
    }

    #[test]
    fn empty_messages_and_frames() {
        let mut stream = client_frame(true, 1, b"");
        stream.extend(client_frame(false, 2, b""));
        stream.extend(client_frame(true, 0, b""));
        let (seen, err) = run(&stream, &[], 100);
        assert_eq!(err, None);
        assert_eq!(
            seen,
            vec![
                Seen::Msg(true, vec![], true),
                Seen::Msg(false, vec![], false)
            ]
        );
    }

    /// A compressed message's frames: RSV1 on the first, the payload split into `parts`.
    fn compressed_frames(opcode: u8, payload: &[u8], parts: usize) -> Vec<u8> {
        let mut deflated = Vec::new();
        crate::codec::deflate::Deflate::new().compress(payload, 15, &mut deflated);
        let size = deflated.len().div_ceil(parts).max(1);
        let chunks: Vec<&[u8]> = deflated.chunks(size).collect();
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let op = if i == 0 { opcode } else { 0 };
            let mut f = client_frame(i + 1 == chunks.len(), op, c);
            if i == 0 {
                f[0] |= 0x40;
            }
            out.extend(f);
        }
        out
    }

    #[test]
    fn compressed_messages_whole_fragmented_and_split_anywhere() {
        let text = "κόσμε ".repeat(200);
        let mut stream = compressed_frames(1, text.as_bytes(), 1);
        stream.extend(client_frame(true, 9, b"between"));
        stream.extend(compressed_frames(2, &[7u8; 5000], 3));
        // Uncompressed messages still pass on a compressing connection.
        stream.extend(client_frame(true, 1, b"plain"));
        stream.extend(compressed_frames(1, b"", 1));
        let want = vec![
            Seen::Msg(true, text.as_bytes().to_vec(), false),
            Seen::Ping(b"between".to_vec()),
            Seen::Msg(false, vec![7u8; 5000], false),
            Seen::Msg(true, b"plain".to_vec(), false),
            Seen::Msg(true, vec![], false),
        ];
        for cut in 0..stream.len() {
            let (seen, err) = run_with(&stream, &[cut], 1 << 20, true);
            assert_eq!(err, None, "cut {cut}");
            assert_eq!(strip_borrowed(seen), want, "cut {cut}");
        }
        let every_byte: Vec<usize> = (1..stream.len()).collect();
        let (seen, err) = run_with(&stream, &every_byte, 1 << 20, true);
        assert_eq!((strip_borrowed(seen), err), (want, None));
    }

    #[test]
    fn rsv1_rules() {
        let compressed = compressed_frames(1, b"hello", 1);
        assert_eq!(
            run(&compressed, &[], 100).1,
            Some(ProtocolError::ReservedBits),
            "not negotiated"
        );
        let mut ping = client_frame(true, 9, b"p");
        ping[0] |= 0x40;
        assert_eq!(
            run_with(&ping, &[], 100, true).1,
            Some(ProtocolError::CompressedControl)
        );
        let mut cont = client_frame(false, 1, b"a");
        let mut second = client_frame(true, 0, b"b");
        second[0] |= 0x40;
        cont.extend(second);
        assert_eq!(
            run_with(&cont, &[], 100, true).1,
            Some(ProtocolError::CompressedContinuation)
        );
        let mut rsv2 = client_frame(true, 1, b"a");
        rsv2[0] |= 0x20;
        assert_eq!(
            run_with(&rsv2, &[], 100, true).1,
            Some(ProtocolError::ReservedBits)
        );
    }

    #[test]
    fn inflated_size_is_bounded_and_utf8_is_checked_after_inflating() {
        // 1 KiB that inflates to 1 MiB, against a 64 KiB bound.
        let bomb = compressed_frames(2, &vec![0u8; 1 << 20], 1);
        assert!(bomb.len() < 2048, "{}", bomb.len());
        assert_eq!(
            run_with(&bomb, &[], 64 * 1024, true).1,
            Some(ProtocolError::MessageTooBig)
        );
        let bad_text = compressed_frames(1, b"ok \xff\xfe", 1);
        assert_eq!(
            run_with(&bad_text, &[], 100, true).1,
            Some(ProtocolError::InvalidUtf8)
        );
        let mut corrupt = client_frame(true, 2, &[0xff, 0xff, 0xff]);
        corrupt[0] |= 0x40;
        assert_eq!(
            run_with(&corrupt, &[], 100, true).1,
            Some(ProtocolError::InvalidCompressedData)
        );
    }
}
