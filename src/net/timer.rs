//! A hashed timing wheel: per-tick work is the entries due in that slot, never a scan over all
//! connections.
//!
//! Each connection (by slab key) has at most one entry: when it fires, the event loop decides
//! what is due (ping, reap, drop) from the connection's own timestamps and schedules the next
//! check. Activity on a connection only updates its timestamp, never the wheel.
//!
//! The slots are intrusive doubly linked lists threaded through one array indexed by slab key
//! (12 bytes per key, sized like the slab), so scheduling, cancelling and firing allocate
//! nothing and cancel is O(1). A wheel of per-slot vectors grew and freed a buffer per slot
//! under connection churn, and those buffers fragmented the worker's heap: RSS stayed ~5%
//! above its baseline after a minute of 1,000 reconnects/s.

/// Milliseconds per tick: the resolution of every timeout.
pub const TICK_MS: u64 = 100;
/// Slots in the wheel; with 100 ms ticks one turn spans 102.4 s, longer than the default
/// timeouts, so most entries fire on their first pass.
pub const WHEEL_SLOTS: usize = 1024;

/// End of a list; as a `due`, "not scheduled".
const NIL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Link {
    prev: u32,
    next: u32,
    due: u32,
}

const UNLINKED: Link = Link {
    prev: NIL,
    next: NIL,
    due: NIL,
};

#[derive(Debug)]
pub struct Wheel {
    /// First key of each slot's list.
    heads: Vec<u32>,
    /// By key: its neighbours in its slot's list and its due tick.
    links: Vec<Link>,
    /// Every tick up to and including this one has been expired.
    done: u32,
    len: usize,
}

impl Wheel {
    /// A wheel whose ticks up to `now` are considered expired.
    pub fn new(now: u32) -> Self {
        Wheel {
            heads: vec![NIL; WHEEL_SLOTS],
            links: Vec::new(),
            done: now,
            len: 0,
        }
    }

    /// Keys scheduled.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The tick `key` is scheduled for.
    pub fn due(&self, key: usize) -> Option<u32> {
        self.links.get(key).map(|l| l.due).filter(|&due| due != NIL)
    }

    /// Schedules `key` at tick `due`, replacing its entry if it has one; a tick already past
    /// fires on the next expiry. Keys are slab keys, below `u32::MAX` (they travel in mio
    /// tokens as 32 bits).
    pub fn schedule(&mut self, key: usize, due: u32) {
        debug_assert!(key < NIL as usize);
        self.cancel(key);
        // Not `clamp`: it panics if the bounds cross, as they would at tick `u32::MAX - 1`.
        let due = due.max(self.done.saturating_add(1)).min(NIL - 1);
        if key >= self.links.len() {
            self.links.resize(key + 1, UNLINKED);
        }
        let k = key as u32;
        let slot = slot_of(due);
        let head = self.heads[slot];
        if head != NIL {
            self.links[head as usize].prev = k;
        }
        self.links[key] = Link {
            prev: NIL,
            next: head,
            due,
        };
        self.heads[slot] = k;
        self.len += 1;
    }

    /// Removes `key`'s entry (a connection that closed or is rescheduled); false if it had
    /// none.
    pub fn cancel(&mut self, key: usize) -> bool {
        match self.links.get(key) {
            Some(l) if l.due != NIL => {
                self.unlink(key);
                true
            }
            _ => false,
        }
    }

    /// Moves every key due at or before `now` into `out`. Entries of later turns that share
    /// a slot stay. After a long stall (more than a turn) each slot is visited once.
    pub fn expire(&mut self, now: u32, out: &mut Vec<usize>) {
        if now <= self.done {
            return;
        }
        let ticks = (now - self.done).min(WHEEL_SLOTS as u32);
        for step in 1..=ticks {
            let tick = if step == ticks { now } else { self.done + step };
            let mut k = self.heads[slot_of(tick)];
            while k != NIL {
                let key = k as usize;
                let link = self.links[key];
                if link.due <= now {
                    self.unlink(key);
                    out.push(key);
                }
                k = link.next;
            }
        }
        self.done = now;
    }

    /// Takes a scheduled `key` out of its slot's list. Every index here is a key that was
    /// scheduled, so it is inside `links`.
    fn unlink(&mut self, key: usize) {
        let Link { prev, next, due } = self.links[key];
        if prev == NIL {
            self.heads[slot_of(due)] = next;
        } else {
            self.links[prev as usize].next = next;
        }
        if next != NIL {
            self.links[next as usize].prev = prev;
        }
        self.links[key] = UNLINKED;
        self.len -= 1;
    }
}

fn slot_of(tick: u32) -> usize {
    tick as usize % WHEEL_SLOTS
}

