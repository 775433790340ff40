//! `connect`: open N WebSockets, hold them for `--duration`, close them. Everything it
//! measures (connect rate, failures by cause, memory per connection) is counted by the shared
//! run in `modes` and the memory probe; this workload only names the path.

use crate::cli::Config;
use crate::conn::{Event, Handle};
use crate::modes::{Phase, Workload};
use crate::report::Report;

pub struct Connect {
    path: String,
}

impl Connect {
    pub fn new(cfg: &Config) -> Self {
        Connect {
            path: cfg.path.clone(),
        }
    }
}

impl Workload for Connect {
    fn path(&self, _client: u32) -> String {
        self.path.clone()
    }

    fn on_event(&mut self, _h: &mut Handle<'_>, _ev: &Event<'_>, _now: u64, _phase: Phase) {}

    fn finish(&mut self, report: &mut Report) {
        report.param("path", &self.path);
    }
}
