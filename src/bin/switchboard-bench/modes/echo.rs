//! `echo`: N connections on `/echo`, each keeping `--depth` messages of `--size` bytes in
//! flight for `--duration`; round-trip latency from a per-connection FIFO of send instants
//! (the server echoes in order, so the oldest send matches the next reply).

use std::collections::VecDeque;

use hdrhistogram::Histogram;
use switchboard::codec::frame::OpCode;

use crate::cli::Config;
use crate::conn::{Event, Handle};
use crate::modes::{Phase, Workload};
use crate::net::Net;
use crate::report::{self, Report};
use crate::sys;

/// Path of the server's echo endpoint.
const ECHO_PATH: &str = "/echo";

#[derive(Debug, Default)]
struct Client {
    conn: Option<usize>,
    /// Send instants (µs) of the messages in flight, oldest first.
    in_flight: VecDeque<u64>,
}

pub struct Echo {
    depth: u32,
    opcode: OpCode,
    payload: Vec<u8>,
    clients: Vec<Client>,
    sending: bool,
    rtt: Histogram<u64>,
    messages: u64,
    bytes: u64,
    mismatched: u64,
}

impl Echo {
    pub fn new(cfg: &Config, n: u32) -> Self {
        // Text frames must be valid UTF-8; ASCII works for both kinds.
        let payload = (0..cfg.size).map(|i| b'a' + (i % 26) as u8).collect();
        Echo {
            depth: cfg.depth,
            opcode: if cfg.text {
                OpCode::Text
            } else {
                OpCode::Binary
            },
            payload,
            clients: (0..n).map(|_| Client::default()).collect(),
            sending: false,
            rtt: report::new_hist(),
            messages: 0,
            bytes: 0,
            mismatched: 0,
        }
    }
}

impl Workload for Echo {
    fn path(&self, _client: u32) -> String {
        ECHO_PATH.into()
    }

    fn on_event(&mut self, h: &mut Handle<'_>, ev: &Event<'_>, now: u64, _phase: Phase) {
        let Some(client) = self.clients.get_mut(h.tag() as usize) else {
            return;
        };
        match ev {
            Event::Open => {
                client.conn = Some(h.id());
                if self.sending {
                    for _ in 0..self.depth {
                        h.send(self.opcode, &self.payload);
                        client.in_flight.push_back(now);
                    }
                }
            }
            Event::Message {
                opcode, payload, ..
            } => {
                let Some(sent) = client.in_flight.pop_front() else {
                    // An echo we did not ask for; count it as wrong rather than guess.
                    self.mismatched += 1;
                    return;
                };
                if payload.len() != self.payload.len() || *opcode != self.opcode {
                    self.mismatched += 1;
                }
                if self.sending {
                    // The handler runs per read batch; `now` is when that batch was polled,
                    // which is as close to arrival as the loop can tell.
                    let now = sys::monotonic_us();
                    self.rtt.saturating_record(now.saturating_sub(sent).max(1));
                    self.messages += 1;
                    self.bytes += payload.len() as u64;
                    h.send(self.opcode, &self.payload);
                    client.in_flight.push_back(now);
                }
            }
            Event::Closed { .. } => {
                client.conn = None;
                client.in_flight = VecDeque::new();
            }
            _ => {}
        }
    }

    fn go(&mut self, net: &mut Net, now: u64) {
        self.sending = true;
        for client in &mut self.clients {
            let Some(id) = client.conn else { continue };
            for _ in 0..self.depth {
                if net.queue(id, self.opcode, &self.payload) {
                    client.in_flight.push_back(now);
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
        self.clients.iter().all(|c| c.in_flight.is_empty())
    }

    fn messages(&self) -> u64 {
        self.messages
    }

    fn finish(&mut self, report: &mut Report) {
        report.add("messages", self.messages);
        report.add("bytes", self.bytes);
        report.add("mismatched", self.mismatched);
        let lost: u64 = self.clients.iter().map(|c| c.in_flight.len() as u64).sum();
        report.add("unanswered_at_end", lost);
        report.set_hist(
            report::ECHO_RTT,
            std::mem::replace(&mut self.rtt, report::new_hist()),
        );
        report.param("size", self.payload.len());
        report.param("depth", self.depth);
        report.param(
            "frames",
            if self.opcode == OpCode::Text {
                "text"
            } else {
                "binary"
            },
        );
    }
}
