//! The JSON protocol spoken on `/ws`: one JSON object per text frame. Pure: parsing client
//! operations and encoding server messages; no I/O and no channel state.
//!
//! Client → server: `subscribe` (`channel`, optional `since`, `presence`), `unsubscribe`,
//! `publish` (`channel`, `data`: any JSON), `presence` (`channel`), `history` (`channel`,
//! `since`, `limit`). Any op may carry `ref` (a string or number, echoed in its reply).
//! Server → client: `message`, `subscribed`, `unsubscribed`, `published`, `presence`,
//! `history`, `error`.

use std::borrow::Cow;
use std::fmt::Write as _;

use base64::Engine;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::codec::position::{Epoch, Since, MAX_EPOCH_BYTES};

pub use crate::names::{valid_channel, valid_user, MAX_CHANNEL_BYTES, MAX_USER_BYTES};
/// `ref` is echoed verbatim, so it is bounded: at most 64 bytes of JSON (string or number).
pub const MAX_REF_BYTES: usize = 64;
/// Messages returned by one `history` call at most; also the default `limit`.
pub const MAX_HISTORY_LIMIT: usize = 1000;

/// A client operation.
#[derive(Debug)]
pub enum Op<'a> {
    Subscribe {
        channel: Cow<'a, str>,
        since: Option<Since>,
        presence: bool,
    },
    Unsubscribe {
        channel: Cow<'a, str>,
    },
    Publish {
        channel: Cow<'a, str>,
        data: &'a RawValue,
    },
    Presence {
        channel: Cow<'a, str>,
    },
    History {
        channel: Cow<'a, str>,
        since: Option<Since>,
        limit: usize,
    },
    /// A newer connection token, before the current one expires.
    Refresh {
        token: Cow<'a, str>,
    },
}

/// A parsed client frame: the operation and its `ref`.
#[derive(Debug)]
pub struct Request<'a> {
    pub op: Op<'a>,
    pub reference: Option<&'a RawValue>,
}

/// Why an operation was refused. The connection stays open; the client gets an `error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpError {
    /// Not JSON, not an object, or a field of the wrong type.
    InvalidJson(String),
    UnknownOp,
    MissingField(&'static str),
    InvalidChannel,
    /// An `epoch` that is not 1-32 letters and digits.
    InvalidEpoch,
    /// `ref` over [`MAX_REF_BYTES`] or not a string/number.
    InvalidRef,
    /// A binary frame: the protocol is JSON text.
    BinaryFrame,
    TooManySubscriptions(usize),
    NotSubscribed,
    AlreadySubscribed,
    /// `publish` on a connection that did not present the API key (tokens off).
    Unauthorized,
    /// A `refresh` whose token does not verify (the reason says why); the connection keeps
    /// its current token.
    InvalidToken(&'static str),
    /// The connection's token does not allow this on this channel.
    Forbidden,
    /// Publishing faster than `--publish-rate`: retry after this many milliseconds.
    RateLimited(u64),
    /// At `--max-channels`: a new channel cannot be created now.
    TooManyChannels,
    /// The engine behind the channels is out of reach (cluster mode); try again later.
    Unavailable(Box<str>),
}

impl OpError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            OpError::InvalidJson(_) => "invalid_json",
            OpError::UnknownOp => "unknown_op",
            OpError::MissingField(_) => "missing_field",
            OpError::InvalidChannel => "invalid_channel",
            OpError::InvalidEpoch => "invalid_epoch",
            OpError::InvalidRef => "invalid_ref",
            OpError::BinaryFrame => "binary_frame",
            OpError::TooManySubscriptions(_) => "too_many_subscriptions",
            OpError::NotSubscribed => "not_subscribed",
            OpError::AlreadySubscribed => "already_subscribed",
            OpError::Unauthorized | OpError::InvalidToken(_) => "unauthorized",
            OpError::Forbidden => "forbidden",
            OpError::RateLimited(_) => "rate_limited",
            OpError::TooManyChannels => "too_many_channels",
            OpError::Unavailable(_) => "unavailable",
        }
    }

    pub fn reason(&self) -> String {
        match self {
            OpError::InvalidJson(e) => format!("invalid JSON: {e}"),
            OpError::UnknownOp => {
                "unknown op (subscribe, unsubscribe, publish, presence, history, refresh)".into()
            }
            OpError::MissingField(f) => format!("missing field: {f}"),
            OpError::InvalidChannel => {
                format!("channel must be 1-{MAX_CHANNEL_BYTES} bytes of A-Z a-z 0-9 _ - . : @")
            }
            OpError::InvalidEpoch => {
                format!(
                    "epoch must be 1-{MAX_EPOCH_BYTES} letters and digits, as the server gave it"
                )
            }
            OpError::InvalidRef => {
                format!("ref must be a string or number of at most {MAX_REF_BYTES} bytes")
            }
            OpError::BinaryFrame => {
                "binary frames are not part of the protocol; send JSON text".into()
            }
            OpError::TooManySubscriptions(n) => format!("at most {n} subscriptions per connection"),
            OpError::NotSubscribed => "not subscribed to this channel".into(),
            OpError::AlreadySubscribed => "already subscribed to this channel".into(),
            OpError::Unauthorized => {
                "publishing needs the publish token (Authorization: Bearer, or ?token= on the URL)"
                    .into()
            }
            OpError::InvalidToken(why) => format!("token refused: {why}"),
            OpError::Forbidden => "the connection's token does not allow this channel".into(),
            OpError::RateLimited(ms) => {
                format!("too many publishes (--publish-rate); retry in {ms} ms")
            }
            OpError::TooManyChannels => "too many channels on the server (--max-channels)".into(),
            OpError::Unavailable(why) => format!("service unavailable: {why}"),
        }
    }
}

