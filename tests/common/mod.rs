//! Shared harness for the integration tests: start the real `switchboard` binary on an
//! ephemeral port, and talk to it with a tiny blocking WebSocket client built on
//! `std::net::TcpStream`. Every socket operation carries a timeout, so a hung server fails
//! the test instead of hanging it.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

pub mod redis;

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use sha1::{Digest, Sha1};

/// How long a socket read or write may block before the test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server may take to print its `listening on` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// The GUID of RFC 6455 §1.3, appended to the key before hashing.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

// ---------------------------------------------------------------------------------------------
// Server process
// ---------------------------------------------------------------------------------------------

/// A running `switchboard` process, killed on drop. Its stderr (the logs) is collected and
/// printed if the test is panicking, so a failure shows what the server said.
pub struct Server {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Server {
    /// Spawns the binary with `--listen 127.0.0.1:0` followed by `args`, and waits (at most
    /// [`START_TIMEOUT`]) for its `listening on ADDR` line.
    pub fn start(args: &[&str]) -> Server {
        Server::start_with_env(args, &[])
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's stderr so far.
    pub fn logs(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Waits for the process to exit, polling until `deadline` (there is no portable event
    /// to block on with a timeout). Returns `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait on the server") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("---- switchboard stderr ----\n{}", self.logs());
        }
    }
}

/// Reads stdout lines until the first `listening on ADDR`, sends the address (or the
/// offending line / EOF as an error), then keeps draining so the server never blocks on a
/// full pipe.
fn watch_stdout(stdout: ChildStdout, tx: mpsc::Sender<Result<SocketAddr, String>>) {
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    let mut sent = false;
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => {
                if !sent {
                    let _ = tx.send(Err("<stdout closed>".to_owned()));
                }
                return;
            }
            Ok(_) => {
                if sent {
                    continue;
                }
                if let Some(rest) = line.trim().strip_prefix("listening on ") {
                    let parsed = rest.trim().parse::<SocketAddr>().map_err(|_| line.clone());
                    let _ = tx.send(parsed);
                    sent = true;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------------------------

/// A xorshift generator seeded from the clock: mask keys and handshake keys only need to
/// vary, not be secure.
pub fn random_u64() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut x = STATE.load(Ordering::Relaxed);
    if x == 0 {
        x = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15)
            | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    x
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        out.extend_from_slice(&random_u64().to_le_bytes());
    }
    out.truncate(n);
    out
}

pub fn random_mask() -> [u8; 4] {
    let b = random_u64().to_le_bytes();
    [b[0], b[1], b[2], b[3]]
}

/// A fresh `Sec-WebSocket-Key`: base64 of 16 random bytes.
pub fn random_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(random_bytes(16))
}

/// `Sec-WebSocket-Accept` for `key`, computed independently of the server (RFC 6455 §4.2.2).
pub fn accept_for(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// A TCP connection to the server with read/write timeouts and `TCP_NODELAY` set (so tests
/// that split writes really send several segments).
pub fn tcp(addr: SocketAddr) -> TcpStream {
    let stream =
        TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect to the server over TCP");
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("set read timeout");
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("set write timeout");
    stream.set_nodelay(true).expect("set TCP_NODELAY");
    stream
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// A standard upgrade request for `path` with a fresh key and `extra` header lines
/// (each without the trailing CRLF). Returns the request and the key it carries.
pub fn upgrade_request(path: &str, extra: &[&str]) -> (String, String) {
    let key = random_key();
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for line in extra {
        req.push_str(line);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    (req, key)
}

// ---------------------------------------------------------------------------------------------
// HTTP responses
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the comma-separated header `name` contains `token` (case-insensitive).
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Reads one HTTP/1.1 response from `stream`: the head, then `Content-Length` bytes of body
/// (no body if the header is absent, as for a 101). Bytes read past the response stay in
/// `buf`, so frames pipelined after a 101 are not lost.
pub fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Response {
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        assert!(
            buf.len() < 64 * 1024,
            "response head longer than 64 KiB without CRLFCRLF"
        );
        let n = fill(stream, buf, "an HTTP response head");
        assert!(
            n > 0,
            "connection closed before a complete HTTP response head; got {:?}",
            String::from_utf8_lossy(buf)
        );
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).expect("response head is UTF-8");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    assert_eq!(version, "HTTP/1.1", "status line {status_line:?}");
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("bad header line {line:?}"));
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    buf.drain(..head_end);

    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if let Some(len) = resp.header("content-length") {
        let len: usize = len
            .parse()
            .unwrap_or_else(|_| panic!("bad Content-Length {len:?}"));
        while buf.len() < len {
            let n = fill(stream, buf, "an HTTP response body");
            assert!(
                n > 0,
                "connection closed after {} of {len} body bytes",
                buf.len()
            );
        }
        resp.body = buf.drain(..len).collect();
    }
    resp
}

/// One `read` appended to `buf`; panics on timeout or error, returns 0 at EOF.
fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, what: &str) -> usize {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return n;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => panic!("timed out after {IO_TIMEOUT:?} waiting for {what}"),
            Err(e) => panic!("read error waiting for {what}: {e}"),
        }
    }
}

/// Sends `request` on a fresh connection and reads the response.
pub fn http_exchange(addr: SocketAddr, request: &[u8]) -> (Response, TcpStream, Vec<u8>) {
    let mut stream = tcp(addr);
    stream.write_all(request).expect("write the HTTP request");
    let mut buf = Vec::new();
    let resp = read_response(&mut stream, &mut buf);
    (resp, stream, buf)
}

