//! Fan-out on one worker: deliveries drained from the hub are first gathered into one batch
//! (which local subscriber is owed which item), then written per connection, so that N
//! messages to one connection cost one `writev` and nothing is copied or allocated per
//! subscriber on the common path.

use std::io::{self, IoSlice, Write};
use std::sync::Arc;

use crate::hub::session::LocalIndex;
use crate::hub::{Delivery, Msg};
use crate::net::outq::{write_gathered, OutQueue};

/// Frames gathered for one connection per `writev`.
const MAX_IOVECS: usize = 64;

/// One delivery of the batch.
#[derive(Debug)]
pub enum Item {
    Message {
        channel: u64,
        msg: Arc<Msg>,
    },
    /// A join/leave frame.
    Presence(Arc<[u8]>),
}

/// One item owed to one subscriber.
#[derive(Debug, Clone, Copy)]
pub struct Owed {
    pub key: u32,
    pub gen: u32,
    pub item: u32,
    /// The subscriber takes bare payloads (`format=raw`).
    pub raw: bool,
}

/// What one drain of the worker's queue owes to whom.
#[derive(Debug, Default)]
pub struct Batch {
    pub items: Vec<Item>,
    owed: Vec<Owed>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.owed.is_empty()
    }

    /// Notes which local subscribers of `channel` are owed `delivery`.
    pub fn gather(&mut self, index: &LocalIndex, channel: u64, delivery: Delivery) {
        let Some(local) = index.get(channel) else {
            return;
        };
        let item = self.items.len() as u32;
        let before = self.owed.len();
        match &delivery {
            Delivery::Message(msg) => {
                // Ids up to min_seq were replayed or predate the subscription.
                for (_, sub) in local.subs.iter().filter(|(_, s)| msg.seq > s.min_seq) {
                    self.owed.push(Owed {
                        key: sub.key,
                        gen: sub.gen,
                        item,
                        raw: sub.raw,
                    });
                }
            }
            Delivery::Presence(_) => {
                for (_, sub) in local.subs.iter().filter(|(_, s)| s.presence && !s.raw) {
                    self.owed.push(Owed {
                        key: sub.key,
                        gen: sub.gen,
                        item,
                        raw: false,
                    });
                }
            }
        }
        if self.owed.len() > before {
            self.items.push(match delivery {
                Delivery::Message(msg) => Item::Message { channel, msg },
                Delivery::Presence(f) => Item::Presence(f),
            });
        }
    }

    /// Hands each connection's owed items (in delivery order) to `deliver`, then empties the
    /// batch, keeping its capacity.
    pub fn drain(&mut self, mut deliver: impl FnMut(&[Owed], &[Item])) {
        // Stable: each connection's items stay in delivery order.
        self.owed.sort_by_key(|o| o.key);
        for group in self.owed.chunk_by(|a, b| a.key == b.key && a.gen == b.gen) {
            deliver(group, &self.items);
        }
        self.owed.clear();
        self.items.clear();
    }
}

/// The WebSocket frame an owed item stands for.
pub fn ws_frame<'a>(items: &'a [Item], o: &Owed) -> Option<&'a Arc<[u8]>> {
    match items.get(o.item as usize)? {
        Item::Message { msg, .. } if o.raw => Some(&msg.raw_frame),
        Item::Message { msg, .. } => Some(&msg.frame),
        Item::Presence(f) => Some(f),
    }
}

/// Outcome of delivering to a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Delivered or queued; this many bytes went straight to the socket.
    Ok(usize),
    /// Queued output would pass the cap: the connection must be cut off.
    OverCap,
}

/// Delivers owed frames to a WebSocket: straight from the shared buffers with `writev` while
/// nothing is queued, then into its queue (sharing, not copying) up to `max_queued` bytes.
pub fn deliver_ws<W: Write>(
    socket: &mut W,
    outq: &mut Option<Box<OutQueue>>,
    group: &[Owed],
    items: &[Item],
    max_queued: usize,
) -> io::Result<Delivered> {
    let (mut done, mut partial) = (0, 0);
    if outq.is_none() {
        (done, partial) = write_direct(socket, group, items)?;
    }
    let written: usize = group
        .iter()
        .take(done)
        .filter_map(|o| ws_frame(items, o))
        .map(|f| f.len())
        .sum::<usize>()
        + partial;
    let Some(rest) = group.get(done..).filter(|r| !r.is_empty()) else {
        return Ok(Delivered::Ok(written));
    };
    let q = outq.get_or_insert_with(Box::default);
    for (i, o) in rest.iter().enumerate() {
        let Some(f) = ws_frame(items, o) else {
            continue;
        };
        // A frame cut by a partial write is always finished (a cut-off connection still
        // gets whole frames, then its Close); and the cap bounds the backlog, so one frame
        // larger than the cap still goes out when nothing else is queued.
        let cut = i == 0 && partial > 0;
        if !cut && !q.is_empty() && q.len() + f.len() > max_queued {
            return Ok(Delivered::OverCap);
        }
        q.push_shared(f.clone());
        if i == 0 {
            q.consume(partial);
        }
    }
    Ok(Delivered::Ok(written))
}

