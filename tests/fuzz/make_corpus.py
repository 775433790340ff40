#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets: tests/fuzz/corpus/{handshake,frames,deflate}/.

Run from anywhere: python3 tests/fuzz/make_corpus.py. The output is deterministic, so re-running
it changes nothing unless this script changed. Each seed is a small binary file named after
what it holds.
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3

# --- handshake -----------------------------------------------------------------------------


def head(request_line, headers, tail=b""):
    lines = [request_line] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + tail


CHROME = [
    ("Host", "localhost:8080"),
    ("Connection", "Upgrade"),
    ("Pragma", "no-cache"),
    ("Cache-Control", "no-cache"),
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/124.0.0.0 Safari/537.36"),
    ("Upgrade", "websocket"),
    ("Origin", "http://localhost:8080"),
    ("Sec-WebSocket-Version", "13"),
    ("Accept-Encoding", "gzip, deflate, br, zstd"),
    ("Accept-Language", "en-US,en;q=0.9"),
    ("Sec-WebSocket-Key", KEY.decode()),
    ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
]

FIREFOX = [
    ("Host", "example.com"),
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"),
    ("Accept", "*/*"),
    ("Sec-WebSocket-Version", "13"),
    ("Origin", "https://example.com"),
    ("Sec-WebSocket-Protocol", "chat, superchat"),
    ("Sec-WebSocket-Key", "x3JJHMbDL1EzLkh9GBhXDw=="),
    ("Connection", "keep-alive, Upgrade"),
    ("Upgrade", "websocket"),
]

MINIMAL = [
    ("Host", "a"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY.decode()),
    ("Sec-WebSocket-Version", "13"),
]


def replace(headers, name, value):
    """`headers` with `name` set to `value` (None drops it)."""
    out = [(k, v) for k, v in headers if k.lower() != name.lower()]
    return out if value is None else out + [(name, value)]


def handshake_seeds():
    get = "GET /ws HTTP/1.1"
    return {
        "browser_chrome": head(get, CHROME),
        "browser_firefox_subprotocols": head("GET /chat?room=1 HTTP/1.1", FIREFOX),
        "minimal": head(get, MINIMAL),
        "subprotocols_two_lines": head(get, MINIMAL + [
            ("Sec-WebSocket-Protocol", "v2.json"),
            ("Sec-WebSocket-Protocol", "superchat, chat"),
            ("Origin", "https://EXAMPLE.com"),
        ]),
        # Frames pipelined right behind the head: the tail must not change the parse.
        "pipelined_frame_tail": head(get, MINIMAL,
                                     tail=bytes.fromhex("818537fa213d7f9f4d5158")),
        "origin_not_allowed": head(get, replace(CHROME, "Origin", "http://evil.example")),
        "version_8": head(get, replace(MINIMAL, "Sec-WebSocket-Version", "8")),
        "key_repeated": head(get, MINIMAL + [("Sec-WebSocket-Key", KEY.decode())]),
        "key_not_16_bytes": head(get, replace(MINIMAL, "Sec-WebSocket-Key", "c2hvcnQ=")),
        "no_host": head(get, replace(MINIMAL, "Host", None)),
        "http_1_0": head("GET /ws HTTP/1.0", MINIMAL),
        "post": head("POST /ws HTTP/1.1", MINIMAL + [("Content-Length", "0")]),
        "no_upgrade_token": head(get, replace(MINIMAL, "Connection", "keep-alive")),
        "incomplete_head": head(get, MINIMAL)[:-2],
        "bare_lf": head(get, MINIMAL).replace(b"\r\n", b"\n"),
        "garbage_request_line": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        "non_utf8_header_value": head(get, MINIMAL).replace(b"Host: a", b"Host: \xff\xfe"),
    }


# --- frames --------------------------------------------------------------------------------

MAX_1MIB = 7  # index of 1 << 20 in frames.rs MAX_MESSAGE
MAX_125 = 2


def frame(opcode, payload, fin=True, key=b"\x37\xfa\x21\x3d", length_bytes=None):
    """A masked client frame. `length_bytes` forces a 2- or 8-byte extended length."""
    n = len(payload)
    if length_bytes is None:
        length_bytes = 0 if n < 126 else 2 if n <= 0xFFFF else 8
    out = bytes([(0x80 if fin else 0) | opcode])
    if length_bytes == 0:
        out += bytes([0x80 | n])
    elif length_bytes == 2:
        out += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        out += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return out + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def fuzz_input(stream, cuts=(), max_index=MAX_1MIB):
    """The frames target's layout: control byte, little-endian u16 cut points, stream."""
    assert len(cuts) <= 15
    out = bytes([(len(cuts) << 4) | max_index])
    out += b"".join(struct.pack("<H", c) for c in cuts)
    return out + stream


