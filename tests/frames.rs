//! RFC 6455 §5–7 on the wire: echo, ping/pong, fragmentation, every protocol error with its
//! close code, UTF-8 fail-fast, size limits, the close handshake, length encodings and
//! frames split at every byte. All frames are hand-made bytes.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use common::*;

/// Connects, sends `bytes`, and expects the server to fail the connection with `code`.
fn expect_failure(addr: SocketAddr, bytes: &[u8], code: u16) {
    let mut client = Client::connect(addr, "/echo");
    client.send_raw(bytes);
    client.expect_fail(code);
}

/// Sends `bytes` from a second thread while the caller reads, so large echoes can't
/// deadlock on full socket buffers.
fn send_in_background(client: &Client, bytes: Vec<u8>) -> thread::JoinHandle<()> {
    let mut writer = client.stream.try_clone().expect("clone the stream");
    thread::spawn(move || writer.write_all(&bytes).expect("write a large message"))
}

// ----------------------------------------------------------------------------- echo, ping

#[test]
fn text_and_binary_are_echoed_with_their_type() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr(), "/echo");
    c.send_text("héllo wörld ✓");
    c.expect_text("héllo wörld ✓");
    c.send_binary(&[0, 1, 2, 0xFF, 0xFE]);
    c.expect_binary(&[0, 1, 2, 0xFF, 0xFE]);
    c.send_text("");
    c.expect_text("");
    c.send_binary(&[]);
    c.expect_binary(&[]);
    // Binary is not UTF-8 checked.
    c.send_binary(b"\xff\xfe\xc0");
    c.expect_binary(b"\xff\xfe\xc0");
    c.close_cleanly(1000);
}

#[test]
fn many_frames_in_one_write_are_echoed_in_order() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr(), "/echo");
    let mut batch = Vec::new();
    for i in 0..50 {
        batch.extend_from_slice(&client_frame(
            true,
            OP_TEXT,
            format!("message {i}").as_bytes(),
        ));
    }
    c.send_raw(&batch);
    for i in 0..50 {
        c.expect_text(&format!("message {i}"));
    }
}

#[test]
fn ping_gets_pong_with_the_same_payload() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr(), "/echo");
    let max: Vec<u8> = (0..125u8).collect();
    for payload in [&b""[..], b"ping!", &max[..]] {
        c.send_frame(true, OP_PING, payload);
        let f = c.read_frame_full();
        assert_eq!(f.opcode, OP_PONG, "expected Pong, got {}", describe(&f));
        assert_eq!(f.payload, payload, "pong payload differs");
    }
}

#[test]
fn unsolicited_pong_is_ignored() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr(), "/echo");
    c.send_frame(true, OP_PONG, b"nobody asked");
    c.send_text("next");
    c.expect_text("next");
}

// ------------------------------------------------------------------------- fragmentation

#[test]
fn fragmented_message_with_interleaved_ping_and_pong() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr(), "/echo");
    c.send_frame(false, OP_TEXT, b"Hel");
    c.send_frame(true, OP_PING, b"p1");
    c.send_frame(false, OP_CONT, b"lo ");
    c.send_frame(true, OP_PONG, b"unsolicited");
    c.send_frame(false, OP_CONT, b"");
    c.send_frame(true, OP_CONT, b"world");
    let f = c.read_frame_full();
    assert_eq!(
        (f.opcode, f.payload.as_slice()),
        (OP_PONG, &b"p1"[..]),
        "the ping inside the message is answered at once, got {}",
        describe(&f)
    );
    c.expect_text("Hello world");
    // The state is clean afterwards.
    c.send_frame(false, OP_BINARY, b"\x01");
    c.send_frame(true, OP_CONT, b"\x02");
    c.expect_binary(b"\x01\x02");
}

#[test]
fn empty_fragments_are_allowed() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr(), "/echo");
    c.send_frame(false, OP_TEXT, b"");
    c.send_frame(false, OP_CONT, b"");
    c.send_frame(true, OP_CONT, b"abc");
    c.expect_text("abc");
    c.send_frame(false, OP_BINARY, b"");
    c.send_frame(true, OP_CONT, b"");
    c.expect_binary(b"");
}

