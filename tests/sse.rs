//! Server-Sent Events on `GET /sse`: the stream's head and framing (multi-line data in JSON
//! and raw mode), event ids that are cursors over every channel of the stream, resume with
//! `Last-Event-ID` (header or `?last_event_id=`) with no gap while messages are published,
//! pings, the connection limit, cutting off a reader that stopped, and the end of streams at
//! shutdown.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;
use socket2::{Domain, Socket, Type};

use common::*;

/// The two channels of the multi-channel tests; one has a `:` in its name, so a cursor entry's
/// id is the part after the *last* `:`.
const ROOM: &str = "room:1";
const NEWS: &str = "news";

/// `/sse` on both test channels, with `extra` query parameters (`&...`, or empty).
fn both(extra: &str) -> String {
    format!("/sse?channel={ROOM}&channel={NEWS}{extra}")
}

/// A cursor as the server writes it, without its epochs (see `plain_cursor`):
/// `room:1:3,news:2`.
fn cursor_text(entries: &[(&str, u64)]) -> String {
    entries
        .iter()
        .map(|(c, n)| format!("{c}:{n}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The exact JSON envelope of a message whose `data` is the JSON text `data`.
fn envelope(channel: &str, id: u64, data: &str) -> String {
    format!(r#"{{"type":"message","channel":"{channel}","id":{id},"data":{data}}}"#)
}

/// Reads message events until the id-only event that ends a replay; returns them.
fn read_replay(s: &mut SseStream) -> Vec<SseEvent> {
    let mut replay = Vec::new();
    loop {
        let ev = s.next_event();
        if ev.is_message() {
            assert_message_shape(&ev);
            replay.push(ev);
        } else if ev.id.is_some() && ev.comments.is_empty() {
            return replay;
        }
    }
}

#[test]
fn stream_opens_with_retry_then_an_id_covering_every_channel() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let (mut s, first) = SseStream::connect_live(addr, &both(""), &[]);
    assert_eq!(
        s.response.header("cache-control"),
        Some("no-cache"),
        "{:?}",
        s.response
    );
    assert_eq!(
        first.id.as_deref().map(plain_cursor).as_deref(),
        Some("room:1:0,news:0"),
        "the first id names every channel, in the order asked"
    );

    let mut http = HttpConn::connect(addr);
    assert_eq!(http.publish_json(NEWS, &json!("n1")), 1);
    let ev = s.next_message();
    assert_eq!(ev.lines.len(), 2, "{:?}", ev.lines);
    assert_eq!(
        ev.lines[0],
        format!("data: {}", envelope(NEWS, 1, r#""n1""#))
    );
    let id = ev.lines[1].strip_prefix("id: ").expect("an id line");
    assert_eq!(plain_cursor(id), "room:1:0,news:1");
    assert_eq!(http.publish_json(ROOM, &json!({"x": 1})), 1);
    let ev = s.next_message();
    assert_eq!(ev.joined(), envelope(ROOM, 1, r#"{"x":1}"#));
    assert_eq!(
        ev.id.as_deref().map(plain_cursor).as_deref(),
        Some("room:1:1,news:1")
    );
}

#[test]
fn json_mode_splits_a_pretty_printed_envelope_over_data_lines() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let (mut s, _) = SseStream::connect_live(addr, "/sse?channel=pretty", &[]);
    let mut http = HttpConn::connect(addr);

    // Published as JSON, the data is kept byte for byte, newlines included.
    let pretty = "{\n  \"k\": [\n    1,\n    2\n  ],\n  \"s\": \"a\\nb\"\n}";
    assert_eq!(
        http.publish("pretty", Some("application/json"), pretty.as_bytes()),
        1
    );
    let ev = s.next_message();
    let want = envelope("pretty", 1, pretty);
    assert_eq!(
        ev.data.len(),
        want.split('\n').count(),
        "one data line per line"
    );
    assert_eq!(ev.joined(), want, "the data lines joined give the envelope");
    assert_eq!(ev.json()["data"], json!({"k": [1, 2], "s": "a\nb"}));
    assert_eq!(
        ev.id.as_deref().map(plain_cursor).as_deref(),
        Some("pretty:1")
    );

    // CRLF and lone CR end lines too: every one becomes a line break, none is sent as a CR.
    let crlf = "{\r\n  \"a\": 1,\r  \"b\": 2\r\n}";
    assert_eq!(
        http.publish("pretty", Some("application/json"), crlf.as_bytes()),
        2
    );
    let ev = s.next_message();
    assert_eq!(ev.data.len(), 4, "{:?}", ev.lines);
    assert_eq!(ev.json()["data"], json!({"a": 1, "b": 2}));
    assert_eq!(ev.json()["id"], 2);
    assert_eq!(
        ev.id.as_deref().map(plain_cursor).as_deref(),
        Some("pretty:2")
    );

    // A newline inside a JSON string is escaped: one line.
    assert_eq!(http.publish_json("pretty", &json!("x\ny")), 3);
    let ev = s.next_message();
    assert_eq!(ev.data, vec![envelope("pretty", 3, r#""x\ny""#)]);
    assert_eq!(
        ev.id.as_deref().map(plain_cursor).as_deref(),
        Some("pretty:3")
    );
}

#[test]
fn raw_mode_sends_the_payload_split_on_every_line_ending() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let (mut s, _) = SseStream::connect_live(addr, "/sse?channel=raw&format=raw", &[]);
    let mut http = HttpConn::connect(addr);

    let binary = [0xFFu8, 0x00, b'\n', b'\r', 0x80, 0x7F];
    let cases: [(Option<&str>, &[u8], Vec<String>); 7] = [
        (Some("text/plain"), b"single", vec!["single".into()]),
        (
            Some("text/plain"),
            b"one\r\ntwo\rthree\nfour",
            vec!["one".into(), "two".into(), "three".into(), "four".into()],
        ),
        (
            Some("text/plain"),
            b"trailing\n",
            vec!["trailing".into(), "".into()],
        ),
        (
            Some("text/plain"),
            b"\n\nblank lines",
            vec!["".into(), "".into(), "blank lines".into()],
        ),
        // A JSON string is unwrapped to its text.
        (
            Some("application/json"),
            br#""a\nb""#,
            vec!["a".into(), "b".into()],
        ),
        // Other JSON goes as its text, newlines and all.
        (
            Some("application/json"),
            b"{\n  \"a\": 1\n}",
            vec!["{".into(), "  \"a\": 1".into(), "}".into()],
        ),
        // Bytes that are not UTF-8 go base64-encoded, on one line.
        (
            None,
            &binary,
            vec![base64::engine::general_purpose::STANDARD.encode(binary)],
        ),
    ];
    for (n, (ctype, body, want)) in cases.iter().enumerate() {
        let id = http.publish("raw", *ctype, body);
        assert_eq!(id, n as u64 + 1);
        let ev = s.next_message();
        assert_eq!(
            &ev.data,
            want,
            "raw payload {:?}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(
            ev.id.as_deref().map(plain_cursor),
            Some(format!("raw:{id}"))
        );
    }
}

/// How a position is given (query suffix, header lines), the position it is (room, news),
/// and the messages expected in order.
type ReplayCase<'a> = (&'a str, Vec<&'a str>, [u64; 2], Vec<(&'a str, u64)>);

#[test]
fn replay_from_last_event_id_header_query_or_bare_number() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let mut http = HttpConn::connect(addr);
    for n in 1..=3 {
        assert_eq!(http.publish_json(ROOM, &json!(format!("r{n}"))), n);
    }
    for n in 1..=2 {
        assert_eq!(http.publish_json(NEWS, &json!(format!("n{n}"))), n);
    }

    let cases: [ReplayCase<'_>; 4] = [
        (
            "",
            vec!["Last-Event-ID: room:1:1,news:0"],
            [1, 0],
            vec![(ROOM, 2), (ROOM, 3), (NEWS, 1), (NEWS, 2)],
        ),
        (
            "&last_event_id=room:1:2,news:1",
            vec![],
            [2, 1],
            vec![(ROOM, 3), (NEWS, 2)],
        ),
        (
            "&last_event_id=1",
            vec![],
            [1, 1],
            vec![(ROOM, 2), (ROOM, 3), (NEWS, 2)],
        ),
        // EventSource keeps its URL and sends the newer position as the header: it wins.
        (
            "&last_event_id=0",
            vec!["Last-Event-ID: room:1:2,news:2"],
            [2, 2],
            vec![(ROOM, 3)],
        ),
    ];
    for (query, headers, start, want) in cases {
        let what = format!("query {query:?}, headers {headers:?}");
        let mut s = SseStream::connect(addr, &both(query), &headers);
        s.expect_retry();
        let replay = read_replay(&mut s);
        let mut pos = start;
        let got: Vec<(String, u64)> = replay.iter().map(|ev| envelope_id(&ev.json())).collect();
        let want_owned: Vec<(String, u64)> = want.iter().map(|&(c, n)| (c.to_owned(), n)).collect();
        assert_eq!(got, want_owned, "{what}");
        for (ev, (channel, id)) in replay.iter().zip(&want) {
            let prefix = if *channel == ROOM { 'r' } else { 'n' };
            assert_eq!(ev.json()["data"], json!(format!("{prefix}{id}")), "{what}");
            pos[usize::from(*channel == NEWS)] = *id;
            assert_eq!(
                ev.id.as_deref().map(plain_cursor),
                Some(cursor_text(&[(ROOM, pos[0]), (NEWS, pos[1])])),
                "{what}: the id after {channel} #{id} must be the position right after it"
            );
        }
    }
}

/// Whatever event a client saw last, reconnecting with its id must replay exactly the events
/// after it: the id is the position after that event on every channel of the stream.
#[test]
fn every_event_id_resumes_right_after_its_event() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let mut http = HttpConn::connect(addr);
    for n in 1..=3 {
        assert_eq!(http.publish_json(ROOM, &json!(n)), n);
        assert_eq!(http.publish_json(NEWS, &json!(n)), n);
    }

    let mut s = SseStream::connect(addr, &both(""), &["Last-Event-ID: room:1:0,news:0"]);
    s.expect_retry();
    let all: Vec<((String, u64), String)> = read_replay(&mut s)
        .iter()
        .map(|ev| (envelope_id(&ev.json()), ev.id.clone().unwrap_or_default()))
        .collect();
    let order: Vec<(String, u64)> = all.iter().map(|(m, _)| m.clone()).collect();
    assert_eq!(order.len(), 6, "replay from 0: {order:?}");

    for (k, (seen, id)) in all.iter().enumerate() {
        let mut again = SseStream::connect(addr, &both(""), &[&format!("Last-Event-ID: {id}")]);
        again.expect_retry();
        let rest: Vec<(String, u64)> = read_replay(&mut again)
            .iter()
            .map(|ev| envelope_id(&ev.json()))
            .collect();
        assert_eq!(
            rest,
            order[k + 1..].to_vec(),
            "resuming with the id {id:?} of {seen:?} must replay exactly what followed it"
        );
    }
}

/// Rounds of reading a few events, dropping the connection and resuming from the last id.
const RESUME_ROUNDS: usize = 12;
/// The publisher stops here at the latest (per channel); history holds all of it.
const MAX_PER_CHANNEL: u64 = 2000;

#[test]
fn resume_while_publishing_has_no_gap_and_no_duplicate() {
    let server = Server::start(&["--history-size", "10000"]);
    let addr = server.addr();
    let (mut s, first) = SseStream::connect_live(addr, &both(""), &[]);
    let mut cursor = first.id.clone().unwrap_or_default();
    assert_eq!(plain_cursor(&cursor), "room:1:0,news:0");

    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut http = HttpConn::connect(addr);
            let mut last = [0u64; 2];
            for i in 0..2 * MAX_PER_CHANNEL {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let which = (i % 2) as usize;
                let channel = [ROOM, NEWS][which];
                last[which] = http.publish_json(channel, &json!(i));
                assert_eq!(last[which], i / 2 + 1, "publish ids per channel");
            }
            last
        })
    };

    // The next id expected on each channel's track; every event must continue it. (The ids'
    // exact values are checked by the deterministic tests above; here only what a client
    // ends up with counts.)
    let mut next = [1u64, 1u64];
    let check = |ev: &SseEvent, next: &mut [u64; 2], resumed_from: &str| {
        let (channel, id) = envelope_id(&ev.json());
        let which = usize::from(channel == NEWS);
        assert_eq!(
            id, next[which],
            "{channel}: expected id {} next (gap or duplicate) on the stream resumed from \
             {resumed_from:?}",
            next[which]
        );
        next[which] += 1;
    };
    for round in 0..RESUME_ROUNDS {
        let resumed_from = cursor.clone();
        for _ in 0..=round % 5 {
            let ev = s.next_message();
            check(&ev, &mut next, &resumed_from);
            cursor = ev.id.clone().unwrap_or_default();
        }
        drop(s);
        // Even rounds resume with the header (as EventSource does), odd ones with the query.
        s = if round % 2 == 0 {
            SseStream::connect(addr, &both(""), &[&format!("Last-Event-ID: {cursor}")])
        } else {
            SseStream::connect(addr, &both(&format!("&last_event_id={cursor}")), &[])
        };
        s.expect_retry();
    }
    stop.store(true, Ordering::Relaxed);
    let last = publisher.join().expect("publisher thread");
    while next[0] <= last[0] || next[1] <= last[1] {
        let ev = s.next_message();
        check(&ev, &mut next, &cursor);
    }
    assert_eq!(
        (next[0] - 1, next[1] - 1),
        (last[0], last[1]),
        "every published id was received once"
    );
}

#[test]
fn pings_keep_an_idle_stream_open() {
    let server = Server::start(&["--ping-interval", "1", "--idle-timeout", "2"]);
    let addr = server.addr();
    let (mut s, _) = SseStream::connect_live(addr, "/sse?channel=quiet", &[]);
    // Three pings span more than the idle timeout: a stream whose reader keeps up is kept.
    for _ in 0..3 {
        let ev = s.next_event();
        assert_eq!(
            ev.lines,
            vec![": ping".to_owned()],
            "expected a ping comment"
        );
    }
    let mut http = HttpConn::connect(addr);
    assert_eq!(http.publish_json("quiet", &json!("still here")), 1);
    let ev = s.next_message();
    assert_eq!(ev.json()["data"], "still here");
}

#[test]
fn invalid_stream_requests_are_refused() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let get = |target: &str, header: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n{header}\r\n").into_bytes()
    };
    for (req, status) in [
        (get("/sse", ""), 400),
        (get("/sse?channel=", ""), 400),
        (get("/sse?channel=bad%20name", ""), 400),
        (get("/sse?channel=a&format=xml", ""), 400),
        (get("/sse?channel=a&last_event_id=garbage", ""), 400),
        (get("/sse?channel=a&last_event_id=a:x", ""), 400),
        (get("/sse?channel=a", "Last-Event-ID: a:1,\r\n"), 400),
        (get("/sse?channel=a", "Last-Event-ID: -1\r\n"), 400),
        (
            b"POST /sse?channel=a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
                .to_vec(),
            405,
        ),
    ] {
        assert_error_response(addr, &req, status);
    }
}

