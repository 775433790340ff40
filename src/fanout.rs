//! Fan-out on one worker: deliveries drained from the hub are first gathered into one batch
//! (which local subscriber is owed which item), then written per connection, so that N
//! messages to one connection cost one `writev` and nothing is copied or allocated per
//! subscriber on the common path.

use std::io::{self, IoSlice, Write};
use std::sync::Arc;

use crate::hub::{Delivery, Msg};
use crate::outq::OutQueue;
use crate::session::LocalIndex;

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
        if q.len() + f.len() - if i == 0 { partial } else { 0 } > max_queued {
            return Ok(Delivered::OverCap);
        }
        q.push_shared(f.clone());
        if i == 0 {
            // The first frame was cut by a partial write.
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
        let mut n = match socket.write_vectored(&slices[..count]) {
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
