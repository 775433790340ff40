//! `GET /metrics`: the server's counters in the Prometheus text exposition format (0.0.4).
//!
//! Workers count into their own relaxed atomics (`stats::WorkerStats`); a scrape sums them,
//! so reading metrics never slows a worker down. Every family carries `# HELP` and `# TYPE`;
//! counters end in `_total`. Totals are summed across workers; a few gauges are also given
//! per worker (`worker="N"`) to show how SO_REUSEPORT spread the load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::hub::engine::EngineStats;
use crate::transport::prom::{counter, family, gauge, sample, Kind};
use crate::transport::shared::Shared;
use crate::transport::stats::{WorkerStats, FRAME_ERROR_CODES};

/// The `Content-Type` of the response.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders every metric into `out` (appending).
///
/// Takes each history shard lock briefly (`Hub::history_len`) and reads `/proc/self/fd`, so
/// it costs more than a counter read; fine per scrape, not per message.
pub fn render(shared: &Shared, out: &mut String) {
    let queued: Vec<u64> = shared
        .hub
        .workers()
        .iter()
        .map(|l| l.queued.load(Ordering::Relaxed) as u64)
        .collect();
    View {
        workers: &shared.stats,
        queued: &queued,
        open: shared.open.load(Ordering::Relaxed) as u64,
        max_connections: shared.max_connections as u64,
        shutting_down: shared.shutting_down.load(Ordering::Relaxed),
        broadcasts: shared.hub.stats.publishes.load(Ordering::Relaxed),
        history: shared.hub.engine.history_len() as u64,
        engine_up: shared.hub.engine.health().is_ok(),
        engine: shared.hub.engine.stats(),
        open_fds: open_fds().map(|n| n as u64),
        fd_limit: shared.fd_limit,
    }
    .render(out);
}

/// Descriptors the process has open, counted in `/proc/self/fd` (Linux).
fn open_fds() -> Option<usize> {
    // Less the descriptor `read_dir` itself holds open.
    std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count().saturating_sub(1))
}

type Read = fn(&WorkerStats) -> u64;

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Open streaming connections by `transport` label. A new transport is one more line here,
/// reading its own gauge in `WorkerStats`.
const TRANSPORTS: &[(&str, Read)] = &[
    ("websocket_echo", |s| get(&s.open_ws_echo)),
    ("websocket", |s| get(&s.open_ws)),
    ("sse", |s| get(&s.open_sse)),
    ("poll", |s| get(&s.open_poll)),
];

/// Refused requests by `reason` label.
const REJECT_REASONS: &[(&str, Read)] = &[
    ("capacity", |s| get(&s.rejected_capacity)),
    ("origin", |s| get(&s.rejected_origin)),
    ("bad_handshake", |s| get(&s.rejected_handshake)),
    ("no_route", |s| get(&s.rejected_route)),
    ("unauthorized", |s| get(&s.rejected_token)),
    ("forbidden", |s| get(&s.rejected_forbidden)),
    ("per_ip", |s| get(&s.rejected_per_ip)),
    ("connect_rate", |s| get(&s.rejected_connect_rate)),
];

