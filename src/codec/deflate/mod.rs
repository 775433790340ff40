//! permessage-deflate (RFC 7692): negotiating it in the opening handshake
//! ([`negotiate`]), and compressing and inflating messages ([`codec`]). Pure: bytes in,
//! bytes out; the worker owns the (de)compressor state and passes it in.

pub mod codec;
pub mod negotiate;

pub use codec::{Deflate, DeflateCounts, InflateError, Inflater, TAIL};
pub use negotiate::{negotiate, Agreed, Window};
