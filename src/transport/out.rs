//! A connection's output: [`Out`], where a transport puts bytes during a batch (the
//! worker's batch buffer while nothing is queued, else behind what is), and [`OutQueue`],
//! the bytes the socket has not taken yet — owned bytes (responses, echoes) and shared
//! frames (one broadcast encoded once, queued on many connections). The event loop writes
//! them; nothing here touches a socket.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;

use crate::codec::deflate::{Deflate, Window};
use crate::codec::frame::{self, OpCode, MAX_HEADER_LEN};
use crate::hub::msg::Msg;

/// Small owned pushes are appended to the last owned chunk up to this size, so a burst of
/// small frames becomes one buffer rather than one allocation each.
const COALESCE_BYTES: usize = 64 * 1024;
/// Messages at least this large are queued by ownership rather than copied.
const ZERO_COPY_MIN_BYTES: usize = 16 * 1024;
/// Shared frames smaller than this are copied into the batch buffer rather than referenced
/// (a copy of a few hundred bytes is cheaper than creating a queue for them).
const SHARED_COPY_MAX_BYTES: usize = 1024;

#[derive(Debug)]
enum Chunk {
    Owned(Vec<u8>),
    Shared(Arc<[u8]>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(a) => a,
        }
    }
}

#[derive(Debug, Default)]
pub struct OutQueue {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    front_written: usize,
    /// Unwritten bytes in total.
    len: usize,
}

impl OutQueue {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues a copy of `bytes`, coalescing with the previous small push.
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.len += bytes.len();
        if let Some(Chunk::Owned(last)) = self.chunks.back_mut() {
            if last.len() + bytes.len() <= COALESCE_BYTES {
                last.extend_from_slice(bytes);
                return;
            }
        }
        self.chunks.push_back(Chunk::Owned(bytes.to_vec()));
    }

    /// Queues a buffer without copying it.
    pub fn push_owned(&mut self, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        self.len += bytes.len();
        self.chunks.push_back(Chunk::Owned(bytes));
    }

    /// Queues a shared frame (a broadcast) without copying it.
    pub fn push_shared(&mut self, frame: Arc<[u8]>) {
        if frame.is_empty() {
            return;
        }
        self.len += frame.len();
        self.chunks.push_back(Chunk::Shared(frame));
    }

    /// The unwritten bytes as slices for one gathered write (at most `slices.len()`);
    /// returns how many were filled. After the write, [`OutQueue::consume`] what it took.
    pub fn slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (i, (slot, chunk)) in slices.iter_mut().zip(&self.chunks).enumerate() {
            let bytes = chunk.bytes();
            *slot = IoSlice::new(if i == 0 {
                bytes.get(self.front_written..).unwrap_or_default()
            } else {
                bytes
            });
            n = i + 1;
        }
        n
    }

    /// Owned chunks in the queue (for tests of coalescing).
    #[cfg(test)]
    pub(crate) fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Drops `n` bytes from the front, as if written.
    pub fn consume(&mut self, mut n: usize) {
        self.len -= n.min(self.len);
        while n > 0 {
            let Some(front) = self.chunks.front() else {
                return;
            };
            let left = front.bytes().len() - self.front_written;
            if n < left {
                self.front_written += n;
                return;
            }
            n -= left;
            self.front_written = 0;
            self.chunks.pop_front();
        }
    }
}

/// Where a connection's output goes during a batch: the worker's batch buffer while nothing is
/// queued, else behind what is queued (order is kept).
pub struct Out<'a> {
    pub wbuf: &'a mut Vec<u8>,
    pub outq: &'a mut Option<Box<OutQueue>>,
    /// Data frames are compressed (the connection negotiated permessage-deflate).
    deflate: Option<Compressing<'a>>,
}

/// How a compressing connection's data frames are compressed.
pub struct Compressing<'a> {
    /// The worker's compressor.
    pub codec: &'a mut Deflate,
    /// The most window bits the peer allows.
    pub window: Window,
    /// Smaller messages go out uncompressed (`--compression-min-bytes`).
    pub min_bytes: usize,
}