/// Unlabelled counters summed over workers: name, help, reader.
const COUNTERS: &[(&str, &str, Read)] = &[
    (
        "switchboard_accepted_connections_total",
        "TCP connections accepted.",
        |s| get(&s.accepted),
    ),
    (
        "switchboard_messages_received_total",
        "WebSocket data messages received from clients.",
        |s| get(&s.messages_in),
    ),
    (
        "switchboard_received_bytes_total",
        "Payload bytes of the WebSocket messages received from clients.",
        |s| get(&s.bytes_in),
    ),
    (
        "switchboard_messages_sent_total",
        "WebSocket data messages sent to clients (echoes, deliveries, protocol replies).",
        |s| get(&s.messages_out),
    ),
    (
        "switchboard_sent_bytes_total",
        "Bytes written to client sockets.",
        |s| get(&s.bytes_out),
    ),
    (
        "switchboard_deliveries_total",
        "Channel messages queued to subscribed connections.",
        |s| get(&s.deliveries),
    ),
    (
        "switchboard_compressed_messages_total",
        "Messages compressed (permessage-deflate): once per broadcast message, however many subscribers.",
        |s| get(&s.deflated_messages),
    ),
    (
        "switchboard_compression_input_bytes_total",
        "Bytes of the messages compressed, before compression.",
        |s| get(&s.deflated_plain_bytes),
    ),
    (
        "switchboard_compression_output_bytes_total",
        "Bytes of the messages compressed, after compression.",
        |s| get(&s.deflated_bytes),
    ),
    (
        "switchboard_slow_consumers_total",
        "Connections closed (1008) for exceeding --max-outbound-bytes of queued output.",
        |s| get(&s.slow_consumers),
    ),
    (
        "switchboard_heartbeat_reaped_total",
        "Connections closed for sending nothing, not even a pong, for --idle-timeout.",
        |s| get(&s.reaped),
    ),
    (
        "switchboard_forbidden_total",
        "Operations refused on an open connection because its token does not allow the channel.",
        |s| get(&s.forbidden),
    ),
    (
        "switchboard_rate_limited_total",
        "Publishes refused for exceeding --publish-rate (WebSocket rate_limited, HTTP 429).",
        |s| get(&s.rate_limited),
    ),
    (
        "switchboard_tokens_expired_total",
        "Connections closed (4001) because their token expired without a refresh.",
        |s| get(&s.tokens_expired),
    ),
    (
        "switchboard_tokens_refreshed_total",
        "Connection tokens replaced by a refresh.",
        |s| get(&s.tokens_refreshed),
    ),
    (
        "switchboard_handshake_timeouts_total",
        "Connections dropped for not completing the request head within --handshake-timeout.",
        |s| get(&s.handshake_timeouts),
    ),
];

/// A snapshot of everything rendered, read from `Shared` (kept apart so tests can build one).
#[derive(Debug)]
struct View<'a> {
    workers: &'a [Arc<WorkerStats>],
    /// Deliveries queued to each worker and not yet drained.
    queued: &'a [u64],
    open: u64,
    max_connections: u64,
    shutting_down: bool,
    broadcasts: u64,
    history: u64,
    engine_up: bool,
    engine: EngineStats,
    open_fds: Option<u64>,
    fd_limit: Option<u64>,
}

