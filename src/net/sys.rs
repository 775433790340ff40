//! The operating-system calls std and mio do not wrap: the fd limit, signal masks, the
//! reserve descriptor used to refuse connections cleanly when descriptors run out, and the
//! listening sockets systemd passes by socket activation. The only module with `unsafe`.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

/// Takes a listening TCP socket inherited at descriptor `fd` (socket activation: systemd
/// opened it, so it outlives this process and a restarted one accepts on the same queue).
/// Refuses anything but a listening stream socket; makes it close-on-exec and non-blocking.
pub fn inherited_listener(fd: i32) -> io::Result<std::net::TcpListener> {
    // SAFETY: `fd` is one of the descriptors `$LISTEN_FDS` says systemd passed to this process
    // (checked against `$LISTEN_PID` by the caller), open and owned by nobody else here; the
    // socket takes ownership of it exactly once (each fd number is taken once).
    let socket = unsafe { <socket2::Socket as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    if socket.r#type()? != socket2::Type::STREAM || !socket.is_listener()? {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("inherited descriptor {fd} is not a listening TCP socket"),
        ));
    }
    socket.set_cloexec(true)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Raises the RLIMIT_NOFILE soft limit to the hard limit; returns the new soft limit.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit; setrlimit only reads it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    Ok(lim.rlim_cur)
}

/// The RLIMIT_NOFILE soft limit now (for metrics); `None` if unlimited or unreadable.
pub fn fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    (lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

/// Descriptors this process has open now (for metrics and the capacity log line).
pub fn open_fds() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count().saturating_sub(1))
}

/// The signals the server handles by waiting for them on a dedicated thread.
const HANDLED: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

fn handled_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before any other use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t owned by this frame.
    unsafe { libc::sigemptyset(&mut set) };
    for sig in HANDLED {
        // SAFETY: as above; `sig` is a valid signal number.
        unsafe { libc::sigaddset(&mut set, sig) };
    }
    set
}

/// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread, and so in every thread it spawns
/// afterwards; they are then only delivered to [`wait_signal`]. Call before spawning threads.
pub fn block_signals() -> io::Result<()> {
    let set = handled_set();
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// A signal the server acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Terminate,
    Interrupt,
    Hangup,
}

/// Waits for the next handled signal (they must be blocked, see [`block_signals`]).
pub fn wait_signal() -> io::Result<Signal> {
    let set = handled_set();
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` is initialised and `sig` is a valid place for the result.
        let rc = unsafe { libc::sigwait(&set, &mut sig) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        match sig {
            libc::SIGTERM => return Ok(Signal::Terminate),
            libc::SIGINT => return Ok(Signal::Interrupt),
            libc::SIGHUP => return Ok(Signal::Hangup),
            _ => continue,
        }
    }
}

/// Whether an accept error means the process or system ran out of descriptors or memory,
/// so retrying at once would spin.
pub fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// One descriptor held back so that, when `accept` fails with EMFILE, the server can still
/// take the waiting connection off the queue and answer it (503) instead of leaving it to
/// time out or spinning on the level of a full queue.
#[derive(Debug)]
pub struct ReserveFd(Option<File>);

impl ReserveFd {
    pub fn new() -> Self {
        ReserveFd(File::open("/dev/null").ok())
    }

    pub fn is_held(&self) -> bool {
        self.0.is_some()
    }

    /// Frees the descriptor so the next `accept` can succeed.
    pub fn release(&mut self) {
        self.0 = None;
    }

    /// Takes a descriptor back; fails quietly while none is free.
    pub fn restore(&mut self) {
        if self.0.is_none() {
            self.0 = File::open("/dev/null").ok();
        }
    }
}

impl Default for ReserveFd {
    fn default() -> Self {
        Self::new()
    }
}
