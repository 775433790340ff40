//! The channel protocol on `/ws`: what the URL asks for at connect time, each JSON operation
//! a client sends afterwards, and the replies to operations the engine answers later.

use crate::auth::token::Claims;
use crate::codec::http::Request;
use crate::codec::position::{Epoch, Since};
use crate::codec::protocol::{self, Data, Op, OpError};
use crate::codec::query;
use crate::config::Config;
use crate::error::HandshakeError;
use crate::hub::engine::{Answer, Answered, Subscription};
use crate::transport::access::{self, Access, Right};
use crate::transport::cx::Cx;
use crate::transport::out::{Out, OutQueue};
use crate::transport::pending::{PendingOp, WsOp};
use crate::transport::session::{self, op_error, Ask, Session};
use crate::transport::stats::WorkerStats;

/// What `/ws?channel=a&channel=b&format=raw&user=u&since=N&epoch=E&presence=1` asks for.
#[derive(Debug, Default)]
pub struct Plan {
    channels: Vec<String>,
    raw: bool,
    user: Option<String>,
    since: Option<u64>,
    epoch: Option<Epoch>,
    presence: bool,
    /// With `--api-key` and tokens off, only connections that presented the key may publish.
    may_publish: bool,
    /// The connection's token (tokens on): its `sub` is the user.
    claims: Option<Claims>,
}

impl Plan {
    /// The plan of an upgrade request: its query and who it is. With tokens on, the token
    /// (`Authorization: Bearer` or, for browsers, which cannot set headers on a WebSocket,
    /// `?token=`) is required and names the user; a raw client (no error replies) naming a
    /// channel its token does not allow is refused (403). With tokens off and `--api-key`,
    /// only a connection that presented the key may publish.
    pub fn from_request(
        req: &Request<'_>,
        cfg: &Config,
        access: &Access,
    ) -> Result<Plan, HandshakeError> {
        let claims = access.stream_claims(req)?;
        let mut plan = Plan::from_query(req.query, cfg)?;
        if let Some(c) = &claims {
            if plan.raw && !plan.channels.iter().all(|ch| c.subscribe.allows(ch)) {
                return Err(HandshakeError::Forbidden);
            }
            plan.user = Some(c.sub.to_string());
        }
        plan.may_publish = match cfg.api_key.as_ref() {
            None => true,
            Some(key) => access::bearer(req).is_some_and(|g| {
                crate::transport::api::constant_time_eq(g.as_bytes(), key.expose().as_bytes())
            }),
        };
        plan.claims = claims;
        Ok(plan)
    }

    /// Validates the query before the upgrade is accepted: a bad channel or user name, or
    /// too many channels, is a 400.
    pub fn from_query(q: &str, cfg: &Config) -> Result<Plan, HandshakeError> {
        let mut plan = Plan::default();
        for (k, v) in query::pairs(q) {
            match &*k {
                "channel" if !protocol::valid_channel(&v) => {
                    return Err(HandshakeError::Malformed("invalid channel name"))
                }
                "channel" if !plan.channels.iter().any(|c| *c == v) => {
                    plan.channels.push(v.into_owned())
                }
                "channel" => {}
                "format" => match &*v {
                    "raw" => plan.raw = true,
                    "json" => plan.raw = false,
                    _ => return Err(HandshakeError::Malformed("format must be json or raw")),
                },
                "user" if protocol::valid_user(&v) => plan.user = Some(v.into_owned()),
                "user" => return Err(HandshakeError::Malformed("invalid user name")),
                "since" => {
                    plan.since = Some(
                        v.parse()
                            .map_err(|_| HandshakeError::Malformed("since must be a message id"))?,
                    )
                }
                "epoch" => {
                    plan.epoch = Some(Epoch::parse(&v).ok_or(HandshakeError::Malformed(
                        "epoch must be letters and digits, as the server gave it",
                    ))?)
                }
                "presence" => plan.presence = matches!(&*v, "1" | "true" | ""),
                _ => {}
            }
        }
        if plan.channels.len() > cfg.max_subscriptions {
            return Err(HandshakeError::Malformed(
                "more channels than --max-subscriptions",
            ));
        }
        Ok(plan)
    }
}

/// Starts a `/ws` session right after the 101: joins the user's presence and subscribes to
/// the URL's channels (replaying from `since` when given).
pub fn start(plan: Plan, s: &mut Session, outq: &mut Option<Box<OutQueue>>, cx: &mut Cx<'_>) {
    s.raw = plan.raw;
    s.may_publish = plan.may_publish;
    if let Some(claims) = plan.claims {
        s.set_grant(claims, cx);
    }
    session::identify(cx, s, plan.user.map(String::into_boxed_str));
    let since = plan.since.map(|id| Since {
        id,
        epoch: plan.epoch.clone(),
    });
    for channel in &plan.channels {
        let sub = Subscribe {
            channel,
            since: since.as_ref(),
            presence: plan.presence,
            from_url: true,
            reference: None,
        };
        subscribe(s, sub, outq, cx);
    }
}

