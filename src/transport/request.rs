//! The HTTP side of a connection: as many complete requests as the input holds (keep-alive
//! pipelining), each routed — upgraded to a WebSocket, opened as an event stream or a
//! long-poll, or answered in place by the API. A request whose answer the engine gives later
//! is *held*: the connection waits for it, and requests pipelined behind it wait their turn.

use crate::codec::http::{self, Request, UpgradePolicy};
use crate::config::Config;
use crate::debug;
use crate::error::HandshakeError;
use crate::transport::api::{self, Responded};
use crate::transport::conn::{ConnState, Phase};
use crate::transport::cx::{Cx, Verdict};
use crate::transport::router::{self, Route};
use crate::transport::session::{HttpState, Session};
use crate::transport::{poll, sse, websocket, ws};

/// Outcome of trying to take one request off the front of the input.
enum Taken {
    /// Not all of it is here yet (`true`: the head is, the body is not).
    NeedMore(bool),
    /// A request was handled; this many bytes were its head and body.
    Done(usize),
}

/// Bytes read while the connection speaks HTTP (or waits behind a held request).
pub fn on_bytes(st: &mut ConnState, data: &mut [u8], cx: &mut Cx<'_>) -> Verdict {
    match st.head.take() {
        None => {
            let used = match take_requests(st, data, 0, cx) {
                Ok(used) => used,
                Err(v) => return v,
            };
            if let Some(rest) = data.get(used..).filter(|r| !r.is_empty()) {
                if keeps_input(st) {
                    st.head = Some(Box::new(rest.to_vec()));
                }
            }
            pause_if_full(st, cx.cfg);
            Verdict::Keep
        }
        Some(mut head) => {
            // The head's end is searched for only in new bytes, unless it was already found
            // and the body is what is missing (or there are no new bytes: requests that
            // waited behind a held one are taken up again).
            let scanned = if st.body_pending || data.is_empty() {
                0
            } else {
                head.len()
            };
            head.extend_from_slice(data);
            let used = match take_requests(st, &mut head, scanned, cx) {
                Ok(used) => used,
                Err(v) => return v,
            };
            if used < head.len() && keeps_input(st) {
                head.drain(..used);
                st.head = Some(head);
            }
            pause_if_full(st, cx.cfg);
            Verdict::Keep
        }
    }
}

/// Input that arrives behind a held request: kept and answered after it. Past
/// [`held_input_bound`] the connection stops being read until the held request is answered
/// (what one read brings is kept: the bound is passed by at most one read buffer).
pub fn behind_held(st: &mut ConnState, data: &[u8], cfg: &Config) -> Verdict {
    st.head
        .get_or_insert_with(Box::default)
        .extend_from_slice(data);
    pause_if_full(st, cfg);
    Verdict::Keep
}

/// Stops reading a held connection whose waiting input reached the bound (the event loop
/// reads nothing while `input_full`, so the input grows by at most one read past it).
fn pause_if_full(st: &mut ConnState, cfg: &Config) {
    let held = st.phase == Phase::Open && st.transport.is_some_and(Route::is_held);
    if held
        && st
            .head
            .as_ref()
            .is_some_and(|h| h.len() >= held_input_bound(cfg))
    {
        st.input_full = true;
        st.reread = false;
    }
}

/// How much input may wait behind a held request: one request of the largest size.
fn held_input_bound(cfg: &Config) -> usize {
    cfg.max_header_bytes + cfg.max_message_bytes
}

