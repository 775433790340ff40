//! A streaming connection's channel state (`/ws`, `/sse`, `/poll`, or a held request): who
//! it is, its subscriptions and its position in each, and how subscribing and unsubscribing
//! go through the engine and the worker's subscriber index.

use std::sync::Arc;

use crate::auth::limits::Bucket;
use crate::auth::token::Claims;
use crate::codec::cursor::write_cursor;
use crate::codec::position::Since;
use crate::codec::protocol::OpError;
use crate::hub::engine::{Answer, EngineError, SubscribeReq, Subscription};
use crate::hub::msg::Msg;
use crate::hub::subs::{LocalIndex, Sub, SubRef};
use crate::transport::access::{self, Right};
use crate::transport::cx::Cx;
use crate::transport::pending::{ConnId, PendingOp};

/// Boxed in its connection; `/echo` and plain HTTP have none. 24 bytes (a 32-byte heap
/// block) for the common `/ws` subscriber of one channel: everything rarer is behind `more`.
#[derive(Debug, Default)]
pub struct Session {
    /// `format=raw`: messages arrive as bare payload frames, no JSON envelope.
    pub raw: bool,
    /// May send `publish` (see `ws::Plan::from_request`).
    pub may_publish: bool,
    /// The first subscription, held inline: most connections have one.
    first: Option<SubRef>,
    more: Option<Box<More>>,
}

/// The rarer parts of a session.
#[derive(Debug, Default)]
struct More {
    /// Subscriptions after the first.
    subs: Vec<SubRef>,
    /// Name given with `?user=`, for presence.
    user: Option<Box<str>>,
    /// Subscriptions asked of the engine and not answered yet.
    waiting: u32,
    /// What an HTTP stream (SSE, long-poll) or a held request needs.
    http: Option<HttpState>,
    /// What the connection's token grants (tokens on).
    grant: Option<Grant>,
    /// Publishes taken against `--publish-rate`.
    bucket: Bucket,
}

impl More {
    /// Holds nothing a fresh session would not.
    fn is_empty(&self) -> bool {
        self.subs.is_empty()
            && self.user.is_none()
            && self.waiting == 0
            && self.http.is_none()
            && self.grant.is_none()
            && self.bucket == Bucket::default()
    }
}

/// A connection's verified token, kept for as long as it lives.
#[derive(Debug)]
pub struct Grant {
    pub claims: Claims,
    /// The worker tick at which the connection is closed unless a refresh comes first.
    pub expires: u32,
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
    /// Channels whose subscription the engine has not answered yet, and the position the
    /// client asked for (still part of the stream's cursor).
    pub waiting_at: Vec<(Box<str>, Option<Since>)>,
    /// A long-poll's replay, gathered while subscriptions are answered.
    pub replay: Vec<Arc<Msg>>,
    /// A long-poll whose resume was not exact for some channel (another epoch, or older than
    /// what is kept): its reply says `"recovered":false`.
    pub lost: bool,
}

impl Session {
    fn more(&mut self) -> &mut More {
        self.more.get_or_insert_with(Box::default)
    }

    /// The session's subscriptions.
    pub fn subs(&self) -> impl Iterator<Item = &SubRef> {
        self.first
            .iter()
            .chain(self.more.iter().flat_map(|m| &m.subs))
    }

    pub fn sub_count(&self) -> usize {
        usize::from(self.first.is_some()) + self.more.as_ref().map_or(0, |m| m.subs.len())
    }

    fn push_sub(&mut self, r: SubRef) {
        if self.first.is_none() {
            self.first = Some(r);
        } else {
            self.more().subs.push(r);
        }
    }

    /// Removes and returns the subscription to `channel`.
    fn take_sub(&mut self, index: &LocalIndex, channel: &str) -> Option<SubRef> {
        let named = |r: &SubRef| index.name_of(r) == Some(channel);
        if self.first.as_ref().is_some_and(named) {
            let r = self.first.take();
            self.first = self.more.as_mut().and_then(|m| m.subs.pop());
            return r;
        }
        let m = self.more.as_mut()?;
        let pos = m.subs.iter().position(named)?;
        Some(m.subs.swap_remove(pos))
    }

