//! What a connection does with the bytes it reads, by phase: HTTP requests (upgrade, or an
//! API call answered in place), then WebSocket frames dispatched by route. No socket I/O
//! here: output is gathered through [`Out`] and written by the worker at the end of the batch.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::codec::decoder::{Decoder, Event, Flow, Payload};
use crate::codec::frame::{self, OpCode, MAX_HEADER_LEN};
use crate::codec::http::{self, Request, UpgradePolicy};
use crate::config::Config;
use crate::debug;
use crate::error::HandshakeError;
use crate::hub::session::{LocalIndex, Subscriber};
use crate::hub::Hub;
use crate::net::conn::{Conn, Phase};
use crate::net::outq::OutQueue;
use crate::net::worker::Shared;
use crate::transport::api;
use crate::transport::router::{self, Route};
use crate::transport::stats::WorkerStats;
use crate::transport::{poll, sse, ws};

/// Messages at least this large are queued by ownership rather than copied.
const ZERO_COPY_MIN_BYTES: usize = 16 * 1024;
/// Shared frames smaller than this are copied into the batch buffer rather than referenced
/// (a copy of a few hundred bytes is cheaper than creating a queue for them).
const SHARED_COPY_MAX_BYTES: usize = 1024;

/// What processing a read needs besides the connection.
pub struct Cx<'a> {
    pub shared: &'a Shared,
    pub cfg: &'a Config,
    pub wbuf: &'a mut Vec<u8>,
    pub now: u32,
    pub hub: &'a Hub,
    pub index: &'a mut LocalIndex,
    pub who: Subscriber,
    pub stats: &'a WorkerStats,
}

impl<'a> Cx<'a> {
    pub fn new(
        shared: &'a Shared,
        wbuf: &'a mut Vec<u8>,
        index: &'a mut LocalIndex,
        stats: &'a WorkerStats,
        now: u32,
        who: Subscriber,
    ) -> Self {
        Cx {
            shared,
            cfg: &shared.cfg,
            wbuf,
            now,
            hub: &shared.hub,
            index,
            who,
            stats,
        }
    }
}

/// What to do with a connection after handling an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    Drop,
}

/// Where a connection's output goes during a batch: the worker's batch buffer while nothing is
/// queued, else behind what is queued (order is kept).
pub struct Out<'a> {
    pub wbuf: &'a mut Vec<u8>,
    pub outq: &'a mut Option<Box<OutQueue>>,
}