def close(code, reason=b""):
    return frame(0x8, struct.pack(">H", code) + reason)


def frames_seeds():
    greek = "κόσμε".encode()
    fragmented = (frame(0x1, greek[:3], fin=False)
                  + frame(0x9, b"ping!")
                  + frame(0x0, greek[3:7], fin=False, key=b"\x01\x02\x03\x04")
                  + frame(0xA, b"")
                  + frame(0x0, greek[7:]))
    medium = frame(0x2, bytes(range(256)) + bytes(44))  # 300 bytes: 16-bit length
    # A 64-bit length for a small payload: not minimal, but accepted (Autobahn 1.1.x).
    long_len = frame(0x2, b"x" * 200, length_bytes=8)
    return {
        "text_hello": fuzz_input(frame(0x1, b"Hello")),
        "binary": fuzz_input(frame(0x2, bytes([0, 1, 2, 0xFE, 0xFF]))),
        "text_then_binary_cut": fuzz_input(frame(0x1, b"abc") + frame(0x2, b"def"),
                                           cuts=[1, 7, 9]),
        "fragmented_text_with_ping_pong": fuzz_input(fragmented, cuts=[2, 5, 12, 20, 30]),
        "close_normal_reason": fuzz_input(close(1000, b"bye") + frame(0x1, b"late")),
        "close_empty": fuzz_input(frame(0x8, b"")),
        "close_invalid_code": fuzz_input(close(1005)),
        "len16_binary": fuzz_input(medium, cuts=[3, 100, 301]),
        "len64_binary": fuzz_input(long_len, cuts=[5, 13, 14]),
        "too_big_for_125": fuzz_input(frame(0x2, b"y" * 126), max_index=MAX_125),
        "invalid_utf8_text": fuzz_input(frame(0x1, b"ok\xce\xba\xf4\x90\x80\x80")),
        "utf8_split_across_fragments": fuzz_input(frame(0x1, b"\xe2\x82", fin=False)
                                                  + frame(0x0, b"\xac"), cuts=[7]),
        "unmasked_frame": fuzz_input(bytes.fromhex("810548656c6c6f")),
        "empty_fragments": fuzz_input(frame(0x2, b"", fin=False) + frame(0x0, b"")
                                      + frame(0x1, b"")),
    }


# --- deflate -------------------------------------------------------------------------------


def record(tag, data):
    """One record of the deflate target's script: tag, u16 LE length, bytes."""
    return bytes([tag]) + struct.pack("<H", len(data)) + data


def deflate_seeds():
    json_rows = b"[" + b",".join(b'{"id":%d,"name":"user %d"}' % (i, i) for i in range(40)) + b"]"
    hello_compressed = bytes.fromhex("f248cdc9c90700")  # RFC 7692 section 7.2.3.1
    return {
        # tag 0x10: text, one fragment, window 9; 0x1C: text in 4 fragments; 0xE0: binary, window 15
        "text_compressed": fuzz_input(record(0x10, b"Hello, Hello, Hello")),
        "json_in_4_fragments_cut": fuzz_input(record(0x1C, json_rows), cuts=[3, 40, 41, 200]),
        "binary_window_15": fuzz_input(record(0xE0, bytes(range(256)) * 4)),
        "compressed_then_plain_then_ping": fuzz_input(record(0x10, json_rows)
                                                      + record(0x03 | 0x04 | 0x40, b"plain")
                                                      + record(0x03 | (9 << 2) | 0x40, b"p")),
        "rfc_hello_raw_frame": fuzz_input(record(0x02 | (1 << 2), hello_compressed)),
        "rsv1_on_ping": fuzz_input(record(0x02 | (9 << 2), b"x")),
        "rsv1_on_continuation": fuzz_input(record(0x03 | (1 << 2), b"a")
                                           + record(0x02 | (0 << 2), b"b")),
        "corrupt_deflate": fuzz_input(record(0x02 | (2 << 2), b"\xff\xff\xff")),
        "bomb_over_1000": fuzz_input(record(0x00, bytes(5000)), max_index=4),
        "empty_message": fuzz_input(record(0x10, b"")),
    }


def write(target, seeds):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    print(f"{len(seeds)} seeds in {os.path.relpath(d)}")


if __name__ == "__main__":
    write("handshake", handshake_seeds())
    write("frames", frames_seeds())
    write("deflate", deflate_seeds())
