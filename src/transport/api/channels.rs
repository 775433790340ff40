//! The channel routes of the API: `POST /publish/{channel}`, `GET /history/{channel}`,
//! `GET /presence/{channel}` and the batch `GET /presence?user=..`.

use std::fmt::Write as _;

use crate::codec::http::Request;
use crate::codec::position::{Epoch, Since};
use crate::codec::protocol::{self, OpError, MAX_HISTORY_LIMIT};
use crate::codec::query;
use crate::hub::engine::{Answer, EngineError, History, Published};
use crate::transport::api::reply::{
    ask, body_data, channel, unavailable, ApiError, Asked, Reply, JSON,
};
use crate::transport::cx::Cx;
use crate::transport::pending::HttpOp;

/// Users one batch presence query may ask about.
pub const MAX_PRESENCE_BATCH: usize = 1000;

pub fn publish(param: &str, req: &Request<'_>, body: &[u8], cx: &Cx<'_>) -> Asked {
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
    let channel = channel(param)?;
    let data = body_data(req, body)?;
    Ok(ask(
        cx.hub.publish(channel, &data, cx.reply_to()),
        |r| published(channel, r),
        || HttpOp::Publish {
            channel: channel.into(),
        },
    ))
}

pub fn published(channel: &str, r: Result<Published, EngineError>) -> Reply {
    let p = r.map_err(|e| unavailable(&e))?;
    let mut out = String::from("{\"channel\":");
    protocol::push_json_str(&mut out, channel);
    let _ = write!(out, ",\"id\":{},\"epoch\":\"{}\"}}", p.id, p.epoch);
    Ok((200, JSON, out))
}

pub fn history(param: &str, req: &Request<'_>, cx: &Cx<'_>) -> Asked {
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

pub fn history_reply(channel: &str, r: Result<History, EngineError>) -> Reply {
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

pub fn presence(param: &str, cx: &Cx<'_>) -> Asked {
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

pub fn presence_reply(channel: &str, r: Result<Vec<Box<str>>, EngineError>) -> Reply {
    let users = r.map_err(|e| unavailable(&e))?;
    let json = protocol::presence_json(channel, users.iter().map(|u| &**u), None);
    Ok((200, JSON, json))
}

pub fn presence_batch(req: &Request<'_>, cx: &Cx<'_>) -> Asked {
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

pub fn users_reply(users: &[Box<str>], r: Result<Vec<bool>, EngineError>) -> Reply {
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
