//! Micro-benchmarks of the pure codecs: frame headers, unmasking, UTF-8 validation, the
//! streaming decoder, the HTTP upgrade and permessage-deflate. Every group sets a `Throughput`, so criterion
//! reports bytes/s or elements/s next to the time per iteration.
//!
//! Run: `cargo bench --bench codec` (add `-- --quick` for a short pass). Compare against a
//! saved baseline with `-- --save-baseline NAME` / `-- --baseline NAME` before merging a
//! hot-path change, and record the figures in tuning.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

use switchboard::codec::decoder::{Decoder, Event, Flow};
use switchboard::codec::deflate::{Deflate, Inflater};
use switchboard::codec::frame::{
    decode_client_header, encode_server_header, OpCode, MAX_HEADER_LEN,
};
use switchboard::codec::http::{parse_request, validate_upgrade, write_101, UpgradePolicy};
use switchboard::codec::mask::{apply_mask, apply_mask_bytewise};
use switchboard::codec::utf8::Utf8Validator;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const KIB: usize = 1024;
/// Large enough that no benchmarked message is refused.
const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// A masked client frame, as a browser would send it.
fn client_frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode.bits()];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n => match u16::try_from(n) {
            Ok(n) => {
                out.push(0x80 | 126);
                out.extend_from_slice(&n.to_be_bytes());
            }
            Err(_) => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        },
    }
    out.extend_from_slice(&KEY);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask_bytewise(&mut out[start..], KEY, 0);
    out
}

/// About `len` bytes of mixed 2-, 3- and 4-byte UTF-8, cut back to a character boundary.
fn multibyte_text(len: usize) -> Vec<u8> {
    let sample = "κόσμε 世界 𝄞 привет € ";
    let mut s = sample.repeat(len / sample.len() + 1);
    let mut end = len;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.into_bytes()
}

fn ascii_text(len: usize) -> Vec<u8> {
    b"the quick brown fox jumps over the lazy dog. "
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

fn frame_header(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_header");
    group.throughput(Throughput::Elements(1));
    for (name, len) in [("7bit", 100usize), ("16bit", 1000), ("64bit", 100_000)] {
        let frame = client_frame(true, OpCode::Binary, &vec![0u8; len]);
        let header = &frame[..frame.len() - len];
        group.bench_with_input(BenchmarkId::new("decode", name), header, |b, h| {
            b.iter(|| decode_client_header(black_box(h)))
        });
        group.bench_with_input(BenchmarkId::new("encode", name), &len, |b, &len| {
            let mut out = [0u8; MAX_HEADER_LEN];
            b.iter(|| encode_server_header(&mut out, true, OpCode::Binary, black_box(len)))
        });
    }
    group.finish();
}

fn unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask");
    for size in [16, KIB, 64 * KIB] {
        let mut buf = vec![0x5au8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("apply_mask", size), |b| {
            b.iter(|| apply_mask(black_box(&mut buf), black_box(KEY), 0))
        });
        // The payload of a frame with a 64-bit length starts 14 bytes into the read buffer.
        let mut shifted = vec![0x5au8; size + 14];
        group.bench_function(BenchmarkId::new("apply_mask_at_14", size), |b| {
            b.iter(|| apply_mask(black_box(&mut shifted[14..]), black_box(KEY), 0))
        });
        group.bench_function(BenchmarkId::new("apply_mask_bytewise", size), |b| {
            b.iter(|| apply_mask_bytewise(black_box(&mut buf), black_box(KEY), 0))
        });
    }
    group.finish();
}

fn utf8(c: &mut Criterion) {
    let mut group = c.benchmark_group("utf8");
    for size in [KIB, 64 * KIB] {
        for (kind, text) in [
            ("ascii", ascii_text(size)),
            ("multibyte", multibyte_text(size)),
        ] {
            group.throughput(Throughput::Bytes(text.len() as u64));
            let label = format!("{kind}/{size}");
            group.bench_with_input(BenchmarkId::new("whole", &label), &text, |b, t| {
                b.iter(|| {
                    let mut v = Utf8Validator::new();
                    let ok = v.feed(black_box(t)).is_ok();
                    ok && v.is_complete()
                })
            });
            group.bench_with_input(BenchmarkId::new("100B_pieces", &label), &text, |b, t| {
                b.iter(|| {
                    let mut v = Utf8Validator::new();
                    let ok = black_box(t).chunks(100).all(|p| v.feed(p).is_ok());
                    ok && v.is_complete()
                })
            });
            // Baseline: the standard library's one-shot validator.
            group.bench_with_input(BenchmarkId::new("std_from_utf8", &label), &text, |b, t| {
                b.iter(|| std::str::from_utf8(black_box(t)).is_ok())
            });
        }
    }
    group.finish();
}

