//! switchboard: a single-node real-time connection server.
pub mod decoder;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod utf8;