/// Whatever a client sends after its request (here the stray CRLF that RFC 9112 §2.2 tells
/// servers to tolerate) is not answered inside the event stream: the stream stays SSE.
#[test]
fn input_after_the_request_does_not_corrupt_the_stream() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let mut stream = tcp(addr);
    stream
        .write_all(b"GET /sse?channel=extra HTTP/1.1\r\nHost: localhost\r\n\r\n\r\n")
        .expect("write the request");
    let mut buf = Vec::new();
    let resp = read_response(&mut stream, &mut buf);
    let mut s = SseStream::from_response(resp, stream, buf);
    s.expect_retry();
    assert_eq!(
        s.next_event().id.as_deref().map(plain_cursor).as_deref(),
        Some("extra:0")
    );
    let mut http = HttpConn::connect(addr);
    assert_eq!(http.publish_json("extra", &json!("still SSE")), 1);
    let ev = s.next_message();
    assert_eq!(ev.json()["data"], "still SSE");
}

/// Reads the 503 an over-capacity connection gets right after accept, without sending a
/// request first (so the server's close cannot race with unread request bytes).
fn expect_503(addr: SocketAddr) {
    let mut stream = tcp(addr);
    let mut buf = Vec::new();
    let resp = read_response(&mut stream, &mut buf);
    assert_eq!(resp.status, 503, "expected 503 at capacity, got {resp:?}");
    assert_error_shape(&resp);
    assert_closed(&mut stream, &buf);
}

