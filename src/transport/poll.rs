//! Long-polling on `GET /poll?channel=a&since=<id or cursor>`: answered at once when messages
//! after `since` exist, otherwise held (as a connection in the event loop, not a thread)
//! until a message arrives or `--poll-timeout` passes. The reply carries the cursor to poll
//! with next, and the connection stays open for it (keep-alive).

use std::sync::Arc;

use crate::codec::cursor::{self, Cursor, Resume};
use crate::codec::http::{self, Request};
use crate::codec::protocol;
use crate::codec::query;
use crate::error::HandshakeError;
use crate::hub::fanout::{Item, Owed};
use crate::hub::session::{self, LocalIndex, Session};
use crate::hub::Msg;
use crate::net::conn::{Conn, Phase};
use crate::transport::dispatch::{Cx, Out};
use crate::transport::router::Route;

/// Starts a poll: answers at once if anything after `since` is kept, else holds the
/// connection (subscribed, so nothing published meanwhile is missed).
pub fn start(
    conn: &mut Conn,
    req: &Request<'_>,
    cors: &str,
    keep_alive: bool,
    cx: &mut Cx<'_>,
) -> Result<(), HandshakeError> {
    let channels = cursor::channels_of(req.query, cx.cfg.max_subscriptions)?;
    let since = query::first(req.query, "since");
    let resume = Resume::parse(since.as_deref().unwrap_or("")).ok_or(HandshakeError::Malformed(
        "since must be an id or a cursor (channel:id,...)",
    ))?;
    let mut s = Session {
        keep_alive,
        cors: (!cors.is_empty()).then(|| cors.into()),
        ..Session::default()
    };
    let mut replay = Vec::new();
    for channel in &channels {
        let Ok(sub) = session::subscribe(
            cx.hub,
            cx.index,
            &mut s,
            cx.who,
            channel,
            resume.since(channel),
            false,
            usize::MAX,
        ) else {
            continue;
        };
        for msg in sub.replay {
            s.advance(sub.channel_id, msg.seq);
            replay.push(msg);
        }
    }
    let mut out = Out {
        wbuf: cx.wbuf,
        outq: &mut conn.outq,
    };
    if !replay.is_empty() || req.method == "HEAD" {
        write_reply(&mut out, &replay, &s, cx.index, req.method == "HEAD");
        session::unsubscribe_all(cx.hub, cx.index, &mut s, cx.who.worker);
        return Ok(());
    }
    conn.session = Some(Box::new(s));
    conn.transport = Some(Route::Poll);
    conn.set_phase(Phase::Open, cx.now);
    cx.stats.opened(Route::Poll);
    Ok(())
}

/// Writes the reply: `{"messages":[...],"cursor":"a:7,b:3"}`.
pub fn write_reply<'m>(
    out: &mut Out<'_>,
    msgs: impl IntoIterator<Item = &'m Arc<Msg>>,
    session: &Session,
    index: &LocalIndex,
    head_only: bool,
) {
    let mut body = String::from("{\"messages\":[");
    for (i, m) in msgs.into_iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(m.json());
    }
    body.push_str("],\"cursor\":");
    let mut cursor = String::new();
    Cursor::of(session, index).write(&mut cursor);
    protocol::push_json_str(&mut body, &cursor);
    body.push('}');
    let cors = session.cors.as_deref().unwrap_or("");
    let mut resp = Vec::with_capacity(body.len() + 160);
    let shown: &[u8] = if head_only { b"" } else { body.as_bytes() };
    http::write_response(
        &mut resp,
        200,
        "application/json",
        cors,
        shown,
        body.len(),
        !session.keep_alive,
    );
    out.bytes(&resp);
}

/// Answers a held poll with the messages it was owed.
pub fn deliver(
    out: &mut Out<'_>,
    session: &mut Session,
    index: &LocalIndex,
    group: &[Owed],
    items: &[Item],
) {
    let mut msgs = Vec::with_capacity(group.len());
    for o in group {
        if let Some(Item::Message { channel, msg }) = items.get(o.item as usize) {
            session.advance(*channel, msg.seq);
            msgs.push(msg);
        }
    }
    write_reply(out, msgs, session, index, false);
}
