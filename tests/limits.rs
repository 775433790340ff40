//! Capacity and size limits at the HTTP layer: 503 + Retry-After at --max-connections and
//! recovery when a slot frees; 431 for a header block over --max-header-bytes.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Reads the 503 an over-capacity connection gets right after accept, without sending a
/// request first (so the server's close cannot race with unread request bytes).
fn expect_503(addr: SocketAddr) {
    let mut stream = tcp(addr);
    let mut buf = Vec::new();
    let resp = read_response(&mut stream, &mut buf);
    assert_eq!(resp.status, 503, "expected 503 at capacity, got {resp:?}");
    let retry = resp.header("retry-after").unwrap_or_default();
    assert!(!retry.is_empty(), "503 without Retry-After: {resp:?}");
    assert_error_shape(&resp);
    assert_closed(&mut stream, &buf);
}

/// One upgrade attempt that reports failure instead of panicking: `Ok` with the client on a
/// 101, `Err` with what happened otherwise (a 503, or the connection closing).
fn try_upgrade(addr: SocketAddr) -> Result<Client, String> {
    let (req, key) = upgrade_request("/echo", &[]);
    let mut stream = tcp(addr);
    // A rejected connection may be closed before the request is written; keep reading.
    let _ = stream.write_all(req.as_bytes());
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk) {
            Ok(0) => return Err(format!("closed after {:?}", String::from_utf8_lossy(&buf))),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{e} after {:?}", String::from_utf8_lossy(&buf))),
        }
    }
    if !buf.starts_with(b"HTTP/1.1 101") {
        return Err(String::from_utf8_lossy(&buf).into_owned());
    }
    // The head is complete in `buf`, so this parses without reading more.
    let resp = read_response(&mut stream, &mut buf);
    assert_101(&resp, &key);
    Ok(Client::from_parts(stream, buf, resp))
}

#[test]
fn at_capacity_new_connections_get_503_and_a_freed_slot_is_reused() {
    // A long close timeout: once both sides have closed, the slot must be free at once,
    // not when the closing connection's timer runs out.
    let server = Server::start(&["--max-connections", "2", "--close-timeout", "30"]);
    let mut first = Client::connect(server.addr(), "/echo");
    let mut second = Client::connect(server.addr(), "/echo");

    for _ in 0..3 {
        expect_503(server.addr());
    }
    // The connections already admitted are unaffected.
    first.send_text("one");
    first.expect_text("one");
    second.send_text("two");
    second.expect_text("two");

    first.close_cleanly(1000);

    // The server frees the slot when it handles the close; there is no event to wait on
    // from outside, so retry briefly.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut third = loop {
        match try_upgrade(server.addr()) {
            Ok(client) => break client,
            Err(what) => {
                assert!(
                    Instant::now() < deadline,
                    "no slot became free after a client left; last attempt: {what}"
                );
                thread::sleep(Duration::from_millis(50));
            }
        }
    };
    third.send_text("three");
    third.expect_text("three");

    // Full again.
    expect_503(server.addr());
    second.send_text("still two");
    second.expect_text("still two");
}

#[test]
fn an_abruptly_dropped_connection_frees_its_slot() {
    let server = Server::start(&["--max-connections", "1", "--close-timeout", "30"]);
    let first = Client::connect(server.addr(), "/echo");
    expect_503(server.addr());
    drop(first); // TCP close without a close handshake

    let deadline = Instant::now() + Duration::from_secs(5);
    let mut next = loop {
        match try_upgrade(server.addr()) {
            Ok(client) => break client,
            Err(what) => {
                assert!(
                    Instant::now() < deadline,
                    "the slot of a dropped connection was never freed; last attempt: {what}"
                );
                thread::sleep(Duration::from_millis(50));
            }
        }
    };
    next.send_binary(b"ok");
    next.expect_binary(b"ok");
}

#[test]
fn header_block_over_the_limit_is_431() {
    let server = Server::start(&["--max-header-bytes", "1024"]);
    let filler = format!("X-Filler: {}", "f".repeat(2000));
    let (req, _key) = upgrade_request("/echo", &[&filler]);
    assert_error_response(server.addr(), req.as_bytes(), 431);

    // Many small headers add up the same way.
    let many: Vec<String> = (0..100).map(|i| format!("X-H{i}: value-{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let (req, _key) = upgrade_request("/echo", &many);
    assert!(req.len() > 1500);
    assert_error_response(server.addr(), req.as_bytes(), 431);
}

#[test]
fn unterminated_header_block_over_the_limit_is_431() {
    let server = Server::start(&["--max-header-bytes", "1024"]);
    // No CRLFCRLF ever comes: the server must not wait for it once past the limit.
    let mut req = String::from("GET /echo HTTP/1.1\r\nHost: localhost\r\n");
    req.push_str(&format!("X-Filler: {}\r\n", "f".repeat(2000)));
    assert_error_response(server.addr(), req.as_bytes(), 431);
}

#[test]
fn header_block_under_the_limit_is_accepted() {
    let server = Server::start(&["--max-header-bytes", "1024"]);
    let filler = format!("X-Filler: {}", "f".repeat(500));
    let mut c = Client::connect_with(server.addr(), "/echo", &[&filler]);
    c.send_text("fits");
    c.expect_text("fits");
}

#[test]
fn default_header_limit_is_8_kib() {
    let server = Server::start(&[]);
    let filler = format!("X-Filler: {}", "f".repeat(6000));
    let mut c = Client::connect_with(server.addr(), "/echo", &[&filler]);
    c.send_text("fits");
    c.expect_text("fits");

    let filler = format!("X-Filler: {}", "f".repeat(10_000));
    let (req, _key) = upgrade_request("/echo", &[&filler]);
    assert_error_response(server.addr(), req.as_bytes(), 431);
}