/// A subscribe, from the URL or an op.
struct Subscribe<'a> {
    channel: &'a str,
    since: Option<&'a Since>,
    presence: bool,
    /// From the connect URL: a raw client gets no `subscribed` and no error for it (it reads
    /// payloads only, and the URL was validated before the upgrade).
    from_url: bool,
    reference: Option<&'a str>,
}

fn subscribe(
    s: &mut Session,
    sub: Subscribe<'_>,
    outq: &mut Option<Box<OutQueue>>,
    cx: &mut Cx<'_>,
) {
    if !s.allows(Right::Subscribe, sub.channel) {
        WorkerStats::count(&cx.stats.forbidden);
        let json = protocol::error_json(&OpError::Forbidden, sub.reference);
        return Out::new(cx.wbuf, outq).text(&json);
    }
    let ask = Ask {
        channel: sub.channel,
        since: sub.since,
        presence: sub.presence,
        max: cx.cfg.max_subscriptions,
    };
    let user = s.user().map(Into::into);
    let result = session::subscribe(cx, s, ask, || PendingOp::Ws {
        op: WsOp::Subscribe {
            channel: sub.channel.into(),
            presence: sub.presence,
            from_url: sub.from_url,
            user,
        },
        reference: sub.reference.map(Into::into),
    });
    let mut out = cx.out(outq);
    match result {
        Ok(Some(answered)) => send_subscribed(
            s,
            sub.channel,
            &answered,
            sub.from_url,
            &mut out,
            sub.reference,
        ),
        Ok(None) => {}
        Err(_) if sub.from_url && s.raw => {}
        Err(e) => out.text(&protocol::error_json(&e, sub.reference)),
    }
}

/// `subscribed`, then the replay (raw clients get the replayed payloads).
fn send_subscribed(
    s: &Session,
    channel: &str,
    sub: &Subscription,
    from_url: bool,
    out: &mut Out<'_>,
    reference: Option<&str>,
) {
    if !(s.raw && from_url) {
        out.text(&protocol::subscribed_json(
            channel,
            sub.last_seq,
            &sub.epoch,
            sub.recovered,
            reference,
        ));
    }
    for msg in &sub.replay {
        out.msg(msg, s.raw);
    }
}

/// One complete message from the client.
pub fn on_message(
    s: &mut Session,
    text: bool,
    bytes: &[u8],
    outq: &mut Option<Box<OutQueue>>,
    cx: &mut Cx<'_>,
) {
    if !text {
        let json = protocol::error_json(&OpError::BinaryFrame, None);
        return cx.out(outq).text(&json);
    }
    let req = match protocol::parse(bytes) {
        Ok(r) => r,
        Err((e, reference)) => {
            let json = protocol::error_json(&e, reference.map(|r| r.get()));
            return cx.out(outq).text(&json);
        }
    };
    let reference = req.reference.map(|r| r.get());
    let park = |op| PendingOp::Ws {
        op,
        reference: reference.map(Into::into),
    };
    let reply = match req.op {
        Op::Subscribe {
            channel,
            since,
            presence,
        } => {
            let sub = Subscribe {
                channel: &channel,
                since: since.as_ref(),
                presence,
                from_url: false,
                reference,
            };
            return subscribe(s, sub, outq, cx);
        }
        Op::Unsubscribe { channel } => session::unsubscribe(cx, s, &channel)
            .map(|()| protocol::unsubscribed_json(&channel, reference)),
        Op::Publish { .. } if s.claims().is_none() && !s.may_publish => Err(OpError::Unauthorized),
        Op::Publish { ref channel, .. } if !s.allows(Right::Publish, channel) => {
            WorkerStats::count(&cx.stats.forbidden);
            Err(OpError::Forbidden)
        }
        Op::Publish { channel, data } => {
            if let Err(ms) = s.take_publish(cx) {
                WorkerStats::count(&cx.stats.rate_limited);
                let json = protocol::error_json(&OpError::RateLimited(ms), reference);
                return Out::new(cx.wbuf, outq).text(&json);
            }
            let to = cx.reply_to();
            match cx.hub.publish(&channel, &Data::Json(data.get()), to) {
                Answer::Now(r) => r
                    .map(|p| protocol::published_json(&channel, p.id, &p.epoch, reference))
                    .map_err(|e| op_error(&e)),
                Answer::Later => {
                    let op = WsOp::Publish {
                        channel: channel.into(),
                    };
                    return cx.park(to, park(op));
                }
            }
        }
        Op::Presence { ref channel } | Op::History { ref channel, .. }
            if !s.allows(Right::Subscribe, channel) =>
        {
            WorkerStats::count(&cx.stats.forbidden);
            Err(OpError::Forbidden)
        }
        Op::Refresh { token } => refresh(s, &token, reference, outq, cx),
        Op::Presence { channel } => {
            let to = cx.reply_to();
            match cx.hub.engine.presence(&channel, to) {
                Answer::Now(r) => r
                    .map(|users| presence_reply(&channel, &users, reference))
                    .map_err(|e| op_error(&e)),
                Answer::Later => {
                    let op = WsOp::Presence {
                        channel: channel.into(),
                    };
                    return cx.park(to, park(op));
                }
            }
        }
        Op::History {
            channel,
            since,
            limit,
        } => {
            let to = cx.reply_to();
            match cx.hub.engine.history(&channel, since.as_ref(), limit, to) {
                Answer::Now(r) => r
                    .map(|h| history_reply(&channel, &h, reference))
                    .map_err(|e| op_error(&e)),
                Answer::Later => {
                    let op = WsOp::History {
                        channel: channel.into(),
                    };
                    return cx.park(to, park(op));
                }
            }
        }
    };
    let json = match reply {
        Ok(json) => json,
        Err(e) => protocol::error_json(&e, reference),
    };
    cx.out(outq).text(&json);
}

