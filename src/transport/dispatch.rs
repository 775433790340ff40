//! The transports' entry points for the event loop: bytes a connection read, dispatched by
//! its phase, and a later answer from the engine, dispatched by what the request was. No
//! socket I/O here: output is gathered into the worker's batch buffer or the connection's
//! queue and written by the event loop at the end of the batch.

use crate::hub::engine::Answered;
use crate::transport::api;
use crate::transport::conn::{ConnState, Phase};
use crate::transport::cx::{Cx, Verdict};
use crate::transport::pending::{PendingOp, WsOp};
use crate::transport::request;
use crate::transport::router::Route;
use crate::transport::websocket;
use crate::transport::{poll, sse, ws};

/// Dispatches bytes just read by the connection's phase.
pub fn on_bytes(st: &mut ConnState, data: &mut [u8], cx: &mut Cx<'_>) -> Verdict {
    match st.phase {
        Phase::Request => request::on_bytes(st, data, cx),
        // An SSE stream has nothing to read; input is discarded.
        Phase::Open if st.transport == Some(Route::Sse) => Verdict::Keep,
        // Behind a held request: kept (bounded) and answered after it.
        Phase::Open if st.transport.is_some_and(Route::is_held) => {
            request::behind_held(st, data, cx.cfg)
        }
        Phase::Open | Phase::Closing => websocket::on_frames(st, data, cx),
        // Input after our last word is read and discarded until the peer closes.
        Phase::Finishing => Verdict::Keep,
    }
}

/// The engine's later answer to request `op` of this connection.
pub fn on_answer(st: &mut ConnState, op: PendingOp, answer: Answered, cx: &mut Cx<'_>) -> Verdict {
    let open = st.phase == Phase::Open;
    cx.window = st.deflate;
    match (op, st.transport, st.session.as_deref_mut()) {
        (PendingOp::Ws { op, reference }, Some(Route::Ws), Some(s)) if open => {
            ws::on_answer(s, op, reference.as_deref(), answer, &mut st.outq, cx);
            Verdict::Keep
        }
        (PendingOp::StreamSubscribe { channel, .. }, Some(Route::Sse), Some(s)) if open => {
            sse::on_answer(s, &channel, answer, &mut st.outq, cx);
            Verdict::Keep
        }
        (PendingOp::StreamSubscribe { channel, .. }, Some(Route::Poll), Some(_)) if open => {
            if poll::on_answer(st, &channel, answer, cx) {
                request::release(st, cx)
            } else {
                Verdict::Keep
            }
        }
        (PendingOp::Http(op), Some(route), Some(s)) if open && route.is_held() => {
            let http = s.http();
            let (head_only, keep_alive) = (http.head_only, http.keep_alive);
            let cors = http.cors.take().unwrap_or_default();
            api::on_answer(op, answer, cx.wbuf, head_only, keep_alive, &cors);
            request::release(st, cx)
        }
        // The connection moved on (closed, timed out, or a Close under way).
        (op, ..) => {
            orphan(op, answer, cx);
            Verdict::Keep
        }
    }
}

/// An answer nobody waits for any more: undo what it did (a subscription granted to a
/// connection that is gone would leak its count in the engine).
pub fn orphan(op: PendingOp, answer: Answered, cx: &mut Cx<'_>) {
    let Answered::Subscribed(Ok(_)) = answer else {
        return;
    };
    match op {
        PendingOp::Ws {
            op: WsOp::Subscribe { channel, user, .. },
            ..
        }
        | PendingOp::StreamSubscribe { channel, user } => {
            cx.hub
                .engine
                .unsubscribe(&channel, cx.who.worker, user.as_deref())
        }
        _ => {}
    }
}
