//! `publish`: N connections, each keeping `--depth` publishes in flight for `--duration` —
//! `{"op":"publish",...}` frames on `/ws` (`--publish-via ws`) or `POST /publish/NAME`
//! pipelined on a keep-alive connection (`--publish-via http`) — and the rate at which the
//! server acknowledges them. Replies come back in request order on each connection, so the
//! oldest send matches the next reply (as in `echo`).
//!
//! With `--send-to USER` the requests are `POST /users/USER/send` instead; `--receiver ADDR`
//! then first opens a WebSocket as that user on ADDR (another node, in a cluster) and counts
//! the direct messages it gets, so every acknowledged send can be checked for arrival.
//!
//! The body is the same `--size` bytes of JSON every time: the client's cost per request
//! stays a copy, which matters when it shares two cores with the server and Redis.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use hdrhistogram::Histogram;
use switchboard::codec::frame::OpCode;

use crate::cli::{Config, PublishVia};
use crate::conn::{Event, Handle};
use crate::modes::broadcast::payload;
use crate::modes::{Phase, Workload};
use crate::net::Net;
use crate::report::{self, Report};
use crate::sys;

/// The receiver's connection tag: never a client number.
const RECEIVER_TAG: u32 = u32::MAX - 1;
/// After the receiver's handshake, how long before sending starts: its node writes the user's
/// registry entry to Redis at the end of a turn, and a send before that finds no one (404).
const RECEIVER_SETTLE_US: u64 = 300_000;
/// Latency histogram name (request sent → reply read).
pub const ACK_RTT: &str = "ack_rtt_us";

#[derive(Debug, Default)]
struct Client {
    conn: Option<usize>,
    /// Send instants (µs) of the requests in flight, oldest first.
    in_flight: VecDeque<u64>,
}

#[derive(Debug)]
struct Receiver {
    target: SocketAddr,
    user: String,
    conn: Option<usize>,
    /// When its handshake completed (µs), or why it failed.
    opened_at: Option<u64>,
    failed: Option<String>,
    received: u64,
}

pub struct Publish {
    via: PublishVia,
    depth: u32,
    /// One request as it goes on the wire, minus the WebSocket framing: a JSON op, or a whole
    /// HTTP request.
    request: Vec<u8>,
    what: String,
    clients: Vec<Client>,
    receiver: Option<Receiver>,
    sending: bool,
    rtt: Histogram<u64>,
    sent: u64,
    acked: u64,
    errors: BTreeMap<String, u64>,
    last_reply: u64,
}

impl Publish {
    pub fn new(cfg: &Config, n: u32) -> Self {
        let data = payload(0, 0, cfg.size);
        let target = cfg.targets.first().map(ToString::to_string);
        let (request, what) = match (&cfg.send_to, cfg.publish_via) {
            (Some(user), _) => {
                let mut req = Vec::new();
                let path = format!("/users/{user}/send");
                crate::http::write_post(&mut req, target.as_deref().unwrap_or(""), &path, &data);
                (req, format!("POST {path}"))
            }
            (None, PublishVia::Http) => {
                let mut req = Vec::new();
                let path = format!("/publish/{}", cfg.channel);
                crate::http::write_post(&mut req, target.as_deref().unwrap_or(""), &path, &data);
                (req, format!("POST {path}"))
            }
            (None, PublishVia::Ws) => {
                let mut op = format!(
                    "{{\"op\":\"publish\",\"channel\":\"{}\",\"data\":",
                    cfg.channel
                )
                .into_bytes();
                op.extend_from_slice(&data);
                op.push(b'}');
                (op, "ws publish op".into())
            }
        };
        let receiver = cfg
            .receiver
            .zip(cfg.send_to.clone())
            .filter(|_| cfg.runs_publisher())
            .map(|(target, user)| Receiver {
                target,
                user,
                conn: None,
                opened_at: None,
                failed: None,
                received: 0,
            });
        Publish {
            via: cfg.publish_via,
            depth: cfg.depth,
            request,
            what,
            clients: (0..n).map(|_| Client::default()).collect(),
            receiver,
            sending: false,
            rtt: report::new_hist(),
            sent: 0,
            acked: 0,
            errors: BTreeMap::new(),
            last_reply: 0,
        }
    }

    fn error(&mut self, what: String) {
        *self.errors.entry(what).or_insert(0) += 1;
    }

    /// Queues one request on `h` (the client's own connection).
    fn send_one(&mut self, h: &mut Handle<'_>, client: usize, now: u64) {
        match self.via {
            PublishVia::Ws => h.send(OpCode::Text, &self.request),
            PublishVia::Http => h.send_raw(&self.request),
        }
        if let Some(c) = self.clients.get_mut(client) {
            c.in_flight.push_back(now);
        }
        self.sent += 1;
    }

    /// One reply to client `client`: `ok` if the server accepted the request.
    fn on_reply(&mut self, h: &mut Handle<'_>, client: usize, ok: Result<(), String>) {
        let now = sys::monotonic_us();
        self.last_reply = now;
        let Some(sent) = self
            .clients
            .get_mut(client)
            .and_then(|c| c.in_flight.pop_front())
        else {
            self.error("unexpected_reply".into());
            return;
        };
        match ok {
            Ok(()) => {
                self.acked += 1;
                self.rtt.saturating_record(now.saturating_sub(sent).max(1));
            }
            Err(e) => self.error(e),
        }
        if self.sending {
            self.send_one(h, client, now);
        }
    }

