//! The HTTP/1.1 side of a connection: parsing a request head, validating a WebSocket upgrade
//! (RFC 6455 §4.2.1), and the bytes of the responses (101, or an error with a short body).
//!
//! Pure functions over byte slices; the event loop feeds them what it read.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha1::{Digest, Sha1};

use crate::codec::deflate::{self, Agreed};
use crate::error::HandshakeError;

/// Most header lines we look at; more is refused with 431 like an oversized block.
pub const MAX_HEADERS: usize = 64;
/// RFC 6455 §1.3: appended to the client's key before hashing.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The parts of a request head switchboard uses, borrowed from the read buffer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// Everything after `?`, undecoded; empty if none.
    pub query: &'a str,
    /// HTTP/1.x minor version.
    pub minor_version: u8,
    /// Bytes the head took (request line, headers, blank line).
    pub head_len: usize,
    pub host: Option<&'a str>,
    /// Whether `Upgrade` lists `websocket` (case-insensitive).
    pub upgrade_websocket: bool,
    /// Whether `Connection` lists the `upgrade` token (case-insensitive, any header instance).
    pub connection_upgrade: bool,
    /// Whether `Connection` lists `close`.
    pub connection_close: bool,
    /// Whether `Connection` lists `keep-alive` (what an HTTP/1.0 client asks with).
    pub connection_keep_alive: bool,
    pub ws_key: Option<&'a str>,
    /// A second `Sec-WebSocket-Key` line makes the request malformed.
    pub ws_key_repeated: bool,
    pub ws_version: Option<&'a str>,
    pub origin: Option<&'a str>,
    /// All `Sec-WebSocket-Protocol` values, comma lists joined in order.
    pub protocols: Vec<&'a str>,
    /// Every `Sec-WebSocket-Extensions` value, in order (parsed by the negotiation).
    pub extensions: Vec<&'a str>,
    pub content_length: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub transfer_encoding: Option<&'a str>,
    pub authorization: Option<&'a str>,
    pub last_event_id: Option<&'a str>,
}

/// Where the end of a request head (`\r\n\r\n`) is in `buf`, searching from `from` (bytes
/// before it were already searched; the marker may straddle the boundary).
pub fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    buf.get(start..)?
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| start + p + 4)
}

/// Parses a request head from the start of `buf`. `Ok(None)` means it is incomplete (and
/// still under `max_bytes`); anything over `max_bytes` is refused with 431.
pub fn parse_request(buf: &[u8], max_bytes: usize) -> Result<Option<Request<'_>>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > max_bytes => {
            return Err(HandshakeError::HeadersTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::HeadersTooLarge),
        Err(_) => return Err(HandshakeError::Malformed("malformed HTTP request")),
    };
    if head_len > max_bytes {
        return Err(HandshakeError::HeadersTooLarge);
    }
    let (Some(method), Some(target), Some(minor_version)) = (req.method, req.path, req.version)
    else {
        return Err(HandshakeError::Malformed("malformed HTTP request"));
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut out = Request {
        method,
        path,
        query,
        minor_version,
        head_len,
        ..Request::default()
    };
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| HandshakeError::Malformed("header value is not UTF-8"))?
            .trim();
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            out.host = Some(value);
        } else if name.eq_ignore_ascii_case("upgrade") {
            out.upgrade_websocket |= has_token(value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            out.connection_upgrade |= has_token(value, "upgrade");
            out.connection_close |= has_token(value, "close");
            out.connection_keep_alive |= has_token(value, "keep-alive");
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            out.ws_key_repeated |= out.ws_key.is_some();
            out.ws_key = Some(value);
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            out.ws_version = Some(value);
        } else if name.eq_ignore_ascii_case("origin") {
            out.origin = Some(value);
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            out.protocols
                .extend(value.split(',').map(str::trim).filter(|p| !p.is_empty()));
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
            out.extensions.push(value);
        } else if name.eq_ignore_ascii_case("content-length") {
            out.content_length = Some(value);
        } else if name.eq_ignore_ascii_case("content-type") {
            out.content_type = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            out.transfer_encoding = Some(value);
        } else if name.eq_ignore_ascii_case("authorization") {
            out.authorization = Some(value);
        } else if name.eq_ignore_ascii_case("last-event-id") {
            out.last_event_id = Some(value);
        }
    }
    Ok(Some(out))
}

