//! The one publisher of `broadcast` and `churn`: `POST /publish/NAME` on a keep-alive HTTP
//! connection (one request in flight), or `{"op":"publish",...}` frames on a `/ws` WebSocket.
//!
//! Publishes are requested as a count and each body is built only when it is actually sent,
//! so a timestamp inside it is the real send time, not the time the publish fell due.

use std::net::{IpAddr, SocketAddr};

use switchboard::codec::frame::OpCode;

use crate::cli::PublishVia;
use crate::conn::Event;
use crate::net::Net;
use crate::report::Report;
use crate::scan;

/// The publisher's connection tag: never a client number.
pub const PUBLISHER_TAG: u32 = u32::MAX;
/// Wait before reconnecting a publisher connection that failed.
const RETRY_US: u64 = 1_000_000;

pub struct Publisher {
    via: PublishVia,
    channel: String,
    target: SocketAddr,
    source: Option<IpAddr>,
    conn: Option<usize>,
    ready: bool,
    /// Connected or failed at least once (the ramp waits for this).
    settled: bool,
    /// An HTTP response is outstanding.
    awaiting: bool,
    backlog: u64,
    retry_at: u64,
    next_seq: u64,
    pub published: u64,
    pub acked: u64,
    /// Publishes that fell due but were never sent because the publisher was behind.
    behind: u64,
    /// Highest `"id"` seen in a publish response, if the server reports ids.
    pub last_id: Option<u64>,
    errors: Vec<(String, u64)>,
}

impl Publisher {
    /// The run's publisher, if this process runs one: it takes the endpoint after the last
    /// of the `n` clients'.
    pub fn for_run(cfg: &crate::cli::Config, n: u32) -> Option<Self> {
        cfg.runs_publisher().then(|| {
            let (target, source) = crate::modes::endpoint(cfg, n);
            let target = cfg.publish_target.unwrap_or(target);
            Publisher::new(cfg.publish_via, &cfg.channel, target, source)
        })
    }

    pub fn new(via: PublishVia, channel: &str, target: SocketAddr, source: Option<IpAddr>) -> Self {
        Publisher {
            via,
            channel: channel.to_string(),
            target,
            source,
            conn: None,
            ready: false,
            settled: false,
            awaiting: false,
            backlog: 0,
            retry_at: 0,
            next_seq: 1,
            published: 0,
            acked: 0,
            behind: 0,
            last_id: None,
            errors: Vec::new(),
        }
    }

    fn error(&mut self, what: String) {
        match self.errors.iter_mut().find(|(k, _)| *k == what) {
            Some((_, n)) => *n += 1,
            None => self.errors.push((what, 1)),
        }
    }

    pub fn start(&mut self, net: &mut Net, now: u64) {
        let started = match self.via {
            PublishVia::Http => net.open_http(self.target, self.source, PUBLISHER_TAG),
            PublishVia::Ws => net.open_ws(self.target, self.source, "/ws", PUBLISHER_TAG),
        };
        match started {
            Ok(id) => self.conn = Some(id),
            Err(cause) => {
                self.error(format!("connect_{}", cause.key()));
                self.settled = true;
                self.retry_at = now + RETRY_US;
            }
        }
    }

    pub fn is_settled(&self) -> bool {
        self.settled
    }

    /// Nothing queued and nothing awaiting an answer.
    pub fn is_idle(&self) -> bool {
        self.backlog == 0 && !self.awaiting
    }

    /// Asks for `n` more publishes.
    pub fn want(&mut self, n: u64) {
        self.backlog += n;
    }

    /// The run is over: publishes still queued are dropped, not sent late. Sending them during
    /// the drain would outlast other processes' drains and make their subscribers look behind.
    pub fn stop(&mut self) {
        self.behind += self.backlog;
        self.backlog = 0;
    }

    /// Events of the publisher's own connection (tag `PUBLISHER_TAG`).
    pub fn on_event(&mut self, ev: &Event<'_>, now: u64) {
        match ev {
            Event::HttpReady | Event::Open => {
                self.ready = true;
                self.settled = true;
            }
            Event::HttpResponse { status, body } => {
                self.awaiting = false;
                if (200..300).contains(status) {
                    self.acked += 1;
                    self.note_id(body);
                } else {
                    self.error(format!("http_{status}"));
                }
            }
            Event::Message { payload, .. } => {
                // WebSocket publishing: the server may acknowledge or report an error.
                if payload.windows(7).any(|w| w == b"\"error\"") {
                    self.error("ws_error_reply".into());
                } else {
                    self.acked += 1;
                    self.note_id(payload);
                }
            }
            Event::Closed { cause, .. } => {
                self.error(format!("closed_{}", cause.key()));
                self.conn = None;
                self.ready = false;
                self.settled = true;
                // The request in flight is lost with the connection; it is not resent.
                self.awaiting = false;
                self.retry_at = now + RETRY_US;
            }
        }
    }

    fn note_id(&mut self, body: &[u8]) {
        if let Some(id) = scan::find_u64(body, "id") {
            self.last_id = Some(self.last_id.map_or(id, |l| l.max(id)));
        }
    }

    /// Sends what the backlog and the connection allow; `body(seq, now)` builds each payload.
    /// Returns the sequence numbers sent.
    pub fn pump(
        &mut self,
        net: &mut Net,
        now: u64,
        body: &mut dyn FnMut(u64) -> Vec<u8>,
    ) -> Vec<u64> {
        let mut sent = Vec::new();
        if self.conn.is_none() && now >= self.retry_at && self.settled {
            self.start(net, now);
        }
        let Some(id) = self.conn.filter(|_| self.ready) else {
            return sent;
        };
        while self.backlog > 0 && !self.awaiting {
            let seq = self.next_seq;
            let data = body(seq);
            let ok = match self.via {
                PublishVia::Http => {
                    let mut req = Vec::with_capacity(data.len() + 128);
                    crate::http::write_post(
                        &mut req,
                        &self.target.to_string(),
                        &format!("/publish/{}", self.channel),
                        &data,
                    );
                    self.awaiting = true;
                    net.queue_raw(id, &req)
                }
                PublishVia::Ws => {
                    let mut frame = format!(
                        "{{\"op\":\"publish\",\"channel\":\"{}\",\"data\":",
                        self.channel
                    )
                    .into_bytes();
                    frame.extend_from_slice(&data);
                    frame.push(b'}');
                    net.queue(id, OpCode::Text, &frame)
                }
            };
            if !ok {
                self.awaiting = false;
                break;
            }
            self.next_seq += 1;
            self.backlog -= 1;
            self.published += 1;
            sent.push(seq);
        }
        net.flush(id);
        sent
    }

    pub fn finish(&self, report: &mut Report) {
        report.add("published", self.published);
        report.add("publish_acked", self.acked);
        report.add("publish_behind", self.behind);
        for (k, n) in &self.errors {
            report.add(&format!("publish_error_{k}"), *n);
        }
        if let Some(id) = self.last_id {
            report.set_max("max_published_id", id);
        }
        report.param(
            "publish_via",
            match self.via {
                PublishVia::Http => "http",
                PublishVia::Ws => "ws",
            },
        );
    }
}
