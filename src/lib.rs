//! switchboard: a single-node real-time connection server. RFC 6455 WebSockets on a
//! hand-written mio event loop.
//!
//! Pure codecs (`mask`, `utf8`, `frame`, `decoder`, `handshake`) are separate from I/O
//! (`worker`, `listener`, `server`); `sys` holds the only `unsafe`.

pub mod log;

pub mod config;
pub mod conn;
pub mod decoder;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod listener;
pub mod mask;
pub mod outq;
pub mod router;
pub mod server;
pub mod sys;
pub mod timer;
pub mod token;
pub mod utf8;
pub mod worker;
