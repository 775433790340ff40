//! Plain-HTTP hygiene of every non-WebSocket route: `Content-Length` on every response that
//! is not a stream, keep-alive and pipelining on HTTP/1.1, `Connection: close`, HTTP/1.0,
//! CORS for `--allowed-origin` (including preflights and the streaming routes), and the
//! refusals: 400 malformed, 411 chunked bodies, 413 bodies over `--max-message-bytes`, and
//! JSON bodies on API errors.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use serde_json::json;

use common::*;

const ORIGIN: &str = "http://a.example";
const OTHER_ORIGIN: &str = "http://b.example";

/// Asserts `Content-Length` is present and matches the body read (which [`read_response`]
/// read by that length, so a wrong one also breaks the next response on the connection).
fn assert_length(resp: &Response, what: &str) {
    let len = resp
        .header("content-length")
        .unwrap_or_else(|| panic!("{what}: no Content-Length: {resp:?}"));
    assert_eq!(
        len.parse::<usize>().ok(),
        Some(resp.body.len()),
        "{what}: {resp:?}"
    );
}

/// Reads until the server closes the connection (a reset counts), with the usual timeout.
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!(
                "server did not close the connection ({e}); got {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

#[test]
fn every_plain_response_has_a_content_length() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let mut http = HttpConn::connect(addr);
    let json_type = ["Content-Type: application/json"];
    let requests: [(&str, &str, &[&str], &[u8]); 12] = [
        ("GET", "/healthz", &[], b""),
        ("GET", "/", &[], b""),
        ("GET", "/metrics", &[], b""),
        ("POST", "/publish/cl", &json_type, br#"{"a": 1}"#),
        ("GET", "/history/cl", &[], b""),
        ("GET", "/presence/cl", &[], b""),
        ("GET", "/presence?user=u", &[], b""),
        ("GET", "/poll?channel=cl&since=0", &[], b""),
        ("OPTIONS", "/publish/cl", &[], b""),
        // API errors keep the connection too.
        ("GET", "/history/cl?since=x", &[], b""),
        ("POST", "/publish/cl", &json_type, b"{not json"),
        ("GET", "/healthz", &[], b""),
    ];
    for (method, path, extra, body) in requests {
        let resp = http.request(method, path, extra, body);
        let what = format!("{method} {path}");
        assert_length(&resp, &what);
        assert!(
            !resp.header_has_token("connection", "close"),
            "{what} closed the connection: {resp:?}"
        );
    }

    // HEAD: the length of the body it does not send, and nothing after the head.
    let mut stream = tcp(addr);
    stream
        .write_all(b"HEAD /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("write HEAD");
    let raw = String::from_utf8(read_to_close(&mut stream)).expect("UTF-8 response");
    let (head, rest) = raw.split_once("\r\n\r\n").expect("a complete head");
    assert!(head.starts_with("HTTP/1.1 200"), "{raw:?}");
    assert!(
        head.to_ascii_lowercase().contains("\r\ncontent-length: 3"),
        "HEAD /healthz must announce the length of `ok\\n`: {raw:?}"
    );
    assert_eq!(rest, "", "HEAD response with a body");

    // Refusals close the connection, with a length too.
    for req in [
        &b"GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n"[..],
        b"DELETE /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ] {
        assert_error_response(addr, req, if req.starts_with(b"GET") { 404 } else { 405 });
    }
}

#[test]
fn keep_alive_serves_sequential_and_pipelined_requests() {
    let server = Server::start(&[]);
    let addr = server.addr();

    let mut http = HttpConn::connect(addr);
    for n in 1..=5 {
        assert_eq!(http.publish_json("ka", &json!(n)), n);
        assert_eq!(http.get("/healthz").body, b"ok\n");
    }

    // Four requests in one write, answered in order; the last asks to close.
    let pipeline = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n\
        POST /publish/ka HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\n\"p\"\n\
        GET /history/ka?since=5 HTTP/1.1\r\nHost: localhost\r\n\r\n\
        GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let check = |stream: &mut TcpStream, first_id: u64| {
        let mut buf = Vec::new();
        let r = read_response(stream, &mut buf);
        assert_eq!((r.status, &r.body[..]), (200, &b"ok\n"[..]), "{r:?}");
        let r = read_response(stream, &mut buf);
        assert_eq!(
            without_epoch(json_body(&r)),
            json!({"channel": "ka", "id": first_id})
        );
        let r = read_response(stream, &mut buf);
        let history = json_body(&r);
        let last = history["messages"]
            .as_array()
            .and_then(|m| m.last())
            .cloned()
            .unwrap_or_else(|| panic!("history without messages: {history}"));
        assert_eq!(envelope_id(&last), ("ka".to_owned(), first_id));
        let r = read_response(stream, &mut buf);
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.header_has_token("connection", "close"), "{r:?}");
        assert_closed(stream, &buf);
    };
    let mut stream = tcp(addr);
    stream.write_all(pipeline).expect("write the pipeline");
    check(&mut stream, 6);

    // The same pipeline in 5-byte pieces: requests and bodies split anywhere.
    let mut stream = tcp(addr);
    for piece in pipeline.chunks(5) {
        stream.write_all(piece).expect("write a piece");
    }
    check(&mut stream, 7);
}

