//! permessage-deflate (RFC 7692) against the real server: what the 101 answers, compressed
//! echoes and broadcasts (to compressing and plain subscribers of one channel), fragmented
//! compressed messages, the size bound on the *inflated* message (a zip bomb is closed with
//! 1009 without being inflated), RSV1 misuse (1002), corrupt data (1007), and real clients:
//! Python `websockets` and Node `ws` with their default compression.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use flate2::{Compress, Compression, FlushCompress};
use serde_json::json;

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits";
const ANSWER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// `payload` as one permessage-deflate message body: raw DEFLATE, sync flush, with the
/// `00 00 ff ff` tail still on (strip it with [`strip_tail`]).
fn deflate_with_tail(payload: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(payload.len() / 2 + 1024);
    loop {
        let fed = c.total_in() as usize;
        c.compress_vec(&payload[fed..], &mut out, FlushCompress::Sync)
            .expect("deflate");
        if c.total_in() as usize == payload.len() && out.len() < out.capacity() {
            return out;
        }
        out.reserve(out.capacity());
    }
}

fn strip_tail(mut z: Vec<u8>) -> Vec<u8> {
    assert!(z.ends_with(&TAIL));
    z.truncate(z.len() - TAIL.len());
    z
}

fn deflate(payload: &[u8]) -> Vec<u8> {
    strip_tail(deflate_with_tail(payload))
}

/// A compressed message as client frames: RSV1 on the first of `parts` fragments.
fn compressed_frame_list(opcode: u8, body: &[u8], parts: usize) -> Vec<Vec<u8>> {
    let size = body.len().div_ceil(parts).max(1);
    let chunks: Vec<&[u8]> = body.chunks(size).collect();
    let chunks = if chunks.is_empty() {
        vec![&[][..]]
    } else {
        chunks
    };
    let last = chunks.len() - 1;
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let (op, rsv) = if i == 0 {
                (opcode, 0b100)
            } else {
                (OP_CONT, 0)
            };
            encode_frame(i == last, rsv, op, Some(random_mask()), chunk)
        })
        .collect()
}

fn compressed_frames(opcode: u8, body: &[u8], parts: usize) -> Vec<u8> {
    compressed_frame_list(opcode, body, parts).concat()
}

fn json_rows(n: usize) -> serde_json::Value {
    json!((0..n)
        .map(|i| json!({"id": i, "name": format!("user {i}"), "online": i % 3 == 0}))
        .collect::<Vec<_>>())
}

fn compressing(addr: std::net::SocketAddr, path: &str) -> Client {
    let c = Client::connect_with(addr, path, &[OFFER]);
    assert!(c.deflate, "no permessage-deflate in {:?}", c.response);
    c
}

#[test]
fn negotiation_answers_in_the_101() {
    let server = Server::start(&["--compression"]);
    let answer_to = |offers: &[&str]| {
        let lines: Vec<String> = offers
            .iter()
            .map(|o| format!("Sec-WebSocket-Extensions: {o}"))
            .collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let c = Client::connect_with(server.addr(), "/echo", &lines);
        c.response
            .header("sec-websocket-extensions")
            .map(str::to_string)
    };
    let with_bits = |n: u8| Some(format!("{ANSWER}; server_max_window_bits={n}"));
    let table: &[(&[&str], Option<String>)] = &[
        (&["permessage-deflate; client_max_window_bits"], Some(ANSWER.into())),
        (&["permessage-deflate; server_max_window_bits=10"], with_bits(10)),
        // 8 is declined (zlib cannot); the next offer is taken.
        (
            &["permessage-deflate; server_max_window_bits=8, permessage-deflate; server_no_context_takeover"],
            Some(ANSWER.into()),
        ),
        (&["permessage-deflate; server_max_window_bits=8"], None),
        (&["permessage-deflate; bogus_param"], None),
        (&["x-webkit-deflate-frame", "permessage-deflate"], Some(ANSWER.into())),
        // Unparseable: no compression, but the upgrade still succeeds.
        (&["permessage-deflate; server_max_window_bits=\"12"], None),
        (&[], None),
    ];
    for (offers, want) in table {
        assert_eq!(&answer_to(offers), want, "{offers:?}");
    }
    // Without --compression every offer is ignored.
    let plain = Server::start(&[]);
    let c = Client::connect_with(plain.addr(), "/echo", &[OFFER]);
    assert_eq!(c.response.header("sec-websocket-extensions"), None);
    assert!(!c.deflate);
}