// ------------------------------------------------------------------------ protocol errors

#[test]
fn rsv_bits_fail_with_1002() {
    let server = Server::start(&[]);
    for rsv in [0b100, 0b010, 0b001, 0b111] {
        let frame = encode_frame(true, rsv, OP_TEXT, Some(random_mask()), b"rsv");
        expect_failure(server.addr(), &frame, 1002);
    }
    // On a control frame too.
    let frame = encode_frame(true, 0b100, OP_PING, Some(random_mask()), b"");
    expect_failure(server.addr(), &frame, 1002);
}

#[test]
fn reserved_opcodes_fail_with_1002() {
    let server = Server::start(&[]);
    for opcode in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        let frame = encode_frame(true, 0, opcode, Some(random_mask()), b"x");
        expect_failure(server.addr(), &frame, 1002);
    }
}

#[test]
fn unmasked_client_frame_fails_with_1002() {
    let server = Server::start(&[]);
    expect_failure(
        server.addr(),
        &encode_frame(true, 0, OP_TEXT, None, b"unmasked"),
        1002,
    );
    expect_failure(
        server.addr(),
        &encode_frame(true, 0, OP_PING, None, b""),
        1002,
    );
}

#[test]
fn fragmented_control_frames_fail_with_1002() {
    let server = Server::start(&[]);
    for opcode in [OP_PING, OP_PONG, OP_CLOSE] {
        let frame = client_frame(false, opcode, b"");
        expect_failure(server.addr(), &frame, 1002);
    }
}

#[test]
fn control_payload_over_125_fails_with_1002() {
    let server = Server::start(&[]);
    expect_failure(
        server.addr(),
        &client_frame(true, OP_PING, &[b'p'; 126]),
        1002,
    );
    expect_failure(
        server.addr(),
        &client_frame(true, OP_PONG, &[b'p'; 200]),
        1002,
    );
    let close = close_payload(1000, &[b'r'; 124]);
    assert_eq!(close.len(), 126);
    expect_failure(server.addr(), &client_frame(true, OP_CLOSE, &close), 1002);
}

#[test]
fn length_with_the_top_bit_set_fails_with_1002_from_the_header() {
    let server = Server::start(&[]);
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(0x8000_0000_0000_0010u64).to_be_bytes());
    header.extend_from_slice(&random_mask());
    // No payload follows: the header alone is invalid.
    expect_failure(server.addr(), &header, 1002);
}

#[test]
fn continuation_without_a_start_fails_with_1002() {
    let server = Server::start(&[]);
    expect_failure(server.addr(), &client_frame(true, OP_CONT, b"orphan"), 1002);
    expect_failure(
        server.addr(),
        &client_frame(false, OP_CONT, b"orphan"),
        1002,
    );
    // Also right after a complete message.
    let mut c = Client::connect(server.addr(), "/echo");
    c.send_text("done");
    c.expect_text("done");
    c.send_frame(true, OP_CONT, b"late");
    c.expect_fail(1002);
}

#[test]
fn new_data_frame_inside_a_fragmented_message_fails_with_1002() {
    let server = Server::start(&[]);
    for second in [OP_TEXT, OP_BINARY] {
        let mut bytes = client_frame(false, OP_TEXT, b"start");
        bytes.extend_from_slice(&client_frame(true, second, b"intruder"));
        expect_failure(server.addr(), &bytes, 1002);
    }
    let mut bytes = client_frame(false, OP_BINARY, b"start");
    bytes.extend_from_slice(&client_frame(false, OP_BINARY, b"intruder"));
    expect_failure(server.addr(), &bytes, 1002);
}

#[test]
fn close_payload_of_one_byte_fails_with_1002() {
    let server = Server::start(&[]);
    expect_failure(server.addr(), &client_frame(true, OP_CLOSE, &[0x03]), 1002);
}

