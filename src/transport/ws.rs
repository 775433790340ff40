//! The channel protocol on `/ws`: what the URL asks for at connect time, and each JSON
//! operation a client sends afterwards.

use crate::codec::http::Request;
use crate::codec::protocol::{self, Data, Op, OpError};
use crate::codec::query;
use crate::config::Config;
use crate::error::HandshakeError;
use crate::hub::session::{self, LocalIndex, Session, Subscriber};
use crate::hub::{Hub, Subscription};
use crate::transport::dispatch::Out;
use serde_json::value::RawValue;

/// What `/ws?channel=a&channel=b&format=raw&user=u&since=N&presence=1` asks for.
#[derive(Debug, Default)]
pub struct Plan {
    channels: Vec<String>,
    raw: bool,
    user: Option<String>,
    since: Option<u64>,
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
pub fn start(
    plan: Plan,
    out: &mut Out<'_>,
    hub: &Hub,
    index: &mut LocalIndex,
    who: Subscriber,
    cfg: &Config,
) -> Session {
    let mut s = Session {
        user: plan.user.map(String::into_boxed_str),
        raw: plan.raw,
        may_publish: plan.may_publish,
        ..Session::default()
    };
    if let Some(user) = s.user.as_deref() {
        hub.user_connected(user);
    }
    for channel in &plan.channels {
        let result = session::subscribe(
            hub,
            index,
            &mut s,
            who,
            channel,
            plan.since,
            plan.presence,
            cfg.max_subscriptions,
        );
        match result {
            Ok(sub) => send_subscribed(&s, channel, &sub, out, None),
            Err(e) => send_error(&s, &e, out, None),
        }
    }
    s
}

/// Ends a session: its subscriptions and its user's presence go at once.
pub fn end(mut s: Box<Session>, hub: &Hub, index: &mut LocalIndex, worker: usize) {
    session::unsubscribe_all(hub, index, &mut s, worker);
    if let Some(user) = s.user.as_deref() {
        hub.user_disconnected(user);
    }
}

/// `subscribed`, then the replay (raw clients get only the replayed payloads).
fn send_subscribed(
    s: &Session,
    channel: &str,
    sub: &Subscription,
    out: &mut Out<'_>,
    reference: Option<&RawValue>,
) {
    if !s.raw {
        out.text(&protocol::subscribed_json(
            channel,
            sub.last_seq,
            sub.recovered,
            reference,
        ));
    }
    for msg in &sub.replay {
        out.shared(if s.raw { &msg.raw_frame } else { &msg.frame });
    }
}

fn send_error(s: &Session, err: &OpError, out: &mut Out<'_>, reference: Option<&RawValue>) {
    // A raw client reads payloads only, so errors from its URL subscriptions are not sent
    // to it (the URL was validated before the upgrade; what is left is e.g. too many
    // subscriptions). Errors for operations it sends itself are, like their replies.
    if !s.raw {
        out.text(&protocol::error_json(err, reference));
    }
}

/// One complete message from the client.
#[allow(clippy::too_many_arguments)] // the session and the worker's parts it touches
pub fn on_message(
    s: &mut Session,
    text: bool,
    bytes: &[u8],
    out: &mut Out<'_>,
    hub: &Hub,
    index: &mut LocalIndex,
    who: Subscriber,
    cfg: &Config,
) {
    if !text {
        return out.text(&protocol::error_json(&OpError::BinaryFrame, None));
    }
    let req = match protocol::parse(bytes) {
        Ok(r) => r,
        Err((e, reference)) => return out.text(&protocol::error_json(&e, reference)),
    };
    let reference = req.reference;
    let reply = match req.op {
        Op::Subscribe {
            channel,
            since,
            presence,
        } => {
            match session::subscribe(
                hub,
                index,
                s,
                who,
                &channel,
                since,
                presence,
                cfg.max_subscriptions,
            ) {
                Ok(sub) => {
                    out.text(&protocol::subscribed_json(
                        &channel,
                        sub.last_seq,
                        sub.recovered,
                        reference,
                    ));
                    for msg in &sub.replay {
                        out.shared(if s.raw { &msg.raw_frame } else { &msg.frame });
                    }
                    return;
                }
                Err(e) => Err(e),
            }
        }
        Op::Unsubscribe { channel } => session::unsubscribe(hub, index, s, who.worker, &channel)
            .map(|()| protocol::unsubscribed_json(&channel, reference)),
        Op::Publish { .. } if !s.may_publish => Err(OpError::Unauthorized),
        Op::Publish { channel, data } => {
            let id = hub.publish(&channel, &Data::Json(data.get()));
            Ok(protocol::published_json(&channel, id, reference))
        }
        Op::Presence { channel } => {
            let users = hub.presence(&channel);
            Ok(protocol::presence_json(
                &channel,
                users.iter().map(|u| &**u),
                reference,
            ))
        }
        Op::History {
            channel,
            since,
            limit,
        } => {
            let (recovered, msgs) = hub.history(&channel, since, limit);
            Ok(protocol::history_json(
                &channel,
                recovered,
                msgs.iter().map(|m| m.json()),
                reference,
            ))
        }
    };
    match reply {
        Ok(json) => out.text(&json),
        Err(e) => out.text(&protocol::error_json(&e, reference)),
    }
}
