//! A subscriber that stops reading is cut off once its queued output passes
//! `--max-outbound-bytes` (Close 1008), while a subscriber that reads gets every message, and
//! the server's memory stays bounded: it does not hold the flood for the one that stopped.

mod common;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use serde_json::json;
use socket2::{Domain, Socket, Type};

use common::*;

/// The per-connection output cap the server runs with.
const CAP: usize = 64 * 1024;
/// Size of each published payload.
const PAYLOAD: usize = 4096;
/// How many messages the publisher may be ahead of the reading subscriber: 16 KiB in flight,
/// far under the cap, so the reader can never be cut off however the threads are scheduled.
const WINDOW: u64 = 4;
/// At least this much is published (32 MiB): if the server kept it all for the non-reader,
/// its RSS would grow by about as much.
const MIN_FLOOD_BYTES: usize = 32 * 1024 * 1024;
/// What RSS may grow by during the flood.
const RSS_GROWTH_LIMIT_KIB: u64 = 16 * 1024;
/// The non-reader's receive buffer (the kernel doubles it); fixed, so it is not auto-tuned.
const SMALL_RCVBUF: usize = 8 * 1024;

/// The most the kernel may buffer towards one receiver: its send buffer can grow to
/// `tcp_wmem`'s maximum.
fn kernel_send_buffer_max() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 * 1024 * 1024)
}

/// A `/ws` client whose socket has a small, fixed receive buffer.
fn connect_with_small_rcvbuf(addr: SocketAddr, path: &str) -> Client {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket
        .set_recv_buffer_size(SMALL_RCVBUF)
        .expect("set SO_RCVBUF");
    socket
        .connect_timeout(&addr.into(), IO_TIMEOUT)
        .expect("connect");
    let mut stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let (req, key) = upgrade_request(path, &[]);
    std::io::Write::write_all(&mut stream, req.as_bytes()).expect("write the upgrade");
    let mut buf = Vec::new();
    let response = read_response(&mut stream, &mut buf);
    assert_101(&response, &key);
    Client::from_parts(stream, buf, response)
}

#[test]
fn non_reading_subscriber_is_cut_off_and_memory_stays_bounded() {
    let server = Server::start(&[
        "--max-outbound-bytes",
        &CAP.to_string(),
        // Little history, so what is kept does not blur the RSS measurement.
        "--history-size",
        "16",
        // The non-reader is read only at the end: keep its connection (and the tail of its
        // output) until then.
        "--close-timeout",
        "60",
        // The flood publishes as fast as the connection goes.
        "--publish-rate",
        "0",
    ]);
    let addr = server.addr();
    let total = (MIN_FLOOD_BYTES.max(2 * kernel_send_buffer_max() + 4 * CAP) / PAYLOAD) as u64;

    let mut stalled = connect_with_small_rcvbuf(addr, "/ws?channel=flood");
    assert_eq!(stalled.read_json()["type"], "subscribed");
    let mut reader = ws_connect(addr, "channel=flood");
    assert_eq!(reader.read_json()["type"], "subscribed");

    // The reader reports each id it receives; the publisher waits on those reports.
    let (tx, rx) = mpsc::channel::<u64>();
    let reader_thread = thread::spawn(move || {
        for n in 1..=total {
            let (id, m) = reader.read_message_id("flood");
            let data = m["data"].as_str().unwrap_or_default();
            assert!(
                id == n && data.starts_with(&format!("{n}:")) && data.len() == PAYLOAD,
                "reader: expected message {n}, got id {id} with {} bytes of data",
                data.len()
            );
            if tx.send(id).is_err() {
                return;
            }
        }
    });

    let mut http = HttpConn::connect(addr);
    let pid = server.pid();
    let baseline = proc_status_kib(pid, "VmRSS");
    let mut peak = baseline;
    let mut received = 0;
    let wait_for_reader = |received: &mut u64| match rx.recv_timeout(IO_TIMEOUT) {
        Ok(id) => *received = id,
        Err(e) => panic!("the reading subscriber stopped after {received} messages: {e}"),
    };
    for n in 1..=total {
        while n - received > WINDOW {
            wait_for_reader(&mut received);
        }
        let mut body = format!("{n}:").into_bytes();
        body.resize(PAYLOAD, b'x');
        assert_eq!(http.publish("flood", Some("text/plain"), &body), n);
        if n % 128 == 0 {
            peak = peak.max(proc_status_kib(pid, "VmRSS"));
        }
    }
    while received < total {
        wait_for_reader(&mut received);
    }
    reader_thread.join().expect("reader thread");
    peak = peak.max(proc_status_kib(pid, "VmRSS"));
    assert!(
        peak < baseline + RSS_GROWTH_LIMIT_KIB,
        "server RSS grew from {baseline} KiB to {peak} KiB while {} MiB were published \
         (VmHWM {} KiB)",
        (total as usize * PAYLOAD) >> 20,
        proc_status_kib(pid, "VmHWM")
    );

    // The non-reader got a prefix of the stream, then (if it was still sent) Close 1008,
    // then the end of the connection.
    let (frames, eof) = stalled.frames_until_eof(Instant::now() + IO_TIMEOUT);
    assert!(
        eof,
        "the non-reading subscriber's connection was not closed"
    );
    let (data, rest): (Vec<_>, Vec<_>) = frames.iter().partition(|f| f.opcode == OP_TEXT);
    assert!(
        rest.len() <= 1 && rest.iter().all(|f| f.opcode == OP_CLOSE),
        "after its messages, the non-reader got {:?}",
        rest.iter().map(|f| describe(f)).collect::<Vec<_>>()
    );
    if let Some(close) = rest.first() {
        assert_eq!(close.close_code(), Some(1008), "{}", describe(close));
        assert_eq!(
            frames.last().map(|f| f.opcode),
            Some(OP_CLOSE),
            "the Close must come last"
        );
    }
    let ids: Vec<u64> = data
        .iter()
        .map(|f| parse_json(&f.payload)["id"].as_u64().expect("message id"))
        .collect();
    assert!(
        (ids.len() as u64) < total,
        "the non-reader was not cut off: it received all {total} messages"
    );
    assert_eq!(
        ids,
        (1..=ids.len() as u64).collect::<Vec<_>>(),
        "the non-reader's messages are not a prefix of the stream"
    );
}

