//! Why a connection failed or ended, in the buckets the report counts.

use std::io;

/// One failure cause; `key()` is its name in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// ECONNREFUSED: nothing listening, or the accept queue overflowed.
    Refused,
    /// Connect plus handshake took longer than `--connect-timeout`.
    Timeout,
    /// The server answered the upgrade with an HTTP status other than 101 (503 = at capacity).
    Http(u16),
    /// ECONNRESET, EPIPE or ECONNABORTED.
    Reset,
    /// EMFILE or ENFILE: this process (or the system) ran out of descriptors.
    Emfile,
    /// EADDRNOTAVAIL or EADDRINUSE: no free source port for this address pair.
    NoPort,
    /// ENOBUFS or ENOMEM from the kernel.
    NoMemory,
    /// A 101 without the right headers, or a response that is not HTTP.
    BadHandshake,
    /// The peer closed the TCP connection without a Close frame.
    Eof,
    /// The server sent a Close frame with this code (1005 when it carried none).
    ClosedByServer(u16),
    /// The server broke RFC 6455 framing.
    Protocol,
    /// Any other OS error, by errno.
    Os(i32),
}

impl Cause {
    /// Classifies an I/O error from socket(), bind(), connect(), read() or write().
    pub fn from_io(err: &io::Error) -> Cause {
        match err.raw_os_error() {
            Some(libc::ECONNREFUSED) => Cause::Refused,
            Some(libc::ECONNRESET | libc::EPIPE | libc::ECONNABORTED) => Cause::Reset,
            Some(libc::EMFILE | libc::ENFILE) => Cause::Emfile,
            Some(libc::EADDRNOTAVAIL | libc::EADDRINUSE) => Cause::NoPort,
            Some(libc::ENOBUFS | libc::ENOMEM) => Cause::NoMemory,
            Some(libc::ETIMEDOUT) => Cause::Timeout,
            Some(errno) => Cause::Os(errno),
            None => Cause::Os(0),
        }
    }

    /// The report's name for this cause.
    pub fn key(&self) -> String {
        match self {
            Cause::Refused => "refused".into(),
            Cause::Timeout => "timeout".into(),
            Cause::Http(status) => format!("http_{status}"),
            Cause::Reset => "reset".into(),
            Cause::Emfile => "emfile".into(),
            Cause::NoPort => "no_source_port".into(),
            Cause::NoMemory => "no_kernel_memory".into(),
            Cause::BadHandshake => "bad_handshake".into(),
            Cause::Eof => "eof".into(),
            Cause::ClosedByServer(code) => format!("server_close_{code}"),
            Cause::Protocol => "protocol_error".into(),
            Cause::Os(errno) => format!("errno_{errno}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_buckets() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert_eq!(Cause::from_io(&e(libc::ECONNREFUSED)), Cause::Refused);
        assert_eq!(Cause::from_io(&e(libc::EPIPE)), Cause::Reset);
        assert_eq!(Cause::from_io(&e(libc::ENFILE)).key(), "emfile");
        assert_eq!(Cause::Http(503).key(), "http_503");
    }
}