    /// Removes every subscription.
    fn take_subs(&mut self) -> Vec<SubRef> {
        let mut all: Vec<SubRef> = self.first.take().into_iter().collect();
        if let Some(m) = self.more.as_mut() {
            all.append(&mut m.subs);
        }
        all
    }

    /// The connection's token claims; `None` when tokens are off.
    pub fn claims(&self) -> Option<&Claims> {
        Some(&self.more.as_ref()?.grant.as_ref()?.claims)
    }

    /// The tick at which the token expires, if there is one.
    pub fn expires(&self) -> Option<u32> {
        Some(self.more.as_ref()?.grant.as_ref()?.expires)
    }

    /// Whether the token (if any) allows `right` on `channel`.
    pub fn allows(&self, right: Right, channel: &str) -> bool {
        access::allows(self.claims(), right, channel)
    }

    /// Sets (or, on a refresh, replaces) the connection's token.
    pub fn set_grant(&mut self, claims: Claims, cx: &Cx<'_>) {
        let secs = access::secs_left(&claims);
        let ticks = (secs.saturating_mul(1000) / cx.tick_ms.max(1)).min(u64::from(u32::MAX / 2));
        let expires = cx.now.saturating_add(ticks as u32);
        self.more().grant = Some(Grant { claims, expires });
    }

    /// Takes one publish from the connection's bucket, or says in how many milliseconds one
    /// is there (`--publish-rate`).
    pub fn take_publish(&mut self, cx: &Cx<'_>) -> Result<(), u64> {
        let Some(rate) = cx.shared.access.publish_rate else {
            return Ok(());
        };
        let now = cx.shared.access.now_ms();
        self.more()
            .bucket
            .try_take(rate, now)
            .map_err(|wait| wait.millis().max(1))
    }

    pub fn user(&self) -> Option<&str> {
        self.more.as_ref()?.user.as_deref()
    }

    pub fn set_user(&mut self, user: Option<Box<str>>) {
        if user.is_some() || self.more.is_some() {
            self.more().user = user;
        }
    }

    /// Subscriptions asked of the engine and not answered yet.
    pub fn waiting(&self) -> u32 {
        self.more.as_ref().map_or(0, |m| m.waiting)
    }

    /// One more subscription waiting for its answer (`true`), or one answered (`false`).
    pub fn wait(&mut self, more: bool) {
        let m = self.more();
        m.waiting = if more {
            m.waiting + 1
        } else {
            m.waiting.saturating_sub(1)
        };
        // Counting a wait is often all a subscriber of one channel ever used `more` for
        // (every subscribe in cluster mode waits): keeping the empty box would cost each
        // idle subscriber its ~200-byte block for good.
        if self.more.as_deref().is_some_and(More::is_empty) {
            self.more = None;
        }
    }

    /// The HTTP side, created when first needed.
    pub fn http(&mut self) -> &mut HttpState {
        self.more().http.get_or_insert_with(HttpState::default)
    }

    /// The HTTP side, if there is one.
    pub fn http_state(&self) -> Option<&HttpState> {
        self.more.as_ref()?.http.as_ref()
    }

    /// The subscription to the channel the engine knows as `channel_id`.
    fn sub_of(&self, index: &LocalIndex, channel_id: u64) -> Option<SubRef> {
        self.subs()
            .find(|r| index.channel(r).is_some_and(|c| c.id == channel_id))
            .copied()
    }

    /// Sets the connection's position in `channel_id` (the last id it has been sent).
    pub fn set_position(&self, index: &mut LocalIndex, channel_id: u64, seq: u64) {
        if let Some(r) = self.sub_of(index, channel_id) {
            index.set_position(&r, seq);
        }
    }

    /// Notes that message `seq` of `channel_id` was sent.
    pub fn advance(&self, index: &mut LocalIndex, channel_id: u64, seq: u64) {
        if let Some(r) = self.sub_of(index, channel_id) {
            let at = index.position(&r).unwrap_or(0);
            index.set_position(&r, at.max(seq));
        }
    }

    /// Whether the session is subscribed to `channel`.
    pub fn has(&self, index: &LocalIndex, channel: &str) -> bool {
        self.subs().any(|r| index.name_of(r) == Some(channel))
    }

