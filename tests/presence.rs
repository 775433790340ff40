//! Presence: who is in a channel (users named with `?user=` at connect), join/leave events for
//! subscribers that ask for them, the end of presence when a silent client is reaped, and the
//! batch online query.

mod common;

use std::time::Instant;

use serde_json::{json, Value};

use common::*;

fn join(channel: &str, user: &str) -> Value {
    json!({"type": "presence", "channel": channel, "event": "join", "user": user})
}

fn leave(channel: &str, user: &str) -> Value {
    json!({"type": "presence", "channel": channel, "event": "leave", "user": user})
}

fn members(channel: &str, users: &[&str]) -> Value {
    json!({"type": "presence", "channel": channel, "users": users})
}

/// `GET /presence/{channel}`, checked for 200.
fn presence_of(addr: std::net::SocketAddr, channel: &str) -> Value {
    let resp = http_get(addr, &format!("/presence/{channel}"));
    assert_eq!(resp.status, 200, "{resp:?}");
    json_body(&resp)
}

/// `GET /presence?user=..` for `users`, checked for 200.
fn online(addr: std::net::SocketAddr, users: &[&str]) -> Value {
    let query: Vec<String> = users.iter().map(|u| format!("user={u}")).collect();
    let resp = http_get(addr, &format!("/presence?{}", query.join("&")));
    assert_eq!(resp.status, 200, "{resp:?}");
    json_body(&resp)
}

/// Reads a connection's `subscribed` replies (one per URL channel).
fn expect_subscribed(c: &mut Client, n: usize) {
    for _ in 0..n {
        let s = c.read_json();
        assert_eq!(s["type"], "subscribed", "{s}");
    }
}

#[test]
fn join_and_leave_go_only_to_subscribers_that_asked() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let mut watcher = ws_connect(addr, "channel=room&presence=1");
    expect_subscribed(&mut watcher, 1);
    // Opting in with a JSON subscribe works the same.
    let mut watcher2 = ws_connect(addr, "");
    watcher2.send_json(&json!({"op": "subscribe", "channel": "room", "presence": true}));
    expect_subscribed(&mut watcher2, 1);
    let mut plain = ws_connect(addr, "channel=room");
    expect_subscribed(&mut plain, 1);

    let mut alice = ws_connect(addr, "channel=room&user=alice");
    expect_subscribed(&mut alice, 1);
    assert_eq!(watcher.read_json(), join("room", "alice"));
    assert_eq!(watcher2.read_json(), join("room", "alice"));

    // `plain` did not ask: the next thing it gets is a message published after the join.
    let mut http = HttpConn::connect(addr);
    assert_eq!(http.publish_json("room", &json!("hello")), 1);
    assert_eq!(plain.read_message_id("room").0, 1);
    assert_eq!(watcher.read_message_id("room").0, 1);
    assert_eq!(watcher2.read_message_id("room").0, 1);
    assert_eq!(alice.read_message_id("room").0, 1);

    assert_eq!(presence_of(addr, "room"), members("room", &["alice"]));
    plain.send_json(&json!({"op": "presence", "channel": "room", "ref": "p"}));
    let mut expected = members("room", &["alice"]);
    expected["ref"] = json!("p");
    assert_eq!(plain.read_json(), expected);

    // bob is online without a channel, then joins one with a JSON subscribe.
    let mut bob = ws_connect(addr, "user=bob");
    bob.subscribe("room");
    assert_eq!(watcher.read_json(), join("room", "bob"));
    assert_eq!(
        presence_of(addr, "room"),
        members("room", &["alice", "bob"])
    );

    // Unsubscribing leaves the channel; the user stays online.
    bob.send_json(&json!({"op": "unsubscribe", "channel": "room"}));
    assert_eq!(bob.read_json()["type"], "unsubscribed");
    assert_eq!(watcher.read_json(), leave("room", "bob"));
    assert_eq!(presence_of(addr, "room"), members("room", &["alice"]));
    assert_eq!(online(addr, &["bob"]), json!({"users": {"bob": true}}));

    // Closing the connection leaves every channel.
    alice.close_cleanly(1000);
    assert_eq!(watcher.read_json(), leave("room", "alice"));
    assert_eq!(watcher2.read_json(), join("room", "bob"));
    assert_eq!(watcher2.read_json(), leave("room", "bob"));
    assert_eq!(watcher2.read_json(), leave("room", "alice"));
    assert_eq!(presence_of(addr, "room"), members("room", &[]));
}