#[test]
fn compressed_echo() {
    let server = Server::start(&["--compression"]);
    let mut c = compressing(server.addr(), "/echo");
    // RFC 7692 §7.2.3.1: "Hello", compressed; below the minimum, echoed uncompressed.
    c.send_raw(&encode_frame(
        true,
        0b100,
        OP_TEXT,
        Some(random_mask()),
        &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
    ));
    assert_eq!(
        c.read_message_compressed(),
        (OP_TEXT, b"Hello".to_vec(), false)
    );
    // A JSON message, compressed both ways.
    let text = json_rows(40).to_string();
    c.send_raw(&compressed_frames(OP_TEXT, &deflate(text.as_bytes()), 1));
    let (op, back, compressed) = c.read_message_compressed();
    assert_eq!((op, compressed), (OP_TEXT, true));
    assert_eq!(back, text.as_bytes());
    // An uncompressed message on a compressing connection is fine; its echo is compressed.
    c.send_text(&text);
    assert_eq!(
        c.read_message_compressed(),
        (OP_TEXT, text.as_bytes().to_vec(), true)
    );
    // Binary, large (several reads), and an empty compressed message (one 0x00 byte).
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    c.send_raw(&compressed_frames(OP_BINARY, &deflate(&big), 1));
    assert_eq!(c.read_message_compressed(), (OP_BINARY, big, true));
    c.send_raw(&compressed_frames(OP_BINARY, &[0x00], 1));
    assert_eq!(c.read_message_compressed(), (OP_BINARY, vec![], false));
    // Incompressible data above the minimum goes out uncompressed (it would only grow).
    let noise = random_bytes(4096);
    c.send_binary(&noise);
    assert_eq!(c.read_message_compressed(), (OP_BINARY, noise, false));
    c.close_cleanly(1000);
}

#[test]
fn fragmented_compressed_messages() {
    let server = Server::start(&["--compression"]);
    let mut c = compressing(server.addr(), "/echo");
    let text = json_rows(200).to_string();
    let body = deflate(text.as_bytes());
    let frames = compressed_frame_list(OP_TEXT, &body, 4);
    assert_eq!(frames.len(), 4);
    // A ping between the fragments is answered at once; the message after its last one.
    c.send_raw(&frames[0]);
    c.send_frame(true, OP_PING, b"mid");
    let (fin, op, payload) = c.read_frame();
    assert_eq!((fin, op, payload.as_slice()), (true, OP_PONG, &b"mid"[..]));
    // The rest, a byte at a time.
    for b in frames[1..].concat() {
        c.send_raw(&[b]);
    }
    assert_eq!(
        c.read_message_compressed(),
        (OP_TEXT, text.as_bytes().to_vec(), true)
    );
    c.close_cleanly(1000);
}

#[test]
fn broadcast_to_compressing_and_plain_subscribers() {
    let server = Server::start(&["--compression", "--workers", "2"]);
    let addr = server.addr();
    let mut plain = ws_connect(addr, "channel=news");
    let mut zipped = compressing(addr, "/ws?channel=news");
    let mut zipped2 = compressing(addr, "/ws?channel=news");
    let mut raw_plain = ws_connect(addr, "channel=news&format=raw");
    let mut raw_zipped = compressing(addr, "/ws?channel=news&format=raw");
    // A client that limited our window to 512 bytes.
    let mut small_window = Client::connect_with(
        addr,
        "/ws?channel=news",
        &["Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9"],
    );
    assert!(small_window.deflate);
    for c in [&mut plain, &mut zipped, &mut zipped2, &mut small_window] {
        assert_eq!(c.read_json()["type"], "subscribed");
    }
    let mut api = HttpConn::connect(addr);
    // A realistic ~1 KiB JSON message.
    let data = json!({"event": "scores", "rows": json_rows(24)});
    let id = api.publish_json("news", &data);
    let (op, envelope, compressed) = plain.read_message_compressed();
    assert_eq!((op, compressed), (OP_TEXT, false));
    let env = parse_json(&envelope);
    assert_eq!((env["id"].as_u64(), &env["data"]), (Some(id), &data));
    assert!(envelope.len() > 1000, "{}", envelope.len());
    for c in [&mut zipped, &mut zipped2] {
        assert_eq!(
            c.read_message_compressed(),
            (OP_TEXT, envelope.clone(), true)
        );
    }
    let (_, raw, compressed) = raw_plain.read_message_compressed();
    assert!(!compressed);
    assert_eq!(parse_json(&raw), data);
    assert_eq!(
        raw_zipped.read_message_compressed(),
        (OP_TEXT, raw.clone(), true)
    );
    // Longer than the 512-byte window it allowed: sent to it uncompressed.
    assert_eq!(
        small_window.read_message_compressed(),
        (OP_TEXT, envelope, false)
    );
    // A small message (under --compression-min-bytes) goes out uncompressed to everyone.
    api.publish_json("news", &json!("hi"));
    for c in [&mut plain, &mut zipped, &mut zipped2, &mut small_window] {
        let (_, m, compressed) = c.read_message_compressed();
        assert!(!compressed);
        assert_eq!(parse_json(&m)["data"], "hi");
    }
    // 300 bytes: over the minimum and within the small window, so compressed for it too.
    let medium = json!({"note": "x".repeat(260)});
    api.publish_json("news", &medium);
    for c in [&mut zipped, &mut small_window] {
        let (_, m, compressed) = c.read_message_compressed();
        assert!(compressed);
        assert_eq!(parse_json(&m)["data"], medium);
    }
    let (_, m, _) = plain.read_message_compressed();
    assert_eq!(parse_json(&m)["data"], medium);
}

