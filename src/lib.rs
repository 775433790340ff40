//! switchboard: a single-node real-time connection server. RFC 6455 WebSockets on a
//! hand-written mio event loop.
//!
//! Pure codecs (`mask`, `utf8`, `frame`, `decoder`, `handshake`) are separate from I/O
//! (`worker`, `listener`, `server`); `sys` holds the only `unsafe`.
// No unwrap on I/O or parse paths; tests may.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod log;

pub mod api;
pub mod config;
pub mod conn;
pub mod cursor;
pub mod decoder;
pub mod dispatch;
pub mod error;
pub mod fanout;
pub mod frame;
pub mod handshake;
pub mod hub;
pub mod listener;
pub mod mask;
pub mod metrics;
pub mod notify;
pub mod outq;
pub mod poll;
pub mod protocol;
pub mod query;
pub mod router;
pub mod server;
pub mod session;
pub mod sse;
pub mod stats;
pub mod sys;
pub mod timer;
pub mod token;
pub mod utf8;
pub mod worker;
pub mod ws;
