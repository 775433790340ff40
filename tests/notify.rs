//! systemd notifications (`sd_notify` protocol): with `NOTIFY_SOCKET` set, the server sends
//! `READY=1` once it listens, a `STATUS=` line, `STOPPING=1` when SIGTERM starts the graceful
//! shutdown, and `WATCHDOG=1` every half `WATCHDOG_USEC`. The test plays systemd: it binds the
//! datagram socket and reads what arrives.

mod common;

use std::io::ErrorKind;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;

/// Upper bound for a notification that should come at once (startup, shutdown).
const NOTIFY_DEADLINE: Duration = Duration::from_secs(10);

/// The receiving end of `NOTIFY_SOCKET`, with every datagram seen so far kept for messages.
struct Systemd {
    sock: UnixDatagram,
    /// `NOTIFY_SOCKET` value: a path, or `@name` for an abstract socket.
    address: String,
    dir: Option<PathBuf>,
    seen: Vec<String>,
}

impl Systemd {
    /// A socket at a fresh path in the temp directory.
    fn bind_path() -> Systemd {
        let dir = std::env::temp_dir().join(format!(
            "switchboard-notify-{}-{:x}",
            std::process::id(),
            random_u64()
        ));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
        Systemd::new(sock, path.to_string_lossy().into_owned(), Some(dir))
    }

    /// A socket in the abstract namespace (`@name`), as systemd uses for user services.
    fn bind_abstract() -> Systemd {
        let name = format!(
            "switchboard-notify-{}-{:x}",
            std::process::id(),
            random_u64()
        );
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract address");
        let sock = UnixDatagram::bind_addr(&addr).expect("bind the abstract notify socket");
        Systemd::new(sock, format!("@{name}"), None)
    }

    fn new(sock: UnixDatagram, address: String, dir: Option<PathBuf>) -> Systemd {
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("set read timeout");
        Systemd {
            sock,
            address,
            dir,
            seen: Vec::new(),
        }
    }