/// RFC 9112 §2.2: a server SHOULD ignore at least one empty line before a request line (some
/// clients send a CRLF after a request body).
#[test]
fn an_empty_line_between_requests_is_ignored() {
    let server = Server::start(&[]);
    let mut stream = tcp(server.addr());
    stream
        .write_all(
            b"POST /publish/crlf HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n\r\nx\r\n\
              GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
        )
        .expect("write the requests");
    let mut buf = Vec::new();
    let r = read_response(&mut stream, &mut buf);
    assert_eq!(
        without_epoch(json_body(&r)),
        json!({"channel": "crlf", "id": 1})
    );
    let r = read_response(&mut stream, &mut buf);
    assert_eq!((r.status, &r.body[..]), (200, &b"ok\n"[..]), "{r:?}");
}

#[test]
fn connection_close_is_honored() {
    let server = Server::start(&[]);
    let (resp, mut stream, rest) = http_exchange(
        server.addr(),
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.status, 200);
    assert!(resp.header_has_token("connection", "close"), "{resp:?}");
    assert_closed(&mut stream, &rest);
}

#[test]
fn http_1_0_closes_unless_keep_alive_is_asked() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let (resp, mut stream, rest) = http_exchange(addr, b"GET /healthz HTTP/1.0\r\n\r\n");
    assert_eq!((resp.status, &resp.body[..]), (200, &b"ok\n"[..]));
    assert!(resp.header_has_token("connection", "close"), "{resp:?}");
    assert_closed(&mut stream, &rest);

    // With keep-alive, the connection serves a second request.
    let mut stream = tcp(addr);
    let mut buf = Vec::new();
    for _ in 0..2 {
        stream
            .write_all(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .expect("write");
        let resp = read_response(&mut stream, &mut buf);
        assert_eq!((resp.status, &resp.body[..]), (200, &b"ok\n"[..]));
        assert!(!resp.header_has_token("connection", "close"), "{resp:?}");
    }
}

/// An HTTP/1.0 client only keeps a connection the response says is kept: the keep-alive
/// negotiation of RFC 2068 §19.7.1 (referred to by RFC 9112 Appendix C.2.2) has the server
/// answer with the `Keep-Alive` token; without it the client must assume the server closes.
#[test]
fn http_1_0_keep_alive_response_says_keep_alive() {
    let server = Server::start(&[]);
    let (resp, _stream, _) = http_exchange(
        server.addr(),
        b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    );
    assert_eq!(resp.status, 200);
    assert!(
        resp.header_has_token("connection", "keep-alive"),
        "a kept HTTP/1.0 connection must be announced with `Connection: keep-alive`: {resp:?}"
    );
}

/// Asserts the CORS headers for an allowed origin.
fn assert_cors(resp: &Response, what: &str) {
    assert_eq!(
        resp.header("access-control-allow-origin"),
        Some(ORIGIN),
        "{what}: {resp:?}"
    );
    assert!(resp.header_has_token("vary", "origin"), "{what}: {resp:?}");
}

fn assert_no_cors(resp: &Response, what: &str) {
    assert!(
        resp.header("access-control-allow-origin").is_none(),
        "{what}: CORS header for an origin not allowed: {resp:?}"
    );
}

#[test]
fn cors_headers_only_for_allowed_origins() {
    let server = Server::start(&["--allowed-origin", ORIGIN]);
    let addr = server.addr();
    let mut http = HttpConn::connect(addr);
    let ok = format!("Origin: {ORIGIN}");
    let other = format!("Origin: {OTHER_ORIGIN}");
    let json_type = "Content-Type: application/json";

    let resp = http.request("GET", "/healthz", &[&ok], b"");
    assert_cors(&resp, "GET /healthz");
    let resp = http.request("POST", "/publish/c", &[&ok, json_type], b"1");
    assert_cors(&resp, "POST /publish/c");
    // A browser can read an error only with the header.
    let resp = http.request("POST", "/publish/c", &[&ok, json_type], b"{");
    assert_api_error(&resp, 400, "invalid_json");
    assert_cors(&resp, "an API error");
    let resp = http.request("GET", "/poll?channel=c&since=0", &[&ok], b"");
    assert_cors(&resp, "an immediate poll");

    for extra in [vec![other.as_str()], vec![]] {
        let resp = http.request("GET", "/healthz", &extra, b"");
        assert_no_cors(&resp, &format!("GET /healthz with {extra:?}"));
        let resp = http.request("GET", "/poll?channel=c&since=0", &extra, b"");
        assert_no_cors(&resp, &format!("poll with {extra:?}"));
    }

    // Preflight: 204 with the methods and headers a publishing page needs.
    let resp = http.request(
        "OPTIONS",
        "/publish/c",
        &[
            &ok,
            "Access-Control-Request-Method: POST",
            "Access-Control-Request-Headers: content-type",
        ],
        b"",
    );
    assert_eq!(resp.status, 204, "{resp:?}");
    assert_cors(&resp, "preflight");
    assert!(
        resp.header_has_token("access-control-allow-methods", "POST"),
        "{resp:?}"
    );
    assert!(
        resp.header_has_token("access-control-allow-headers", "content-type"),
        "{resp:?}"
    );
    assert!(resp.body.is_empty(), "{resp:?}");
    let resp = http.request(
        "OPTIONS",
        "/publish/c",
        &[&other, "Access-Control-Request-Method: POST"],
        b"",
    );
    assert_no_cors(&resp, "preflight from another origin");

    // The streaming routes: an event stream's head and a held poll's reply.
    let sse = SseStream::connect(addr, "/sse?channel=c", &[&ok]);
    assert_cors(&sse.response, "GET /sse");
    let sse = SseStream::connect(addr, "/sse?channel=c", &[&other]);
    assert_no_cors(&sse.response, "GET /sse from another origin");

    let mut held = tcp(addr);
    held.write_all(
        format!("GET /poll?channel=held HTTP/1.1\r\nHost: localhost\r\n{ok}\r\n\r\n").as_bytes(),
    )
    .expect("write the poll");
    wait_for_transport_gauge(addr, "poll", 1);
    http.publish_json("held", &json!(1));
    let mut buf = Vec::new();
    let resp = read_response(&mut held, &mut buf);
    poll_reply(&resp);
    assert_cors(&resp, "a held poll's reply");
}

