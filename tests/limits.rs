//! The abuse limits against the real server: connections per client address and the connect
//! rate (429 before anything is read, recovered from when the client backs off), and the
//! publish rate per connection (`rate_limited` on /ws, 429 with `Retry-After` over HTTP, the
//! API key exempt). Loopback is counted only with `--limit-loopback`, which these tests give.

mod common;

use std::time::Duration;

use serde_json::json;

use common::*;

/// The status a fresh connection's `GET /healthz` gets.
fn healthz_status(server: &Server) -> (u16, Option<String>, std::net::TcpStream) {
    let (resp, stream, _) =
        http_exchange(server.addr(), b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let retry = resp.header("retry-after").map(str::to_owned);
    (resp.status, retry, stream)
}

#[test]
fn connections_per_address_are_capped_and_a_closed_one_makes_room() {
    let server = Server::start(&[
        "--max-connections-per-ip",
        "3",
        "--connect-rate",
        "0",
        "--limit-loopback",
    ]);
    let mut held: Vec<_> = (0..3).map(|_| healthz_status(&server)).collect();
    assert!(held.iter().all(|(s, _, _)| *s == 200));
    let (status, _, _) = healthz_status(&server);
    assert_eq!(status, 429);
    // Closing one makes room once the server has seen it go.
    let (_, _, gone) = held.pop().expect("three");
    gone.shutdown(std::net::Shutdown::Both).expect("close");
    drop(gone);
    poll_until(Duration::from_secs(5), "a freed slot", || {
        (healthz_status(&server).0 == 200).then_some(())
    });
    let per_ip = "switchboard_rejected_connections_total{reason=\"per_ip\"}";
    drop(held);
    assert!(metric(server.addr(), per_ip) >= 1.0);
}

#[test]
fn loopback_is_not_counted_unless_asked() {
    let server = Server::start(&["--max-connections-per-ip", "2", "--connect-rate", "1"]);
    let held: Vec<_> = (0..5).map(|_| healthz_status(&server)).collect();
    assert!(held.iter().all(|(s, _, _)| *s == 200), "loopback is exempt");
}

#[test]
fn connecting_too_fast_is_429_with_retry_after_and_backing_off_works() {
    let server = Server::start(&["--connect-rate", "2", "--limit-loopback"]);
    let statuses: Vec<(u16, Option<String>)> = (0..3)
        .map(|_| {
            let (s, r, _) = healthz_status(&server);
            (s, r)
        })
        .collect();
    assert_eq!(statuses[0].0, 200);
    assert_eq!(statuses[1].0, 200);
    assert_eq!(statuses[2], (429, Some("1".to_owned())), "{statuses:?}");
    // One token comes back every half second.
    poll_until(Duration::from_secs(5), "a refilled bucket", || {
        (healthz_status(&server).0 == 200).then_some(())
    });
}

#[test]
fn publishes_are_rate_limited_per_connection_and_the_api_key_is_not() {
    let server = Server::start(&["--publish-rate", "2", "--api-key", "k"]);
    let mut ws = ws_connect(server.addr(), "token=k");
    let mut codes = Vec::new();
    for i in 0..3 {
        ws.send_json(&json!({"op":"publish","channel":"c","data":i,"ref":i}));
        let v = ws.read_json();
        codes.push(v["type"].as_str().unwrap_or_default().to_owned());
        if i == 2 {
            assert_eq!(v["code"], "rate_limited", "{v}");
            let wait = v["retry_after_ms"].as_u64().expect("a wait");
            assert!((1..=500).contains(&wait), "{v}");
        }
    }
    assert_eq!(codes, ["published", "published", "error"]);
    // Another connection has its own bucket.
    let mut other = ws_connect(server.addr(), "token=k");
    other.send_json(&json!({"op":"publish","channel":"c","data":"x"}));
    assert_eq!(other.read_json()["type"], "published");

    // HTTP: the key is the operator's backend, never limited.
    let mut http = HttpConn::connect(server.addr());
    for _ in 0..20 {
        let r = http.request("POST", "/publish/c", &["Authorization: Bearer k"], b"x");
        assert_eq!(r.status, 200);
    }
    let open = Server::start(&["--publish-rate", "2", "--publish-burst", "3"]);
    let mut http = HttpConn::connect(open.addr());
    let statuses: Vec<u16> = (0..4)
        .map(|_| http.request("POST", "/publish/c", &[], b"x").status)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429]);
    let r = http.request("POST", "/publish/c", &[], b"x");
    assert_api_error(&r, 429, "rate_limited");
    assert_eq!(r.header("retry-after"), Some("1"));
    // The connection is still good, and the rate comes back.
    poll_until(Duration::from_secs(5), "a refilled bucket", || {
        (http.request("POST", "/publish/c", &[], b"x").status == 200).then_some(())
    });
    assert!(metric(open.addr(), "switchboard_rate_limited_total") >= 2.0);
}
