//! Channels end to end: the JSON envelopes, fan-out over every worker, one order per channel
//! under concurrent publishers, raw mode, and a third-party client (Python `websockets`).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use common::*;

/// Subscribers, messages and publishers of the fan-out and ordering tests.
const FAN_OUT_SUBSCRIBERS: usize = 200;
const FAN_OUT_MESSAGES: u64 = 20;
const ORDER_SUBSCRIBERS: usize = 8;
const PUBLISHERS_PER_KIND: usize = 2;
const MESSAGES_PER_PUBLISHER: u64 = 100;

/// Publishes on `fence` and reads `client`'s next message, which must be that one: anything
/// delivered to `client` before it (a message it should not have received) fails the test.
/// Works because each worker receives one publisher's deliveries in publish order.
fn expect_nothing_before_fence(client: &mut Client, http: &mut HttpConn, fence: &str) {
    let id = http.publish_json(fence, &json!("fence"));
    let m = client.read_json();
    assert_eq!(
        (&m["type"], &m["channel"], m["id"].as_u64()),
        (&json!("message"), &json!(fence), Some(id)),
        "expected only the fence message, got {m}"
    );
}

#[test]
fn subscribe_publish_unsubscribe_envelopes() {
    let server = Server::start(&[]);
    let mut sub = ws_connect(server.addr(), "");
    let mut http = HttpConn::connect(server.addr());

    sub.send_json(&json!({"op": "subscribe", "channel": "news", "ref": "s1"}));
    assert_eq!(
        without_epoch(sub.read_json()),
        json!({"type": "subscribed", "channel": "news", "id": 0, "recovered": true, "ref": "s1"})
    );

    let id = http.publish_json("news", &json!({"headline": "hi", "n": [1, 2]}));
    assert_eq!(id, 1, "ids start at 1");
    assert_eq!(
        sub.read_json(),
        json!({"type": "message", "channel": "news", "id": 1, "data": {"headline": "hi", "n": [1, 2]}})
    );

    // A publish over /ws: the reply carries the id and the ref; the publisher is subscribed,
    // so it also receives its own message (in either order).
    sub.send_json(&json!({"op": "publish", "channel": "news", "data": null, "ref": 7}));
    let mut got = [epochless(sub.read_json()), epochless(sub.read_json())];
    got.sort_by_key(|v| v["type"].as_str().map(str::to_owned));
    assert_eq!(
        got,
        [
            json!({"type": "message", "channel": "news", "id": 2, "data": null}),
            json!({"type": "published", "channel": "news", "id": 2, "ref": 7}),
        ]
    );

    // Subscribing later reports the last id at that moment.
    sub.send_json(&json!({"op": "subscribe", "channel": "fence"}));
    assert_eq!(
        without_epoch(sub.read_json()),
        json!({"type": "subscribed", "channel": "fence", "id": 0, "recovered": true})
    );

    sub.send_json(&json!({"op": "unsubscribe", "channel": "news", "ref": "u"}));
    assert_eq!(
        sub.read_json(),
        json!({"type": "unsubscribed", "channel": "news", "ref": "u"})
    );
    assert_eq!(http.publish_json("news", &json!("after")), 3);
    expect_nothing_before_fence(&mut sub, &mut http, "fence");

    // Subscribing again resumes nothing by default: only later messages arrive.
    sub.send_json(&json!({"op": "subscribe", "channel": "news"}));
    assert_eq!(
        without_epoch(sub.read_json()),
        json!({"type": "subscribed", "channel": "news", "id": 3, "recovered": true})
    );
    assert_eq!(http.publish_json("news", &json!("again")), 4);
    assert_eq!(
        sub.read_json(),
        json!({"type": "message", "channel": "news", "id": 4, "data": "again"})
    );
    sub.close_cleanly(1000);
}

#[test]
fn channels_are_isolated_and_number_their_own_ids() {
    let server = Server::start(&[]);
    let mut a = ws_connect(server.addr(), "channel=room.a");
    let mut ab = ws_connect(server.addr(), "channel=room.a&channel=room:b");
    assert_eq!(a.read_json()["channel"], "room.a");
    let mut subscribed: Vec<Value> = (0..2).map(|_| without_epoch(ab.read_json())).collect();
    subscribed.sort_by_key(|v| v["channel"].as_str().map(str::to_owned));
    assert_eq!(
        subscribed,
        [
            json!({"type": "subscribed", "channel": "room.a", "id": 0, "recovered": true}),
            json!({"type": "subscribed", "channel": "room:b", "id": 0, "recovered": true}),
        ]
    );

    let mut http = HttpConn::connect(server.addr());
    assert_eq!(http.publish_json("room:b", &json!("b1")), 1);
    assert_eq!(http.publish_json("room:b", &json!("b2")), 2);
    assert_eq!(http.publish_json("room.a", &json!("a1")), 1);
    assert_eq!(http.publish_json("unwatched", &json!("x")), 1);

    assert_eq!(
        [
            ab.read_message_id("room:b").0,
            ab.read_message_id("room:b").0
        ],
        [1, 2]
    );
    let (id, m) = ab.read_message_id("room.a");
    assert_eq!((id, &m["data"]), (1, &json!("a1")));
    // `a` is not on room:b: its first message is room.a's.
    let (id, m) = a.read_message_id("room.a");
    assert_eq!((id, &m["data"]), (1, &json!("a1")));
}