impl View<'_> {
    fn sum(&self, read: Read) -> u64 {
        self.workers
            .iter()
            .fold(0u64, |acc, w| acc.wrapping_add(read(w)))
    }

    fn render(&self, out: &mut String) {
        use Kind::{Counter, Gauge};

        family(
            out,
            "switchboard_build_info",
            Gauge,
            "Always 1; the version label says which build is running.",
        );
        sample(
            out,
            "switchboard_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );
        gauge(
            out,
            "switchboard_workers",
            "Event-loop threads.",
            self.workers.len() as u64,
        );
        gauge(
            out,
            "switchboard_max_connections",
            "Connections accepted before new ones get 503 (--max-connections).",
            self.max_connections,
        );
        gauge(
            out,
            "switchboard_open_connections",
            "Connections counted against the limit: every phase, every transport.",
            self.open,
        );
        gauge(
            out,
            "switchboard_shutting_down",
            "1 once graceful shutdown has begun.",
            u64::from(self.shutting_down),
        );

        family(
            out,
            "switchboard_connections",
            Gauge,
            "Open streaming connections by transport (WebSocket echo, WebSocket, SSE, held polls).",
        );
        for (transport, read) in TRANSPORTS {
            let n = self.sum(*read);
            sample(
                out,
                "switchboard_connections",
                &[("transport", transport)],
                n,
            );
        }
        family(
            out,
            "switchboard_worker_connections",
            Gauge,
            "Open streaming connections per worker, all transports.",
        );
        for (id, w) in self.workers.iter().enumerate() {
            let n = TRANSPORTS
                .iter()
                .fold(0u64, |acc, (_, read)| acc.wrapping_add(read(w)));
            let id = id.to_string();
            sample(out, "switchboard_worker_connections", &[("worker", &id)], n);
        }
        family(
            out,
            "switchboard_worker_queued_deliveries",
            Gauge,
            "Deliveries handed to each worker and not yet taken off its queue.",
        );
        for (id, n) in self.queued.iter().enumerate() {
            let id = id.to_string();
            let name = "switchboard_worker_queued_deliveries";
            sample(out, name, &[("worker", &id)], *n);
        }

        family(
            out,
            "switchboard_rejected_connections_total",
            Counter,
            "Requests refused by reason: capacity (503), origin (403), bad_handshake (4xx), no_route (404/405), unauthorized (401), forbidden (403), per_ip and connect_rate (429).",
        );
        for (reason, read) in REJECT_REASONS {
            let n = self.sum(*read);
            let name = "switchboard_rejected_connections_total";
            sample(out, name, &[("reason", reason)], n);
        }
        for (name, help, read) in COUNTERS {
            family(out, name, Counter, help);
            sample(out, name, &[], self.sum(*read));
        }
        family(
            out,
            "switchboard_frame_errors_total",
            Counter,
            "Connections failed for a framing or protocol error, by close code.",
        );
        let codes = FRAME_ERROR_CODES.iter().map(|c| c.to_string());
        let labels = codes.chain(std::iter::once("other".to_string()));
        for (i, code) in labels.enumerate() {
            let n = self.sum_at(i);
            sample(out, "switchboard_frame_errors_total", &[("code", &code)], n);
        }
        family(
            out,
            "switchboard_broadcasts_total",
            Counter,
            "Messages published to channels (each counted once, however many subscribers).",
        );
        sample(out, "switchboard_broadcasts_total", &[], self.broadcasts);
        gauge(
            out,
            "switchboard_history_messages",
            "Messages held in channel history for resume and GET /history.",
            self.history,
        );
        gauge(
            out,
            "switchboard_engine_up",
            "1 while the engine can serve (embedded: always; cluster: every Redis link up).",
            u64::from(self.engine_up),
        );
        self.render_bounds(out);
        if self.engine.links > 0 {
            self.render_cluster(out);
        }
        if let Some(n) = self.open_fds {
            gauge(
                out,
                "switchboard_open_fds",
                "File descriptors the process has open.",
                n,
            );
        }
        if let Some(n) = self.fd_limit {
            gauge(
                out,
                "switchboard_fd_limit",
                "RLIMIT_NOFILE soft limit: the most descriptors the process may open.",
                n,
            );
        }
    }

    /// Frame errors summed over workers for the code at `i` (the last slot is "other").
    fn sum_at(&self, i: usize) -> u64 {
        self.workers.iter().fold(0u64, |acc, w| {
            acc.wrapping_add(w.frame_errors.get(i).map_or(0, get))
        })
    }
}