/// One attempt to open a stream that reports a refusal instead of panicking.
fn try_sse(addr: SocketAddr, path: &str) -> Option<SseStream> {
    let mut stream = tcp(addr);
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    let resp = read_response(&mut stream, &mut buf);
    (resp.status == 200).then(|| SseStream::from_response(resp, stream, buf))
}

#[test]
fn streams_count_against_max_connections() {
    let server = Server::start(&["--max-connections", "2"]);
    let addr = server.addr();
    let (a, _) = SseStream::connect_live(addr, "/sse?channel=cap", &[]);
    let (mut b, _) = SseStream::connect_live(addr, "/sse?channel=cap", &[]);
    expect_503(addr);

    // A stream that ends frees its slot.
    drop(a);
    let mut c = poll_until(
        IO_TIMEOUT,
        "a slot to free up after a stream closed",
        || try_sse(addr, "/sse?channel=cap"),
    );
    c.expect_retry();
    expect_503(addr);

    // Both streams still work (the publish needs a slot, so end one first).
    drop(c);
    let mut http = poll_until(IO_TIMEOUT, "a slot for the publisher", || {
        let mut conn = HttpConn::connect(addr);
        let resp = conn.get("/healthz");
        (resp.status == 200).then_some(conn)
    });
    assert_eq!(http.publish_json("cap", &json!("x")), 1);
    assert_eq!(b.next_message().json()["data"], "x");
}

