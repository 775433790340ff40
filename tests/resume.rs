//! Resume: `since` (in a JSON subscribe or in the URL) replays what a client missed and joins
//! the live stream with no gap and no duplicate, even while messages are being published; a
//! gap older than the history kept is reported with `recovered: false`.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use serde_json::{json, Value};

use common::*;

/// Reconnections in the resume-while-publishing test, and messages read in each.
const ROUNDS: usize = 12;
const READ_PER_ROUND: u64 = 25;
/// The publisher stops here at the latest; history holds all of it, so every resume in range
/// is recoverable.
const MAX_PUBLISHED: u64 = 100_000;

/// Publishes `{"n": id}` on `channel` over one keep-alive connection until `stop` is set (or
/// [`MAX_PUBLISHED`]), checking that the ids are 1, 2, 3, ...
fn spawn_publisher(
    addr: std::net::SocketAddr,
    channel: &'static str,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let mut http = HttpConn::connect(addr);
        let mut n = 0;
        while n < MAX_PUBLISHED && !stop.load(Ordering::Relaxed) {
            n += 1;
            assert_eq!(http.publish_json(channel, &json!({ "n": n })), n);
        }
        n
    })
}

/// Sends a Close and reads until the server's Close and the TCP close, skipping the data
/// still streaming in.
fn close_draining(c: &mut Client) {
    c.send_close(1000, "");
    loop {
        let f = c.read_frame_full();
        if f.opcode == OP_CLOSE {
            assert_eq!(f.close_code(), Some(1000), "{}", describe(&f));
            break;
        }
        assert_eq!(f.opcode, OP_TEXT, "unexpected {}", describe(&f));
    }
    c.expect_eof();
}