/// `{"op":"refresh","token":..}`: a newer token for the same user extends the connection;
/// its permissions replace the old ones, and subscriptions they no longer allow end (each
/// with an `unsubscribed`). A token that does not verify leaves the current one in place.
fn refresh(
    s: &mut Session,
    token: &str,
    reference: Option<&str>,
    outq: &mut Option<Box<OutQueue>>,
    cx: &mut Cx<'_>,
) -> Result<String, OpError> {
    let Some(verifier) = &cx.shared.access.verifier else {
        return Err(OpError::InvalidToken("this server does not use tokens"));
    };
    if s.claims().is_none() {
        return Err(OpError::InvalidToken("this connection has no token"));
    }
    // A signature check costs far more than a publish: refreshes share the publish bucket.
    if let Err(ms) = s.take_publish(cx) {
        WorkerStats::count(&cx.stats.rate_limited);
        return Err(OpError::RateLimited(ms));
    }
    let Some(current) = s.claims() else {
        return Err(OpError::InvalidToken("this connection has no token"));
    };
    let next = verifier
        .refresh(current, token, access::unix_now())
        .map_err(|e| OpError::InvalidToken(e.reason()))?;
    let exp = next.exp;
    let dropped: Vec<String> = s
        .subs()
        .filter_map(|r| cx.index.name_of(r))
        .filter(|name| !next.subscribe.allows(name))
        .map(str::to_owned)
        .collect();
    s.set_grant(next, cx);
    WorkerStats::count(&cx.stats.tokens_refreshed);
    for channel in dropped {
        if session::unsubscribe(cx, s, &channel).is_ok() {
            let json = protocol::unsubscribed_json(&channel, None);
            Out::new(cx.wbuf, outq).text(&json);
        }
    }
    Ok(protocol::refreshed_json(exp, reference))
}

fn presence_reply(channel: &str, users: &[Box<str>], reference: Option<&str>) -> String {
    protocol::presence_json(channel, users.iter().map(|u| &**u), reference)
}

fn history_reply(
    channel: &str,
    h: &crate::hub::engine::History,
    reference: Option<&str>,
) -> String {
    protocol::history_json(
        channel,
        &h.epoch,
        h.recovered,
        h.messages.iter().map(|m| m.json()),
        reference,
    )
}

/// The later answer to one of the session's operations.
pub fn on_answer(
    s: &mut Session,
    op: WsOp,
    reference: Option<&str>,
    answer: Answered,
    outq: &mut Option<Box<OutQueue>>,
    cx: &mut Cx<'_>,
) {
    let reply = match (op, answer) {
        (WsOp::Publish { channel }, Answered::Published(r)) => r
            .map(|p| protocol::published_json(&channel, p.id, &p.epoch, reference))
            .map_err(|e| op_error(&e)),
        (WsOp::Presence { channel }, Answered::Presence(r)) => r
            .map(|users| presence_reply(&channel, &users, reference))
            .map_err(|e| op_error(&e)),
        (WsOp::History { channel }, Answered::History(r)) => r
            .map(|h| history_reply(&channel, &h, reference))
            .map_err(|e| op_error(&e)),
        (
            WsOp::Subscribe {
                channel,
                presence,
                from_url,
                user,
            },
            Answered::Subscribed(r),
        ) => {
            s.wait(false);
            match r {
                Err(_) if from_url && s.raw => return,
                Err(e) => Err(op_error(&e)),
                // Asked twice, or past the limit, while the engine was answering: undone.
                Ok(_) if s.has(cx.index, &channel) => {
                    cx.hub
                        .engine
                        .unsubscribe(&channel, cx.who.worker, user.as_deref());
                    Err(OpError::AlreadySubscribed)
                }
                Ok(_) if s.sub_count() >= cx.cfg.max_subscriptions => {
                    cx.hub
                        .engine
                        .unsubscribe(&channel, cx.who.worker, user.as_deref());
                    Err(OpError::TooManySubscriptions(cx.cfg.max_subscriptions))
                }
                Ok(sub) => {
                    session::register(cx.index, s, cx.who, &channel, &sub, presence);
                    let mut out = cx.out(outq);
                    return send_subscribed(s, &channel, &sub, from_url, &mut out, reference);
                }
            }
        }
        // An answer of another kind than the request: a bug in the engine; say so.
        (_, _) => Err(OpError::Unavailable("mismatched answer".into())),
    };
    let json = match reply {
        Ok(json) => json,
        Err(e) => protocol::error_json(&e, reference),
    };
    cx.out(outq).text(&json);
}