/// The stalled reader's receive buffer (the kernel doubles it); fixed, so it is not auto-tuned.
const SMALL_RCVBUF: usize = 8 * 1024;
/// The server's per-connection output cap in the stall test.
const CAP: usize = 64 * 1024;
/// Payload size of the flood.
const FLOOD_PAYLOAD: usize = 16 * 1024;
/// The flood gives up (and the test fails) after this much without the server acting.
const FLOOD_LIMIT_BYTES: usize = 512 * 1024 * 1024;

/// A stream whose socket has a small receive buffer and that is read only up to its first id.
fn stalled_stream(addr: SocketAddr, path: &str) -> SseStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket
        .set_recv_buffer_size(SMALL_RCVBUF)
        .expect("set SO_RCVBUF");
    socket
        .connect_timeout(&addr.into(), IO_TIMEOUT)
        .expect("connect");
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(req.as_bytes()).expect("write the request");
    let mut buf = Vec::new();
    let resp = read_response(&mut stream, &mut buf);
    let mut s = SseStream::from_response(resp, stream, buf);
    s.expect_retry();
    s.next_event();
    s
}

fn slow_or_reaped(addr: SocketAddr) -> f64 {
    metric(addr, "switchboard_slow_consumers_total")
        + metric(addr, "switchboard_heartbeat_reaped_total")
}

