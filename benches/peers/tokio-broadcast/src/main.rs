//! Baseline for the broadcast case: the usual tokio pub/sub relay. One task per connection,
//! one `tokio::sync::broadcast` channel per pub/sub channel; each subscriber task receives the
//! shared payload (`Utf8Bytes`, reference-counted) and sends it on its own WebSocket.
//!
//! It speaks only what `switchboard-bench broadcast --publish-via ws` uses:
//! - `GET /ws?channel=NAME&format=raw`: a subscriber; every message published on NAME
//!   arrives as a text frame holding the published `data` (a JSON string unwrapped, any other
//!   JSON as its text) — switchboard's `format=raw`. Other query parameters are ignored.
//! - on any connection, a text message `{"op":"publish","channel":NAME,"data":JSON}`
//!   publishes and is answered `{"type":"published","channel":NAME,"id":N}`.
//!
//! `peer-tokio-broadcast --listen 127.0.0.1:0 [--workers N] [--read-buffer-size BYTES]`
//! prints `listening on ADDR`; one worker is a current-thread runtime, more a multi-thread
//! runtime with N threads.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Same limit as switchboard's default (`--max-message-bytes`).
const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// tungstenite's read buffer. Its default (128 KiB) is zeroed on every read (`resize` before
/// `read`) and touched by every connection, which made this baseline spend two thirds of its
/// time in memset (echo, 20 B messages) and hold 135 KB per idle connection; tungstenite's docs advise "a smaller
/// buffer, e.g. 4 KiB" for many connections. `--read-buffer-size` overrides it.
const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Same accept queue as switchboard asks for (capped by net.core.somaxconn).
const LISTEN_BACKLOG: u32 = 4096;
/// Messages a subscriber may fall behind before it skips (`RecvError::Lagged`).
const CHANNEL_CAPACITY: usize = 1024;

/// Per channel: the sender and the next id.
type Channels = Arc<Mutex<HashMap<String, (broadcast::Sender<Utf8Bytes>, u64)>>>;

#[derive(Deserialize)]
struct Op<'a> {
    op: &'a str,
    channel: String,
    #[serde(borrow)]
    data: &'a RawValue,
}

fn main() {
    let (listen, workers, read_buffer) = parse_args();
    let built = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    };
    let rt = match built {
        Ok(rt) => rt,
        Err(e) => fail(&e),
    };
    if let Err(e) = rt.block_on(serve(listen, read_buffer)) {
        fail(&e);
    }
}

fn fail(e: &io::Error) -> ! {
    eprintln!("peer-tokio-broadcast: {e}");
    std::process::exit(1);
}

fn parse_args() -> (SocketAddr, usize, usize) {
    let mut listen: SocketAddr = ([127, 0, 0, 1], 8080).into();
    let mut workers = 1;
    let mut read_buffer = READ_BUFFER_BYTES;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--listen" => listen = value.parse().unwrap_or_else(|_| usage()),
            "--workers" => workers = value.parse().unwrap_or_else(|_| usage()),
            "--read-buffer-size" => read_buffer = value.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    (listen, workers, read_buffer)
}

fn usage() -> ! {
    eprintln!(
        "usage: peer-tokio-broadcast --listen IP:PORT [--workers N] [--read-buffer-size BYTES]"
    );
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
    let channels = Channels::default();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, channels.clone(), read_buffer));
            }
            // Out of descriptors and the like: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// The `channel` query parameter of a request target, if any.
fn channel_of(target: &str) -> Option<String> {
    let (_, query) = target.split_once('?')?;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("channel="))
        .filter(|c| !c.is_empty())
        .map(str::to_string)
}

/// What a `format=raw` subscriber receives for `data`.
fn raw_payload(data: &RawValue) -> String {
    let json = data.get();
    if json.starts_with('"') {
        if let Ok(s) = serde_json::from_str::<String>(json) {
            return s;
        }
    }
    json.to_string()
}

fn publish(channels: &Channels, op: &Op<'_>) -> u64 {
    let payload = Utf8Bytes::from(raw_payload(op.data));
    let mut map = channels.lock().unwrap_or_else(|p| p.into_inner());
    let (tx, next_id) = map
        .entry(op.channel.clone())
        .or_insert_with(|| (broadcast::channel(CHANNEL_CAPACITY).0, 1));
    let id = *next_id;
    *next_id += 1;
    // No subscriber is not an error for a publisher.
    let _ = tx.send(payload);
    id
}

async fn connection(stream: TcpStream, channels: Channels, read_buffer: usize) {
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let mut target = String::new();
    // The error type is tungstenite's own (an HTTP response); this callback never fails.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| {
        target = req.uri().to_string();
        Ok(resp)
    };
    let Ok(mut ws) =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await
    else {
        return;
    };
    let mut rx = channel_of(&target).map(|name| {
        let mut map = channels.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(name)
            .or_insert_with(|| (broadcast::channel(CHANNEL_CAPACITY).0, 1))
            .0
            .subscribe()
    });
    loop {
        tokio::select! {
            delivery = recv(&mut rx) => match delivery {
                Ok(payload) => {
                    if ws.send(Message::Text(payload)).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let reply = match serde_json::from_str::<Op<'_>>(text.as_str()) {
                        Ok(op) if op.op == "publish" => {
                            let id = publish(&channels, &op);
                            format!(
                                "{{\"type\":\"published\",\"channel\":{},\"id\":{id}}}",
                                serde_json::Value::from(op.channel.as_str())
                            )
                        }
                        _ => "{\"type\":\"error\",\"error\":\"bad_request\"}".to_string(),
                    };
                    if ws.send(Message::text(reply)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// The next delivery, or never for a connection that subscribed to nothing.
async fn recv(rx: &mut Option<broadcast::Receiver<Utf8Bytes>>) -> Result<Utf8Bytes, RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
