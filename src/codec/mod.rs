//! Pure bytes, no I/O: what arrives and leaves on the wire, as functions over slices.
pub mod cursor;
pub mod decoder;
pub mod deflate;
pub mod frame;
pub mod http;
pub mod mask;
pub mod position;
pub mod protocol;
pub mod query;
pub mod sse;
pub mod utf8;