#[test]
fn a_stream_that_stops_reading_is_cut_off() {
    let server = Server::start(&[
        "--idle-timeout",
        "2",
        "--ping-interval",
        "1",
        "--max-outbound-bytes",
        &CAP.to_string(),
        "--close-timeout",
        "1",
        "--history-size",
        "16",
    ]);
    let addr = server.addr();
    let mut stalled = stalled_stream(addr, "/sse?channel=flood");
    let before = slow_or_reaped(addr);

    let mut http = HttpConn::connect(addr);
    let body = vec![b'x'; FLOOD_PAYLOAD];
    let mut published = 0usize;
    loop {
        assert!(
            published < FLOOD_LIMIT_BYTES,
            "{} MiB published and the stalled stream was neither cut off nor reaped",
            published >> 20
        );
        for _ in 0..16 {
            http.publish("flood", Some("text/plain"), &body);
            published += FLOOD_PAYLOAD;
        }
        if slow_or_reaped(addr) > before {
            break;
        }
    }

    // The server closes the connection: reading what the kernel still holds ends in EOF (or
    // a reset), not in a stream that stays open.
    let deadline = Instant::now() + Duration::from_secs(30);
    stalled.buf.clear();
    let mut chunk = vec![0u8; 256 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "the server did not close the stalled stream"
        );
        stalled
            .stream
            .set_read_timeout(Some(left))
            .expect("set read timeout");
        match stalled.stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read error on the stalled stream: {e}"),
        }
    }
    wait_for_transport_gauge(addr, "sse", 0);

    // The server still streams to a reader that keeps up.
    let (mut fresh, _) = SseStream::connect_live(addr, "/sse?channel=flood", &[]);
    let id = http.publish_json("flood", &json!("after"));
    let ev = fresh.next_message();
    assert_eq!(envelope_id(&ev.json()), ("flood".to_owned(), id));
}