/// Converts a duration to whole ticks, rounding up (a timeout never fires early).
pub fn ticks(d: std::time::Duration) -> u32 {
    let ms = d.as_millis() as u64;
    u32::try_from(ms.div_ceil(TICK_MS)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fired(w: &mut Wheel, now: u32) -> Vec<usize> {
        let mut out = Vec::new();
        w.expire(now, &mut out);
        out.sort_unstable();
        out
    }

    #[test]
    fn cancelled_entries_never_fire() {
        let mut w = Wheel::new(0);
        w.schedule(1, 5);
        w.schedule(2, 5);
        w.schedule(3, 5 + WHEEL_SLOTS as u32);
        w.schedule(4, 5);
        assert!(w.cancel(1));
        assert!(!w.cancel(1), "already gone");
        assert!(!w.cancel(99), "never scheduled");
        assert_eq!(w.len(), 3);
        assert_eq!(fired(&mut w, 5), vec![2, 4]);
        assert_eq!(w.due(3), Some(5 + WHEEL_SLOTS as u32));
        assert!(w.cancel(3), "a later turn in the same slot");
        assert!(w.is_empty());
        assert!(!w.cancel(2), "already fired");
        assert_eq!(w.due(2), None);
    }

    #[test]
    fn cancel_unlinks_from_any_position_in_a_slot() {
        // Head, middle and tail of one slot's list, in every order.
        for order in [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ] {
            let mut w = Wheel::new(0);
            for k in 0..5 {
                w.schedule(k, 7);
            }
            for &k in &order {
                assert!(w.cancel(k + 1));
            }
            assert_eq!(fired(&mut w, 7), vec![0, 4], "cancelled in order {order:?}");
            assert!(w.is_empty());
        }
    }

    #[test]
    fn rescheduling_replaces_the_entry() {
        let mut w = Wheel::new(0);
        w.schedule(1, 50);
        w.schedule(1, 5);
        assert_eq!(w.len(), 1);
        assert_eq!(w.due(1), Some(5));
        assert_eq!(fired(&mut w, 5), vec![1]);
        assert!(fired(&mut w, 60).is_empty(), "the old entry is gone");
        w.schedule(1, 70);
        w.schedule(1, 90);
        assert!(fired(&mut w, 80).is_empty());
        assert_eq!(fired(&mut w, 90), vec![1]);
    }

    #[test]
    fn fires_at_due_tick_not_before() {
        let mut w = Wheel::new(0);
        w.schedule(1, 5);
        w.schedule(2, 3);
        assert!(fired(&mut w, 2).is_empty());
        assert_eq!(fired(&mut w, 3), vec![2]);
        assert_eq!(fired(&mut w, 10), vec![1]);
        assert!(w.is_empty());
    }

    #[test]
    fn entries_beyond_one_turn_wait_for_their_turn() {
        let mut w = Wheel::new(0);
        let far = WHEEL_SLOTS as u32 + 7;
        w.schedule(1, far);
        w.schedule(2, 7);
        assert_eq!(fired(&mut w, 7), vec![2]);
        for t in 8..far {
            assert!(fired(&mut w, t).is_empty(), "tick {t}");
        }
        assert_eq!(fired(&mut w, far), vec![1]);
    }

    #[test]
    fn past_due_fires_next_tick_and_long_stalls_catch_up() {
        let mut w = Wheel::new(100);
        w.schedule(1, 50);
        assert_eq!(w.due(1), Some(101), "a past tick is moved to the next one");
        assert_eq!(fired(&mut w, 101), vec![1]);
        for k in 0..50 {
            w.schedule(k, 102 + k as u32 * 40);
        }
        assert_eq!(
            fired(&mut w, 100_000).len(),
            50,
            "a stall of many turns still fires everything"
        );
    }

    #[test]
    fn keys_are_independent_and_sparse_keys_work() {
        let mut w = Wheel::new(0);
        w.schedule(10_000, 3);
        w.schedule(0, 3);
        assert_eq!(w.due(5), None);
        assert!(w.cancel(10_000));
        assert_eq!(fired(&mut w, 3), vec![0]);
    }

    #[test]
    fn scheduling_at_the_end_of_the_tick_range_does_not_panic() {
        // 13.6 years of 100 ms ticks: the clock saturates at u32::MAX.
        for now in [u32::MAX - 2, u32::MAX - 1, u32::MAX] {
            let mut w = Wheel::new(now);
            w.schedule(1, 5);
            assert_eq!(w.due(1), Some(u32::MAX - 1));
            assert!(w.cancel(1));
        }
    }

    #[test]
    fn tick_rounding() {
        use std::time::Duration;
        assert_eq!(ticks(Duration::from_secs(1)), 10);
        assert_eq!(ticks(Duration::from_millis(101)), 2);
        assert_eq!(ticks(Duration::ZERO), 0);
    }
}
