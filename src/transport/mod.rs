//! The routes: what `/ws`, `/echo`, `/sse`, `/poll`, the HTTP API and `/metrics` do with a
//! request or a message — hub calls in, bytes for the connection's output out.
pub mod api;
pub mod dispatch;
pub mod metrics;
pub mod poll;
pub mod router;
pub mod sse;
pub mod stats;
pub mod ws;
