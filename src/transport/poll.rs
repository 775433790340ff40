//! Long-polling on `GET /poll?channel=a&since=<id or cursor>`: answered at once when messages
//! after `since` exist, otherwise held (as a connection in the event loop, not a thread)
//! until a message arrives or `--poll-timeout` passes. The reply carries the cursor to poll
//! with next, and the connection stays open for it (keep-alive).

use std::sync::Arc;

use crate::codec::cursor::{self, Resume};
use crate::codec::http::{self, Request};
use crate::codec::protocol;
use crate::codec::query;
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
use crate::transport::session::{self, Ask, HttpState, Session};

/// Starts a poll: answers at once if anything after `since` is kept, else holds the
/// connection (subscribed, so nothing published meanwhile is missed).
pub fn start(
    st: &mut ConnState,
    req: &Request<'_>,
    cors: &str,
    keep_alive: bool,
    cx: &mut Cx<'_>,
) -> Result<(), HandshakeError> {
    let channels = cursor::channels_of(req.query, cx.cfg.max_subscriptions)?;
    // A poll is over within --poll-timeout; its token is checked when it comes.
    let (user, _) = access::stream_who(&cx.shared.access, req, &channels)?;
    let since = query::first(req.query, "since");
    let resume = Resume::parse(since.as_deref().unwrap_or("")).ok_or(HandshakeError::Malformed(
        "since must be an id or a cursor (channel:id,...)",
    ))?;
    let mut s = Session::default();
    *s.http() = HttpState {
        keep_alive,
        cors: (!cors.is_empty()).then(|| cors.into()),
        head_only: req.method == "HEAD",
        ..HttpState::default()
    };
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
            Ok(Some(sub)) => gather(&mut s, cx.index, sub),
            Ok(None) => s.http().waiting_at.push((channel.as_str().into(), since)),
            Err(_) => {}
        }
    }
    if ready(&mut s) {
        // Answered at once: the connection goes on reading requests.
        reply_with_replay(&mut s, &mut st.outq, cx);
        return Ok(());
    }
    // Held: until answered, the connection is one of the user's (direct messages reach it).
    session::identify(cx, &mut s, user);
    st.session = Some(Box::new(s));
    st.transport = Some(Route::Poll);
    st.set_phase(Phase::Open, cx.now);
    cx.stats.opened(Route::Poll);
    Ok(())
}

/// Adds a subscription's replay to what the poll will answer with.
fn gather(s: &mut Session, index: &mut LocalIndex, sub: Subscription) {
    for msg in &sub.replay {
        s.advance(index, sub.channel_id, msg.seq);
    }
    let http = s.http();
    http.lost |= !sub.recovered;
    http.replay.extend(sub.replay);
}

/// Whether the poll can be answered now: every subscription is answered and something was
/// replayed (or it is a `HEAD`); otherwise it stays held until a delivery or the timeout.
fn ready(s: &mut Session) -> bool {
    let waiting = s.waiting();
    let http = s.http();
    waiting == 0 && (!http.replay.is_empty() || http.head_only)
}

/// Replies with the gathered replay and unsubscribes.
fn reply_with_replay(s: &mut Session, outq: &mut Option<Box<OutQueue>>, cx: &mut Cx<'_>) {
    let replay = std::mem::take(&mut s.http().replay);
    write_reply(&mut Out::new(cx.wbuf, outq), &replay, s, cx.index);
    session::end(cx, s);
}

