//! Timers: pings after silence, the idle timeout, and the handshake timeout. The server runs
//! with 1–2 s settings; deadlines are generous (several times the setting) because these
//! tests check behaviour, not timing precision.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const FAST: [&str; 4] = ["--ping-interval", "1", "--idle-timeout", "2"];

/// Reads frames until `until`, answering every Ping with a Pong. Returns the data messages
/// received and the number of pings. Fails on EOF or any other frame.
fn answer_pings_until(c: &mut Client, until: Instant) -> (Vec<(u8, Vec<u8>)>, usize) {
    let mut messages = Vec::new();
    let mut pings = 0;
    loop {
        let now = Instant::now();
        if now >= until {
            c.stream
                .set_read_timeout(Some(IO_TIMEOUT))
                .expect("set read timeout");
            return (messages, pings);
        }
        c.stream
            .set_read_timeout(Some(until - now))
            .expect("set read timeout");
        match c.try_read_frame() {
            Ok(Some(f)) if f.opcode == OP_PING => {
                pings += 1;
                c.send_frame(true, OP_PONG, &f.payload);
            }
            Ok(Some(f)) if f.opcode == OP_TEXT || f.opcode == OP_BINARY => {
                assert!(f.fin, "unexpected fragmented echo: {}", describe(&f));
                messages.push((f.opcode, f.payload));
            }
            Ok(Some(f)) => panic!("unexpected frame: {}", describe(&f)),
            Ok(None) => panic!("server closed a connection that answers pings"),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read error: {e}"),
        }
    }
}

/// Reads the next data frame, answering any Ping on the way.
fn next_message_answering_pings(c: &mut Client) -> (u8, Vec<u8>) {
    loop {
        let f = c.read_frame_full();
        match f.opcode {
            OP_PING => c.send_frame(true, OP_PONG, &f.payload),
            OP_TEXT | OP_BINARY if f.fin => return (f.opcode, f.payload),
            _ => panic!("unexpected frame: {}", describe(&f)),
        }
    }
}

/// Reads and discards until the peer closes (`true`) or `deadline` passes (`false`).
fn wait_dropped(stream: &mut TcpStream, deadline: Instant) -> bool {
    let mut chunk = [0u8; 4096];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        stream
            .set_read_timeout(Some(deadline - now))
            .expect("set read timeout");
        match stream.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(e) => panic!("read error: {e}"),
        }
    }
}

#[test]
fn silent_connection_receives_a_ping() {
    let server = Server::start(&FAST);
    let mut c = Client::connect(server.addr(), "/echo");
    let f = c.read_frame_full();
    assert_eq!(f.opcode, OP_PING, "expected a Ping, got {}", describe(&f));
    c.send_frame(true, OP_PONG, &f.payload);
    c.send_text("still here");
    assert_eq!(
        next_message_answering_pings(&mut c),
        (OP_TEXT, b"still here".to_vec())
    );
}

#[test]
fn client_that_never_answers_is_closed_after_the_idle_timeout() {
    let server = Server::start(&FAST);
    let start = Instant::now();
    let mut c = Client::connect(server.addr(), "/echo");
    // Contract: closed within idle (2 s) + ~1 s. Allow double that before failing.
    let (frames, eof) = c.frames_until_eof(start + Duration::from_secs(6));
    let elapsed = start.elapsed();
    assert!(
        eof,
        "connection still open after {elapsed:?}; frames: {:?}",
        frames.iter().map(describe).collect::<Vec<_>>()
    );
    assert!(
        frames.iter().any(|f| f.opcode == OP_PING),
        "the server closed without pinging first; frames: {:?}",
        frames.iter().map(describe).collect::<Vec<_>>()
    );
    for f in &frames {
        assert!(
            f.opcode == OP_PING || f.opcode == OP_CLOSE,
            "unexpected frame before the idle close: {}",
            describe(f)
        );
    }
    // Sanity, not timing: it was not dropped before it was ever pinged.
    assert!(
        elapsed >= Duration::from_secs(1),
        "closed after only {elapsed:?}"
    );
}