/// Decodes every read in `reads` with one decoder; returns the payload bytes seen.
fn decode_reads(decoder: &mut Decoder, reads: &mut [Vec<u8>]) -> usize {
    let mut seen = 0;
    for read in reads {
        let flow = decoder.decode(read, MAX_MESSAGE_BYTES, |e| {
            if let Event::Message { payload, .. } = e {
                seen += black_box(payload.as_slice()).len();
            }
            Flow::Continue
        });
        assert_eq!(flow, Ok(Flow::Continue));
    }
    seen
}

fn decoder(c: &mut Criterion) {
    let mut group = c.benchmark_group("decoder");

    // 100 text frames of 20 bytes each (6-byte header + 14-byte payload), in one read.
    let small: Vec<u8> = (0..100)
        .flat_map(|_| client_frame(true, OpCode::Text, b"hello, world!!"))
        .collect();
    assert_eq!(small.len(), 100 * 20);

    let binary = client_frame(true, OpCode::Binary, &vec![0xa5; 64 * KIB]);
    let text = client_frame(true, OpCode::Text, &multibyte_text(64 * KIB));

    let cases: [(&str, Vec<Vec<u8>>); 4] = [
        ("100x20B_text_frames", vec![small]),
        ("64KiB_binary_frame", vec![binary.clone()]),
        ("64KiB_text_frame", vec![text]),
        // The same frame cut by 4 KiB reads: the copy into the decoder's own buffer.
        (
            "64KiB_binary_frame_4KiB_reads",
            binary.chunks(4 * KIB).map(<[u8]>::to_vec).collect(),
        ),
    ];
    for (name, reads) in cases {
        let bytes: usize = reads.iter().map(Vec::len).sum();
        group.throughput(Throughput::Bytes(bytes as u64));
        let mut d = Decoder::new();
        // Decoding unmasks in place, so each iteration gets a fresh (untimed) copy, made just
        // before it like a socket read would be: cache-hot. Batching copies would measure L3
        // instead. Each routine takes microseconds, so per-iteration timing costs little.
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || reads.clone(),
                |reads| decode_reads(&mut d, reads),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// What Chrome sends to open a WebSocket (key from RFC 6455 §1.3).
const BROWSER_REQUEST: &[u8] = b"GET /ws HTTP/1.1\r\n\
Host: localhost:8080\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: http://localhost:8080\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\n\
\r\n";

/// A typical `--max-header-bytes`.
const MAX_HEAD_BYTES: usize = 8 * KIB;

fn handshake(c: &mut Criterion) {
    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Elements(1));
    let origins = vec!["http://localhost:8080".to_string()];
    let subprotocols = vec!["superchat".to_string()];
    let policy = UpgradePolicy {
        allowed_origins: &origins,
        subprotocols: &subprotocols,
        // As the server runs by default; the figures in the README were measured so.
        compression: false,
    };
    group.bench_function("parse_request", |b| {
        b.iter(|| parse_request(black_box(BROWSER_REQUEST), MAX_HEAD_BYTES).is_ok())
    });
    let mut out = Vec::with_capacity(256);
    group.bench_function("browser_upgrade", |b| {
        b.iter(|| {
            out.clear();
            let req = parse_request(black_box(BROWSER_REQUEST), MAX_HEAD_BYTES)
                .expect("a valid request")
                .expect("a complete request");
            let up = validate_upgrade(&req, &policy).expect("an acceptable upgrade");
            write_101(&mut out, &up);
            out.len()
        })
    });
    group.finish();
}

/// About 1 KiB of JSON records like a feed publishes (what `switchboard-bench broadcast
/// --json-records --size 1024` sends): the cost of compressing one broadcast, which is paid
/// once per message whatever the number of subscribers.
fn json_kib() -> Vec<u8> {
    let mut s = String::from("{\"seq\":1,\"records\":[");
    let mut i = 0u64;
    while s.len() < KIB {
        let r = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7;
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            "{{\"id\":{},\"user\":\"user-{}\",\"price\":{}.{:02},\"status\":\"{}\"}}",
            100 + i,
            r % 5000,
            r % 900,
            r % 100,
            ["open", "filled", "partial"][(r % 3) as usize]
        ));
        i += 1;
    }
    s.push_str("]}");
    s.into_bytes()
}

fn deflate(c: &mut Criterion) {
    let mut group = c.benchmark_group("deflate");
    let json = json_kib();
    group.throughput(Throughput::Bytes(json.len() as u64));
    let mut codec = Deflate::new();
    group.bench_function("compress_1KiB_json", |b| {
        b.iter(|| {
            codec
                .compress_message(black_box(&json), 15)
                .map_or(0, <[u8]>::len)
        })
    });
    let mut z = Vec::new();
    codec.compress(&json, 15, &mut z);
    let mut inflater = Inflater::default();
    group.bench_function("inflate_1KiB_json", |b| {
        b.iter(|| {
            inflater
                .inflate(&[black_box(&z)], MAX_MESSAGE_BYTES)
                .map_or(0, |v| v.len())
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    frame_header,
    unmask,
    utf8,
    decoder,
    handshake,
    deflate
);
criterion_main!(benches);
