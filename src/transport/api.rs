//! The plain-HTTP routes: health, publishing, history and presence. Each answers with a
//! complete response (JSON for the API, with a JSON error body on failure) on a keep-alive
//! connection — at once, or when the engine's later answer arrives (the request is held).

use std::fmt::Write as _;

use serde_json::value::RawValue;

use crate::codec::http::{self, Request};
use crate::codec::position::{Epoch, Since};
use crate::codec::protocol::{self, Data, OpError, MAX_HISTORY_LIMIT};
use crate::codec::query;
use crate::config::Config;
use crate::hub::engine::{Answer, Answered, EngineError, History, Published};
use crate::transport::cx::Cx;
use crate::transport::pending::{HttpOp, PendingOp};
use crate::transport::router::Route;

/// Users one batch presence query may ask about.
pub const MAX_PRESENCE_BATCH: usize = 1000;

const JSON: &str = "application/json";

struct ApiError {
    status: u16,
    code: &'static str,
    reason: String,
}

impl ApiError {
    fn new(status: u16, code: &'static str, reason: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            reason: reason.into(),
        }
    }

    fn json(&self) -> String {
        let mut out = String::from("{\"error\":");
        protocol::push_json_str(&mut out, self.code);
        out.push_str(",\"reason\":");
        protocol::push_json_str(&mut out, &self.reason);
        out.push('}');
        out
    }
}

/// The demo page: one static file built into the binary.
const DEMO_PAGE: &str = include_str!("demo.html");

/// CORS headers for a response to `origin`, when `--allowed-origin` lists it (none are sent
/// without `--allowed-origin`: then only same-origin pages may use the HTTP API).
pub fn cors_headers(origin: Option<&str>, cfg: &Config) -> String {
    match origin {
        Some(o)
            if cfg
                .allowed_origins
                .iter()
                .any(|a| a.eq_ignore_ascii_case(o)) =>
        {
            format!("Access-Control-Allow-Origin: {o}\r\nVary: Origin\r\n")
        }
        _ => String::new(),
    }
}

/// Answers a CORS preflight (`OPTIONS`).
pub fn preflight(out: &mut Vec<u8>, cors: &str, keep_alive: bool) {
    let headers = format!(
        "{cors}Access-Control-Allow-Methods: GET, POST, OPTIONS\r\nAccess-Control-Allow-Headers: Authorization, Content-Type, Last-Event-ID\r\nAccess-Control-Max-Age: 600\r\n"
    );
    http::write_response(out, 204, "text/plain", &headers, b"", 0, !keep_alive);
}

/// How a request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Responded {
    /// The response is written.
    Done,
    /// The engine answers later: hold the connection for answer `ticket`.
    Held { ticket: u32 },
}

/// A response body, or a refusal.
type Reply = Result<(u16, &'static str, String), ApiError>;

/// Answers a complete non-streaming request into the batch buffer (or holds it).
pub fn respond(
    route: Route,
    param: &str,
    req: &Request<'_>,
    body: &[u8],
    keep_alive: bool,
    cors: &str,
    cx: &mut Cx<'_>,
) -> Responded {
    let to = cx.reply_to();
    let asked = match route {
        Route::Healthz => Asked::Now(health(cx)),
        Route::Demo => Asked::Now(Ok((200, "text/html; charset=utf-8", DEMO_PAGE.into()))),
        Route::Publish => publish(param, req, body, cx),
        Route::History => history(param, req, cx),
        Route::Presence => presence(param, cx),
        Route::PresenceBatch => presence_batch(req, cx),
        Route::Metrics => {
            let mut text = String::with_capacity(8 * 1024);
            crate::transport::metrics::render(cx.shared, &mut text);
            Asked::Now(Ok((200, crate::transport::metrics::CONTENT_TYPE, text)))
        }
        Route::Echo | Route::Ws | Route::Sse | Route::Poll => Asked::Now(Err(ApiError::new(
            400,
            "not_a_plain_request",
            "this route is a stream",
        ))),
    };
    match asked {
        Asked::Now(reply) => {
            write(cx.wbuf, reply, req.method == "HEAD", keep_alive, cors);
            Responded::Done
        }
        Asked::Later(op) => {
            cx.park(to, PendingOp::Http(op));
            Responded::Held { ticket: to.ticket }
        }
    }
}

/// What a route's handler did: answered, or asked the engine for a later answer.
enum Asked {
    Now(Reply),
    Later(HttpOp),
}

/// Writes a reply as a complete response.
fn write(out: &mut Vec<u8>, reply: Reply, head_only: bool, keep_alive: bool, cors: &str) {
    let (status, ctype, body, extra) = match reply {
        Ok((status, ctype, body)) => (status, ctype, body, ""),
        Err(e) => {
            let extra = match e.status {
                401 => "WWW-Authenticate: Bearer\r\n",
                503 => "Retry-After: 1\r\n",
                _ => "",
            };
            (e.status, JSON, e.json(), extra)
        }
    };
    let headers = format!("{cors}{extra}");
    let bytes = if head_only { &b""[..] } else { body.as_bytes() };
    http::write_response(out, status, ctype, &headers, bytes, body.len(), !keep_alive);
}

/// The engine's later answer to a held request, written as its response.
pub fn on_answer(
    op: HttpOp,
    answer: Answered,
    out: &mut Vec<u8>,
    head_only: bool,
    keep_alive: bool,
    cors: &str,
) {
    let reply = match (op, answer) {
        (HttpOp::Publish { channel }, Answered::Published(r)) => published(&channel, r),
        (HttpOp::History { channel }, Answered::History(r)) => history_reply(&channel, r),
        (HttpOp::Presence { channel }, Answered::Presence(r)) => presence_reply(&channel, r),
        (HttpOp::Users { users }, Answered::Users(r)) => users_reply(&users, r),
        (_, _) => Err(unavailable(&EngineError::Unavailable(
            "mismatched answer".into(),
        ))),
    };
    write(out, reply, head_only, keep_alive, cors);
}

/// `GET /healthz`: `200 ok` while the node serves; `503` (with the reason) while it drains
/// or its engine is out of reach, so a load balancer sends new clients elsewhere.
fn health(cx: &Cx<'_>) -> Reply {
    const TEXT: &str = "text/plain; charset=utf-8";
    if cx
        .shared
        .shutting_down
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        return Ok((503, TEXT, "draining\n".into()));
    }
    match cx.hub.engine.health() {
        Ok(()) => Ok((200, TEXT, "ok\n".into())),
        Err(why) => Ok((503, TEXT, format!("unavailable: {why}\n"))),
    }
}