#[test]
fn invalid_close_codes_fail_with_1002() {
    let server = Server::start(&[]);
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999] {
        let frame = client_frame(true, OP_CLOSE, &close_payload(code, b""));
        let mut c = Client::connect(server.addr(), "/echo");
        c.send_raw(&frame);
        let f = c.read_frame_full();
        assert_eq!(
            (f.opcode, f.close_code()),
            (OP_CLOSE, Some(1002)),
            "close code {code} must be refused with 1002, got {}",
            describe(&f)
        );
        c.reply_close_and_expect_eof(1002);
    }
}

#[test]
fn valid_close_codes_are_echoed() {
    let server = Server::start(&[]);
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ] {
        let mut c = Client::connect(server.addr(), "/echo");
        c.send_close(code, "bye");
        let f = c.read_frame_full();
        assert_eq!(
            (f.opcode, f.close_code()),
            (OP_CLOSE, Some(code)),
            "close {code} must be echoed, got {}",
            describe(&f)
        );
        c.expect_eof();
    }
}

// --------------------------------------------------------------------------------- UTF-8

#[test]
fn invalid_utf8_text_fails_with_1007() {
    let server = Server::start(&[]);
    let cases: [&[u8]; 7] = [
        b"\xff",
        b"\xc0\xaf",           // overlong '/'
        b"\xe0\x80\xaf",       // overlong, 3 bytes
        b"\xed\xa0\x80",       // UTF-16 surrogate
        b"\xf4\x90\x80\x80",   // above U+10FFFF
        b"hello\x80world",     // lone continuation byte
        b"ok so far \xe2\x82", // truncated at the end of the message
    ];
    for payload in cases {
        let mut c = Client::connect(server.addr(), "/echo");
        c.send_frame(true, OP_TEXT, payload);
        let f = c.read_frame_full();
        assert_eq!(
            (f.opcode, f.close_code()),
            (OP_CLOSE, Some(1007)),
            "text {payload:?} must fail with 1007, got {}",
            describe(&f)
        );
        c.reply_close_and_expect_eof(1007);
    }
}

#[test]
fn invalid_utf8_fails_fast_before_the_frame_is_complete() {
    let server = Server::start(&[]);
    // κόσμε followed by a code point above U+10FFFF: invalid as soon as 0xF4 0x90 arrives.
    let prefix: &[u8] = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80";
    let mut payload = prefix.to_vec();
    payload.resize(200, b'a');
    let frame = client_frame(true, OP_TEXT, &payload);
    let header_len = 2 + 2 + 4; // 16-bit length + mask
    let mut c = Client::connect(server.addr(), "/echo");
    c.send_raw(&frame[..header_len + prefix.len()]);
    // The rest of the frame is never sent.
    c.expect_fail(1007);
}

#[test]
fn invalid_utf8_in_a_later_fragment_fails_before_the_message_ends() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr(), "/echo");
    c.send_frame(false, OP_TEXT, b"valid start ");
    c.send_frame(false, OP_CONT, b"then \xff");
    // No final fragment.
    c.expect_fail(1007);

    // A code point cut across fragments whose continuation is invalid.
    let mut c = Client::connect(server.addr(), "/echo");
    c.send_frame(false, OP_TEXT, b"\xe2");
    c.send_frame(false, OP_CONT, b"\x28");
    c.expect_fail(1007);
}

#[test]
fn code_points_split_across_fragments_are_valid() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr(), "/echo");
    // "a€𝄞" with each multi-byte code point cut between fragments.
    let text = "a€𝄞";
    let bytes = text.as_bytes();
    c.send_frame(false, OP_TEXT, &bytes[..2]);
    c.send_frame(false, OP_CONT, &bytes[2..3]);
    c.send_frame(false, OP_CONT, &bytes[3..6]);
    c.send_frame(true, OP_CONT, &bytes[6..]);
    c.expect_text(text);
}

#[test]
fn message_ending_inside_a_code_point_fails_with_1007() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr(), "/echo");
    c.send_frame(false, OP_TEXT, b"a\xe2\x82");
    c.send_frame(true, OP_CONT, b"");
    c.expect_fail(1007);
}

