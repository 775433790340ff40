//! Who may connect and what they may do, as pure checks: no I/O, no sockets, no threads of
//! its own. Transports call in with bytes and the time; the answers are typed and map to an
//! HTTP status or a `/ws` error.
//!
//! - [`keys`]: the configured secret and public key, loaded and checked at start;
//! - [`token`]: JWT verification (HS256 from a secret, RS256/ES256 from a PEM public key)
//!   into [`Claims`](token::Claims);
//! - [`perms`]: channel permission lists (`room:1`, `room:*`, `*`);
//! - [`limits`]: token buckets and the per-client-address connection table.
//!
//! Names in claims follow the same rules as the protocol's (`crate::names`).
pub mod keys;
pub mod limits;
pub mod perms;
pub mod token;

/// A key or certificate from `tests/fixtures/auth/`, for the unit tests of `keys` and `token`.
#[cfg(test)]
macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/auth/",
            $name
        ))
    };
}
#[cfg(test)]
pub(crate) use fixture;
