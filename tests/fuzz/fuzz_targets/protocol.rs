//! Arbitrary bytes as a client's JSON protocol frame, and as the query strings and resume
//! cursors a client controls: parsing must never panic, and whatever the server would send
//! back (the reply or the error) must be valid JSON that echoes `ref` intact.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use switchboard::codec::cursor::Resume;
use switchboard::codec::position::Epoch;
use switchboard::codec::protocol::{self, Data, Op};

/// JSON by the grammar (RFC 8259). Not `Value`: a number like `1e999` is valid JSON that
/// `Value` refuses as out of f64 range, and a client may send one as its `ref`.
fn assert_json(text: &str) {
    if let Err(e) = serde_json::from_str::<&RawValue>(text) {
        panic!("server would send invalid JSON ({e}): {text}");
    }
}

/// The reply's members, each as the raw JSON text it carries.
fn members(reply: &str) -> BTreeMap<String, &RawValue> {
    match serde_json::from_str(reply) {
        Ok(m) => m,
        Err(e) => panic!("a reply is a JSON object ({e}): {reply}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let epoch = Epoch::parse("e1").expect("an epoch");
    match protocol::parse(data) {
        Ok(req) => {
            let reference = req.reference.map(|r| r.get());
            let reply = match &req.op {
                Op::Subscribe { channel, .. } => {
                    protocol::subscribed_json(channel, 1, &epoch, true, reference)
                }
                Op::Unsubscribe { channel } => protocol::unsubscribed_json(channel, reference),
                Op::Publish { channel, data } => {
                    let msg = protocol::message_json(channel, 7, &Data::Json(data.get()));
                    assert_json(&msg);
                    let payload = Data::Json(data.get());
                    let (raw, _) = payload.raw();
                    let _ = raw.len();
                    protocol::published_json(channel, 7, &epoch, reference)
                }
                Op::Presence { channel } => protocol::presence_json(channel, ["u"], reference),
                Op::History { channel, limit, .. } => {
                    assert!(*limit <= protocol::MAX_HISTORY_LIMIT);
                    protocol::history_json(channel, &epoch, true, [], reference)
                }
                Op::Refresh { token } => {
                    let _ = token.len();
                    protocol::refreshed_json(1, reference)
                }
            };
            assert_json(&reply);
            let echoed = members(&reply).get("ref").map(|r| r.get());
            assert_eq!(echoed, reference, "ref not echoed intact");
        }
        Err((err, reference)) => {
            let reference = reference.map(|r| r.get());
            let reply = protocol::error_json(&err, reference);
            assert_json(&reply);
            assert_eq!(members(&reply).get("ref").map(|r| r.get()), reference);
            // A `ref` comes only from a request object, never from inside an array.
            if reference.is_some() {
                assert_eq!(data.iter().find(|b| !b.is_ascii_whitespace()), Some(&b'{'));
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        // The same bytes as text: publishes over HTTP, query strings, cursors.
        assert_json(&protocol::message_json("c", 1, &Data::Text(text)));
        for (k, v) in switchboard::codec::query::pairs(text) {
            let _ = (k.len(), v.len());
        }
        if let Some(Resume::PerChannel(list)) = Resume::parse(text) {
            assert!(list.iter().all(|(c, _)| protocol::valid_channel(c)));
        }
    }
    assert_json(&protocol::message_json("c", 1, &Data::Binary(data)));
});
