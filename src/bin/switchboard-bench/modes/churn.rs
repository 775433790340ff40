//! `churn`: K subscribers in JSON envelope mode that keep disconnecting and resuming with
//! `since=<last id>` at `--rate` reconnects/s while a publisher publishes steadily. Every
//! client checks that the ids it receives continue exactly where it left off.

use std::collections::VecDeque;

use crate::cli::Config;
use crate::conn::{Event, Handle};
use crate::modes::publisher::{Publisher, PUBLISHER_TAG};
use crate::modes::{endpoint, Phase, Workload};
use crate::net::Net;
use crate::pacer::Pacer;
use crate::report::Report;
use crate::scan;

/// Wait before retrying a client whose connection failed or was dropped by the server.
const RETRY_US: u64 = 100_000;
/// Drain ends after this long without a message when the last published id is unknown.
const QUIET_US: u64 = 500_000;
/// Churning starts once every open client of this process has received a message (so it has
/// an id to resume from), or this long after the run started at the latest.
const CHURN_START_US: u64 = 1_000_000;
/// How far the round robin looks for an open client to disconnect before giving up this turn.
const MAX_SCAN: usize = 1024;

#[derive(Debug, Default)]
struct Client {
    conn: Option<usize>,
    last: Option<u64>,
    gaps: u32,
    dups: u32,
}

pub struct Churn {
    channel: String,
    clients: Vec<Client>,
    endpoints: Vec<(std::net::SocketAddr, Option<std::net::IpAddr>)>,
    publisher: Option<Publisher>,
    publish_rate: f64,
    reconnect_rate: f64,
    /// Reconnects happen only from `go_at + window.0` until `go_at + window.1`.
    window: (u64, u64),
    publish_pacer: Option<Pacer>,
    churn_pacer: Option<Pacer>,
    cursor: usize,
    /// Clients to reconnect, with the time they may.
    down: VecDeque<(u32, u64)>,
    churning: bool,
    /// Every open client had an id (or time ran out): disconnecting may begin.
    churn_started: bool,
    go_at: u64,
    messages: u64,
    reconnects: u64,
    reconnect_failed: u64,
    retries: u64,
    gaps: u64,
    missing: u64,
    dups: u64,
    not_recovered: u64,
    resumed_without_id: u64,
    last_message: u64,
}

impl Churn {
    pub fn new(cfg: &Config, n: u32) -> Self {
        let publisher = Publisher::for_run(cfg, n);
        Churn {
            channel: cfg.channel.clone(),
            clients: (0..n).map(|_| Client::default()).collect(),
            endpoints: (0..n).map(|i| endpoint(cfg, i)).collect(),
            publisher,
            publish_rate: cfg.publish_rate,
            reconnect_rate: cfg.rate,
            window: (cfg.churn_start_us, cfg.churn_stop_us.unwrap_or(u64::MAX)),
            publish_pacer: None,
            churn_pacer: None,
            cursor: 0,
            down: VecDeque::new(),
            churning: false,
            churn_started: false,
            go_at: 0,
            messages: 0,
            reconnects: 0,
            reconnect_failed: 0,
            retries: 0,
            gaps: 0,
            missing: 0,
            dups: 0,
            not_recovered: 0,
            resumed_without_id: 0,
            last_message: 0,
        }
    }

    /// Checks one envelope id against what client `i` saw last.
    fn check(&mut self, i: usize, id: u64) {
        let Some(c) = self.clients.get_mut(i) else {
            return;
        };
        match c.last {
            None => c.last = Some(id),
            Some(last) if id == last + 1 => c.last = Some(id),
            Some(last) if id <= last => {
                self.dups += 1;
                c.dups += 1;
            }
            Some(last) => {
                self.gaps += 1;
                self.missing += id - last - 1;
                c.gaps += 1;
                c.last = Some(id);
            }
        }
    }

    /// Starts client `i`'s next connection, resuming after its last id.
    fn connect(&mut self, net: &mut Net, i: u32, now: u64) {
        let path = self.path(i);
        if self.churning
            && self
                .clients
                .get(i as usize)
                .is_some_and(|c| c.last.is_none())
        {
            // Messages published while it was away cannot be checked for this client.
            self.resumed_without_id += 1;
        }
        let Some(&(target, source)) = self.endpoints.get(i as usize) else {
            return;
        };
        match net.open_ws(target, source, &path, i) {
            Ok(id) => {
                if let Some(c) = self.clients.get_mut(i as usize) {
                    c.conn = Some(id);
                }
            }
            Err(_) => {
                self.reconnect_failed += 1;
                self.down.push_back((i, now + RETRY_US));
            }
        }
    }

    /// Disconnects the next open client that has an id to resume from (round robin) and
    /// reconnects it at once.
    fn churn_one(&mut self, net: &mut Net, now: u64) {
        let n = self.clients.len();
        for _ in 0..n.min(MAX_SCAN) {
            let i = self.cursor % n.max(1);
            self.cursor = self.cursor.wrapping_add(1);
            let Some(id) = self
                .clients
                .get(i)
                .filter(|c| c.last.is_some())
                .and_then(|c| c.conn)
            else {
                continue;
            };
            if !net.is_open(id) {
                continue;
            }
            net.close(id);
            self.reconnects += 1;
            self.connect(net, i as u32, now);
            return;
        }
    }
}

