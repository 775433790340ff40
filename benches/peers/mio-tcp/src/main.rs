//! The floor any WebSocket server pays: one thread, mio (edge-triggered), one read buffer for
//! every connection, each read written straight back, whatever the socket does not take queued
//! until the writable edge.
//!
//! The load generator speaks WebSocket, so the floor answers the upgrade (a fixed 101 with the
//! right `Sec-WebSocket-Accept`) and from then on echoes the bytes unchanged. The client's
//! masked frames come back masked — not valid server frames, so the bench is run with
//! `--accept-masked` against this server only. The point: the same read/write syscalls as an
//! echoing WebSocket server, with no frame parsing, unmasking or encoding.
//!
//! `peer-mio-tcp --listen 127.0.0.1:0` prints `listening on ADDR`.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use sha1::{Digest, Sha1};
use slab::Slab;
use socket2::{Domain, Protocol, Socket, Type};

const LISTENER: Token = Token(usize::MAX);
/// The one read buffer, shared by every connection (as in switchboard and uSockets).
const READ_BUF_BYTES: usize = 256 * 1024;
/// Same accept queue as switchboard asks for (capped by net.core.somaxconn).
const LISTEN_BACKLOG: i32 = 4096;
/// A request head larger than this is refused (connection closed).
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Stop reading a connection whose unsent echo passes this; resume once it drains.
const MAX_QUEUED_BYTES: usize = 1 << 20;
/// RFC 6455 §1.3.
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

struct Conn {
    stream: TcpStream,
    /// The request head so far; `None` once upgraded.
    head: Option<Vec<u8>>,
    /// Bytes the socket did not take yet.
    out: Vec<u8>,
    /// Reading stopped because `out` is full: resume after the writable edge drains it.
    paused: bool,
}

fn main() {
    let mut listen: SocketAddr = ([127, 0, 0, 1], 8080).into();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(v)) => match v.parse() {
                Ok(a) => listen = a,
                Err(_) => usage(&format!("--listen {v:?}: not IP:PORT")),
            },
            ("--workers", Some(v)) if v == "1" => {}
            _ => usage(&format!("unexpected argument {arg:?}")),
        }
    }
    if let Err(e) = run(listen) {
        eprintln!("peer-mio-tcp: {e}");
        std::process::exit(1);
    }
}

fn usage(msg: &str) -> ! {
    eprintln!("peer-mio-tcp: {msg}\nusage: peer-mio-tcp --listen IP:PORT");
    std::process::exit(2);
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

fn run(addr: SocketAddr) -> io::Result<()> {
    let mut listener = bind(addr)?;
    println!("listening on {}", listener.local_addr()?);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<Conn> = Slab::new();
    let mut buf = vec![0u8; READ_BUF_BYTES];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                accept_all(&listener, &poll, &mut conns);
                continue;
            }
            let key = event.token().0;
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            let mut done = event.is_error();
            if !done && event.is_writable() && !conn.out.is_empty() {
                done = flush(conn).is_err();
            }
            if !done && (event.is_readable() || (conn.paused && conn.out.is_empty())) {
                conn.paused = false;
                done = on_readable(conn, &mut buf).is_err();
            }
            if done {
                let mut conn = conns.remove(key);
                let _ = poll.registry().deregister(&mut conn.stream);
            }
        }
    }
}

fn accept_all(listener: &TcpListener, poll: &Poll, conns: &mut Slab<Conn>) {
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let _ = stream.set_nodelay(true);
                let entry = conns.vacant_entry();
                let token = Token(entry.key());
                if poll
                    .registry()
                    .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                    .is_ok()
                {
                    entry.insert(Conn {
                        stream,
                        head: Some(Vec::new()),
                        out: Vec::new(),
                        paused: false,
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
            // EMFILE and friends: drop this round; the next connection retries the queue.
            Err(_) => return,
        }
    }
}

/// Reads until WouldBlock (edge-triggered), echoing every read. `Err` means close.
fn on_readable(conn: &mut Conn, buf: &mut [u8]) -> Result<(), ()> {
    loop {
        if conn.out.len() >= MAX_QUEUED_BYTES {
            conn.paused = true;
            return Ok(());
        }
        let n = match conn.stream.read(buf) {
            Ok(0) => return Err(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(()),
        };
        let data = buf.get(..n).ok_or(())?;
        match conn.head.as_mut() {
            None => send(conn, data)?,
            Some(head) => {
                head.extend_from_slice(data);
                let Some(end) = find_head_end(head) else {
                    if head.len() > MAX_HEAD_BYTES {
                        return Err(());
                    }
                    continue;
                };
                let head = conn.head.take().unwrap_or_default();
                let (request, tail) = head.split_at(end);
                let mut reply = upgrade_reply(request).ok_or(())?;
                // Frames pipelined behind the request are echoed too.
                reply.extend_from_slice(tail);
                send(conn, &reply)?;
            }
        }
    }
}

/// Writes `data` now if nothing is queued, queuing what the socket does not take.
fn send(conn: &mut Conn, data: &[u8]) -> Result<(), ()> {
    if !conn.out.is_empty() {
        conn.out.extend_from_slice(data);
        return Ok(());
    }
    let mut pos = 0;
    while pos < data.len() {
        match conn.stream.write(data.get(pos..).unwrap_or_default()) {
            Ok(0) => return Err(()),
            Ok(n) => pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(()),
        }
    }
    conn.out
        .extend_from_slice(data.get(pos..).unwrap_or_default());
    Ok(())
}

/// Writes queued bytes until done or WouldBlock.
fn flush(conn: &mut Conn) -> Result<(), ()> {
    let mut pos = 0;
    while pos < conn.out.len() {
        match conn.stream.write(conn.out.get(pos..).unwrap_or_default()) {
            Ok(0) => return Err(()),
            Ok(n) => pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(()),
        }
    }
    conn.out.drain(..pos);
    if conn.out.is_empty() && conn.out.capacity() > 64 * 1024 {
        conn.out = Vec::new();
    }
    Ok(())
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The fixed 101 for a request carrying a `Sec-WebSocket-Key`; nothing else is checked.
fn upgrade_reply(head: &[u8]) -> Option<Vec<u8>> {
    const NAME: &[u8] = b"sec-websocket-key:";
    let key = head.split(|&b| b == b'\n').find_map(|line| {
        let name = line.get(..NAME.len())?;
        name.eq_ignore_ascii_case(NAME)
            .then(|| line.get(NAME.len()..))
            .flatten()
    })?;
    let key = key.trim_ascii();
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WS_GUID);
    let accept = BASE64.encode(sha.finalize());
    let mut reply = Vec::with_capacity(160);
    reply.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    reply.extend_from_slice(accept.as_bytes());
    reply.extend_from_slice(b"\r\n\r\n");
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_accept_key() {
        let head = b"GET / HTTP/1.1\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        let reply = upgrade_reply(head).unwrap_or_default();
        let text = String::from_utf8_lossy(&reply);
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    }
}