/// The epoll instances of process `pid` and, for each, how many sockets are registered in it
/// (from `/proc/<pid>/fdinfo`: one `tfd:` line per registered descriptor).
fn sockets_per_epoll(pid: u32) -> Vec<usize> {
    let fd_dir = format!("/proc/{pid}/fd");
    let target = |fd: &str| {
        std::fs::read_link(format!("{fd_dir}/{fd}"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&fd_dir).expect("read the server's /proc fd directory") {
        let name = entry.expect("fd entry").file_name();
        let fd = name.to_string_lossy();
        if target(&fd) != "anon_inode:[eventpoll]" {
            continue;
        }
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
        let sockets = info
            .lines()
            .filter_map(|l| l.strip_prefix("tfd:")?.split_whitespace().next())
            .filter(|tfd| target(tfd).starts_with("socket:"))
            .count();
        out.push(sockets);
    }
    out
}

#[test]
fn fan_out_reaches_every_subscriber_on_both_workers() {
    let server = Server::start(&["--workers", "2"]);
    // Half subscribe through the URL, half with a JSON subscribe.
    let mut subs: Vec<Client> = (0..FAN_OUT_SUBSCRIBERS)
        .map(|i| {
            if i % 2 == 0 {
                let mut c = ws_connect(server.addr(), "channel=fan");
                let s = c.read_json();
                assert_eq!(s["type"], "subscribed", "{s}");
                c
            } else {
                let mut c = ws_connect(server.addr(), "");
                c.subscribe("fan");
                c
            }
        })
        .collect();

    // SO_REUSEPORT spreads the connections over the workers' listeners: both workers' epoll
    // instances must hold some of them.
    let per_epoll = sockets_per_epoll(server.pid());
    let busy = per_epoll.iter().filter(|&&n| n >= 10).count();
    assert!(
        busy >= 2 && per_epoll.iter().sum::<usize>() >= FAN_OUT_SUBSCRIBERS,
        "connections are not spread over both workers: sockets per epoll instance {per_epoll:?}"
    );

    let mut http = HttpConn::connect(server.addr());
    let mut ws_pub = ws_connect(server.addr(), "");
    for n in 1..=FAN_OUT_MESSAGES {
        if n % 2 == 0 {
            assert_eq!(http.publish_json("fan", &json!({"n": n})), n);
        } else {
            ws_pub.send_json(&json!({"op": "publish", "channel": "fan", "data": {"n": n}}));
            let r = ws_pub.read_json();
            assert_eq!(
                without_epoch(r),
                json!({"type": "published", "channel": "fan", "id": n})
            );
        }
    }
    for (i, c) in subs.iter_mut().enumerate() {
        for n in 1..=FAN_OUT_MESSAGES {
            let (id, m) = c.read_message_id("fan");
            assert_eq!(
                (id, &m["data"]),
                (n, &json!({"n": n})),
                "subscriber {i}: message {n}"
            );
        }
    }
}

/// What one subscriber saw: `(id, data)` in arrival order.
fn read_n(c: &mut Client, channel: &str, n: u64) -> Vec<(u64, Value)> {
    (0..n)
        .map(|_| {
            let (id, m) = c.read_message_id(channel);
            (id, m["data"].clone())
        })
        .collect()
}

#[test]
fn concurrent_publishers_give_every_subscriber_one_order() {
    let server = Server::start(&["--workers", "2"]);
    let addr = server.addr();
    let mut subs: Vec<Client> = (0..ORDER_SUBSCRIBERS)
        .map(|_| {
            let mut c = ws_connect(addr, "");
            c.subscribe("ordered");
            c
        })
        .collect();

    let barrier = Arc::new(Barrier::new(2 * PUBLISHERS_PER_KIND));
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS_PER_KIND {
        let b = barrier.clone();
        publishers.push(thread::spawn(move || {
            let src = format!("http-{p}");
            let mut http = HttpConn::connect(addr);
            b.wait();
            let ids: Vec<u64> = (0..MESSAGES_PER_PUBLISHER)
                .map(|n| http.publish_json("ordered", &json!({"src": src, "n": n})))
                .collect();
            (src, ids)
        }));
    }
    for p in 0..PUBLISHERS_PER_KIND {
        let b = barrier.clone();
        publishers.push(thread::spawn(move || {
            let src = format!("ws-{p}");
            let mut c = ws_connect(addr, "");
            b.wait();
            // Pipelined: every publish is sent before any reply is read.
            for n in 0..MESSAGES_PER_PUBLISHER {
                c.send_json(&json!({"op": "publish", "channel": "ordered", "data": {"src": src, "n": n}, "ref": n}));
            }
            let ids: Vec<u64> = (0..MESSAGES_PER_PUBLISHER)
                .map(|n| {
                    let r = c.read_json();
                    assert_eq!(
                        (&r["type"], &r["ref"]),
                        (&json!("published"), &json!(n)),
                        "{r}"
                    );
                    r["id"].as_u64().expect("published id")
                })
                .collect();
            (src, ids)
        }));
    }
    let published: HashMap<String, Vec<u64>> = publishers
        .into_iter()
        .map(|t| t.join().expect("publisher thread"))
        .collect();

    let total = 2 * PUBLISHERS_PER_KIND as u64 * MESSAGES_PER_PUBLISHER;
    let first = read_n(&mut subs[0], "ordered", total);
    let ids: Vec<u64> = first.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids,
        (1..=total).collect::<Vec<_>>(),
        "ids must be consecutive from 1"
    );
    // The order matches what each publisher was told, and each publisher's messages keep
    // the order it sent them in.
    for (src, ids) in &published {
        let seen: Vec<(u64, u64)> = first
            .iter()
            .filter(|(_, d)| d["src"] == src.as_str())
            .map(|(id, d)| (*id, d["n"].as_u64().expect("n")))
            .collect();
        let expected: Vec<(u64, u64)> = ids.iter().copied().zip(0..).collect();
        assert_eq!(seen, expected, "publisher {src}");
    }
    for (i, c) in subs.iter_mut().enumerate().skip(1) {
        assert!(
            read_n(c, "ordered", total) == first,
            "subscriber {i} saw a different sequence than subscriber 0"
        );
    }
}

#[test]
fn raw_format_delivers_bare_payloads() {
    let server = Server::start(&[]);
    let mut raw = ws_connect(server.addr(), "channel=feed&format=raw");
    let mut env = ws_connect(server.addr(), "channel=feed");
    assert_eq!(env.read_json()["type"], "subscribed");
    let mut http = HttpConn::connect(server.addr());
    let mut ws_pub = ws_connect(server.addr(), "");

    // 1: a text body; the raw subscriber's first frame is the payload (no `subscribed`).
    assert_eq!(
        http.publish("feed", Some("text/plain"), b"hello, \"raw\""),
        1
    );
    raw.expect_text("hello, \"raw\"");
    // 2: a JSON string published over /ws arrives as its text, unescaped.
    let text = "line\n\"quoted\" \u{e9}\u{1F600}";
    ws_pub.send_json(&json!({"op": "publish", "channel": "feed", "data": text}));
    assert_eq!(ws_pub.read_json()["id"], 2);
    raw.expect_text(text);
    // 3: other JSON goes byte for byte, whitespace included.
    let body = br#"{ "a" : [1, 2.50] }"#;
    assert_eq!(http.publish("feed", Some("application/json"), body), 3);
    raw.expect_text(std::str::from_utf8(body).expect("ASCII"));
    // 4: a non-UTF-8 body is a binary frame with exactly those bytes.
    let bytes = [0u8, 0x9F, 0x92, 0x96, 0xFF, b'x'];
    assert_eq!(
        http.publish("feed", Some("application/octet-stream"), &bytes),
        4
    );
    raw.expect_binary(&bytes);

    // The JSON subscriber saw the same four in envelopes.
    let data: Vec<Value> = (1..=4)
        .map(|n| {
            let (id, m) = env.read_message_id("feed");
            assert_eq!(id, n);
            m
        })
        .collect();
    assert_eq!(data[0]["data"], "hello, \"raw\"");
    assert_eq!(data[1]["data"], text);
    assert_eq!(data[2]["data"], json!({"a": [1, 2.5]}));
    assert_eq!(data[3]["encoding"], "base64");
    assert_eq!(
        data[3]["data"],
        base64::engine::general_purpose::STANDARD.encode(bytes)
    );

    // Resuming in raw mode replays bare payloads, again without a `subscribed`.
    let mut again = ws_connect(server.addr(), "channel=feed&format=raw&since=2");
    again.expect_text(std::str::from_utf8(body).expect("ASCII"));
    again.expect_binary(&bytes);
    assert_eq!(http.publish("feed", Some("text/plain"), b"live"), 5);
    again.expect_text("live");
    raw.expect_text("live");
}

#[test]
fn a_channel_repeated_in_the_url_is_subscribed_once() {
    let server = Server::start(&[]);
    let mut raw = ws_connect(server.addr(), "channel=dup&channel=dup&format=raw");
    let mut env = ws_connect(server.addr(), "channel=dup&channel=dup");
    assert_eq!(
        without_epoch(env.read_json()),
        json!({"type": "subscribed", "channel": "dup", "id": 0, "recovered": true})
    );
    let mut http = HttpConn::connect(server.addr());
    assert_eq!(http.publish("dup", Some("text/plain"), b"one"), 1);
    assert_eq!(http.publish("dup", Some("text/plain"), b"two"), 2);
    raw.expect_text("one");
    raw.expect_text("two");
    // No second `subscribed`, and each message once.
    assert_eq!(env.read_message_id("dup").0, 1);
    assert_eq!(env.read_message_id("dup").0, 2);
}

// ---------------------------------------------------------------------------------------------
// A third-party client
// ---------------------------------------------------------------------------------------------

/// A child process killed on drop, so a failing test leaves nothing running.
struct Python {
    child: Child,
    lines: mpsc::Receiver<Option<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long the Python client may take for each step (interpreter start included).
const PYTHON_TIMEOUT: Duration = Duration::from_secs(15);

impl Python {
    /// Runs `tests/python/<script>` with `args`, collecting its stdout lines and stderr.
    fn run(script: &str, args: &[String]) -> Python {
        let path = format!("{}/tests/python/{script}", env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new("python3")
            .arg(&path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run python3 {path}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut err_pipe = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(Some(line)).is_err() {
                    return;
                }
            }
            let _ = tx.send(None);
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = err_pipe.read(&mut chunk) {
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        Python {
            child,
            lines,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The next stdout line as JSON; `None` once stdout has closed.
    fn next_json(&mut self) -> Option<Value> {
        match self.lines.recv_timeout(PYTHON_TIMEOUT) {
            Ok(Some(line)) => Some(serde_json::from_str(&line).unwrap_or_else(|e| {
                panic!("python client printed a non-JSON line ({e}): {line:?}")
            })),
            Ok(None) => None,
            Err(_) => panic!(
                "python client printed nothing within {PYTHON_TIMEOUT:?}; stderr:\n{}",
                self.stderr()
            ),
        }
    }

    fn expect_json(&mut self) -> Value {
        self.next_json().unwrap_or_else(|| {
            panic!(
                "python client exited early (is `websockets` installed? .ci/test installs it); stderr:\n{}",
                self.stderr()
            )
        })
    }

    /// Waits for the exit that follows stdout closing (polled: the process is already
    /// finishing, and std offers no wait with a timeout).
    fn expect_success(&mut self) {
        assert_eq!(self.next_json(), None, "python client printed more");
        let deadline = Instant::now() + PYTHON_TIMEOUT;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait on python") {
                break s;
            }
            assert!(Instant::now() < deadline, "python client did not exit");
            thread::sleep(Duration::from_millis(10));
        };
        assert!(
            status.success(),
            "python client failed: {status}; stderr:\n{}",
            self.stderr()
        );
    }
}

#[test]
fn python_websockets_client_subscribes_and_receives() {
    let server = Server::start(&[]);
    let url = format!("ws://{}/ws", server.addr());
    let mut py = Python::run(
        "subscribe_and_receive.py",
        &[url, "py.chan".to_owned(), "2".to_owned()],
    );
    assert_eq!(
        without_epoch(py.expect_json()),
        json!({"type": "subscribed", "channel": "py.chan", "id": 0, "recovered": true, "ref": "py-1"})
    );

    let mut http = HttpConn::connect(server.addr());
    assert_eq!(
        http.publish_json("py.chan", &json!({"from": "rust", "k": [true, null]})),
        1
    );
    assert_eq!(
        http.publish("py.chan", None, "plain \u{2713}".as_bytes()),
        2
    );
    assert_eq!(
        py.expect_json(),
        json!({"type": "message", "channel": "py.chan", "id": 1, "data": {"from": "rust", "k": [true, null]}})
    );
    assert_eq!(
        py.expect_json(),
        json!({"type": "message", "channel": "py.chan", "id": 2, "data": "plain \u{2713}"})
    );
    py.expect_success();
}
