//! `broadcast`: N raw subscribers on one channel and one publisher. Each payload carries its
//! sequence number and its send time on the machine-wide monotonic clock, so any process can
//! time a delivery; per publish the slowest delivery is kept, and the parent (or `finalize`)
//! turns publishes every subscriber received into the publish-to-all histogram. With
//! `--warmup N`, publishes 1..=N are sent and awaited like the rest but left out of the
//! latencies (every process knows a delivery's sequence number, so all agree on which).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::cli::{Config, PublishMode};
use crate::conn::{Event, Handle};
use crate::modes::publisher::{Publisher, PUBLISHER_TAG};
use crate::modes::{Phase, Workload};
use crate::net::Net;
use crate::pacer::Pacer;
use crate::report::{self, Report};
use crate::scan;
use crate::sys;

/// In serial mode, give up on a publish that not every subscriber received after this long.
const SERIAL_TIMEOUT_US: u64 = 2_000_000;
/// Drain ends once no delivery arrived for this long (other processes' publishes are unknown
/// here, so silence is the only sign that nothing is left in flight).
const QUIET_US: u64 = 300_000;

pub struct Broadcast {
    channel: String,
    size: usize,
    /// `--json-records`: payloads made by [`json_records`].
    records: bool,
    serial: bool,
    rate: f64,
    /// Sequence numbers up to this are warm-up: paced and counted, but not in the latencies.
    warmup: u64,
    publisher: Option<Publisher>,
    pacer: Option<Pacer>,
    subscribers_open: u64,
    /// Subscribers open when the run started: the count a complete publish reaches here.
    expected: u64,
    /// Per sequence number: (deliveries, slowest delivery µs).
    seqs: BTreeMap<u64, (u64, u64)>,
    delivery: Histogram<u64>,
    deliveries: u64,
    /// Frame bytes the subscribers received (headers included), and how many deliveries
    /// came compressed (`--compression`).
    wire_bytes: u64,
    compressed: u64,
    unparsed: u64,
    /// Serial mode: the publish being waited for, and when it was sent.
    outstanding: Option<(u64, u64)>,
    serial_timeouts: u64,
    last_delivery: u64,
    publishing: bool,
}

impl Broadcast {
    pub fn new(cfg: &Config, n: u32) -> Self {
        let publisher = Publisher::for_run(cfg, n);
        Broadcast {
            channel: cfg.channel.clone(),
            size: cfg.size,
            records: cfg.json_records,
            serial: cfg.publish_mode == PublishMode::Serial,
            rate: cfg.publish_rate,
            warmup: cfg.warmup_publishes,
            publisher,
            pacer: None,
            subscribers_open: 0,
            expected: 0,
            seqs: BTreeMap::new(),
            delivery: report::new_hist(),
            deliveries: 0,
            wire_bytes: 0,
            compressed: 0,
            unparsed: 0,
            outstanding: None,
            serial_timeouts: 0,
            last_delivery: 0,
            publishing: false,
        }
    }
}

/// `{"seq":N,"ts":T,"pad":"xxx"}`, padded to `size` bytes when `size` allows.
pub fn payload(seq: u64, ts_us: u64, size: usize) -> Vec<u8> {
    let mut s = String::with_capacity(size.max(48));
    let _ = write!(s, "{{\"seq\":{seq},\"ts\":{ts_us},\"pad\":\"");
    let pad = size.saturating_sub(s.len() + 2);
    s.push_str(&"x".repeat(pad));
    s.push_str("\"}");
    s.into_bytes()
}

/// `{"seq":N,"ts":T,"records":[...]}`: about `size` bytes of records like a feed publishes
/// (ids, user names, prices, timestamps, a status word, a short text), varying per record
/// and per publish, so DEFLATE finds what it finds in real JSON — repeated keys and
/// vocabulary, not a run of one byte.
pub fn json_records(seq: u64, ts_us: u64, size: usize) -> Vec<u8> {
    const STATUS: [&str; 4] = ["open", "filled", "cancelled", "partial"];
    const WORDS: [&str; 8] = [
        "alpha", "market", "update", "delta", "quote", "north", "river", "signal",
    ];
    let mut s = String::with_capacity(size + 256);
    let _ = write!(s, "{{\"seq\":{seq},\"ts\":{ts_us},\"records\":[");
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut i = 0u64;
    while s.len() + 2 < size {
        let r = next();
        if i > 0 {
            s.push(',');
        }
        let _ = write!(
            s,
            "{{\"id\":{},\"user\":\"user-{}\",\"price\":{}.{:02},\"qty\":{},\"status\":\"{}\",\"at\":\"2025-06-{:02}T{:02}:{:02}:{:02}Z\",\"note\":\"{} {}\"}}",
            seq * 100 + i,
            r % 5000,
            r % 900 + 10,
            (r >> 10) % 100,
            (r >> 17) % 1000,
            STATUS[(r >> 27) as usize % 4],
            (r >> 30) % 28 + 1,
            (r >> 35) % 24,
            (r >> 40) % 60,
            (r >> 46) % 60,
            WORDS[(r >> 52) as usize % 8],
            WORDS[(r >> 56) as usize % 8],
        );
        i += 1;
    }
    s.push_str("]}");
    s.into_bytes()
}

impl Workload for Broadcast {
    fn path(&self, _client: u32) -> String {
        format!("/ws?channel={}&format=raw", self.channel)
    }

