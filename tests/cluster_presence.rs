//! Presence and the connection registry across nodes, in Redis with a heartbeat TTL: seen
//! from every node, gone at once on a clean close, gone by itself within the TTL when a node
//! dies; join/leave events once per change; the batch question in one round trip per shard;
//! direct messages and disconnects routed only to the nodes that hold the user.

mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::redis::Redis;
use common::*;

/// Short, so a dead node's entries expire within the test.
const TTL: &str = "2";

fn node(redis: &Redis, id: &str) -> Server {
    node_with(redis, id, &[])
}

fn node_with(redis: &Redis, id: &str, extra: &[&str]) -> Server {
    let url = redis.url();
    let mut args = vec!["--redis", &url, "--node-id", id, "--presence-ttl", TTL];
    args.extend(extra);
    let server = Server::start(&args);
    poll_until(Duration::from_secs(10), "the node's health", || {
        (http_get(server.addr(), "/healthz").status == 200).then_some(())
    });
    server
}

fn users_in(server: &Server, channel: &str) -> Value {
    json_body(&http_get(server.addr(), &format!("/presence/{channel}")))["users"].clone()
}

fn wait_users(nodes: &[&Server], channel: &str, want: Value, within: Duration) {
    for n in nodes {
        poll_until(within, &format!("presence {want} on every node"), || {
            (users_in(n, channel) == want).then_some(())
        });
    }
}

fn online(server: &Server, user: &str) -> bool {
    json_body(&http_get(server.addr(), &format!("/presence?user={user}")))["users"][user] == true
}

#[test]
fn presence_is_cluster_wide_and_a_clean_close_ends_it_at_once() {
    let redis = Redis::start();
    let (a, b, c) = (node(&redis, "a"), node(&redis, "b"), node(&redis, "c"));
    let mut watcher = ws_connect(c.addr(), "channel=room&presence=1");
    assert_eq!(watcher.read_json()["type"], "subscribed");
    let mut alice = ws_connect(a.addr(), "user=alice&channel=room");
    assert_eq!(alice.read_json()["type"], "subscribed");
    let mut bob = ws_connect(b.addr(), "user=bob&channel=room");
    assert_eq!(bob.read_json()["type"], "subscribed");
    wait_users(&[&a, &b, &c], "room", json!(["alice", "bob"]), IO_TIMEOUT);
    // Each join reaches the watcher on another node, once.
    let mut events: Vec<Value> = (0..2).map(|_| watcher.read_json()).collect();
    events.sort_by_key(|e| e["user"].as_str().map(str::to_owned));
    assert_eq!(
        events,
        [
            json!({"type": "presence", "channel": "room", "event": "join", "user": "alice"}),
            json!({"type": "presence", "channel": "room", "event": "join", "user": "bob"}),
        ]
    );
    // The /ws presence op answers for the cluster too.
    watcher.send_json(&json!({"op": "presence", "channel": "room", "ref": 1}));
    assert_eq!(watcher.read_json()["users"], json!(["alice", "bob"]));

    // A clean close: offline everywhere well before the TTL.
    let closed = Instant::now();
    alice.close_cleanly(1000);
    wait_users(
        &[&a, &b, &c],
        "room",
        json!(["bob"]),
        Duration::from_secs(1),
    );
    assert!(closed.elapsed() < Duration::from_secs(2), "not by expiry");
    assert_eq!(
        watcher.read_json(),
        json!({"type": "presence", "channel": "room", "event": "leave", "user": "alice"})
    );
    assert!(!online(&c, "alice") && online(&c, "bob"));
    drop(bob);
}

#[test]
fn a_user_on_two_nodes_stays_until_both_close_and_a_dead_node_expires() {
    let redis = Redis::start();
    let (mut a, b) = (node(&redis, "a"), node(&redis, "b"));
    let mut on_a = ws_connect(a.addr(), "user=carol&channel=x");
    assert_eq!(on_a.read_json()["type"], "subscribed");
    let mut on_b = ws_connect(b.addr(), "user=carol&channel=x");
    assert_eq!(on_b.read_json()["type"], "subscribed");
    poll_until(IO_TIMEOUT, "carol on both nodes", || {
        let v = json_body(&http_get(b.addr(), "/users/carol"));
        (v["connections"] == 2).then_some(v)
    });
    on_b.close_cleanly(1000);
    poll_until(IO_TIMEOUT, "b's entry gone", || {
        let v = json_body(&http_get(b.addr(), "/users/carol"));
        (v["nodes"] == json!([{"node": "a", "connections": 1}])).then_some(())
    });
    assert!(online(&b, "carol"), "still on a");
    assert_eq!(users_in(&b, "x"), json!(["carol"]));

    // Node a dies without cleaning up: carol expires within the TTL, by herself.
    send_signal(&a, libc::SIGKILL);
    a.wait_exit(Duration::from_secs(5)).expect("killed");
    let killed = Instant::now();
    poll_until(Duration::from_secs(6), "carol to expire", || {
        (!online(&b, "carol") && users_in(&b, "x") == json!([])).then_some(())
    });
    assert!(
        killed.elapsed() <= Duration::from_secs(4),
        "{:?}",
        killed.elapsed()
    );
    drop(on_a);
}

