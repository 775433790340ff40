//! Talking to systemd without libsystemd: the `sd_notify(3)` datagram protocol (readiness,
//! status, stopping, watchdog) and the `sd_listen_fds(3)` environment check for socket
//! activation.
//!
//! The protocol is one `AF_UNIX` datagram per notification, sent to the socket named in
//! `$NOTIFY_SOCKET` (a path, or an abstract name written with a leading `@`), holding
//! newline-separated `KEY=VALUE` fields. systemd identifies the sender by the credentials the
//! kernel attaches, so nothing else is needed. Outside systemd the variable is absent and every
//! call is a no-op. Failures never stop the server: the first one is logged at debug, the rest
//! are silent.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::hub::engine::Health;
use crate::{debug, warn};

/// Longest a notification may block when systemd's receive queue is full: a stuck manager
/// must not hold up startup or shutdown for long. The notification is then dropped.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// The first descriptor passed by socket activation (`SD_LISTEN_FDS_START`); the others
/// follow it in order.
pub const LISTEN_FDS_START: i32 = 3;

/// Sends service notifications to systemd, or does nothing when not started by it.
///
/// Share it between threads by reference or `Arc`: sending takes `&self`.
#[derive(Debug)]
pub struct Notifier {
    target: Option<Target>,
    watchdog: Option<Duration>,
    /// Whether a failed send was already logged.
    failed: AtomicBool,
}