fn some_raw<'de, D>(d: D) -> Result<Option<&'de RawValue>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    <&RawValue>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    op: Option<Cow<'a, str>>,
    #[serde(borrow)]
    channel: Option<Cow<'a, str>>,
    since: Option<u64>,
    #[serde(borrow)]
    epoch: Option<Cow<'a, str>>,
    limit: Option<u64>,
    presence: Option<bool>,
    #[serde(borrow)]
    token: Option<Cow<'a, str>>,
    // `null` is a valid payload, so `data` is captured raw whatever it holds.
    #[serde(borrow, default, deserialize_with = "some_raw")]
    data: Option<&'a RawValue>,
    #[serde(rename = "ref", borrow, default, deserialize_with = "some_raw")]
    reference: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RefOnly<'a> {
    #[serde(rename = "ref", borrow, default, deserialize_with = "some_raw")]
    reference: Option<&'a RawValue>,
}

/// Parses one text frame. On error, also returns the request's `ref` if it could be read, so
/// the error reply can carry it.
pub fn parse(frame: &[u8]) -> Result<Request<'_>, (OpError, Option<&RawValue>)> {
    // serde reads a struct from an array too (fields by position), so `["subscribe","c"]`
    // would pass as a request and `[1]` would lend its element as a `ref`: only an object is.
    let first = frame
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        return Err((
            OpError::InvalidJson("a request is a JSON object".into()),
            None,
        ));
    }
    let wire: Wire<'_> = match serde_json::from_slice(frame) {
        Ok(w) => w,
        Err(e) => {
            let reference = serde_json::from_slice::<RefOnly<'_>>(frame)
                .ok()
                .and_then(|r| r.reference)
                .filter(|r| ref_is_valid(r));
            return Err((OpError::InvalidJson(e.to_string()), reference));
        }
    };
    let reference = match wire.reference {
        Some(r) if !ref_is_valid(r) => return Err((OpError::InvalidRef, None)),
        r => r,
    };
    let fail = |e| Err((e, reference));
    let Some(op) = wire.op else {
        return fail(OpError::MissingField("op"));
    };
    if &*op == "refresh" {
        return match wire.token {
            Some(token) => Ok(Request {
                op: Op::Refresh { token },
                reference,
            }),
            None => fail(OpError::MissingField("token")),
        };
    }
    let channel = match wire.channel {
        Some(c) if valid_channel(&c) => c,
        Some(_) => return fail(OpError::InvalidChannel),
        None if matches!(
            &*op,
            "subscribe" | "unsubscribe" | "publish" | "presence" | "history"
        ) =>
        {
            return fail(OpError::MissingField("channel"))
        }
        None => return fail(OpError::UnknownOp),
    };
    let since = match (wire.since, wire.epoch) {
        (None, _) => None,
        (Some(id), None) => Some(Since::id(id)),
        (Some(id), Some(e)) => match Epoch::parse(&e) {
            Some(epoch) => Some(Since {
                id,
                epoch: Some(epoch),
            }),
            None => return fail(OpError::InvalidEpoch),
        },
    };
    let op = match &*op {
        "subscribe" => Op::Subscribe {
            channel,
            since,
            presence: wire.presence.unwrap_or(false),
        },
        "unsubscribe" => Op::Unsubscribe { channel },
        "publish" => match wire.data {
            Some(data) => Op::Publish { channel, data },
            None => return fail(OpError::MissingField("data")),
        },
        "presence" => Op::Presence { channel },
        "history" => Op::History {
            channel,
            since,
            limit: wire
                .limit
                .map_or(MAX_HISTORY_LIMIT, |l| (l as usize).min(MAX_HISTORY_LIMIT)),
        },
        _ => return fail(OpError::UnknownOp),
    };
    Ok(Request { op, reference })
}

