//! Baseline: the tokio-tungstenite echo server as its own example writes it (split, filter
//! data messages, `forward` the stream into the sink, which batches writes until the reader
//! would block), on a current-thread runtime. Any path is accepted.
//!
//! `peer-tokio-tungstenite --listen 127.0.0.1:0 [--read-buffer-size BYTES]` prints
//! `listening on ADDR`.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{future, StreamExt, TryStreamExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Same limits as switchboard's defaults (`--max-message-bytes`).
const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// tungstenite's read buffer. Its default (128 KiB) is zeroed on every read (`resize` before
/// `read`) and touched by every connection, which made this baseline spend two thirds of its
/// time in memset (echo, 20 B messages) and hold 135 KB per idle connection; tungstenite's docs advise "a smaller
/// buffer, e.g. 4 KiB" for many connections. `--read-buffer-size` overrides it.
const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Same accept queue as switchboard asks for (capped by net.core.somaxconn).
const LISTEN_BACKLOG: u32 = 4096;

fn main() {
    let (listen, read_buffer) = parse_args();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => fail(&e),
    };
    if let Err(e) = rt.block_on(serve(listen, read_buffer)) {
        fail(&e);
    }
}

fn fail(e: &io::Error) -> ! {
    eprintln!("peer-tokio-tungstenite: {e}");
    std::process::exit(1);
}

fn parse_args() -> (SocketAddr, usize) {
    let mut listen: SocketAddr = ([127, 0, 0, 1], 8080).into();
    let mut read_buffer = READ_BUFFER_BYTES;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--listen" => listen = value.parse().unwrap_or_else(|_| usage()),
            "--read-buffer-size" => read_buffer = value.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    (listen, read_buffer)
}

fn usage() -> ! {
    eprintln!("usage: peer-tokio-tungstenite --listen IP:PORT [--read-buffer-size BYTES]");
    std::process::exit(2);
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn serve(addr: SocketAddr, read_buffer: usize) -> io::Result<()> {
    let listener = bind(addr)?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(echo(stream, read_buffer));
            }
            // Out of descriptors and the like: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn echo(stream: TcpStream, read_buffer: usize) {
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let (write, read) = ws.split();
    let _ = read
        .try_filter(|msg| future::ready(msg.is_text() || msg.is_binary()))
        .forward(write)
        .await;
}
