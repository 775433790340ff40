//! Server-Sent Events on `GET /sse?channel=a&channel=b`: the same channels, ids and resume
//! as WebSockets, for clients that can only read a stream (EventSource, curl, proxies that
//! do not pass upgrades).
//!
//! Each event's `id:` is a cursor over *all* the stream's channels (`a:5,b:9`), so whatever
//! event the client saw last, reconnecting with it (`Last-Event-ID`, which EventSource sends
//! by itself, or `?last_event_id=`) resumes every channel with no gap. The `data:` lines are
//! encoded once per message and shared by every SSE subscriber; only the id line is written
//! per connection.

use std::fmt::Write as _;

use crate::codec::cursor::{self, Cursor, Resume};
use crate::codec::http::Request;
use crate::codec::query;
use crate::error::HandshakeError;
use crate::hub::fanout::{Item, Owed};
use crate::hub::session::{self, LocalIndex, Session};
use crate::net::conn::{Conn, Phase};
use crate::transport::dispatch::{Cx, Out};
use crate::transport::router::Route;

/// Sent with the first bytes: how long EventSource waits before reconnecting (ms).
pub const RETRY_MS: u32 = 2000;

/// Appends `text` as `data:` lines: one per line of the payload (CR, LF and CRLF all end a
/// line in SSE, so each is split), so a multi-line payload arrives intact.
pub fn write_data_lines(out: &mut Vec<u8>, text: &str) {
    let mut rest = text;
    loop {
        let end = rest.find(['\r', '\n']).unwrap_or(rest.len());
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&rest.as_bytes()[..end]);
        out.push(b'\n');
        if end == rest.len() {
            return;
        }
        let skip = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
    }
}

/// The response head that opens a stream. No `Content-Length`: the body is the stream and
/// ends when the connection does.
pub fn write_head(out: &mut Vec<u8>, cors: &str) {
    out.extend_from_slice(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\n",
    );
    out.extend_from_slice(cors.as_bytes());
    out.extend_from_slice(b"\r\n");
    let _ = write!(Bytes(out), "retry: {RETRY_MS}\n\n");
}

/// Ends the current event with the stream's cursor as its id. An event with an id and no
/// data still sets EventSource's last event id, so the first one (right after connecting)
/// makes even an immediate reconnect resume from the right place.
pub fn write_id(out: &mut Out<'_>, session: &Session, index: &LocalIndex) {
    let mut line = String::from("id: ");
    Cursor::of(session, index).write(&mut line);
    line.push_str("\n\n");
    out.bytes(line.as_bytes());
}

/// A comment line: keeps proxies from timing the stream out and finds dead peers.
pub fn write_ping(out: &mut Out<'_>) {
    out.bytes(b": ping\n\n");
}

/// Delivers owed messages to an SSE connection (presence events are not part of SSE).
pub fn deliver(
    out: &mut Out<'_>,
    session: &mut Session,
    index: &LocalIndex,
    group: &[Owed],
    items: &[Item],
) {
    for o in group {
        if let Some(Item::Message { channel, msg }) = items.get(o.item as usize) {
            out.shared(msg.sse_data(session.raw));
            session.advance(*channel, msg.seq);
            write_id(out, session, index);
        }
    }
}

/// Opens a stream: validates the request, writes the head, subscribes to every channel from
/// where `Last-Event-ID` (or `?last_event_id=`) says, and replays what was missed.
pub fn start(
    conn: &mut Conn,
    req: &Request<'_>,
    cors: &str,
    cx: &mut Cx<'_>,
) -> Result<(), HandshakeError> {
    let channels = cursor::channels_of(req.query, cx.cfg.max_subscriptions)?;
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
    let mut s = Session {
        raw,
        ..Session::default()
    };
    let mut out = Out {
        wbuf: cx.wbuf,
        outq: &mut conn.outq,
    };
    // Subscribe to every channel before replaying any, so each replayed event's id is a
    // cursor over all of them; a channel's position starts just before its replay, so
    // whichever event the client saw last, resuming from its id misses nothing.
    let mut replays = Vec::with_capacity(channels.len());
    for channel in &channels {
        let since = resume.since(channel);
        let Ok(sub) = session::subscribe(
            cx.hub,
            cx.index,
            &mut s,
            cx.who,
            channel,
            since,
            false,
            usize::MAX,
        ) else {
            continue;
        };
        if let Some(first) = sub.replay.first() {
            s.set_position(sub.channel_id, first.seq - 1);
        }
        replays.push((sub.channel_id, sub.replay));
    }
    for (channel_id, replay) in replays {
        for msg in &replay {
            out.shared(msg.sse_data(raw));
            s.advance(channel_id, msg.seq);
            write_id(&mut out, &s, cx.index);
        }
    }
    write_id(&mut out, &s, cx.index);
    conn.session = Some(Box::new(s));
    // A stream never hears from its reader, so a peer that vanished without FIN would only
    // be noticed when the send buffer fills. With TCP_USER_TIMEOUT the kernel drops the
    // connection once sent data (our pings) stays unacknowledged for the idle timeout, and
    // the error event reaps it.
    let _ = socket2::SockRef::from(&conn.socket).set_tcp_user_timeout(Some(cx.cfg.idle_timeout));
    conn.transport = Some(Route::Sse);
    conn.set_phase(Phase::Open, cx.now);
    cx.stats.opened(Route::Sse);
    Ok(())
}

/// `fmt::Write` over a byte vector.
struct Bytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> String {
        let mut out = Vec::new();
        write_data_lines(&mut out, text);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn multi_line_payloads_are_split_on_every_line_ending() {
        assert_eq!(lines("one"), "data: one\n");
        assert_eq!(lines(""), "data: \n");
        assert_eq!(lines("a\nb"), "data: a\ndata: b\n");
        assert_eq!(lines("a\r\nb\rc\n"), "data: a\ndata: b\ndata: c\ndata: \n");
        assert_eq!(
            lines("{\n  \"x\": 1\n}"),
            "data: {\ndata:   \"x\": 1\ndata: }\n"
        );
    }

    #[test]
    fn head_has_no_length_and_sets_retry() {
        let mut out = Vec::new();
        write_head(&mut out, "Access-Control-Allow-Origin: http://a\r\n");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream"));
        assert!(!text.to_ascii_lowercase().contains("content-length"));
        assert!(text.contains("Access-Control-Allow-Origin: http://a\r\n\r\nretry: 2000\n\n"));
    }
}