impl<'a> Out<'a> {
    pub fn new(wbuf: &'a mut Vec<u8>, outq: &'a mut Option<Box<OutQueue>>) -> Self {
        Out {
            wbuf,
            outq,
            deflate: None,
        }
    }

    /// [`Out::new`] for a connection whose data frames are compressed when `deflate` is set.
    pub fn with_deflate(
        wbuf: &'a mut Vec<u8>,
        outq: &'a mut Option<Box<OutQueue>>,
        deflate: Option<Compressing<'a>>,
    ) -> Self {
        Out {
            wbuf,
            outq,
            deflate,
        }
    }

    pub fn bytes(&mut self, bytes: &[u8]) {
        match self.outq {
            Some(q) => q.push_bytes(bytes),
            None => self.wbuf.extend_from_slice(bytes),
        }
    }

    /// A frame with `payload`; a data frame on a compressing connection is compressed when
    /// it is at least the minimum size and compressing makes it smaller.
    pub fn frame(&mut self, opcode: OpCode, payload: &[u8]) {
        if let Some(c) = self.deflate.take() {
            let compressed = (!opcode.is_control() && payload.len() >= c.min_bytes)
                .then(|| c.codec.compress_message(payload, c.window.bits()))
                .flatten();
            if let Some(z) = compressed {
                let mut header = [0u8; MAX_HEADER_LEN];
                let n = frame::encode_server_header_rsv1(&mut header, true, true, opcode, z.len());
                self.bytes(&header[..n]);
                self.bytes(z);
                self.deflate = Some(c);
                return;
            }
            self.deflate = Some(c);
        }
        let mut header = [0u8; MAX_HEADER_LEN];
        let n = frame::encode_server_header(&mut header, true, opcode, payload.len());
        self.bytes(&header[..n]);
        self.bytes(payload);
    }

    pub fn text(&mut self, json: &str) {
        self.frame(OpCode::Text, json.as_bytes());
    }

    /// Queues a frame whose payload is handed over: large payloads are not copied.
    pub fn frame_owned(&mut self, opcode: OpCode, payload: Vec<u8>) {
        if payload.len() < ZERO_COPY_MIN_BYTES || self.deflate.is_some() {
            self.frame(opcode, &payload);
            return;
        }
        let mut header = [0u8; MAX_HEADER_LEN];
        let n = frame::encode_server_header(&mut header, true, opcode, payload.len());
        let q = self.queue();
        q.push_bytes(&header[..n]);
        q.push_owned(payload);
    }

    /// Queues an already encoded shared frame (a broadcast).
    pub fn shared(&mut self, frame: &Arc<[u8]>) {
        if self.outq.is_none() && frame.len() <= SHARED_COPY_MAX_BYTES {
            self.wbuf.extend_from_slice(frame);
        } else {
            self.queue().push_shared(frame.clone());
        }
    }

    /// A published message: the envelope, or with `raw` the payload alone; compressed on a
    /// compressing connection (built once per message and shared, see [`Msg::deflate`]).
    pub fn msg(&mut self, msg: &Msg, raw: bool) {
        let window = self.deflate.as_mut().map(|c| {
            msg.deflate(raw, c.codec, c.min_bytes);
            c.window
        });
        self.shared(msg.ws_frame_for(raw, window));
    }

    /// The connection's queue, created behind what the batch buffer already holds.
    fn queue(&mut self) -> &mut OutQueue {
        let wbuf = &mut *self.wbuf;
        self.outq.get_or_insert_with(|| {
            let mut q = OutQueue::new();
            q.push_bytes(wbuf);
            wbuf.clear();
            Box::new(q)
        })
    }

    pub fn close(&mut self, code: u16, reason: &str) {
        let mut buf = Vec::with_capacity(2 + frame::MAX_CONTROL_PAYLOAD);
        frame::write_close_frame(&mut buf, code, reason);
        self.bytes(&buf);
    }
}
