//! Long-polling on `GET /poll?channel=..&since=..`: an immediate reply when history has
//! messages after `since`, a held reply when it has none (answered by the next message, or
//! empty at `--poll-timeout`), the cursor to poll with next, and several polls on one
//! keep-alive connection.

mod common;

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::*;

const ROOM: &str = "room:1";
const NEWS: &str = "news";

/// A raw keep-alive connection for polls: the request is written, and the reply read later
/// (a held poll is answered only after something else happens).
struct Poller {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Poller {
    fn connect(addr: SocketAddr) -> Poller {
        Poller {
            stream: tcp(addr),
            buf: Vec::new(),
        }
    }

    fn send(&mut self, query: &str) {
        let req = format!("GET /poll?{query} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        self.stream
            .write_all(req.as_bytes())
            .expect("write the poll request");
    }

    /// Reads one reply; returns its messages and cursor. The reply must keep the connection.
    fn reply(&mut self) -> (Vec<Value>, String) {
        let resp = read_response(&mut self.stream, &mut self.buf);
        assert!(
            !resp.header_has_token("connection", "close"),
            "a poll reply on an HTTP/1.1 connection closed it: {resp:?}"
        );
        poll_reply(&resp)
    }

    fn poll(&mut self, query: &str) -> (Vec<Value>, String) {
        self.send(query);
        self.reply()
    }
}

/// `(channel, id)` of each message.
fn ids(msgs: &[Value]) -> Vec<(String, u64)> {
    msgs.iter().map(envelope_id).collect()
}

fn pairs(list: &[(&str, u64)]) -> Vec<(String, u64)> {
    list.iter().map(|&(c, n)| (c.to_owned(), n)).collect()
}

#[test]
fn messages_after_since_are_returned_at_once() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let mut http = HttpConn::connect(addr);
    for n in 1..=3 {
        assert_eq!(http.publish_json(ROOM, &json!(format!("r{n}"))), n);
    }
    for n in 1..=2 {
        assert_eq!(http.publish_json(NEWS, &json!(format!("n{n}"))), n);
    }
    let mut p = Poller::connect(addr);

    let (msgs, cursor) = p.poll(&format!("channel={ROOM}&since=1"));
    assert_eq!(
        msgs,
        vec![
            json!({"type": "message", "channel": ROOM, "id": 2, "data": "r2"}),
            json!({"type": "message", "channel": ROOM, "id": 3, "data": "r3"}),
        ]
    );
    assert_eq!(plain_cursor(&cursor), "room:1:3");

    // A cursor over two channels (the id is after the last `:` of each entry).
    let (msgs, cursor) = p.poll(&format!(
        "channel={ROOM}&channel={NEWS}&since=room:1:2,news:0"
    ));
    assert_eq!(ids(&msgs), pairs(&[(ROOM, 3), (NEWS, 1), (NEWS, 2)]));
    assert_eq!(plain_cursor(&cursor), "room:1:3,news:2");

    // A bare number: every channel from that id.
    let (msgs, cursor) = p.poll(&format!("channel={ROOM}&channel={NEWS}&since=1"));
    assert_eq!(ids(&msgs), pairs(&[(ROOM, 2), (ROOM, 3), (NEWS, 2)]));
    assert_eq!(plain_cursor(&cursor), "room:1:3,news:2");

    // The returned cursor picks up where the reply ended: a later message only.
    assert_eq!(http.publish_json(NEWS, &json!("n3")), 3);
    let (msgs, cursor) = p.poll(&format!("channel={ROOM}&channel={NEWS}&since={cursor}"));
    assert_eq!(ids(&msgs), pairs(&[(NEWS, 3)]));
    assert_eq!(plain_cursor(&cursor), "room:1:3,news:3");
}

#[test]
fn a_held_poll_is_answered_by_the_next_message() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let mut http = HttpConn::connect(addr);
    assert_eq!(http.publish_json(ROOM, &json!("old")), 1);

