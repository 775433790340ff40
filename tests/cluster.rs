//! Cluster mode over a real Redis: one channel space across nodes, one order per channel
//! however many nodes publish, resume on any node with no gap and no duplicate, a stream that
//! outlives nodes (and a Redis restart with its data), a new epoch when Redis loses it, and
//! every failure visible: health, 503s, `unavailable` errors, then recovery and gap filling.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use common::redis::Redis;
use common::*;

/// A node on `redis` (one `--redis` per shard) with `extra` flags, once it is connected.
fn node(redis: &[&Redis], extra: &[&str]) -> Server {
    let urls: Vec<String> = redis.iter().map(|r| r.url()).collect();
    let mut args: Vec<&str> = Vec::new();
    for u in &urls {
        args.extend(["--redis", u.as_str()]);
    }
    args.extend(extra);
    let server = Server::start(&args);
    wait_healthy(&server, 200);
    server
}

fn wait_healthy(server: &Server, status: u16) {
    poll_until(Duration::from_secs(10), "the node's health", || {
        (http_get(server.addr(), "/healthz").status == status).then_some(())
    });
}

/// Subscribes a WebSocket to `channel` on `server` (optionally from a position).
fn subscriber(server: &Server, channel: &str, since: Option<(u64, &str)>) -> (Client, Value) {
    let q = match since {
        Some((id, epoch)) => format!("channel={channel}&since={id}&epoch={epoch}"),
        None => format!("channel={channel}"),
    };
    let mut c = ws_connect(server.addr(), &q);
    let s = c.read_json();
    assert_eq!(s["type"], "subscribed", "{s}");
    (c, s)
}

fn publish(http: &mut HttpConn, channel: &str, data: Value) -> (u64, String) {
    let resp = http.request(
        "POST",
        &format!("/publish/{channel}"),
        &["Content-Type: application/json"],
        data.to_string().as_bytes(),
    );
    assert_eq!(resp.status, 200, "{resp:?}");
    let v = json_body(&resp);
    let id = v["id"].as_u64().expect("an id");
    (id, v["epoch"].as_str().expect("an epoch").to_owned())
}

