//! Spreads actions (connects, publishes, reconnects) evenly at a target rate.

/// Most actions released in one call, so a loop that fell behind catches up in slices and
/// keeps servicing its sockets in between.
pub const MAX_BURST: u64 = 256;

#[derive(Debug, Clone)]
pub struct Pacer {
    /// Actions per second; zero or less means as fast as possible.
    per_s: f64,
    start_us: u64,
    issued: u64,
}

impl Pacer {
    pub fn new(per_s: f64, start_us: u64) -> Self {
        Pacer {
            per_s,
            start_us,
            issued: 0,
        }
    }

    /// How many actions are due at `now` (capped at `MAX_BURST`); the caller records the ones
    /// it performed with `took`.
    pub fn due(&self, now_us: u64) -> u64 {
        if self.per_s <= 0.0 {
            return MAX_BURST;
        }
        let elapsed_s = now_us.saturating_sub(self.start_us) as f64 / 1e6;
        let allowed = (elapsed_s * self.per_s).floor() as u64 + 1;
        allowed.saturating_sub(self.issued).min(MAX_BURST)
    }

    pub fn took(&mut self, n: u64) {
        self.issued += n;
    }

    /// Microseconds until the next action is due (0 if one is due now).
    pub fn next_in_us(&self, now_us: u64) -> u64 {
        if self.per_s <= 0.0 {
            return 0;
        }
        let at = self.start_us + (self.issued as f64 / self.per_s * 1e6) as u64;
        at.saturating_sub(now_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_at_the_rate() {
        let mut p = Pacer::new(1000.0, 0);
        assert_eq!(p.due(0), 1);
        p.took(1);
        assert_eq!(p.due(500), 0);
        assert_eq!(p.next_in_us(500), 500);
        assert_eq!(p.due(10_000), 10);
        assert_eq!(p.due(10_000_000), MAX_BURST);
        assert_eq!(Pacer::new(0.0, 0).due(0), MAX_BURST);
    }
}
