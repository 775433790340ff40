//! Server-Sent Events on `GET /sse?channel=a&channel=b`: the same channels, ids and resume
//! as WebSockets, for clients that can only read a stream (EventSource, curl, proxies that
//! do not pass upgrades).
//!
//! Each event's `id:` is a cursor over *all* the stream's channels (`a:5,b:9`), so whatever
//! event the client saw last, reconnecting with it (`Last-Event-ID`, which EventSource sends
//! by itself, or `?last_event_id=`) resumes every channel with no gap. The `data:` lines are
//! encoded once per message and shared by every SSE subscriber; only the id line is written
//! per connection.

use std::sync::Arc;

use crate::codec::cursor::{self, Resume};
use crate::codec::frame;
use crate::codec::http::Request;
use crate::codec::protocol;
use crate::codec::query;
use crate::codec::sse::{self, write_head};
use crate::error::HandshakeError;
use crate::hub::engine::{Answered, Subscription};
use crate::hub::msg::Msg;
use crate::hub::plan::{Item, Owed};
use crate::hub::subs::LocalIndex;
use crate::transport::access;
use crate::transport::conn::{ConnState, Phase};
use crate::transport::cx::Cx;
use crate::transport::out::{Out, OutQueue};
use crate::transport::pending::PendingOp;
use crate::transport::router::Route;
use crate::transport::session::{self, Ask, Session};

/// Ends the current event with the stream's cursor as its id. An event with an id and no
/// data still sets EventSource's last event id, so the first one (right after connecting)
/// makes even an immediate reconnect resume from the right place.
pub fn write_id(out: &mut Out<'_>, session: &Session, index: &LocalIndex) {
    let mut line = String::from("id: ");
    line.push_str(&session.cursor(index));
    line.push_str("\n\n");
    out.bytes(line.as_bytes());
}

/// A comment line: keeps proxies from timing the stream out and finds dead peers.
pub fn write_ping(out: &mut Out<'_>) {
    out.bytes(sse::PING);
}

/// Delivers owed messages to an SSE connection (presence events are not part of SSE).
pub fn deliver(
    out: &mut Out<'_>,
    session: &Session,
    index: &mut LocalIndex,
    group: &[Owed],
    items: &[Item],
) {
    for o in group {
        match items.get(o.item as usize) {
            Some(Item::Message { channel, msg }) => {
                out.shared(msg.sse_data(session.raw));
                session.advance(index, *channel, msg.seq);
                write_id(out, session, index);
            }
            // The stream was reset: said as on a resume that was not exact, and the cursor
            // moves to the new stream.
            Some(Item::Reset { frame, .. }) => {
                let (_, json) = frame::server_payload(frame);
                let mut event = Vec::with_capacity(json.len() + 32);
                sse::write_named_event(&mut event, "subscribed", &String::from_utf8_lossy(json));
                out.bytes(&event);
                write_id(out, session, index);
            }
            _ => {}
        }
    }
}

/// A direct message to the stream's user: a named `direct` event (EventSource hands it to
/// `addEventListener("direct", …)`), with the same data lines as a message; the cursor does
/// not move.
pub fn direct(out: &mut Out<'_>, session: &Session, msg: &Msg) {
    out.bytes(b"event: direct\n");
    out.shared(msg.sse_data(session.raw));
    out.bytes(b"\n");
}

