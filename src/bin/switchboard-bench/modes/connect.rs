//! `connect`: open N WebSockets, hold them for `--duration`, close them. Everything it
//! measures (connect rate, failures by cause, memory per connection) is counted by the shared
//! run in `modes` and the memory probe; this workload only names the path (`{i}` in it is the
//! client's number, so each client can be a distinct user).

use crate::cli::Config;
use crate::conn::{Event, Handle};
use crate::modes::{Phase, Workload};
use crate::report::Report;

pub struct Connect {
    path: String,
    offset: u64,
}

impl Connect {
    pub fn new(cfg: &Config) -> Self {
        Connect {
            path: cfg.path.clone(),
            offset: cfg.client_offset,
        }
    }
}

/// `path` with `{i}` replaced by client `offset + client`'s number.
pub fn client_path(path: &str, offset: u64, client: u32) -> String {
    if path.contains("{i}") {
        path.replace("{i}", &(offset + u64::from(client)).to_string())
    } else {
        path.to_string()
    }
}

impl Workload for Connect {
    fn path(&self, client: u32) -> String {
        client_path(&self.path, self.offset, client)
    }

    fn on_event(&mut self, _h: &mut Handle<'_>, _ev: &Event<'_>, _now: u64, _phase: Phase) {}

    fn finish(&mut self, report: &mut Report) {
        report.param("path", &self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_numbers_in_paths() {
        assert_eq!(client_path("/ws?user=u{i}", 100, 7), "/ws?user=u107");
        assert_eq!(client_path("/ws", 100, 7), "/ws");
    }
}