#[test]
fn resume_while_publishing_has_no_gap_and_no_duplicate() {
    let server = Server::start(&["--workers", "2", "--history-size", "100000"]);
    let addr = server.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = spawn_publisher(addr, "live", stop.clone());

    let mut seen: Vec<u64> = Vec::new();
    let mut last: Option<u64> = None;
    for round in 0..ROUNDS {
        // Even rounds resume with a JSON subscribe, odd ones through the URL.
        let (mut c, subscribed) = if round % 2 == 0 {
            let mut c = ws_connect(addr, "");
            let mut op = json!({"op": "subscribe", "channel": "live"});
            if let Some(l) = last {
                op["since"] = json!(l);
            }
            c.send_json(&op);
            let s = c.read_json();
            (c, s)
        } else {
            let l = last.expect("odd rounds follow a first round");
            let mut c = ws_connect(addr, &format!("channel=live&since={l}"));
            let s = c.read_json();
            (c, s)
        };
        assert_eq!(
            (&subscribed["type"], &subscribed["recovered"]),
            (&json!("subscribed"), &json!(true)),
            "round {round}: {subscribed}"
        );
        let at_subscribe = subscribed["id"].as_u64().expect("subscribed id");
        // Without `since`, the stream starts after the id the subscribe reported.
        let mut prev = last.unwrap_or(at_subscribe);
        assert!(
            at_subscribe >= prev,
            "round {round}: subscribed at {at_subscribe}, before {prev}"
        );
        for _ in 0..READ_PER_ROUND {
            let (id, m) = c.read_message_id("live");
            assert_eq!(
                id,
                prev + 1,
                "round {round}: after {prev} came {id} (subscribed at {at_subscribe})"
            );
            assert_eq!(m["data"], json!({ "n": id }), "round {round}");
            seen.push(id);
            prev = id;
        }
        last = Some(prev);
        // Every third round closes cleanly; the others drop the connection.
        if round % 3 == 1 {
            close_draining(&mut c);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let published = publisher.join().expect("publisher thread");

    let first = seen[0];
    let expected: Vec<u64> = (first..first + seen.len() as u64).collect();
    assert!(
        seen == expected,
        "the union over {ROUNDS} reconnections has a gap or a duplicate: {seen:?}"
    );
    assert!(published >= *seen.last().expect("some ids"));
}

/// Subscribes over a fresh connection, with `since` in a JSON subscribe, and returns it with
/// the `subscribed` reply.
fn subscribe_since(addr: std::net::SocketAddr, channel: &str, since: u64) -> (Client, Value) {
    let mut c = ws_connect(addr, "");
    c.send_json(&json!({"op": "subscribe", "channel": channel, "since": since}));
    let s = c.read_json();
    (c, s)
}

/// Reads messages until the one with id `until`, returning their ids.
fn ids_until(c: &mut Client, channel: &str, until: u64) -> Vec<u64> {
    let mut ids = Vec::new();
    loop {
        let (id, _) = c.read_message_id(channel);
        ids.push(id);
        if id >= until {
            return ids;
        }
    }
}

#[test]
fn resume_past_the_history_buffer_is_not_recovered() {
    let server = Server::start(&["--history-size", "5"]);
    let addr = server.addr();
    let mut http = HttpConn::connect(addr);
    for n in 1..=10 {
        assert_eq!(http.publish_json("small", &json!(n)), n);
    }
    let replay: Vec<u64> = (6..=10).collect();

    // 2 is older than the oldest kept (6): what is kept is replayed, flagged as a gap.
    let (mut c, s) = subscribe_since(addr, "small", 2);
    assert_eq!(
        without_epoch(s),
        json!({"type": "subscribed", "channel": "small", "id": 10, "recovered": false})
    );
    assert_eq!(ids_until(&mut c, "small", 10), replay);
    assert_eq!(http.publish_json("small", &json!(11)), 11);
    assert_eq!(
        c.read_message_id("small").0,
        11,
        "live messages follow the replay"
    );

    // The same through the URL.
    let mut u = ws_connect(addr, "channel=small&since=2");
    assert_eq!(
        without_epoch(u.read_json()),
        json!({"type": "subscribed", "channel": "small", "id": 11, "recovered": false})
    );
    assert_eq!(ids_until(&mut u, "small", 11), (7..=11).collect::<Vec<_>>());

    // Since 0 lost 1..=6 as well.
    let (_, s) = subscribe_since(addr, "small", 0);
    assert_eq!(s["recovered"], false, "{s}");

    // Just before the oldest kept (7 now): nothing lost.
    let (mut c, s) = subscribe_since(addr, "small", 6);
    assert_eq!(
        without_epoch(s),
        json!({"type": "subscribed", "channel": "small", "id": 11, "recovered": true})
    );
    assert_eq!(ids_until(&mut c, "small", 11), (7..=11).collect::<Vec<_>>());

    // Up to date: nothing replayed, the next message is live.
    let (mut c, s) = subscribe_since(addr, "small", 11);
    assert_eq!(
        without_epoch(s),
        json!({"type": "subscribed", "channel": "small", "id": 11, "recovered": true})
    );
    assert_eq!(http.publish_json("small", &json!(12)), 12);
    assert_eq!(c.read_message_id("small").0, 12);

    // An id never handed out (the client saw another server run): not recovered, and what
    // is kept is replayed.
    let (mut c, s) = subscribe_since(addr, "small", 99);
    assert_eq!(
        without_epoch(s),
        json!({"type": "subscribed", "channel": "small", "id": 12, "recovered": false})
    );
    assert_eq!(ids_until(&mut c, "small", 12), (8..=12).collect::<Vec<_>>());

    // The `history` op agrees.
    c.send_json(&json!({"op": "history", "channel": "small", "since": 2, "ref": "h"}));
    let h = c.read_json();
    assert_eq!(
        (&h["type"], &h["recovered"], &h["ref"]),
        (&json!("history"), &json!(false), &json!("h"))
    );
    let ids: Vec<u64> = h["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(ids, (8..=12).collect::<Vec<_>>());
}

#[test]
fn since_on_a_channel_with_no_messages() {
    let server = Server::start(&[]);
    let (mut c, s) = subscribe_since(server.addr(), "empty", 0);
    assert_eq!(
        without_epoch(s),
        json!({"type": "subscribed", "channel": "empty", "id": 0, "recovered": true})
    );
    // An id this channel never handed out.
    let (_, s) = subscribe_since(server.addr(), "empty2", 3);
    assert_eq!(
        without_epoch(s),
        json!({"type": "subscribed", "channel": "empty2", "id": 0, "recovered": false})
    );
    let mut http = HttpConn::connect(server.addr());
    assert_eq!(http.publish_json("empty", &json!("first")), 1);
    let (id, m) = c.read_message_id("empty");
    assert_eq!((id, &m["data"]), (1, &json!("first")));
}

#[test]
fn url_since_replays_every_url_channel() {
    let server = Server::start(&[]);
    let mut http = HttpConn::connect(server.addr());
    for n in 1..=3 {
        http.publish_json("a", &json!(format!("a{n}")));
    }
    for n in 1..=2 {
        http.publish_json("b", &json!(format!("b{n}")));
    }
    let mut c = ws_connect(server.addr(), "channel=a&channel=b&since=1");
    let got: Vec<Value> = (0..5).map(|_| epochless(c.read_json())).collect();
    // Each channel's `subscribed` comes before its replay.
    let of =
        |ch: &str| -> Vec<Value> { got.iter().filter(|v| v["channel"] == ch).cloned().collect() };
    assert_eq!(
        of("a"),
        [
            json!({"type": "subscribed", "channel": "a", "id": 3, "recovered": true}),
            json!({"type": "message", "channel": "a", "id": 2, "data": "a2"}),
            json!({"type": "message", "channel": "a", "id": 3, "data": "a3"}),
        ]
    );
    assert_eq!(
        of("b"),
        [
            json!({"type": "subscribed", "channel": "b", "id": 2, "recovered": true}),
            json!({"type": "message", "channel": "b", "id": 2, "data": "b2"}),
        ]
    );
    // Then the live stream.
    assert_eq!(http.publish_json("b", &json!("b3")), 3);
    assert_eq!(c.read_message_id("b").0, 3);
}

#[test]
fn ids_keep_increasing_after_a_channel_goes_idle() {
    // With no history kept, a channel whose last subscriber leaves has nothing left on the
    // server but its id counter; resuming against it must not report a gap as recovered.
    let server = Server::start(&["--history-size", "0"]);
    let addr = server.addr();
    let mut http = HttpConn::connect(addr);
    let mut c = ws_connect(addr, "");
    c.subscribe("idle");
    assert_eq!(http.publish_json("idle", &json!("a")), 1);
    assert_eq!(http.publish_json("idle", &json!("b")), 2);
    assert_eq!(
        [c.read_message_id("idle").0, c.read_message_id("idle").0],
        [1, 2]
    );
    // The only subscriber leaves (the reply comes after the hub has dropped it).
    c.send_json(&json!({"op": "unsubscribe", "channel": "idle"}));
    assert_eq!(c.read_json()["type"], "unsubscribed");

    // Two messages the client misses.
    let missed = [
        http.publish_json("idle", &json!("c")),
        http.publish_json("idle", &json!("d")),
    ];
    // Back with the last id it saw: two messages are gone, and none is kept to replay.
    c.send_json(&json!({"op": "subscribe", "channel": "idle", "since": 2}));
    let s = c.read_json();
    assert_eq!(
        s["recovered"], false,
        "resume from 2 after missing messages {missed:?} (none kept) claims nothing was lost: {s}"
    );
    assert_eq!(
        missed,
        [3, 4],
        "ids restarted after the channel had no subscribers and no history"
    );
}