#[test]
fn invalid_utf8_close_reason_fails_with_1007() {
    let server = Server::start(&[]);
    expect_failure(
        server.addr(),
        &client_frame(true, OP_CLOSE, &close_payload(1000, b"bad \xff reason")),
        1007,
    );
}

// -------------------------------------------------------------------------------- limits

#[test]
fn message_over_the_limit_fails_with_1009_from_the_header_alone() {
    let server = Server::start(&["--max-message-bytes", "1024"]);
    // A binary frame header announcing 2000 bytes, with no payload.
    let mut header = vec![0x82];
    push_len(&mut header, 0x80, 2000);
    header.extend_from_slice(&random_mask());
    expect_failure(server.addr(), &header, 1009);

    // A 64-bit length far beyond the limit, header only.
    let mut header = vec![0x81];
    push_len(&mut header, 0x80, 1 << 40);
    header.extend_from_slice(&random_mask());
    expect_failure(server.addr(), &header, 1009);
}

#[test]
fn fragmented_message_over_the_limit_fails_with_1009() {
    let server = Server::start(&["--max-message-bytes", "1024"]);
    let mut c = Client::connect(server.addr(), "/echo");
    c.send_frame(false, OP_BINARY, &[7u8; 600]);
    // The second header alone takes the message to 1200 bytes.
    let mut header = vec![0x80];
    push_len(&mut header, 0x80, 600);
    header.extend_from_slice(&random_mask());
    c.send_raw(&header);
    c.expect_fail(1009);
}

#[test]
fn message_at_the_limit_is_echoed() {
    let server = Server::start(&["--max-message-bytes", "1024"]);
    let mut c = Client::connect(server.addr(), "/echo");
    let data = random_bytes(1024);
    c.send_binary(&data);
    c.expect_binary(&data);
    c.send_frame(false, OP_BINARY, &data[..512]);
    c.send_frame(true, OP_CONT, &data[512..]);
    c.expect_binary(&data);
}

#[test]
fn default_limit_is_one_mebibyte() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr(), "/echo");
    let data = random_bytes(1 << 20);
    let writer = send_in_background(&c, client_frame(true, OP_BINARY, &data));
    c.expect_binary(&data);
    writer.join().expect("writer thread");

    let mut header = vec![0x82];
    push_len(&mut header, 0x80, (1 << 20) + 1);
    header.extend_from_slice(&random_mask());
    c.send_raw(&header);
    c.expect_fail(1009);
}

#[test]
fn large_messages_are_echoed_intact() {
    let server = Server::start(&["--max-message-bytes", "4194304"]);
    let mut c = Client::connect(server.addr(), "/echo");

    let data = random_bytes(2 << 20);
    let writer = send_in_background(&c, client_frame(true, OP_BINARY, &data));
    c.expect_binary(&data);
    writer.join().expect("writer thread");

    // A 2 MiB text message in 4000-byte fragments, so multi-byte code points straddle
    // fragment boundaries.
    let text: String = "žluťoučký kůň ✓ 𝄞 ".repeat(2 << 20 >> 5);
    let mut bytes = Vec::new();
    let chunks: Vec<&[u8]> = text.as_bytes().chunks(4000).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let first = i == 0;
        let last = i + 1 == chunks.len();
        bytes.extend_from_slice(&client_frame(
            last,
            if first { OP_TEXT } else { OP_CONT },
            chunk,
        ));
    }
    let writer = send_in_background(&c, bytes);
    c.expect_text(&text);
    writer.join().expect("writer thread");
    c.close_cleanly(1000);
}

// ----------------------------------------------------------------------- length encodings