    fn start(&mut self, net: &mut Net, now: u64) {
        if let Some(p) = &mut self.publisher {
            p.start(net, now);
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
        match ev {
            Event::Open => self.subscribers_open += 1,
            Event::Closed { was_open: true, .. } => self.subscribers_open -= 1,
            Event::Message {
                payload,
                wire_bytes,
                compressed,
                ..
            } => {
                self.wire_bytes += *wire_bytes as u64;
                self.compressed += u64::from(*compressed);
                let (Some(seq), Some(ts)) = (
                    scan::find_u64(payload, "seq"),
                    scan::find_u64(payload, "ts"),
                ) else {
                    self.unparsed += 1;
                    return;
                };
                let arrived = sys::monotonic_us();
                let latency = arrived.saturating_sub(ts).max(1);
                if seq > self.warmup {
                    self.delivery.saturating_record(latency);
                }
                self.deliveries += 1;
                self.last_delivery = arrived;
                let entry = self.seqs.entry(seq).or_insert((0, 0));
                entry.0 += 1;
                entry.1 = entry.1.max(latency);
                if self.outstanding.is_some_and(|(s, _)| s == seq) && entry.0 >= self.expected {
                    self.outstanding = None;
                }
            }
            _ => {}
        }
    }

    fn go(&mut self, _net: &mut Net, now: u64) {
        self.expected = self.subscribers_open;
        self.publishing = true;
        self.last_delivery = now;
        self.pacer = Some(Pacer::new(self.rate, now));
    }

    fn work(&mut self, net: &mut Net, now: u64, _phase: Phase) -> u64 {
        let Some(p) = &mut self.publisher else {
            return 50_000;
        };
        let mut next_us = 50_000;
        if self.publishing {
            if self.serial {
                if let Some((_, sent)) = self.outstanding {
                    if now.saturating_sub(sent) > SERIAL_TIMEOUT_US {
                        self.serial_timeouts += 1;
                        self.outstanding = None;
                    }
                }
                if self.outstanding.is_none() && p.is_idle() {
                    p.want(1);
                }
            } else if let Some(pacer) = &mut self.pacer {
                let due = pacer.due(now);
                pacer.took(due);
                p.want(due);
                next_us = pacer.next_in_us(now);
            }
        }
        let (size, records) = (self.size, self.records);
        let sent = p.pump(net, now, &mut |seq| {
            let ts = sys::monotonic_us();
            if records {
                json_records(seq, ts, size)
            } else {
                payload(seq, ts, size)
            }
        });
        if self.serial {
            if let Some(&seq) = sent.last() {
                self.outstanding = Some((seq, now));
            }
            // Serial publishing is paced by deliveries: poll again soon.
            next_us = 1_000;
        }
        next_us
    }

    fn stop(&mut self, _now: u64) {
        self.publishing = false;
        self.outstanding = None;
        if let Some(p) = &mut self.publisher {
            p.stop();
        }
    }

    fn drained(&self, now: u64) -> bool {
        let publisher_idle = match &self.publisher {
            Some(p) => p.is_idle(),
            None => true,
        };
        let all_in = self.publisher.as_ref().is_some_and(|p| {
            self.seqs.len() as u64 == p.published
                && self.seqs.values().all(|&(count, _)| count >= self.expected)
        });
        publisher_idle && (all_in || now.saturating_sub(self.last_delivery) > QUIET_US)
    }

    fn messages(&self) -> u64 {
        self.deliveries
    }

    fn finish(&mut self, report: &mut Report) {
        report.add("subscribers_ready", self.expected);
        report.add("deliveries", self.deliveries);
        report.add("wire_bytes", self.wire_bytes);
        report.add("compressed_deliveries", self.compressed);
        report.add("unparsed", self.unparsed);
        report.add("serial_timeouts", self.serial_timeouts);
        report.set_hist(
            report::DELIVERY,
            std::mem::replace(&mut self.delivery, report::new_hist()),
        );
        // Warm-up publishes were needed for pacing and completion; the figures leave them out.
        let measured = self.seqs.split_off(&self.warmup.saturating_add(1));
        report.set_max("warmup_publishes", self.seqs.len() as u64);
        report.publishes = measured;
        if let Some(p) = &self.publisher {
            p.finish(report);
        }
        report.param("channel", &self.channel);
        report.param("size", self.size);
        report.param("json_records", self.records);
        report.param("publish_mode", if self.serial { "serial" } else { "rate" });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_json_of_the_requested_size() {
        let p = payload(7, 123, 64);
        assert_eq!(p.len(), 64);
        assert!(serde_json::from_slice::<serde_json::Value>(&p).is_ok());
        assert_eq!(scan::find_u64(&p, "seq"), Some(7));
        assert_eq!(scan::find_u64(&p, "ts"), Some(123));
        assert!(payload(1, 1, 0).len() < 48);
    }

    #[test]
    fn json_records_are_json_of_about_the_size_and_compress_like_json() {
        let p = json_records(7, 123, 1024);
        assert!((1024..1400).contains(&p.len()), "{}", p.len());
        let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
        assert!(v["records"].as_array().is_some_and(|r| r.len() > 3));
        assert_eq!(scan::find_u64(&p, "seq"), Some(7));
        assert_eq!(scan::find_u64(&p, "ts"), Some(123));
        assert_ne!(json_records(8, 123, 1024)[40..], p[40..]);
        let mut z = Vec::new();
        switchboard::codec::deflate::Deflate::new().compress(&p, 15, &mut z);
        let ratio = p.len() as f64 / z.len() as f64;
        assert!((1.5..6.0).contains(&ratio), "ratio {ratio}");
    }
}
