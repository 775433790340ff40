//! The HTTP API: `POST /publish/{channel}` (payload types, errors, the bearer token),
//! `GET /history/{channel}` (since, limit, recovered, JSON shape) and keep-alive.

mod common;

use std::io::Write;

use base64::Engine as _;
use serde_json::{json, Value};

use common::*;

#[test]
fn publish_payload_types_and_errors() {
    let server = Server::start(&[]);
    let mut sub = ws_connect(server.addr(), "channel=api");
    assert_eq!(sub.read_json()["type"], "subscribed");
    let mut http = HttpConn::connect(server.addr());

    let resp = http.request(
        "POST",
        "/publish/api",
        &["Content-Type: application/json"],
        br#"{"k": "v"}"#,
    );
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(
        without_epoch(json_body(&resp)),
        json!({"channel": "api", "id": 1})
    );

    let non_utf8 = [0xC3u8, 0x28, 0x00, 0xFF];
    let cases: [(Option<&str>, &[u8], Value); 6] = [
        (
            Some("application/json; charset=utf-8"),
            b"[1, 2]",
            json!([1, 2]),
        ),
        (Some("Application/JSON"), br#""str""#, json!("str")),
        (
            Some("text/plain; charset=utf-8"),
            "h\u{e9}llo\n".as_bytes(),
            json!("h\u{e9}llo\n"),
        ),
        // Text that happens to be JSON stays text without the JSON content type.
        (Some("text/plain"), br#"{"a":1}"#, json!(r#"{"a":1}"#)),
        (None, b"no type", json!("no type")),
        (
            Some("application/octet-stream"),
            &non_utf8,
            json!(base64::engine::general_purpose::STANDARD.encode(non_utf8)),
        ),
    ];
    for (i, (ctype, body, _)) in cases.iter().enumerate() {
        assert_eq!(http.publish("api", *ctype, body), i as u64 + 2);
    }

    // Refused publishes take no id and deliver nothing.
    let bad_json = http.request(
        "POST",
        "/publish/api",
        &["Content-Type: application/json"],
        b"{\"k\":",
    );
    assert_api_error(&bad_json, 400, "invalid_json");
    let empty_json = http.request(
        "POST",
        "/publish/api",
        &["Content-Type: application/json"],
        b"",
    );
    assert_api_error(&empty_json, 400, "invalid_json");
    let bad_name = http.request("POST", "/publish/bad!name", &[], b"x");
    assert_api_error(&bad_name, 400, "invalid_channel");
    let long = "c".repeat(129);
    let too_long = http.request("POST", &format!("/publish/{long}"), &[], b"x");
    assert_api_error(&too_long, 400, "invalid_channel");
    assert_eq!(http.publish(&"c".repeat(128), None, b"x"), 1);
    assert_eq!(http.publish("api", None, b"last"), 8);

    let (id, m) = sub.read_message_id("api");
    assert_eq!((id, &m["data"]), (1, &json!({"k": "v"})));
    for (i, (ctype, _, data)) in cases.iter().enumerate() {
        let (id, m) = sub.read_message_id("api");
        assert_eq!((id, &m["data"]), (i as u64 + 2, data), "{m}");
        // Only the binary payload is marked as base64.
        let binary = *ctype == Some("application/octet-stream");
        assert_eq!(m.get("encoding"), binary.then_some(&json!("base64")), "{m}");
    }
    let (id, m) = sub.read_message_id("api");
    assert_eq!((id, &m["data"]), (8, &json!("last")));
}

/// `GET /history/{path_and_query}`, checked for 200 and the reply's shape.
fn history(http: &mut HttpConn, path_and_query: &str) -> (bool, Vec<Value>) {
    let resp = http.get(&format!("/history/{path_and_query}"));
    assert_eq!(resp.status, 200, "{resp:?}");
    let v = json_body(&resp);
    let channel = path_and_query.split('?').next().unwrap_or_default();
    assert_eq!(v["type"], "history", "{v}");
    assert_eq!(v["channel"], channel, "{v}");
    let fields: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(fields.len(), 5, "unexpected fields in {v}");
    without_epoch(v.clone());
    let recovered = v["recovered"].as_bool().expect("recovered is a bool");
    let messages = v["messages"].as_array().expect("messages is an array");
    (recovered, messages.clone())
}

fn ids(messages: &[Value]) -> Vec<u64> {
    messages
        .iter()
        .map(|m| m["id"].as_u64().expect("id"))
        .collect()
}

#[test]
fn history_since_limit_recovered_and_shape() {
    let server = Server::start(&[]);
    let mut sub = ws_connect(server.addr(), "channel=h");
    assert_eq!(sub.read_json()["type"], "subscribed");
    let mut http = HttpConn::connect(server.addr());
    for n in 1..=10u64 {
        match n % 3 {
            0 => http.publish("h", Some("text/plain"), format!("t{n}").as_bytes()),
            1 => http.publish_json("h", &json!({ "n": n })),
            _ => http.publish("h", None, &[0xFF, n as u8]),
        };
    }
    let delivered: Vec<Value> = (0..10).map(|_| sub.read_json()).collect();

    // The history holds the very message objects subscribers received.
    let (recovered, all) = history(&mut http, "h");
    assert!(recovered);
    assert_eq!(all, delivered);

    let (recovered, page) = history(&mut http, "h?since=3&limit=4");
    assert!(recovered);
    assert_eq!(page, delivered[3..7]);
    assert_eq!(history(&mut http, "h?since=0"), (true, delivered.clone()));
    assert_eq!(history(&mut http, "h?since=10"), (true, vec![]));
    assert_eq!(history(&mut http, "h?limit=0"), (true, vec![]));
    assert_eq!(
        history(&mut http, "h?limit=2"),
        (true, delivered[..2].to_vec())
    );
    // An id never handed out: not recovered.
    assert!(!history(&mut http, "h?since=20").0);

    // A channel with no messages.
    assert_eq!(history(&mut http, "none"), (true, vec![]));
    assert_eq!(history(&mut http, "none?since=0"), (true, vec![]));
    assert_eq!(history(&mut http, "none?since=4"), (false, vec![]));

    assert_api_error(&http.get("/history/h?since=x"), 400, "invalid_since");
    assert_api_error(&http.get("/history/h?since=-1"), 400, "invalid_since");
    assert_api_error(&http.get("/history/h?limit=many"), 400, "invalid_limit");
    assert_api_error(&http.get("/history/bad!name"), 400, "invalid_channel");

    // The `history` op over /ws answers the same, with the ref.
    sub.send_json(&json!({"op": "history", "channel": "h", "since": 3, "limit": 4, "ref": 9}));
    assert_eq!(
        without_epoch(sub.read_json()),
        json!({"type": "history", "channel": "h", "recovered": true, "messages": delivered[3..7], "ref": 9})
    );
}

#[test]
fn history_beyond_the_buffer_is_not_recovered() {
    let server = Server::start(&["--history-size", "5"]);
    let mut http = HttpConn::connect(server.addr());
    for n in 1..=10 {
        http.publish_json("h5", &json!(n));
    }
    let (recovered, kept) = history(&mut http, "h5");
    assert!(recovered, "without since, nothing is claimed lost");
    assert_eq!(ids(&kept), [6, 7, 8, 9, 10]);
    let (recovered, msgs) = history(&mut http, "h5?since=2");
    assert!(!recovered);
    assert_eq!(ids(&msgs), [6, 7, 8, 9, 10]);
    let (recovered, msgs) = history(&mut http, "h5?since=5&limit=2");
    assert!(recovered, "5 is just before the oldest kept");
    assert_eq!(ids(&msgs), [6, 7]);
    assert!(!history(&mut http, "h5?since=0").0);
}

#[test]
fn history_expires_after_the_ttl() {
    let server = Server::start(&["--history-ttl", "1"]);
    let mut http = HttpConn::connect(server.addr());
    http.publish_json("ttl", &json!("soon gone"));
    let (recovered, msgs) = history(&mut http, "ttl?since=0");
    assert!(recovered);
    assert_eq!(ids(&msgs), [1]);
    // Expiry is a matter of time, with no event to wait on.
    poll_until(IO_TIMEOUT, "the message to expire", || {
        (history(&mut http, "ttl?since=0") == (false, vec![])).then_some(())
    });
    let (recovered, msgs) = history(&mut http, "ttl?since=1");
    assert!(recovered, "nothing after 1 was lost");
    assert!(msgs.is_empty());
}

#[test]
fn keep_alive_serves_several_requests_and_connection_close_ends_it() {
    let server = Server::start(&[]);
    let mut http = HttpConn::connect(server.addr());
    assert_eq!(http.publish_json("ka", &json!(1)), 1);
    assert_eq!(http.publish("ka", Some("text/plain"), b"two"), 2);
    for path in [
        "/history/ka",
        "/presence/ka",
        "/presence?user=x",
        "/healthz",
    ] {
        let resp = http.get(path);
        assert_eq!(resp.status, 200, "{path}: {resp:?}");
        assert!(
            !resp.header_has_token("connection", "close"),
            "{path}: {resp:?}"
        );
    }
    // Pipelined: three requests in one write, three responses in order.
    let mut batch = Vec::new();
    for n in 3..=5 {
        let body = format!("{n}");
        batch.extend_from_slice(
            format!(
                "POST /publish/ka HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    http.stream
        .write_all(&batch)
        .expect("write the pipelined requests");
    let mut buf = Vec::new();
    for n in 3..=5 {
        let resp = read_response(&mut http.stream, &mut buf);
        assert_eq!(
            without_epoch(json_body(&resp)),
            json!({"channel": "ka", "id": n})
        );
    }
    assert!(buf.is_empty());

    let resp = http.request("GET", "/history/ka?since=4", &["Connection: close"], &[]);
    assert_eq!(resp.status, 200);
    assert!(resp.header_has_token("connection", "close"), "{resp:?}");
    assert_eq!(
        ids(json_body(&resp)["messages"].as_array().expect("messages")),
        [5]
    );
    assert_closed(&mut http.stream, &[]);
}

#[test]
fn publish_token_is_required_when_set() {
    let server = Server::start(&["--publish-token", "s3cret"]);
    let mut sub = ws_connect(server.addr(), "channel=auth");
    assert_eq!(sub.read_json()["type"], "subscribed");
    let mut http = HttpConn::connect(server.addr());

    let refused: [&[&str]; 4] = [
        &[],
        &["Authorization: Bearer wrong"],
        &["Authorization: Bearer s3cre"],
        &["Authorization: Basic s3cret"],
    ];
    for headers in refused {
        let resp = http.request("POST", "/publish/auth", headers, b"nope");
        assert_api_error(&resp, 401, "unauthorized");
        assert!(
            resp.header("www-authenticate")
                .is_some_and(|h| h.starts_with("Bearer")),
            "{headers:?}: {resp:?}"
        );
    }
    // The connection survives the 401s; the right token publishes.
    let resp = http.request(
        "POST",
        "/publish/auth",
        &["Authorization: Bearer s3cret"],
        b"yes",
    );
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(
        without_epoch(json_body(&resp)),
        json!({"channel": "auth", "id": 1})
    );
    // Nothing refused was published: the first message is this one, with id 1.
    let (id, m) = sub.read_message_id("auth");
    assert_eq!((id, &m["data"]), (1, &json!("yes")));
    // The key guards the whole API, reading too (`--publish-token` is `--api-key`'s old name).
    assert_eq!(http.get("/history/auth").status, 401);
    let key = ["Authorization: Bearer s3cret"];
    assert_eq!(http.request("GET", "/history/auth", &key, b"").status, 200);
    assert_eq!(http.request("GET", "/presence/auth", &key, b"").status, 200);
}

#[test]
fn websocket_publish_needs_the_token_when_set() {
    let server = Server::start(&["--publish-token", "s3cret"]);
    let publish = json!({"op":"publish","channel":"c","data":"x","ref":1});

    // Subscribing is open; publishing without the token is refused, the connection stays.
    let mut anon = ws_connect(server.addr(), "");
    anon.send_json(&publish);
    let reply = anon.read_json();
    assert_eq!(
        (reply["type"].as_str(), reply["code"].as_str()),
        (Some("error"), Some("unauthorized")),
        "{reply}"
    );
    assert_eq!(reply["ref"], 1);
    anon.send_json(&json!({"op":"subscribe","channel":"c"}));
    assert_eq!(anon.read_json()["type"], "subscribed");

    let mut wrong = ws_connect(server.addr(), "token=nope");
    wrong.send_json(&publish);
    assert_eq!(wrong.read_json()["code"], "unauthorized");

    // With the token in the URL (what a browser can do), the publish goes through and the
    // subscriber sees it.
    let mut ok = ws_connect(server.addr(), "token=s3cret");
    ok.send_json(&publish);
    let reply = ok.read_json();
    assert_eq!(
        (reply["type"].as_str(), reply["id"].as_u64()),
        (Some("published"), Some(1)),
        "{reply}"
    );
    let msg = anon.read_json();
    assert_eq!(
        (msg["type"].as_str(), msg["id"].as_u64()),
        (Some("message"), Some(1)),
        "{msg}"
    );
}