/// Handles complete requests from the front of `input`; returns the bytes used. After an
/// upgrade, the rest of the input is the client's first frames.
fn take_requests(
    st: &mut ConnState,
    input: &mut [u8],
    mut scanned: usize,
    cx: &mut Cx<'_>,
) -> Result<usize, Verdict> {
    let mut used = 0;
    while st.phase == Phase::Request && used < input.len() {
        let rest = input.get_mut(used..).unwrap_or_default();
        match take_one(st, rest, scanned, cx) {
            Taken::NeedMore(body_pending) => {
                st.body_pending = body_pending;
                break;
            }
            Taken::Done(n) => {
                used += n;
                scanned = 0;
                st.body_pending = false;
            }
        }
    }
    match (st.phase, st.transport) {
        // After an upgrade, the rest of the input is the client's first frames.
        (Phase::Open, Some(route)) if route.is_websocket() => {
            if let Some(tail) = input.get_mut(used..).filter(|t| !t.is_empty()) {
                let verdict = websocket::on_frames(st, tail, cx);
                if verdict == Verdict::Drop {
                    return Err(verdict);
                }
            }
            Ok(input.len())
        }
        // An event stream reads nothing more.
        (Phase::Open, Some(Route::Sse)) => Ok(input.len()),
        // Requests pipelined behind a held one wait for its reply (`keeps_input`).
        _ => Ok(used),
    }
}

/// Whether unprocessed input is kept for later: while reading requests, and behind a held
/// request (answered in order once it is).
fn keeps_input(st: &ConnState) -> bool {
    st.phase == Phase::Request
        || (st.phase == Phase::Open && st.transport.is_some_and(Route::is_held))
}

/// Takes up requests that arrived while one was held, now that it is answered.
pub fn resume(st: &mut ConnState, cx: &mut Cx<'_>) -> Verdict {
    if std::mem::take(&mut st.input_full) {
        st.reread = true;
    }
    if st.phase != Phase::Request || st.head.is_none() {
        return Verdict::Keep;
    }
    on_bytes(st, &mut [], cx)
}

