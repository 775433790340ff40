//! The routes: what `/ws`, `/echo`, `/sse`, `/poll`, the HTTP API and `/metrics` do with a
//! request or a message — hub calls in, bytes for the connection's output out. No sockets:
//! the event loop reads and writes, the transports decide.
//!
//! Modules depend only on those listed before them.
pub mod access;
pub mod api;
pub mod conn;
pub mod cx;
pub mod direct;
pub mod dispatch;
pub mod metrics;
pub mod out;
pub mod pending;
pub mod poll;
pub mod prom;
pub mod request;
pub mod router;
pub mod session;
pub mod shared;
pub mod sse;
pub mod stats;
pub mod websocket;
pub mod ws;