#[test]
fn a_dead_nodes_users_leave_with_one_event_and_may_come_back() {
    let redis = Redis::start();
    let (mut a, b, c) = (node(&redis, "a"), node(&redis, "b"), node(&redis, "c"));
    // Watchers on two nodes: both sweep the channel, the event must still come once.
    let mut watchers = [&b, &c].map(|n| {
        let mut w = ws_connect(n.addr(), "channel=hall&presence=1");
        assert_eq!(w.read_json()["type"], "subscribed");
        w
    });
    let join =
        |user: &str| json!({"type": "presence", "channel": "hall", "event": "join", "user": user});
    let leave =
        |user: &str| json!({"type": "presence", "channel": "hall", "event": "leave", "user": user});
    let mut dave = ws_connect(a.addr(), "user=dave&channel=hall");
    assert_eq!(dave.read_json()["type"], "subscribed");
    for w in &mut watchers {
        assert_eq!(w.read_json(), join("dave"));
    }

    // Node a dies: nobody closes dave's connection, yet every watcher hears him leave.
    send_signal(&a, libc::SIGKILL);
    a.wait_exit(Duration::from_secs(5)).expect("killed");
    let killed = Instant::now();
    for w in &mut watchers {
        assert_eq!(w.read_json(), leave("dave"));
    }
    // The TTL (2 s) plus one sweep (5/12 of it), with room for a slow machine.
    assert!(
        killed.elapsed() <= Duration::from_secs(4),
        "{:?}",
        killed.elapsed()
    );
    assert_eq!(users_in(&b, "hall"), json!([]));

    // Once: the next event each watcher gets is erin's join, not a second leave from the
    // other node's sweep; and dave, back on another node, joins again.
    let mut erin = ws_connect(c.addr(), "user=erin&channel=hall");
    assert_eq!(erin.read_json()["type"], "subscribed");
    for w in &mut watchers {
        assert_eq!(w.read_json(), join("erin"));
    }
    let mut dave = ws_connect(b.addr(), "user=dave&channel=hall");
    assert_eq!(dave.read_json()["type"], "subscribed");
    for w in &mut watchers {
        assert_eq!(w.read_json(), join("dave"));
    }
    wait_users(&[&b, &c], "hall", json!(["dave", "erin"]), IO_TIMEOUT);
}

#[test]
fn the_batch_question_is_one_round_trip_and_entries_are_refreshed() {
    let redis = Redis::start();
    // A thousand names do not fit the default 8 KiB request head.
    let a = node_with(&redis, "a", &["--max-header-bytes", "65536"]);
    let dave = ws_connect(a.addr(), "user=dave");
    poll_until(IO_TIMEOUT, "dave online", || {
        online(&a, "dave").then_some(())
    });
    let names: Vec<String> = (0..999).map(|i| format!("u{i}")).collect();
    let query: String = names
        .iter()
        .map(|n| format!("user={n}"))
        .chain(["user=dave".to_owned()])
        .collect::<Vec<_>>()
        .join("&");
    let before = redis.calls("evalsha");
    let v = json_body(&http_get(a.addr(), &format!("/presence?{query}")));
    let after = redis.calls("evalsha");
    assert_eq!(v["users"]["dave"], true);
    assert_eq!(v["users"]["u17"], false);
    assert!(
        after - before <= 2,
        "one script call (and at most one heartbeat): {}",
        after - before
    );
    // Kept alive past several TTLs by the heartbeat alone.
    std::thread::sleep(Duration::from_secs(5));
    assert!(online(&a, "dave"), "refreshed well inside the TTL");
    drop(dave);
}

#[test]
fn direct_messages_and_disconnects_go_only_to_the_nodes_of_the_user() {
    let redis = Redis::start();
    let (a, b, c) = (node(&redis, "a"), node(&redis, "b"), node(&redis, "c"));
    let mut e1 = ws_connect(a.addr(), "user=erin");
    let mut e2 = ws_connect(b.addr(), "user=erin&format=raw");
    let mut frank = ws_connect(c.addr(), "user=frank");
    poll_until(IO_TIMEOUT, "erin on two nodes", || {
        (json_body(&http_get(c.addr(), "/users/erin"))["connections"] == 2).then_some(())
    });
    let mut http = HttpConn::connect(c.addr());
    let resp = http.request("POST", "/users/erin/send", &[], b"psst");
    assert_eq!(
        json_body(&resp),
        json!({"user": "erin", "nodes": 2}),
        "a and b, not c"
    );
    assert_eq!(e1.read_json(), json!({"type": "direct", "data": "psst"}));
    assert_eq!(e2.read_message().1, b"psst");
    // Frank got nothing: the next thing he sees is his own direct message.
    let resp = http.request("POST", "/users/frank/send", &[], b"yours");
    assert_eq!(json_body(&resp)["nodes"], 1);
    assert_eq!(frank.read_json()["data"], "yours");

    let resp = http.request("POST", "/users/erin/disconnect", &[], b"");
    assert_eq!(json_body(&resp)["nodes"], 2);
    e1.expect_close(4003);
    e2.expect_close(4003);
    poll_until(IO_TIMEOUT, "erin offline", || {
        (!online(&c, "erin")).then_some(())
    });
    assert_api_error(
        &http.request("POST", "/users/erin/send", &[], b"x"),
        404,
        "offline",
    );
}