impl Workload for Churn {
    fn path(&self, client: u32) -> String {
        match self.clients.get(client as usize).and_then(|c| c.last) {
            Some(last) => format!("/ws?channel={}&since={last}", self.channel),
            None => format!("/ws?channel={}", self.channel),
        }
    }

    fn start(&mut self, net: &mut Net, now: u64) {
        if let Some(p) = &mut self.publisher {
            p.start(net, now);
        }
    }

    fn on_opening(&mut self, client: u32, id: Result<usize, crate::cause::Cause>, now: u64) {
        match id {
            Ok(id) => {
                if let Some(c) = self.clients.get_mut(client as usize) {
                    c.conn = Some(id);
                }
            }
            Err(_) => self.down.push_back((client, now + RETRY_US)),
        }
    }

    fn ready(&self) -> bool {
        match &self.publisher {
            Some(p) => p.is_settled(),
            None => true,
        }
    }

    fn on_event(&mut self, h: &mut Handle<'_>, ev: &Event<'_>, now: u64, _phase: Phase) {
        if h.tag() == PUBLISHER_TAG {
            if let Some(p) = &mut self.publisher {
                p.on_event(ev, now);
            }
            return;
        }
        let i = h.tag() as usize;
        match ev {
            Event::Message { payload, .. } => {
                let is = |s: &[u8]| payload.windows(s.len()).any(|w| w == s);
                if is(b"\"type\":\"message\"") {
                    if let Some(id) = scan::find_u64(payload, "id") {
                        self.messages += 1;
                        self.last_message = now;
                        self.check(i, id);
                    }
                } else if is(b"\"recovered\":false") {
                    self.not_recovered += 1;
                }
            }
            Event::Closed { .. } => {
                if let Some(c) = self.clients.get_mut(i) {
                    c.conn = None;
                }
                self.down.push_back((h.tag(), now + RETRY_US));
            }
            _ => {}
        }
    }

    fn go(&mut self, _net: &mut Net, now: u64) {
        self.churning = true;
        self.go_at = now;
        self.last_message = now;
        self.publish_pacer = Some(Pacer::new(self.publish_rate, now));
    }

    fn work(&mut self, net: &mut Net, now: u64, _phase: Phase) -> u64 {
        let mut next_us = 50_000;
        if let (Some(p), Some(pacer)) = (&mut self.publisher, &mut self.publish_pacer) {
            if self.churning {
                let due = pacer.due(now);
                pacer.took(due);
                p.want(due);
                next_us = next_us.min(pacer.next_in_us(now));
            }
            p.pump(net, now, &mut |seq| {
                format!("{{\"seq\":{seq}}}").into_bytes()
            });
        }
        if self.churning && !self.churn_started {
            self.churn_started = now >= self.go_at + CHURN_START_US
                || self
                    .clients
                    .iter()
                    .all(|c| c.last.is_some() || c.conn.is_none());
        }
        let in_window = (self.window.0..self.window.1).contains(&now.saturating_sub(self.go_at));
        if self.churning && self.reconnect_rate > 0.0 && self.churn_started && in_window {
            let rate = self.reconnect_rate;
            let pacer = self
                .churn_pacer
                .get_or_insert_with(|| Pacer::new(rate, now));
            let due = pacer.due(now);
            pacer.took(due);
            next_us = next_us.min(pacer.next_in_us(now));
            for _ in 0..due {
                self.churn_one(net, now);
            }
        }
        while let Some(&(i, at)) = self.down.front() {
            if at > now {
                next_us = next_us.min(at - now);
                break;
            }
            self.down.pop_front();
            self.retries += 1;
            self.connect(net, i, now);
        }
        next_us
    }

    fn stop(&mut self, _now: u64) {
        self.churning = false;
        if let Some(p) = &mut self.publisher {
            p.stop();
        }
    }

    fn drained(&self, now: u64) -> bool {
        let publisher_idle = match &self.publisher {
            Some(p) => p.is_idle(),
            None => true,
        };
        let caught_up = match self.publisher.as_ref().and_then(|p| p.last_id) {
            Some(last) => self.clients.iter().all(|c| c.last >= Some(last)),
            None => now.saturating_sub(self.last_message) > QUIET_US,
        };
        publisher_idle && self.down.is_empty() && caught_up
    }

    fn messages(&self) -> u64 {
        self.messages
    }

    fn finish(&mut self, report: &mut Report) {
        report.add("messages", self.messages);
        report.add("reconnects", self.reconnects);
        report.add("reconnect_failed", self.reconnect_failed);
        report.add("retries", self.retries);
        report.add("gaps", self.gaps);
        report.add("missing_ids", self.missing);
        report.add("duplicates", self.dups);
        report.add("not_recovered", self.not_recovered);
        report.add("resumed_without_id", self.resumed_without_id);
        let with = |f: fn(&Client) -> bool| self.clients.iter().filter(|c| f(c)).count() as u64;
        report.add("clients_with_gaps", with(|c| c.gaps > 0));
        report.add("clients_with_dups", with(|c| c.dups > 0));
        report.add("clients_never_received", with(|c| c.last.is_none()));
        for c in &self.clients {
            if let Some(last) = c.last {
                *report.last_ids.entry(last).or_insert(0) += 1;
                // Without ids in publish responses, the highest id any client saw stands in
                // for the last published one.
                report.set_max("max_seen_id", last);
            }
        }
        if let Some(p) = &self.publisher {
            p.finish(report);
        }
        report.param("channel", &self.channel);
    }
}
