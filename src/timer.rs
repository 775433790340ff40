//! A hashed timing wheel: per-tick work is the entries due in that slot, never a scan over all
//! connections.
//!
//! Each connection keeps one "next check" tick and has one live entry here; when the entry
//! fires, the event loop decides what is due (ping, reap, drop) from the connection's own
//! timestamps and schedules the next check. Activity on a connection only updates its
//! timestamp, never the wheel. An entry that no longer matches its connection (slot reused,
//! or rescheduled earlier) is stale and is skipped by the caller.

/// Milliseconds per tick: the resolution of every timeout.
pub const TICK_MS: u64 = 100;
/// Slots in the wheel; with 100 ms ticks one turn spans 102.4 s, longer than the default
/// timeouts, so most entries fire on their first pass.
pub const WHEEL_SLOTS: usize = 1024;

/// An emptied slot keeps its buffer up to this many entries (768 bytes).
const KEEP_SLOT_CAPACITY: usize = 64;

/// A scheduled check: connection slot, its generation, and the tick it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub key: u32,
    pub gen: u32,
    pub due: u32,
}

#[derive(Debug)]
pub struct Wheel {
    slots: Vec<Vec<Entry>>,
    /// Every tick up to and including this one has been expired.
    done: u32,
    len: usize,
}

impl Default for Wheel {
    fn default() -> Self {
        Self::new(0)
    }
}

impl Wheel {
    /// A wheel whose ticks up to `now` are considered expired.
    pub fn new(now: u32) -> Self {
        Wheel {
            slots: (0..WHEEL_SLOTS).map(|_| Vec::new()).collect(),
            done: now,
            len: 0,
        }
    }

    /// Entries held, stale ones included.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Schedules `entry`; a due tick already past fires on the next expiry.
    pub fn schedule(&mut self, mut entry: Entry) {
        if entry.due <= self.done {
            entry.due = self.done.wrapping_add(1);
        }
        self.slot_mut(entry.due).push(entry);
        self.len += 1;
    }

    /// Removes a scheduled entry (a connection that closed or was rescheduled earlier), so
    /// entries track live connections instead of every connection of the last timeout
    /// period: under churn, stale entries would otherwise pile up until due. Costs a scan of
    /// one slot (connections / ticks in a timeout; ~3,000 entries at a million connections
    /// with 30 s pings, a few µs, next to a close's own system calls).
    pub fn cancel(&mut self, entry: Entry) -> bool {
        if entry.due <= self.done {
            return false;
        }
        let slot = self.slot_mut(entry.due);
        match slot.iter().position(|e| *e == entry) {
            Some(i) => {
                slot.swap_remove(i);
                self.len -= 1;
                true
            }
            None => false,
        }
    }

    /// Moves every entry due at or before `now` into `out`. Entries of later turns that share
    /// a slot stay. After a long stall (more than a turn) each slot is visited once.
    pub fn expire(&mut self, now: u32, out: &mut Vec<Entry>) {
        if now <= self.done {
            return;
        }
        let ticks = (now - self.done).min(WHEEL_SLOTS as u32);
        for step in 1..=ticks {
            let tick = if step == ticks { now } else { self.done + step };
            let slot = self.slot_mut(tick);
            let mut i = 0;
            while i < slot.len() {
                if slot[i].due <= now {
                    out.push(slot.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            // Release memory after a burst (10k connections accepted in one second) or under
            // churn: a closed connection's entry stays until due, and slots that kept every
            // buffer they ever grew held ~1.5 MB more after 1,000 reconnects/s than without
            // churn. Re-growing a busy slot once per turn (102 s) costs a few allocations.
            if slot.is_empty() && slot.capacity() > KEEP_SLOT_CAPACITY {
                *slot = Vec::new();
            }
        }
        self.len -= out.len().min(self.len);
        self.done = now;
    }

    fn slot_mut(&mut self, tick: u32) -> &mut Vec<Entry> {
        let i = tick as usize % WHEEL_SLOTS;
        // `i < WHEEL_SLOTS == slots.len()`, so this is always in range.
        &mut self.slots[i]
    }
}

/// Converts a duration to whole ticks, rounding up (a timeout never fires early).
pub fn ticks(d: std::time::Duration) -> u32 {
    let ms = d.as_millis() as u64;
    u32::try_from(ms.div_ceil(TICK_MS)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(key: u32, due: u32) -> Entry {
        Entry { key, gen: 0, due }
    }

    #[test]
    fn cancelled_entries_never_fire() {
        let mut w = Wheel::new(0);
        w.schedule(e(1, 5));
        w.schedule(e(2, 5));
        w.schedule(e(3, 5 + WHEEL_SLOTS as u32));
        assert!(w.cancel(e(1, 5)));
        assert!(!w.cancel(e(1, 5)), "already gone");
        assert!(
            !w.cancel(Entry {
                key: 2,
                gen: 1,
                due: 5
            }),
            "other generation"
        );
        assert_eq!(w.len(), 2);
        let mut out = Vec::new();
        w.expire(5, &mut out);
        assert_eq!(out, vec![e(2, 5)]);
        assert!(
            w.cancel(e(3, 5 + WHEEL_SLOTS as u32)),
            "a later turn in the same slot"
        );
        assert!(w.is_empty());
        assert!(!w.cancel(e(2, 5)), "already fired");
    }

    #[test]
    fn fires_at_due_tick_not_before() {
        let mut w = Wheel::new(0);
        w.schedule(e(1, 5));
        w.schedule(e(2, 3));
        let mut out = Vec::new();
        w.expire(2, &mut out);
        assert!(out.is_empty());
        w.expire(3, &mut out);
        assert_eq!(out, vec![e(2, 3)]);
        out.clear();
        w.expire(10, &mut out);
        assert_eq!(out, vec![e(1, 5)]);
        assert!(w.is_empty());
    }

    #[test]
    fn entries_beyond_one_turn_wait_for_their_turn() {
        let mut w = Wheel::new(0);
        let far = WHEEL_SLOTS as u32 + 7;
        w.schedule(e(1, far));
        w.schedule(e(2, 7));
        let mut out = Vec::new();
        w.expire(7, &mut out);
        assert_eq!(out, vec![e(2, 7)]);
        out.clear();
        for t in 8..far {
            w.expire(t, &mut out);
        }
        assert!(out.is_empty());
        w.expire(far, &mut out);
        assert_eq!(out, vec![e(1, far)]);
    }

    #[test]
    fn past_due_fires_next_tick_and_long_stalls_catch_up() {
        let mut w = Wheel::new(100);
        w.schedule(e(1, 50));
        let mut out = Vec::new();
        w.expire(101, &mut out);
        assert_eq!(out.len(), 1);
        out.clear();
        for k in 0..50 {
            w.schedule(e(k, 102 + k * 40));
        }
        w.expire(100_000, &mut out);
        assert_eq!(
            out.len(),
            50,
            "a stall of many turns still fires everything"
        );
    }

    #[test]
    fn tick_rounding() {
        use std::time::Duration;
        assert_eq!(ticks(Duration::from_secs(1)), 10);
        assert_eq!(ticks(Duration::from_millis(101)), 2);
        assert_eq!(ticks(Duration::ZERO), 0);
    }
}
