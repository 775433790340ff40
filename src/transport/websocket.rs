//! An open WebSocket's input: frames decoded and dispatched — data messages to the route
//! (`/echo` echoes, `/ws` speaks the channel protocol), pings answered, the close handshake
//! completed. A protocol violation fails the connection with its close code. On a
//! connection with permessage-deflate, compressed messages are inflated by the worker's
//! inflater and replies and echoes are compressed.

use std::sync::atomic::Ordering;

use crate::codec::decoder::{Decoder, Event, Flow, Payload};
use crate::codec::frame::OpCode;
use crate::debug;
use crate::transport::conn::{ConnState, Phase};
use crate::transport::cx::{Cx, Verdict};
use crate::transport::out::Out;
use crate::transport::router::Route;
use crate::transport::ws;

/// Decodes frames and dispatches them.
pub fn on_frames(st: &mut ConnState, data: &mut [u8], cx: &mut Cx<'_>) -> Verdict {
    let mut boxed = st.decoder.take();
    let mut local = Decoder::new();
    let decoder: &mut Decoder = match boxed.as_deref_mut() {
        Some(d) => d,
        None => &mut local,
    };
    let closing = st.phase == Phase::Closing;
    let route = st.transport;
    let mut peer_closed = false;
    let session = &mut st.session;
    let outq = &mut st.outq;
    let max = cx.cfg.max_message_bytes;
    cx.window = st.deflate;
    // The worker's inflater, out of `cx` for the call so the handler can use the rest.
    let mut inflater = st.deflate.map(|_| cx.deflate.take_inflater());
    let result = decoder.decode_with(data, max, inflater.as_mut(), |event| {
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
                cx.stats.message_in(payload.as_slice().len());
                match (route, session.as_deref_mut()) {
                    (Some(Route::Ws), Some(s)) => {
                        ws::on_message(s, text, payload.as_slice(), outq, cx)
                    }
                    _ => {
                        cx.stats.messages_out.fetch_add(1, Ordering::Relaxed);
                        echo(&mut cx.out(outq), text, payload)
                    }
                }
                Flow::Continue
            }
            Event::Ping(payload) => {
                Out::new(cx.wbuf, outq).frame(OpCode::Pong, payload);
                Flow::Continue
            }
            Event::Pong(_) => Flow::Continue,
            Event::Close { code, .. } => {
                // Echo the code (RFC 6455 §5.5.1); an empty Close gets an empty reply.
                let mut out = Out::new(cx.wbuf, outq);
                match code {
                    Some(code) => out.close(code, ""),
                    None => out.frame(OpCode::Close, b""),
                }
                peer_closed = true;
                Flow::Stop
            }
        }
    });
    if let Some(inflater) = inflater {
        cx.deflate.put_inflater(inflater);
    }
    match result {
        Err(e) => {
            if closing {
                return Verdict::Drop;
            }
            debug!("failing connection: {e}");
            cx.stats.frame_error(e.close_code());
            Out::new(cx.wbuf, &mut st.outq).close(e.close_code(), e.reason());
            st.set_phase(Phase::Finishing, cx.now);
            return Verdict::Keep;
        }
        Ok(_) if peer_closed => {
            st.set_phase(Phase::Finishing, cx.now);
            return Verdict::Keep;
        }
        Ok(_) => {}
    }
    if !decoder.is_idle() {
        st.decoder = Some(boxed.unwrap_or_else(|| Box::new(local)));
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
