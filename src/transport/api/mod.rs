//! The plain-HTTP routes: health, the demo page, metrics, and the API (channels in
//! `channels.rs`, users in `users.rs`). Each answers with a complete response (JSON for the
//! API, with a JSON error body on failure) on a keep-alive connection — at once, or when the
//! engine's later answer arrives (the request is held).

pub mod channels;
pub mod reply;
pub mod users;

use crate::codec::http::{self, Request};
use crate::config::Config;
use crate::hub::engine::{Answered, EngineError};
use crate::transport::cx::Cx;
use crate::transport::pending::{HttpOp, PendingOp};
use crate::transport::router::Route;
use channels::{
    history, history_reply, presence, presence_batch, presence_reply, publish, published,
    users_reply,
};
use reply::{unavailable, ApiError, Asked, Caller, Reply, JSON};

use crate::codec::protocol::{self, OpError};
use crate::transport::access::Right;
use crate::transport::stats::WorkerStats;

pub use channels::MAX_PRESENCE_BATCH;
pub use reply::constant_time_eq;

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
    if let Err(e) = admit(route, param, req, cx) {
        write(cx.wbuf, Err(e), req.method == "HEAD", keep_alive, cors);
        return Responded::Done;
    }
    let asked = match route {
        Route::Healthz => Asked::Now(health(cx)),
        Route::Demo => Asked::Now(Ok((200, "text/html; charset=utf-8", DEMO_PAGE.into()))),
        Route::Publish => publish(param, req, body, cx),
        Route::History => history(param, req, cx),
        Route::Presence => presence(param, cx),
        Route::PresenceBatch => presence_batch(req, cx),
        Route::UserSend => users::send(param, req, body, cx),
        Route::UserDisconnect => users::disconnect(param, cx),
        Route::UserInfo => users::info(param, cx),
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

/// Who may call an API route, checked before it runs: the caller (API key, user token, or
/// open), its right on the channel (a user token's claims: publish for `/publish`,
/// subscribe for `/history` and `/presence`), the operator for the user routes and the
/// batch presence query, and the publish rate for callers other than the API key.
fn admit(route: Route, param: &str, req: &Request<'_>, cx: &mut Cx<'_>) -> Result<(), ApiError> {
    let right = match route {
        Route::Publish => Some(Right::Publish),
        Route::History | Route::Presence => Some(Right::Subscribe),
        Route::PresenceBatch | Route::UserSend | Route::UserDisconnect | Route::UserInfo => None,
        _ => return Ok(()),
    };
    let caller = Caller::of(req, cx.cfg, &cx.shared.access)?;
    match right {
        // An invalid name is the handler's 400.
        Some(right) if protocol::valid_channel(param) => caller.may(right, param)?,
        Some(_) => {}
        None => caller.operator()?,
    }
    if route == Route::Publish && !matches!(caller, Caller::Key) {
        if let Err(ms) = cx.buckets.take(cx.who, &cx.shared.access) {
            WorkerStats::count(&cx.stats.rate_limited);
            let mut e = ApiError::new(429, "rate_limited", OpError::RateLimited(ms).reason());
            e.retry_after = Some(ms.div_ceil(1000).max(1));
            return Err(e);
        }
    }
    Ok(())
}

/// Writes a reply as a complete response.
fn write(out: &mut Vec<u8>, reply: Reply, head_only: bool, keep_alive: bool, cors: &str) {
    let (status, ctype, body, extra) = match reply {
        Ok((status, ctype, body)) => (status, ctype, body, String::new()),
        Err(e) => {
            let extra = match (e.status, e.retry_after) {
                (401, _) => "WWW-Authenticate: Bearer realm=\"switchboard\"\r\n".into(),
                (_, Some(s)) => format!("Retry-After: {s}\r\n"),
                (503, _) => "Retry-After: 1\r\n".into(),
                _ => String::new(),
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
        (HttpOp::UserSend { user } | HttpOp::UserDisconnect { user }, Answered::Sent(r)) => {
            users::sent(&user, r)
        }
        (HttpOp::UserInfo { user }, Answered::User(r)) => users::info_reply(&user, r),
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