    fn on_receiver(&mut self, h: &mut Handle<'_>, ev: &Event<'_>, now: u64) {
        let Some(r) = &mut self.receiver else {
            return;
        };
        match ev {
            Event::Open => {
                r.conn = Some(h.id());
                r.opened_at = Some(now);
            }
            Event::Message { payload, .. }
                if payload.windows(15).any(|w| w == b"\"type\":\"direct\"") =>
            {
                r.received += 1;
            }
            Event::Closed { cause, .. } => {
                r.conn = None;
                r.failed = Some(format!("receiver_{}", cause.key()));
            }
            _ => {}
        }
    }
}

/// Whether a WebSocket reply acknowledges a publish (`published`) or is an error.
fn ws_reply(payload: &[u8]) -> Result<(), String> {
    let has = |needle: &[u8]| payload.windows(needle.len()).any(|w| w == needle);
    if has(b"\"type\":\"published\"") {
        Ok(())
    } else if has(b"\"type\":\"error\"") {
        Err("ws_error_reply".into())
    } else {
        Err("ws_other_message".into())
    }
}

impl Workload for Publish {
    fn path(&self, _client: u32) -> String {
        "/ws".into()
    }

    fn http_clients(&self) -> bool {
        self.via == PublishVia::Http
    }

    fn start(&mut self, net: &mut Net, _now: u64) {
        if let Some(r) = &mut self.receiver {
            let path = format!("/ws?user={}", r.user);
            if let Err(cause) = net.open_ws(r.target, None, &path, RECEIVER_TAG) {
                r.failed = Some(format!("receiver_{}", cause.key()));
            }
        }
    }

    fn ready(&self) -> bool {
        match &self.receiver {
            None => true,
            Some(r) if r.failed.is_some() => true,
            Some(r) => r
                .opened_at
                .is_some_and(|t| sys::monotonic_us() >= t + RECEIVER_SETTLE_US),
        }
    }

    fn on_event(&mut self, h: &mut Handle<'_>, ev: &Event<'_>, now: u64, _phase: Phase) {
        if h.tag() == RECEIVER_TAG {
            return self.on_receiver(h, ev, now);
        }
        let client = h.tag() as usize;
        match ev {
            Event::Open | Event::HttpReady => {
                if let Some(c) = self.clients.get_mut(client) {
                    c.conn = Some(h.id());
                }
                if self.sending {
                    for _ in 0..self.depth {
                        self.send_one(h, client, now);
                    }
                }
            }
            Event::Message { payload, .. } => {
                let ok = ws_reply(payload);
                self.on_reply(h, client, ok);
            }
            Event::HttpResponse { status, .. } => {
                let ok = if (200..300).contains(status) {
                    Ok(())
                } else {
                    Err(format!("http_{status}"))
                };
                self.on_reply(h, client, ok);
            }
            Event::Closed { .. } => {
                if let Some(c) = self.clients.get_mut(client) {
                    c.conn = None;
                    let lost = c.in_flight.len() as u64;
                    c.in_flight.clear();
                    if lost > 0 {
                        *self
                            .errors
                            .entry("lost_with_connection".into())
                            .or_insert(0) += lost;
                    }
                }
            }
        }
    }

    fn go(&mut self, net: &mut Net, now: u64) {
        self.sending = true;
        self.last_reply = now;
        for i in 0..self.clients.len() {
            let Some(id) = self.clients.get(i).and_then(|c| c.conn) else {
                continue;
            };
            for _ in 0..self.depth {
                let queued = match self.via {
                    PublishVia::Ws => net.queue(id, OpCode::Text, &self.request),
                    PublishVia::Http => net.queue_raw(id, &self.request),
                };
                if queued {
                    if let Some(c) = self.clients.get_mut(i) {
                        c.in_flight.push_back(now);
                    }
                    self.sent += 1;
                }
            }
            // One write per connection for the whole initial window.
            net.flush(id);
        }
    }

    fn stop(&mut self, _now: u64) {
        self.sending = false;
    }

    fn drained(&self, _now: u64) -> bool {
        let replies_in = self.clients.iter().all(|c| c.in_flight.is_empty());
        // Direct messages may trail their acknowledgements; the drain timeout bounds the wait.
        let arrived = self
            .receiver
            .as_ref()
            .is_none_or(|r| r.failed.is_some() || r.received >= self.acked);
        replies_in && arrived
    }

    fn messages(&self) -> u64 {
        self.acked
    }

    fn finish(&mut self, report: &mut Report) {
        report.add("sent", self.sent);
        report.add("acked", self.acked);
        let lost: u64 = self.clients.iter().map(|c| c.in_flight.len() as u64).sum();
        report.add("unanswered_at_end", lost);
        for (k, n) in &self.errors {
            report.add(&format!("error_{k}"), *n);
        }
        if let Some(r) = &self.receiver {
            report.add("received", r.received);
            if let Some(f) = &r.failed {
                report.errors.push(f.clone());
            }
        }
        report.set_hist(
            ACK_RTT,
            std::mem::replace(&mut self.rtt, report::new_hist()),
        );
        report.param("request", &self.what);
        report.param("depth", self.depth);
        report.param("request_bytes", self.request.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_told_apart() {
        let ok = br#"{"type":"published","channel":"c","id":3,"epoch":"e"}"#;
        assert_eq!(ws_reply(ok), Ok(()));
        assert!(ws_reply(br#"{"type":"error","code":"unavailable"}"#).is_err());
        assert!(ws_reply(br#"{"type":"message"}"#).is_err());
    }
}