/// Asserts the shape every handshake error must have: `status`, a text/plain body whose
/// length matches `Content-Length`, `Connection: close`, and the server closing the socket.
pub fn assert_error_response(addr: SocketAddr, request: &[u8], status: u16) -> Response {
    let (resp, mut stream, rest) = http_exchange(addr, request);
    assert_eq!(
        resp.status,
        status,
        "request {:?} -> {:?}",
        String::from_utf8_lossy(request),
        resp
    );
    assert_error_shape(&resp);
    assert_closed(&mut stream, &rest);
    resp
}

pub fn assert_error_shape(resp: &Response) {
    assert!(
        resp.header("content-length").is_some(),
        "error response without Content-Length: {resp:?}"
    );
    assert!(
        !resp.body.is_empty(),
        "error response has an empty body: {resp:?}"
    );
    let ctype = resp.header("content-type").unwrap_or_default();
    assert!(
        ctype.to_ascii_lowercase().starts_with("text/plain"),
        "error response Content-Type {ctype:?}, want text/plain"
    );
    assert!(
        resp.header_has_token("connection", "close"),
        "error response without `Connection: close`: {resp:?}"
    );
    assert!(
        resp.header("upgrade").is_none() && resp.header("sec-websocket-accept").is_none(),
        "error response carries upgrade headers: {resp:?}"
    );
}