#[test]
fn sigterm_ends_streams_and_answers_held_polls() {
    // A shutdown timeout far past the exit deadline: the server must exit once its clients
    // are done, not when the timeout runs out.
    let mut server = Server::start(&["--shutdown-timeout", "60"]);
    let addr = server.addr();
    let (mut sse, _) = SseStream::connect_live(addr, "/sse?channel=s", &[]);
    let mut poll = tcp(addr);
    poll.write_all(b"GET /poll?channel=p HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("write the poll");
    wait_for_transport_gauge(addr, "poll", 1);
    wait_for_transport_gauge(addr, "sse", 1);

    // Published before the signal: still delivered before the stream ends.
    let mut http = HttpConn::connect(addr);
    assert_eq!(http.publish_json("s", &json!("last words")), 1);
    drop(http);
    send_signal(&server, libc::SIGTERM);

    let mut buf = Vec::new();
    let resp = read_response(&mut poll, &mut buf);
    let (msgs, cursor) = poll_reply(&resp);
    assert!(
        msgs.is_empty(),
        "a poll held at shutdown gets no messages: {msgs:?}"
    );
    assert_eq!(plain_cursor(&cursor), "p:0");
    assert_closed(&mut poll, &buf);
    drop(poll);

    let events = sse.events_until_eof(IO_TIMEOUT);
    let messages: Vec<&SseEvent> = events.iter().filter(|e| e.is_message()).collect();
    assert_eq!(
        messages.len(),
        1,
        "expected the last message, then the end: {events:?}"
    );
    assert_eq!(messages[0].json()["data"], "last words");
    drop(sse);

    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("the server did not exit after its clients were done");
    assert!(status.success(), "exit status {status:?}");
}
