//! Who may connect and what they may do, as pure checks: no I/O, no sockets, no threads of
//! its own. Transports call in with bytes and the time; the answers are typed and map to an
//! HTTP status or a `/ws` error.
//!
//! - [`perms`]: channel permission lists (`room:1`, `room:*`, `*`);
//! - `names`: the user and channel name rules the claims are checked against.
mod names;
pub mod perms;