/// Asserts that nothing more arrives on `stream` (beyond `rest`, which must be empty) and
/// that the server closes it within [`IO_TIMEOUT`]. A reset counts as closed.
pub fn assert_closed(stream: &mut TcpStream, rest: &[u8]) {
    assert!(
        rest.is_empty(),
        "unexpected bytes after the response: {:?}",
        String::from_utf8_lossy(rest)
    );
    let mut chunk = [0u8; 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => panic!(
                "expected the server to close, got {n} more bytes: {:?}",
                String::from_utf8_lossy(&chunk[..n])
            ),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
            Err(e) if is_timeout(&e) => {
                panic!("server did not close the connection within {IO_TIMEOUT:?}")
            }
            Err(e) => panic!("read error waiting for close: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

/// A client frame: masked with `mask` (or unmasked with `None`), `rsv` in bits 4-6 of the
/// first byte (pass 0b100 for RSV1), length in the shortest encoding.
pub fn encode_frame(
    fin: bool,
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(if fin { 0x80 } else { 0 } | (rsv & 7) << 4 | (opcode & 0x0F));
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    push_len(&mut out, mask_bit, payload.len() as u64);
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// Appends the second header byte (with `mask_bit`) and the extended length, shortest form.
pub fn push_len(out: &mut Vec<u8>, mask_bit: u8, len: u64) {
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= 0xFFFF {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

/// A masked, RSV-clear client frame.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    encode_frame(fin, 0, opcode, Some(random_mask()), payload)
}

/// A close payload: big-endian code followed by the reason.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// A frame received from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
    /// How the length was encoded on the wire: 0 (7-bit), 2 (16-bit) or 8 (64-bit) extra bytes.
    pub len_bytes: u8,
    /// RSV1: a permessage-deflate compressed message (only on a connection that agreed it).
    pub rsv1: bool,
}

impl Frame {
    /// The close code of a Close frame (`None` for an empty close payload).
    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, OP_CLOSE, "not a close frame: {self:?}");
        match self.payload.len() {
            0 => None,
            1 => panic!("server sent a close payload of 1 byte"),
            _ => Some(u16::from_be_bytes([self.payload[0], self.payload[1]])),
        }
    }
}

/// A connected WebSocket client (handshake done).
pub struct Client {
    pub stream: TcpStream,
    /// Bytes received but not yet parsed.
    pub buf: Vec<u8>,
    /// The 101 response.
    pub response: Response,
    /// The 101 agreed permessage-deflate: RSV1 may be set on a message's first frame, and
    /// [`Client::read_message`] inflates such messages.
    pub deflate: bool,
}

/// Whether a 101 agreed permessage-deflate.
fn agreed_deflate(response: &Response) -> bool {
    response
        .header("sec-websocket-extensions")
        .is_some_and(|v| v.starts_with("permessage-deflate"))
}

/// Inflates a permessage-deflate message payload (RFC 7692 §7.2.2: the `00 00 ff ff` tail
/// appended), with flate2 directly rather than the server's own codec.
pub fn inflate_message(payload: &[u8]) -> Vec<u8> {
    let mut d = flate2::Decompress::new(false);
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
    let mut out = Vec::with_capacity(payload.len() * 8 + 1024);
    loop {
        let before = d.total_in();
        d.decompress_vec(
            &input[before as usize..],
            &mut out,
            flate2::FlushDecompress::Sync,
        )
        .expect("the server sent invalid DEFLATE data");
        if d.total_in() as usize == input.len() && out.len() < out.capacity() {
            return out;
        }
        out.reserve(out.capacity());
    }
}

impl Client {
    /// Connects to `path`, performs the handshake and checks the 101 and its accept key.
    pub fn connect(addr: SocketAddr, path: &str) -> Client {
        Client::connect_with(addr, path, &[])
    }

    /// Like [`Client::connect`] with extra request header lines (`"Name: value"`).
    pub fn connect_with(addr: SocketAddr, path: &str, extra: &[&str]) -> Client {
        let (req, key) = upgrade_request(path, extra);
        let mut stream = tcp(addr);
        stream
            .write_all(req.as_bytes())
            .expect("write the upgrade request");
        let mut buf = Vec::new();
        let response = read_response(&mut stream, &mut buf);
        assert_101(&response, &key);
        Client {
            stream,
            buf,
            deflate: agreed_deflate(&response),
            response,
        }
    }

    /// Wraps a stream whose handshake the caller already did.
    pub fn from_parts(stream: TcpStream, buf: Vec<u8>, response: Response) -> Client {
        Client {
            stream,
            buf,
            deflate: agreed_deflate(&response),
            response,
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the server");
    }

    /// Sends a masked frame with RSV bits clear.
    pub fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let frame = client_frame(fin, opcode, payload);
        self.send_raw(&frame);
    }

    pub fn send_text(&mut self, text: &str) {
        self.send_frame(true, OP_TEXT, text.as_bytes());
    }

    pub fn send_binary(&mut self, data: &[u8]) {
        self.send_frame(true, OP_BINARY, data);
    }

    pub fn send_close(&mut self, code: u16, reason: &str) {
        self.send_frame(true, OP_CLOSE, &close_payload(code, reason.as_bytes()));
    }

    /// Reads at least `n` buffered bytes; `Ok(false)` on EOF first, `Err` on timeout/error.
    fn fill_to(&mut self, n: usize) -> io::Result<bool> {
        let mut chunk = vec![0u8; 64 * 1024];
        while self.buf.len() < n {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(false),
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Reads one server frame, or `Ok(None)` if the server closed the TCP connection cleanly
    /// before a frame started. Asserts the server's rules: mask bit clear, RSV clear (RSV1
    /// allowed on data frames when permessage-deflate was agreed), the shortest length
    /// encoding, control frames unfragmented and at most 125 bytes.
    pub fn try_read_frame(&mut self) -> io::Result<Option<Frame>> {
        if !self.fill_to(2)? {
            assert!(
                self.buf.is_empty(),
                "connection closed inside a frame header: {:?}",
                self.buf
            );
            return Ok(None);
        }
        let b0 = self.buf[0];
        let b1 = self.buf[1];
        assert_eq!(
            b1 & 0x80,
            0,
            "server frame has the mask bit set (header {b0:#04x} {b1:#04x})"
        );
        let rsv = if self.deflate && b0 & 0x0F != 0 && b0 & 0x08 == 0 {
            0x30
        } else {
            0x70
        };
        assert_eq!(
            b0 & rsv,
            0,
            "server frame has RSV bits set (header {b0:#04x})"
        );
        let (len, len_bytes) = match b1 & 0x7F {
            126 => {
                if !self.fill_to(4)? {
                    panic!("connection closed inside a 16-bit length");
                }
                let len = u16::from_be_bytes([self.buf[2], self.buf[3]]) as u64;
                assert!(len >= 126, "16-bit length {len} should use the 7-bit form");
                (len, 2u8)
            }
            127 => {
                if !self.fill_to(10)? {
                    panic!("connection closed inside a 64-bit length");
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.buf[2..10]);
                let len = u64::from_be_bytes(b);
                assert!(
                    len > 0xFFFF,
                    "64-bit length {len} should use a shorter form"
                );
                (len, 8u8)
            }
            n => (n as u64, 0u8),
        };
        let header = 2 + len_bytes as usize;
        let total = header + usize::try_from(len).expect("frame length fits in usize");
        if !self.fill_to(total)? {
            panic!(
                "connection closed inside a frame payload ({} of {len} bytes)",
                self.buf.len() - header
            );
        }
        let frame = Frame {
            fin: b0 & 0x80 != 0,
            opcode: b0 & 0x0F,
            payload: self.buf[header..total].to_vec(),
            len_bytes,
            rsv1: b0 & 0x40 != 0,
        };
        self.buf.drain(..total);
        if frame.opcode >= 8 {
            assert!(
                frame.fin,
                "server sent a fragmented control frame: {frame:?}"
            );
            assert!(
                frame.payload.len() <= 125,
                "server control frame over 125 bytes"
            );
        }
        Ok(Some(frame))
    }

    /// Reads one server frame; panics on EOF, timeout or error.
    pub fn read_frame_full(&mut self) -> Frame {
        match self.try_read_frame() {
            Ok(Some(f)) => f,
            Ok(None) => panic!("server closed the connection while a frame was expected"),
            Err(e) if is_timeout(&e) => {
                panic!("timed out after {IO_TIMEOUT:?} waiting for a frame")
            }
            Err(e) => panic!("read error waiting for a frame: {e}"),
        }
    }

    /// Reads one server frame as `(fin, opcode, payload)`.
    pub fn read_frame(&mut self) -> (bool, u8, Vec<u8>) {
        let f = self.read_frame_full();
        (f.fin, f.opcode, f.payload)
    }

    /// Reads one complete data message (reassembling fragments the server may send, and
    /// inflating a compressed one), as `(opcode, payload)`. Any control frame in between
    /// fails the test.
    pub fn read_message(&mut self) -> (u8, Vec<u8>) {
        let (op, payload, _) = self.read_message_compressed();
        (op, payload)
    }

    /// [`Client::read_message`], also saying whether the message came compressed.
    pub fn read_message_compressed(&mut self) -> (u8, Vec<u8>, bool) {
        let first = self.read_frame_full();
        assert!(
            first.opcode == OP_TEXT || first.opcode == OP_BINARY,
            "expected a data message, got {}",
            describe(&first)
        );
        let mut payload = first.payload;
        let mut fin = first.fin;
        while !fin {
            let next = self.read_frame_full();
            assert_eq!(
                next.opcode,
                OP_CONT,
                "expected a continuation frame, got {}",
                describe(&next)
            );
            assert!(!next.rsv1, "RSV1 on a continuation frame");
            payload.extend_from_slice(&next.payload);
            fin = next.fin;
        }
        if first.rsv1 {
            payload = inflate_message(&payload);
        }
        if first.opcode == OP_TEXT {
            assert!(
                std::str::from_utf8(&payload).is_ok(),
                "server sent a text message that is not UTF-8"
            );
        }
        (first.opcode, payload, first.rsv1)
    }

    /// Expects the echo of a text message.
    pub fn expect_text(&mut self, text: &str) {
        let (op, payload) = self.read_message();
        assert_eq!(op, OP_TEXT, "expected a text message");
        assert!(
            payload == text.as_bytes(),
            "text echo differs: got {:?}",
            String::from_utf8_lossy(&payload)
        );
    }

    /// Expects the echo of a binary message.
    pub fn expect_binary(&mut self, data: &[u8]) {
        let (op, payload) = self.read_message();
        assert_eq!(op, OP_BINARY, "expected a binary message");
        assert_eq!(payload.len(), data.len(), "binary echo length differs");
        assert!(payload == data, "binary echo content differs");
    }

    /// Expects the next frame to be a Close with `code` and a UTF-8 reason; returns the frame.
    pub fn expect_close(&mut self, code: u16) -> Frame {
        let frame = self.read_frame_full();
        assert_eq!(
            frame.opcode,
            OP_CLOSE,
            "expected Close {code}, got {}",
            describe(&frame)
        );
        assert_eq!(
            frame.close_code(),
            Some(code),
            "wrong close code: {}",
            describe(&frame)
        );
        assert!(
            std::str::from_utf8(&frame.payload[2..]).is_ok(),
            "close reason is not UTF-8"
        );
        frame
    }

    /// Expects the server to close the TCP connection with nothing more sent. A reset counts
    /// as closed. Then closes our side too, as a real client does on EOF (the server may
    /// hold the connection, half-closed, until it sees our FIN).
    pub fn expect_eof(&mut self) {
        assert!(
            self.buf.is_empty(),
            "expected EOF, {} unread bytes pending: {:?}",
            self.buf.len(),
            self.buf
        );
        let mut chunk = [0u8; 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => panic!("expected EOF, got {n} bytes: {:?}", &chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) if is_timeout(&e) => {
                    panic!("server did not close the TCP connection within {IO_TIMEOUT:?}")
                }
                Err(e) => panic!("read error waiting for EOF: {e}"),
            }
        }
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Expects a protocol failure: a Close with `code`. Replies with a Close as a well-behaved
    /// client would (ignoring a write error: the server may already be gone), then expects
    /// the TCP connection to close.
    pub fn expect_fail(&mut self, code: u16) {
        self.expect_close(code);
        self.reply_close_and_expect_eof(code);
    }

    /// Answers a server Close with Close `code` (ignoring a write error: the server may
    /// already have closed), then expects the TCP connection to close.
    pub fn reply_close_and_expect_eof(&mut self, code: u16) {
        let reply = client_frame(true, OP_CLOSE, &close_payload(code, b""));
        let _ = self.stream.write_all(&reply);
        self.expect_eof();
    }

    /// Sends Close `code`, expects the echoed Close and the TCP close.
    pub fn close_cleanly(&mut self, code: u16) {
        self.send_close(code, "");
        self.expect_close(code);
        self.expect_eof();
    }

    /// Reads frames until the server closes the TCP connection or `deadline` passes;
    /// returns the frames received and whether EOF was seen.
    pub fn frames_until_eof(&mut self, deadline: Instant) -> (Vec<Frame>, bool) {
        let mut frames = Vec::new();
        loop {
            let now = Instant::now();
            if now >= deadline {
                return (frames, false);
            }
            self.stream
                .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))
                .expect("set read timeout");
            let res = self.try_read_frame();
            self.stream
                .set_read_timeout(Some(IO_TIMEOUT))
                .expect("set read timeout");
            match res {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => return (frames, true),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return (frames, true),
                Err(e) if is_timeout(&e) => return (frames, false),
                Err(e) => panic!("read error: {e}"),
            }
        }
    }

    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// Checks a 101 response for `key`.
pub fn assert_101(resp: &Response, key: &str) {
    assert_eq!(
        resp.status, 101,
        "expected 101 Switching Protocols, got {resp:?}"
    );
    assert!(
        resp.header_has_token("upgrade", "websocket"),
        "101 without `Upgrade: websocket`: {resp:?}"
    );
    assert!(
        resp.header_has_token("connection", "upgrade"),
        "101 without `Connection: Upgrade`: {resp:?}"
    );
    assert_eq!(
        resp.header("sec-websocket-accept"),
        Some(accept_for(key).as_str()),
        "wrong Sec-WebSocket-Accept for key {key:?}"
    );
}

/// A short description of a frame for assertion messages.
pub fn describe(f: &Frame) -> String {
    let name = match f.opcode {
        OP_CONT => "Continuation",
        OP_TEXT => "Text",
        OP_BINARY => "Binary",
        OP_CLOSE => "Close",
        OP_PING => "Ping",
        OP_PONG => "Pong",
        _ => "Reserved",
    };
    if f.opcode == OP_CLOSE && f.payload.len() >= 2 {
        let code = u16::from_be_bytes([f.payload[0], f.payload[1]]);
        format!(
            "Close {code} {:?} (fin={})",
            String::from_utf8_lossy(&f.payload[2..]),
            f.fin
        )
    } else {
        let shown = &f.payload[..f.payload.len().min(40)];
        format!(
            "{name} fin={} len={} {:?}",
            f.fin,
            f.payload.len(),
            String::from_utf8_lossy(shown)
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Server process with extra environment
// ---------------------------------------------------------------------------------------------

impl Server {
    /// Like [`Server::start`], with `env` set in the server's environment (after the caller's
    /// `SWITCHBOARD_*` variables are removed, so `env` may set some of those too). For the
    /// variables a service manager passes: `NOTIFY_SOCKET`, `WATCHDOG_USEC`, `LISTEN_FDS`.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = switchboard_command();
        cmd.envs(env.iter().copied())
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(args);
        Server::start_command(cmd)
    }
}

// ---------------------------------------------------------------------------------------------
// Channels: the JSON protocol on /ws and the HTTP API
// ---------------------------------------------------------------------------------------------

/// Connects to `/ws` with `query` (without the `?`; empty for none).
pub fn ws_connect(addr: SocketAddr, query: &str) -> Client {
    if query.is_empty() {
        Client::connect(addr, "/ws")
    } else {
        Client::connect(addr, &format!("/ws?{query}"))
    }
}

impl Client {
    /// Sends `value` as one JSON text frame.
    pub fn send_json(&mut self, value: &serde_json::Value) {
        self.send_text(&value.to_string());
    }

    /// Reads the next message, which must be a JSON text frame.
    pub fn read_json(&mut self) -> serde_json::Value {
        let (op, payload) = self.read_message();
        assert_eq!(
            op,
            OP_TEXT,
            "expected a JSON text message, got binary {:?}",
            String::from_utf8_lossy(&payload)
        );
        parse_json(&payload)
    }

    /// Like [`Client::read_json`], answering any Ping on the way (for servers started with a
    /// short `--ping-interval`).
    pub fn read_json_answering_pings(&mut self) -> serde_json::Value {
        loop {
            let f = self.read_frame_full();
            match f.opcode {
                OP_PING => self.send_frame(true, OP_PONG, &f.payload),
                OP_TEXT if f.fin => return parse_json(&f.payload),
                _ => panic!("expected a JSON text message, got {}", describe(&f)),
            }
        }
    }

    /// Sends a `subscribe` for `channel` and returns the `subscribed` reply (checked).
    pub fn subscribe(&mut self, channel: &str) -> serde_json::Value {
        self.send_json(&serde_json::json!({"op": "subscribe", "channel": channel}));
        let reply = self.read_json();
        assert_eq!(reply["type"], "subscribed", "subscribe {channel}: {reply}");
        assert_eq!(reply["channel"], channel, "subscribe {channel}: {reply}");
        reply
    }

    /// Reads the next message, which must be a `message` on `channel`; returns its id.
    pub fn read_message_id(&mut self, channel: &str) -> (u64, serde_json::Value) {
        let m = self.read_json();
        assert_eq!(m["type"], "message", "expected a message on {channel}: {m}");
        assert_eq!(m["channel"], channel, "message on the wrong channel: {m}");
        let id = m["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("message without a numeric id: {m}"));
        (id, m)
    }
}

/// Parses a JSON payload or fails the test showing it.
pub fn parse_json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| {
        panic!(
            "server sent invalid JSON ({e}): {:?}",
            String::from_utf8_lossy(bytes)
        )
    })
}

/// A keep-alive HTTP/1.1 connection for API calls.
pub struct HttpConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl HttpConn {
    pub fn connect(addr: SocketAddr) -> HttpConn {
        HttpConn {
            stream: tcp(addr),
            buf: Vec::new(),
        }
    }

    /// Sends one request (`extra` header lines without CRLF; Content-Length is added when
    /// `body` is not empty) and reads its response.
    pub fn request(&mut self, method: &str, path: &str, extra: &[&str], body: &[u8]) -> Response {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        for line in extra {
            req.push_str(line);
            req.push_str("\r\n");
        }
        if !body.is_empty() {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.stream
            .write_all(&bytes)
            .expect("write the HTTP request");
        read_response(&mut self.stream, &mut self.buf)
    }

    pub fn get(&mut self, path: &str) -> Response {
        self.request("GET", path, &[], &[])
    }

    /// `POST /publish/{channel}` with an optional Content-Type; asserts 200 and the reply's
    /// shape, and returns the id.
    pub fn publish(&mut self, channel: &str, content_type: Option<&str>, body: &[u8]) -> u64 {
        let ctype = content_type.map(|t| format!("Content-Type: {t}"));
        let extra: Vec<&str> = ctype.iter().map(String::as_str).collect();
        let resp = self.request("POST", &format!("/publish/{channel}"), &extra, body);
        assert_eq!(resp.status, 200, "publish to {channel}: {resp:?}");
        let v = json_body(&resp);
        assert_eq!(v["channel"], channel, "publish reply {v}");
        v["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("publish reply without a numeric id: {v}"))
    }

    /// Publishes `value` as `application/json`; returns the id.
    pub fn publish_json(&mut self, channel: &str, value: &serde_json::Value) -> u64 {
        self.publish(
            channel,
            Some("application/json"),
            value.to_string().as_bytes(),
        )
    }
}

/// `v` without its `"epoch"`, which must be there (1-32 letters and digits): for comparing a
/// `subscribed`, `published` or `history` reply whose epoch the test cannot know.
pub fn without_epoch(mut v: serde_json::Value) -> serde_json::Value {
    let epoch = v
        .as_object_mut()
        .and_then(|o| o.remove("epoch"))
        .unwrap_or_else(|| panic!("no epoch in {v}"));
    let e = epoch
        .as_str()
        .unwrap_or_else(|| panic!("epoch not a string: {epoch}"));
    assert!(
        (1..=32).contains(&e.len()) && e.bytes().all(|b| b.is_ascii_alphanumeric()),
        "bad epoch {e:?}"
    );
    v
}

/// A server message with the epoch of a `subscribed`, `published` or `history` reply checked
/// and taken out (see [`without_epoch`]); other messages as they are.
pub fn epochless(v: serde_json::Value) -> serde_json::Value {
    match v["type"].as_str() {
        Some("subscribed" | "published" | "history") => without_epoch(v),
        _ => v,
    }
}

/// One request on a fresh connection (see [`HttpConn::request`]).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra: &[&str],
    body: &[u8],
) -> Response {
    HttpConn::connect(addr).request(method, path, extra, body)
}

pub fn http_get(addr: SocketAddr, path: &str) -> Response {
    http_request(addr, "GET", path, &[], &[])
}

/// The body of an API response: asserts `Content-Type: application/json` and parses it.
pub fn json_body(resp: &Response) -> serde_json::Value {
    let ctype = resp.header("content-type").unwrap_or_default();
    assert!(
        ctype.to_ascii_lowercase().starts_with("application/json"),
        "API response Content-Type {ctype:?}, want application/json: {resp:?}"
    );
    parse_json(&resp.body)
}

/// Asserts an API error: `status`, a JSON body `{"error": code, "reason": ..}`.
pub fn assert_api_error(resp: &Response, status: u16, code: &str) {
    assert_eq!(resp.status, status, "expected {status} {code}: {resp:?}");
    let v = json_body(resp);
    assert_eq!(v["error"], code, "error body {v}");
    assert!(
        v["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "error body without a reason: {v}"
    );
}

/// Polls `check` until it returns `Some` or `timeout` passes. Only for state that no event
/// announces (such as a server-side table updated after a socket closes); everything else
/// should be awaited on its socket.
pub fn poll_until<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// A `VmRSS`/`VmHWM`-style field of `/proc/<pid>/status`, in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

// ---------------------------------------------------------------------------------------------
// Fallback transports: Server-Sent Events, long-polling, metrics
// ---------------------------------------------------------------------------------------------

/// One Server-Sent Events block (the lines up to a blank line) and what its fields say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The block's lines as sent, without their LF.
    pub lines: Vec<String>,
    /// The `data:` values in order (one space after the colon stripped, as EventSource does).
    pub data: Vec<String>,
    pub id: Option<String>,
    pub retry: Option<String>,
    /// The `event:` name of a named event (none for messages).
    pub event: Option<String>,
    /// Comment lines without the colon and one space (`: ping` gives `ping`).
    pub comments: Vec<String>,
}

impl SseEvent {
    /// Parses one block's lines (field rules of the HTML Living Standard, §9.2.6).
    pub fn parse(lines: Vec<String>) -> SseEvent {
        let mut ev = SseEvent::default();
        for line in &lines {
            if let Some(comment) = line.strip_prefix(':') {
                ev.comments
                    .push(comment.strip_prefix(' ').unwrap_or(comment).to_owned());
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line.as_str(), ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
            match field {
                "data" => ev.data.push(value),
                "id" => ev.id = Some(value),
                "retry" => ev.retry = Some(value),
                "event" => ev.event = Some(value),
                other => panic!("unexpected SSE field {other:?} in block {lines:?}"),
            }
        }
        ev.lines = lines;
        ev
    }

    /// Whether the block is a message: data and no event name (as opposed to an id-only
    /// event, a named event or a comment).
    pub fn is_message(&self) -> bool {
        !self.data.is_empty() && self.event.is_none()
    }

    /// The data as EventSource delivers it: the data lines joined with LF.
    pub fn joined(&self) -> String {
        self.data.join("\n")
    }

    /// The joined data parsed as JSON (the default envelope).
    pub fn json(&self) -> serde_json::Value {
        parse_json(self.joined().as_bytes())
    }

    /// The `id:` parsed as a cursor; panics without one.
    pub fn cursor(&self) -> Vec<(String, u64)> {
        let id = self
            .id
            .as_deref()
            .unwrap_or_else(|| panic!("SSE event without an id: {self:?}"));
        parse_cursor(id)
    }
}

/// Parses a cursor `room:1:5@E,news:9@E` into `(channel, id)` pairs (the position is after
/// the last `:`, the stream's epoch after `@`).
pub fn parse_cursor(cursor: &str) -> Vec<(String, u64)> {
    cursor_positions(cursor)
        .into_iter()
        .map(|(name, id, _)| (name, id))
        .collect()
}

/// A cursor with its epochs taken out (`room:1:5@E,news:9@E` → `room:1:5,news:9`),
/// for comparing positions a test knows with a cursor whose epochs it does not.
pub fn plain_cursor(cursor: &str) -> String {
    cursor_positions(cursor)
        .iter()
        .map(|(name, id, _)| format!("{name}:{id}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses a cursor into `(channel, id, epoch)`. The server writes every position of a
/// subscribed channel with its epoch; a channel still being subscribed keeps the position the
/// client gave, which may have none (then the epoch is empty).
pub fn cursor_positions(cursor: &str) -> Vec<(String, u64, String)> {
    cursor
        .split(',')
        .map(|part| {
            let (name, at) = part
                .rsplit_once(':')
                .unwrap_or_else(|| panic!("cursor entry {part:?} without `:` in {cursor:?}"));
            let (id, epoch) = at.split_once('@').unwrap_or((at, ""));
            assert!(
                epoch.bytes().all(|b| b.is_ascii_alphanumeric()),
                "cursor entry {part:?}: epoch must be letters and digits"
            );
            let id = id
                .parse()
                .unwrap_or_else(|_| panic!("cursor entry {part:?} has no numeric id"));
            (name.to_owned(), id, epoch.to_owned())
        })
        .collect()
}

/// The id a cursor gives `channel`; panics if the cursor does not name it.
pub fn cursor_entry(cursor: &[(String, u64)], channel: &str) -> u64 {
    cursor
        .iter()
        .find(|(c, _)| c == channel)
        .map(|&(_, id)| id)
        .unwrap_or_else(|| panic!("cursor {cursor:?} does not name channel {channel:?}"))
}

/// An open `text/event-stream` response.
pub struct SseStream {
    pub stream: TcpStream,
    /// Bytes received and not yet parsed into blocks.
    pub buf: Vec<u8>,
    pub response: Response,
}

/// Sends `GET {path}` with `extra` header lines on a fresh connection and reads the response
/// head (and body, if it has a length): for requests that may be refused.
pub fn sse_request(addr: SocketAddr, path: &str, extra: &[&str]) -> (Response, TcpStream, Vec<u8>) {
    let mut req =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n");
    for line in extra {
        req.push_str(line);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    http_exchange(addr, req.as_bytes())
}

impl SseStream {
    /// Opens a stream and checks its head: 200, `text/event-stream`, no `Content-Length`.
    /// The `retry:` block is left unread.
    pub fn connect(addr: SocketAddr, path: &str, extra: &[&str]) -> SseStream {
        let (response, stream, buf) = sse_request(addr, path, extra);
        SseStream::from_response(response, stream, buf)
    }

    /// Checks an already read head (see [`SseStream::connect`]).
    pub fn from_response(response: Response, stream: TcpStream, buf: Vec<u8>) -> SseStream {
        assert_eq!(response.status, 200, "GET /sse refused: {response:?}");
        let ctype = response.header("content-type").unwrap_or_default();
        assert!(
            ctype.to_ascii_lowercase().starts_with("text/event-stream"),
            "SSE Content-Type {ctype:?}: {response:?}"
        );
        assert!(
            response.header("content-length").is_none(),
            "an event stream must not have a Content-Length: {response:?}"
        );
        SseStream {
            stream,
            buf,
            response,
        }
    }

    /// For a stream with nothing to replay: [`SseStream::connect`], then the `retry: 2000`
    /// block and the id-only event sent right after connecting (returned).
    pub fn connect_live(addr: SocketAddr, path: &str, extra: &[&str]) -> (SseStream, SseEvent) {
        let mut s = SseStream::connect(addr, path, extra);
        s.expect_retry();
        let first = s.next_event();
        assert!(
            !first.is_message() && first.id.is_some() && first.lines.len() == 1,
            "expected an id-only event right after connecting, got {first:?}"
        );
        (s, first)
    }

    /// Expects the first block: exactly `retry: 2000`.
    pub fn expect_retry(&mut self) {
        let ev = self.next_event();
        assert_eq!(
            ev.lines,
            vec!["retry: 2000".to_owned()],
            "the stream must open with `retry: 2000`"
        );
    }

    /// Reads the next block; `Ok(None)` at EOF (or a reset) on a block boundary, `Err` on a
    /// timeout. Lines must be UTF-8, end with LF and contain no CR (which would end a line too).
    pub fn try_next_event(&mut self) -> io::Result<Option<SseEvent>> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = String::from_utf8(block[..end].to_vec()).unwrap_or_else(|_| {
                    panic!(
                        "SSE block is not UTF-8: {:?}",
                        String::from_utf8_lossy(&block)
                    )
                });
                assert!(
                    !text.contains('\r'),
                    "SSE block contains a CR, which EventSource reads as a line end: {text:?}"
                );
                let lines = text.split('\n').map(str::to_owned).collect();
                return Ok(Some(SseEvent::parse(lines)));
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    assert!(
                        self.buf.is_empty(),
                        "stream ended inside an event: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    );
                    return Ok(None);
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset && self.buf.is_empty() => {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads the next block; panics on EOF or timeout.
    pub fn next_event(&mut self) -> SseEvent {
        match self.try_next_event() {
            Ok(Some(ev)) => ev,
            Ok(None) => panic!("the server ended the event stream while an event was expected"),
            Err(e) if is_timeout(&e) => {
                panic!("timed out after {IO_TIMEOUT:?} waiting for an SSE event")
            }
            Err(e) => panic!("read error waiting for an SSE event: {e}"),
        }
    }

    /// The next event with data, skipping id-only events and comments. A message block must
    /// be its data lines followed by exactly one `id:` line.
    pub fn next_message(&mut self) -> SseEvent {
        loop {
            let ev = self.next_event();
            if ev.is_message() {
                assert_message_shape(&ev);
                return ev;
            }
        }
    }

    /// Reads blocks until the server closes the stream; panics if it is still open after
    /// `timeout`.
    pub fn events_until_eof(&mut self, timeout: Duration) -> Vec<SseEvent> {
        let deadline = Instant::now() + timeout;
        let mut events = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the server did not end the event stream within {timeout:?} (got {events:?})"
            );
            self.stream
                .set_read_timeout(Some(left))
                .expect("set read timeout");
            match self.try_next_event() {
                Ok(Some(ev)) => events.push(ev),
                Ok(None) => break,
                Err(e) if is_timeout(&e) => continue,
                Err(e) => panic!("read error waiting for the stream to end: {e}"),
            }
        }
        self.stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("set read timeout");
        events
    }
}

/// Asserts a message event's layout: `data:` lines, then one `id:` line, nothing else.
pub fn assert_message_shape(ev: &SseEvent) {
    let n = ev.lines.len();
    assert!(
        n >= 2
            && ev.lines[..n - 1].iter().all(|l| l.starts_with("data: "))
            && ev.lines[n - 1].starts_with("id: "),
        "a message event must be `data: ` lines then one `id: ` line: {:?}",
        ev.lines
    );
}

/// Checks a poll reply (200, JSON `{"messages": [...], "cursor": "...", "recovered": bool}`,
/// nothing else) and returns its messages and cursor.
pub fn poll_reply(resp: &Response) -> (Vec<serde_json::Value>, String) {
    assert_eq!(resp.status, 200, "poll reply: {resp:?}");
    assert!(
        resp.header("content-length").is_some(),
        "poll reply without Content-Length: {resp:?}"
    );
    let v = json_body(resp);
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("poll reply is not an object: {v}"));
    assert_eq!(obj.len(), 3, "poll reply has other members: {v}");
    assert!(
        v["recovered"].is_boolean(),
        "poll reply without recovered: {v}"
    );
    let msgs = v["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("poll reply without a messages array: {v}"))
        .clone();
    let cursor = v["cursor"]
        .as_str()
        .unwrap_or_else(|| panic!("poll reply without a cursor string: {v}"))
        .to_owned();
    (msgs, cursor)
}

/// `(channel, id)` of a message envelope, checking its `type`.
pub fn envelope_id(m: &serde_json::Value) -> (String, u64) {
    assert_eq!(m["type"], "message", "not a message envelope: {m}");
    let channel = m["channel"]
        .as_str()
        .unwrap_or_else(|| panic!("envelope without a channel: {m}"));
    let id = m["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("envelope without a numeric id: {m}"));
    (channel.to_owned(), id)
}

/// The value of one sample of `GET /metrics`, given as it appears before the value
/// (`switchboard_connections{transport="sse"}`); `None` if the server is unreachable or
/// refuses (at capacity) or the series is missing.
pub fn try_metric(addr: SocketAddr, series: &str) -> Option<f64> {
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8(raw).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    body.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Like [`try_metric`], panicking if the value cannot be read.
pub fn metric(addr: SocketAddr, series: &str) -> f64 {
    try_metric(addr, series).unwrap_or_else(|| panic!("could not read metric {series}"))
}

/// Waits until the streaming-connection gauge of `transport` (`sse`, `poll`, ...) reads `n`.
pub fn wait_for_transport_gauge(addr: SocketAddr, transport: &str, n: u64) {
    let series = format!("switchboard_connections{{transport=\"{transport}\"}}");
    poll_until(IO_TIMEOUT, &format!("{series} to read {n}"), || {
        (try_metric(addr, &series) == Some(n as f64)).then_some(())
    });
}

// ---------------------------------------------------------------------------------------------
// Server process from a prepared command (resource limits, no --listen added)
// ---------------------------------------------------------------------------------------------

/// A `Command` for the `switchboard` binary with the caller's `SWITCHBOARD_*` variables
/// removed, stdin closed and stdout/stderr piped; no arguments yet. For tests that need to
/// shape the process itself (a resource limit in `pre_exec`, the listen address from the
/// environment) before [`Server::start_command`].
pub fn switchboard_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SWITCHBOARD_") {
            cmd.env_remove(name);
        }
    }
    // `SB_TEST_DEFER_ANSWERS=1 cargo test ...` runs the tests against an engine that answers
    // through the mailbox, as a remote one does (`.ci/test` runs the channel tests so too).
    if std::env::var_os("SB_TEST_DEFER_ANSWERS").is_some_and(|v| v == "1") {
        cmd.arg("--defer-answers");
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

impl Server {
    /// Spawns `cmd` as is (see [`switchboard_command`]; the caller supplies every argument,
    /// `--listen` included) and waits, at most [`START_TIMEOUT`], for its `listening on`
    /// line.
    pub fn start_command(mut cmd: Command) -> Server {
        let what = format!("{cmd:?}");
        let mut child = cmd.spawn().expect("spawn the switchboard binary");

        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut err_pipe = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            loop {
                match err_pipe.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(&chunk[..n]),
                }
            }
        });

        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || watch_stdout(stdout, tx));

        let addr = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(addr)) => addr,
            outcome => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "server did not print `listening on ADDR` within {START_TIMEOUT:?} (got {outcome:?}); command {what}; stderr:\n{}",
                    String::from_utf8_lossy(&stderr.lock().unwrap_or_else(|e| e.into_inner()))
                );
            }
        };
        Server {
            child,
            addr,
            stderr,
        }
    }

    /// Whether the process is still running (it has not exited, crashed or been killed).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

// ---------------------------------------------------------------------------------------------
// Clients that stop reading
// ---------------------------------------------------------------------------------------------

/// A client whose socket has small, fixed kernel buffers (8 KiB receive, 64 KiB send; the
/// kernel doubles what is asked), so little is buffered on its side once it stops reading
/// or the server stops taking its input.
pub fn connect_small_buffers(addr: SocketAddr, path: &str) -> Client {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .set_recv_buffer_size(8 * 1024)
        .expect("set SO_RCVBUF");
    socket
        .set_send_buffer_size(64 * 1024)
        .expect("set SO_SNDBUF");
    socket
        .connect_timeout(&addr.into(), IO_TIMEOUT)
        .expect("connect");
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let (req, key) = upgrade_request(path, &[]);
    stream.write_all(req.as_bytes()).expect("write the upgrade");
    let mut buf = Vec::new();
    let response = read_response(&mut stream, &mut buf);
    assert_101(&response, &key);
    Client::from_parts(stream, buf, response)
}

/// Writes `frame` over and over until `max_bytes` are sent or a write makes no progress for
/// `stall` (the peer stopped reading). Returns the bytes sent and whether it stalled.
pub fn push_until_stalled(
    stream: &mut TcpStream,
    frame: &[u8],
    max_bytes: usize,
    stall: Duration,
) -> (usize, bool) {
    stream
        .set_write_timeout(Some(stall))
        .expect("set write timeout");
    let mut sent = 0;
    let result = loop {
        if sent >= max_bytes {
            break (sent, false);
        }
        let at = sent % frame.len();
        match stream.write(&frame[at..]) {
            Ok(0) => panic!("write returned 0 after {sent} bytes"),
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => break (sent, true),
            Err(e) => panic!("write failed after {sent} bytes: {e}"),
        }
    };
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("set write timeout");
    result
}

/// Sends `signal` to the server process.
#[allow(unsafe_code)] // libc::kill; the block says why it is sound
pub fn send_signal(server: &Server, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(server.pid()).expect("pid fits in pid_t");
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; `pid` is our own
    // child, which `Server` has not yet waited on, so the pid cannot have been reused.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
}