/// Writes the reply: `{"messages":[...],"cursor":"a:7@E,b:3@E","recovered":true}` —
/// `recovered` is false when the asked position could not be resumed exactly for some
/// channel (another epoch, or older than what is kept; `messages` is what is kept).
pub fn write_reply<'m>(
    out: &mut Out<'_>,
    msgs: impl IntoIterator<Item = &'m Arc<Msg>>,
    session: &Session,
    index: &LocalIndex,
) {
    let mut body = String::from("{\"messages\":[");
    for (i, m) in msgs.into_iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(m.json());
    }
    body.push_str("],\"cursor\":");
    protocol::push_json_str(&mut body, &session.cursor(index));
    let http = session.http_state();
    let recovered = !http.is_some_and(|h| h.lost);
    body.push_str(if recovered {
        ",\"recovered\":true}"
    } else {
        ",\"recovered\":false}"
    });
    let cors = http.and_then(|h| h.cors.as_deref()).unwrap_or("");
    let head_only = http.is_some_and(|h| h.head_only);
    let keep_alive = http.is_some_and(|h| h.keep_alive);
    let mut resp = Vec::with_capacity(body.len() + 160);
    let shown: &[u8] = if head_only { b"" } else { body.as_bytes() };
    http::write_response(
        &mut resp,
        200,
        "application/json",
        cors,
        shown,
        body.len(),
        !keep_alive,
    );
    out.bytes(&resp);
}

/// Answers a held poll with the messages it was owed. The poll is over: the caller
/// releases the connection ([`crate::transport::request::release`]).
pub fn deliver(st: &mut ConnState, group: &[Owed], items: &[Item], cx: &mut Cx<'_>) {
    let Some(s) = st.session.as_deref_mut() else {
        return;
    };
    // A replay gathered while other subscriptions were still being answered goes first:
    // the cursor already counts it.
    let mut msgs = std::mem::take(&mut s.http().replay);
    for o in group {
        match items.get(o.item as usize) {
            Some(Item::Message { channel, msg }) => {
                s.advance(cx.index, *channel, msg.seq);
                msgs.push(msg.clone());
            }
            // The stream was reset: the cursor is already in the new one; say what was lost.
            Some(Item::Reset { .. }) => s.http().lost = true,
            _ => {}
        }
    }
    write_reply(&mut Out::new(cx.wbuf, &mut st.outq), &msgs, s, cx.index);
    session::end(cx, s);
}

/// Answers a held poll with a direct message to its user. The poll is over: the caller
/// releases the connection.
pub fn deliver_direct(st: &mut ConnState, msg: &Arc<Msg>, cx: &mut Cx<'_>) {
    let Some(s) = st.session.as_deref_mut() else {
        return;
    };
    let mut msgs = std::mem::take(&mut s.http().replay);
    msgs.push(msg.clone());
    write_reply(&mut Out::new(cx.wbuf, &mut st.outq), &msgs, s, cx.index);
    session::end(cx, s);
}

/// Answers a held poll when nothing new came (its timeout, or shutdown when `closing`). The
/// poll is over: the caller releases the connection.
pub fn expire(st: &mut ConnState, closing: bool, cx: &mut Cx<'_>) {
    let Some(s) = st.session.as_deref_mut() else {
        return;
    };
    if closing {
        s.http().keep_alive = false;
    }
    // Nothing new — but a replay gathered while other subscriptions were being answered is
    // already in the cursor, so it goes out.
    let replay = std::mem::take(&mut s.http().replay);
    write_reply(&mut Out::new(cx.wbuf, &mut st.outq), &replay, s, cx.index);
    session::end(cx, s);
}

/// The later answer to one of the poll's subscriptions; returns whether the poll was
/// answered with it (then the caller releases the connection).
pub fn on_answer(st: &mut ConnState, channel: &str, answer: Answered, cx: &mut Cx<'_>) -> bool {
    let Some(s) = st.session.as_deref_mut() else {
        return false;
    };
    s.wait(false);
    s.http().waiting_at.retain(|(c, _)| &**c != channel);
    if let Answered::Subscribed(Ok(sub)) = answer {
        session::register(cx.index, s, cx.who, channel, &sub, false);
        gather(s, cx.index, sub);
    }
    if !ready(s) {
        return false;
    }
    reply_with_replay(s, &mut st.outq, cx);
    true
}
