//! Hostile and broken clients: slowloris, header floods, random bytes before and after the
//! upgrade, frame headers that lie about their length, clients that never read, clients that
//! vanish, and running out of connection slots or file descriptors. In every case the
//! offender is dropped or refused within a deadline and everyone else keeps being served.
//!
//! Deadlines are generous (several times the configured timeouts): these tests check
//! behaviour, never speed.

// Running the server under a low RLIMIT_NOFILE needs `setrlimit` in `pre_exec`, and the CPU
// sample needs `sysconf`; each unsafe block says why it is sound.
#![allow(unsafe_code)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A xorshift64 generator with a fixed seed, so every run sends the same "random" inputs and
/// a failure can be replayed.
struct Xorshift(u64);

impl Xorshift {
    fn new(seed: u64) -> Self {
        Xorshift(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform enough in `lo..hi` for test inputs.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo) as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

/// How a connection ended when we waited for the server to close it.
#[derive(Debug)]
enum Ending {
    /// EOF or reset, after these bytes.
    Closed(Vec<u8>),
    /// Still open at the deadline, after these bytes.
    StillOpen(Vec<u8>),
}

/// Reads until the server closes `stream` (EOF or reset) or `deadline` passes.
fn wait_for_close(stream: &mut TcpStream, deadline: Instant) -> Ending {
    let mut got = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ending::StillOpen(got);
        }
        stream
            .set_read_timeout(Some(deadline - now))
            .expect("set read timeout");
        match stream.read(&mut chunk) {
            Ok(0) => return Ending::Closed(got),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ending::Closed(got),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ending::StillOpen(got)
            }
            Err(e) => panic!("read error waiting for the server to close: {e}"),
        }
    }
}

/// The status code of an HTTP response at the start of `bytes`, if there is one.
fn status_of(bytes: &[u8]) -> Option<u16> {
    let rest = bytes.strip_prefix(b"HTTP/1.1 ")?;
    std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()
}

/// What became of one upgrade attempt.
enum Attempt {
    Admitted(Client),
    /// A 503, a close or a reset: what happened.
    Refused(String),
    /// Neither answered nor closed within [`IO_TIMEOUT`].
    Hung,
}

/// An upgrade attempt on `/echo`. A refused connection may be closed before the request is
/// written, so a write error is ignored and the answer read anyway.
fn attempt_upgrade(addr: SocketAddr) -> Attempt {
    let (req, key) = upgrade_request("/echo", &[]);
    let mut stream = tcp(addr);
    let _ = stream.write_all(req.as_bytes());
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Attempt::Refused(format!(
                    "closed after {:?}",
                    String::from_utf8_lossy(&buf)
                ))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Attempt::Hung
            }
            Err(e) => {
                return Attempt::Refused(format!("{e} after {:?}", String::from_utf8_lossy(&buf)))
            }
        }
    }
    if !buf.starts_with(b"HTTP/1.1 101") {
        return Attempt::Refused(String::from_utf8_lossy(&buf).into_owned());
    }
    let resp = read_response(&mut stream, &mut buf);
    assert_101(&resp, &key);
    Attempt::Admitted(Client::from_parts(stream, buf, resp))
}

/// One upgrade attempt that reports a refusal instead of panicking: `Ok` with the client on
/// a 101, `Err` describing what happened otherwise (a 503, a close, a reset). Panics only if
/// the server neither answers nor closes within [`IO_TIMEOUT`]: a hang is never acceptable.
fn try_upgrade(addr: SocketAddr) -> Result<Client, String> {
    match attempt_upgrade(addr) {
        Attempt::Admitted(c) => Ok(c),
        Attempt::Refused(what) => Err(what),
        Attempt::Hung => {
            panic!("an upgrade was neither answered nor refused within {IO_TIMEOUT:?}")
        }
    }
}