/// Writes owed frames until all are out or the socket would block. Returns how many went out
/// whole, and how many bytes of the next one.
fn write_direct<W: Write>(
    socket: &mut W,
    group: &[Owed],
    items: &[Item],
) -> io::Result<(usize, usize)> {
    let frame = |o: &Owed| ws_frame(items, o).map_or(&[][..], |f| &f[..]);
    let mut done = 0;
    while let Some(rest) = group.get(done..).filter(|r| !r.is_empty()) {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut count = 0;
        for (slot, o) in slices.iter_mut().zip(rest) {
            *slot = IoSlice::new(frame(o));
            count += 1;
        }
        let mut n = match write_gathered(socket, &slices[..count]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((done, 0)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for o in rest.iter().take(count) {
            let len = frame(o).len();
            if n < len {
                return Ok((done, n));
            }
            n -= len;
            done += 1;
        }
    }
    Ok((done, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::frame::{self, OpCode};
    use crate::net::outq::tests::Trickle;

    /// A socket that takes `budget` bytes in all, then would block.
    fn sink(budget: usize) -> Trickle {
        Trickle {
            got: Vec::new(),
            cap: usize::MAX,
            budget,
        }
    }

    fn presence_items(sizes: &[usize]) -> Vec<Item> {
        sizes
            .iter()
            .map(|&n| {
                let mut f = Vec::new();
                frame::write_server_frame(&mut f, OpCode::Binary, &vec![7u8; n]);
                Item::Presence(f.into())
            })
            .collect()
    }

    fn owed(n: usize) -> Vec<Owed> {
        (0..n)
            .map(|i| Owed {
                key: 1,
                gen: 0,
                item: i as u32,
                raw: false,
            })
            .collect()
    }

    #[test]
    fn writes_straight_through_and_queues_the_rest_in_order() {
        let items = presence_items(&[10, 20, 30]);
        let mut sink = sink(25);
        let mut q = None;
        let r = deliver_ws(&mut sink, &mut q, &owed(3), &items, 1 << 20).unwrap();
        assert_eq!(r, Delivered::Ok(25));
        let queued = q.as_ref().map_or(0, |q| q.len());
        assert_eq!(25 + queued, 12 + 22 + 32);
        sink.budget = usize::MAX;
        q.as_mut().unwrap().flush_to(&mut sink).unwrap();
        let mut want = Vec::new();
        for it in &items {
            if let Item::Presence(f) = it {
                want.extend_from_slice(f);
            }
        }
        assert_eq!(sink.got, want);
    }

    #[test]
    fn a_frame_cut_by_a_partial_write_is_finished_even_over_the_cap() {
        let items = presence_items(&[1000, 1000]);
        let mut sink = sink(100);
        let mut q = None;
        let r = deliver_ws(&mut sink, &mut q, &owed(2), &items, 64).unwrap();
        assert_eq!(r, Delivered::OverCap, "the second frame does not fit");
        assert_eq!(
            100 + q.as_ref().unwrap().len(),
            1004,
            "the first frame is queued whole"
        );
    }

    #[test]
    fn one_frame_larger_than_the_cap_goes_out_when_nothing_is_queued() {
        let items = presence_items(&[5000]);
        let mut sink = sink(0);
        let mut q = None;
        assert_eq!(
            deliver_ws(&mut sink, &mut q, &owed(1), &items, 1024).unwrap(),
            Delivered::Ok(0)
        );
        assert_eq!(q.as_ref().unwrap().len(), 5004);
        // Behind it, the next one is over the cap.
        assert_eq!(
            deliver_ws(&mut sink, &mut q, &owed(1), &items, 1024).unwrap(),
            Delivered::OverCap
        );
    }
}