fn ref_is_valid(r: &RawValue) -> bool {
    let s = r.get();
    s.len() <= MAX_REF_BYTES
        && (s.starts_with('"') || s.starts_with('-') || s.starts_with(|c: char| c.is_ascii_digit()))
}

/// A published payload as it arrived: JSON from the protocol or a JSON HTTP body, text or
/// bytes from other HTTP bodies.
#[derive(Debug, Clone, Copy)]
pub enum Data<'a> {
    Json(&'a str),
    Text(&'a str),
    Binary(&'a [u8]),
}

impl Data<'_> {
    /// The payload a raw (`format=raw`) subscriber receives, and whether it is text: a JSON
    /// string is unwrapped to its text, other JSON goes as its text, bytes as binary.
    pub fn raw(&self) -> (Cow<'_, [u8]>, bool) {
        match self {
            Data::Json(j) if j.starts_with('"') => match serde_json::from_str::<Cow<'_, str>>(j) {
                Ok(Cow::Borrowed(s)) => (Cow::Borrowed(s.as_bytes()), true),
                Ok(Cow::Owned(s)) => (Cow::Owned(s.into_bytes()), true),
                Err(_) => (Cow::Borrowed(j.as_bytes()), true),
            },
            Data::Json(j) => (Cow::Borrowed(j.as_bytes()), true),
            Data::Text(t) => (Cow::Borrowed(t.as_bytes()), true),
            Data::Binary(b) => (Cow::Borrowed(b), false),
        }
    }
}

/// Appends `s` as a JSON string literal.
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends `"ref":` and the request's `ref`, raw JSON already validated by [`parse`].
fn push_ref(out: &mut String, reference: Option<&str>) {
    if let Some(r) = reference {
        out.push_str(",\"ref\":");
        out.push_str(r);
    }
}

/// `{"type":"message","channel":..,"id":..,"data":..}`; binary data is base64 with
/// `"encoding":"base64"`.
pub fn message_json(channel: &str, id: u64, data: &Data<'_>) -> String {
    let mut out = String::with_capacity(64 + channel.len());
    out.push_str("{\"type\":\"message\",\"channel\":");
    push_json_str(&mut out, channel);
    let _ = write!(out, ",\"id\":{id},\"data\":");
    push_data(&mut out, data);
    out.push('}');
    out
}

/// A payload as the `data` member (binary as base64, with `"encoding":"base64"` after it).
fn push_data(out: &mut String, data: &Data<'_>) {
    match data {
        Data::Json(j) => out.push_str(j),
        Data::Text(t) => push_json_str(out, t),
        Data::Binary(b) => {
            out.push('"');
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(b));
            out.push_str("\",\"encoding\":\"base64");
            out.push('"');
        }
    }
}

/// The stream a position belongs to: `,"epoch":"E"`.
fn push_epoch(out: &mut String, epoch: &Epoch) {
    out.push_str(",\"epoch\":\"");
    out.push_str(epoch.as_str());
    out.push('"');
}

/// `{"type":"direct","data":..}`: a message to one user's connections.
pub fn direct_json(data: &Data<'_>) -> String {
    let mut out = String::from("{\"type\":\"direct\",\"data\":");
    push_data(&mut out, data);
    out.push('}');
    out
}

