//! `GET /metrics`: Prometheus text exposition (0.0.4) over plain HTTP, and counters that move
//! with what the server does. Counters are read by polling the endpoint, since a worker bumps
//! them on its own thread and no event announces it.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// How long a counter may take to show what the test just did.
const SETTLE: Duration = Duration::from_secs(5);

/// Every family the endpoint must expose, with its type. (`switchboard_open_fds` and
/// `switchboard_fd_limit` are left out only where /proc or getrlimit fail, not on Linux.)
const FAMILIES: &[(&str, &str)] = &[
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
    ("switchboard_frame_errors_total", "counter"),
    ("switchboard_open_fds", "gauge"),
    ("switchboard_fd_limit", "gauge"),
    ("switchboard_history_messages", "gauge"),
];

/// One scrape, parsed strictly.
#[derive(Debug)]
struct Scrape {
    types: HashMap<String, String>,
    /// (name, labels sorted by name) → value.
    samples: HashMap<(String, Vec<(String, String)>), f64>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        assert!(text.ends_with('\n'), "exposition must end with a newline");
        let mut helps = HashSet::new();
        let mut types = HashMap::new();
        let mut samples = HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, _) = rest.split_once(' ').unwrap_or((rest, ""));
                assert!(helps.insert(name.to_owned()), "second HELP: {line}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest
                    .split_once(' ')
                    .unwrap_or_else(|| panic!("bad TYPE line {line:?}"));
                assert!(helps.contains(name), "TYPE before HELP: {line}");
                assert!(
                    types.insert(name.to_owned(), kind.to_owned()).is_none(),
                    "second TYPE: {line}"
                );
            } else {
                assert!(
                    !line.is_empty() && !line.starts_with('#'),
                    "unexpected line {line:?}"
                );
                let (series, value) = line
                    .rsplit_once(' ')
                    .unwrap_or_else(|| panic!("sample without a value: {line:?}"));
                let value: f64 = value
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}"));
                let (name, labels) = match series.split_once('{') {
                    Some((n, l)) => (
                        n,
                        l.strip_suffix('}')
                            .unwrap_or_else(|| panic!("unclosed labels in {line:?}")),
                    ),
                    None => (series, ""),
                };
                assert!(
                    types.contains_key(name),
                    "sample without HELP/TYPE before it: {line:?}"
                );
                let mut parsed: Vec<(String, String)> = labels
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) = pair
                            .split_once('=')
                            .unwrap_or_else(|| panic!("bad label in {line:?}"));
                        let v = v
                            .strip_prefix('"')
                            .and_then(|v| v.strip_suffix('"'))
                            .unwrap_or_else(|| panic!("unquoted label value in {line:?}"));
                        (k.to_owned(), v.to_owned())
                    })
                    .collect();
                parsed.sort();
                assert!(
                    samples.insert((name.to_owned(), parsed), value).is_none(),
                    "duplicate series {line:?}"
                );
            }
        }
        Scrape { types, samples }
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut l: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.sort();
        self.samples.get(&(name.to_owned(), l)).copied()
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in the scrape"))
    }
}

/// `GET /metrics` on a fresh connection; asserts 200 and the content type.
fn scrape(addr: SocketAddr) -> Scrape {
    let req = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let (resp, _stream, _rest) = http_exchange(addr, req);
    assert_eq!(resp.status, 200, "GET /metrics: {resp:?}");
    let ctype = resp.header("content-type").unwrap_or_default();
    assert!(
        ctype.starts_with("text/plain; version=0.0.4"),
        "Content-Type {ctype:?}, want text/plain; version=0.0.4"
    );
    let body = String::from_utf8(resp.body).expect("metrics body is UTF-8");
    Scrape::parse(&body)
}