/// A `503 unavailable` for a request the engine could not answer.
pub fn write_unavailable(
    out: &mut Vec<u8>,
    reason: &str,
    head_only: bool,
    keep_alive: bool,
    cors: &str,
) {
    let e = ApiError::new(503, "unavailable", reason);
    write(out, Err(e), head_only, keep_alive, cors);
}

/// An engine out of reach: `503 {"error":"unavailable"}` (with `Retry-After`).
fn unavailable(e: &EngineError) -> ApiError {
    ApiError::new(503, "unavailable", e.reason())
}

/// Turns an engine call into a reply now, or a later one to wait for as `op`.
fn ask<T>(
    answer: Answer<T>,
    now: impl FnOnce(Result<T, EngineError>) -> Reply,
    later: impl FnOnce() -> HttpOp,
) -> Asked {
    match answer {
        Answer::Now(r) => Asked::Now(now(r)),
        Answer::Later => Asked::Later(later()),
    }
}

fn channel(param: &str) -> Result<&str, ApiError> {
    if protocol::valid_channel(param) {
        Ok(param)
    } else {
        Err(ApiError::new(
            400,
            "invalid_channel",
            protocol::OpError::InvalidChannel.reason(),
        ))
    }
}

fn publish(param: &str, req: &Request<'_>, body: &[u8], cx: &Cx<'_>) -> Asked {
    match publish_checked(param, req, body, cx) {
        Ok(asked) => asked,
        Err(e) => Asked::Now(Err(e)),
    }
}

fn publish_checked(
    param: &str,
    req: &Request<'_>,
    body: &[u8],
    cx: &Cx<'_>,
) -> Result<Asked, ApiError> {
    if let Some(token) = cx.cfg.publish_token.as_deref() {
        let given = req
            .authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            return Err(ApiError::new(
                401,
                "unauthorized",
                "missing or wrong bearer token",
            ));
        }
    }
    let channel = channel(param)?;
    let is_json = req.content_type.is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case(JSON))
    });
    let data = if is_json {
        let raw: &RawValue = serde_json::from_slice(body)
            .map_err(|e| ApiError::new(400, "invalid_json", e.to_string()))?;
        Data::Json(raw.get())
    } else {
        match std::str::from_utf8(body) {
            Ok(text) => Data::Text(text),
            Err(_) => Data::Binary(body),
        }
    };
    Ok(ask(
        cx.hub.publish(channel, &data, cx.reply_to()),
        |r| published(channel, r),
        || HttpOp::Publish {
            channel: channel.into(),
        },
    ))
}

fn published(channel: &str, r: Result<Published, EngineError>) -> Reply {
    let p = r.map_err(|e| unavailable(&e))?;
    let mut out = String::from("{\"channel\":");
    protocol::push_json_str(&mut out, channel);
    let _ = write!(out, ",\"id\":{},\"epoch\":\"{}\"}}", p.id, p.epoch);
    Ok((200, JSON, out))
}

