//! Arbitrary bytes as an HTTP request head: parsing, upgrade validation and the responses
//! must never panic, and what they return must be consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::codec::http::{
    parse_request, validate_upgrade, write_101, write_error, UpgradePolicy,
};

/// Small, so the fuzzer reaches the 431 path as well as complete heads.
const MAX_HEAD_BYTES: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let origins = [
        "http://localhost:8080".to_string(),
        "https://example.com".to_string(),
    ];
    let subprotocols = ["chat".to_string(), "superchat".to_string()];
    let policy = UpgradePolicy {
        allowed_origins: &origins,
        subprotocols: &subprotocols,
        compression: true,
    };
    let open = UpgradePolicy {
        allowed_origins: &[],
        subprotocols: &[],
        compression: false,
    };

    let mut out = Vec::new();
    let req = match parse_request(data, MAX_HEAD_BYTES) {
        Ok(Some(req)) => req,
        Ok(None) => {
            assert!(
                data.len() <= MAX_HEAD_BYTES,
                "incomplete head over the limit"
            );
            return;
        }
        Err(e) => {
            write_error(&mut out, e);
            assert!(out.starts_with(b"HTTP/1.1 "));
            return;
        }
    };
    assert!(req.head_len <= data.len() && req.head_len <= MAX_HEAD_BYTES);
    // Bytes after the head (pipelined frames) must not change how the head parses.
    let again = parse_request(&data[..req.head_len], MAX_HEAD_BYTES);
    assert_eq!(
        again,
        Ok(Some(req.clone())),
        "head parsed differently without its tail"
    );

    for p in [&policy, &open] {
        out.clear();
        match validate_upgrade(&req, p) {
            Ok(up) => {
                assert_eq!(up.accept.len(), 28, "base64 of a SHA-1 digest");
                if let Some(chosen) = up.protocol {
                    assert!(p.subprotocols.iter().any(|s| s == chosen));
                    assert!(req.protocols.contains(&chosen));
                }
                if !p.allowed_origins.is_empty() {
                    let origin = req.origin.expect("an origin was checked");
                    assert!(p
                        .allowed_origins
                        .iter()
                        .any(|a| a.eq_ignore_ascii_case(origin)));
                }
                if let Some(agreed) = up.deflate {
                    assert!(p.compression && !req.extensions.is_empty());
                    assert!((9..=15).contains(&agreed.window_bits()));
                }
                write_101(&mut out, &up);
                assert!(out.starts_with(b"HTTP/1.1 101 ") && out.ends_with(b"\r\n\r\n"));
            }
            Err(e) => {
                write_error(&mut out, e);
                assert!(out.starts_with(b"HTTP/1.1 "));
            }
        }
    }
});