#[test]
fn a_user_on_two_connections_joins_once_and_leaves_with_the_last() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let mut watcher = ws_connect(addr, "channel=room&channel=sentinel&presence=1");
    expect_subscribed(&mut watcher, 2);

    // The first connection is also the only one on `sentinel`: its leave there shows that
    // the connection's session has ended.
    let mut first = ws_connect(addr, "channel=room&channel=sentinel&user=alice");
    expect_subscribed(&mut first, 2);
    let mut got = vec![watcher.read_json(), watcher.read_json()];
    got.sort_by_key(|v| v["channel"].as_str().map(str::to_owned));
    assert_eq!(got, [join("room", "alice"), join("sentinel", "alice")]);

    let mut second = ws_connect(addr, "channel=room&user=alice");
    expect_subscribed(&mut second, 1);
    first.close_cleanly(1000);
    // No join for the second connection, no leave of `room` for the first.
    assert_eq!(watcher.read_json(), leave("sentinel", "alice"));
    assert_eq!(presence_of(addr, "room"), members("room", &["alice"]));

    drop(second);
    assert_eq!(watcher.read_json(), leave("room", "alice"));
    assert_eq!(presence_of(addr, "room"), members("room", &[]));
}

#[test]
fn a_client_that_stops_answering_is_reaped_and_its_presence_ends() {
    let server = Server::start(&["--ping-interval", "1", "--idle-timeout", "2"]);
    let addr = server.addr();
    let mut watcher = ws_connect(addr, "channel=room&presence=1");
    expect_subscribed(&mut watcher, 1);

    // The ghost never reads or answers a ping after its subscribe.
    let mut ghost = ws_connect(addr, "channel=room&user=ghost");
    expect_subscribed(&mut ghost, 1);
    assert_eq!(watcher.read_json_answering_pings(), join("room", "ghost"));
    assert_eq!(presence_of(addr, "room"), members("room", &["ghost"]));
    assert_eq!(online(addr, &["ghost"]), json!({"users": {"ghost": true}}));

    // The watcher answers pings, so it stays; the ghost is reaped at the idle timeout.
    assert_eq!(watcher.read_json_answering_pings(), leave("room", "ghost"));
    assert_eq!(presence_of(addr, "room"), members("room", &[]));
    // The online table is updated right after the channels; no event announces it.
    poll_until(IO_TIMEOUT, "ghost to go offline", || {
        (online(addr, &["ghost"]) == json!({"users": {"ghost": false}})).then_some(())
    });

    // The ghost's socket got pings only, then was closed.
    let (frames, eof) = ghost.frames_until_eof(Instant::now() + IO_TIMEOUT);
    assert!(eof, "the reaped connection was not closed");
    assert!(
        frames.iter().all(|f| f.opcode == OP_PING),
        "the reaped connection got more than pings: {:?}",
        frames.iter().map(describe).collect::<Vec<_>>()
    );
}

#[test]
fn batch_online_query() {
    // 1001 names make a request line longer than the default 8 KiB head limit.
    let server = Server::start(&["--max-header-bytes", "65536"]);
    let addr = server.addr();
    let alice = ws_connect(addr, "user=alice");
    let _carol = ws_connect(addr, "channel=x&user=carol%40home");
    assert_eq!(
        online(addr, &["alice", "bob", "carol@home"]),
        json!({"users": {"alice": true, "bob": false, "carol@home": true}})
    );
    // Percent-encoded names are decoded.
    assert_eq!(
        online(addr, &["carol%40home"]),
        json!({"users": {"carol@home": true}})
    );

    drop(alice);
    poll_until(IO_TIMEOUT, "alice to go offline", || {
        (online(addr, &["alice"]) == json!({"users": {"alice": false}})).then_some(())
    });
    assert_eq!(
        online(addr, &["carol@home"]),
        json!({"users": {"carol@home": true}})
    );

    assert_api_error(&http_get(addr, "/presence"), 400, "missing_user");
    assert_api_error(&http_get(addr, "/presence?user=a%20b"), 400, "invalid_user");
    let long = "u".repeat(65);
    assert_api_error(
        &http_get(addr, &format!("/presence?user={long}")),
        400,
        "invalid_user",
    );
    let many: Vec<String> = (0..1001).map(|i| format!("user=u{i}")).collect();
    let resp = http_request(
        addr,
        "GET",
        &format!("/presence?{}", many.join("&")),
        &[],
        &[],
    );
    assert_api_error(&resp, 400, "too_many_users");
    // An unknown channel has no members.
    assert_eq!(
        presence_of(addr, "nobody.here"),
        members("nobody.here", &[])
    );
}
