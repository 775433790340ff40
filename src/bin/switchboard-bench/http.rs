//! The HTTP/1.1 client side the publisher needs: a keep-alive `POST` and parsing its response.
//!
//! Pure functions over byte slices; a response is only reported once its whole body is in.

use switchboard::codec::http::find_head_end;

use crate::wire::MAX_RESPONSE_HEAD_BYTES;

/// Header lines looked at in a response.
const MAX_RESPONSE_HEADERS: usize = 32;
/// A publish response body larger than this is treated as a broken response.
const MAX_RESPONSE_BODY_BYTES: usize = 1024 * 1024;

/// Appends `POST path` with a JSON body, keeping the connection alive.
pub fn write_post(out: &mut Vec<u8>, host: &str, path: &str, body: &[u8]) {
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: application/json\r\nContent-Length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

/// What the front of a response buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    Incomplete,
    /// A whole response: status, where its body is, and how many bytes it took in total.
    Complete {
        status: u16,
        body_start: usize,
        total_len: usize,
        close: bool,
    },
    Invalid,
}

/// Parses one response at the start of `buf`. Only `Content-Length` bodies are supported (and
/// bodiless statuses); a chunked or unframed body is reported as `Invalid`.
pub fn parse_response(buf: &[u8]) -> Response {
    let Some(head_len) = find_head_end(buf, 0) else {
        return if buf.len() > MAX_RESPONSE_HEAD_BYTES {
            Response::Invalid
        } else {
            Response::Incomplete
        };
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let Some(head) = buf.get(..head_len) else {
        return Response::Invalid;
    };
    if !matches!(resp.parse(head), Ok(httparse::Status::Complete(_))) {
        return Response::Invalid;
    }
    let Some(status) = resp.code else {
        return Response::Invalid;
    };
    let mut length = None;
    let mut close = false;
    for h in resp.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        } else if h.name.eq_ignore_ascii_case("connection") {
            close |= value.eq_ignore_ascii_case("close");
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Response::Invalid;
        }
    }
    let bodiless = status == 204 || status == 304 || (100..200).contains(&status);
    let length = match (length, bodiless) {
        (_, true) => 0,
        (Some(n), false) if n <= MAX_RESPONSE_BODY_BYTES => n,
        _ => return Response::Invalid,
    };
    if buf.len() < head_len + length {
        return Response::Incomplete;
    }
    Response::Complete {
        status,
        body_start: head_len,
        total_len: head_len + length,
        close,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_responses_split_and_back_to_back() {
        let one = b"HTTP/1.1 202 Accepted\r\nContent-Length: 9\r\n\r\n{\"id\":42}";
        let mut two = one.to_vec();
        two.extend_from_slice(one);
        for cut in 0..one.len() {
            assert_eq!(
                parse_response(&one[..cut]),
                Response::Incomplete,
                "cut {cut}"
            );
        }
        let want = Response::Complete {
            status: 202,
            body_start: one.len() - 9,
            total_len: one.len(),
            close: false,
        };
        assert_eq!(parse_response(one), want);
        assert_eq!(parse_response(&two), want);
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Response::Invalid
        );
    }
}