/// Scrapes until `check` holds for the value of `name{labels}`, or [`SETTLE`] passes.
fn wait_value(
    addr: SocketAddr,
    name: &str,
    labels: &[(&str, &str)],
    want: &str,
    check: impl Fn(f64) -> bool,
) -> f64 {
    let deadline = Instant::now() + SETTLE;
    loop {
        let v = scrape(addr).value(name, labels);
        if check(v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{labels:?} is {v}, want {want} (waited {SETTLE:?})"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_family_with_help_and_type() {
    let server = Server::start(&["--workers", "2", "--max-connections", "321"]);
    let m = scrape(server.addr());
    for (name, kind) in FAMILIES {
        assert_eq!(
            m.types.get(*name).map(String::as_str),
            Some(*kind),
            "family {name}"
        );
        assert!(
            m.samples.keys().any(|(n, _)| n == name),
            "family {name} has no sample"
        );
    }
    for (name, kind) in &m.types {
        assert!(name.starts_with("switchboard_"), "{name}");
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "{name} is a {kind}"
        );
    }
    assert_eq!(m.value("switchboard_workers", &[]), 2.0);
    assert_eq!(m.value("switchboard_max_connections", &[]), 321.0);
    assert_eq!(m.value("switchboard_shutting_down", &[]), 0.0);
    // The scrape's own connection holds a slot.
    assert!(m.value("switchboard_open_connections", &[]) >= 1.0);
    assert!(m.value("switchboard_open_fds", &[]) > 0.0);
    assert!(m.value("switchboard_fd_limit", &[]) >= m.value("switchboard_open_fds", &[]));
    for worker in ["0", "1"] {
        m.value("switchboard_worker_connections", &[("worker", worker)]);
    }
    for transport in ["websocket_echo", "websocket", "sse", "poll"] {
        m.value("switchboard_connections", &[("transport", transport)]);
    }
    for reason in ["capacity", "origin", "bad_handshake"] {
        m.value(
            "switchboard_rejected_connections_total",
            &[("reason", reason)],
        );
    }
    for code in ["1002", "1007", "1009", "other"] {
        m.value("switchboard_frame_errors_total", &[("code", code)]);
    }
}

#[test]
fn websocket_connection_and_messages_show_up() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let echo = [("transport", "websocket_echo")];
    let before = scrape(addr);
    let open = before.value("switchboard_connections", &echo);
    let received = before.value("switchboard_messages_received_total", &[]);
    let bytes = before.value("switchboard_received_bytes_total", &[]);

    let mut client = Client::connect(addr, "/echo");
    wait_value(addr, "switchboard_connections", &echo, "one more", |v| {
        v == open + 1.0
    });

    client.send_text("hello");
    client.expect_text("hello");
    wait_value(
        addr,
        "switchboard_messages_received_total",
        &[],
        "one more",
        |v| v == received + 1.0,
    );
    assert_eq!(
        scrape(addr).value("switchboard_received_bytes_total", &[]),
        bytes + 5.0
    );

    client.close_cleanly(1000);
    wait_value(
        addr,
        "switchboard_connections",
        &echo,
        "back where it was",
        |v| v == open,
    );
}

#[test]
fn accepted_and_outbound_counters_move() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let before = scrape(addr);
    let accepted = before.value("switchboard_accepted_connections_total", &[]);
    let sent = before.value("switchboard_messages_sent_total", &[]);
    let sent_bytes = before.value("switchboard_sent_bytes_total", &[]);
    assert!(accepted >= 1.0, "the scrape's own connection was accepted");

    let mut client = Client::connect(addr, "/echo");
    client.send_text("hello");
    client.expect_text("hello");
    wait_value(
        addr,
        "switchboard_messages_sent_total",
        &[],
        "one more (the echo)",
        |v| v >= sent + 1.0,
    );
    let m = scrape(addr);
    // Two scrapes and the client since `before`.
    assert!(m.value("switchboard_accepted_connections_total", &[]) >= accepted + 3.0);
    // The echo frame and the 101 at least.
    assert!(m.value("switchboard_sent_bytes_total", &[]) >= sent_bytes + 7.0);
}

#[test]
fn refusals_and_frame_errors_by_label() {
    let server = Server::start(&["--allowed-origin", "http://good.example"]);
    let addr = server.addr();

    let (req, _) = upgrade_request("/echo", &["Origin: http://evil.example"]);
    assert_error_response(addr, req.as_bytes(), 403);
    let origin = [("reason", "origin")];
    wait_value(
        addr,
        "switchboard_rejected_connections_total",
        &origin,
        "1",
        |v| v == 1.0,
    );

    // An upgrade with an unsupported version is a bad handshake (426).
    let key = random_key();
    let req = format!(
        "GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 8\r\n\
         Origin: http://good.example\r\n\r\n"
    );
    let (resp, _stream, _rest) = http_exchange(addr, req.as_bytes());
    assert_eq!(resp.status, 426, "{resp:?}");
    let bad = [("reason", "bad_handshake")];
    wait_value(
        addr,
        "switchboard_rejected_connections_total",
        &bad,
        "at least 1",
        |v| v >= 1.0,
    );

    // An unmasked client frame fails the connection with 1002.
    let mut client = Client::connect_with(addr, "/echo", &["Origin: http://good.example"]);
    client.send_raw(&encode_frame(true, 0, OP_TEXT, None, b"x"));
    client.expect_fail(1002);
    let code = [("code", "1002")];
    wait_value(addr, "switchboard_frame_errors_total", &code, "1", |v| {
        v == 1.0
    });
    let m = scrape(addr);
    assert_eq!(
        m.value("switchboard_frame_errors_total", &[("code", "1007")]),
        0.0
    );
}

#[test]
fn capacity_refusals_are_counted() {
    let server = Server::start(&["--max-connections", "1", "--workers", "1"]);
    let addr = server.addr();
    let mut holder = Client::connect(addr, "/echo");
    let (resp, _stream, _rest) = http_exchange(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.status, 503, "the one slot is taken: {resp:?}");
    holder.close_cleanly(1000);

    // The slot frees once the server has dropped the socket; scrapes before that get 503 too.
    let deadline = Instant::now() + SETTLE;
    let m = loop {
        let req = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        let (resp, _stream, _rest) = http_exchange(addr, req);
        if resp.status == 200 {
            break Scrape::parse(&String::from_utf8_lossy(&resp.body));
        }
        assert_eq!(resp.status, 503, "{resp:?}");
        assert!(Instant::now() < deadline, "the slot never freed up");
        thread::sleep(Duration::from_millis(20));
    };
    assert!(
        m.value(
            "switchboard_rejected_connections_total",
            &[("reason", "capacity")]
        ) >= 1.0,
        "a 503 at --max-connections counts as reason=\"capacity\""
    );
}
