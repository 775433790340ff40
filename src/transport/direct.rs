//! What reaches one connection of a user through the registry rather than a channel: a
//! direct message (`POST /users/{user}/send`), or the operator's disconnect. Each transport
//! gets it its own way; neither is stored (at most once).

use std::sync::Arc;

use crate::codec::frame::close_code;
use crate::hub::msg::Msg;
use crate::transport::conn::{ConnState, Phase};
use crate::transport::cx::{Cx, Verdict};
use crate::transport::out::Out;
use crate::transport::router::Route;
use crate::transport::{poll, request, session, sse};

/// A direct message: `{"type":"direct","data":..}` on `/ws` (the payload alone with
/// `format=raw`), a named `direct` event on `/sse`, the reply of a held `/poll`.
pub fn deliver(st: &mut ConnState, msg: &Arc<Msg>, cx: &mut Cx<'_>) -> Verdict {
    if st.phase != Phase::Open {
        return Verdict::Keep;
    }
    match (st.transport, st.session.as_deref()) {
        (Some(Route::Ws), Some(s)) => {
            cx.window = st.deflate;
            cx.out(&mut st.outq).msg(msg, s.raw);
            Verdict::Keep
        }
        (Some(Route::Sse), Some(s)) => {
            sse::direct(&mut Out::new(cx.wbuf, &mut st.outq), s, msg);
            Verdict::Keep
        }
        (Some(Route::Poll), Some(_)) => {
            poll::deliver_direct(st, msg, cx);
            request::release(st, cx)
        }
        _ => Verdict::Keep,
    }
}

/// The user is disconnected: at once out of presence and the registry, then a WebSocket is
/// closed with 4003, an event stream ends, a held poll is answered and the connection closed.
pub fn disconnect(st: &mut ConnState, cx: &mut Cx<'_>) -> Verdict {
    if st.phase != Phase::Open {
        return Verdict::Keep;
    }
    if st.transport != Some(Route::Poll) {
        if let Some(s) = st.session.as_deref_mut() {
            session::end(cx, s);
        }
    }
    match st.transport {
        Some(Route::Ws) => {
            Out::new(cx.wbuf, &mut st.outq).close(close_code::DISCONNECTED, "disconnected");
            st.set_phase(Phase::Closing, cx.now);
            Verdict::Keep
        }
        Some(Route::Sse) => {
            st.set_phase(Phase::Finishing, cx.now);
            Verdict::Keep
        }
        Some(Route::Poll) => {
            poll::expire(st, true, cx);
            request::release(st, cx)
        }
        _ => Verdict::Keep,
    }
}
