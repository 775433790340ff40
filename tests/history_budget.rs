//! Issue #15: the in-memory engine's history is bounded in bytes (`--history-max-bytes`, the
//! oldest evicted first) and its live channels in number (`--max-channels`, new ones refused
//! with `too_many_channels`), against the real server.
//!
//! The flood from the issue (200,000 pipelined `POST /publish/ch<i>` of 100 bytes over one
//! keep-alive connection) took the server from 3 MB to 160 MB. With a 32 MiB budget its RSS
//! must grow by no more than the budget plus a small fixed overhead; with a 1 GiB budget
//! (never reached) it grows by more, which shows the budget is what bounds it.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use common::*;

const MIB: u64 = 1024 * 1024;
const FLOOD: usize = 200_000;
/// Requests written per `write_all`.
const CHUNK: usize = 1000;

/// The server's resident set, in bytes.
fn rss(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS") * 1024
}

/// Sends `n` pipelined publishes of 100 bytes, each to a channel of its own, over one
/// keep-alive connection, reading the responses in another thread so neither side blocks;
/// returns how many were answered 200.
fn flood(addr: SocketAddr, n: usize) -> usize {
    let mut stream = tcp(addr);
    let mut reader = stream.try_clone().expect("clone the stream");
    let counter = thread::spawn(move || {
        let mut buf = Vec::new();
        let mut ok = 0;
        for _ in 0..n {
            if read_response(&mut reader, &mut buf).status == 200 {
                ok += 1;
            }
        }
        ok
    });
    let body = "x".repeat(100);
    let mut batch = Vec::with_capacity(CHUNK * 200);
    for start in (0..n).step_by(CHUNK) {
        batch.clear();
        for i in start..(start + CHUNK).min(n) {
            let _ = write!(
                batch,
                "POST /publish/ch{i} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{body}"
            );
        }
        stream.write_all(&batch).expect("write the publishes");
    }
    counter.join().expect("the response reader")
}

/// Starts a server with `budget` as `--history-max-bytes`, floods it, and returns its RSS
/// growth in bytes (and the server, for its metrics).
fn flooded(budget: &str) -> (u64, Server) {
    let server = Server::start(&[
        "--history-max-bytes",
        budget,
        "--publish-rate",
        "0",
        "--max-channels",
        "1000000",
        "--workers",
        "1",
    ]);
    let before = rss(server.pid());
    let started = Instant::now();
    assert_eq!(
        flood(server.addr(), FLOOD),
        FLOOD,
        "every publish answered 200"
    );
    let after = rss(server.pid());
    let growth = after.saturating_sub(before);
    eprintln!(
        "budget {budget}: RSS {:.1} MiB -> {:.1} MiB (+{:.1} MiB) after {FLOOD} publishes in {:?}",
        before as f64 / MIB as f64,
        after as f64 / MIB as f64,
        growth as f64 / MIB as f64,
        started.elapsed()
    );
    (growth, server)
}

#[test]
fn a_publish_flood_stays_within_the_history_budget() {
    let (bounded, server) = flooded("32MiB");
    let addr = server.addr();
    let history = metric(addr, "switchboard_history_bytes");
    let evicted = metric(addr, "switchboard_history_evicted_total");
    eprintln!("32MiB budget: history {history} B, evicted {evicted} messages");
    assert!(bounded <= 32 * MIB + 24 * MIB, "RSS grew {bounded} B");
    assert!(evicted > 0.0, "past the budget something was evicted");
    assert!(history <= (32 * MIB) as f64, "history {history} B");
    assert_eq!(
        metric(addr, "switchboard_history_max_bytes"),
        (32 * MIB) as f64
    );
    // The newest history is what is kept.
    let mut http = HttpConn::connect(addr);
    let last = format!("/history/ch{}", FLOOD - 1);
    let kept = json_body(&http.get(&last));
    assert_eq!(kept["messages"].as_array().map(Vec::len), Some(1), "{kept}");
    let first = json_body(&http.get("/history/ch0?since=0"));
    assert_eq!(
        first["recovered"], false,
        "ch0's message was evicted: {first}"
    );
    drop(server);

    let (unbounded, server) = flooded("1GiB");
    assert_eq!(
        metric(server.addr(), "switchboard_history_evicted_total"),
        0.0
    );
    assert!(
        unbounded > bounded,
        "without the budget reached the server grows more: {unbounded} B against {bounded} B"
    );
}

#[test]
fn channels_past_the_bound_are_refused_until_idle_ones_are_forgotten() {
    let server = Server::start(&[
        "--max-channels",
        "10",
        "--history-ttl",
        "1",
        "--publish-rate",
        "0",
    ]);
    let addr = server.addr();
    // Five channels live through a subscriber, five through their history (for a second).
    let mut ws = ws_connect(addr, "");
    for i in 0..5 {
        ws.subscribe(&format!("s{i}"));
    }
    let mut http = HttpConn::connect(addr);
    let started = Instant::now();
    for i in 0..5 {
        http.publish(&format!("h{i}"), None, b"x");
    }
    let refused = http.request("POST", "/publish/new", &[], b"x");
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(json_body(&refused)["error"], "too_many_channels");
    ws.send_json(&json!({"op": "subscribe", "channel": "new", "ref": 1}));
    let reply = ws.read_json();
    assert_eq!(reply["code"], "too_many_channels", "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the history channels were still live (--history-ttl 1)"
    );
    // Existing channels keep working, and the refused connection stays open.
    http.publish("s0", None, b"still");
    let (id, m) = ws.read_message_id("s0");
    assert_eq!((id, m["data"].clone()), (1, json!("still")));
    http.publish("h0", None, b"again");
    assert!(metric(addr, "switchboard_channels_refused_total") >= 2.0);
    assert_eq!(metric(addr, "switchboard_channels"), 10.0);

    // Once history expires the sweep forgets those channels, and new ones fit again.
    poll_until(Duration::from_secs(20), "room for a new channel", || {
        let resp = http.request("POST", "/publish/new", &[], b"x");
        if resp.status == 200 {
            return Some(());
        }
        assert_eq!(resp.status, 503, "{resp:?}");
        thread::sleep(Duration::from_millis(100));
        None
    });
    // And over /ws, once the sweep has forgotten one more.
    poll_until(Duration::from_secs(20), "room for a subscription", || {
        ws.send_json(&json!({"op": "subscribe", "channel": "new2", "ref": 2}));
        let reply = ws.read_json();
        if reply["type"] == "subscribed" {
            return Some(());
        }
        assert_eq!(reply["code"], "too_many_channels", "{reply}");
        thread::sleep(Duration::from_millis(100));
        None
    });
    assert!(metric(addr, "switchboard_channels") <= 10.0);
}
