//! Listening sockets: one per worker per address, all bound to the same port with
//! SO_REUSEPORT so the kernel spreads incoming connections over the workers — or, under
//! socket activation, the sockets systemd passed, shared by every worker.
//!
//! Why not one acceptor thread handing sockets over: that adds a cross-thread hop and a
//! wake-up per connection, and the acceptor becomes the bottleneck of a connect storm. With
//! SO_REUSEPORT each worker accepts on its own and the hot path shares nothing. The cost is
//! that the kernel hashes connections to workers without regard to their load.

use std::io;
use std::net::SocketAddr;

use mio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};

/// Accept queue length asked of the kernel (capped by net.core.somaxconn).
pub const LISTEN_BACKLOG: i32 = 4096;

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Binds every address once per worker. Returns, per worker, its listeners (in address
/// order), and the bound addresses (port 0 resolved to the port the kernel chose).
pub fn bind_all(
    addrs: &[SocketAddr],
    workers: usize,
) -> io::Result<(Vec<Vec<TcpListener>>, Vec<SocketAddr>)> {
    let mut per_worker: Vec<Vec<TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
    let mut bound = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        let first = bind_one(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        let actual = first.local_addr()?;
        bound.push(actual);
        let mut listeners = vec![first];
        for _ in 1..workers {
            listeners.push(bind_one(actual).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot listen on {actual}: {e}"))
            })?);
        }
        for (w, l) in listeners.into_iter().enumerate() {
            if let Some(slot) = per_worker.get_mut(w) {
                slot.push(l);
            }
        }
    }
    Ok((per_worker, bound))
}

/// Listens on the sockets socket activation passed (`count` descriptors from `first`)
/// instead of binding: every worker gets its own descriptor of each (a `dup`, registered in
/// its own poll) on the one shared accept queue, which outlives this process, so a new
/// process accepts on it while this one drains.
pub fn inherited(
    first: i32,
    count: usize,
    workers: usize,
) -> io::Result<(Vec<Vec<TcpListener>>, Vec<SocketAddr>)> {
    let mut per_worker: Vec<Vec<TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
    let mut bound = Vec::with_capacity(count);
    for i in 0..count {
        let fd = first + i as i32;
        let std_listener = crate::net::sys::inherited_listener(fd)?;
        bound.push(std_listener.local_addr()?);
        for slot in per_worker.iter_mut() {
            slot.push(TcpListener::from_std(std_listener.try_clone()?));
        }
    }
    Ok((per_worker, bound))
}