#[test]
fn client_that_answers_pings_stays_connected() {
    let server = Server::start(&FAST);
    let mut c = Client::connect(server.addr(), "/echo");
    let start = Instant::now();
    // Past twice the idle timeout, sending nothing but pongs.
    let (messages, pings) = answer_pings_until(&mut c, start + Duration::from_secs(5));
    assert!(messages.is_empty());
    assert!(
        pings >= 2,
        "expected repeated pings over 5 s of silence, got {pings}"
    );
    c.send_text("alive");
    assert_eq!(
        next_message_answering_pings(&mut c),
        (OP_TEXT, b"alive".to_vec())
    );
    // It must also still close cleanly. A ping may cross our Close; skip it.
    c.send_close(1000, "");
    let mut f = c.read_frame_full();
    while f.opcode == OP_PING {
        f = c.read_frame_full();
    }
    assert_eq!(f.opcode, OP_CLOSE, "expected Close, got {}", describe(&f));
    assert_eq!(f.close_code(), Some(1000));
    c.expect_eof();
}

#[test]
fn client_sending_data_stays_connected_without_answering_pings() {
    let server = Server::start(&FAST);
    let mut c = Client::connect(server.addr(), "/echo");
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < Duration::from_secs(5) {
        let text = format!("tick {i}");
        c.send_text(&text);
        // Read the echo, ignoring any ping (this client never answers them).
        loop {
            let f = c.read_frame_full();
            if f.opcode == OP_PING {
                continue;
            }
            assert!(
                f.fin && f.opcode == OP_TEXT && f.payload == text.as_bytes(),
                "expected echo of {text:?}, got {}",
                describe(&f)
            );
            break;
        }
        i += 1;
        // Pace the traffic: well under the idle timeout (no event to wait on).
        thread::sleep(Duration::from_millis(400));
    }
}

#[test]
fn handshake_not_completed_in_time_is_dropped() {
    let server = Server::start(&["--handshake-timeout", "1"]);
    let start = Instant::now();
    // An established WebSocket must not be affected by the handshake timeout.
    let mut done = Client::connect(server.addr(), "/echo");

    let mut silent = tcp(server.addr());
    let mut partial = tcp(server.addr());
    partial
        .write_all(b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n")
        .expect("write a partial request");

    let deadline = start + Duration::from_secs(6);
    assert!(
        wait_dropped(&mut silent, deadline),
        "a connection that sent nothing was not dropped within {:?}",
        start.elapsed()
    );
    assert!(
        wait_dropped(&mut partial, deadline),
        "a connection with a partial request was not dropped within {:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "dropped too early"
    );

    done.send_text("unaffected");
    done.expect_text("unaffected");
    done.close_cleanly(1000);
}

#[test]
fn dribbling_bytes_does_not_extend_the_handshake_timeout() {
    let server = Server::start(&["--handshake-timeout", "1"]);
    let (req, _key) = upgrade_request(
        "/echo",
        &["X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"],
    );
    let mut stream = tcp(server.addr());
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("set read timeout");
    let start = Instant::now();
    let deadline = start + Duration::from_secs(6);
    let mut chunk = [0u8; 4096];
    let mut dropped = false;
    // One byte every 200 ms: the request would need ~40 s to complete.
    'outer: for byte in req.as_bytes() {
        if Instant::now() >= deadline {
            break;
        }
        if stream.write_all(&[*byte]).is_err() {
            dropped = true;
            break;
        }
        // The read timeout paces the writes and notices the close.
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => {
                    dropped = true;
                    break 'outer;
                }
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    dropped = true;
                    break 'outer;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("read error: {e}"),
            }
        }
    }
    assert!(
        dropped,
        "a handshake dribbled one byte at a time was not dropped within {:?}",
        start.elapsed()
    );
}
