//! One client connection: its state, and the byte-level protocol that runs over it (the
//! upgrade response, server frames, HTTP responses for the publisher).
//!
//! `ingest` is a pure function of the bytes it is given: it consumes complete units, reports
//! them to the caller's handler as `Event`s, and queues any automatic replies (pong, close
//! echo) in the connection's output buffer. The event loop in `net` is the only code that reads
//! and writes sockets, apart from `Conn::flush`.

use std::cell::RefCell;
use std::io::{self, Write};

use mio::net::TcpStream;
use switchboard::codec::deflate::Inflater;
use switchboard::codec::frame::OpCode;

use crate::cause::Cause;
use crate::http::{self, Response};
use crate::rng::Rng;
use crate::wire::{self, Upgrade, MAX_MESSAGE_BYTES};

/// A buffer that is empty again keeps its allocation up to this size, so a busy connection
/// does not reallocate per message while an idle one (10k+ of them) holds nothing big.
const KEEP_BUFFER_BYTES: usize = 4096;
/// Close code the bench sends when it ends a connection itself.
const CLOSE_NORMAL: u16 = 1000;
/// Close code a Close frame without a body stands for (RFC 6455 §7.1.5).
const CLOSE_NO_STATUS: u16 = 1005;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Non-blocking connect in progress.
    Connecting,
    /// Upgrade request sent (or queued), waiting for the 101.
    Upgrading,
    /// WebSocket open.
    Open,
    /// A plain HTTP/1.1 keep-alive connection (the publisher).
    Http,
}

thread_local! {
    /// One permessage-deflate inflater per thread (the bench runs one event loop per process),
    /// as the server keeps one per worker: reset per message, so it holds nothing between.
    static INFLATER: RefCell<Option<Inflater>> = const { RefCell::new(None) };
}

/// A message being reassembled from fragments; rare, so boxed out of `Conn`.
#[derive(Debug)]
struct Fragments {
    opcode: OpCode,
    data: Vec<u8>,
    /// RSV1 was set on the first frame.
    compressed: bool,
    /// Frame bytes (headers included) so far.
    wire_bytes: usize,
}

#[derive(Debug)]
pub struct Conn {
    pub stream: TcpStream,
    pub phase: Phase,
    /// The owner's name for this connection (a client index), handed back with every event.
    pub tag: u32,
    /// Distinguishes successive connections in the same slab slot, for the timeout queue.
    pub gen: u32,
    /// Take masked server frames (`--accept-masked`, the raw TCP floor only).
    pub accept_masked: bool,
    /// The upgrade request offered permessage-deflate (`--compression`).
    pub offer_deflate: bool,
    /// The 101 agreed permessage-deflate: RSV1 marks compressed messages.
    deflate: bool,
    /// Set when the connection failed or the server ended it; the loop reaps it and reports
    /// the cause.
    pub dead: Option<Cause>,
    http: bool,
    close_sent: bool,
    key: [u8; 16],
    /// Bytes of an incomplete unit (header, frame, response) carried to the next read.
    pub inbuf: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    frag: Option<Box<Fragments>>,
}

/// What a connection reports to its owner.
#[derive(Debug)]
pub enum Event<'a> {
    /// The WebSocket handshake completed.
    Open,
    /// A complete data message (fragments already joined, inflated if it came compressed).
    /// `wire_bytes`: what its frames took on the wire, headers included.
    Message {
        opcode: OpCode,
        payload: &'a [u8],
        wire_bytes: usize,
        compressed: bool,
    },
    /// An HTTP connection finished connecting.
    HttpReady,
    /// A complete HTTP response.
    HttpResponse { status: u16, body: &'a [u8] },
    /// The connection is gone; `was_open` tells a failed attempt from a dropped connection.
    Closed { cause: Cause, was_open: bool },
}

/// What an event handler may do with the connection that produced the event.
pub struct Handle<'a> {
    id: usize,
    conn: &'a mut Conn,
    rng: &'a mut Rng,
}

impl<'a> Handle<'a> {
    pub fn new(id: usize, conn: &'a mut Conn, rng: &'a mut Rng) -> Self {
        Handle { id, conn, rng }
    }

    pub fn id(&self) -> usize {
        self.id
    }

    pub fn tag(&self) -> u32 {
        self.conn.tag
    }

    /// Queues a data frame; it goes out when the loop flushes this connection after the batch.
    pub fn send(&mut self, opcode: OpCode, payload: &[u8]) {
        self.conn.queue_frame(self.rng, opcode, payload);
    }