impl Out<'_> {
    pub fn bytes(&mut self, bytes: &[u8]) {
        match self.outq {
            Some(q) => q.push_bytes(bytes),
            None => self.wbuf.extend_from_slice(bytes),
        }
    }

    pub fn frame(&mut self, opcode: OpCode, payload: &[u8]) {
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
        if payload.len() < ZERO_COPY_MIN_BYTES {
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

/// Dispatches bytes just read by the connection's phase.
pub fn on_bytes(conn: &mut Conn, data: &mut [u8], cx: &mut Cx<'_>) -> Verdict {
    match conn.phase {
        Phase::Request => on_request_bytes(conn, data, cx),
        // An SSE stream has nothing to read; input is discarded.
        Phase::Open if conn.transport == Some(Route::Sse) => Verdict::Keep,
        // Behind a held long-poll: kept (bounded) and answered after it.
        Phase::Open if conn.transport == Some(Route::Poll) => {
            let head = conn.head.get_or_insert_with(Box::default);
            if head.len() + data.len() > cx.cfg.max_header_bytes + cx.cfg.max_message_bytes {
                return Verdict::Drop;
            }
            head.extend_from_slice(data);
            Verdict::Keep
        }
        Phase::Open | Phase::Closing => on_frames(conn, data, cx),
        // Input after our last word is read and discarded until the peer closes.
        Phase::Finishing => Verdict::Keep,
    }
}

/// Outcome of trying to take one request off the front of the input.
enum Taken {
    /// Not all of it is here yet (`true`: the head is, the body is not).
    NeedMore(bool),
    /// A request was handled; this many bytes were its head and body.
    Done(usize),
}

/// HTTP requests: as many complete ones as the input holds (keep-alive pipelining); an
/// incomplete one is kept for the next read.
fn on_request_bytes(conn: &mut Conn, data: &mut [u8], cx: &mut Cx<'_>) -> Verdict {
    match conn.head.take() {
        None => {
            let used = match take_requests(conn, data, 0, cx) {
                Ok(used) => used,
                Err(v) => return v,
            };
            if let Some(rest) = data.get(used..).filter(|r| !r.is_empty()) {
                if keeps_input(conn) {
                    conn.head = Some(Box::new(rest.to_vec()));
                }
            }
            Verdict::Keep
        }
        Some(mut head) => {
            // The head's end is searched for only in new bytes, unless it was already found
            // and the body is what is missing (or there are no new bytes: requests that
            // waited behind a long-poll are taken up again).
            let scanned = if conn.body_pending || data.is_empty() {
                0
            } else {
                head.len()
            };
            head.extend_from_slice(data);
            let used = match take_requests(conn, &mut head, scanned, cx) {
                Ok(used) => used,
                Err(v) => return v,
            };
            if used < head.len() && keeps_input(conn) {
                head.drain(..used);
                conn.head = Some(head);
            }
            Verdict::Keep
        }
    }
}

/// Handles complete requests from the front of `input`; returns the bytes used. After an
/// upgrade, the rest of the input is the client's first frames.
fn take_requests(
    conn: &mut Conn,
    input: &mut [u8],
    mut scanned: usize,
    cx: &mut Cx<'_>,
) -> Result<usize, Verdict> {
    let mut used = 0;
    while conn.phase == Phase::Request && used < input.len() {
        let rest = input.get_mut(used..).unwrap_or_default();
        match take_one(conn, rest, scanned, cx) {
            Taken::NeedMore(body_pending) => {
                conn.body_pending = body_pending;
                break;
            }
            Taken::Done(n) => {
                used += n;
                scanned = 0;
                conn.body_pending = false;
            }
        }
    }
    match (conn.phase, conn.transport) {
        // After an upgrade, the rest of the input is the client's first frames.
        (Phase::Open, Some(Route::Echo | Route::Ws)) => {
            if let Some(tail) = input.get_mut(used..).filter(|t| !t.is_empty()) {
                let verdict = on_frames(conn, tail, cx);
                if verdict == Verdict::Drop {
                    return Err(verdict);
                }
            }
            Ok(input.len())
        }
        // An event stream reads nothing more.
        (Phase::Open, Some(Route::Sse)) => Ok(input.len()),
        // Requests pipelined behind a held long-poll wait for its reply (`keeps_input`).
        _ => Ok(used),
    }
}

/// Whether unprocessed input is kept for later: while reading requests, and behind a held
/// long-poll (answered in order once the poll is).
fn keeps_input(conn: &Conn) -> bool {
    conn.phase == Phase::Request
        || (conn.phase == Phase::Open && conn.transport == Some(Route::Poll))
}

/// Takes up requests that arrived while a long-poll was held, now that it is answered.
pub fn resume_requests(conn: &mut Conn, cx: &mut Cx<'_>) -> Verdict {
    if conn.phase != Phase::Request || conn.head.is_none() {
        return Verdict::Keep;
    }
    on_request_bytes(conn, &mut [], cx)
}

fn take_one(conn: &mut Conn, input: &mut [u8], scanned: usize, cx: &mut Cx<'_>) -> Taken {
    let max = cx.cfg.max_header_bytes;
    let Some(head_end) = http::find_head_end(input, scanned) else {
        // Refuse garbage and oversized heads now rather than at the timeout.
        return match http::parse_request(input, max) {
            Err(e) => {
                respond_error(conn, e, cx);
                Taken::Done(input.len())
            }
            Ok(_) => Taken::NeedMore(false),
        };
    };
    let (head, body_and_rest) = input.split_at_mut(head_end);
    let req = match http::parse_request(head, max) {
        Ok(Some(req)) => req,
        Ok(None) => {
            respond_error(
                conn,
                HandshakeError::Malformed("malformed HTTP request"),
                cx,
            );
            return Taken::Done(input.len());
        }
        Err(e) => {
            respond_error(conn, e, cx);
            return Taken::Done(input.len());
        }
    };
    let body_len = match body_length(&req, cx.cfg) {
        Ok(n) => n,
        Err(e) => {
            respond_error(conn, e, cx);
            return Taken::Done(input.len());
        }
    };
    let Some(body) = body_and_rest.get(..body_len) else {
        return Taken::NeedMore(true);
    };
    on_request(conn, &req, body, cx);
    Taken::Done(head_end + body_len)
}

fn body_length(req: &Request<'_>, cfg: &Config) -> Result<usize, HandshakeError> {
    if req.transfer_encoding.is_some() {
        return Err(HandshakeError::LengthRequired);
    }
    match req.content_length {
        None => Ok(0),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > cfg.max_message_bytes => Err(HandshakeError::PayloadTooLarge),
            Ok(n) => Ok(n),
            Err(_) => Err(HandshakeError::Malformed("invalid Content-Length")),
        },
    }
}

/// One complete request.
fn on_request(conn: &mut Conn, req: &Request<'_>, body: &[u8], cx: &mut Cx<'_>) {
    let (route, param) = match router::route(req.method, req.path) {
        Ok(r) => r,
        Err(e) => return respond_error(conn, e, cx),
    };
    let keep_alive = if req.minor_version >= 1 {
        !req.connection_close
    } else {
        req.connection_keep_alive
    };
    // Headers every response to this request carries: CORS, and for an HTTP/1.0 client
    // that asked to keep the connection, the answer that it is kept.
    let mut cors = api::cors_headers(req.origin, cx.cfg);
    if keep_alive && req.minor_version == 0 {
        cors.push_str("Connection: keep-alive\r\n");
    }
    if req.method == "OPTIONS" {
        api::preflight(cx.wbuf, &cors, keep_alive);
        return after_response(conn, keep_alive, cx);
    }
    let started = match route {
        Route::Echo | Route::Ws => return upgrade(conn, req, route, cx),
        Route::Sse => sse::start(conn, req, &cors, cx),
        Route::Poll => poll::start(conn, req, &cors, keep_alive, cx),
        _ => {
            api::respond(route, param, req, body, keep_alive, &cors, cx);
            Ok(())
        }
    };
    match started {
        Err(e) => respond_error(conn, e, cx),
        // A stream (SSE, held poll) stays open; a plain response ends the request.
        Ok(()) if conn.phase == Phase::Request => after_response(conn, keep_alive, cx),
        Ok(()) => {}
    }
}

/// After a complete response: close, or wait for the next request with a fresh timeout.
pub fn after_response(conn: &mut Conn, keep_alive: bool, cx: &Cx<'_>) {
    if keep_alive {
        conn.phase_since = cx.now;
    } else {
        conn.set_phase(Phase::Finishing, cx.now);
    }
}

fn upgrade(conn: &mut Conn, req: &Request<'_>, route: Route, cx: &mut Cx<'_>) {
    let policy = UpgradePolicy {
        allowed_origins: &cx.cfg.allowed_origins,
        subprotocols: &cx.cfg.subprotocols,
    };
    let up = match http::validate_upgrade(req, &policy) {
        Ok(up) => up,
        Err(e) => return respond_error(conn, e, cx),
    };
    let plan = if route == Route::Ws {
        match ws::Plan::from_request(req, cx.cfg) {
            Ok(p) => Some(p),
            Err(e) => return respond_error(conn, e, cx),
        }
    } else {
        None
    };
    http::write_101(cx.wbuf, &up);
    conn.transport = Some(route);
    conn.set_phase(Phase::Open, cx.now);
    cx.stats.opened(route);
    if let Some(plan) = plan {
        let mut out = Out {
            wbuf: cx.wbuf,
            outq: &mut conn.outq,
        };
        conn.session = Some(Box::new(ws::start(
            plan, &mut out, cx.hub, cx.index, cx.who, cx.cfg,
        )));
    }
}

pub fn respond_error(conn: &mut Conn, err: HandshakeError, cx: &mut Cx<'_>) {
    debug!("refused request: {err}");
    cx.stats.refused(err);
    http::write_error(cx.wbuf, err);
    conn.set_phase(Phase::Finishing, cx.now);
}

/// Decodes frames and dispatches them; a protocol violation fails the connection with its
/// close code.
fn on_frames(conn: &mut Conn, data: &mut [u8], cx: &mut Cx<'_>) -> Verdict {
    let mut boxed = conn.decoder.take();
    let mut local = Decoder::new();
    let decoder: &mut Decoder = match boxed.as_deref_mut() {
        Some(d) => d,
        None => &mut local,
    };
    let closing = conn.phase == Phase::Closing;
    let route = conn.transport;
    let mut peer_closed = false;
    let session = &mut conn.session;
    let mut out = Out {
        wbuf: &mut *cx.wbuf,
        outq: &mut conn.outq,
    };
    let hub = cx.hub;
    let index = &mut *cx.index;
    let (who, cfg, stats) = (cx.who, cx.cfg, cx.stats);
    let result = decoder.decode(data, cfg.max_message_bytes, |event| {
        if closing {
            // Waiting for the peer's Close: everything else is ignored.
            if let Event::Close { .. } = event {
                peer_closed = true;
                return Flow::Stop;
            }
            return Flow::Continue;
        }
        match event {
            Event::Message { text, payload } => {
                stats.message_in(payload.as_slice().len());
                match (route, session.as_deref_mut()) {
                    (Some(Route::Ws), Some(s)) => {
                        ws::on_message(s, text, payload.as_slice(), &mut out, hub, index, who, cfg)
                    }
                    _ => {
                        stats.messages_out.fetch_add(1, Ordering::Relaxed);
                        echo(&mut out, text, payload)
                    }
                }
                Flow::Continue
            }
            Event::Ping(payload) => {
                out.frame(OpCode::Pong, payload);
                Flow::Continue
            }
            Event::Pong(_) => Flow::Continue,
            Event::Close { code, .. } => {
                // Echo the code (RFC 6455 §5.5.1); an empty Close gets an empty reply.
                match code {
                    Some(code) => out.close(code, ""),
                    None => out.frame(OpCode::Close, b""),
                }
                peer_closed = true;
                Flow::Stop
            }
        }
    });
    match result {
        Err(e) => {
            if closing {
                return Verdict::Drop;
            }
            debug!("failing connection: {e}");
            stats.frame_error(e.close_code());
            out.close(e.close_code(), e.reason());
            conn.set_phase(Phase::Finishing, cx.now);
            return Verdict::Keep;
        }
        Ok(_) if peer_closed => {
            conn.set_phase(Phase::Finishing, cx.now);
            return Verdict::Keep;
        }
        Ok(_) => {}
    }
    if !decoder.is_idle() {
        conn.decoder = Some(boxed.unwrap_or_else(|| Box::new(local)));
    }
    Verdict::Keep
}

fn echo(out: &mut Out<'_>, text: bool, payload: Payload<'_>) {
    let opcode = if text { OpCode::Text } else { OpCode::Binary };
    match payload {
        Payload::Borrowed(bytes) => out.frame(opcode, bytes),
        Payload::Owned(bytes) => out.frame_owned(opcode, bytes),
    }
}