    let mut p = Poller::connect(addr);
    p.send(&format!(
        "channel={ROOM}&channel={NEWS}&since=room:1:1,news:0"
    ));
    wait_for_transport_gauge(addr, "poll", 1);
    assert_eq!(http.publish_json(NEWS, &json!("new")), 1);
    let (msgs, cursor) = p.reply();
    assert_eq!(
        msgs,
        vec![json!({"type": "message", "channel": NEWS, "id": 1, "data": "new"})]
    );
    assert_eq!(plain_cursor(&cursor), "room:1:1,news:1");
    wait_for_transport_gauge(addr, "poll", 0);
}

#[test]
fn without_since_only_new_messages_are_returned() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let mut http = HttpConn::connect(addr);
    assert_eq!(http.publish_json("fresh", &json!(1)), 1);
    assert_eq!(http.publish_json("fresh", &json!(2)), 2);

    let mut p = Poller::connect(addr);
    p.send("channel=fresh");
    wait_for_transport_gauge(addr, "poll", 1);
    assert_eq!(http.publish_json("fresh", &json!(3)), 3);
    let (msgs, cursor) = p.reply();
    assert_eq!(ids(&msgs), pairs(&[("fresh", 3)]));
    assert_eq!(plain_cursor(&cursor), "fresh:3");
}

#[test]
fn a_held_poll_times_out_with_no_messages_and_the_connection_stays() {
    let server = Server::start(&["--poll-timeout", "1"]);
    let addr = server.addr();
    let mut http = HttpConn::connect(addr);
    assert_eq!(http.publish_json("t", &json!("x")), 1);

    let mut p = Poller::connect(addr);
    p.send("channel=t&since=1");
    wait_for_transport_gauge(addr, "poll", 1);
    let (msgs, cursor) = p.reply();
    assert!(msgs.is_empty(), "timed-out poll: {msgs:?}");
    assert_eq!(plain_cursor(&cursor), "t:1", "the cursor is unchanged");
    wait_for_transport_gauge(addr, "poll", 0);

    // Same socket: the next poll works, immediate and held alike.
    let (msgs, cursor) = p.poll("channel=t&since=0");
    assert_eq!(ids(&msgs), pairs(&[("t", 1)]));
    assert_eq!(plain_cursor(&cursor), "t:1");
    let (msgs, _) = p.poll("channel=t&since=t:1");
    assert!(msgs.is_empty(), "second timed-out poll: {msgs:?}");
}

#[test]
fn several_polls_share_one_keep_alive_connection() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let mut http = HttpConn::connect(addr);
    let mut p = Poller::connect(addr);
    let mut cursor = "ka:0".to_owned();
    let mut next = 1;
    for _ in 0..4 {
        // Held, then answered by one message.
        p.send(&format!("channel=ka&since={cursor}"));
        wait_for_transport_gauge(addr, "poll", 1);
        assert_eq!(http.publish_json("ka", &json!(next)), next);
        let (msgs, c) = p.reply();
        assert_eq!(ids(&msgs), pairs(&[("ka", next)]));
        assert_eq!(plain_cursor(&c), format!("ka:{next}"));
        next += 1;
        // Answered at once from history.
        for _ in 0..2 {
            assert_eq!(http.publish_json("ka", &json!(next)), next);
            next += 1;
        }
        let (msgs, c) = p.poll(&format!("channel=ka&since={c}"));
        assert_eq!(ids(&msgs), pairs(&[("ka", next - 2), ("ka", next - 1)]));
        cursor = c;
        assert_eq!(plain_cursor(&cursor), format!("ka:{}", next - 1));
    }
}

/// Messages the publisher sends in the poll-while-publishing test.
const PUBLISHED: u64 = 300;