/// Opens a stream: validates the request, writes the head, subscribes to every channel from
/// where `Last-Event-ID` (or `?last_event_id=`) says, and replays what was missed.
pub fn start(
    st: &mut ConnState,
    req: &Request<'_>,
    cors: &str,
    cx: &mut Cx<'_>,
) -> Result<(), HandshakeError> {
    let channels = cursor::channels_of(req.query, cx.cfg.max_subscriptions)?;
    let (user, claims) = access::stream_who(&cx.shared.access, req, &channels)?;
    let raw = match query::first(req.query, "format").as_deref() {
        None | Some("json") => false,
        Some("raw") => true,
        Some(_) => return Err(HandshakeError::Malformed("format must be json or raw")),
    };
    let last_id = query::first(req.query, "last_event_id");
    let resume = Resume::parse(req.last_event_id.or(last_id.as_deref()).unwrap_or("")).ok_or(
        HandshakeError::Malformed("Last-Event-ID is not a cursor (channel:id,...)"),
    )?;
    write_head(cx.wbuf, cors);
    let mut s = Session::default();
    s.raw = raw;
    if let Some(claims) = claims {
        // The stream ends when the token expires: EventSource reconnects with a new one.
        s.set_grant(claims, cx);
    }
    session::identify(cx, &mut s, user);
    // Subscribe to every channel before replaying any, so each replayed event's id is a
    // cursor over all of them; a channel's position starts just before its replay, so
    // whichever event the client saw last, resuming from its id misses nothing.
    let mut replays = Vec::with_capacity(channels.len());
    for channel in &channels {
        let since = resume.since(channel);
        let ask = Ask {
            channel,
            since: since.as_ref(),
            presence: false,
            max: usize::MAX,
        };
        let op = || PendingOp::StreamSubscribe {
            channel: channel.as_str().into(),
            user: None,
        };
        match session::subscribe(cx, &mut s, ask, op) {
            Ok(Some(sub)) => replays.push(positioned(&s, cx.index, channel, sub)),
            Ok(None) => s.http().waiting_at.push((channel.as_str().into(), since)),
            Err(_) => {}
        }
    }
    let mut out = Out::new(cx.wbuf, &mut st.outq);
    for (channel_id, replay, notice) in replays {
        write_replay(&mut out, &s, cx.index, channel_id, &replay, notice);
    }
    // The id-only event that ends the replay comes once every subscription is answered.
    if s.waiting() == 0 {
        write_id(&mut out, &s, cx.index);
    }
    st.session = Some(Box::new(s));
    st.transport = Some(Route::Sse);
    st.set_phase(Phase::Open, cx.now);
    cx.stats.opened(Route::Sse);
    Ok(())
}

/// Places a new subscription just before its replay; returns the channel, the replay, and
/// the notice that goes before it when the resume was not exact.
fn positioned(
    s: &Session,
    index: &mut LocalIndex,
    channel: &str,
    sub: Subscription,
) -> (u64, Vec<Arc<Msg>>, Option<String>) {
    if let Some(first) = sub.replay.first() {
        s.set_position(index, sub.channel_id, first.seq - 1);
    }
    // Messages were lost (another epoch, or older than what is kept): a `subscribed` event
    // says so, as the WebSocket protocol's reply does; the replay is what is kept.
    let notice = (!sub.recovered)
        .then(|| protocol::subscribed_json(channel, sub.last_seq, &sub.epoch, false, None));
    (sub.channel_id, sub.replay, notice)
}

fn write_replay(
    out: &mut Out<'_>,
    s: &Session,
    index: &mut LocalIndex,
    channel_id: u64,
    replay: &[Arc<Msg>],
    notice: Option<String>,
) {
    if let Some(json) = notice {
        let mut event = Vec::with_capacity(json.len() + 32);
        sse::write_named_event(&mut event, "subscribed", &json);
        out.bytes(&event);
    }
    for msg in replay {
        out.shared(msg.sse_data(s.raw));
        s.advance(index, channel_id, msg.seq);
        write_id(out, s, index);
    }
}

/// The later answer to one of the stream's subscriptions: it joins the cursor, and what it
/// missed is replayed.
pub fn on_answer(
    s: &mut Session,
    channel: &str,
    answer: Answered,
    outq: &mut Option<Box<OutQueue>>,
    cx: &mut Cx<'_>,
) {
    s.wait(false);
    s.http().waiting_at.retain(|(c, _)| &**c != channel);
    let Answered::Subscribed(Ok(sub)) = answer else {
        // The channel stays out of the stream, as a refused one does at start.
        if s.waiting() == 0 {
            write_id(&mut Out::new(cx.wbuf, outq), s, cx.index);
        }
        return;
    };
    session::register(cx.index, s, cx.who, channel, &sub, false);
    let (channel_id, replay, notice) = positioned(s, cx.index, channel, sub);
    let mut out = Out::new(cx.wbuf, outq);
    write_replay(&mut out, s, cx.index, channel_id, &replay, notice);
    if s.waiting() == 0 {
        write_id(&mut out, s, cx.index);
    }
}
