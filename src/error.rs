//! Typed errors, one enum per layer, each mapping to what the peer is told: a close code for
//! a WebSocket protocol violation, an HTTP status for a refused request.

use std::fmt;

/// Close status codes (RFC 6455 §7.4).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY_VIOLATION: u16 = 1008;
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
    /// The connection's token expired and no `refresh` replaced it: reconnect with a new one.
    pub const TOKEN_EXPIRED: u16 = 4001;
    /// The server closed every connection of the user (`POST /users/{user}/disconnect`).
    pub const DISCONNECTED: u16 = 4003;

    /// Whether a peer may send `code` in a Close frame. 1004–1006 and 1015 are reserved and
    /// must never appear on the wire; 1012–1014 were registered with IANA after the RFC
    /// (restart, try again later, bad gateway) and are accepted like the RFC's own codes;
    /// 3000–4999 belong to libraries and applications.
    pub fn is_valid_on_wire(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// A violation of RFC 6455 by the client, found while decoding its frames. The connection is
/// failed with [`ProtocolError::close_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    ReservedBits,
    ReservedOpcode,
    UnmaskedFrame,
    FragmentedControl,
    ControlTooLong,
    LengthTopBitSet,
    /// A continuation frame with no message in progress.
    UnexpectedContinuation,
    /// A new Text/Binary frame while a fragmented message is still open.
    ExpectedContinuation,
    /// A Close payload of exactly one byte.
    CloseTooShort,
    InvalidCloseCode,
    InvalidUtf8,
    MessageTooBig,
    /// RSV1 (permessage-deflate's "compressed") on a control frame (RFC 7692 §6.1).
    CompressedControl,
    /// RSV1 on a continuation frame: only a message's first frame carries it (§6.1).
    CompressedContinuation,
    /// A compressed message that is not valid DEFLATE data. RFC 7692 names no close code;
    /// 1007 says the payload was not consistent with the message, as Node's `ws` does.
    InvalidCompressedData,
}

impl ProtocolError {
    pub fn close_code(self) -> u16 {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::InvalidCompressedData => {
                close_code::INVALID_PAYLOAD
            }
            ProtocolError::MessageTooBig => close_code::MESSAGE_TOO_BIG,
            _ => close_code::PROTOCOL_ERROR,
        }
    }

    /// Short text for the Close frame's reason and the debug log.
    pub fn reason(self) -> &'static str {
        match self {
            ProtocolError::ReservedBits => "reserved bits set",
            ProtocolError::ReservedOpcode => "reserved opcode",
            ProtocolError::UnmaskedFrame => "client frame not masked",
            ProtocolError::FragmentedControl => "fragmented control frame",
            ProtocolError::ControlTooLong => "control frame over 125 bytes",
            ProtocolError::LengthTopBitSet => "64-bit length with top bit set",
            ProtocolError::UnexpectedContinuation => "continuation without a message",
            ProtocolError::ExpectedContinuation => "new message inside a fragmented one",
            ProtocolError::CloseTooShort => "close payload of one byte",
            ProtocolError::InvalidCloseCode => "invalid close code",
            ProtocolError::InvalidUtf8 => "invalid UTF-8",
            ProtocolError::MessageTooBig => "message too big",
            ProtocolError::CompressedControl => "compressed control frame",
            ProtocolError::CompressedContinuation => "RSV1 on a continuation frame",
            ProtocolError::InvalidCompressedData => "invalid compressed data",
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason(), self.close_code())
    }
}

impl std::error::Error for ProtocolError {}

/// Why an HTTP request (an upgrade or a plain route) is refused. Each maps to one status; the
/// response carries a short text body and the connection is closed after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not parseable as HTTP/1.1, or a required upgrade header missing or wrong.
    Malformed(&'static str),
    /// `Sec-WebSocket-Version` other than 13.
    UnsupportedVersion,
    NotFound,
    MethodNotAllowed,
    /// Header block over `--max-header-bytes` or more headers than we parse.
    HeadersTooLarge,
    /// `Origin` not among `--allowed-origin`.
    OriginNotAllowed,
    /// At `--max-connections`.
    AtCapacity,
    /// A request body without `Content-Length` (chunked request bodies are not taken).
    LengthRequired,
    /// A request body over `--max-message-bytes`.
    PayloadTooLarge,
    /// Tokens are on and the request carries none, or one that does not verify (why).
    Unauthorized(&'static str),
    /// The connection's token does not allow a channel the request names.
    Forbidden,
    /// At `--max-connections-per-ip` for this client address.
    TooManyFromAddress,
    /// Connecting faster than `--connect-rate` from this address: retry after (seconds).
    ConnectingTooFast(u64),
    /// Too many client addresses tracked at once to count another.
    TooManyClients,
}

impl HandshakeError {
    pub fn http_status(self) -> u16 {
        match self {
            HandshakeError::Malformed(_) => 400,
            HandshakeError::OriginNotAllowed => 403,
            HandshakeError::NotFound => 404,
            HandshakeError::MethodNotAllowed => 405,
            HandshakeError::UnsupportedVersion => 426,
            HandshakeError::HeadersTooLarge => 431,
            HandshakeError::AtCapacity => 503,
            HandshakeError::LengthRequired => 411,
            HandshakeError::PayloadTooLarge => 413,
            HandshakeError::Unauthorized(_) => 401,
            HandshakeError::Forbidden => 403,
            HandshakeError::TooManyFromAddress | HandshakeError::ConnectingTooFast(_) => 429,
            HandshakeError::TooManyClients => 503,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            HandshakeError::Malformed(why) => why,
            HandshakeError::UnsupportedVersion => "only WebSocket version 13 is supported",
            HandshakeError::NotFound => "no such path",
            HandshakeError::MethodNotAllowed => "method not allowed",
            HandshakeError::HeadersTooLarge => "request header block too large",
            HandshakeError::OriginNotAllowed => "origin not allowed",
            HandshakeError::AtCapacity => "server at capacity, retry later",
            HandshakeError::LengthRequired => "a request body needs Content-Length",
            HandshakeError::PayloadTooLarge => "request body too large",
            HandshakeError::Unauthorized(why) => why,
            HandshakeError::Forbidden => "the token does not allow a channel of this request",
            HandshakeError::TooManyFromAddress => "too many connections from this address",
            HandshakeError::ConnectingTooFast(_) => "connecting too fast from this address",
            HandshakeError::TooManyClients => "server tracking too many clients, retry later",
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.http_status(), self.reason())
    }
}

impl std::error::Error for HandshakeError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes() {
        assert_eq!(ProtocolError::InvalidUtf8.close_code(), 1007);
        assert_eq!(ProtocolError::MessageTooBig.close_code(), 1009);
        assert_eq!(ProtocolError::ReservedOpcode.close_code(), 1002);
        assert_eq!(ProtocolError::InvalidCloseCode.close_code(), 1002);
        assert_eq!(ProtocolError::CompressedControl.close_code(), 1002);
        assert_eq!(ProtocolError::CompressedContinuation.close_code(), 1002);
        assert_eq!(ProtocolError::InvalidCompressedData.close_code(), 1007);
    }

    #[test]
    fn statuses() {
        assert_eq!(HandshakeError::Malformed("x").http_status(), 400);
        assert_eq!(HandshakeError::UnsupportedVersion.http_status(), 426);
        assert_eq!(HandshakeError::HeadersTooLarge.http_status(), 431);
        assert_eq!(HandshakeError::AtCapacity.http_status(), 503);
    }
}