fn has_token(list: &str, token: &str) -> bool {
    list.split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// What the server needs to answer an accepted upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade<'a> {
    pub accept: String,
    /// The subprotocol chosen, if the client offered one we speak.
    pub protocol: Option<&'a str>,
    /// permessage-deflate, when enabled and the client offered terms we accept.
    pub deflate: Option<Agreed>,
}

/// Policy for upgrades, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct UpgradePolicy<'c> {
    /// Empty: any origin.
    pub allowed_origins: &'c [String],
    /// In order of the server's preference.
    pub subprotocols: &'c [String],
    /// Accept permessage-deflate offers (`--compression`).
    pub compression: bool,
}

/// Validates a WebSocket opening handshake (method and path are the router's business).
pub fn validate_upgrade<'a>(
    req: &Request<'a>,
    policy: &UpgradePolicy<'_>,
) -> Result<Upgrade<'a>, HandshakeError> {
    if req.minor_version < 1 {
        return Err(HandshakeError::Malformed(
            "WebSocket upgrade needs HTTP/1.1",
        ));
    }
    if req.host.is_none_or(str::is_empty) {
        return Err(HandshakeError::Malformed("missing Host header"));
    }
    if !req.upgrade_websocket {
        return Err(HandshakeError::Malformed("missing Upgrade: websocket"));
    }
    if !req.connection_upgrade {
        return Err(HandshakeError::Malformed(
            "Connection header lacks the upgrade token",
        ));
    }
    match req.ws_version {
        Some("13") => {}
        Some(_) => return Err(HandshakeError::UnsupportedVersion),
        None => return Err(HandshakeError::Malformed("missing Sec-WebSocket-Version")),
    }
    let key = match req.ws_key {
        Some(k) if !req.ws_key_repeated && key_is_valid(k) => k,
        _ => {
            return Err(HandshakeError::Malformed(
                "missing or invalid Sec-WebSocket-Key",
            ))
        }
    };
    if !policy.allowed_origins.is_empty() {
        let allowed = req.origin.is_some_and(|o| {
            policy
                .allowed_origins
                .iter()
                .any(|a| a.eq_ignore_ascii_case(o))
        });
        if !allowed {
            return Err(HandshakeError::OriginNotAllowed);
        }
    }
    // The server's preference decides among what the client offered.
    let protocol = policy.subprotocols.iter().find_map(|ours| {
        req.protocols
            .iter()
            .find(|&&theirs| theirs == ours)
            .copied()
    });
    let deflate = if policy.compression {
        deflate::negotiate(req.extensions.iter().copied())
    } else {
        None
    };
    Ok(Upgrade {
        accept: accept_key(key),
        protocol,
        deflate,
    })
}

/// A valid key is the base64 encoding of 16 bytes (§4.1).
fn key_is_valid(key: &str) -> bool {
    key.len() == 24 && BASE64.decode(key).is_ok_and(|k| k.len() == 16)
}

/// `Sec-WebSocket-Accept` for a client key (§4.2.2 step 5.4).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

