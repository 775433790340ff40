//! The user routes of the API, over the connection registry: `POST /users/{user}/send` (a
//! direct message to every connection of the user, on every node that holds one; not stored:
//! at most once), `POST /users/{user}/disconnect`, and `GET /users/{user}`.

use std::fmt::Write as _;

use crate::codec::http::Request;
use crate::codec::protocol;
use crate::hub::engine::{EngineError, UserInfo};
use crate::transport::api::reply::{ask, body_data, unavailable, ApiError, Asked, Reply, JSON};
use crate::transport::cx::Cx;
use crate::transport::pending::HttpOp;

fn user(param: &str) -> Result<&str, ApiError> {
    if protocol::valid_user(param) {
        Ok(param)
    } else {
        Err(ApiError::new(
            400,
            "invalid_user",
            "user must be 1-64 bytes of A-Z a-z 0-9 _ - . : @",
        ))
    }
}

fn checked(result: Result<Asked, ApiError>) -> Asked {
    result.unwrap_or_else(|e| Asked::Now(Err(e)))
}

/// `POST /users/{user}/send`: body as for `/publish`; the API token rules of `/publish`.
pub fn send(param: &str, req: &Request<'_>, body: &[u8], cx: &Cx<'_>) -> Asked {
    checked((|| {
        let u = user(param)?;
        let data = body_data(req, body)?;
        Ok(ask(
            cx.hub.engine.send_to_user(u, &data, cx.reply_to()),
            |r| sent(u, r),
            || HttpOp::UserSend { user: u.into() },
        ))
    })())
}

/// `POST /users/{user}/disconnect`: closes every connection of the user on every node.
pub fn disconnect(param: &str, cx: &Cx<'_>) -> Asked {
    checked((|| {
        let u = user(param)?;
        Ok(ask(
            cx.hub.engine.disconnect_user(u, cx.reply_to()),
            |r| sent(u, r),
            || HttpOp::UserDisconnect { user: u.into() },
        ))
    })())
}

/// `{"user":..,"nodes":K}`, or `404 offline` when no node holds a connection of the user.
pub fn sent(user: &str, r: Result<usize, EngineError>) -> Reply {
    match r.map_err(|e| unavailable(&e))? {
        0 => Err(ApiError::new(
            404,
            "offline",
            "no connection of this user is open",
        )),
        nodes => {
            let mut out = String::from("{\"user\":");
            protocol::push_json_str(&mut out, user);
            let _ = write!(out, ",\"nodes\":{nodes}}}");
            Ok((200, JSON, out))
        }
    }
}

/// `GET /users/{user}`.
pub fn info(param: &str, cx: &Cx<'_>) -> Asked {
    checked((|| {
        let u = user(param)?;
        Ok(ask(
            cx.hub.engine.user_info(u, cx.reply_to()),
            |r| info_reply(u, r),
            || HttpOp::UserInfo { user: u.into() },
        ))
    })())
}

/// `{"user":..,"online":true,"connections":3,"nodes":[{"node":"a","connections":2},..]}`.
pub fn info_reply(user: &str, r: Result<UserInfo, EngineError>) -> Reply {
    let info = r.map_err(|e| unavailable(&e))?;
    let mut out = String::from("{\"user\":");
    protocol::push_json_str(&mut out, user);
    let _ = write!(
        out,
        ",\"online\":{},\"connections\":{},\"nodes\":[",
        !info.nodes.is_empty(),
        info.connections()
    );
    for (i, (node, n)) in info.nodes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"node\":");
        protocol::push_json_str(&mut out, node);
        let _ = write!(out, ",\"connections\":{n}}}");
    }
    out.push_str("]}");
    Ok((200, JSON, out))
}
