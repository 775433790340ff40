//! What every API route shares: the JSON error body with its status, a reply now or a
//! question to the engine answered later, and the checks and decodings of requests.

use serde_json::value::RawValue;

use crate::auth::token::Claims;
use crate::codec::http::Request;
use crate::codec::protocol::{self, Data, OpError};
use crate::config::Config;
use crate::hub::engine::{Answer, EngineError};
use crate::transport::access::{self, Access, Right};
use crate::transport::pending::HttpOp;

pub const JSON: &str = "application/json";

pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub reason: String,
    /// Seconds for `Retry-After` (a 429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, reason: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            reason: reason.into(),
            retry_after: None,
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

/// An engine's refusal: `503 {"error":"unavailable"}` when it is out of reach,
/// `503 {"error":"too_many_channels"}` at `--max-channels` (both with `Retry-After`).
pub fn unavailable(e: &EngineError) -> ApiError {
    let code = match e {
        EngineError::Unavailable(_) => "unavailable",
        EngineError::TooManyChannels => "too_many_channels",
    };
    ApiError::new(503, code, e.reason())
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

/// Who an API request speaks for.
#[derive(Debug)]
pub enum Caller {
    /// Neither `--api-key` nor tokens are set: the API is open.
    Open,
    /// The API key: the operator's backend, allowed everything and not rate limited.
    Key,
    /// A user's connection token (tokens on): its claims decide, channel by channel.
    User(Claims),
}

impl Caller {
    /// The caller of a request: the API key as its bearer token, or with tokens on a user
    /// token that verifies; with neither configured, anyone. Otherwise `401`.
    pub fn of(req: &Request<'_>, cfg: &Config, access: &Access) -> Result<Caller, ApiError> {
        let given = access::bearer(req);
        if let (Some(key), Some(g)) = (&cfg.api_key, &given) {
            if constant_time_eq(g.as_bytes(), key.expose().as_bytes()) {
                return Ok(Caller::Key);
            }
        }
        let unauthorized = |why: &str| Err(ApiError::new(401, "unauthorized", why));
        match (&access.verifier, given) {
            (None, _) if cfg.api_key.is_none() => Ok(Caller::Open),
            (Some(v), Some(g)) => match v.verify(&g, access::unix_now()) {
                Ok(claims) => Ok(Caller::User(claims)),
                Err(e) => unauthorized(e.reason()),
            },
            (Some(_), None) => unauthorized("an API key or a user token is required"),
            (None, _) => unauthorized("missing or wrong API key (Authorization: Bearer)"),
        }
    }

    /// Whether the caller may `right` on `channel` (`403 forbidden` if not).
    pub fn may(&self, right: Right, channel: &str) -> Result<(), ApiError> {
        let claims = match self {
            Caller::User(c) => Some(c),
            _ => None,
        };
        if access::allows(claims, right, channel) {
            Ok(())
        } else {
            Err(ApiError::new(403, "forbidden", OpError::Forbidden.reason()))
        }
    }

    /// The user routes and the batch presence query answer about anyone: the operator's
    /// (or, open, anyone's), never a user token's (`403`).
    pub fn operator(&self) -> Result<(), ApiError> {
        match self {
            Caller::Open | Caller::Key => Ok(()),
            Caller::User(_) => Err(ApiError::new(
                403,
                "forbidden",
                "this route needs the API key, not a user token",
            )),
        }
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
