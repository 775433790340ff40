//! A streaming connection's channel state (`/ws`, `/sse`, `/poll`, or a held request): who
//! it is, its subscriptions and its position in each, and how subscribing and unsubscribing
//! go through the engine and the worker's subscriber index.

use std::sync::Arc;

use crate::codec::cursor::{write_cursor, Since};
use crate::codec::protocol::OpError;
use crate::hub::engine::{Answer, EngineError, SubscribeReq, Subscription};
use crate::hub::msg::Msg;
use crate::hub::subs::{LocalIndex, Sub, SubRef};
use crate::transport::cx::Cx;
use crate::transport::pending::{ConnId, PendingOp};

/// Boxed in its connection; `/echo` and plain HTTP have none.
#[derive(Debug, Default)]
pub struct Session {
    /// Name given with `?user=`, for presence.
    pub user: Option<Box<str>>,
    /// `format=raw`: messages arrive as bare payload frames, no JSON envelope.
    pub raw: bool,
    /// May send `publish` (see `ws::Plan::from_request`).
    pub may_publish: bool,
    /// Subscriptions asked of the engine and not answered yet.
    pub waiting: u32,
    pub subs: Vec<SubRef>,
    /// What an HTTP stream (SSE, long-poll) or a held request needs; `/ws` has none.
    pub http: Option<Box<HttpState>>,
}

/// The HTTP side of a session.
#[derive(Debug, Default)]
pub struct HttpState {
    /// Whether the connection stays open after the reply (held requests and polls).
    pub keep_alive: bool,
    /// The CORS headers the reply carries.
    pub cors: Option<Box<str>>,
    /// A `HEAD` request: the reply has no body.
    pub head_only: bool,
    /// A held API request: the ticket of the answer it waits for.
    pub ticket: Option<u32>,
    /// Channels whose subscription the engine has not answered yet, at the position the
    /// client asked for: still part of the stream's cursor.
    pub waiting_at: Vec<(Box<str>, u64)>,
    /// A long-poll's replay, gathered while subscriptions are answered.
    pub replay: Vec<Arc<Msg>>,
}

impl Session {
    /// Sets the connection's position in `channel_id` (the last id it has been sent).
    pub fn set_position(&mut self, channel_id: u64, seq: u64) {
        if let Some(r) = self.subs.iter_mut().find(|r| r.channel_id == channel_id) {
            r.last_seq = seq;
        }
    }

    /// Notes that message `seq` of `channel_id` was sent.
    pub fn advance(&mut self, channel_id: u64, seq: u64) {
        if let Some(r) = self.subs.iter_mut().find(|r| r.channel_id == channel_id) {
            r.last_seq = r.last_seq.max(seq);
        }
    }

    /// Whether the session is subscribed to `channel`.
    pub fn has(&self, index: &LocalIndex, channel: &str) -> bool {
        self.subs.iter().any(|r| index.name_of(r) == Some(channel))
    }

    /// The HTTP side, created when first needed.
    pub fn http(&mut self) -> &mut HttpState {
        self.http.get_or_insert_with(Box::default)
    }

    /// The position over all subscriptions (and those still being answered), for an SSE
    /// `id:` or a poll reply's `cursor`.
    pub fn cursor(&self, index: &LocalIndex) -> String {
        let mut out = String::new();
        let waiting = self.http.iter().flat_map(|h| &h.waiting_at);
        write_cursor(
            &mut out,
            self.subs
                .iter()
                .filter_map(|r| Some((index.name_of(r)?, r.last_seq)))
                .chain(waiting.map(|(name, id)| (&**name, *id))),
        );
        out
    }
}

/// An engine's refusal as the client is told it.
pub fn op_error(e: &EngineError) -> OpError {
    match e {
        EngineError::Unavailable(why) => OpError::Unavailable(why.clone()),
    }
}

/// What a subscribe asks for.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub channel: &'a str,
    pub since: Option<&'a Since>,
    /// Wants join/leave events.
    pub presence: bool,
    /// Subscriptions the session may hold.
    pub max: usize,
}

/// Asks the engine for a subscription. `Ok(Some)` is answered and registered; `Ok(None)`
/// is waiting for a later answer (kept as `op`, see [`crate::transport::dispatch`]).
pub fn subscribe(
    cx: &mut Cx<'_>,
    s: &mut Session,
    ask: Ask<'_>,
    op: impl FnOnce() -> PendingOp,
) -> Result<Option<Subscription>, OpError> {
    if s.has(cx.index, ask.channel) {
        return Err(OpError::AlreadySubscribed);
    }
    if s.subs.len() + s.waiting as usize >= ask.max {
        return Err(OpError::TooManySubscriptions(ask.max));
    }
    let reply = cx.reply_to();
    let req = SubscribeReq {
        channel: ask.channel,
        worker: cx.who.worker,
        since: ask.since,
        user: s.user.as_deref(),
    };
    match cx.hub.engine.subscribe(req, reply) {
        Answer::Now(Ok(sub)) => {
            register(cx.index, s, cx.who, ask.channel, &sub, ask.presence);
            Ok(Some(sub))
        }
        Answer::Now(Err(e)) => Err(op_error(&e)),
        Answer::Later => {
            s.waiting += 1;
            cx.park(reply, op());
            Ok(None)
        }
    }
}

/// Registers an answered subscription in the worker's index and the session.
pub fn register(
    index: &mut LocalIndex,
    s: &mut Session,
    who: ConnId,
    channel: &str,
    sub: &Subscription,
    presence: bool,
) {
    let slot = index.add(
        sub.channel_id,
        channel,
        &sub.epoch,
        Sub {
            key: who.key,
            gen: who.gen,
            min_seq: sub.last_seq,
            raw: s.raw,
            presence,
        },
    );
    s.subs.push(SubRef {
        channel_id: sub.channel_id,
        slot,
        last_seq: sub.last_seq,
    });
}

/// Unsubscribes a connection from one channel.
pub fn unsubscribe(cx: &mut Cx<'_>, s: &mut Session, channel: &str) -> Result<(), OpError> {
    let pos = s
        .subs
        .iter()
        .position(|r| cx.index.name_of(r) == Some(channel))
        .ok_or(OpError::NotSubscribed)?;
    let r = s.subs.swap_remove(pos);
    remove(cx, r, s.user.as_deref());
    Ok(())
}

/// Ends a session with its connection: its subscriptions and its user's presence go at
/// once.
pub fn end(cx: &mut Cx<'_>, s: &mut Session) {
    unsubscribe_all(cx, s);
    if let Some(user) = s.user.as_deref() {
        cx.hub.engine.user_disconnected(user);
    }
}

/// Drops every subscription of a session (presence ends at once).
pub fn unsubscribe_all(cx: &mut Cx<'_>, s: &mut Session) {
    for r in std::mem::take(&mut s.subs) {
        remove(cx, r, s.user.as_deref());
    }
}

fn remove(cx: &mut Cx<'_>, r: SubRef, user: Option<&str>) {
    if let Some(name) = cx.index.remove(&r) {
        cx.hub.engine.unsubscribe(&name, cx.who.worker, user);
    }
}