impl View<'_> {
    /// The channel count and, for the embedded engine, the history budget.
    fn render_bounds(&self, out: &mut String) {
        let e = &self.engine;
        gauge(
            out,
            "switchboard_channels",
            "Live channels counted against --max-channels (embedded: with subscribers or history; cluster: with local subscribers).",
            e.channels,
        );
        counter(
            out,
            "switchboard_channels_refused_total",
            "Publishes and subscribes refused for creating a channel past --max-channels (too_many_channels).",
            e.channels_refused,
        );
        if e.history_max_bytes == 0 {
            return; // the store behind the engine keeps history
        }
        gauge(
            out,
            "switchboard_history_bytes",
            "What all channels' history costs in memory: messages, frames, structures.",
            e.history_bytes,
        );
        gauge(
            out,
            "switchboard_history_max_bytes",
            "The history budget (--history-max-bytes); past it the oldest history is evicted.",
            e.history_max_bytes,
        );
        counter(
            out,
            "switchboard_history_evicted_total",
            "Messages evicted from history, oldest first, to stay within --history-max-bytes.",
            e.history_evicted,
        );
    }

    /// The cluster engine's families (absent on a node without `--redis`).
    fn render_cluster(&self, out: &mut String) {
        let e = &self.engine;
        let gauges = [
            (
                "switchboard_redis_links",
                "Connections to Redis (two per shard: commands, subscriptions).",
                e.links,
            ),
            (
                "switchboard_redis_links_up",
                "Connections to Redis that are up.",
                e.links_up,
            ),
            (
                "switchboard_cluster_channels",
                "Channels this node has local subscribers for (subscribed in Redis).",
                e.channels,
            ),
        ];
        for (name, help, n) in gauges {
            gauge(out, name, help, n);
        }
        let counters = [
            (
                "switchboard_redis_connects_total",
                "Connections to Redis established (reconnects included).",
                e.connects,
            ),
            (
                "switchboard_redis_disconnects_total",
                "Connections to Redis lost (each fails what waited on it with `unavailable`).",
                e.disconnects,
            ),
            (
                "switchboard_cluster_messages_received_total",
                "Channel messages received from Redis Pub/Sub for local subscribers.",
                e.messages_in,
            ),
            (
                "switchboard_cluster_gap_fills_total",
                "Jumps in a channel's ids filled by reading Redis history.",
                e.gap_fills,
            ),
            (
                "switchboard_cluster_resets_total",
                "Streams whose subscribers were told messages are lost (recovered:false).",
                e.resets,
            ),
            (
                "switchboard_cluster_rewinds_total",
                "Streams found gone back in Redis (it lost writes) and given a new epoch.",
                e.rewinds,
            ),
        ];
        for (name, help, n) in counters {
            family(out, name, Kind::Counter, help);
            sample(out, name, &[], n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashMap, HashSet};

    /// A parsed exposition: (name, sorted labels) → value, and each family's TYPE.
    struct Parsed {
        samples: HashMap<(String, Vec<(String, String)>), f64>,
        types: HashMap<String, String>,
    }

    impl Parsed {
        fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
            let mut l: Vec<(String, String)> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            l.sort();
            self.samples.get(&(name.to_string(), l)).copied()
        }
    }

    fn is_name(s: &str) -> bool {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    /// Parses the text format strictly: every line is a HELP, a TYPE or `name{labels} value`;
    /// every sample's family has HELP and TYPE before it, each exactly once.
    fn parse(text: &str) -> Parsed {
        assert!(text.ends_with('\n'), "exposition must end with a newline");
        let mut helps = HashSet::new();
        let mut types = HashMap::new();
        let mut samples = HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                assert!(is_name(name) && !help.is_empty(), "{line}");
                assert!(helps.insert(name.to_string()), "second HELP: {line}");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(helps.contains(name), "TYPE before HELP: {line}");
                assert!(kind == "counter" || kind == "gauge", "{line}");
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "counter without _total: {line}");
                } else {
                    assert!(!name.ends_with("_total"), "gauge named _total: {line}");
                }
                let old = types.insert(name.to_string(), kind.to_string());
                assert!(old.is_none(), "second TYPE: {line}");
                continue;
            }
            assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.strip_suffix('}').unwrap_or_else(|| panic!("{line}"))),
                None => (series, ""),
            };
            assert!(is_name(name), "{line}");
            assert!(name.starts_with("switchboard_"), "{line}");
            assert!(types.contains_key(name), "sample before its TYPE: {line}");
            let mut parsed: Vec<(String, String)> = Vec::new();
            if !labels.is_empty() {
                for pair in labels.split(',') {
                    let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{line}"));
                    assert!(is_name(k), "{line}");
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or_else(|| panic!("unquoted label value: {line}"));
                    parsed.push((k.to_string(), v.to_string()));
                }
            }
            parsed.sort();
            let old = samples.insert((name.to_string(), parsed), value);
            assert!(old.is_none(), "duplicate series: {line}");
        }
        for name in &helps {
            assert!(types.contains_key(name), "HELP without TYPE: {name}");
        }
        Parsed { samples, types }
    }

    fn view<'a>(workers: &'a [Arc<WorkerStats>], queued: &'a [u64]) -> View<'a> {
        View {
            workers,
            queued,
            open: 7,
            max_connections: 100,
            shutting_down: false,
            broadcasts: 11,
            history: 12,
            engine_up: true,
            engine: EngineStats {
                channels: 3,
                channels_refused: 1,
                history_bytes: 4096,
                history_max_bytes: 1 << 20,
                history_evicted: 5,
                ..EngineStats::default()
            },
            open_fds: Some(20),
            fd_limit: Some(1024),
        }
    }

    #[test]
    fn every_family_is_well_formed() {
        let workers: Vec<_> = (0..3).map(|_| Arc::new(WorkerStats::default())).collect();
        let mut out = String::new();
        view(&workers, &[0, 0, 0]).render(&mut out);
        let p = parse(&out);
        let families: BTreeMap<&str, &str> = [
            ("switchboard_build_info", "gauge"),
            ("switchboard_workers", "gauge"),
            ("switchboard_max_connections", "gauge"),
            ("switchboard_open_connections", "gauge"),
            ("switchboard_shutting_down", "gauge"),
            ("switchboard_connections", "gauge"),
            ("switchboard_worker_connections", "gauge"),
            ("switchboard_worker_queued_deliveries", "gauge"),
            ("switchboard_accepted_connections_total", "counter"),
            ("switchboard_rejected_connections_total", "counter"),
            ("switchboard_messages_received_total", "counter"),
            ("switchboard_received_bytes_total", "counter"),
            ("switchboard_messages_sent_total", "counter"),
            ("switchboard_sent_bytes_total", "counter"),
            ("switchboard_broadcasts_total", "counter"),
            ("switchboard_deliveries_total", "counter"),
            ("switchboard_compressed_messages_total", "counter"),
            ("switchboard_compression_input_bytes_total", "counter"),
            ("switchboard_compression_output_bytes_total", "counter"),
            ("switchboard_slow_consumers_total", "counter"),
            ("switchboard_heartbeat_reaped_total", "counter"),
            ("switchboard_handshake_timeouts_total", "counter"),
            ("switchboard_forbidden_total", "counter"),
            ("switchboard_rate_limited_total", "counter"),
            ("switchboard_tokens_expired_total", "counter"),
            ("switchboard_tokens_refreshed_total", "counter"),
            ("switchboard_frame_errors_total", "counter"),
            ("switchboard_open_fds", "gauge"),
            ("switchboard_fd_limit", "gauge"),
            ("switchboard_history_messages", "gauge"),
            ("switchboard_engine_up", "gauge"),
            ("switchboard_channels", "gauge"),
            ("switchboard_channels_refused_total", "counter"),
            ("switchboard_history_bytes", "gauge"),
            ("switchboard_history_max_bytes", "gauge"),
            ("switchboard_history_evicted_total", "counter"),
        ]
        .into_iter()
        .collect();
        for (name, kind) in &families {
            assert_eq!(
                p.types.get(*name).map(String::as_str),
                Some(*kind),
                "{name}"
            );
        }
        assert_eq!(p.types.len(), families.len(), "{:?}", p.types.keys());
        // Every family has at least one sample.
        for name in families.keys() {
            assert!(
                p.samples.keys().any(|(n, _)| n == name),
                "{name} has no sample"
            );
        }
        assert_eq!(p.get("switchboard_workers", &[]), Some(3.0));
        assert_eq!(p.get("switchboard_open_connections", &[]), Some(7.0));
        assert_eq!(p.get("switchboard_max_connections", &[]), Some(100.0));
        assert_eq!(p.get("switchboard_broadcasts_total", &[]), Some(11.0));
        assert_eq!(p.get("switchboard_history_messages", &[]), Some(12.0));
        assert_eq!(p.get("switchboard_channels", &[]), Some(3.0));
        assert_eq!(p.get("switchboard_channels_refused_total", &[]), Some(1.0));
        assert_eq!(p.get("switchboard_history_bytes", &[]), Some(4096.0));
        assert_eq!(p.get("switchboard_history_max_bytes", &[]), Some(1048576.0));
        assert_eq!(p.get("switchboard_history_evicted_total", &[]), Some(5.0));
        assert_eq!(p.get("switchboard_open_fds", &[]), Some(20.0));
        assert_eq!(p.get("switchboard_fd_limit", &[]), Some(1024.0));
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            p.get("switchboard_build_info", &[("version", version)]),
            Some(1.0)
        );
    }

    #[test]
    fn the_cluster_families_appear_only_with_links() {
        let workers = [Arc::new(WorkerStats::default())];
        let mut v = view(&workers, &[0]);
        v.engine_up = false;
        v.engine = EngineStats {
            links: 4,
            links_up: 3,
            connects: 5,
            disconnects: 1,
            channels: 7,
            messages_in: 9,
            gap_fills: 2,
            resets: 1,
            rewinds: 3,
            channels_refused: 2,
            ..EngineStats::default()
        };
        let mut out = String::new();
        v.render(&mut out);
        let p = parse(&out);
        for (name, want) in [
            ("switchboard_engine_up", 0.0),
            ("switchboard_redis_links", 4.0),
            ("switchboard_redis_links_up", 3.0),
            ("switchboard_redis_connects_total", 5.0),
            ("switchboard_redis_disconnects_total", 1.0),
            ("switchboard_cluster_channels", 7.0),
            ("switchboard_cluster_messages_received_total", 9.0),
            ("switchboard_cluster_gap_fills_total", 2.0),
            ("switchboard_cluster_resets_total", 1.0),
            ("switchboard_cluster_rewinds_total", 3.0),
            ("switchboard_channels", 7.0),
            ("switchboard_channels_refused_total", 2.0),
        ] {
            assert_eq!(p.get(name, &[]), Some(want), "{name}");
        }
        assert!(
            !p.types.contains_key("switchboard_history_bytes"),
            "history lives in Redis: no budget families"
        );
    }

    #[test]
    fn sums_across_workers_and_splits_by_label() {
        let a = Arc::new(WorkerStats::default());
        let b = Arc::new(WorkerStats::default());
        for _ in 0..2 {
            a.open_ws_echo.fetch_add(1, Ordering::Relaxed);
        }
        b.open_ws_echo.fetch_add(1, Ordering::Relaxed);
        b.open_ws.fetch_add(4, Ordering::Relaxed);
        a.message_in(10);
        b.message_in(5);
        a.frame_error(1007);
        b.frame_error(1007);
        b.frame_error(1009);
        a.frame_error(1011);
        a.refused(crate::error::HandshakeError::OriginNotAllowed);
        b.refused(crate::error::HandshakeError::AtCapacity);
        b.slow_consumers.fetch_add(3, Ordering::Relaxed);
        let workers = vec![a, b];
        let mut out = String::new();
        view(&workers, &[5, 0]).render(&mut out);
        let p = parse(&out);

        let conns = |t| p.get("switchboard_connections", &[("transport", t)]);
        assert_eq!(conns("websocket_echo"), Some(3.0));
        assert_eq!(conns("websocket"), Some(4.0));
        assert_eq!(conns("sse"), Some(0.0));
        assert_eq!(conns("poll"), Some(0.0));
        let per_worker = |w| p.get("switchboard_worker_connections", &[("worker", w)]);
        assert_eq!(per_worker("0"), Some(2.0));
        assert_eq!(per_worker("1"), Some(5.0));
        let queued = |w| p.get("switchboard_worker_queued_deliveries", &[("worker", w)]);
        assert_eq!(queued("0"), Some(5.0));
        assert_eq!(queued("1"), Some(0.0));
        assert_eq!(p.get("switchboard_messages_received_total", &[]), Some(2.0));
        assert_eq!(p.get("switchboard_received_bytes_total", &[]), Some(15.0));
        let errors = |c| p.get("switchboard_frame_errors_total", &[("code", c)]);
        assert_eq!(errors("1002"), Some(0.0));
        assert_eq!(errors("1007"), Some(2.0));
        assert_eq!(errors("1009"), Some(1.0));
        assert_eq!(errors("other"), Some(1.0));
        let rejected = |r| p.get("switchboard_rejected_connections_total", &[("reason", r)]);
        assert_eq!(rejected("origin"), Some(1.0));
        assert_eq!(rejected("capacity"), Some(1.0));
        assert_eq!(rejected("bad_handshake"), Some(0.0));
        assert_eq!(p.get("switchboard_slow_consumers_total", &[]), Some(3.0));
    }

    #[test]
    fn unknown_process_values_leave_their_families_out() {
        let workers = vec![Arc::new(WorkerStats::default())];
        let mut v = view(&workers, &[]);
        v.open_fds = None;
        v.fd_limit = None;
        v.shutting_down = true;
        let mut out = String::new();
        v.render(&mut out);
        let p = parse(&out);
        assert!(!p.types.contains_key("switchboard_open_fds"));
        assert!(!p.types.contains_key("switchboard_fd_limit"));
        assert_eq!(p.get("switchboard_shutting_down", &[]), Some(1.0));
        // An empty per-worker family still has HELP and TYPE, and no samples.
        assert!(p.types.contains_key("switchboard_worker_queued_deliveries"));
    }
}