/// Retries [`try_upgrade`] until a connection is admitted, for slots and descriptors that a
/// departing client frees asynchronously (no event announces it from outside).
fn upgrade_when_admitted(addr: SocketAddr, timeout: Duration) -> Client {
    let deadline = Instant::now() + timeout;
    loop {
        match try_upgrade(addr) {
            Ok(client) => return client,
            Err(what) => {
                assert!(
                    Instant::now() < deadline,
                    "no connection admitted within {timeout:?}; last attempt: {what}"
                );
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

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

/// A round trip on `client` with a payload naming `what`.
fn echo_ok(client: &mut Client, what: &str) {
    let text = format!("still served: {what}");
    client.send_text(&text);
    client.expect_text(&text);
}

/// A fresh `/echo` client completes the upgrade and gets an echo.
fn fresh_client_echoes(addr: SocketAddr, what: &str) {
    let mut c = Client::connect(addr, "/echo");
    echo_ok(&mut c, what);
    c.close_cleanly(1000);
}

/// The most the kernel may buffer towards one receiver (`tcp_wmem`'s maximum).
fn kernel_send_buffer_max() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 * 1024 * 1024)
}

/// CPU time (user + system) the process has used so far, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/stat: {e}"));
    // The command name is in parentheses and may hold spaces: count fields after it.
    let after = &stat[stat.rfind(')').expect("stat has a command name") + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of proc(5); the list starts at field 3 (state).
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf only reads a configuration value; it takes and returns plain integers.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    assert!(hz > 0, "sysconf(_SC_CLK_TCK) failed");
    Duration::from_secs_f64(ticks as f64 / hz as f64)
}

// ---------------------------------------------------------------------------------------------
// Slowloris
// ---------------------------------------------------------------------------------------------

/// Pause between the bytes of a slowloris request.
const TRICKLE: Duration = Duration::from_millis(300);

#[test]
fn slowloris_is_dropped_at_the_handshake_timeout() {
    let mut server = Server::start(&["--handshake-timeout", "1"]);
    let (req, _key) = upgrade_request("/echo", &[]);
    // Sending the whole request at this pace would take ~40 s.
    assert!(req.len() as u32 * TRICKLE > Duration::from_secs(30));

    let started = Instant::now();
    let deadline = started + Duration::from_secs(8);
    let mut stream = tcp(server.addr());
    let mut closed = false;
    for &byte in req.as_bytes() {
        if stream.write_all(&[byte]).is_err() {
            closed = true;
            break;
        }
        // Waiting for the server's close paces the trickle.
        match wait_for_close(&mut stream, Instant::now() + TRICKLE) {
            Ending::Closed(bytes) => {
                assert!(
                    status_of(&bytes) != Some(101),
                    "a slowloris request was upgraded"
                );
                closed = true;
                break;
            }
            Ending::StillOpen(bytes) => {
                assert!(
                    bytes.is_empty(),
                    "server answered an incomplete request: {bytes:?}"
                )
            }
        }
        assert!(
            Instant::now() < deadline,
            "a client trickling its request was not dropped within {:?} at --handshake-timeout 1",
            deadline - started
        );
    }
    assert!(
        closed,
        "the whole trickled request went through without the server closing"
    );
    assert!(server.is_running(), "the server died during a slowloris");
    fresh_client_echoes(server.addr(), "after a slowloris");
}

#[test]
fn two_hundred_slowloris_clients_do_not_starve_real_ones() {
    const SLOW: usize = 200;
    let server = Server::start(&["--handshake-timeout", "1"]);
    let addr = server.addr();
    let before = metric(addr, "switchboard_handshake_timeouts_total");
    let (req, _key) = upgrade_request("/echo", &[]);
    let req = req.into_bytes();

    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..SLOW).map(|_| tcp(addr)).collect();
    let writers: Vec<TcpStream> = slow
        .iter()
        .map(|s| s.try_clone().expect("clone a slowloris socket"))
        .collect();
    // One thread trickles a byte to each live connection per round, until told to stop or
    // for at most 40 rounds (12 s).
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let trickler = thread::spawn(move || {
        let mut writers: Vec<Option<TcpStream>> = writers.into_iter().map(Some).collect();
        for round in 0..40 {
            let byte = req[round % req.len()];
            for w in writers.iter_mut() {
                if let Some(s) = w {
                    if s.write_all(&[byte]).is_err() {
                        *w = None;
                    }
                }
            }
            match stop_rx.recv_timeout(TRICKLE) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => return round,
            }
        }
        40
    });

    // While they trickle, real clients upgrade and echo as usual.
    let mut real = Client::connect(addr, "/echo");
    for i in 0..5 {
        echo_ok(&mut real, &format!("while trickling {i}"));
        fresh_client_echoes(addr, &format!("new client while trickling {i}"));
    }
    assert!(
        !trickler.is_finished(),
        "the slowloris clients stopped trickling before the real clients were done"
    );

    // Every slowloris connection is closed by the server, well before its request could
    // have completed.
    let deadline = started + Duration::from_secs(10);
    for (i, s) in slow.iter_mut().enumerate() {
        match wait_for_close(s, deadline) {
            Ending::Closed(bytes) => assert!(
                status_of(&bytes) != Some(101),
                "slowloris client {i} was upgraded"
            ),
            Ending::StillOpen(bytes) => panic!(
                "slowloris client {i} still open {:?} after it started (got {bytes:?})",
                started.elapsed()
            ),
        }
    }
    let _ = stop_tx.send(());
    trickler.join().expect("trickler thread");

    let after = metric(addr, "switchboard_handshake_timeouts_total");
    assert!(
        after >= before + SLOW as f64,
        "handshake timeouts went from {before} to {after}, expected +{SLOW}"
    );
    echo_ok(&mut real, "after the slowloris clients were dropped");
    real.close_cleanly(1000);
}

