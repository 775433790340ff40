//! What every worker shares: the configuration, the hub, the connection count against its
//! limit, and each worker's counters (read by `/metrics`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::config::Config;
use crate::hub::Hub;
use crate::transport::access::Access;
use crate::transport::stats::WorkerStats;

#[derive(Debug)]
pub struct Shared {
    pub cfg: Config,
    pub max_connections: usize,
    /// Refused connections each worker may keep lingering (they use reserved descriptors).
    pub lingering_rejects: usize,
    /// The process's open-file limit after raising it at start (for metrics; `None` if
    /// unlimited).
    pub fd_limit: Option<u64>,
    /// Connections counted against `max_connections` (all workers).
    pub open: AtomicUsize,
    pub shutting_down: AtomicBool,
    pub hub: Hub,
    /// Tokens, per-address limits and the publish rate.
    pub access: Access,
    /// One per worker, indexed by worker id.
    pub stats: Vec<Arc<WorkerStats>>,
}

impl Shared {
    /// Claims a connection slot, or says the server is at capacity.
    pub fn try_claim(&self) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_connections).then_some(n + 1)
            })
            .is_ok()
    }

    pub fn release(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}