#[derive(Debug)]
struct Target {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier {
            target: None,
            watchdog: None,
            failed: AtomicBool::new(false),
        }
    }

    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`. Without
    /// `$NOTIFY_SOCKET` the notifier is disabled.
    pub fn from_env() -> Notifier {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier::disabled();
        };
        let watchdog = parse_watchdog(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        Notifier::new(&path, watchdog)
    }

    /// A notifier for the socket address `notify_socket` (the `$NOTIFY_SOCKET` syntax) that
    /// reports `watchdog` as its watchdog interval. An address it cannot use is logged and
    /// gives a disabled notifier.
    pub fn new(notify_socket: &OsStr, watchdog: Option<Duration>) -> Notifier {
        let target = match parse_address(notify_socket).and_then(|addr| {
            let socket = UnixDatagram::unbound()?;
            socket.set_write_timeout(Some(SEND_TIMEOUT))?;
            Ok(Target { socket, addr })
        }) {
            Ok(t) => Some(t),
            Err(e) => {
                warn!("NOTIFY_SOCKET={notify_socket:?} is unusable ({e}); not notifying systemd");
                None
            }
        };
        Notifier {
            watchdog: target.as_ref().and(watchdog),
            target,
            failed: AtomicBool::new(false),
        }
    }

    /// Whether notifications go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// `READY=1`: startup finished, the listeners accept connections. systemd holds back
    /// units ordered after this one until it arrives (`Type=notify`).
    pub fn ready(&self) {
        self.send(&[("READY", "1")]);
    }

    /// `STOPPING=1`: graceful shutdown has begun.
    pub fn stopping(&self) {
        self.send(&[("STOPPING", "1")]);
    }

    /// `STATUS=text`: one line shown by `systemctl status` (newlines become spaces).
    pub fn status(&self, text: &str) {
        self.send(&[("STATUS", text)]);
    }

    /// `WATCHDOG=1`: keep-alive for `WatchdogSec=`; send every [`Self::watchdog_interval`].
    pub fn watchdog(&self) {
        self.send(&[("WATCHDOG", "1")]);
    }

    /// How often to call [`Self::watchdog`]: half of `$WATCHDOG_USEC`, as `sd_watchdog_enabled(3)`
    /// recommends. `None` when the watchdog is off, meant for another process
    /// (`$WATCHDOG_PID`), or there is no notify socket.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends `fields` as one datagram (so, for example, `READY=1` and a first `STATUS=` arrive
    /// together). Errors are dropped; the first is logged at debug.
    pub fn send(&self, fields: &[(&str, &str)]) {
        let Some(t) = &self.target else {
            return;
        };
        if let Err(e) = t.socket.send_to_addr(&encode(fields), &t.addr) {
            if !self.failed.swap(true, Ordering::Relaxed) {
                debug!("systemd notification failed ({e}); further failures are not logged");
            }
        }
    }
}

/// The `STATUS=` text for the connection count: `1234 connections (max 19928)`.
pub fn status_line(open: usize, max: usize, draining: bool, engine: &Health) -> String {
    match (draining, engine) {
        (true, _) => format!("draining: {open} connections left"),
        (false, Err(why)) => format!("{why}; {open} connections (max {max})"),
        (false, Ok(())) => format!("{open} connections (max {max})"),
    }
}

/// Parses a `$NOTIFY_SOCKET` value: an absolute path, or `@name` for a Linux abstract socket.
/// Other forms (relative paths, `vsock:`) are refused.
fn parse_address(s: &OsStr) -> io::Result<SocketAddr> {
    let bytes = s.as_bytes();
    match bytes.first() {
        Some(b'/') => SocketAddr::from_pathname(s),
        Some(b'@') => SocketAddr::from_abstract_name(bytes.get(1..).unwrap_or_default()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "neither an absolute path nor an @abstract name",
        )),
    }
}

/// One datagram: `KEY=VALUE` fields joined by newlines. A newline inside a value would start a
/// new field, so it becomes a space.
fn encode(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        out.extend_from_slice(key.as_bytes());
        out.push(b'=');
        out.extend(value.bytes().map(|b| if b == b'\n' { b' ' } else { b }));
    }
    out
}

/// Half of `WATCHDOG_USEC` (at least 1 µs), if the watchdog is on and meant for `our_pid`
/// (`WATCHDOG_PID` absent or equal). Unparsable or zero values turn it off.
fn parse_watchdog(usec: Option<&str>, pid: Option<&str>, our_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != our_pid {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros((usec / 2).max(1)))
}

/// How many descriptors socket activation passed us, starting at [`LISTEN_FDS_START`]:
/// `$LISTEN_FDS` when `$LISTEN_PID` is our pid, otherwise 0. Like `sd_listen_fds(3)` with
/// `unset_environment = false`; the caller sets close-on-exec and non-blocking on the fds.
pub fn listen_fds() -> usize {
    parse_listen_fds(
        std::env::var("LISTEN_FDS").ok().as_deref(),
        std::env::var("LISTEN_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// Unsets `$LISTEN_PID`, `$LISTEN_FDS` and `$LISTEN_FDNAMES` once the sockets are taken
/// (`sd_listen_fds(3)` with `unset_environment = true`). Called at start, before any thread
/// other than the main one exists, so no other thread reads the environment meanwhile.
pub fn forget_listen_fds() {
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
}

fn parse_listen_fds(fds: Option<&str>, pid: Option<&str>, our_pid: u32) -> usize {
    // No LISTEN_PID, or another process's: the variables were inherited, not meant for us.
    if pid.and_then(|p| p.trim().parse::<u32>().ok()) != Some(our_pid) {
        return 0;
    }
    let max = (i32::MAX - LISTEN_FDS_START) as usize;
    fds.and_then(|n| n.trim().parse::<usize>().ok())
        .filter(|&n| n <= max)
        .unwrap_or(0)
}

/// Tells whether every worker made progress since the last check, so the watchdog is fed only
/// while all event loops turn (a deadlocked worker then gets the service restarted).
#[derive(Debug, Default)]
pub struct Progress {
    last: Vec<u64>,
}

impl Progress {
    /// `counters` are monotonic per-worker values (such as loop turns), in worker order.
    /// True if each differs from its value at the previous call; the first call only records
    /// and returns true.
    pub fn advanced(&mut self, counters: impl IntoIterator<Item = u64>) -> bool {
        let now: Vec<u64> = counters.into_iter().collect();
        let first = self.last.len() != now.len();
        let moved = first || now.iter().zip(&self.last).all(|(n, l)| n != l);
        self.last = now;
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_fields_one_per_line() {
        assert_eq!(encode(&[("READY", "1")]), b"READY=1");
        assert_eq!(
            encode(&[("READY", "1"), ("STATUS", "3 connections (max 9)")]),
            b"READY=1\nSTATUS=3 connections (max 9)"
        );
        assert_eq!(encode(&[("STATUS", "a\nb\n")]), b"STATUS=a b ");
        assert_eq!(encode(&[]), b"");
    }

    #[test]
    fn status_line_text() {
        assert_eq!(
            status_line(1234, 19928, false, &Ok(())),
            "1234 connections (max 19928)"
        );
        assert_eq!(status_line(0, 1, false, &Ok(())), "0 connections (max 1)");
        assert_eq!(
            status_line(7, 9, true, &Ok(())),
            "draining: 7 connections left"
        );
        let down = Err("redis unavailable (127.0.0.1:6379: connection refused)".into());
        assert_eq!(
            status_line(3, 9, false, &down),
            "redis unavailable (127.0.0.1:6379: connection refused); 3 connections (max 9)"
        );
    }

    #[test]
    fn watchdog_interval_is_half_of_usec() {
        let s = |n| Some(Duration::from_micros(n));
        assert_eq!(parse_watchdog(Some("2000000"), None, 7), s(1_000_000));
        assert_eq!(
            parse_watchdog(Some("30000000"), Some("7"), 7),
            s(15_000_000)
        );
        assert_eq!(parse_watchdog(Some("1"), None, 7), s(1));
        assert_eq!(parse_watchdog(Some(" 10 "), None, 7), s(5));
    }

    #[test]
    fn watchdog_off() {
        assert_eq!(parse_watchdog(None, None, 7), None);
        assert_eq!(parse_watchdog(Some("0"), None, 7), None);
        assert_eq!(parse_watchdog(Some("-5"), None, 7), None);
        assert_eq!(parse_watchdog(Some("soon"), None, 7), None);
        assert_eq!(parse_watchdog(Some("2000000"), Some("8"), 7), None);
        assert_eq!(parse_watchdog(Some("2000000"), Some("x"), 7), None);
        assert_eq!(parse_watchdog(None, Some("7"), 7), None);
    }

    #[test]
    fn listen_fds_only_for_our_pid() {
        assert_eq!(parse_listen_fds(Some("2"), Some("42"), 42), 2);
        assert_eq!(parse_listen_fds(Some("0"), Some("42"), 42), 0);
        assert_eq!(parse_listen_fds(Some("2"), Some("43"), 42), 0);
        assert_eq!(parse_listen_fds(Some("2"), None, 42), 0);
        assert_eq!(parse_listen_fds(None, Some("42"), 42), 0);
        assert_eq!(parse_listen_fds(Some("two"), Some("42"), 42), 0);
        assert_eq!(parse_listen_fds(Some("-1"), Some("42"), 42), 0);
        assert_eq!(parse_listen_fds(Some("4294967295"), Some("42"), 42), 0);
    }

    #[test]
    fn addresses() {
        let a = parse_address(OsStr::new("/run/systemd/notify")).unwrap();
        assert_eq!(
            a.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        let a = parse_address(OsStr::new("@sd/notify")).unwrap();
        assert_eq!(a.as_abstract_name(), Some(&b"sd/notify"[..]));
        for bad in ["", "run/notify", "vsock:2:1234"] {
            assert!(parse_address(OsStr::new(bad)).is_err(), "{bad:?}");
        }
        let long = format!("/{}", "x".repeat(200));
        assert!(parse_address(OsStr::new(&long)).is_err());
    }

    #[test]
    fn disabled_notifier_is_quiet() {
        let n = Notifier::disabled();
        assert!(!n.is_enabled());
        assert_eq!(n.watchdog_interval(), None);
        n.ready();
        n.status("x");
        n.stopping();
        n.watchdog();
        let n = Notifier::new(OsStr::new("relative"), Some(Duration::from_secs(1)));
        assert!(!n.is_enabled());
        assert_eq!(n.watchdog_interval(), None, "no socket, no watchdog");
    }

    #[test]
    fn sends_datagrams_to_a_path() {
        let dir = std::env::temp_dir().join(format!("sb-notify-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier::new(path.as_os_str(), Some(Duration::from_secs(1)));
        assert!(n.is_enabled());
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(1)));
        let recv = || {
            let mut buf = [0u8; 256];
            let len = rx.recv(&mut buf).unwrap();
            buf[..len].to_vec()
        };
        n.ready();
        assert_eq!(recv(), b"READY=1");
        n.status(&status_line(2, 10, false, &Ok(())));
        assert_eq!(recv(), b"STATUS=2 connections (max 10)");
        n.send(&[("READY", "1"), ("STATUS", "up")]);
        assert_eq!(recv(), b"READY=1\nSTATUS=up");
        n.watchdog();
        assert_eq!(recv(), b"WATCHDOG=1");
        n.stopping();
        assert_eq!(recv(), b"STOPPING=1");
        drop(rx);
        // The receiver is gone: the send fails, quietly.
        n.ready();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sends_datagrams_to_an_abstract_name() {
        let name = format!("sb-notify-unit-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier::new(OsStr::new(&format!("@{name}")), None);
        n.ready();
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
    }

    #[test]
    fn progress_needs_every_worker_to_move() {
        let mut p = Progress::default();
        assert!(p.advanced([1, 1]), "first call records");
        assert!(p.advanced([2, 5]));
        assert!(!p.advanced([3, 5]), "worker 1 stalled");
        assert!(p.advanced([4, 6]));
        assert!(p.advanced([4, 6, 1]), "worker count changed: starts over");
        assert!(!p.advanced([4, 7, 2]));
    }
}