/// Reads everything until the server closes the connection (a reset counts as closed).
fn read_to_eof(c: &mut Client) -> Vec<u8> {
    let deadline = Instant::now() + 2 * IO_TIMEOUT;
    let mut all = std::mem::take(&mut c.buf);
    let mut chunk = vec![0u8; 256 * 1024];
    loop {
        assert!(
            Instant::now() < deadline,
            "the server did not close the connection"
        );
        match std::io::Read::read(&mut c.stream, &mut chunk) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return all,
            Err(e) => panic!("read error before the server closed: {e}"),
        }
    }
}

/// Splits server bytes into frames `(opcode, payload)`; an error if the bytes end inside a
/// frame.
fn split_frames(mut bytes: &[u8]) -> Result<Vec<(u8, &[u8])>, String> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let (len, header) = match bytes.get(1).map(|b| b & 0x7F) {
            None => return Err("the stream ends inside a frame header".into()),
            Some(126) if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as u64, 4),
            Some(127) if bytes.len() >= 10 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&bytes[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            Some(126 | 127) => return Err("the stream ends inside a frame header".into()),
            Some(n) => (n as u64, 2),
        };
        let end = header + len as usize;
        if bytes.len() < end {
            return Err(format!(
                "frame {} (opcode {:#x}) announces {len} payload bytes but the stream ends \
                 after {}; its last bytes: {:02x?}",
                frames.len(),
                bytes[0] & 0x0F,
                bytes.len() - header,
                &bytes[bytes.len().saturating_sub(24)..]
            ));
        }
        frames.push((bytes[0] & 0x0F, &bytes[header..end]));
        bytes = &bytes[end..];
    }
    Ok(frames)
}

#[test]
fn cutting_off_a_subscriber_never_truncates_a_frame() {
    // Messages larger than the kernel can buffer towards the subscriber and than the output
    // cap (1 MiB by default): the socket takes part of the first frame and the rest of it is
    // queued (a single frame may exceed the cap when nothing else is queued); the second
    // cannot be queued behind it, so the subscriber is cut off. A Close may only follow a
    // complete frame.
    let message = (8 << 20).max(2 * kernel_send_buffer_max());
    let max_message = (message + (1 << 20)).to_string();
    let server = Server::start(&["--max-message-bytes", &max_message, "--close-timeout", "60"]);
    let mut stalled = connect_with_small_rcvbuf(server.addr(), "/ws?channel=big");
    assert_eq!(stalled.read_json()["type"], "subscribed");

    let mut http = HttpConn::connect(server.addr());
    for id in 1..=2 {
        assert_eq!(
            http.publish("big", Some("text/plain"), &vec![b'a'; message]),
            id
        );
    }

    let bytes = read_to_eof(&mut stalled);
    let frames = split_frames(&bytes).unwrap_or_else(|e| {
        panic!(
            "the cut-off subscriber received a corrupt stream ({} bytes): {e}",
            bytes.len()
        )
    });
    for (i, (opcode, payload)) in frames.iter().enumerate() {
        match *opcode {
            OP_TEXT => {
                let m = parse_json(payload);
                let len = m["data"].as_str().map_or(0, str::len);
                assert_eq!((&m["id"], len), (&json!(i + 1), message), "frame {i}");
            }
            OP_CLOSE => {
                assert_eq!(i, frames.len() - 1, "the Close must come last");
                assert_eq!(payload.get(..2), Some(&1008u16.to_be_bytes()[..]));
            }
            other => panic!("frame {i}: unexpected opcode {other:#x}"),
        }
    }
    assert!(
        frames.iter().filter(|(op, _)| *op == OP_TEXT).count() < 2,
        "the subscriber was not cut off: it got both messages"
    );
}