pub fn subscribed_json(
    channel: &str,
    last_id: u64,
    epoch: &Epoch,
    recovered: bool,
    reference: Option<&str>,
) -> String {
    let mut out = String::from("{\"type\":\"subscribed\",\"channel\":");
    push_json_str(&mut out, channel);
    let _ = write!(out, ",\"id\":{last_id}");
    push_epoch(&mut out, epoch);
    let _ = write!(out, ",\"recovered\":{recovered}");
    push_ref(&mut out, reference);
    out.push('}');
    out
}

pub fn unsubscribed_json(channel: &str, reference: Option<&str>) -> String {
    let mut out = String::from("{\"type\":\"unsubscribed\",\"channel\":");
    push_json_str(&mut out, channel);
    push_ref(&mut out, reference);
    out.push('}');
    out
}

pub fn published_json(channel: &str, id: u64, epoch: &Epoch, reference: Option<&str>) -> String {
    let mut out = String::from("{\"type\":\"published\",\"channel\":");
    push_json_str(&mut out, channel);
    let _ = write!(out, ",\"id\":{id}");
    push_epoch(&mut out, epoch);
    push_ref(&mut out, reference);
    out.push('}');
    out
}

/// The members of a channel (reply to a `presence` query).
pub fn presence_json<'u>(
    channel: &str,
    users: impl IntoIterator<Item = &'u str>,
    reference: Option<&str>,
) -> String {
    let mut out = String::from("{\"type\":\"presence\",\"channel\":");
    push_json_str(&mut out, channel);
    out.push_str(",\"users\":[");
    for (i, u) in users.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(&mut out, u);
    }
    out.push(']');
    push_ref(&mut out, reference);
    out.push('}');
    out
}

/// A join or leave, sent to subscribers that asked for presence events.
pub fn presence_event_json(channel: &str, user: &str, joined: bool) -> String {
    let mut out = String::from("{\"type\":\"presence\",\"channel\":");
    push_json_str(&mut out, channel);
    out.push_str(if joined {
        ",\"event\":\"join\",\"user\":"
    } else {
        ",\"event\":\"leave\",\"user\":"
    });
    push_json_str(&mut out, user);
    out.push('}');
    out
}

/// A `history` reply: `messages` are the `message` objects, oldest first.
pub fn history_json<'m>(
    channel: &str,
    epoch: &Epoch,
    recovered: bool,
    messages: impl IntoIterator<Item = &'m str>,
    reference: Option<&str>,
) -> String {
    let mut out = String::from("{\"type\":\"history\",\"channel\":");
    push_json_str(&mut out, channel);
    push_epoch(&mut out, epoch);
    let _ = write!(out, ",\"recovered\":{recovered},\"messages\":[");
    for (i, m) in messages.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(m);
    }
    out.push(']');
    push_ref(&mut out, reference);
    out.push('}');
    out
}

pub fn error_json(err: &OpError, reference: Option<&str>) -> String {
    let mut out = String::from("{\"type\":\"error\",\"code\":");
    push_json_str(&mut out, err.code());
    out.push_str(",\"reason\":");
    push_json_str(&mut out, &err.reason());
    if let OpError::RateLimited(ms) = err {
        let _ = write!(out, ",\"retry_after_ms\":{ms}");
    }
    push_ref(&mut out, reference);
    out.push('}');
    out
}

