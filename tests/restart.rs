//! Rolling restarts: `--drain-seconds` spreads the closes of a stopping node over a window
//! (and `/healthz` turns 503 at once), and socket activation lets a new process accept on the
//! socket the old one stops accepting on — a restart refuses no one.
//!
//! The socket-activation test does what systemd does, without systemd: it holds a listening
//! socket, passes it to the server as descriptor 3 with `LISTEN_FDS=1` and `LISTEN_PID` set
//! to the server's own pid (a shell `exec`s the server, keeping its pid `$$`).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// One short-lived client: connect, `GET /history/restart` (any process answers it 200; a
/// draining one too, for connections it accepted before the signal), read the whole
/// response. `Ok` with the status, `Err` with what went wrong (refused, reset, no answer).
fn request_once(addr: SocketAddr) -> Result<u16, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /history/restart HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&resp);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP answer: {text:?}"))
}

/// A server started on the inherited socket `fd` (made inheritable by the caller), the way
/// systemd starts a socket-activated service.
fn start_activated(fd: i32, args: &str) -> Server {
    // The socket must be descriptor 3 in the server (it may be already).
    let move_to_3 = if fd == 3 {
        String::new()
    } else {
        format!("exec 3<&{fd} {fd}<&-; ")
    };
    let script = format!(
        "{move_to_3}LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=switchboard exec {} {args}",
        env!("CARGO_BIN_EXE_switchboard")
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SWITCHBOARD_") {
            cmd.env_remove(name);
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Server::start_command(cmd)
}

/// Clears close-on-exec, so a child (the shell, then the server) inherits the descriptor.
fn inheritable(l: &TcpListener) -> i32 {
    socket2::SockRef::from(l)
        .set_cloexec(false)
        .expect("clear close-on-exec");
    l.as_raw_fd()
}

#[test]
fn a_socket_activated_restart_refuses_no_one() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a listening socket");
    let addr = listener.local_addr().expect("its address");
    let fd = inheritable(&listener);
    let old = start_activated(
        fd,
        "--drain-seconds 2 --shutdown-timeout 5 --log-level warn",
    );
    assert_eq!(
        old.addr(),
        addr,
        "the server serves on the inherited socket"
    );

    // Clients connect in a loop for the whole restart.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok) = (stop.clone(), ok.clone());
            thread::spawn(move || {
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match request_once(addr) {
                        Ok(200) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(other) => failures.push(format!("status {other}")),
                        Err(e) => failures.push(e),
                    }
                }
                failures
            })
        })
        .collect();
    let wait_for = |n: u64| {
        poll_until(IO_TIMEOUT * 2, "clients answered", || {
            (ok.load(Ordering::Relaxed) >= n).then_some(())
        })
    };
    wait_for(50);

    // The old process drains; the socket stays open (systemd — here, the test — holds it);
    // the new one starts on it while the old one is still closing its connections.
    let mut old = old;
    send_signal(&old, libc::SIGTERM);
    let at_signal = ok.load(Ordering::Relaxed);
    let new = start_activated(fd, "--log-level warn");
    wait_for(at_signal + 200);
    let exit = old
        .wait_exit(Duration::from_secs(10))
        .expect("the old process exits after its drain");
    assert!(exit.success(), "{exit:?}");
    wait_for(ok.load(Ordering::Relaxed) + 100);

    stop.store(true, Ordering::Relaxed);
    let failures: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("client thread"))
        .collect();
    assert!(
        failures.is_empty(),
        "{} refused or unanswered of {}: {:?}",
        failures.len(),
        ok.load(Ordering::Relaxed),
        &failures[..failures.len().min(5)]
    );
    assert!(
        metric(new.addr(), "switchboard_accepted_connections_total") >= 100.0,
        "the new process took over the socket"
    );
}

#[test]
fn a_drain_spreads_closes_over_its_window_and_health_turns_503_at_once() {
    const CLIENTS: usize = 40;
    const DRAIN_S: u64 = 3;
    let mut server = Server::start(&[
        "--drain-seconds",
        &DRAIN_S.to_string(),
        "--shutdown-timeout",
        "5",
    ]);
    let addr = server.addr();
    let mut health = HttpConn::connect(addr);
    assert_eq!(health.get("/healthz").status, 200);
    let mut clients: Vec<Client> = (0..CLIENTS)
        .map(|_| ws_connect(addr, "channel=d"))
        .collect();
    for c in &mut clients {
        assert_eq!(c.read_json()["type"], "subscribed");
    }
    let mut http = HttpConn::connect(addr);

    let start = Instant::now();
    send_signal(&server, libc::SIGTERM);
    // Health says so at once, on a connection that was already open.
    poll_until(IO_TIMEOUT, "/healthz to turn 503", || {
        (health.get("/healthz").status == 503).then_some(())
    });
    assert!(start.elapsed() < Duration::from_secs(1));
    // A message published during the drain still reaches everyone before their close.
    assert_eq!(http.publish_json("d", &serde_json::json!("bye")), 1);

    let waiters: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            thread::spawn(move || {
                let (id, _) = c.read_message_id("d");
                let f = c.expect_close(1001);
                drop(f);
                (id, start.elapsed())
            })
        })
        .collect();
    let mut closes: Vec<Duration> = waiters
        .into_iter()
        .map(|w| {
            let (id, at) = w.join().expect("client");
            assert_eq!(id, 1, "the published message came before the close");
            at
        })
        .collect();
    closes.sort();
    let last = closes[closes.len() - 1];
    assert!(
        last <= Duration::from_secs(DRAIN_S) + Duration::from_millis(500),
        "all closed within the window: {closes:?}"
    );
    // Spread, not all at once: each third of the window saw some of the closes.
    for third in 0..3u64 {
        let from = Duration::from_millis(third * DRAIN_S * 1000 / 3);
        let to = Duration::from_millis((third + 1) * DRAIN_S * 1000 / 3);
        let n = closes.iter().filter(|&&c| c >= from && c < to).count();
        assert!(n >= 3, "{n} closes in {from:?}..{to:?}: {closes:?}");
    }
    let exit = server
        .wait_exit(Duration::from_secs(10))
        .expect("exits after the drain");
    assert!(exit.success(), "{exit:?}");
}
