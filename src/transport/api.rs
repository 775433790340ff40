//! The plain-HTTP routes: health, publishing, history and presence. Each answers with a
//! complete response (JSON for the API, with a JSON error body on failure) on a keep-alive
//! connection.

use std::fmt::Write as _;

use serde_json::value::RawValue;

use crate::codec::http::{self, Request};
use crate::codec::protocol::{self, Data, MAX_HISTORY_LIMIT};
use crate::codec::query;
use crate::config::Config;
use crate::transport::dispatch::Cx;
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

/// Answers a complete non-streaming request into the batch buffer.
pub fn respond(
    route: Route,
    param: &str,
    req: &Request<'_>,
    body: &[u8],
    keep_alive: bool,
    cors: &str,
    cx: &mut Cx<'_>,
) {
    let head_only = req.method == "HEAD";
    let result = match route {
        Route::Healthz => Ok((200, "text/plain; charset=utf-8", "ok\n".to_string(), "")),
        Route::Demo => Ok((200, "text/html; charset=utf-8", DEMO_PAGE.to_string(), "")),
        Route::Publish => publish(param, req, body, cx).map(|j| (200, JSON, j, "")),
        Route::History => history(param, req, cx).map(|j| (200, JSON, j, "")),
        Route::Presence => channel(param).map(|c| {
            let users = cx.hub.presence(c);
            (
                200,
                JSON,
                protocol::presence_json(c, users.iter().map(|u| &**u), None),
                "",
            )
        }),
        Route::PresenceBatch => presence_batch(req, cx).map(|j| (200, JSON, j, "")),
        Route::Metrics => {
            let mut text = String::with_capacity(8 * 1024);
            crate::transport::metrics::render(cx.shared, &mut text);
            Ok((200, crate::transport::metrics::CONTENT_TYPE, text, ""))
        }
        Route::Echo | Route::Ws | Route::Sse | Route::Poll => Err(ApiError::new(
            400,
            "not_a_plain_request",
            "this route is a stream",
        )),
    };
    let (status, ctype, body, extra) = match result {
        Ok(r) => r,
        Err(e) => {
            let extra = if e.status == 401 {
                "WWW-Authenticate: Bearer\r\n"
            } else {
                ""
            };
            (e.status, JSON, e.json(), extra)
        }
    };
    let headers = format!("{cors}{extra}");
    let bytes = if head_only { &b""[..] } else { body.as_bytes() };
    http::write_response(
        cx.wbuf,
        status,
        ctype,
        &headers,
        bytes,
        body.len(),
        !keep_alive,
    );
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

fn publish(param: &str, req: &Request<'_>, body: &[u8], cx: &Cx<'_>) -> Result<String, ApiError> {
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
    let id = cx.hub.publish(channel, &data);
    let mut out = String::from("{\"channel\":");
    protocol::push_json_str(&mut out, channel);
    let _ = write!(out, ",\"id\":{id}}}");
    Ok(out)
}

fn history(param: &str, req: &Request<'_>, cx: &Cx<'_>) -> Result<String, ApiError> {
    let channel = channel(param)?;
    let since = match query::first(req.query, "since") {
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| ApiError::new(400, "invalid_since", "since must be a message id"))?,
        ),
        None => None,
    };
    let limit = match query::first(req.query, "limit") {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| ApiError::new(400, "invalid_limit", "limit must be a number"))?
            .min(MAX_HISTORY_LIMIT),
        None => MAX_HISTORY_LIMIT,
    };
    let (recovered, msgs) = cx.hub.history(channel, since, limit);
    Ok(protocol::history_json(
        channel,
        recovered,
        msgs.iter().map(|m| m.json()),
        None,
    ))
}

fn presence_batch(req: &Request<'_>, cx: &Cx<'_>) -> Result<String, ApiError> {
    let mut out = String::from("{\"users\":{");
    let mut n = 0;
    let mut seen: Vec<std::borrow::Cow<'_, str>> = Vec::new();
    for user in query::all(req.query, "user") {
        // A name asked twice is answered once (JSON object keys are unique).
        if seen.contains(&user) {
            continue;
        }
        if !protocol::valid_user(&user) {
            return Err(ApiError::new(
                400,
                "invalid_user",
                "user must be 1-64 bytes of A-Z a-z 0-9 _ - . : @",
            ));
        }
        n += 1;
        if n > MAX_PRESENCE_BATCH {
            return Err(ApiError::new(
                400,
                "too_many_users",
                format!("at most {MAX_PRESENCE_BATCH} users per query"),
            ));
        }
        if n > 1 {
            out.push(',');
        }
        protocol::push_json_str(&mut out, &user);
        out.push_str(if cx.hub.user_online(&user) {
            ":true"
        } else {
            ":false"
        });
        seen.push(user);
    }
    if n == 0 {
        return Err(ApiError::new(
            400,
            "missing_user",
            "give one or more ?user=NAME",
        ));
    }
    out.push_str("}}");
    Ok(out)
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
