//! Protocol errors on `/ws`: every error code, with the request's `ref` echoed when it could be
//! read, and the connection still usable after each; and the query-string checks that refuse
//! an upgrade with 400.

mod common;

use std::net::SocketAddr;

use serde_json::{json, Value};

use common::*;

/// Reads the next reply and checks it is error `code`, with `reference` echoed (or no `ref`).
fn expect_error(c: &mut Client, sent: &str, code: &str, reference: Option<Value>) {
    let e = c.read_json();
    assert_eq!(e["type"], "error", "{sent} -> {e}");
    assert_eq!(e["code"], code, "{sent} -> {e}");
    assert!(
        e["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{sent} -> error without a reason: {e}"
    );
    assert_eq!(e.get("ref"), reference.as_ref(), "{sent} -> ref of {e}");
    let keys = e.as_object().map_or(0, |o| o.len());
    assert_eq!(
        keys,
        3 + usize::from(reference.is_some()),
        "{sent} -> extra fields in {e}"
    );
}

/// Sends `text` and expects error `code` (with `reference`), then checks the connection still
/// answers a request.
fn refused(c: &mut Client, text: &str, code: &str, reference: Option<Value>) {
    c.send_text(text);
    expect_error(c, text, code, reference);
    assert_usable(c);
}

/// A `presence` query gets its answer: the connection is still open and in step.
fn assert_usable(c: &mut Client) {
    let probe = format!("probe-{}", random_u64());
    c.send_json(&json!({"op": "presence", "channel": "probe", "ref": probe}));
    assert_eq!(
        c.read_json(),
        json!({"type": "presence", "channel": "probe", "users": [], "ref": probe})
    );
}

#[test]
fn invalid_json() {
    let server = Server::start(&[]);
    let mut c = ws_connect(server.addr(), "");
    for text in [
        "not json",
        "",
        "[1,2]",
        "\"a string\"",
        "{\"op\":",
        r#"{"op":5,"channel":"c"}"#,
        r#"{"op":"subscribe","channel":"c","since":-1}"#,
        r#"{"op":"subscribe","channel":"c","presence":"yes"}"#,
        r#"{"op":"history","channel":"c","limit":"ten"}"#,
        r#"{"op":"subscribe","channel":7}"#,
    ] {
        refused(&mut c, text, "invalid_json", None);
    }
    // The ref is echoed when the frame still yields it.
    refused(
        &mut c,
        r#"{"op":"subscribe","channel":"c","since":"x","ref":"r1"}"#,
        "invalid_json",
        Some(json!("r1")),
    );
}

#[test]
fn unknown_op() {
    let server = Server::start(&[]);
    let mut c = ws_connect(server.addr(), "");
    refused(
        &mut c,
        r#"{"op":"dance","channel":"c","ref":5}"#,
        "unknown_op",
        Some(json!(5)),
    );
    refused(&mut c, r#"{"op":"dance"}"#, "unknown_op", None);
    refused(
        &mut c,
        r#"{"op":"SUBSCRIBE","channel":"c"}"#,
        "unknown_op",
        None,
    );
}

#[test]
fn missing_field() {
    let server = Server::start(&[]);
    let mut c = ws_connect(server.addr(), "");
    refused(
        &mut c,
        r#"{"channel":"c","ref":"m"}"#,
        "missing_field",
        Some(json!("m")),
    );
    refused(&mut c, "{}", "missing_field", None);
    for op in ["subscribe", "unsubscribe", "publish", "presence", "history"] {
        let text = format!(r#"{{"op":"{op}","ref":"{op}"}}"#);
        refused(&mut c, &text, "missing_field", Some(json!(op)));
    }
    refused(
        &mut c,
        r#"{"op":"publish","channel":"c","ref":1}"#,
        "missing_field",
        Some(json!(1)),
    );
    // `null` is data, not a missing field.
    c.send_text(r#"{"op":"publish","channel":"c","data":null}"#);
    assert_eq!(
        without_epoch(c.read_json()),
        json!({"type": "published", "channel": "c", "id": 1})
    );
}

#[test]
fn invalid_channel() {
    let server = Server::start(&[]);
    let mut c = ws_connect(server.addr(), "");
    let long = "x".repeat(129);
    for name in ["a b", "", "a/b", "caf\u{e9}", "tab\t", long.as_str()] {
        for op in ["subscribe", "unsubscribe", "publish", "presence", "history"] {
            let req = json!({"op": op, "channel": name, "data": 1, "ref": "bad"});
            refused(
                &mut c,
                &req.to_string(),
                "invalid_channel",
                Some(json!("bad")),
            );
        }
    }
    // Every allowed character, at the longest allowed length.
    let edge = format!("{}AZaz09_-.:@", "m".repeat(117));
    assert_eq!(edge.len(), 128);
    assert_eq!(c.subscribe(&edge)["id"], 0);
}

#[test]
fn invalid_ref() {
    let server = Server::start(&[]);
    let mut c = ws_connect(server.addr(), "");
    let long = format!("\"{}\"", "r".repeat(63)); // 65 bytes of JSON
                                                  // A refused ref is not echoed.
    for reference in [long.as_str(), "{\"a\":1}", "[1]", "true", "null"] {
        let text = format!(r#"{{"op":"presence","channel":"c","ref":{reference}}}"#);
        refused(&mut c, &text, "invalid_ref", None);
    }
    // At the limit, and numbers of any form, are echoed verbatim.
    let at_limit = "r".repeat(62); // 64 bytes of JSON with the quotes
    for reference in [json!(at_limit), json!(-3), json!(12.5), json!("")] {
        c.send_json(&json!({"op": "presence", "channel": "c", "ref": reference}));
        assert_eq!(c.read_json()["ref"], reference);
    }
}

#[test]
fn binary_frame() {
    let server = Server::start(&[]);
    let mut c = ws_connect(server.addr(), "channel=still");
    assert_eq!(c.read_json()["type"], "subscribed");
    c.send_binary(br#"{"op":"presence","channel":"c"}"#);
    expect_error(&mut c, "a binary frame", "binary_frame", None);
    assert_usable(&mut c);
    // A fragmented binary message is one error.
    c.send_frame(false, OP_BINARY, b"ab");
    c.send_frame(true, OP_CONT, b"cd");
    expect_error(&mut c, "a fragmented binary message", "binary_frame", None);
    assert_usable(&mut c);
    // The subscription is untouched.
    HttpConn::connect(server.addr()).publish_json("still", &json!("here"));
    assert_eq!(c.read_message_id("still").0, 1);
}

#[test]
fn too_many_subscriptions() {
    let server = Server::start(&["--max-subscriptions", "3"]);
    let mut c = ws_connect(server.addr(), "channel=c0&channel=c1");
    for _ in 0..2 {
        assert_eq!(c.read_json()["type"], "subscribed");
    }
    c.subscribe("c2");
    refused(
        &mut c,
        r#"{"op":"subscribe","channel":"c3","ref":"over"}"#,
        "too_many_subscriptions",
        Some(json!("over")),
    );
    // Already subscribed is reported as such even at the cap.
    refused(
        &mut c,
        r#"{"op":"subscribe","channel":"c1"}"#,
        "already_subscribed",
        None,
    );
    // Freeing a slot lets the next subscribe in.
    c.send_json(&json!({"op": "unsubscribe", "channel": "c0"}));
    assert_eq!(c.read_json()["type"], "unsubscribed");
    c.subscribe("c3");

    // More URL channels than the cap: refused before the upgrade.
    let (req, _) = upgrade_request("/ws?channel=a&channel=b&channel=c&channel=d", &[]);
    assert_error_response(server.addr(), req.as_bytes(), 400);
}

#[test]
fn not_subscribed() {
    let server = Server::start(&[]);
    let mut c = ws_connect(server.addr(), "");
    refused(
        &mut c,
        r#"{"op":"unsubscribe","channel":"never","ref":"n"}"#,
        "not_subscribed",
        Some(json!("n")),
    );
    c.subscribe("once");
    c.send_json(&json!({"op": "unsubscribe", "channel": "once"}));
    assert_eq!(
        c.read_json(),
        json!({"type": "unsubscribed", "channel": "once"})
    );
    refused(
        &mut c,
        r#"{"op":"unsubscribe","channel":"once"}"#,
        "not_subscribed",
        None,
    );
}

#[test]
fn already_subscribed() {
    let server = Server::start(&[]);
    let mut c = ws_connect(server.addr(), "channel=url");
    assert_eq!(c.read_json()["type"], "subscribed");
    refused(
        &mut c,
        r#"{"op":"subscribe","channel":"url","ref":"u"}"#,
        "already_subscribed",
        Some(json!("u")),
    );
    c.subscribe("json");
    refused(
        &mut c,
        r#"{"op":"subscribe","channel":"json","since":0}"#,
        "already_subscribed",
        None,
    );
    // Still exactly one subscription each: one message per publish.
    let mut http = HttpConn::connect(server.addr());
    http.publish_json("url", &json!(1));
    http.publish_json("json", &json!(1));
    assert_eq!(c.read_message_id("url").0, 1);
    assert_eq!(c.read_message_id("json").0, 1);
}

#[test]
fn errors_pipelined_in_one_write_are_answered_in_order() {
    let server = Server::start(&[]);
    let mut c = ws_connect(server.addr(), "");
    let frames: [(&str, &str); 6] = [
        ("nope", "invalid_json"),
        (r#"{"op":"x","channel":"c","ref":1}"#, "unknown_op"),
        (r#"{"op":"subscribe","ref":2}"#, "missing_field"),
        (
            r#"{"op":"subscribe","channel":"a b","ref":3}"#,
            "invalid_channel",
        ),
        (
            r#"{"op":"unsubscribe","channel":"c","ref":4}"#,
            "not_subscribed",
        ),
        (
            r#"{"op":"presence","channel":"c","ref":true}"#,
            "invalid_ref",
        ),
    ];
    let mut bytes = Vec::new();
    for (text, _) in frames {
        bytes.extend_from_slice(&client_frame(true, OP_TEXT, text.as_bytes()));
    }
    bytes.extend_from_slice(&client_frame(true, OP_BINARY, b"bin"));
    c.send_raw(&bytes);
    for (i, (text, code)) in frames.iter().enumerate() {
        let reference = (1..=4).contains(&i).then(|| json!(i));
        expect_error(&mut c, text, code, reference);
    }
    expect_error(&mut c, "binary", "binary_frame", None);
    assert_usable(&mut c);
    c.close_cleanly(1000);
}

fn refused_upgrade(addr: SocketAddr, query: &str) {
    let (req, _) = upgrade_request(&format!("/ws?{query}"), &[]);
    assert_error_response(addr, req.as_bytes(), 400);
}

#[test]
fn invalid_query_refuses_the_upgrade_with_400() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let long_channel = "c".repeat(129);
    let long_user = "u".repeat(65);
    for query in [
        "channel=a%20b".to_owned(),
        "channel=".to_owned(),
        "channel=a/b".to_owned(),
        format!("channel={long_channel}"),
        "channel=ok&channel=bad!".to_owned(),
        "user=".to_owned(),
        "user=a%2Fb".to_owned(),
        format!("user={long_user}"),
        "format=xml".to_owned(),
        "format=".to_owned(),
        "since=abc".to_owned(),
        "since=-1".to_owned(),
        "since=1.5".to_owned(),
        "channel=ok&since=".to_owned(),
    ] {
        refused_upgrade(addr, &query);
    }
    // The edges that are allowed.
    let mut c = ws_connect(
        addr,
        &format!(
            "channel={}&user={}&format=json&since=0",
            "c".repeat(128),
            "u".repeat(64)
        ),
    );
    assert_eq!(c.read_json()["type"], "subscribed");
}
