//! How the memory engine spreads its state over locks: a channel or user name hashes to one
//! of [`SHARDS`] shards, each behind its own mutex.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, MutexGuard};

/// Lock shards for channels (and for the user table). A power of two well above the worker
/// count keeps two publishers on different channels from contending.
pub const SHARDS: usize = 64;

pub fn hash(name: &str) -> u64 {
    let mut h = DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

pub fn shard_of(name: &str) -> usize {
    (hash(name) % SHARDS as u64) as usize
}

/// A poisoned lock means a thread panicked while holding it; the channel data is still
/// consistent enough to keep serving (every mutation is a few field updates), so go on.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