fn take_one(st: &mut ConnState, input: &mut [u8], scanned: usize, cx: &mut Cx<'_>) -> Taken {
    let max = cx.cfg.max_header_bytes;
    let Some(head_end) = http::find_head_end(input, scanned) else {
        // Refuse garbage and oversized heads now rather than at the timeout.
        return match http::parse_request(input, max) {
            Err(e) => {
                respond_error(st, e, cx);
                Taken::Done(input.len())
            }
            Ok(_) => Taken::NeedMore(false),
        };
    };
    let (head, body_and_rest) = input.split_at_mut(head_end);
    let req = match http::parse_request(head, max) {
        Ok(Some(req)) => req,
        Ok(None) => {
            respond_error(st, HandshakeError::Malformed("malformed HTTP request"), cx);
            return Taken::Done(input.len());
        }
        Err(e) => {
            respond_error(st, e, cx);
            return Taken::Done(input.len());
        }
    };
    let body_len = match body_length(&req, cx.cfg) {
        Ok(n) => n,
        Err(e) => {
            respond_error(st, e, cx);
            return Taken::Done(input.len());
        }
    };
    let Some(body) = body_and_rest.get(..body_len) else {
        return Taken::NeedMore(true);
    };
    on_request(st, &req, body, cx);
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
fn on_request(st: &mut ConnState, req: &Request<'_>, body: &[u8], cx: &mut Cx<'_>) {
    let (route, param) = match router::route(req.method, req.path) {
        Ok(r) => r,
        Err(e) => return respond_error(st, e, cx),
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
        return after_response(st, keep_alive, cx);
    }
    let started = match route {
        Route::Echo | Route::Ws => return upgrade(st, req, route, cx),
        Route::Sse => sse::start(st, req, &cors, cx),
        Route::Poll => poll::start(st, req, &cors, keep_alive, cx),
        _ => match api::respond(route, param, req, body, keep_alive, &cors, cx) {
            Responded::Done => Ok(()),
            Responded::Held { ticket } => {
                hold(
                    st,
                    route,
                    ticket,
                    keep_alive,
                    &cors,
                    req.method == "HEAD",
                    cx,
                );
                Ok(())
            }
        },
    };
    match started {
        Err(e) => respond_error(st, e, cx),
        // A stream (SSE, held request) stays open; a plain response ends the request.
        Ok(()) if st.phase == Phase::Request => after_response(st, keep_alive, cx),
        Ok(()) => {}
    }
}

/// Holds the connection until the engine answers request `ticket` (see
/// [`crate::transport::dispatch::on_answer`]).
fn hold(
    st: &mut ConnState,
    route: Route,
    ticket: u32,
    keep_alive: bool,
    cors: &str,
    head_only: bool,
    cx: &mut Cx<'_>,
) {
    let mut s = Session::default();
    *s.http() = HttpState {
        keep_alive,
        cors: (!cors.is_empty()).then(|| cors.into()),
        head_only,
        ticket: Some(ticket),
        ..HttpState::default()
    };
    st.session = Some(Box::new(s));
    st.transport = Some(route);
    st.set_phase(Phase::Open, cx.now);
}

/// A held request was answered (its response is written): wait for the next request (or
/// close), and take up the ones pipelined behind it.
pub fn release(st: &mut ConnState, cx: &mut Cx<'_>) -> Verdict {
    if let Some(route) = st.transport.take() {
        cx.stats.closed(route);
    }
    let keep_alive = st
        .session
        .take()
        .is_some_and(|s| s.http_state().is_some_and(|h| h.keep_alive));
    st.set_phase(
        if keep_alive {
            Phase::Request
        } else {
            Phase::Finishing
        },
        cx.now,
    );
    resume(st, cx)
}

/// The engine did not answer a held request in time: `503 unavailable`, and the request is
/// forgotten (a late answer finds nobody waiting).
pub fn expire_held(st: &mut ConnState, cx: &mut Cx<'_>) -> Verdict {
    if let Some(h) = st.session.as_deref_mut().map(Session::http) {
        if let Some(ticket) = h.ticket.take() {
            cx.pending.cancel(ticket);
        }
        let cors = h.cors.take().unwrap_or_default();
        api::write_unavailable(
            cx.wbuf,
            "no answer in time",
            h.head_only,
            h.keep_alive,
            &cors,
        );
    }
    release(st, cx)
}

/// After a complete response: close, or wait for the next request with a fresh timeout.
pub fn after_response(st: &mut ConnState, keep_alive: bool, cx: &Cx<'_>) {
    if keep_alive {
        st.phase_since = cx.now;
    } else {
        st.set_phase(Phase::Finishing, cx.now);
    }
}

fn upgrade(st: &mut ConnState, req: &Request<'_>, route: Route, cx: &mut Cx<'_>) {
    let policy = UpgradePolicy {
        allowed_origins: &cx.cfg.allowed_origins,
        subprotocols: &cx.cfg.subprotocols,
        compression: cx.cfg.compression,
    };
    let up = match http::validate_upgrade(req, &policy) {
        Ok(up) => up,
        Err(e) => return respond_error(st, e, cx),
    };
    let plan = if route == Route::Ws {
        match ws::Plan::from_request(req, cx.cfg, &cx.shared.access) {
            Ok(p) => Some(p),
            Err(e) => return respond_error(st, e, cx),
        }
    } else {
        None
    };
    http::write_101(cx.wbuf, &up);
    st.deflate = up.deflate.map(|a| a.window());
    cx.window = st.deflate;
    st.transport = Some(route);
    st.set_phase(Phase::Open, cx.now);
    cx.stats.opened(route);
    if let Some(plan) = plan {
        let mut s = Session::default();
        ws::start(plan, &mut s, &mut st.outq, cx);
        st.session = Some(Box::new(s));
    }
}

pub fn respond_error(st: &mut ConnState, err: HandshakeError, cx: &mut Cx<'_>) {
    debug!("refused request: {err}");
    cx.stats.refused(err);
    http::write_error(cx.wbuf, err);
    st.set_phase(Phase::Finishing, cx.now);
}