#[test]
fn polling_while_publishing_has_no_gap_and_no_duplicate() {
    let server = Server::start(&["--poll-timeout", "5"]);
    let addr = server.addr();
    let (tx, rx) = mpsc::channel();
    let publisher = thread::spawn(move || {
        let mut http = HttpConn::connect(addr);
        for n in 1..=PUBLISHED {
            let channel = if n % 3 == 0 { NEWS } else { ROOM };
            http.publish_json(channel, &json!(n));
            // Every few messages, wait for the poller to catch up, so some polls are held.
            if n % 25 == 0 && rx.recv_timeout(IO_TIMEOUT).is_err() {
                return;
            }
        }
    });

    let mut p = Poller::connect(addr);
    let mut cursor = "room:1:0,news:0".to_owned();
    let mut next = [1u64, 1u64];
    let mut seen = 0;
    let mut polls = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < PUBLISHED {
        assert!(
            Instant::now() < deadline,
            "polling stalled at {seen} messages"
        );
        let (msgs, c) = p.poll(&format!("channel={ROOM}&channel={NEWS}&since={cursor}"));
        polls += 1;
        for (channel, id) in ids(&msgs) {
            let which = usize::from(channel == NEWS);
            assert_eq!(
                id, next[which],
                "{channel}: gap or duplicate after {cursor}"
            );
            next[which] += 1;
            seen += 1;
            if seen % 25 == 0 {
                let _ = tx.send(());
            }
        }
        assert_eq!(
            plain_cursor(&c),
            format!("room:1:{},news:{}", next[0] - 1, next[1] - 1),
            "the cursor is the position after the reply"
        );
        cursor = c;
    }
    publisher.join().expect("publisher thread");
    assert!(polls >= 2, "expected several polls on the connection");
}

#[test]
fn invalid_poll_requests_are_refused() {
    let server = Server::start(&[]);
    let addr = server.addr();
    for target in [
        "/poll",
        "/poll?channel=",
        "/poll?channel=bad%20name",
        "/poll?channel=a&since=garbage",
        "/poll?channel=a&since=a:x",
        "/poll?channel=a&since=-1",
    ] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        assert_error_response(addr, req.as_bytes(), 400);
    }
}

/// HTTP/1.1 pipelining: a request sent behind a poll that is held gets its response after
/// the poll's reply, in order, on the same connection; or, if the server will not take it,
/// the poll's reply says `Connection: close` and the connection ends there (so the client
/// knows to send the request again). Never anything that is not HTTP, and never silence.
fn request_behind_a_held_poll(split: bool) {
    let server = Server::start(&[]);
    let addr = server.addr();
    let poll = b"GET /poll?channel=pipe HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let next = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut stream = tcp(addr);
    if split {
        // The second request arrives once the poll is already held.
        stream.write_all(poll).expect("write the poll");
        wait_for_transport_gauge(addr, "poll", 1);
        stream.write_all(next).expect("write the next request");
    } else {
        stream
            .write_all(&[&poll[..], &next[..]].concat())
            .expect("write the pipelined requests");
        wait_for_transport_gauge(addr, "poll", 1);
    }
    let mut http = HttpConn::connect(addr);
    assert_eq!(http.publish_json("pipe", &json!("m")), 1);

    let mut buf = Vec::new();
    let first = read_response_checked(&mut stream, &mut buf, "the poll's reply");
    let (msgs, cursor) = poll_reply(&first);
    assert_eq!(ids(&msgs), pairs(&[("pipe", 1)]));
    assert_eq!(plain_cursor(&cursor), "pipe:1");
    if first.header_has_token("connection", "close") {
        assert_closed(&mut stream, &buf);
        return;
    }
    let second = read_response_checked(
        &mut stream,
        &mut buf,
        "the response to the request after the poll",
    );
    assert_eq!(second.status, 200, "{second:?}");
    assert_eq!(second.body, b"ok\n");
}

/// Both requests in one write (one read on the server).
#[test]
fn a_request_pipelined_behind_a_poll_is_answered_after_it() {
    request_behind_a_held_poll(false);
}

