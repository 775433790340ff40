//! The channel protocol on `/ws`: what the URL asks for at connect time, each JSON operation
//! a client sends afterwards, and the replies to operations the engine answers later.

use crate::codec::http::Request;
use crate::codec::position::{Epoch, Since};
use crate::codec::protocol::{self, Data, Op, OpError};
use crate::codec::query;
use crate::config::Config;
use crate::error::HandshakeError;
use crate::hub::engine::{Answer, Answered, Subscription};
use crate::transport::cx::Cx;
use crate::transport::out::{Out, OutQueue};
use crate::transport::pending::{PendingOp, WsOp};
use crate::transport::session::{self, op_error, Ask, Session};

/// What `/ws?channel=a&channel=b&format=raw&user=u&since=N&epoch=E&presence=1` asks for.
#[derive(Debug, Default)]
pub struct Plan {
    channels: Vec<String>,
    raw: bool,
    user: Option<String>,
    since: Option<u64>,
    epoch: Option<Epoch>,
    presence: bool,
    /// With `--publish-token`, only connections that presented it may publish.
    may_publish: bool,
}

impl Plan {
    /// The plan of an upgrade request: its query, and whether it may publish (without
    /// `--publish-token` everyone may; with it, the upgrade must carry
    /// `Authorization: Bearer TOKEN` or, for browsers, which cannot set headers on a
    /// WebSocket, `?token=TOKEN`).
    pub fn from_request(req: &Request<'_>, cfg: &Config) -> Result<Plan, HandshakeError> {
        let mut plan = Plan::from_query(req.query, cfg)?;
        plan.may_publish = match cfg.publish_token.as_deref() {
            None => true,
            Some(token) => {
                let bearer = req
                    .authorization
                    .and_then(|a| a.strip_prefix("Bearer "))
                    .map(str::trim);
                let given = query::first(req.query, "token");
                let ok = |g: &str| {
                    crate::transport::api::constant_time_eq(g.as_bytes(), token.as_bytes())
                };
                bearer.is_some_and(ok) || given.as_deref().is_some_and(ok)
            }
        };
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
        Op::Publish { .. } if !s.may_publish => Err(OpError::Unauthorized),
        Op::Publish { channel, data } => {
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
