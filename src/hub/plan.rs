//! The fan-out plan of one worker: deliveries drained from its mailbox are first gathered
//! into one batch (which local subscriber is owed which item), then handed out per
//! connection, so that N messages to one connection cost one write and nothing is copied or
//! allocated per subscriber on the common path. No sockets here: the event loop writes.

use std::sync::Arc;

use crate::codec::deflate::{Deflate, Window};
use crate::hub::link::Delivery;
use crate::hub::msg::Msg;
use crate::hub::subs::LocalIndex;

/// One delivery of the batch.
#[derive(Debug)]
pub enum Item {
    Message {
        channel: u64,
        msg: Arc<Msg>,
    },
    /// A join/leave frame.
    Presence(Arc<[u8]>),
    /// The channel's stream was reset (see [`Delivery::Reset`]): its `subscribed` frame.
    Reset {
        channel: u64,
        frame: Arc<[u8]>,
    },
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
                // Ids up to a subscriber's position were replayed, sent, or predate it.
                for sub in local.subs.iter().filter(|s| msg.seq > s.position) {
                    self.owed.push(Owed {
                        key: sub.key(),
                        gen: sub.gen,
                        item,
                        raw: sub.raw(),
                    });
                }
            }
            Delivery::Presence(_) => {
                for sub in local.subs.iter().filter(|s| s.presence() && !s.raw()) {
                    self.owed.push(Owed {
                        key: sub.key(),
                        gen: sub.gen,
                        item,
                        raw: false,
                    });
                }
            }
            // Raw subscribers read payloads only, and have no position to correct.
            Delivery::Reset { .. } => {
                for sub in local.subs.iter().filter(|s| !s.raw()) {
                    self.owed.push(Owed {
                        key: sub.key(),
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
                Delivery::Reset { frame, .. } => Item::Reset { channel, frame },
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

/// The WebSocket frame an owed item stands for, for a connection that compresses with
/// `window` (`None`: it does not). Messages use their compressed frame once
/// [`deflate_owed`] built it; join/leave and reset frames are small and go uncompressed.
pub fn ws_frame<'a>(items: &'a [Item], o: &Owed, window: Option<Window>) -> Option<&'a Arc<[u8]>> {
    match items.get(o.item as usize)? {
        Item::Message { msg, .. } => Some(msg.ws_frame_for(o.raw, window)),
        Item::Presence(f) | Item::Reset { frame: f, .. } => Some(f),
    }
}

/// Makes sure the compressed frames of the messages owed to a compressing connection exist:
/// the first worker that needs one compresses it, once for every subscriber on every worker.
pub fn deflate_owed(group: &[Owed], items: &[Item], codec: &mut Deflate, min_bytes: usize) {
    for o in group {
        if let Some(Item::Message { msg, .. }) = items.get(o.item as usize) {
            msg.deflate(o.raw, codec, min_bytes);
        }
    }
}
