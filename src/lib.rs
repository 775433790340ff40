//! switchboard: a real-time connection server. RFC 6455 WebSockets on a hand-written mio
//! event loop.
//!
//! Four wings, arrows one way (`tests/layering.rs` keeps it so): `net` (the event loop, the
//! only code that touches client sockets) → `transport` (what each route does with a request
//! or a message) → `hub` (channels behind an engine) → `codec` (pure bytes). `config`,
//! `error`, `names` and `log` sit under all four; `auth` (tokens, permissions, rate limits)
//! sits beside `codec`.
// No unwrap on I/O or parse paths; tests may.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod log;

pub mod config;
pub mod error;
pub mod names;

pub mod auth;
pub mod codec;
pub mod hub;
pub mod net;
pub mod transport;