/// `{"type":"refreshed","exp":N}`: the connection now lives until `exp` (unix seconds).
pub fn refreshed_json(exp: u64, reference: Option<&str>) -> String {
    let mut out = format!("{{\"type\":\"refreshed\",\"exp\":{exp}");
    push_ref(&mut out, reference);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_carries_a_token_and_errors_say_what_to_do() {
        match ok(r#"{"op":"refresh","token":"a.b.c","ref":2}"#).op {
            Op::Refresh { token } => assert_eq!(token, "a.b.c"),
            other => panic!("{other:?}"),
        }
        assert_eq!(err(r#"{"op":"refresh"}"#).0, OpError::MissingField("token"));
        assert_eq!(
            error_json(&OpError::RateLimited(250), Some("7")),
            r#"{"type":"error","code":"rate_limited","reason":"too many publishes (--publish-rate); retry in 250 ms","retry_after_ms":250,"ref":7}"#
        );
        assert_eq!(OpError::Forbidden.code(), "forbidden");
        assert_eq!(OpError::InvalidToken("expired").code(), "unauthorized");
        assert_eq!(
            refreshed_json(1700000000, Some("\"r\"")),
            r#"{"type":"refreshed","exp":1700000000,"ref":"r"}"#
        );
    }

    fn ok(s: &str) -> Request<'_> {
        match parse(s.as_bytes()) {
            Ok(r) => r,
            Err((e, _)) => panic!("{s}: {e:?}"),
        }
    }

    fn err(s: &str) -> (OpError, Option<String>) {
        match parse(s.as_bytes()) {
            Ok(r) => panic!("{s} parsed as {r:?}"),
            Err((e, r)) => (e, r.map(|r| r.get().to_string())),
        }
    }

    #[test]
    fn parses_each_op() {
        let r = ok(r#"{"op":"subscribe","channel":"room:1","since":41,"ref":"a"}"#);
        assert!(
            matches!(r.op, Op::Subscribe { ref channel, since: Some(Since { id: 41, epoch: None }), presence: false } if channel == "room:1")
        );
        assert_eq!(r.reference.map(RawValue::get), Some("\"a\""));
        let r = ok(r#"{"op":"subscribe","channel":"c","since":4,"epoch":"ab12"}"#);
        assert!(
            matches!(r.op, Op::Subscribe { since: Some(Since { id: 4, epoch: Some(ref e) }), .. } if e.as_str() == "ab12")
        );
        assert_eq!(
            err(r#"{"op":"history","channel":"c","since":4,"epoch":"a-b","ref":1}"#),
            (OpError::InvalidEpoch, Some("1".into()))
        );
        let r = ok(r#"{"op":"subscribe","channel":"c","presence":true}"#);
        assert!(matches!(
            r.op,
            Op::Subscribe {
                since: None,
                presence: true,
                ..
            }
        ));
        assert!(
            matches!(ok(r#"{"op":"unsubscribe","channel":"c"}"#).op, Op::Unsubscribe { channel } if channel == "c")
        );
        let r = ok(r#"{"op":"publish","channel":"c","data":{"x":[1,2]},"ref":7}"#);
        match r.op {
            Op::Publish { data, .. } => assert_eq!(data.get(), r#"{"x":[1,2]}"#),
            other => panic!("{other:?}"),
        }
        match ok(r#"{"op":"publish","channel":"c","data":null}"#).op {
            Op::Publish { data, .. } => assert_eq!(data.get(), "null"),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(ok(r#"{"op":"presence","channel":"c"}"#).op, Op::Presence { channel } if channel == "c")
        );
        assert!(matches!(
            ok(r#"{"op":"history","channel":"c","since":3,"limit":5000}"#).op,
            Op::History {
                since: Some(Since { id: 3, .. }),
                limit: MAX_HISTORY_LIMIT,
                ..
            }
        ));
        assert!(matches!(
            ok(r#"{"op":"history","channel":"c","limit":2}"#).op,
            Op::History {
                since: None,
                limit: 2,
                ..
            }
        ));
        // Escaped strings are accepted (owned, not borrowed).
        assert!(
            matches!(ok(r#"{"op":"unsubscribe","channel":"\u0063"}"#).op, Op::Unsubscribe { channel } if channel == "c")
        );
    }

    #[test]
    fn errors_carry_the_ref_when_readable() {
        assert_eq!(err("not json").0.code(), "invalid_json");
        assert_eq!(err("[1,2]").0.code(), "invalid_json");
        // An array is not a request, even one whose elements line up with the fields, and
        // its elements are not a `ref` (the fuzzer found `[177e+6426]` echoed as one).
        assert_eq!(
            err(r#" ["subscribe","c"]"#),
            (
                OpError::InvalidJson("a request is a JSON object".into()),
                None
            )
        );
        assert_eq!(err("[177e+6426] \n").1, None);
        assert_eq!(err("\r\n\t").0.code(), "invalid_json");
        assert!(parse(b" \n{\"op\":\"presence\",\"channel\":\"c\"}").is_ok());
        let (e, r) = err(r#"{"op":"subscribe","channel":"c","since":"x","ref":"r1"}"#);
        assert_eq!((e.code(), r.as_deref()), ("invalid_json", Some("\"r1\"")));
        let (e, r) = err(r#"{"op":"dance","channel":"c","ref":5}"#);
        assert_eq!((e, r.as_deref()), (OpError::UnknownOp, Some("5")));
        assert_eq!(err(r#"{"channel":"c"}"#).0, OpError::MissingField("op"));
        assert_eq!(
            err(r#"{"op":"subscribe"}"#).0,
            OpError::MissingField("channel")
        );
        assert_eq!(
            err(r#"{"op":"publish","channel":"c"}"#).0,
            OpError::MissingField("data")
        );
        assert_eq!(
            err(r#"{"op":"subscribe","channel":"a b"}"#).0,
            OpError::InvalidChannel
        );
        assert_eq!(
            err(r#"{"op":"subscribe","channel":""}"#).0,
            OpError::InvalidChannel
        );
        let long = format!(r#"{{"op":"subscribe","channel":"{}"}}"#, "x".repeat(129));
        assert_eq!(err(&long).0, OpError::InvalidChannel);
        let long_ref = format!(
            r#"{{"op":"subscribe","channel":"c","ref":"{}"}}"#,
            "x".repeat(70)
        );
        assert_eq!(err(&long_ref).0, OpError::InvalidRef);
        assert_eq!(
            err(r#"{"op":"subscribe","channel":"c","ref":{"a":1}}"#).0,
            OpError::InvalidRef
        );
    }

    #[test]
    fn names() {
        assert!(
            valid_channel("room:1")
                && valid_channel("a.b-c_d@e")
                && valid_channel(&"x".repeat(128))
        );
        assert!(
            !valid_channel("")
                && !valid_channel("a/b")
                && !valid_channel("é")
                && !valid_channel(&"x".repeat(129))
        );
        assert!(valid_user("alice") && !valid_user(&"u".repeat(65)));
    }

    #[test]
    fn encodings_are_valid_json() {
        let e = Epoch::parse("E1").unwrap();
        let all = [
            message_json("c", 3, &Data::Json(r#"{"a":1}"#)),
            message_json("c", 4, &Data::Text("line1\nline\"2\"\u{1}")),
            message_json("c", 5, &Data::Binary(&[0, 255])),
            subscribed_json("c", 9, &e, false, None),
            unsubscribed_json("c", None),
            published_json("c", 2, &e, None),
            presence_json("c", ["alice", "bob"], None),
            presence_event_json("c", "alice", true),
            history_json("c", &e, true, ["{\"x\":1}", "{\"y\":2}"], None),
            error_json(&OpError::UnknownOp, None),
        ];
        for j in &all {
            let v: serde_json::Value =
                serde_json::from_str(j).unwrap_or_else(|e| panic!("{j}: {e}"));
            assert!(v.get("type").is_some(), "{j}");
        }
        assert_eq!(
            all[0],
            r#"{"type":"message","channel":"c","id":3,"data":{"a":1}}"#
        );
        let text: serde_json::Value = serde_json::from_str(&all[1]).unwrap();
        assert_eq!(text["data"], "line1\nline\"2\"\u{1}");
        assert_eq!(
            all[2],
            r#"{"type":"message","channel":"c","id":5,"data":"AP8=","encoding":"base64"}"#
        );
        let r = RawValue::from_string("\"q\"".into()).unwrap();
        assert_eq!(
            subscribed_json("c", 1, &e, true, Some(r.get())),
            r#"{"type":"subscribed","channel":"c","id":1,"epoch":"E1","recovered":true,"ref":"q"}"#
        );
    }

    #[test]
    fn raw_payloads() {
        assert_eq!(
            Data::Json("\"hi\\n\"").raw(),
            (Cow::Owned::<[u8]>(b"hi\n".to_vec()), true)
        );
        assert_eq!(Data::Json("\"hi\"").raw().0.as_ref(), b"hi");
        assert_eq!(Data::Json("{\"a\":1}").raw().0.as_ref(), b"{\"a\":1}");
        assert_eq!(
            Data::Text("plain").raw(),
            (Cow::Borrowed(&b"plain"[..]), true)
        );
        assert_eq!(
            Data::Binary(&[1, 2]).raw(),
            (Cow::Borrowed(&[1u8, 2][..]), false)
        );
    }
}
