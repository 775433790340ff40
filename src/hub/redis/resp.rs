//! RESP2, the Redis wire protocol: commands encoded as arrays of bulk strings, replies decoded
//! from a byte buffer that may hold a part of one (then "need more", never an error). Pure.
//!
//! Written here rather than taken from a crate: the `redis` crate's parser wants a blocking
//! reader or an async runtime, and what the engine needs of RESP2 is five reply types and one
//! command shape — a hundred lines, tested byte by byte below.

use std::fmt;

/// A reply.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// `+OK`
    Status(Vec<u8>),
    /// `-ERR ...`
    Error(String),
    Int(i64),
    /// `$-1` is `Bulk(None)`.
    Bulk(Option<Vec<u8>>),
    /// `*-1` is `Array(None)`.
    Array(Option<Vec<Value>>),
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Status(s) => write!(f, "+{}", String::from_utf8_lossy(s)),
            Value::Error(e) => write!(f, "-{e}"),
            Value::Int(n) => write!(f, ":{n}"),
            Value::Bulk(None) => f.write_str("nil"),
            Value::Bulk(Some(b)) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Value::Array(None) => f.write_str("nil[]"),
            Value::Array(Some(a)) => f.debug_list().entries(a).finish(),
        }
    }
}

impl Value {
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(Some(b)) | Value::Status(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(self.as_bytes()?).ok()
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            v => v.as_str()?.parse().ok(),
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(Some(a)) => Some(a),
            _ => None,
        }
    }

    pub fn into_array(self) -> Option<Vec<Value>> {
        match self {
            Value::Array(Some(a)) => Some(a),
            _ => None,
        }
    }
}

/// The peer sent something that is not RESP2 (or a size past [`MAX_BULK_BYTES`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub &'static str);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RESP protocol error: {}", self.0)
    }
}

/// Largest bulk string or array accepted (Redis' own default limit is 512 MiB).
pub const MAX_BULK_BYTES: usize = 512 * 1024 * 1024;
/// Nesting depth of arrays accepted (the engine's replies nest three deep).
const MAX_DEPTH: usize = 8;

/// Appends a command: `*N\r\n` then each argument as a bulk string.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(a.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Decodes one reply from the front of `buf`: `Ok(None)` if it is not all there yet,
/// `Ok(Some((value, bytes used)))` otherwise.
pub fn decode(buf: &[u8]) -> Result<Option<(Value, usize)>, ProtocolError> {
    let mut at = 0;
    Ok(value(buf, &mut at, 0)?.map(|v| (v, at)))
}

fn line<'a>(buf: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let rest = buf.get(*at..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    *at += end + 2;
    rest.get(..end)
}

fn number(l: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(l)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ProtocolError("bad number"))
}

/// A length: -1 for nil, else 0..=MAX_BULK_BYTES.
fn length(l: &[u8]) -> Result<Option<usize>, ProtocolError> {
    match number(l)? {
        -1 => Ok(None),
        n if (0..=MAX_BULK_BYTES as i64).contains(&n) => Ok(Some(n as usize)),
        _ => Err(ProtocolError("bad length")),
    }
}

fn value(buf: &[u8], at: &mut usize, depth: usize) -> Result<Option<Value>, ProtocolError> {
    if depth > MAX_DEPTH {
        return Err(ProtocolError("nested too deep"));
    }
    let Some(&kind) = buf.get(*at) else {
        return Ok(None);
    };
    let mut pos = *at + 1;
    let Some(l) = line(buf, &mut pos) else {
        return Ok(None);
    };
    let v = match kind {
        b'+' => Value::Status(l.to_vec()),
        b'-' => Value::Error(String::from_utf8_lossy(l).into_owned()),
        b':' => Value::Int(number(l)?),
        b'$' => match length(l)? {
            None => Value::Bulk(None),
            Some(n) => {
                let Some(data) = buf.get(pos..pos + n) else {
                    return Ok(None);
                };
                if buf.get(pos + n..pos + n + 2).is_none() {
                    return Ok(None);
                }
                if buf.get(pos + n..pos + n + 2) != Some(b"\r\n") {
                    return Err(ProtocolError("bulk string not ended by CRLF"));
                }
                let v = Value::Bulk(Some(data.to_vec()));
                pos += n + 2;
                v
            }
        },
        b'*' => match length(l)? {
            None => Value::Array(None),
            Some(n) => {
                // Not more elements than bytes left: a lying length cannot reserve memory.
                let mut items = Vec::with_capacity(n.min(buf.len().saturating_sub(pos)));
                for _ in 0..n {
                    match value(buf, &mut pos, depth + 1)? {
                        Some(v) => items.push(v),
                        None => return Ok(None),
                    }
                }
                Value::Array(Some(items))
            }
        },
        _ => return Err(ProtocolError("unknown reply type")),
    };
    *at = pos;
    Ok(Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::Bulk(Some(s.as_bytes().to_vec()))
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&mut out, &[b"SET", b"k", b"a\r\nb"]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n");
    }

    #[test]
    fn every_reply_type() {
        let wire = b"+OK\r\n-ERR no\r\n:-42\r\n$3\r\nabc\r\n$-1\r\n*-1\r\n*2\r\n$1\r\na\r\n*1\r\n:1\r\n$0\r\n\r\n";
        let want = [
            Value::Status(b"OK".to_vec()),
            Value::Error("ERR no".into()),
            Value::Int(-42),
            bulk("abc"),
            Value::Bulk(None),
            Value::Array(None),
            Value::Array(Some(vec![
                bulk("a"),
                Value::Array(Some(vec![Value::Int(1)])),
            ])),
            bulk(""),
        ];
        let mut at = 0;
        for w in want {
            let (v, n) = decode(&wire[at..]).unwrap().unwrap();
            assert_eq!(v, w);
            at += n;
        }
        assert_eq!(at, wire.len());
    }

    #[test]
    fn every_prefix_needs_more_and_splits_anywhere_agree() {
        let wire = b"*3\r\n$9\r\nsmessage\r\r\n$4\r\nsb:c\r\n*2\r\n:7\r\n$5\r\nx\r\ny \r\n";
        // (A bulk's bytes may hold CR LF.)
        let (whole, n) = decode(wire).unwrap().unwrap();
        assert_eq!(n, wire.len());
        for cut in 0..wire.len() {
            assert_eq!(decode(&wire[..cut]), Ok(None), "prefix of {cut} bytes");
        }
        assert!(matches!(whole, Value::Array(Some(ref a)) if a.len() == 3));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b"?x\r\n"[..],
            b"$abc\r\n",
            b"$-2\r\n",
            b"*99999999999999\r\n",
            b"$3\r\nabcXY",
            b":1.5\r\n",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = "*1\r\n".repeat(20);
        assert!(decode(deep.as_bytes()).is_err());
    }
}
