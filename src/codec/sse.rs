//! Server-Sent Events encoding (the `text/event-stream` format): the response head, `data:`
//! lines for a payload, and the comment line used as a ping. Pure bytes; which events a
//! stream carries is the SSE transport's business.

use std::fmt::Write as _;

/// A comment line: keeps proxies from timing the stream out and finds dead peers.
pub const PING: &[u8] = b": ping\n\n";

/// Sent with the first bytes: how long EventSource waits before reconnecting (ms).
pub const RETRY_MS: u32 = 2000;

/// Appends a named event (`event: NAME`, then `data` as `data:` lines). EventSource hands
/// named events only to listeners of that name, never to `onmessage`.
pub fn write_named_event(out: &mut Vec<u8>, name: &str, data: &str) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
    write_data_lines(out, data);
    out.push(b'\n');
}

/// Appends `text` as `data:` lines: one per line of the payload (CR, LF and CRLF all end a
/// line in SSE, so each is split), so a multi-line payload arrives intact.
pub fn write_data_lines(out: &mut Vec<u8>, text: &str) {
    let mut rest = text;
    loop {
        let end = rest.find(['\r', '\n']).unwrap_or(rest.len());
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&rest.as_bytes()[..end]);
        out.push(b'\n');
        if end == rest.len() {
            return;
        }
        let skip = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
    }
}

/// The response head that opens a stream. No `Content-Length`: the body is the stream and
/// ends when the connection does.
pub fn write_head(out: &mut Vec<u8>, cors: &str) {
    out.extend_from_slice(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\n",
    );
    out.extend_from_slice(cors.as_bytes());
    out.extend_from_slice(b"\r\n");
    let _ = write!(Bytes(out), "retry: {RETRY_MS}\n\n");
}

/// `fmt::Write` over a byte vector.
struct Bytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> String {
        let mut out = Vec::new();
        write_data_lines(&mut out, text);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn multi_line_payloads_are_split_on_every_line_ending() {
        assert_eq!(lines("one"), "data: one\n");
        assert_eq!(lines(""), "data: \n");
        assert_eq!(lines("a\nb"), "data: a\ndata: b\n");
        assert_eq!(lines("a\r\nb\rc\n"), "data: a\ndata: b\ndata: c\ndata: \n");
        assert_eq!(
            lines("{\n  \"x\": 1\n}"),
            "data: {\ndata:   \"x\": 1\ndata: }\n"
        );
    }

    #[test]
    fn head_has_no_length_and_sets_retry() {
        let mut out = Vec::new();
        write_head(&mut out, "Access-Control-Allow-Origin: http://a\r\n");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream"));
        assert!(!text.to_ascii_lowercase().contains("content-length"));
        assert!(text.contains("Access-Control-Allow-Origin: http://a\r\n\r\nretry: 2000\n\n"));
    }
}