fn history(param: &str, req: &Request<'_>, cx: &Cx<'_>) -> Asked {
    match history_checked(param, req, cx) {
        Ok(asked) => asked,
        Err(e) => Asked::Now(Err(e)),
    }
}

fn history_checked(param: &str, req: &Request<'_>, cx: &Cx<'_>) -> Result<Asked, ApiError> {
    let channel = channel(param)?;
    let epoch =
        match query::first(req.query, "epoch") {
            Some(e) => Some(Epoch::parse(&e).ok_or_else(|| {
                ApiError::new(400, "invalid_epoch", OpError::InvalidEpoch.reason())
            })?),
            None => None,
        };
    let since = match query::first(req.query, "since") {
        Some(v) => Some(Since {
            id: v
                .parse::<u64>()
                .map_err(|_| ApiError::new(400, "invalid_since", "since must be a message id"))?,
            epoch,
        }),
        None => None,
    };
    let limit = match query::first(req.query, "limit") {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| ApiError::new(400, "invalid_limit", "limit must be a number"))?
            .min(MAX_HISTORY_LIMIT),
        None => MAX_HISTORY_LIMIT,
    };
    Ok(ask(
        cx.hub
            .engine
            .history(channel, since.as_ref(), limit, cx.reply_to()),
        |r| history_reply(channel, r),
        || HttpOp::History {
            channel: channel.into(),
        },
    ))
}

fn history_reply(channel: &str, r: Result<History, EngineError>) -> Reply {
    let h = r.map_err(|e| unavailable(&e))?;
    let json = protocol::history_json(
        channel,
        &h.epoch,
        h.recovered,
        h.messages.iter().map(|m| m.json()),
        None,
    );
    Ok((200, JSON, json))
}

fn presence(param: &str, cx: &Cx<'_>) -> Asked {
    let channel = match channel(param) {
        Ok(c) => c,
        Err(e) => return Asked::Now(Err(e)),
    };
    ask(
        cx.hub.engine.presence(channel, cx.reply_to()),
        |r| presence_reply(channel, r),
        || HttpOp::Presence {
            channel: channel.into(),
        },
    )
}

fn presence_reply(channel: &str, r: Result<Vec<Box<str>>, EngineError>) -> Reply {
    let users = r.map_err(|e| unavailable(&e))?;
    let json = protocol::presence_json(channel, users.iter().map(|u| &**u), None);
    Ok((200, JSON, json))
}

fn presence_batch(req: &Request<'_>, cx: &Cx<'_>) -> Asked {
    let users = match batch_users(req) {
        Ok(u) => u,
        Err(e) => return Asked::Now(Err(e)),
    };
    let names: Vec<&str> = users.iter().map(|u| &**u).collect();
    match cx.hub.engine.users_online(&names, cx.reply_to()) {
        Answer::Now(r) => Asked::Now(users_reply(&users, r)),
        Answer::Later => Asked::Later(HttpOp::Users { users }),
    }
}

/// The users a batch presence query names: each valid, each once, at most
/// [`MAX_PRESENCE_BATCH`].
fn batch_users(req: &Request<'_>) -> Result<Vec<Box<str>>, ApiError> {
    let mut users: Vec<Box<str>> = Vec::new();
    for user in query::all(req.query, "user") {
        // A name asked twice is answered once (JSON object keys are unique).
        if users.iter().any(|u| **u == *user) {
            continue;
        }
        if !protocol::valid_user(&user) {
            return Err(ApiError::new(
                400,
                "invalid_user",
                "user must be 1-64 bytes of A-Z a-z 0-9 _ - . : @",
            ));
        }
        if users.len() == MAX_PRESENCE_BATCH {
            return Err(ApiError::new(
                400,
                "too_many_users",
                format!("at most {MAX_PRESENCE_BATCH} users per query"),
            ));
        }
        users.push(user.into());
    }
    if users.is_empty() {
        return Err(ApiError::new(
            400,
            "missing_user",
            "give one or more ?user=NAME",
        ));
    }
    Ok(users)
}

fn users_reply(users: &[Box<str>], r: Result<Vec<bool>, EngineError>) -> Reply {
    let online = r.map_err(|e| unavailable(&e))?;
    let mut out = String::from("{\"users\":{");
    for (i, (user, on)) in users.iter().zip(online).enumerate() {
        if i > 0 {
            out.push(',');
        }
        protocol::push_json_str(&mut out, user);
        out.push_str(if on { ":true" } else { ":false" });
    }
    out.push_str("}}");
    Ok((200, JSON, out))
}

/// Compares secrets without an early exit that would leak how much matched.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_compare() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }

    #[test]
    fn error_body_is_json() {
        let e = ApiError::new(400, "x", "a \"quoted\" reason");
        let v: serde_json::Value = serde_json::from_str(&e.json()).unwrap();
        assert_eq!(v["error"], "x");
        assert_eq!(v["reason"], "a \"quoted\" reason");
    }
}
