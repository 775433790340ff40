//! The load generator's only unsafe code: three libc calls that neither std nor socket2 wrap.
//!
//! Kept in one small module so the crate-wide `unsafe_code = "deny"` stays in force everywhere
//! else (the same split as the server's own `sys` module in the design brief).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsRawFd;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the soft limit now in force.
///
/// Every connection is a descriptor; the default soft limit (often 1024) would cap a run long
/// before the machine does.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into `lim`, which is a valid, exclusively borrowed
    // local for the whole call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit only reads the fully initialised `lim` during the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// Sets `IP_BIND_ADDRESS_NO_PORT` so that `bind(src_ip:0)` defers the choice of the source port
/// to `connect`, where the kernel can reuse a port for every distinct destination. Without it,
/// each bind reserves a port for the address alone and ~28k binds exhaust it whatever the
/// targets are. socket2 0.6 has no setter for this option.
pub fn set_bind_address_no_port(sock: &impl AsRawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>())
        .map_err(|_| io::Error::other("socklen_t overflow"))?;
    // SAFETY: the descriptor is open for the duration of the borrow of `sock`; `optval` points
    // at `one`, a live c_int, and `optlen` is exactly its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            std::ptr::from_ref(&one).cast(),
            len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Microseconds on `CLOCK_MONOTONIC`.
///
/// Unlike `std::time::Instant`, the raw value can be written into a payload or a child's report:
/// the clock is the same for every process on the machine, so a subscriber in one process can
/// time a message published by another.
pub fn monotonic_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one `timespec` into the exclusively borrowed local `ts`;
    // CLOCK_MONOTONIC is always supported on Linux, so it cannot fail with valid arguments.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}