#[test]
fn one_order_per_channel_across_nodes_under_concurrent_publishers() {
    const EACH: u64 = 150;
    let redis = Redis::start();
    let a = node(&[&redis], &["--workers", "2"]);
    let b = node(&[&redis], &["--workers", "2"]);
    let mut subs: Vec<Client> = Vec::new();
    for n in [&a, &a, &b, &b] {
        subs.push(subscriber(n, "race", None).0);
    }
    let publishers: Vec<_> = [a.addr(), b.addr()]
        .into_iter()
        .enumerate()
        .map(|(p, addr)| {
            thread::spawn(move || {
                let mut http = HttpConn::connect(addr);
                (0..EACH)
                    .map(|i| publish(&mut http, "race", json!({"p": p, "i": i})))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let replies: Vec<(u64, String)> = publishers
        .into_iter()
        .flat_map(|p| p.join().expect("publisher"))
        .collect();
    let mut ids: Vec<u64> = replies.iter().map(|r| r.0).collect();
    ids.sort();
    assert_eq!(
        ids,
        (1..=2 * EACH).collect::<Vec<_>>(),
        "Redis hands out every id once"
    );
    assert!(replies.iter().all(|r| r.1 == replies[0].1), "one epoch");
    let mut orders = Vec::new();
    for s in &mut subs {
        let mut got = Vec::new();
        let mut next_of = [0u64; 2];
        for want in 1..=2 * EACH {
            let (id, m) = s.read_message_id("race");
            assert_eq!(id, want, "every subscriber gets every id, in order");
            let p = m["data"]["p"].as_u64().expect("p") as usize;
            assert_eq!(
                m["data"]["i"], next_of[p],
                "each publisher's messages in its order"
            );
            next_of[p] += 1;
            got.push((p, m["data"]["i"].clone()));
        }
        orders.push(got);
    }
    assert!(
        orders.windows(2).all(|w| w[0] == w[1]),
        "the same order on every node"
    );
}

/// Reads messages until `n` more, checking they follow `last` with no gap and no duplicate.
fn read_on(c: &mut Client, channel: &str, last: &mut u64, n: u64) {
    for _ in 0..n {
        let (id, _) = c.read_message_id(channel);
        assert_eq!(id, *last + 1, "gap or duplicate after {last}");
        *last = id;
    }
}

#[test]
fn resume_on_another_node_while_publishing_over_ws_sse_and_poll() {
    let redis = Redis::start();
    let nodes = [node(&[&redis], &[]), node(&[&redis], &[])];
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let publisher = {
        let (stop, published, addr) = (stop.clone(), published.clone(), nodes[0].addr());
        thread::spawn(move || {
            let mut http = HttpConn::connect(addr);
            while !stop.load(Ordering::Relaxed) {
                let (id, _) = publish(&mut http, "moving", json!("m"));
                published.store(id, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(2));
            }
        })
    };

    // WebSocket: read a little on one node, reconnect to the other from the last id.
    let (mut c, s) = subscriber(&nodes[0], "moving", None);
    let epoch = s["epoch"].as_str().expect("epoch").to_owned();
    let mut last = s["id"].as_u64().expect("id");
    read_on(&mut c, "moving", &mut last, 20);
    for round in 0..6 {
        drop(c);
        let (again, s) = subscriber(&nodes[(round + 1) % 2], "moving", Some((last, &epoch)));
        assert_eq!(s["recovered"], true, "{s}");
        assert_eq!(s["epoch"], epoch.as_str());
        c = again;
        read_on(&mut c, "moving", &mut last, 15);
    }

    // SSE: the cursor of the last event resumes on the other node.
    let (mut sse, first) = SseStream::connect_live(nodes[1].addr(), "/sse?channel=moving", &[]);
    let mut cursor = first.id.expect("an id");
    let mut at = cursor_entry(&parse_cursor(&cursor), "moving");
    for round in 0..4 {
        for _ in 0..10 {
            let ev = sse.next_message();
            let (_, id) = envelope_id(&ev.json());
            assert_eq!(id, at + 1, "SSE: gap or duplicate after {at}");
            at = id;
            cursor = ev.id.expect("every event has an id");
        }
        drop(sse);
        let header = format!("Last-Event-ID: {cursor}");
        sse = SseStream::connect(nodes[round % 2].addr(), "/sse?channel=moving", &[&header]);
        sse.expect_retry();
    }

    // Long-polling: each poll's cursor on the other node.
    let mut cursor = format!("moving:{at}@{epoch}");
    let mut got = 0;
    for round in 0..8 {
        let mut http = HttpConn::connect(nodes[round % 2].addr());
        let v = json_body(&http.get(&format!("/poll?channel=moving&since={cursor}")));
        assert_eq!(v["recovered"], true, "{v}");
        for m in v["messages"].as_array().expect("messages") {
            let (_, id) = envelope_id(m);
            assert_eq!(id, at + 1, "poll: gap or duplicate after {at}");
            at = id;
            got += 1;
        }
        cursor = v["cursor"].as_str().expect("cursor").to_owned();
    }
    assert!(got > 0);
    stop.store(true, Ordering::Relaxed);
    publisher.join().expect("publisher");
    assert!(published.load(Ordering::Relaxed) >= at);
}

#[test]
fn the_stream_outlives_a_node_and_a_killed_node_loses_nothing() {
    let redis = Redis::start();
    let mut a = node(&[&redis], &[]);
    let b = node(&[&redis], &[]);
    let mut http = HttpConn::connect(a.addr());
    let mut epoch = String::new();
    for i in 1..=5 {
        let (id, e) = publish(&mut http, "durable", json!(i));
        assert_eq!(id, i);
        epoch = e;
    }
    let (mut c, s) = subscriber(&a, "durable", Some((3, &epoch)));
    assert_eq!(s["recovered"], true);
    let mut last = 3;
    read_on(&mut c, "durable", &mut last, 2);

    // SIGKILL the node mid-stream; its client resumes on the other one.
    send_signal(&a, libc::SIGKILL);
    a.wait_exit(Duration::from_secs(5)).expect("killed");
    let mut hb = HttpConn::connect(b.addr());
    for i in 6..=12 {
        assert_eq!(publish(&mut hb, "durable", json!(i)).0, i);
    }
    let (mut c, s) = subscriber(&b, "durable", Some((last, &epoch)));
    assert_eq!(s["recovered"], true, "{s}");
    read_on(&mut c, "durable", &mut last, 7);

    // The repro in cluster mode: a node restart is not a new stream.
    let v = json_body(&hb.get(&format!("/history/durable?since=3&epoch={epoch}")));
    assert_eq!(v["recovered"], true, "{v}");
    assert_eq!(v["epoch"], epoch.as_str());
    assert_eq!(v["messages"].as_array().map(Vec::len), Some(9));
}

#[test]
fn redis_restarted_without_its_data_is_a_new_epoch_and_subscribers_are_told() {
    let mut redis = Redis::start();
    let a = node(&[&redis], &[]);
    let mut http = HttpConn::connect(a.addr());
    let (_, old) = (1..=5)
        .map(|i| publish(&mut http, "lost", json!(i)))
        .last()
        .expect("5");
    let (mut c, _) = subscriber(&a, "lost", None);

    redis.restart();
    wait_healthy(&a, 200);
    // The node's connections come back by themselves; the first publish starts a new stream.
    let mut http = HttpConn::connect(a.addr());
    let (id, new) = poll_until(
        Duration::from_secs(10),
        "a publish after the restart",
        || {
            let resp = http.request("POST", "/publish/lost", &[], b"after");
            (resp.status == 200).then(|| {
                let v = json_body(&resp);
                (
                    v["id"].as_u64().unwrap_or(0),
                    v["epoch"].as_str().unwrap_or("").to_owned(),
                )
            })
        },
    );
    assert_eq!(id, 1, "ids start again with the stream");
    assert_ne!(new, old, "a new epoch");

    // The live subscriber learns it: a `subscribed` with recovered:false in the new epoch,
    // then the new stream's messages.
    let reset = c.read_json();
    assert_eq!(reset["type"], "subscribed", "{reset}");
    assert_eq!(
        (reset["recovered"].clone(), reset["epoch"].clone()),
        (json!(false), json!(new))
    );
    assert_eq!(c.read_message_id("lost").0, 1);

    let v = json_body(&http.get(&format!("/history/lost?since=3&epoch={old}")));
    assert_eq!(v["recovered"], false, "{v}");
    assert_eq!(v["messages"].as_array().map(Vec::len), Some(1));
}

#[test]
fn redis_restarted_with_its_data_keeps_the_stream() {
    let mut redis = Redis::start_persistent();
    let a = node(&[&redis], &[]);
    let mut http = HttpConn::connect(a.addr());
    let (_, epoch) = (1..=5)
        .map(|i| publish(&mut http, "kept", json!(i)))
        .last()
        .expect("5");
    let (mut c, _) = subscriber(&a, "kept", None);
    redis.restart();
    wait_healthy(&a, 200);
    let mut http = HttpConn::connect(a.addr());
    let (id, e) = poll_until(
        Duration::from_secs(10),
        "a publish after the restart",
        || {
            let resp = http.request(
                "POST",
                "/publish/kept",
                &["Content-Type: application/json"],
                b"6",
            );
            (resp.status == 200).then(|| {
                let v = json_body(&resp);
                (
                    v["id"].as_u64().unwrap_or(0),
                    v["epoch"].as_str().unwrap_or("").to_owned(),
                )
            })
        },
    );
    assert_eq!((id, e.as_str()), (6, epoch.as_str()), "the stream went on");
    let (id, m) = c.read_message_id("kept");
    assert_eq!((id, m["data"].clone()), (6, json!(6)), "no reset, no gap");
}

/// What Redis looks like after losing the writes after message `keep` of `channel` (a crash
/// inside `appendfsync everysec`, a failover to a lagging replica): its counter, its history
/// and its stream's last id all back at `keep`, the epoch unchanged.
fn lose_writes_after(redis: &Redis, channel: &str, keep: u64, lost: std::ops::RangeInclusive<u64>) {
    let (meta, history) = (format!("sb:{{{channel}}}:m"), format!("sb:{{{channel}}}:h"));
    redis.cmd(&["HSET", &meta, "t", &keep.to_string()]);
    let ids: Vec<String> = lost.map(|i| format!("{i}-0")).collect();
    let mut xdel = vec!["XDEL", history.as_str()];
    xdel.extend(ids.iter().map(String::as_str));
    redis.cmd(&xdel);
    assert_eq!(
        redis.cmd(&["XSETID", &history, &format!("{keep}-0")]),
        "+OK"
    );
}

/// The reset a live subscriber gets, then the replay of the stream's history in its new
/// epoch: returns the new epoch and the replayed payloads.
fn read_reset_and_replay(
    c: &mut Client,
    channel: &str,
    old: &str,
    n: usize,
) -> (String, Vec<Value>) {
    let reset = c.read_json();
    assert_eq!(
        (reset["type"].clone(), reset["recovered"].clone()),
        (json!("subscribed"), json!(false)),
        "{reset}"
    );
    let epoch = reset["epoch"].as_str().expect("an epoch").to_owned();
    assert_ne!(epoch, old, "a new epoch");
    let replay = (1..=n as u64)
        .map(|want| {
            let (id, m) = c.read_message_id(channel);
            assert_eq!(id, want, "{m}");
            m["data"].clone()
        })
        .collect();
    (epoch, replay)
}

/// A live subscriber of `channel` that has seen messages 1 to 5; returns it and the epoch.
fn subscriber_at_five(a: &Server, http: &mut HttpConn, channel: &str) -> (Client, String) {
    let (mut c, _) = subscriber(a, channel, None);
    let (_, epoch) = (1..=5)
        .map(|i| publish(http, channel, json!(i)))
        .last()
        .expect("5");
    for i in 1..=5 {
        assert_eq!(c.read_message_id(channel).0, i);
    }
    (c, epoch)
}

#[test]
fn a_stream_that_went_back_in_redis_gets_a_new_epoch() {
    let redis = Redis::start();
    let a = node(&[&redis], &[]);
    let mut http = HttpConn::connect(a.addr());
    let (mut c, old) = subscriber_at_five(&a, &mut http, "back");

    // Redis forgets 4 and 5 and numbers the next publish 4 again, in the same epoch. A
    // client at 5 would resume past the new 4 without ever seeing it: the node saw 5 come
    // by Pub/Sub before this 4, which proves the stream went back, and gives it a new epoch.
    lose_writes_after(&redis, "back", 3, 4..=5);
    let (id, e) = publish(&mut http, "back", json!("new 4"));
    assert_eq!((id, e.as_str()), (4, old.as_str()), "Redis reused the id");
    let (new, replay) = read_reset_and_replay(&mut c, "back", &old, 4);
    assert_eq!(replay, [json!(1), json!(2), json!(3), json!("new 4")]);
    let (id, e) = publish(&mut http, "back", json!(5));
    assert_eq!((id, e.as_str()), (5, new.as_str()));
    let (id, m) = c.read_message_id("back");
    assert_eq!((id, m["data"].clone()), (5, json!(5)));

    // A client that had seen the old 5 is told its position is void.
    let v = json_body(&http.get(&format!("/history/back?since=5&epoch={old}")));
    assert_eq!(v["recovered"], false, "{v}");
    let (_, s) = subscriber(&a, "back", Some((5, &old)));
    assert_eq!(
        (s["recovered"].clone(), s["epoch"].clone()),
        (json!(false), json!(new))
    );

    // Quiet: nothing published after the loss. The check after the node's reconnect finds
    // Redis below what the node received, and fences the stream all the same.
    let (mut q, old) = subscriber_at_five(&a, &mut http, "quiet");
    lose_writes_after(&redis, "quiet", 3, 4..=5);
    redis.cmd(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
    let (_, replay) = read_reset_and_replay(&mut q, "quiet", &old, 3);
    assert_eq!(replay, [json!(1), json!(2), json!(3)]);

    // Away: while the node was cut off, Redis went back to 3 and other nodes published a
    // new 4, 5 and 6, past where the node stands (5); no Pub/Sub message reached it. The ids
    // look new to it, but the check names the message it has at 5 and Redis keeps another.
    let (mut w, old) = subscriber_at_five(&a, &mut http, "away");
    lose_writes_after(&redis, "away", 3, 4..=5);
    for (id, data) in [(4, "\"new 4\""), (5, "\"new 5\""), (6, "\"new 6\"")] {
        // Entries carry their publish time (ms); history skips those past its TTL.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        let t = now.map_or(0, |d| d.as_millis()).to_string();
        redis.cmd(&[
            "XADD",
            "sb:{away}:h",
            &format!("{id}-0"),
            "k",
            "j",
            "d",
            data,
            "t",
            &t,
        ]);
    }
    redis.cmd(&["HSET", "sb:{away}:m", "t", "6"]);
    redis.cmd(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
    let (_, replay) = read_reset_and_replay(&mut w, "away", &old, 6);
    assert_eq!(
        replay[3..],
        [json!("new 4"), json!("new 5"), json!("new 6")]
    );

    // All counted: one proven by the node, two found by the fence script.
    let metrics = String::from_utf8_lossy(&http.get("/metrics").body).into_owned();
    assert!(
        metrics.contains("\nswitchboard_cluster_rewinds_total 3\n"),
        "{metrics}"
    );
}

#[test]
fn redis_down_is_visible_then_subscriptions_come_back() {
    let mut redis = Redis::start();
    let a = node(&[&redis], &[]);
    let (mut c, _) = subscriber(&a, "outage", None);
    redis.stop();
    wait_healthy(&a, 503);
    let health = http_get(a.addr(), "/healthz");
    assert!(
        String::from_utf8_lossy(&health.body).contains("redis"),
        "{health:?}"
    );
    assert_eq!(metric(a.addr(), "switchboard_engine_up"), 0.0);
    assert_eq!(metric(a.addr(), "switchboard_redis_links"), 2.0);
    assert!(metric(a.addr(), "switchboard_redis_links_up") < 2.0);
    assert!(metric(a.addr(), "switchboard_redis_disconnects_total") >= 1.0);
    let mut http = HttpConn::connect(a.addr());
    let resp = http.request("POST", "/publish/outage", &[], b"x");
    assert_api_error(&resp, 503, "unavailable");
    c.send_json(&json!({"op": "publish", "channel": "outage", "data": 1, "ref": 4}));
    let e = c.read_json();
    assert_eq!(
        (e["code"].clone(), e["ref"].clone()),
        (json!("unavailable"), json!(4)),
        "{e}"
    );
    let mut late = ws_connect(a.addr(), "");
    late.send_json(&json!({"op": "subscribe", "channel": "other", "ref": 5}));
    assert_eq!(late.read_json()["code"], "unavailable");
    // Local work goes on: the echo route needs no Redis.
    let mut echo = Client::connect(a.addr(), "/echo");
    echo.send_text("still here");
    echo.expect_text("still here");

    redis.restart();
    wait_healthy(&a, 200);
    let mut http = HttpConn::connect(a.addr());
    poll_until(Duration::from_secs(10), "publishing again", || {
        (http.request("POST", "/publish/outage", &[], b"back").status == 200).then_some(())
    });
    // This Redis kept nothing: the stream starts again, and the subscriber is told so.
    let reset = c.read_json();
    assert_eq!(
        (reset["type"].clone(), reset["recovered"].clone()),
        (json!("subscribed"), json!(false)),
        "{reset}"
    );
    let (id, m) = c.read_message_id("outage");
    assert_eq!(
        (id, m["data"].clone()),
        (1, json!("back")),
        "resubscribed after the reconnect"
    );
    assert_eq!(metric(a.addr(), "switchboard_engine_up"), 1.0);
    assert_eq!(metric(a.addr(), "switchboard_cluster_resets_total"), 1.0);
    assert_eq!(metric(a.addr(), "switchboard_cluster_channels"), 1.0);
}

#[test]
fn a_redis_that_hangs_is_detected_and_requests_fail_instead_of_waiting() {
    let redis = Redis::start();
    let a = node(&[&redis], &[]);
    let (mut c, _) = subscriber(&a, "hang", None);
    let mut http = HttpConn::connect(a.addr());
    publish(&mut http, "hang", json!("before"));
    assert_eq!(c.read_message_id("hang").0, 1);

    redis.pause();
    // The sockets stay open; only the silence tells. A publish sent now is owed a reply
    // that never comes: it is answered `unavailable` once the connection counts as lost,
    // well before the request's own deadline.
    let started = std::time::Instant::now();
    let resp = http.request("POST", "/publish/hang", &[], b"lost?");
    assert_api_error(&resp, 503, "unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    wait_healthy(&a, 503);

    redis.resume();
    wait_healthy(&a, 200);
    let mut http = HttpConn::connect(a.addr());
    let id = poll_until(Duration::from_secs(10), "publishing again", || {
        let resp = http.request("POST", "/publish/hang", &[], b"after");
        (resp.status == 200).then(|| json_body(&resp)["id"].as_u64().unwrap_or(0))
    });
    // The publish answered `unavailable` may have happened (Redis ran it when it woke):
    // the subscriber sees every id once and in order either way.
    let (got, m) = c.read_message_id("hang");
    if got == 2 && id == 3 {
        assert_eq!(m["data"], "lost?");
        assert_eq!(c.read_message_id("hang").0, 3);
    } else {
        assert_eq!((got, id), (2, 2), "{m}");
    }
}

#[test]
fn messages_missed_while_a_subscription_was_down_are_filled_from_history() {
    let redis = Redis::start();
    let a = node(&[&redis], &[]);
    let b = node(&[&redis], &[]);
    let (mut c, s) = subscriber(&a, "gap", None);
    let mut last = s["id"].as_u64().expect("id");
    let mut http = HttpConn::connect(b.addr());
    for _ in 0..10 {
        publish(&mut http, "gap", json!("before"));
    }
    read_on(&mut c, "gap", &mut last, 10);
    // Cut every Pub/Sub connection (the nodes' subscriptions) while publishing goes on.
    redis.cmd(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    for _ in 0..30 {
        publish(&mut http, "gap", json!("during"));
    }
    read_on(&mut c, "gap", &mut last, 30);
    assert!(metric(a.addr(), "switchboard_cluster_gap_fills_total") >= 1.0);
    assert_eq!(metric(a.addr(), "switchboard_cluster_resets_total"), 0.0);
    // The first ten came live, and none more than once (the gap came from history).
    let live = metric(a.addr(), "switchboard_cluster_messages_received_total");
    assert!((10.0..=40.0).contains(&live), "{live}");
}

#[test]
fn two_shards_split_the_channels() {
    let r1 = Redis::start();
    let r2 = Redis::start();
    let a = node(&[&r1, &r2], &[]);
    let b = node(&[&r1, &r2], &[]);
    let channels: Vec<String> = (0..12).map(|i| format!("sh{i}")).collect();
    let mut subs: Vec<Client> = channels.iter().map(|c| subscriber(&a, c, None).0).collect();
    let mut http = HttpConn::connect(b.addr());
    for c in &channels {
        assert_eq!(publish(&mut http, c, json!(c)).0, 1);
    }
    for (s, c) in subs.iter_mut().zip(&channels) {
        let (id, m) = s.read_message_id(c);
        assert_eq!((id, m["data"].clone()), (1, json!(c)));
    }
    for r in [&r1, &r2] {
        let keys = r.cmd(&["DBSIZE"]);
        let n: u64 = keys.trim_start_matches(':').parse().expect("DBSIZE");
        assert!(n > 0, "every shard holds some channels");
    }
}

#[test]
fn a_node_holds_subscriptions_to_at_most_max_channels() {
    let redis = Redis::start();
    let a = node(&[&redis], &["--max-channels", "2"]);
    let mut c = ws_connect(a.addr(), "");
    for (i, ch) in ["m1", "m2", "m3"].iter().enumerate() {
        c.send_json(&json!({"op":"subscribe","channel":ch,"ref":i}));
    }
    // The refusal needs no round trip to Redis, so it may come first: in ref order.
    let mut replies: Vec<Value> = (0..3).map(|_| c.read_json()).collect();
    replies.sort_by_key(|v| v["ref"].as_u64());
    assert_eq!(replies[0]["type"], "subscribed");
    assert_eq!(replies[1]["type"], "subscribed");
    assert_eq!(replies[2]["code"], "too_many_channels", "{}", replies[2]);
    // Publishing needs no node-local channel: still fine.
    publish(&mut HttpConn::connect(a.addr()), "m9", json!(1));
    c.send_json(&json!({"op":"unsubscribe","channel":"m1"}));
    assert_eq!(c.read_json()["type"], "unsubscribed");
    // The node forgets m1 once Redis confirms; then m3 fits.
    poll_until(Duration::from_secs(5), "room for a channel", || {
        c.send_json(&json!({"op":"subscribe","channel":"m3"}));
        let v = c.read_json();
        (v["type"] == "subscribed").then_some(())
    });
}

#[test]
fn flushed_scripts_are_loaded_again() {
    let redis = Redis::start();
    let a = node(&[&redis], &[]);
    let mut http = HttpConn::connect(a.addr());
    publish(&mut http, "sf", json!(1));
    redis.cmd(&["SCRIPT", "FLUSH"]);
    // The first publish after the flush may fail (answered, never lost silently); the
    // node reloads its scripts and the next ones go through.
    let first = http.request("POST", "/publish/sf", &[], b"x");
    assert!(first.status == 200 || first.status == 503, "{first:?}");
    let id = poll_until(Duration::from_secs(5), "publishing again", || {
        let resp = http.request("POST", "/publish/sf", &[], b"y");
        (resp.status == 200).then(|| json_body(&resp)["id"].as_u64().unwrap_or(0))
    });
    assert!(id >= 2, "{id}");
}