/// Appends the 101 response to `out`.
pub fn write_101(out: &mut Vec<u8>, up: &Upgrade<'_>) {
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    out.extend_from_slice(up.accept.as_bytes());
    if let Some(p) = up.protocol {
        out.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
        out.extend_from_slice(p.as_bytes());
    }
    if let Some(agreed) = &up.deflate {
        out.extend_from_slice(b"\r\nSec-WebSocket-Extensions: ");
        out.extend_from_slice(agreed.answer().as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
}

/// The standard reason phrase for the statuses switchboard sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Appends a complete `Connection: close` error response with a one-line text body.
pub fn write_error(out: &mut Vec<u8>, err: HandshakeError) {
    let status = err.http_status();
    let extra: std::borrow::Cow<'static, str> = match err {
        HandshakeError::UnsupportedVersion => "Sec-WebSocket-Version: 13\r\n".into(),
        HandshakeError::AtCapacity | HandshakeError::TooManyClients => "Retry-After: 1\r\n".into(),
        HandshakeError::MethodNotAllowed => "Allow: GET, HEAD, POST\r\n".into(),
        HandshakeError::ConnectingTooFast(secs) => format!("Retry-After: {secs}\r\n").into(),
        // RFC 6750 §3: the scheme, and `invalid_token` when one was given and refused.
        HandshakeError::Unauthorized(_) => {
            "WWW-Authenticate: Bearer realm=\"switchboard\"\r\n".into()
        }
        _ => "".into(),
    };
    write_simple(
        out,
        status,
        "text/plain; charset=utf-8",
        &extra,
        format!("{}\n", err.reason()).as_bytes(),
        true,
    );
}

/// Appends a complete response with a fixed body. `extra_headers` is zero or more full
/// `Name: value\r\n` lines.
pub fn write_simple(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    extra_headers: &str,
    body: &[u8],
    close: bool,
) {
    write_response(
        out,
        status,
        content_type,
        extra_headers,
        body,
        body.len(),
        close,
    );
}

/// Like [`write_simple`], with the `Content-Length` given separately (a HEAD response
/// announces the length of the body it does not send).
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    extra_headers: &str,
    body: &[u8],
    content_length: usize,
    close: bool,
) {
    use std::io::Write;
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {content_length}\r\n{extra_headers}{}\r\n",
        reason_phrase(status),
        if close { "Connection: close\r\n" } else { "" },
    );
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &[u8] = b"GET /echo?x=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n\r\n";

    fn policy<'c>(origins: &'c [String], protos: &'c [String]) -> UpgradePolicy<'c> {
        UpgradePolicy {
            allowed_origins: origins,
            subprotocols: protos,
            compression: false,
        }
    }

    fn parse(buf: &[u8]) -> Request<'_> {
        parse_request(buf, 8192).unwrap().unwrap()
    }

    #[test]
    fn rfc6455_accept_key_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn parses_a_good_upgrade() {
        let r = parse(GOOD);
        assert_eq!(
            (r.method, r.path, r.query, r.head_len),
            ("GET", "/echo", "x=1", GOOD.len())
        );
        assert!(r.upgrade_websocket && r.connection_upgrade && !r.connection_close);
        assert_eq!(r.protocols, vec!["chat", "superchat"]);
        let up = validate_upgrade(&r, &policy(&[], &[])).unwrap();
        assert_eq!(up.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(up.protocol, None);
        let mut out = Vec::new();
        write_101(&mut out, &up);
        assert_eq!(
            out,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
    }

    #[test]
    fn every_prefix_is_partial_and_trailing_bytes_are_not_part_of_the_head() {
        for cut in 0..GOOD.len() {
            assert_eq!(parse_request(&GOOD[..cut], 8192), Ok(None), "cut {cut}");
        }
        let mut with_frame = GOOD.to_vec();
        with_frame.extend_from_slice(&[0x81, 0x80, 1, 2, 3, 4]);
        assert_eq!(parse(&with_frame).head_len, GOOD.len());
    }

    #[test]
    fn head_end_search_handles_a_marker_across_reads() {
        let buf = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest";
        for from in 0..buf.len() - 4 {
            assert_eq!(find_head_end(buf, from.min(26)), Some(27), "from {from}");
        }
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r", 0), None);
    }

    #[test]
    fn subprotocol_follows_server_preference() {
        let ours = vec!["superchat".to_string(), "chat".to_string()];
        let up = validate_upgrade(&parse(GOOD), &policy(&[], &ours)).unwrap();
        assert_eq!(up.protocol, Some("superchat"));
        let none = vec!["mqtt".to_string()];
        assert_eq!(
            validate_upgrade(&parse(GOOD), &policy(&[], &none))
                .unwrap()
                .protocol,
            None
        );
        let mut out = Vec::new();
        write_101(
            &mut out,
            &Upgrade {
                accept: "x".into(),
                protocol: Some("chat"),
                deflate: None,
            },
        );
        assert!(out.ends_with(b"Sec-WebSocket-Accept: x\r\nSec-WebSocket-Protocol: chat\r\n\r\n"));
    }

    #[test]
    fn permessage_deflate_goes_into_the_101_when_enabled() {
        let offer = String::from_utf8_lossy(GOOD).replace(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Extensions: x-foo\r\nsec-websocket-extensions: permessage-deflate; server_max_window_bits=10\r\n\r\n",
        );
        let r = parse(offer.as_bytes());
        assert_eq!(r.extensions.len(), 2);
        let off = validate_upgrade(&r, &policy(&[], &[])).unwrap();
        assert_eq!(off.deflate, None, "--compression off: offers ignored");
        let on = UpgradePolicy {
            compression: true,
            ..policy(&[], &[])
        };
        let up = validate_upgrade(&r, &on).unwrap();
        assert_eq!(up.deflate.map(|a| a.window_bits()), Some(10));
        let mut out = Vec::new();
        write_101(&mut out, &up);
        assert!(out.ends_with(b"\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10\r\n\r\n"));
        // No offer, no header.
        let up = validate_upgrade(&parse(GOOD), &on).unwrap();
        out.clear();
        write_101(&mut out, &up);
        assert!(!String::from_utf8_lossy(&out).contains("Extensions"));
    }

    #[test]
    fn origin_policy() {
        let allowed = vec!["http://EXAMPLE.com".to_string()];
        assert!(validate_upgrade(&parse(GOOD), &policy(&allowed, &[])).is_ok());
        let other = vec!["https://other.org".to_string()];
        assert_eq!(
            validate_upgrade(&parse(GOOD), &policy(&other, &[])),
            Err(HandshakeError::OriginNotAllowed)
        );
        let no_origin = String::from_utf8_lossy(GOOD).replace("Origin: http://example.com\r\n", "");
        assert_eq!(
            validate_upgrade(&parse(no_origin.as_bytes()), &policy(&other, &[])),
            Err(HandshakeError::OriginNotAllowed)
        );
    }

    fn with(from: &str, to: &str) -> Result<Upgrade<'static>, HandshakeError> {
        let text = String::from_utf8_lossy(GOOD).replace(from, to);
        let leaked: &'static [u8] = Box::leak(text.into_bytes().into_boxed_slice());
        let req = parse_request(leaked, 8192)?.expect("complete");
        validate_upgrade(&req, &policy(&[], &[]))
    }

    #[test]
    fn each_upgrade_rule() {
        use HandshakeError::*;
        assert!(matches!(with("HTTP/1.1", "HTTP/1.0"), Err(Malformed(_))));
        assert!(matches!(
            with("Host: example.com\r\n", ""),
            Err(Malformed(_))
        ));
        assert!(matches!(
            with("Upgrade: WebSocket", "Upgrade: h2c"),
            Err(Malformed(_))
        ));
        assert!(matches!(
            with("keep-alive, Upgrade", "keep-alive"),
            Err(Malformed(_))
        ));
        assert!(with("keep-alive, Upgrade", "UPGRADE").is_ok());
        assert!(with(
            "Connection: keep-alive, Upgrade\r\n",
            "Connection: keep-alive\r\nConnection: upgrade\r\n"
        )
        .is_ok());
        assert_eq!(with("Version: 13", "Version: 8"), Err(UnsupportedVersion));
        assert!(matches!(
            with("Sec-WebSocket-Version: 13\r\n", ""),
            Err(Malformed(_))
        ));
        assert!(
            matches!(
                with("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ=="),
                Err(Malformed(_))
            ),
            "10 bytes"
        );
        assert!(matches!(
            with("dGhlIHNhbXBsZSBub25jZQ==", "!!!!!!!!!!!!!!!!!!!!!!!="),
            Err(Malformed(_))
        ));
        assert!(matches!(
            with("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
            Err(Malformed(_))
        ));
        assert!(matches!(
            with(
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            ),
            Err(Malformed(_))
        ));
    }

    #[test]
    fn size_limits() {
        let mut big = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 9000));
        assert_eq!(
            parse_request(&big, 8192),
            Err(HandshakeError::HeadersTooLarge),
            "partial and over"
        );
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            parse_request(&big, 8192),
            Err(HandshakeError::HeadersTooLarge),
            "complete and over"
        );
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..(MAX_HEADERS + 1) {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            parse_request(&many, 8192),
            Err(HandshakeError::HeadersTooLarge)
        );
        assert!(matches!(
            parse_request(b"\x16\x03\x01garbage\r\n\r\n", 8192),
            Err(HandshakeError::Malformed(_))
        ));
    }

    #[test]
    fn error_responses() {
        let mut out = Vec::new();
        write_error(&mut out, HandshakeError::UnsupportedVersion);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        assert!(text.contains("\r\nConnection: close\r\n"));
        let body = "only WebSocket version 13 is supported\n";
        assert!(text.ends_with(&format!(
            "Content-Length: {}\r\nSec-WebSocket-Version: 13\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )));
        let mut out = Vec::new();
        write_error(&mut out, HandshakeError::AtCapacity);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 503 Service Unavailable\r\n")
                && text.contains("\r\nRetry-After: 1\r\n")
        );
    }
}
