//! The HTTP side: the upgrade on `GET /echo`, every handshake error status, the plain HTTP
//! routes, requests split into tiny writes, frames pipelined behind the request,
//! subprotocol and origin negotiation, and a real client (tungstenite).

mod common;

use std::io::Write;
use std::thread;
use std::time::Duration;

use common::*;

/// The upgrade request with `skip` header names left out and `extra` lines added.
fn request_without(skip: &[&str], extra: &[&str]) -> String {
    let lines = [
        "Host: localhost",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ];
    let mut req = String::from("GET /echo HTTP/1.1\r\n");
    for line in lines {
        let name = line.split(':').next().unwrap_or_default();
        if !skip.iter().any(|s| s.eq_ignore_ascii_case(name)) {
            req.push_str(line);
            req.push_str("\r\n");
        }
    }
    for line in extra {
        req.push_str(line);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req
}

#[test]
fn upgrade_succeeds_with_correct_accept_key() {
    let server = Server::start(&[]);
    let mut client = Client::connect(server.addr(), "/echo");
    assert!(
        client.response.header("sec-websocket-protocol").is_none(),
        "no subprotocol was offered, none must be chosen"
    );
    client.send_text("hello");
    client.expect_text("hello");
    client.close_cleanly(1000);
}

#[test]
fn rfc_6455_example_key_gets_the_rfc_accept_value() {
    let server = Server::start(&[]);
    let req = request_without(&[], &[]);
    let (resp, _stream, _rest) = http_exchange(server.addr(), req.as_bytes());
    assert_eq!(resp.status, 101, "{resp:?}");
    assert_eq!(
        resp.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "RFC 6455 §1.3 example"
    );
    // The harness's own accept computation agrees with the RFC.
    assert_eq!(
        accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn header_names_and_tokens_are_case_insensitive_and_connection_may_be_a_list() {
    let server = Server::start(&[]);
    let key = random_key();
    let req = format!(
        "GET /echo HTTP/1.1\r\nhost: localhost\r\nUPGRADE: WebSocket\r\n\
         connection: keep-alive, UPGRADE\r\nsec-websocket-key: {key}\r\n\
         SEC-WEBSOCKET-VERSION: 13\r\n\r\n"
    );
    let mut stream = tcp(server.addr());
    stream.write_all(req.as_bytes()).expect("write request");
    let mut buf = Vec::new();
    let resp = read_response(&mut stream, &mut buf);
    assert_101(&resp, &key);
    let mut client = Client::from_parts(stream, buf, resp);
    client.send_binary(b"\x00\x01\x02");
    client.expect_binary(b"\x00\x01\x02");
}

#[test]
fn connection_header_with_upgrade_among_other_tokens() {
    let server = Server::start(&[]);
    for value in [
        "Upgrade, keep-alive",
        "keep-alive,upgrade",
        "close , Upgrade",
    ] {
        let line = format!("Connection: {value}");
        let req = request_without(&["Connection"], &[&line]);
        let (resp, _s, _r) = http_exchange(server.addr(), req.as_bytes());
        assert_eq!(resp.status, 101, "Connection: {value} -> {resp:?}");
    }
}

#[test]
fn http_1_0_is_400() {
    let server = Server::start(&[]);
    let req = request_without(&[], &[]).replacen("HTTP/1.1", "HTTP/1.0", 1);
    assert_error_response(server.addr(), req.as_bytes(), 400);
}

#[test]
fn malformed_request_line_is_400() {
    let server = Server::start(&[]);
    assert_error_response(server.addr(), b"this is not http\r\n\r\n", 400);
    assert_error_response(server.addr(), b"GET\r\nHost: x\r\n\r\n", 400);
}

#[test]
fn missing_host_is_400() {
    let server = Server::start(&[]);
    let req = request_without(&["Host"], &[]);
    assert_error_response(server.addr(), req.as_bytes(), 400);
}

#[test]
fn missing_or_wrong_upgrade_is_400() {
    let server = Server::start(&[]);
    let req = request_without(&["Upgrade"], &[]);
    assert_error_response(server.addr(), req.as_bytes(), 400);
    let req = request_without(&["Upgrade"], &["Upgrade: h2c"]);
    assert_error_response(server.addr(), req.as_bytes(), 400);
}

#[test]
fn connection_without_upgrade_token_is_400() {
    let server = Server::start(&[]);
    let req = request_without(&["Connection"], &[]);
    assert_error_response(server.addr(), req.as_bytes(), 400);
    let req = request_without(&["Connection"], &["Connection: keep-alive"]);
    assert_error_response(server.addr(), req.as_bytes(), 400);
    // `upgrade` must be a whole token, not a substring.
    let req = request_without(&["Connection"], &["Connection: upgraded"]);
    assert_error_response(server.addr(), req.as_bytes(), 400);
}

#[test]
fn missing_version_is_400() {
    let server = Server::start(&[]);
    let req = request_without(&["Sec-WebSocket-Version"], &[]);
    assert_error_response(server.addr(), req.as_bytes(), 400);
}

#[test]
fn other_version_is_426_with_supported_version() {
    let server = Server::start(&[]);
    for version in ["8", "12", "14"] {
        let line = format!("Sec-WebSocket-Version: {version}");
        let req = request_without(&["Sec-WebSocket-Version"], &[&line]);
        let resp = assert_error_response(server.addr(), req.as_bytes(), 426);
        assert_eq!(
            resp.header("sec-websocket-version"),
            Some("13"),
            "426 must name the supported version: {resp:?}"
        );
    }
}

#[test]
fn missing_key_is_400() {
    let server = Server::start(&[]);
    let req = request_without(&["Sec-WebSocket-Key"], &[]);
    assert_error_response(server.addr(), req.as_bytes(), 400);
}

#[test]
fn invalid_keys_are_400() {
    let server = Server::start(&[]);
    let bad_keys = [
        "",                             // empty
        "not base64 at all!!",          // not base64
        "AAECAwQFBgcICQoLDA0O",         // 15 bytes
        "AAECAwQFBgcICQoLDA0ODxA=",     // 17 bytes
        "AAECAwQFBgcICQoLDA0ODw==AAAA", // trailing garbage
    ];
    for key in bad_keys {
        let line = format!("Sec-WebSocket-Key: {key}");
        let req = request_without(&["Sec-WebSocket-Key"], &[&line]);
        assert_error_response(server.addr(), req.as_bytes(), 400);
    }
    // Control: a valid 16-byte key in the same position is accepted.
    let line = "Sec-WebSocket-Key: AAECAwQFBgcICQoLDA0ODw==";
    let req = request_without(&["Sec-WebSocket-Key"], &[line]);
    let (resp, _s, _r) = http_exchange(server.addr(), req.as_bytes());
    assert_101(&resp, "AAECAwQFBgcICQoLDA0ODw==");
}

#[test]
fn unknown_path_is_404() {
    let server = Server::start(&[]);
    let req = request_without(&[], &[]).replacen("/echo", "/nope", 1);
    assert_error_response(server.addr(), req.as_bytes(), 404);
    assert_error_response(
        server.addr(),
        b"GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n",
        404,
    );
}

#[test]
fn non_get_is_405() {
    let server = Server::start(&[]);
    let req = request_without(&[], &[]).replacen("GET", "POST", 1);
    assert_error_response(server.addr(), req.as_bytes(), 405);
    assert_error_response(
        server.addr(),
        b"POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
        405,
    );
    let req = request_without(&[], &[]).replacen("GET", "DELETE", 1);
    assert_error_response(server.addr(), req.as_bytes(), 405);
}

#[test]
fn healthz_is_200_and_honours_connection_close() {
    let server = Server::start(&[]);
    let (resp, mut stream, rest) = http_exchange(
        server.addr(),
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(
        resp.header("content-length").is_some(),
        "no Content-Length: {resp:?}"
    );
    assert!(!resp.body.is_empty(), "empty /healthz body");
    assert!(
        resp.header_has_token("connection", "close"),
        "no `Connection: close`: {resp:?}"
    );
    assert_closed(&mut stream, &rest);
}

#[test]
fn handshake_split_into_one_byte_writes() {
    let server = Server::start(&[]);
    let (req, key) = upgrade_request("/echo", &[]);
    let mut stream = tcp(server.addr());
    for byte in req.as_bytes() {
        stream.write_all(&[*byte]).expect("write one byte");
        stream.flush().expect("flush");
    }
    let mut buf = Vec::new();
    let resp = read_response(&mut stream, &mut buf);
    assert_101(&resp, &key);
    let mut client = Client::from_parts(stream, buf, resp);
    client.send_text("after a slow handshake");
    client.expect_text("after a slow handshake");
}

#[test]
fn handshake_split_with_pauses_between_writes() {
    // Give the server a chance to see each piece as a separate read (NODELAY is set, and a
    // short pause lets each segment arrive alone); the CRLFCRLF itself is split.
    let server = Server::start(&[]);
    let (req, key) = upgrade_request("/echo", &[]);
    let bytes = req.as_bytes();
    let cut = bytes.len() - 3;
    let mut stream = tcp(server.addr());
    for piece in [&bytes[..10], &bytes[10..cut], &bytes[cut..]] {
        stream.write_all(piece).expect("write a piece");
        thread::sleep(Duration::from_millis(20));
    }
    let mut buf = Vec::new();
    let resp = read_response(&mut stream, &mut buf);
    assert_101(&resp, &key);
}

#[test]
fn frames_pipelined_in_the_same_write_as_the_request_are_processed() {
    let server = Server::start(&[]);
    let (req, key) = upgrade_request("/echo", &[]);
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(&client_frame(true, OP_TEXT, b"first"));
    bytes.extend_from_slice(&client_frame(true, OP_BINARY, b"second"));
    bytes.extend_from_slice(&client_frame(true, OP_PING, b"third"));
    let mut stream = tcp(server.addr());
    stream.write_all(&bytes).expect("write request and frames");
    let mut buf = Vec::new();
    let resp = read_response(&mut stream, &mut buf);
    assert_101(&resp, &key);
    let mut client = Client::from_parts(stream, buf, resp);
    client.expect_text("first");
    client.expect_binary(b"second");
    let (fin, op, payload) = client.read_frame();
    assert!(
        fin && op == OP_PONG && payload == b"third",
        "expected Pong \"third\""
    );
}

#[test]
fn pipelined_close_in_the_same_write_as_the_request() {
    let server = Server::start(&[]);
    let (req, key) = upgrade_request("/echo", &[]);
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(&client_frame(true, OP_CLOSE, &close_payload(1000, b"")));
    let mut stream = tcp(server.addr());
    stream.write_all(&bytes).expect("write request and close");
    let mut buf = Vec::new();
    let resp = read_response(&mut stream, &mut buf);
    assert_101(&resp, &key);
    let mut client = Client::from_parts(stream, buf, resp);
    client.expect_close(1000);
    client.expect_eof();
}

#[test]
fn subprotocol_is_chosen_by_server_preference() {
    let server = Server::start(&["--subprotocol", "chat", "--subprotocol", "superchat"]);
    let client = Client::connect_with(
        server.addr(),
        "/echo",
        &["Sec-WebSocket-Protocol: superchat, chat"],
    );
    assert_eq!(
        client.response.header("sec-websocket-protocol"),
        Some("chat"),
        "server order wins over client order"
    );
    let client = Client::connect_with(
        server.addr(),
        "/echo",
        &["Sec-WebSocket-Protocol: other, superchat"],
    );
    assert_eq!(
        client.response.header("sec-websocket-protocol"),
        Some("superchat")
    );
}

#[test]
fn subprotocol_offer_may_span_several_header_lines() {
    // RFC 6455 §11.3.4: several Sec-WebSocket-Protocol lines are one list.
    let server = Server::start(&["--subprotocol", "chat"]);
    let client = Client::connect_with(
        server.addr(),
        "/echo",
        &[
            "Sec-WebSocket-Protocol: other",
            "Sec-WebSocket-Protocol: chat",
        ],
    );
    assert_eq!(
        client.response.header("sec-websocket-protocol"),
        Some("chat")
    );
}

#[test]
fn no_subprotocol_header_when_nothing_matches() {
    let server = Server::start(&["--subprotocol", "chat"]);
    let mut client = Client::connect_with(
        server.addr(),
        "/echo",
        &["Sec-WebSocket-Protocol: mqtt, wamp"],
    );
    assert!(
        client.response.header("sec-websocket-protocol").is_none(),
        "no match must mean no header: {:?}",
        client.response
    );
    let client2 = Client::connect(server.addr(), "/echo");
    assert!(client2.response.header("sec-websocket-protocol").is_none());
    client.send_text("still works");
    client.expect_text("still works");
}

#[test]
fn origin_not_allowed_is_403() {
    let server = Server::start(&[
        "--allowed-origin",
        "https://good.example",
        "--allowed-origin",
        "https://also.example",
    ]);
    let req = request_without(&[], &["Origin: https://evil.example"]);
    assert_error_response(server.addr(), req.as_bytes(), 403);
    let req = request_without(&[], &["Origin: https://good.example.evil"]);
    assert_error_response(server.addr(), req.as_bytes(), 403);
}

#[test]
fn allowed_origin_is_accepted() {
    let server = Server::start(&[
        "--allowed-origin",
        "https://good.example",
        "--allowed-origin",
        "https://also.example",
    ]);
    for origin in ["https://good.example", "https://also.example"] {
        let line = format!("Origin: {origin}");
        let mut client = Client::connect_with(server.addr(), "/echo", &[&line]);
        client.send_text(origin);
        client.expect_text(origin);
        client.close_cleanly(1000);
    }
}

#[test]
fn any_origin_is_accepted_without_allowed_origin() {
    let server = Server::start(&[]);
    let mut client = Client::connect_with(
        server.addr(),
        "/echo",
        &["Origin: https://anything.example"],
    );
    client.send_text("ok");
    client.expect_text("ok");
}

#[test]
fn tungstenite_client_round_trip() {
    use tungstenite::Message;

    let server = Server::start(&["--subprotocol", "chat"]);
    let stream = tcp(server.addr());
    let url = format!("ws://{}/echo", server.addr());
    let (mut ws, resp) = match tungstenite::client(url.as_str(), stream) {
        Ok(pair) => pair,
        Err(e) => panic!("tungstenite handshake failed: {e}"),
    };
    assert_eq!(resp.status().as_u16(), 101);

    ws.send(Message::text("hello from tungstenite"))
        .expect("send text");
    match ws.read().expect("read text echo") {
        Message::Text(t) => assert_eq!(t.as_str(), "hello from tungstenite"),
        other => panic!("expected text echo, got {other:?}"),
    }

    let blob: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(blob.clone())).expect("send binary");
    match ws.read().expect("read binary echo") {
        Message::Binary(b) => assert!(b.as_ref() == blob.as_slice(), "binary echo differs"),
        other => panic!("expected binary echo, got {other:?}"),
    }

    ws.send(Message::Ping(b"tick".to_vec().into()))
        .expect("send ping");
    match ws.read().expect("read pong") {
        Message::Pong(p) => assert_eq!(p.as_ref(), b"tick"),
        other => panic!("expected pong, got {other:?}"),
    }

    ws.close(None).expect("start close");
    // tungstenite answers until it sees the server's close reply, then ConnectionClosed.
    loop {
        match ws.read() {
            Ok(Message::Close(_)) => {}
            Ok(other) => panic!("unexpected message while closing: {other:?}"),
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("close handshake failed: {e}"),
        }
    }
}