#[test]
fn malformed_requests_get_400() {
    let server = Server::start(&[]);
    let addr = server.addr();
    for req in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nNo colon here\r\n\r\n",
        b"GET /healthz HTTP/2.0\r\nHost: localhost\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: abc\r\n\r\n",
        b"POST /publish/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\n",
    ] {
        assert_error_response(addr, req, 400);
    }
}

#[test]
fn bodies_over_the_message_limit_get_413() {
    let server = Server::start(&["--max-message-bytes", "1024"]);
    let addr = server.addr();
    // At the limit: accepted.
    let mut http = HttpConn::connect(addr);
    assert_eq!(http.publish("big", Some("text/plain"), &[b'x'; 1024]), 1);
    // One byte over: refused on the head, before any body is sent.
    assert_error_response(
        addr,
        b"POST /publish/big HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 1025\r\n\r\n",
        413,
    );
}

#[test]
fn chunked_request_bodies_get_411() {
    let server = Server::start(&[]);
    assert_error_response(
        server.addr(),
        b"POST /publish/c HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
        411,
    );
}

/// Method, path, header lines, body; the status and `error` code expected.
type ApiCase<'a> = (&'a str, &'a str, Vec<&'a str>, &'a [u8], u16, &'a str);

#[test]
fn api_errors_have_json_bodies() {
    let server = Server::start(&["--publish-token", "s3cret"]);
    let addr = server.addr();
    let mut http = HttpConn::connect(addr);
    let auth = "Authorization: Bearer s3cret";
    let json_type = "Content-Type: application/json";
    let cases: [ApiCase<'_>; 7] = [
        (
            "POST",
            "/publish/c",
            vec![json_type],
            b"1",
            401,
            "unauthorized",
        ),
        (
            "POST",
            "/publish/bad*name",
            vec![auth, json_type],
            b"1",
            400,
            "invalid_channel",
        ),
        (
            "POST",
            "/publish/c",
            vec![auth, json_type],
            b"{\"a\":",
            400,
            "invalid_json",
        ),
        (
            "GET",
            "/history/c?since=x",
            vec![auth],
            b"",
            400,
            "invalid_since",
        ),
        (
            "GET",
            "/history/c?limit=x",
            vec![auth],
            b"",
            400,
            "invalid_limit",
        ),
        ("GET", "/presence", vec![auth], b"", 400, "missing_user"),
        ("GET", "/history/c", vec![], b"", 401, "unauthorized"),
    ];
    for (method, path, extra, body, status, code) in cases {
        let resp = http.request(method, path, &extra, body);
        assert_api_error(&resp, status, code);
        assert_length(&resp, &format!("{method} {path}"));
    }
    // The connection is still usable after all of them.
    let resp = http.request("POST", "/publish/c", &[auth, json_type], b"1");
    assert_eq!(
        without_epoch(json_body(&resp)),
        json!({"channel": "c", "id": 1})
    );
}

/// A request body sent after its head (a separate segment, usually a later read) is still
/// that request's body.
#[test]
fn a_body_sent_after_its_head_is_read() {
    let server = Server::start(&[]);
    let addr: SocketAddr = server.addr();
    let mut stream = tcp(addr);
    stream
        .write_all(b"POST /publish/late HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n")
        .expect("write the head");
    stream.write_all(b"\"late\"\n").expect("write the body");
    let mut buf = Vec::new();
    let resp = read_response(&mut stream, &mut buf);
    assert_eq!(
        without_epoch(json_body(&resp)),
        json!({"channel": "late", "id": 1})
    );
    let history = json_body(&http_get(addr, "/history/late"));
    assert_eq!(history["messages"][0]["data"], "late");
}
