//! Baseline: fastwebsockets' own `echo_server` example (hyper http1 connection with upgrades,
//! `upgrade::upgrade`, a `FragmentCollector` echoing text and binary frames, the WebSocket task
//! run `unconstrained`), on a current-thread runtime. Any path is accepted.
//!
//! `peer-fastwebsockets --listen 127.0.0.1:0` prints `listening on ADDR`.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use fastwebsockets::{upgrade, FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::net::{TcpListener, TcpSocket};

/// Same limit as switchboard's default (`--max-message-bytes`).
const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Same accept queue as switchboard asks for (capped by net.core.somaxconn).
const LISTEN_BACKLOG: u32 = 4096;

fn main() {
    let listen = parse_listen();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => fail(&e),
    };
    if let Err(e) = rt.block_on(serve(listen)) {
        fail(&e);
    }
}

fn fail(e: &io::Error) -> ! {
    eprintln!("peer-fastwebsockets: {e}");
    std::process::exit(1);
}

fn parse_listen() -> SocketAddr {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, addr] if flag == "--listen" => addr.parse().unwrap_or_else(|_| usage()),
        [] => ([127, 0, 0, 1], 8080).into(),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: peer-fastwebsockets --listen IP:PORT");
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

async fn serve(addr: SocketAddr) -> io::Result<()> {
    let listener = bind(addr)?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of descriptors and the like: back off instead of spinning.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = http1::Builder::new()
                .serve_connection(io, service_fn(server_upgrade))
                .with_upgrades()
                .await;
        });
    }
}

async fn server_upgrade(
    mut req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::spawn(async move {
        let _ = tokio::task::unconstrained(echo(fut)).await;
    });
    Ok(response)
}

async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    ws.set_max_message_size(MAX_MESSAGE_BYTES);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}