#[test]
fn length_encodings_in_both_directions() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr(), "/echo");
    for (len, len_bytes) in [
        (0usize, 0u8),
        (1, 0),
        (125, 0),
        (126, 2),
        (127, 2),
        (65535, 2),
        (65536, 8),
        (100_000, 8),
    ] {
        let data = random_bytes(len);
        let frame = client_frame(true, OP_BINARY, &data);
        assert_eq!(
            frame.len(),
            2 + len_bytes as usize + 4 + len,
            "client encoding of {len}"
        );
        let writer = send_in_background(&c, frame);
        let f = c.read_frame_full();
        writer.join().expect("writer thread");
        assert!(
            f.fin && f.opcode == OP_BINARY,
            "echo of {len} bytes: {}",
            describe(&f)
        );
        assert_eq!(f.payload.len(), len);
        assert!(f.payload == data, "echo of {len} bytes differs");
        assert_eq!(
            f.len_bytes, len_bytes,
            "server length encoding for {len} bytes"
        );
    }
}

// ---------------------------------------------------------------------------- split input

#[test]
fn a_frame_split_at_every_byte_is_echoed() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr(), "/echo");
    // 130 bytes of text: a 16-bit length, so the split also falls inside the length field.
    let text: String = "split é ".repeat(15).chars().take(130).collect();
    let frame = client_frame(true, OP_TEXT, text.as_bytes());
    for cut in 1..frame.len() {
        c.send_raw(&frame[..cut]);
        // Let the first piece arrive alone (there is no event to wait on here).
        thread::sleep(Duration::from_millis(1));
        c.send_raw(&frame[cut..]);
        c.expect_text(&text);
    }
}

#[test]
fn a_fragmented_message_with_a_ping_split_at_every_byte() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr(), "/echo");
    let mut stream = client_frame(false, OP_TEXT, "frag€".as_bytes());
    stream.extend_from_slice(&client_frame(true, OP_PING, b"mid"));
    stream.extend_from_slice(&client_frame(true, OP_CONT, "ment€".as_bytes()));
    for cut in 1..stream.len() {
        c.send_raw(&stream[..cut]);
        thread::sleep(Duration::from_millis(1));
        c.send_raw(&stream[cut..]);
        let f = c.read_frame_full();
        assert_eq!(
            (f.opcode, f.payload.as_slice()),
            (OP_PONG, &b"mid"[..]),
            "cut at {cut}: {}",
            describe(&f)
        );
        c.expect_text("frag€ment€");
    }
}

#[test]
fn a_frame_sent_one_byte_per_write_is_echoed() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr(), "/echo");
    let data = random_bytes(300);
    let frame = client_frame(true, OP_BINARY, &data);
    for byte in &frame {
        c.send_raw(&[*byte]);
    }
    c.expect_binary(&data);
}

// ----------------------------------------------------------------------- close handshake

#[test]
fn close_handshake_echoes_the_code_then_closes_tcp() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr(), "/echo");
    c.send_text("before close");
    c.expect_text("before close");
    c.send_close(1000, "bye");
    c.expect_close(1000);
    c.expect_eof();

    let mut c = Client::connect(server.addr(), "/echo");
    c.send_close(4321, "");
    c.expect_close(4321);
    c.expect_eof();
}

#[test]
fn empty_close_gets_an_empty_close_reply() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr(), "/echo");
    c.send_frame(true, OP_CLOSE, b"");
    let f = c.read_frame_full();
    assert_eq!(f.opcode, OP_CLOSE, "expected Close, got {}", describe(&f));
    assert!(
        f.payload.is_empty(),
        "empty close must get an empty reply: {}",
        describe(&f)
    );
    c.expect_eof();
}

#[test]
fn data_after_a_close_is_not_echoed() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr(), "/echo");
    let mut bytes = client_frame(true, OP_CLOSE, &close_payload(1000, b""));
    bytes.extend_from_slice(&client_frame(true, OP_TEXT, b"too late"));
    c.send_raw(&bytes);
    c.expect_close(1000);
    c.expect_eof();
}

#[test]
fn close_in_the_middle_of_a_fragmented_message_is_answered() {
    // Control frames may be interleaved with fragments, Close included.
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr(), "/echo");
    c.send_frame(false, OP_TEXT, b"unfinished");
    c.send_close(1000, "");
    c.expect_close(1000);
    c.expect_eof();
}
