//! What every API route shares: the JSON error body with its status, a reply now or a
//! question to the engine answered later, and the checks and decodings of requests.

use serde_json::value::RawValue;

use crate::codec::http::Request;
use crate::codec::protocol::{self, Data};
use crate::config::Config;
use crate::hub::engine::{Answer, EngineError};
use crate::transport::pending::HttpOp;

pub const JSON: &str = "application/json";

pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub reason: String,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, reason: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            reason: reason.into(),
        }
    }

    pub fn json(&self) -> String {
        let mut out = String::from("{\"error\":");
        protocol::push_json_str(&mut out, self.code);
        out.push_str(",\"reason\":");
        protocol::push_json_str(&mut out, &self.reason);
        out.push('}');
        out
    }
}

/// A response body, or a refusal.
pub type Reply = Result<(u16, &'static str, String), ApiError>;

/// What a route's handler did: answered, or asked the engine for a later answer.
pub enum Asked {
    Now(Reply),
    Later(HttpOp),
}

/// An engine out of reach: `503 {"error":"unavailable"}` (with `Retry-After`).
pub fn unavailable(e: &EngineError) -> ApiError {
    ApiError::new(503, "unavailable", e.reason())
}

/// Turns an engine call into a reply now, or a later one to wait for as `op`.
pub fn ask<T>(
    answer: Answer<T>,
    now: impl FnOnce(Result<T, EngineError>) -> Reply,
    later: impl FnOnce() -> HttpOp,
) -> Asked {
    match answer {
        Answer::Now(r) => Asked::Now(now(r)),
        Answer::Later => Asked::Later(later()),
    }
}

pub fn channel(param: &str) -> Result<&str, ApiError> {
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

/// With `--publish-token`, the request must carry `Authorization: Bearer TOKEN` (401).
pub fn authorized(req: &Request<'_>, cfg: &Config) -> Result<(), ApiError> {
    let Some(token) = cfg.publish_token.as_deref() else {
        return Ok(());
    };
    let given = req
        .authorization
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim);
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::new(
            401,
            "unauthorized",
            "missing or wrong bearer token",
        ))
    }
}

/// A published payload from a request body: JSON when the `Content-Type` says so (then it
/// must be valid), else text if UTF-8, else bytes.
pub fn body_data<'b>(req: &Request<'_>, body: &'b [u8]) -> Result<Data<'b>, ApiError> {
    let is_json = req.content_type.is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case(JSON))
    });
    if is_json {
        let raw: &RawValue = serde_json::from_slice(body)
            .map_err(|e| ApiError::new(400, "invalid_json", e.to_string()))?;
        return Ok(Data::Json(raw.get()));
    }
    Ok(match std::str::from_utf8(body) {
        Ok(text) => Data::Text(text),
        Err(_) => Data::Binary(body),
    })
}

/// Compares secrets without an early exit that would leak how much matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
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