    /// Queues raw bytes (an HTTP request) on a plain HTTP connection; flushed like `send`.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        if self.conn.phase == Phase::Http && self.conn.dead.is_none() {
            self.conn.out_mut().extend_from_slice(bytes);
        }
    }
}

impl Conn {
    pub fn new(stream: TcpStream, tag: u32, gen: u32, http: bool, key: [u8; 16]) -> Self {
        Conn {
            stream,
            phase: Phase::Connecting,
            tag,
            gen,
            accept_masked: false,
            offer_deflate: false,
            deflate: false,
            dead: None,
            http,
            close_sent: false,
            key,
            inbuf: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            frag: None,
        }
    }

    pub fn is_http(&self) -> bool {
        self.http
    }

    pub fn out_mut(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    pub fn has_output(&self) -> bool {
        self.out_pos < self.out.len()
    }

    /// Queues a masked data frame if the WebSocket is open and not closing.
    pub fn queue_frame(&mut self, rng: &mut Rng, opcode: OpCode, payload: &[u8]) -> bool {
        if self.phase != Phase::Open || self.close_sent {
            return false;
        }
        wire::write_client_frame(&mut self.out, opcode, payload, rng.mask_key());
        true
    }

    /// Queues our Close frame (once) if the WebSocket is open.
    pub fn queue_close(&mut self, rng: &mut Rng, code: u16) {
        if self.phase == Phase::Open && !self.close_sent {
            wire::write_client_close(&mut self.out, code, rng.mask_key());
            self.close_sent = true;
        }
    }

    /// Queues the normal Close frame the bench sends when it ends a connection.
    pub fn queue_normal_close(&mut self, rng: &mut Rng) {
        self.queue_close(rng, CLOSE_NORMAL);
    }

    /// Writes queued output until done or `WouldBlock` (the writable edge resumes it).
    pub fn flush(&mut self) -> Result<(), Cause> {
        while let Some(pending) = self.out.get(self.out_pos..).filter(|p| !p.is_empty()) {
            match self.stream.write(pending) {
                Ok(0) => return Err(Cause::Reset),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Cause::from_io(&e)),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        if self.out.capacity() > KEEP_BUFFER_BYTES {
            self.out = Vec::new();
        }
        Ok(())
    }
}

/// Releases a now-empty carry-over buffer if it grew large.
pub fn trim_buffer(buf: &mut Vec<u8>) {
    if buf.is_empty() && buf.capacity() > KEEP_BUFFER_BYTES {
        *buf = Vec::new();
    }
}

/// Consumes the complete units at the start of `data`, reporting each to `handler`; returns
/// how many bytes were consumed (the rest is an incomplete unit to keep). Stops early once the
/// connection is dead.
pub fn ingest<H>(id: usize, conn: &mut Conn, rng: &mut Rng, data: &[u8], handler: &mut H) -> usize
where
    H: FnMut(&mut Handle<'_>, Event<'_>),
{
    let mut pos = 0;
    while conn.dead.is_none() {
        let Some(rest) = data.get(pos..).filter(|r| !r.is_empty()) else {
            break;
        };
        match conn.phase {
            // The loop only reads once connected; nothing to parse before that.
            Phase::Connecting => break,
            Phase::Upgrading => {
                match wire::parse_upgrade_response(rest, &conn.key, conn.offer_deflate) {
                    Upgrade::Incomplete => break,
                    Upgrade::Accepted { head_len, deflate } => {
                        pos += head_len;
                        conn.phase = Phase::Open;
                        conn.deflate = deflate;
                        handler(&mut Handle::new(id, conn, rng), Event::Open);
                    }
                    Upgrade::Refused { status } => conn.dead = Some(Cause::Http(status)),
                    Upgrade::Invalid => conn.dead = Some(Cause::BadHandshake),
                }
            }
            Phase::Open => match wire::decode_server_header(rest, conn.accept_masked, conn.deflate)
            {
                Ok(None) => break,
                Err(_) => conn.dead = Some(Cause::Protocol),
                Ok(Some(h)) => {
                    let end = h.header_len + h.payload_len;
                    let Some(payload) = rest.get(h.header_len..end) else {
                        break;
                    };
                    pos += end;
                    let frame = Frame {
                        fin: h.fin,
                        rsv1: h.rsv1,
                        opcode: h.opcode,
                        payload,
                        wire_bytes: end,
                    };
                    on_frame(id, conn, rng, frame, handler);
                }
            },
            Phase::Http => match http::parse_response(rest) {
                Response::Incomplete => break,
                Response::Invalid => conn.dead = Some(Cause::Protocol),
                Response::Complete {
                    status,
                    body_start,
                    total_len,
                    close,
                } => {
                    pos += total_len;
                    let body = rest.get(body_start..total_len).unwrap_or(&[]);
                    handler(
                        &mut Handle::new(id, conn, rng),
                        Event::HttpResponse { status, body },
                    );
                    if close {
                        conn.dead = Some(Cause::Eof);
                    }
                }
            },
        }
    }
    pos
}

/// One complete server frame.
struct Frame<'a> {
    fin: bool,
    rsv1: bool,
    opcode: OpCode,
    payload: &'a [u8],
    /// Header and payload.
    wire_bytes: usize,
}

/// Handles one complete server frame.
fn on_frame<H>(id: usize, conn: &mut Conn, rng: &mut Rng, f: Frame<'_>, handler: &mut H)
where
    H: FnMut(&mut Handle<'_>, Event<'_>),
{
    let Frame {
        fin,
        rsv1,
        opcode,
        payload,
        wire_bytes,
    } = f;
    // RSV1 only on a data message's first frame (RFC 7692 §6.1).
    if rsv1 && !matches!(opcode, OpCode::Text | OpCode::Binary) {
        conn.dead = Some(Cause::Protocol);
        return;
    }
    match opcode {
        OpCode::Text | OpCode::Binary if conn.frag.is_some() => {
            conn.dead = Some(Cause::Protocol);
        }
        OpCode::Text | OpCode::Binary if fin => {
            deliver(id, conn, rng, opcode, payload, rsv1, wire_bytes, handler);
        }
        OpCode::Text | OpCode::Binary => {
            conn.frag = Some(Box::new(Fragments {
                opcode,
                data: payload.to_vec(),
                compressed: rsv1,
                wire_bytes,
            }));
        }
        OpCode::Continuation => {
            let Some(mut frag) = conn.frag.take() else {
                conn.dead = Some(Cause::Protocol);
                return;
            };
            frag.data.extend_from_slice(payload);
            frag.wire_bytes += wire_bytes;
            if frag.data.len() as u64 > MAX_MESSAGE_BYTES {
                conn.dead = Some(Cause::Protocol);
            } else if fin {
                let (op, data, z, wire) =
                    (frag.opcode, &frag.data, frag.compressed, frag.wire_bytes);
                deliver(id, conn, rng, op, data, z, wire, handler);
            } else {
                conn.frag = Some(frag);
            }
        }
        OpCode::Ping => {
            if !conn.close_sent {
                wire::write_client_frame(&mut conn.out, OpCode::Pong, payload, rng.mask_key());
            }
        }
        OpCode::Pong => {}
        OpCode::Close => {
            let code = match payload {
                [a, b, ..] => u16::from_be_bytes([*a, *b]),
                _ => CLOSE_NO_STATUS,
            };
            // Echo the close (§5.5.1) so the server's closing handshake completes.
            conn.queue_close(rng, CLOSE_NORMAL);
            conn.dead = Some(Cause::ClosedByServer(code));
        }
    }
}

/// Hands a complete message to the handler, inflating it first if it came compressed.
#[allow(clippy::too_many_arguments)]
fn deliver<H>(
    id: usize,
    conn: &mut Conn,
    rng: &mut Rng,
    opcode: OpCode,
    payload: &[u8],
    compressed: bool,
    wire_bytes: usize,
    handler: &mut H,
) where
    H: FnMut(&mut Handle<'_>, Event<'_>),
{
    let inflated;
    let payload = if compressed {
        let max = usize::try_from(MAX_MESSAGE_BYTES).unwrap_or(usize::MAX);
        let result = INFLATER.with(|cell| {
            cell.borrow_mut()
                .get_or_insert_with(Inflater::default)
                .inflate(&[payload], max)
        });
        match result {
            Ok(bytes) => {
                inflated = bytes;
                &inflated[..]
            }
            Err(_) => {
                conn.dead = Some(Cause::Protocol);
                return;
            }
        }
    } else {
        payload
    };
    handler(
        &mut Handle::new(id, conn, rng),
        Event::Message {
            opcode,
            payload,
            wire_bytes,
            compressed,
        },
    );
}
