//! Messages to one user and the operator's disconnect, on a single node (in memory): every
//! open connection that named the user gets a direct message — `/ws` (JSON or raw), `/sse` (a
//! named `direct` event), a held `/poll` — and nobody else; a disconnect closes them all;
//! `GET /users/{user}` says where the user's connections are.

mod common;

use std::io::Write;

use serde_json::json;

use common::*;

#[test]
fn a_direct_message_reaches_every_connection_of_the_user_and_no_one_else() {
    let server = Server::start(&["--workers", "2"]);
    let addr = server.addr();
    let mut ws = ws_connect(addr, "user=alice");
    let mut raw = ws_connect(addr, "user=alice&format=raw");
    let mut other = ws_connect(addr, "user=bob&channel=c");
    assert_eq!(other.read_json()["type"], "subscribed");
    let (mut sse, _) = SseStream::connect_live(addr, "/sse?channel=c&user=alice", &[]);
    let mut poll = HttpConn::connect(addr);
    poll.stream
        .write_all(b"GET /poll?channel=quiet&user=alice HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send the poll");
    wait_for_transport_gauge(addr, "poll", 1);

    let mut http = HttpConn::connect(addr);
    let resp = http.request(
        "POST",
        "/users/alice/send",
        &["Content-Type: application/json"],
        br#"{"hi":1}"#,
    );
    assert_eq!(json_body(&resp), json!({"user": "alice", "nodes": 1}));

    assert_eq!(ws.read_json(), json!({"type": "direct", "data": {"hi": 1}}));
    assert_eq!(raw.read_message().1, br#"{"hi":1}"#);
    let ev = sse.next_event();
    assert_eq!(ev.event.as_deref(), Some("direct"), "{ev:?}");
    assert_eq!(ev.json(), json!({"type": "direct", "data": {"hi": 1}}));
    let mut buf = Vec::new();
    let (msgs, _) = poll_reply(&read_response(&mut poll.stream, &mut buf));
    assert_eq!(msgs, [json!({"type": "direct", "data": {"hi": 1}})]);

    // Bob got nothing: the next thing he sees is a message published after the send.
    assert_eq!(http.publish_json("c", &json!("after")), 1);
    assert_eq!(other.read_message_id("c").0, 1);

    let v = json_body(&http.get("/users/alice"));
    assert_eq!(
        (v["online"].clone(), v["connections"].clone()),
        (json!(true), json!(3)),
        "{v}"
    );
    assert_api_error(
        &http.request("POST", "/users/carol/send", &[], b"x"),
        404,
        "offline",
    );
    assert_api_error(
        &http.request("POST", "/users/bad!name/send", &[], b"x"),
        400,
        "invalid_user",
    );
}

#[test]
fn a_disconnect_closes_every_connection_of_the_user() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let mut a = ws_connect(addr, "user=alice");
    let mut b = ws_connect(addr, "user=alice&channel=c");
    assert_eq!(b.read_json()["type"], "subscribed");
    let mut bob = ws_connect(addr, "user=bob");
    let (mut sse, _) = SseStream::connect_live(addr, "/sse?channel=c&user=alice", &[]);
    let mut http = HttpConn::connect(addr);
    let resp = http.request("POST", "/users/alice/disconnect", &[], b"");
    assert_eq!(json_body(&resp), json!({"user": "alice", "nodes": 1}));
    a.expect_close(4003);
    b.expect_close(4003);
    assert!(
        sse.events_until_eof(IO_TIMEOUT)
            .iter()
            .all(|e| !e.is_message()),
        "the event stream ends"
    );
    // Bob is still connected.
    bob.send_json(&json!({"op": "presence", "channel": "c"}));
    assert_eq!(bob.read_json()["type"], "presence");
    poll_until(IO_TIMEOUT, "alice offline", || {
        (json_body(&http.get("/users/alice"))["online"] == false).then_some(())
    });
}

#[test]
fn the_user_routes_follow_the_publish_token_rules() {
    let server = Server::start(&["--publish-token", "s3cret"]);
    let mut http = HttpConn::connect(server.addr());
    assert_api_error(
        &http.request("POST", "/users/a/send", &[], b"x"),
        401,
        "unauthorized",
    );
    assert_api_error(
        &http.request("POST", "/users/a/disconnect", &[], b""),
        401,
        "unauthorized",
    );
    let resp = http.request(
        "POST",
        "/users/a/send",
        &["Authorization: Bearer s3cret"],
        b"x",
    );
    assert_api_error(&resp, 404, "offline");
}
