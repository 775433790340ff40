//! Arbitrary bytes as a client's JSON protocol frame, and as the query strings and resume
//! cursors a client controls: parsing must never panic, and whatever the server would send
//! back (the reply or the error) must be valid JSON that echoes `ref` intact.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::codec::cursor::Resume;
use switchboard::codec::position::Epoch;
use switchboard::codec::protocol::{self, Data, Op};

fn assert_json(text: &str) {
    if let Err(e) = serde_json::from_str::<serde_json::Value>(text) {
        panic!("server would send invalid JSON ({e}): {text}");
    }
}

fuzz_target!(|data: &[u8]| {
    match protocol::parse(data) {
        Ok(req) => {
            let reference = req.reference.map(|r| r.get());
            let epoch = Epoch::parse("k2v9x0q7m3ab").expect("a valid epoch");
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
            };
            assert_json(&reply);
            if let Some(r) = reference {
                let v: serde_json::Value = serde_json::from_str(&reply).expect("checked above");
                let echoed: serde_json::Value = serde_json::from_str(r).expect("ref is JSON");
                assert_eq!(v["ref"], echoed, "ref not echoed intact");
            }
        }
        Err((err, reference)) => {
            assert_json(&protocol::error_json(&err, reference.map(|r| r.get())))
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