    /// The position over all subscriptions (and those still being answered), for an SSE
    /// `id:` or a poll reply's `cursor`.
    pub fn cursor(&self, index: &LocalIndex) -> String {
        let mut out = String::new();
        let waiting = self.http_state().into_iter().flat_map(|h| &h.waiting_at);
        write_cursor(
            &mut out,
            self.subs()
                .filter_map(|r| {
                    let c = index.channel(r)?;
                    Some((&*c.name, c.subs.get(r.slot)?.position, Some(&c.epoch)))
                })
                .chain(waiting.filter_map(|(name, at)| {
                    let at = at.as_ref()?;
                    Some((&**name, at.id, at.epoch.as_ref()))
                })),
        );
        out
    }
}

/// An engine's refusal as the client is told it.
pub fn op_error(e: &EngineError) -> OpError {
    match e {
        EngineError::Unavailable(why) => OpError::Unavailable(why.clone()),
        EngineError::TooManyChannels => OpError::TooManyChannels,
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
    if s.sub_count() + s.waiting() as usize >= ask.max {
        return Err(OpError::TooManySubscriptions(ask.max));
    }
    let reply = cx.reply_to();
    let req = SubscribeReq {
        channel: ask.channel,
        worker: cx.who.worker,
        since: ask.since,
        user: s.user(),
    };
    match cx.hub.engine.subscribe(req, reply) {
        Answer::Now(Ok(sub)) => {
            register(cx.index, s, cx.who, ask.channel, &sub, ask.presence);
            Ok(Some(sub))
        }
        Answer::Now(Err(e)) => Err(op_error(&e)),
        Answer::Later => {
            s.wait(true);
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
    let r = index.add(
        sub.channel_id,
        channel,
        &sub.epoch,
        Sub::new(who.key, who.gen, sub.last_seq, s.raw, presence),
    );
    s.push_sub(r);
}

/// Unsubscribes a connection from one channel.
pub fn unsubscribe(cx: &mut Cx<'_>, s: &mut Session, channel: &str) -> Result<(), OpError> {
    let r = s
        .take_sub(cx.index, channel)
        .ok_or(OpError::NotSubscribed)?;
    remove(cx, r, s.user());
    Ok(())
}

/// Ends a session with its connection: its subscriptions and its user's presence go at
/// once.
pub fn end(cx: &mut Cx<'_>, s: &mut Session) {
    unsubscribe_all(cx, s);
    // Taken out, so a session ended early (a disconnect) is not ended twice.
    if let Some(user) = s.more.as_mut().and_then(|m| m.user.take()) {
        cx.index.remove_user(&user, cx.who.key, cx.who.gen);
        cx.hub.engine.user_disconnected(&user);
    }
}

/// The connection speaks for `user` (presence, the registry, direct messages).
pub fn identify(cx: &mut Cx<'_>, s: &mut Session, user: Option<Box<str>>) {
    if let Some(u) = user.as_deref() {
        cx.index.add_user(u, cx.who.key, cx.who.gen);
        cx.hub.engine.user_connected(u);
    }
    s.set_user(user);
}

/// Drops every subscription of a session (presence ends at once).
pub fn unsubscribe_all(cx: &mut Cx<'_>, s: &mut Session) {
    for r in s.take_subs() {
        remove(cx, r, s.user());
    }
}

fn remove(cx: &mut Cx<'_>, r: SubRef, user: Option<&str>) {
    if let Some(name) = cx.index.remove(&r) {
        cx.hub.engine.unsubscribe(&name, cx.who.worker, user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_fits_a_32_byte_block() {
        assert!(std::mem::size_of::<Session>() <= 24);
    }

    #[test]
    fn an_answered_wait_gives_the_rare_parts_back() {
        let mut s = Session::default();
        s.wait(true);
        s.wait(true);
        assert_eq!(s.waiting(), 2);
        s.wait(false);
        assert!(s.more.is_some(), "one subscription still waits");
        s.wait(false);
        assert_eq!(s.waiting(), 0);
        assert!(s.more.is_none(), "an empty box kept for good");
        // Anything else in it keeps it.
        s.set_user(Some("alice".into()));
        s.wait(true);
        s.wait(false);
        assert!(s.more.is_some());
        assert_eq!(
            s.more.as_ref().and_then(|m| m.user.as_deref()),
            Some("alice")
        );
    }
}