/// The second request sent while the poll is held (a later read on the server).
#[test]
fn a_request_sent_while_a_poll_is_held_is_answered_after_it() {
    request_behind_a_held_poll(true);
}

/// Far more pipelined behind a held poll than the server keeps (one request of the largest
/// size): it stops reading the connection until the poll is answered — backpressure — and
/// then answers every request in order, rather than resetting the connection and losing
/// them. (In cluster mode every publish is held like this poll.)
#[test]
fn megabytes_pipelined_behind_a_held_poll_are_all_answered_in_order() {
    flood_behind_a_held_poll(false);
}

/// The same, with the poll and the flood in one stream: the server reads past the poll in
/// the read that holds it, so the input waiting behind it starts out over the bound.
#[test]
fn megabytes_sent_with_the_poll_are_all_answered_in_order() {
    flood_behind_a_held_poll(true);
}

fn flood_behind_a_held_poll(together: bool) {
    // A small bound (~1.3 KB kept behind a held request) so the flood passes it many times.
    let server = Server::start(&[
        "--workers",
        "1",
        "--max-header-bytes",
        "1024",
        "--max-message-bytes",
        "256",
    ]);
    let addr = server.addr();
    let mut stream = tcp(addr);
    let poll = b"GET /poll?channel=flood HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let one = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    // ~880 KB behind it, written from another thread in 4 KiB pieces: the server stops
    // reading, so the writes block until the poll is answered.
    const N: usize = 20_000;
    let mut all: Vec<u8> = one.iter().copied().cycle().take(one.len() * N).collect();
    if together {
        all.splice(0..0, poll.iter().copied());
    } else {
        stream.write_all(poll).expect("write the poll");
        wait_for_transport_gauge(addr, "poll", 1);
    }
    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writer = stream.try_clone().expect("clone the stream");
    let progress = written.clone();
    let writing = thread::spawn(move || {
        for piece in all.chunks(4096) {
            writer
                .write_all(piece)
                .expect("write the pipelined requests");
            progress.fetch_add(piece.len(), std::sync::atomic::Ordering::Relaxed);
        }
    });
    wait_for_transport_gauge(addr, "poll", 1);
    // Answer the poll only once far more than the bound is on its way (one worker: the
    // server sees those bytes before the publish, which comes on a later connection).
    let deadline = Instant::now() + Duration::from_secs(10);
    while written.load(std::sync::atomic::Ordering::Relaxed) < 64 * 1024 {
        assert!(
            Instant::now() < deadline,
            "the pipelined requests were not written"
        );
        thread::yield_now();
    }
    let mut http = HttpConn::connect(addr);
    assert_eq!(http.publish_json("flood", &json!("m")), 1);
    let mut buf = Vec::new();
    let first = read_response_checked(&mut stream, &mut buf, "the poll's reply");
    assert_eq!(ids(&poll_reply(&first).0), pairs(&[("flood", 1)]));
    for i in 0..N {
        let r = read_response_checked(&mut stream, &mut buf, &format!("response {i}"));
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, &b"ok\n"[..]),
            "response {i}"
        );
    }
    writing.join().expect("the writer");
}

/// [`read_response`], failing with the raw bytes if what arrives is not an HTTP response
/// (rather than panicking deep in the parser or timing out without showing them).
fn read_response_checked(stream: &mut TcpStream, buf: &mut Vec<u8>, what: &str) -> Response {
    use std::io::Read;
    let mut chunk = [0u8; 4096];
    let mut ended = "";
    while buf.len() < 9 {
        match stream.read(&mut chunk) {
            Ok(0) => {
                ended = " (then the server closed the connection)";
                break;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                ended = " (then nothing more within the read timeout)";
                break;
            }
            Err(e) => panic!("read error waiting for a response: {e}"),
        }
    }
    assert!(
        buf.starts_with(b"HTTP/1.1 "),
        "expected {what}, got {:?}{ended}",
        String::from_utf8_lossy(buf)
    );
    read_response(stream, buf)
}