    /// Reads datagrams until one has a field (a line) matching `want`, or `timeout` passes.
    /// Returns the matching field.
    fn wait_for(&mut self, want: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 4096];
        while Instant::now() < deadline {
            match self.sock.recv(&mut buf) {
                Ok(n) => {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let hit = msg.lines().find(|f| want(f)).map(str::to_owned);
                    self.seen.push(msg);
                    if hit.is_some() {
                        return hit;
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("reading the notify socket: {e}"),
            }
        }
        None
    }

    /// Like [`Self::wait_for`] for an exact field; panics with everything seen if it does not come.
    fn expect(&mut self, field: &str, timeout: Duration, server: &Server) {
        if self.wait_for(|f| f == field, timeout).is_none() {
            panic!(
                "no {field:?} within {timeout:?}; datagrams so far: {:?}; server stderr:\n{}",
                self.seen,
                server.logs()
            );
        }
    }

    /// The first field starting with `prefix`, among the datagrams seen so far or, failing
    /// that, those arriving within `timeout`.
    fn field_starting(&mut self, prefix: &str, timeout: Duration) -> Option<String> {
        let seen = self.seen.iter().flat_map(|m| m.lines());
        if let Some(f) = seen.clone().find(|f| f.starts_with(prefix)) {
            return Some(f.to_owned());
        }
        self.wait_for(|f| f.starts_with(prefix), timeout)
    }

    /// Datagrams whose fields include `field`, counted over everything seen so far.
    fn count(&self, field: &str) -> usize {
        self.seen
            .iter()
            .filter(|m| m.lines().any(|f| f == field))
            .count()
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[test]
fn ready_and_status_after_listening_then_stopping_on_sigterm() {
    let mut systemd = Systemd::bind_path();
    let mut server = Server::start_with_env(
        &["--max-connections", "500", "--shutdown-timeout", "5"],
        &[("NOTIFY_SOCKET", systemd.address.as_str())],
    );
    systemd.expect("READY=1", NOTIFY_DEADLINE, &server);
    // The server is really up by now: READY=1 must not come before the listeners accept.
    let mut client = Client::connect(server.addr(), "/echo");
    client.send_text("up");
    client.expect_text("up");
    drop(client);

    let status = systemd
        .field_starting("STATUS=", NOTIFY_DEADLINE)
        .unwrap_or_else(|| {
            panic!(
                "no STATUS= line within {NOTIFY_DEADLINE:?}; datagrams: {:?}; stderr:\n{}",
                systemd.seen,
                server.logs()
            )
        });
    assert!(
        status.contains("connections (max 500)"),
        "STATUS should report the connection count against --max-connections: {status:?}"
    );
    assert_eq!(
        systemd.count("STOPPING=1"),
        0,
        "STOPPING=1 before any signal"
    );

    send_signal(&server, libc::SIGTERM);
    systemd.expect("STOPPING=1", NOTIFY_DEADLINE, &server);
    let exit = server
        .wait_exit(NOTIFY_DEADLINE)
        .expect("server still running after SIGTERM with no connections");
    assert_eq!(exit.code(), Some(0), "exit status {exit:?}");
    assert_eq!(
        systemd.count("READY=1"),
        1,
        "READY=1 sent more than once: {:?}",
        systemd.seen
    );
}

#[test]
fn watchdog_is_fed_every_half_interval() {
    let mut systemd = Systemd::bind_path();
    let server = Server::start_with_env(
        &[],
        &[
            ("NOTIFY_SOCKET", systemd.address.as_str()),
            ("WATCHDOG_USEC", "2000000"),
        ],
    );
    systemd.expect("READY=1", NOTIFY_DEADLINE, &server);
    // 2 s watchdog → a ping every 1 s; two within 4 s leaves room for a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(4);
    while systemd.count("WATCHDOG=1") < 2 && Instant::now() < deadline {
        systemd.wait_for(
            |f| f == "WATCHDOG=1",
            deadline.saturating_duration_since(Instant::now()),
        );
    }
    assert!(
        systemd.count("WATCHDOG=1") >= 2,
        "want WATCHDOG=1 at least twice within 4 s of READY=1 with WATCHDOG_USEC=2000000; \
         datagrams: {:?}; stderr:\n{}",
        systemd.seen,
        server.logs()
    );
}

#[test]
fn no_watchdog_when_it_belongs_to_another_pid() {
    let mut systemd = Systemd::bind_path();
    // WATCHDOG_PID names another process (pid 1): the variables were inherited, not ours.
    let server = Server::start_with_env(
        &[],
        &[
            ("NOTIFY_SOCKET", systemd.address.as_str()),
            ("WATCHDOG_USEC", "1000000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    systemd.expect("READY=1", NOTIFY_DEADLINE, &server);
    let ping = systemd.wait_for(|f| f == "WATCHDOG=1", Duration::from_millis(2500));
    assert!(
        ping.is_none(),
        "WATCHDOG=1 sent although WATCHDOG_PID is not the server's pid; datagrams: {:?}",
        systemd.seen
    );
}

#[test]
fn abstract_notify_socket() {
    let mut systemd = Systemd::bind_abstract();
    let server = Server::start_with_env(&[], &[("NOTIFY_SOCKET", systemd.address.as_str())]);
    systemd.expect("READY=1", NOTIFY_DEADLINE, &server);
}

// ---------------------------------------------------------------------------------------------
// The shipped unit and environment file (dist/)
// ---------------------------------------------------------------------------------------------

fn dist_file(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dist")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// `dist/switchboard.env` names exactly the variables `--help` lists, so a new flag cannot
/// ship undocumented there.
#[test]
fn env_file_lists_every_flag() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("--help")
        .output()
        .expect("run switchboard --help");
    let help = String::from_utf8(out.stdout).expect("help is UTF-8");
    let vars: Vec<&str> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|s| s.split(']').next())
        .collect();
    assert!(vars.len() > 10, "no [env: ..] in --help:\n{help}");
    let env_file = dist_file("switchboard.env");
    let named: Vec<&str> = env_file
        .lines()
        .filter_map(|l| l.trim_start_matches('#').split_once('='))
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("SWITCHBOARD_"))
        .collect();
    for v in &vars {
        assert!(
            named.contains(v),
            "{v} is missing from dist/switchboard.env"
        );
    }
    for n in &named {
        assert!(
            vars.contains(n),
            "dist/switchboard.env names {n}, which --help does not list"
        );
    }
}

/// The unit is a notify service with a watchdog, and gives the graceful shutdown more time
/// than its default before systemd sends SIGKILL.
#[test]
fn unit_matches_the_server() {
    let unit = dist_file("switchboard.service");
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key}= in dist/switchboard.service"))
            .trim()
            .to_owned()
    };
    assert_eq!(value("Type"), "notify");
    assert_eq!(value("ExecStart"), "/usr/local/bin/switchboard");
    assert_eq!(
        value("EnvironmentFile"),
        "-/etc/switchboard/switchboard.env"
    );
    assert_eq!(value("KillSignal"), "SIGTERM");
    let stop: u64 = value("TimeoutStopSec")
        .parse()
        .expect("TimeoutStopSec in seconds");
    assert!(
        stop > switchboard::config::DEFAULT_SHUTDOWN_TIMEOUT_S,
        "TimeoutStopSec={stop} must exceed the default --shutdown-timeout"
    );
    let watchdog: u64 = value("WatchdogSec")
        .parse()
        .expect("WatchdogSec in seconds");
    assert!(watchdog > 0);
    assert!(
        value("RestrictAddressFamilies").contains("AF_UNIX"),
        "the notify socket is AF_UNIX"
    );
}

/// A drain says so: STOPPING=1 with a `draining` status at the signal, and the status stays
/// `draining` (with what is left) until the last connection is closed.
#[test]
fn the_status_says_draining_while_connections_close() {
    let mut systemd = Systemd::bind_path();
    let mut server = Server::start_with_env(
        &["--drain-seconds", "2", "--shutdown-timeout", "5"],
        &[("NOTIFY_SOCKET", systemd.address.as_str())],
    );
    systemd.expect("READY=1", NOTIFY_DEADLINE, &server);
    let mut client = Client::connect(server.addr(), "/echo");
    client.send_text("up");
    client.expect_text("up");
    send_signal(&server, libc::SIGTERM);
    systemd.expect("STOPPING=1", NOTIFY_DEADLINE, &server);
    let status = systemd
        .field_starting("STATUS=draining", NOTIFY_DEADLINE)
        .unwrap_or_else(|| panic!("no draining status; datagrams: {:?}", systemd.seen));
    assert!(status.contains("over 2s"), "{status}");
    client.expect_close(1001);
    let exit = server
        .wait_exit(NOTIFY_DEADLINE)
        .expect("exits after the drain");
    assert_eq!(exit.code(), Some(0), "{exit:?}");
}
