//! Graceful drain (issue 6): on SIGTERM, what was published before the signal still reaches
//! every subscriber, then each gets Close 1001; clients that never answer cannot hold the
//! exit past --shutdown-timeout; a second signal exits at once; SIGHUP changes nothing.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Generous upper bound for the process to exit once nothing holds it.
const EXIT_DEADLINE: Duration = Duration::from_secs(10);

/// The streaming connections each worker holds, from `/metrics`.
fn per_worker(addr: std::net::SocketAddr, workers: usize) -> Vec<u64> {
    (0..workers)
        .map(|w| {
            metric(
                addr,
                &format!("switchboard_worker_connections{{worker=\"{w}\"}}"),
            ) as u64
        })
        .collect()
}

#[test]
fn messages_published_before_sigterm_reach_every_subscriber_before_1001() {
    const WORKERS: usize = 2;
    const MIN_PER_WORKER: u64 = 2;
    const MAX_SUBSCRIBERS: usize = 40;
    let mut server = Server::start(&[
        "--workers",
        &WORKERS.to_string(),
        "--shutdown-timeout",
        "30",
    ]);
    let addr = server.addr();

    // The kernel spreads connections over the workers' listeners by hash: connect until
    // both workers hold some subscribers.
    let mut subs = Vec::new();
    loop {
        let mut c = ws_connect(addr, "channel=drain");
        assert_eq!(c.read_json()["type"], "subscribed");
        subs.push(c);
        if subs.len() >= 4
            && per_worker(addr, WORKERS)
                .iter()
                .all(|&n| n >= MIN_PER_WORKER)
        {
            break;
        }
        assert!(
            subs.len() < MAX_SUBSCRIBERS,
            "{MAX_SUBSCRIBERS} subscribers all landed on too few workers: {:?}",
            per_worker(addr, WORKERS)
        );
    }

    // A burst, the last one large enough to be queued rather than copied, then the signal
    // right after the last publish is acknowledged.
    let mut publisher = HttpConn::connect(addr);
    let mut sent = Vec::new();
    for i in 0..10 {
        let data = serde_json::json!({ "n": i });
        sent.push((publisher.publish_json("drain", &data), data));
    }
    let big = serde_json::Value::String("b".repeat(200 * 1024));
    sent.push((publisher.publish_json("drain", &big), big));
    drop(publisher);
    send_signal(&server, libc::SIGTERM);

    for (i, c) in subs.iter_mut().enumerate() {
        for (id, data) in &sent {
            let m = c.read_json();
            assert_eq!(
                m["type"], "message",
                "subscriber {i}: expected message {id} before the close"
            );
            assert_eq!(m["id"].as_u64(), Some(*id), "subscriber {i}");
            assert!(
                m["data"] == *data,
                "subscriber {i}: message {id} data differs"
            );
        }
        c.expect_close(1001);
        c.send_close(1001, "");
        c.expect_eof();
    }
    let status = server
        .wait_exit(EXIT_DEADLINE)
        .expect("server still running after every subscriber answered the close");
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}

#[test]
fn clients_that_never_answer_the_close_cannot_hold_the_exit_past_the_shutdown_timeout() {
    let mut server = Server::start(&["--shutdown-timeout", "1", "--close-timeout", "60"]);
    let addr = server.addr();

    // Reads the Close but never answers it.
    let mut silent = ws_connect(addr, "channel=quiet");
    assert_eq!(silent.read_json()["type"], "subscribed");
    // Reads nothing at all, with the server's output to it backed up: its Close cannot even
    // be written.
    let mut hog = connect_small_buffers(addr, "/echo");
    let frame = client_frame(true, OP_BINARY, &vec![7u8; 64 * 1024]);
    let (sent, stalled) = push_until_stalled(
        &mut hog.stream,
        &frame,
        256 * 1024 * 1024,
        Duration::from_secs(1),
    );
    assert!(stalled, "the server never stopped reading ({sent} bytes)");
    // Answers properly.
    let mut polite = Client::connect(addr, "/echo");

    let signalled = Instant::now();
    send_signal(&server, libc::SIGTERM);
    polite.expect_close(1001);
    polite.send_close(1001, "");
    polite.expect_eof();
    silent.expect_close(1001);

    let status = server.wait_exit(EXIT_DEADLINE).unwrap_or_else(|| {
        panic!("server still running {EXIT_DEADLINE:?} after SIGTERM with --shutdown-timeout 1")
    });
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    assert!(signalled.elapsed() < EXIT_DEADLINE);
    silent.expect_eof();
}

#[test]
fn a_second_signal_during_the_drain_exits_at_once() {
    for (first, second) in [
        (libc::SIGTERM, libc::SIGTERM),
        (libc::SIGINT, libc::SIGTERM),
    ] {
        // Without the second signal this drain would last 60 s.
        let mut server = Server::start(&["--shutdown-timeout", "60"]);
        let mut silent = Client::connect(server.addr(), "/echo");
        send_signal(&server, first);
        // The drain has begun once the Close arrives; it is never answered.
        silent.expect_close(1001);
        send_signal(&server, second);
        let status = server.wait_exit(EXIT_DEADLINE).unwrap_or_else(|| {
            panic!("a second signal ({second}) did not end a 60 s drain within {EXIT_DEADLINE:?}")
        });
        // src/net/server.rs: `std::process::exit(1)`; any failure code will do.
        assert!(
            status.code().is_some_and(|c| c != 0),
            "after a second signal the exit status should be a failure code, got {status:?}"
        );
        silent.expect_eof();
    }
}

#[test]
fn sighup_is_ignored() {
    let mut server = Server::start(&["--shutdown-timeout", "30"]);
    let addr = server.addr();
    let mut c = Client::connect(addr, "/echo");
    let mut sub = ws_connect(addr, "channel=hup");
    assert_eq!(sub.read_json()["type"], "subscribed");

    for round in 1..=3 {
        send_signal(&server, libc::SIGHUP);
        // The only outward sign the signal was handled is its log line.
        poll_until(IO_TIMEOUT, "the SIGHUP log line", || {
            (server.logs().matches("SIGHUP ignored").count() >= round).then_some(())
        });
        assert!(server.is_running(), "the server exited on SIGHUP {round}");
        c.send_text("after SIGHUP");
        c.expect_text("after SIGHUP");
    }
    assert!(
        !server.logs().contains("shutting down"),
        "SIGHUP started a shutdown:\n{}",
        server.logs()
    );

    // Everything keeps working: new connections, the API, delivery.
    let mut fresh = Client::connect(addr, "/echo");
    fresh.send_binary(b"fresh");
    fresh.expect_binary(b"fresh");
    assert_eq!(http_get(addr, "/healthz").status, 200);
    let id = HttpConn::connect(addr).publish_json("hup", &serde_json::json!("still here"));
    let (got, m) = sub.read_message_id("hup");
    assert_eq!(got, id);
    assert_eq!(m["data"], "still here");

    // And SIGTERM still drains as usual.
    send_signal(&server, libc::SIGTERM);
    for client in [&mut c, &mut fresh, &mut sub] {
        client.expect_close(1001);
        client.send_close(1001, "");
        client.expect_eof();
    }
    let status = server
        .wait_exit(EXIT_DEADLINE)
        .expect("server still running");
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}