#[test]
fn a_broadcast_is_compressed_once_whatever_the_subscriber_count() {
    let server = Server::start(&["--compression", "--workers", "2"]);
    let addr = server.addr();
    // Subscribers on both workers (connections are spread over them).
    let mut subs: Vec<Client> = (0..20)
        .map(|_| compressing(addr, "/ws?channel=wide"))
        .collect();
    for c in &mut subs {
        assert_eq!(c.read_json()["type"], "subscribed");
    }
    let mut api = HttpConn::connect(addr);
    let data = json!({"event": "scores", "rows": json_rows(24)});
    for _ in 0..5 {
        api.publish_json("wide", &data);
    }
    for c in &mut subs {
        for _ in 0..5 {
            let (_, m, compressed) = c.read_message_compressed();
            assert!(compressed);
            assert_eq!(parse_json(&m)["data"], data);
        }
    }
    // Each worker copies its compressor's counts once per loop turn: wait for them, then
    // they must say 5 (one DEFLATE per message), not 100 (one per subscriber).
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(addr, "switchboard_compressed_messages_total") < 5.0 {
        assert!(
            Instant::now() < deadline,
            "compression counts never arrived"
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(metric(addr, "switchboard_compressed_messages_total"), 5.0);
    let before = metric(addr, "switchboard_compression_input_bytes_total");
    let after = metric(addr, "switchboard_compression_output_bytes_total");
    assert!(
        before > 5.0 * 1000.0 && after > 0.0 && after < before / 2.0,
        "{before} -> {after}"
    );
}

#[test]
fn replies_and_replays_are_compressed() {
    let server = Server::start(&["--compression"]);
    let addr = server.addr();
    let mut api = HttpConn::connect(addr);
    let data = json!({"rows": json_rows(10)});
    let first = api.publish_json("hist", &data);
    // A replay on subscribe (since=0) comes compressed, as does the history reply.
    let mut c = compressing(addr, "/ws");
    c.send_json(&json!({"op": "subscribe", "channel": "hist", "since": 0}));
    let (_, subscribed, _) = c.read_message_compressed();
    assert_eq!(parse_json(&subscribed)["type"], "subscribed");
    let (_, replayed, compressed) = c.read_message_compressed();
    assert!(compressed);
    assert_eq!(parse_json(&replayed)["id"].as_u64(), Some(first));
    c.send_json(&json!({"op": "history", "channel": "hist", "since": 0}));
    let (_, history, compressed) = c.read_message_compressed();
    assert!(compressed, "a history reply over the minimum is compressed");
    assert_eq!(parse_json(&history)["messages"][0]["data"], data);
}

#[test]
fn a_zip_bomb_is_closed_with_1009_without_being_inflated() {
    // 1 MiB of zeros deflates to ~1 KiB; 1024 of those in a row (each ends on a byte
    // boundary with its sync flush) make ~1 MiB that inflates to 1 GiB.
    let one_mib = deflate_with_tail(&vec![0u8; 1 << 20]);
    assert!(one_mib.len() < 2048, "{}", one_mib.len());
    let server = Server::start(&["--compression", "--max-message-bytes", "4194304"]);
    let mut bomb = Vec::with_capacity(one_mib.len() * 1024);
    for _ in 0..1024 {
        bomb.extend_from_slice(&one_mib);
    }
    let bomb = strip_tail(bomb);
    let mut c = compressing(server.addr(), "/echo");
    let started = Instant::now();
    c.send_raw(&compressed_frames(OP_BINARY, &bomb, 1));
    c.expect_fail(1009);
    assert!(started.elapsed() < Duration::from_secs(5));
    // The server never held more than the bound (plus the compressed message): far below
    // the 1 GiB the bomb expands to.
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .expect("read the server's /proc status");
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmHWM");
    assert!(hwm_kib < 64 * 1024, "server peaked at {hwm_kib} KiB");

    // 1 KiB inflating to 1 MiB, fragmented, against a 64 KiB bound.
    let small = Server::start(&["--compression", "--max-message-bytes", "65536"]);
    let mut c = compressing(small.addr(), "/echo");
    c.send_raw(&compressed_frames(OP_BINARY, &strip_tail(one_mib), 3));
    c.expect_fail(1009);
}

#[test]
fn rsv1_misuse_and_corrupt_data() {
    let server = Server::start(&["--compression"]);
    let addr = server.addr();
    let body = deflate(b"hello hello hello");
    // RSV1 on a control frame.
    let mut c = compressing(addr, "/echo");
    c.send_raw(&encode_frame(
        true,
        0b100,
        OP_PING,
        Some(random_mask()),
        b"x",
    ));
    c.expect_fail(1002);
    // RSV1 on a continuation frame.
    let mut c = compressing(addr, "/echo");
    c.send_raw(&encode_frame(
        false,
        0b100,
        OP_TEXT,
        Some(random_mask()),
        &body[..4],
    ));
    c.send_raw(&encode_frame(
        true,
        0b100,
        OP_CONT,
        Some(random_mask()),
        &body[4..],
    ));
    c.expect_fail(1002);
    // RSV1 when compression was not negotiated (no offer), and RSV2 when it was.
    let mut c = Client::connect(addr, "/echo");
    assert!(!c.deflate);
    c.send_raw(&compressed_frames(OP_TEXT, &body, 1));
    c.expect_fail(1002);
    let mut c = compressing(addr, "/echo");
    c.send_raw(&encode_frame(
        true,
        0b010,
        OP_TEXT,
        Some(random_mask()),
        b"x",
    ));
    c.expect_fail(1002);
    // Not DEFLATE data (BTYPE 11 is reserved).
    let mut c = compressing(addr, "/echo");
    c.send_raw(&compressed_frames(OP_BINARY, &[0xff, 0xff, 0xff], 1));
    c.expect_fail(1007);
    // Text that is not UTF-8 once inflated.
    let mut c = compressing(addr, "/echo");
    c.send_raw(&compressed_frames(OP_TEXT, &deflate(b"ok \xff\xfe"), 1));
    c.expect_fail(1007);
}

/// Runs a client program to completion (killed after `timeout`); panics with its output
/// unless it exits 0.
fn run_client(program: &str, args: &[&str], dir: &Path, timeout: Duration) -> String {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): run `.ci/test`, which installs it")
        });
    let mut out_pipe = child.stdout.take().expect("stdout is piped");
    let mut err_pipe = child.stderr.take().expect("stderr is piped");
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    // No blocking wait with a timeout for a child: poll, as tests/browser.rs does.
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    let _ = std::io::stdout().write_all(out.as_bytes());
    match status {
        Some(s) if s.success() => out,
        Some(s) => panic!("{program} {args:?} failed ({s}):\n{out}\n{err}"),
        None => panic!("{program} {args:?} did not finish within {timeout:?}:\n{out}\n{err}"),
    }
}

#[test]
fn python_websockets_with_its_default_compression() {
    let server = Server::start(&["--compression"]);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let addr = server.addr().to_string();
    let out = run_client(
        "python3",
        &["compression.py", &addr],
        &dir,
        Duration::from_secs(60),
    );
    assert!(out.contains("ok - python: a "), "{out}");
    assert_eq!(out.matches("ok - ").count(), 8, "{out}");
}

#[test]
fn node_ws_with_per_message_deflate() {
    let server = Server::start(&["--compression"]);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/ws").is_dir(),
        "tests/browser/node_modules/ws is missing: run `.ci/test` (npm ci)"
    );
    let addr = server.addr().to_string();
    let out = run_client(
        "node",
        &["ws_compression.mjs", &addr],
        &dir,
        Duration::from_secs(60),
    );
    assert_eq!(out.matches("ok - ").count(), 8, "{out}");
}