// ---------------------------------------------------------------------------------------------
// Header floods
// ---------------------------------------------------------------------------------------------

#[test]
fn header_block_over_the_limit_is_431() {
    let server = Server::start(&["--max-header-bytes", "4096"]);
    let filler = format!("X-Filler: {}", "f".repeat(5000));
    let (req, _key) = upgrade_request("/echo", &[&filler]);
    assert_error_response(server.addr(), req.as_bytes(), 431);

    // More header lines than the parser takes, each tiny, is refused the same way.
    let many: Vec<String> = (0..100).map(|i| format!("X-{i}: {i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let (req, _key) = upgrade_request("/echo", &many);
    assert!(req.len() < 4096, "stays under the byte limit");
    assert_error_response(server.addr(), req.as_bytes(), 431);

    fresh_client_echoes(server.addr(), "after header floods");
}

/// Streams `start` followed by endless repetitions of `unit` until the server answers;
/// expects a 431 and the connection closed afterwards.
fn endless_head_gets_431(addr: SocketAddr, start: &[u8], unit: &[u8]) {
    /// Upper bound on what the flooding thread sends.
    const FLOOD_MAX_BYTES: usize = 64 * 1024 * 1024;
    let mut stream = tcp(addr);
    let mut writer = stream.try_clone().expect("clone the flooding socket");
    let stop = Arc::new(AtomicBool::new(false));
    let stop_writer = stop.clone();
    let mut chunk = start.to_vec();
    while chunk.len() < 16 * 1024 {
        chunk.extend_from_slice(unit);
    }
    let repeat: Vec<u8> = unit.repeat((16 * 1024) / unit.len() + 1);
    let flood = thread::spawn(move || {
        let mut sent = 0;
        let mut next: &[u8] = &chunk;
        while sent < FLOOD_MAX_BYTES && !stop_writer.load(Ordering::Relaxed) {
            match writer.write_all(next) {
                Ok(()) => sent += next.len(),
                Err(_) => break,
            }
            next = &repeat;
        }
        sent
    });

    let mut buf = Vec::new();
    let resp = read_response(&mut stream, &mut buf);
    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().expect("flood thread");
    assert_eq!(resp.status, 431, "an endless request head got {resp:?}");
    assert_error_shape(&resp);
    assert!(
        sent < FLOOD_MAX_BYTES,
        "the server never answered the flood"
    );
    let _ = stream.shutdown(Shutdown::Write);
    assert_closed(&mut stream, &buf);
}

#[test]
fn endless_header_lines_get_431() {
    let server = Server::start(&["--max-header-bytes", "4096"]);
    // Header line after header line, the blank line never comes.
    endless_head_gets_431(
        server.addr(),
        b"GET /echo HTTP/1.1\r\nHost: localhost\r\n",
        b"X-Flood: 0123456789abcdef\r\n",
    );
    // One header line that never ends.
    endless_head_gets_431(
        server.addr(),
        b"GET /echo HTTP/1.1\r\nHost: localhost\r\nX-Long: ",
        b"abcdefghijklmnopqrstuvwxyz",
    );
    // A request line that never ends.
    endless_head_gets_431(server.addr(), b"GET /", b"aaaaaaaaaaaaaaaa");
    fresh_client_echoes(server.addr(), "after endless heads");
}

// ---------------------------------------------------------------------------------------------
// Random bytes
// ---------------------------------------------------------------------------------------------

#[test]
fn random_bytes_instead_of_http_are_refused() {
    const INPUTS: usize = 300;
    let mut server = Server::start(&["--max-header-bytes", "8192"]);
    let addr = server.addr();
    let mut rng = Xorshift::new(0x5EED_0001_D00D_F00D);
    let (mut bad_request, mut too_large, mut closed) = (0, 0, 0);
    for i in 0..INPUTS {
        let len = match rng.range(0, 3) {
            0 => rng.range(1, 64),
            1 => rng.range(64, 2048),
            _ => rng.range(2048, 32 * 1024),
        };
        let mut input = Vec::with_capacity(len + 32);
        // Every third input starts like a real request, so the header parser sees the noise.
        if i % 3 == 0 {
            input.extend_from_slice(b"GET /echo HTTP/1.1\r\n");
        }
        input.extend_from_slice(&rng.bytes(len));

        let mut stream = tcp(addr);
        // The server may answer and close before all of a long input is written.
        let _ = stream.write_all(&input);
        let _ = stream.shutdown(Shutdown::Write);
        match wait_for_close(&mut stream, Instant::now() + IO_TIMEOUT) {
            Ending::Closed(bytes) if bytes.is_empty() => closed += 1,
            Ending::Closed(bytes) => match status_of(&bytes) {
                Some(400) => bad_request += 1,
                Some(431) => too_large += 1,
                other => panic!(
                    "input {i} ({len} random bytes) got status {other:?}: {:?}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                ),
            },
            Ending::StillOpen(bytes) => panic!(
                "input {i} ({len} random bytes): connection still open after {IO_TIMEOUT:?}, got {:?}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }
    eprintln!("random HTTP input: {bad_request} x 400, {too_large} x 431, {closed} closed");
    assert_eq!(bad_request + too_large + closed, INPUTS);
    assert!(
        bad_request >= INPUTS / 2,
        "most random inputs should get 400: {bad_request} x 400, {too_large} x 431, {closed} closed"
    );
    assert!(server.is_running(), "the server died on random input");
    fresh_client_echoes(addr, "after random HTTP input");
    assert_eq!(http_get(addr, "/healthz").status, 200);
}

/// A masked header that passes the header checks: a data or control opcode, FIN mostly set,
/// and a length in any of the three encodings (often over the 4 KiB message limit).
fn plausible_header(rng: &mut Xorshift) -> Vec<u8> {
    const FIRST: [u8; 7] = [0x81, 0x81, 0x82, 0x01, 0x02, 0x89, 0x8A];
    let mut h = vec![FIRST[rng.range(0, FIRST.len())]];
    let len = match rng.range(0, 3) {
        0 => rng.range(0, 126) as u64,
        1 => rng.range(126, 0x1_0000) as u64,
        _ => rng.next() >> rng.range(1, 48),
    };
    // Control frames must stay short to pass the header checks.
    let len = if h[0] & 0x08 != 0 { len % 126 } else { len };
    push_len(&mut h, 0x80, len);
    h.extend_from_slice(&rng.bytes(4));
    h
}

#[test]
fn random_bytes_after_the_upgrade_fail_the_connection() {
    const INPUTS: usize = 120;
    let mut server = Server::start(&["--max-message-bytes", "4096"]);
    let addr = server.addr();
    let mut rng = Xorshift::new(0x0BAD_C0DE_1234_5678);
    let mut by_code = std::collections::BTreeMap::<u16, usize>::new();
    let mut without_close = 0;
    for i in 0..INPUTS {
        let len = rng.range(1, 8192);
        // Even inputs are pure noise (nearly always a bad first header: RSV bits, opcode or
        // mask). Odd ones start with a well-formed header over noise, so the payload rules
        // get their turn: UTF-8 in text, the message size limit.
        let mut input = if i % 2 == 1 {
            plausible_header(&mut rng)
        } else {
            Vec::new()
        };
        input.extend_from_slice(&rng.bytes(len));
        let mut c = Client::connect(addr, "/echo");
        // The server may fail the connection before all of it is written.
        let _ = c.stream.write_all(&input);
        c.shutdown_write();
        let (frames, eof) = c.frames_until_eof(Instant::now() + IO_TIMEOUT);
        assert!(
            eof,
            "input {i} ({len} random bytes): connection still open after {IO_TIMEOUT:?}; frames {:?}",
            frames.iter().map(describe).collect::<Vec<_>>()
        );
        let (last, before) = match frames.split_last() {
            Some((last, before)) if last.opcode == OP_CLOSE => (Some(last), before),
            _ => (None, &frames[..]),
        };
        // Before the Close, only answers to whatever valid frames the noise held.
        for f in before {
            assert!(
                matches!(f.opcode, OP_TEXT | OP_BINARY | OP_CONT | OP_PONG),
                "input {i}: unexpected {} before the close",
                describe(f)
            );
        }
        match last.map(Frame::close_code) {
            Some(Some(code)) => *by_code.entry(code).or_default() += 1,
            Some(None) => panic!("input {i}: a Close without a code"),
            None => without_close += 1,
        }
    }
    for code in by_code.keys() {
        assert!(
            matches!(code, 1002 | 1007 | 1009),
            "random input was answered with close code {code}: {by_code:?}"
        );
    }
    let failed: usize = by_code.values().sum();
    eprintln!("random frames: close codes {by_code:?}, {without_close} ended without a close");
    // Noise that ends inside a frame the server is still waiting for ends with our FIN
    // instead; with a 4 KiB message limit most inputs hit a violation first.
    assert!(
        failed >= INPUTS * 2 / 3,
        "only {failed} of {INPUTS} inputs got a protocol close ({by_code:?}, {without_close} without)"
    );
    for code in [1002, 1007, 1009] {
        assert!(by_code.contains_key(&code), "no {code} among {by_code:?}");
    }
    assert!(server.is_running(), "the server died on random frames");
    fresh_client_echoes(addr, "after random frames");
}

// ---------------------------------------------------------------------------------------------
// Frame headers
// ---------------------------------------------------------------------------------------------

#[test]
fn an_unmasked_frame_is_1002() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr(), "/echo");
    c.send_raw(&encode_frame(true, 0, OP_TEXT, None, b"no mask"));
    c.expect_fail(1002);
    fresh_client_echoes(server.addr(), "after an unmasked frame");
}

#[test]
fn a_64_bit_length_of_2_pow_63_is_1002() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr(), "/echo");
    let mut header = vec![0x80 | OP_BINARY, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 63).to_be_bytes());
    header.extend_from_slice(&random_mask());
    // The header alone, no payload: the verdict cannot depend on waiting for one.
    c.send_raw(&header);
    c.expect_fail(1002);
    fresh_client_echoes(server.addr(), "after a 2^63 length");
}

/// A masked frame header announcing `len` payload bytes (the shortest encoding), no payload.
fn header_only(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
    let mut h = vec![if fin { 0x80 } else { 0 } | opcode];
    push_len(&mut h, 0x80, len);
    h.extend_from_slice(&random_mask());
    h
}

#[test]
fn a_length_just_over_the_message_limit_is_1009_from_the_header_alone() {
    const MAX: u64 = 4096;
    let server = Server::start(&["--max-message-bytes", &MAX.to_string()]);
    let addr = server.addr();

    // One byte over, 16-bit length.
    let mut c = Client::connect(addr, "/echo");
    c.send_raw(&header_only(true, OP_BINARY, MAX + 1));
    c.expect_fail(1009);

    // Over, in the 64-bit form.
    let mut c = Client::connect(addr, "/echo");
    c.send_raw(&header_only(true, OP_TEXT, 1 << 40));
    c.expect_fail(1009);

    // Exactly at the limit is fine.
    let mut c = Client::connect(addr, "/echo");
    let payload = vec![b'x'; MAX as usize];
    c.send_binary(&payload);
    c.expect_binary(&payload);

    // Fragments add up: a continuation whose header takes the message one byte over.
    c.send_frame(false, OP_BINARY, &payload[..4000]);
    c.send_raw(&header_only(true, OP_CONT, MAX - 4000 + 1));
    c.expect_fail(1009);

    fresh_client_echoes(addr, "after oversized headers");
}

// ---------------------------------------------------------------------------------------------
// Clients that do not read
// ---------------------------------------------------------------------------------------------

#[test]
fn a_client_that_never_reads_its_echoes_is_paused_and_memory_stays_bounded() {
    /// Size of each echo request.
    const MESSAGE: usize = 64 * 1024;
    /// What the client tries to push: far more than any buffering on the way could hold.
    const PUSH_MAX: usize = 256 * 1024 * 1024;
    /// What the server's RSS may grow by while the client pushes.
    const RSS_GROWTH_LIMIT_KIB: u64 = 32 * 1024;
    /// How long a write may make no progress before the client counts itself paused.
    const STALL: Duration = Duration::from_secs(1);

    // Publishing as fast as the connection goes: no publish rate.
    let server = Server::start(&[
        "--max-outbound-bytes",
        "262144",
        "--close-timeout",
        "60",
        "--publish-rate",
        "0",
    ]);
    let addr = server.addr();
    let mut other = Client::connect(addr, "/echo");
    echo_ok(&mut other, "before the hog");
    let mut hog = connect_small_buffers(addr, "/echo");
    let rss_before = proc_status_kib(server.pid(), "VmRSS");

    let payload: Vec<u8> = (0..MESSAGE).map(|i| (i % 251) as u8).collect();
    let frame = client_frame(true, OP_BINARY, &payload);
    let (sent, stalled) = push_until_stalled(&mut hog.stream, &frame, PUSH_MAX, STALL);
    assert!(
        stalled,
        "the server read all {sent} bytes of echo requests from a client that reads none of \
         the echoes: no backpressure"
    );

    // The others are served while the hog is paused.
    echo_ok(&mut other, "while the hog is paused");
    fresh_client_echoes(addr, "new client while the hog is paused");

    let rss_after = proc_status_kib(server.pid(), "VmRSS");
    let growth = rss_after.saturating_sub(rss_before);
    assert!(
        growth < RSS_GROWTH_LIMIT_KIB,
        "server RSS grew by {growth} KiB ({rss_before} -> {rss_after}) while a client pushed \
         {sent} bytes without reading"
    );

    // Still paused: a second push gets (nearly) nowhere.
    let (more, _) = push_until_stalled(&mut hog.stream, &frame, PUSH_MAX, STALL);
    assert!(
        more < 2 * 1024 * 1024,
        "the server kept reading {more} more bytes from a client it should have paused"
    );
    let sent = sent + more;

    // Once the hog reads, the server resumes: every complete request is echoed, in order.
    let complete = sent / frame.len();
    for i in 0..complete {
        let (op, got) = hog.read_message();
        assert_eq!(op, OP_BINARY, "echo {i}");
        assert!(got == payload, "echo {i} of {complete} differs");
    }
    echo_ok(&mut other, "after the hog caught up");
    other.close_cleanly(1000);
}

#[test]
fn a_subscriber_that_never_reads_a_flood_is_cut_off() {
    const CAP: usize = 64 * 1024;
    const PAYLOAD: usize = 4096;
    let server = Server::start(&[
        "--max-outbound-bytes",
        &CAP.to_string(),
        "--history-size",
        "16",
        "--close-timeout",
        "60",
    ]);
    let addr = server.addr();
    let cut_before = metric(addr, "switchboard_slow_consumers_total");

    let mut stalled = connect_small_buffers(addr, "/ws?channel=flood");
    assert_eq!(stalled.read_json()["type"], "subscribed");

    // Publish until the server reports the cut, with a bound: everything the kernel can
    // buffer on the way, several times the cap, and then some.
    let max_messages = ((4 * kernel_send_buffer_max() + 16 * CAP) / PAYLOAD).max(4096) as u64;
    let body = serde_json::Value::String("f".repeat(PAYLOAD));
    let mut publisher = HttpConn::connect(addr);
    let mut published = 0u64;
    let mut last_id = 0;
    while published < max_messages {
        last_id = publisher.publish_json("flood", &body);
        published += 1;
        if published.is_multiple_of(64)
            && metric(addr, "switchboard_slow_consumers_total") > cut_before
        {
            break;
        }
    }
    assert!(
        metric(addr, "switchboard_slow_consumers_total") > cut_before,
        "a subscriber that read nothing of {published} messages ({} bytes) was not cut off",
        published as usize * PAYLOAD
    );

    // It gets what was queued, then Close 1008 (or the connection just ends), and fewer
    // messages than were published.
    let (frames, eof) = stalled.frames_until_eof(Instant::now() + Duration::from_secs(20));
    assert!(eof, "the cut-off subscriber's connection did not end");
    let mut received = 0u64;
    let mut prev = 0;
    for f in &frames {
        match f.opcode {
            OP_TEXT => {
                let m = parse_json(&f.payload);
                let id = m["id"].as_u64().expect("message id");
                assert!(id > prev, "ids out of order: {id} after {prev}");
                prev = id;
                received += 1;
            }
            OP_CLOSE => assert_eq!(f.close_code(), Some(1008), "{}", describe(f)),
            _ => panic!("unexpected frame {}", describe(f)),
        }
    }
    assert!(
        received < published,
        "the stalled subscriber got all {published} messages; it was not cut off"
    );
    assert!(
        prev < last_id,
        "the stalled subscriber got the last message"
    );

    // Others still get messages on the same channel.
    let mut reader = ws_connect(addr, "channel=flood");
    assert_eq!(reader.read_json()["type"], "subscribed");
    let id = publisher.publish_json("flood", &serde_json::json!("after the cut"));
    let (got, m) = reader.read_message_id("flood");
    assert_eq!(got, id);
    assert_eq!(m["data"], "after the cut");
}

// ---------------------------------------------------------------------------------------------
// Clients that vanish
// ---------------------------------------------------------------------------------------------

#[test]
fn a_client_that_vanishes_without_fin_is_reaped() {
    let server = Server::start(&["--ping-interval", "1", "--idle-timeout", "2"]);
    let addr = server.addr();
    let reaped_before = metric(addr, "switchboard_heartbeat_reaped_total");

    // Both stay connected and never send a byte again: no pong, no close, no FIN. Reading
    // here only watches for the server's close; it answers nothing.
    let mut echo = Client::connect(addr, "/echo");
    let mut ws = ws_connect(addr, "channel=quiet");
    assert_eq!(ws.read_json()["type"], "subscribed");

    let deadline = Instant::now() + Duration::from_secs(10);
    for (name, c) in [("echo", &mut echo), ("ws", &mut ws)] {
        let (frames, eof) = c.frames_until_eof(deadline);
        assert!(
            eof,
            "the silent {name} client was not closed by the idle timeout"
        );
        assert!(
            frames.iter().all(|f| f.opcode == OP_PING),
            "the silent {name} client got {:?}",
            frames.iter().map(describe).collect::<Vec<_>>()
        );
        assert!(
            !frames.is_empty(),
            "the silent {name} client was never pinged"
        );
    }
    let reaped = metric(addr, "switchboard_heartbeat_reaped_total");
    assert!(
        reaped >= reaped_before + 2.0,
        "switchboard_heartbeat_reaped_total went from {reaped_before} to {reaped}"
    );
    fresh_client_echoes(addr, "after reaping");
}

// ---------------------------------------------------------------------------------------------
// Connection and descriptor limits
// ---------------------------------------------------------------------------------------------

#[test]
fn past_max_connections_new_clients_get_503_until_some_leave() {
    const MAX: usize = 20;
    let server = Server::start(&["--max-connections", &MAX.to_string()]);
    let addr = server.addr();
    let mut clients: Vec<Client> = (0..MAX).map(|_| Client::connect(addr, "/echo")).collect();

    for _ in 0..5 {
        expect_503(addr);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        echo_ok(c, &format!("admitted {i}"));
    }

    for mut c in clients.drain(..5) {
        c.close_cleanly(1000);
    }
    for _ in 0..5 {
        let mut c = upgrade_when_admitted(addr, IO_TIMEOUT);
        echo_ok(&mut c, "admitted after others left");
        clients.push(c);
    }
    expect_503(addr);
    for (i, c) in clients.iter_mut().enumerate() {
        echo_ok(c, &format!("still admitted {i}"));
    }
}

/// The descriptor limit the server runs under in the fd-exhaustion test.
const LOW_NOFILE: libc::rlim_t = 64;
/// Descriptors the server inherits already open (copies of its stdin), as from a wrapper or
/// supervisor that leaks some: the server sizes its connection capacity from the limit
/// alone, so with these taken, descriptors run out before capacity does and `accept` fails
/// with EMFILE.
const INHERITED_FDS: usize = 24;

/// Starts the server with RLIMIT_NOFILE capped at [`LOW_NOFILE`] (soft and hard, so its own
/// attempt to raise the soft limit gains nothing), [`INHERITED_FDS`] descriptors already
/// open, and a `--max-connections` far above what the limit allows.
fn start_with_low_fd_limit() -> Server {
    let mut cmd = switchboard_command();
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--max-connections",
        "1000",
        "--workers",
        "2",
    ]);
    // SAFETY: the closure runs in the forked child before exec; it only calls setrlimit and
    // dup, which are async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: LOW_NOFILE,
                rlim_max: LOW_NOFILE,
            };
            // SAFETY: `lim` is a valid rlimit that setrlimit only reads.
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            for _ in 0..INHERITED_FDS {
                // SAFETY: dup takes and returns plain integers; fd 0 is the child's stdin
                // (/dev/null), and the copy, without FD_CLOEXEC, survives the exec.
                if libc::dup(0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Server::start_command(cmd)
}

/// CPU the process uses over about one second from now.
fn cpu_over_one_second(pid: u32) -> (Duration, Duration) {
    let before = cpu_time(pid);
    let start = Instant::now();
    thread::sleep(Duration::from_secs(1));
    (cpu_time(pid).saturating_sub(before), start.elapsed())
}

#[test]
fn past_the_fd_limit_excess_clients_are_refused_without_spinning_and_it_recovers() {
    const ATTEMPTS: usize = 100;
    let mut server = start_with_low_fd_limit();
    let addr = server.addr();
    let pid = server.pid();

    // Sequentially, so each attempt's outcome is known: a 101, or a refusal (503, close or
    // reset). A hang is never acceptable.
    let mut admitted = Vec::new();
    let mut refusals = Vec::new();
    for i in 0..ATTEMPTS {
        match attempt_upgrade(addr) {
            Attempt::Admitted(c) => admitted.push(c),
            Attempt::Refused(what) => refusals.push(what),
            Attempt::Hung => {
                let (cpu, wall) = cpu_over_one_second(pid);
                panic!(
                    "connection attempt {i} (after {} admitted, {} refused) was neither \
                     answered nor closed within {IO_TIMEOUT:?}; meanwhile the server used \
                     {cpu:?} of CPU in {wall:?}",
                    admitted.len(),
                    refusals.len()
                );
            }
        }
    }
    assert!(
        !refusals.is_empty(),
        "all {ATTEMPTS} connections were admitted under a descriptor limit of {LOW_NOFILE}"
    );
    assert!(
        admitted.len() >= 10,
        "only {} connections admitted under a descriptor limit of {LOW_NOFILE}; refusals: {:?}",
        admitted.len(),
        &refusals[..refusals.len().min(3)]
    );
    for r in &refusals {
        assert!(
            status_of(r.as_bytes()).is_none_or(|s| s == 503),
            "a refused connection got {r:?}"
        );
    }

    // Existing clients are unaffected.
    for (i, c) in admitted.iter_mut().enumerate() {
        echo_ok(c, &format!("admitted {i} at the fd limit"));
    }

    // While new connections keep being refused, the server must idle, not spin on a
    // listener it cannot accept from. One attempt per 100 ms for a second.
    let cpu_before = cpu_time(pid);
    let window_start = Instant::now();
    let mut slot = window_start;
    let mut refused_in_window = 0;
    while window_start.elapsed() < Duration::from_secs(1) {
        let mut s = tcp(addr);
        match wait_for_close(&mut s, Instant::now() + IO_TIMEOUT) {
            Ending::Closed(bytes) => {
                assert!(
                    status_of(&bytes).is_none_or(|st| st == 503),
                    "a connection past the fd limit got {:?}",
                    String::from_utf8_lossy(&bytes)
                );
                refused_in_window += 1;
            }
            Ending::StillOpen(bytes) => panic!(
                "a connection past the fd limit was neither refused nor closed within \
                 {IO_TIMEOUT:?} (got {bytes:?})"
            ),
        }
        slot += Duration::from_millis(100);
        if let Some(wait) = slot.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
    }
    let wall = window_start.elapsed();
    let cpu = cpu_time(pid).saturating_sub(cpu_before);
    assert!(refused_in_window > 0);
    assert!(
        cpu.as_secs_f64() < 0.5 * wall.as_secs_f64(),
        "the server used {cpu:?} of CPU in {wall:?} while refusing connections at the fd \
         limit: it is busy-looping"
    );
    assert!(server.is_running(), "the server died at the fd limit");

    // Recovery: once some clients leave, new ones are admitted again.
    for mut c in admitted.drain(..10) {
        c.close_cleanly(1000);
    }
    for i in 0..5 {
        let mut c = upgrade_when_admitted(addr, Duration::from_secs(10));
        echo_ok(&mut c, &format!("admitted after recovery {i}"));
        admitted.push(c);
    }
    for (i, c) in admitted.iter_mut().enumerate() {
        echo_ok(c, &format!("still admitted {i}"));
    }
}
