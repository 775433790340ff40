//! The live progress line (once a second on stderr), and its one-line form on a child's stdout.

use std::io::Write;

/// A snapshot of one process (or the sum over children).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Progress {
    pub elapsed_s: f64,
    /// 0 ramp, 1 waiting for the other processes, 2 run, 3 drain.
    pub phase: u8,
    pub open: u64,
    pub connecting: u64,
    pub opened_total: u64,
    pub failed: u64,
    pub messages: u64,
}

const PHASES: [&str; 4] = ["ramp", "wait", "run", "drain"];

impl Progress {
    /// The child's wire form: `progress <phase> <open> <connecting> <opened> <failed> <msgs>`.
    pub fn to_line(self) -> String {
        format!(
            "progress {} {} {} {} {} {}",
            self.phase, self.open, self.connecting, self.opened_total, self.failed, self.messages
        )
    }

    pub fn from_line(line: &str) -> Option<Progress> {
        let mut f = line.strip_prefix("progress ")?.split(' ');
        let mut next = || f.next()?.parse::<u64>().ok();
        Some(Progress {
            elapsed_s: 0.0,
            phase: u8::try_from(next()?).ok()?,
            open: next()?,
            connecting: next()?,
            opened_total: next()?,
            failed: next()?,
            messages: next()?,
        })
    }

    /// Adds another process's snapshot (the phase shown is the least advanced one).
    pub fn add(&mut self, o: &Progress) {
        self.phase = self.phase.min(o.phase);
        self.open += o.open;
        self.connecting += o.connecting;
        self.opened_total += o.opened_total;
        self.failed += o.failed;
        self.messages += o.messages;
    }
}

/// Prints progress lines with per-second rates computed from the previous snapshot.
#[derive(Debug, Default)]
pub struct Printer {
    last: Option<Progress>,
}

impl Printer {
    pub fn print(&mut self, p: &Progress) {
        let (opens, msgs) = match self.last {
            Some(l) if p.elapsed_s > l.elapsed_s => {
                let dt = p.elapsed_s - l.elapsed_s;
                (
                    p.opened_total.saturating_sub(l.opened_total) as f64 / dt,
                    p.messages.saturating_sub(l.messages) as f64 / dt,
                )
            }
            _ => (0.0, 0.0),
        };
        let phase = PHASES.get(usize::from(p.phase)).unwrap_or(&"?");
        // A failed write to stderr is not worth stopping a run for.
        let _ = writeln!(
            std::io::stderr().lock(),
            "[{:6.1}s] {phase:<5} open {:>7} connecting {:>6} (+{:.0}/s) failed {:>6} | {:.0} msg/s",
            p.elapsed_s,
            p.open,
            p.connecting,
            opens,
            p.failed,
            msgs
        );
        self.last = Some(*p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_round_trip() {
        let p = Progress {
            elapsed_s: 0.0,
            phase: 2,
            open: 5,
            connecting: 1,
            opened_total: 6,
            failed: 2,
            messages: 99,
        };
        assert_eq!(Progress::from_line(&p.to_line()), Some(p));
        assert_eq!(Progress::from_line("ready"), None);
    }
}
