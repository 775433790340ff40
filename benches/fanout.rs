//! Broadcast fan-out on one worker, with the library's real types and no sockets: one publish
//! through the `Hub` (encoded once), the worker's drain of its command channel into a `Batch`
//! (`gather`), and `deliver_ws` to each of 10,000 local subscribers (`format=raw`, as in
//! `benches/compare.sh`'s broadcast case), for a 32-byte payload.
//!
//! - `take_all`: every socket takes everything: one `writev` per subscriber, straight from
//!   the shared frame.
//! - `would_block`: every socket would block: the `writev` fails with `WouldBlock`, so each
//!   subscriber gets an `OutQueue` holding the shared frame (an `Arc` clone, no copy).
//! - `already_queued`: every subscriber already has output waiting (a slow consumer), so the
//!   frame is appended to its queue without trying the socket.
//!
//! Throughput is in subscribers (deliveries) per second.
//!
//! Run: `cargo bench --bench fanout` (add `-- --quick` for a short pass).

use std::hint::black_box;
use std::io::{self, IoSlice, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use crossbeam_channel::Receiver;
use mio::{Poll, Token, Waker};

use switchboard::codec::protocol::Data;
use switchboard::hub::engine::{Answer, ReplyTo, SubscribeReq};
use switchboard::hub::link::WorkerLink;
use switchboard::hub::plan::Batch;
use switchboard::hub::subs::LocalIndex;
use switchboard::hub::{Cmd, HistoryLimits, Hub};
use switchboard::net::write::{deliver_ws, Delivered};
use switchboard::transport::out::OutQueue;
use switchboard::transport::pending::ConnId;
use switchboard::transport::session::{self, Session};

/// Where answers would go: the memory engine answers at once, so nowhere.
const NO_REPLY: ReplyTo = ReplyTo {
    worker: 0,
    key: 0,
    gen: 0,
    ticket: 0,
};

const SUBSCRIBERS: usize = 10_000;
const CHANNEL: &str = "bench";
/// 32 bytes of JSON, like `switchboard-bench broadcast --size 32`.
const PAYLOAD: &str = r#"{"seq":1,"ts":1234567,"pad":"x"}"#;
/// switchboard's default `--max-outbound-bytes`.
const MAX_QUEUED: usize = 1 << 20;
/// `already_queued`: empty the queues (untimed) after this many publishes, so they stay short
/// and keep their capacity, as a slow consumer's queue would between writable edges.
const REQUEUE_EVERY: u64 = 64;

/// A socket that takes every byte.
struct TakeAll {
    bytes: u64,
}

impl Write for TakeAll {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let n = bufs.iter().map(|b| b.len()).sum();
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A socket whose send buffer is full.
struct Full;

impl Write for Full {
    fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }

    fn write_vectored(&mut self, _bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One worker's side of the hub with `SUBSCRIBERS` local subscribers on `CHANNEL`.
struct Worker {
    hub: Hub,
    rx: Receiver<Cmd>,
    /// Owns the waker's registration.
    _poll: Poll,
    index: LocalIndex,
    batch: Batch,
    /// Per subscriber (slab key = index), its queued output.
    outqs: Vec<Option<Box<OutQueue>>>,
}

impl Worker {
    fn new() -> Worker {
        let poll = Poll::new().expect("poll");
        let waker = Arc::new(Waker::new(poll.registry(), Token(0)).expect("waker"));
        let (tx, rx) = crossbeam_channel::unbounded();
        let hub = Hub::in_memory(
            HistoryLimits {
                size: 1000,
                ttl: Duration::from_secs(300),
                max_bytes: usize::MAX,
                max_channels: usize::MAX,
            },
            vec![WorkerLink::new(tx, waker)].into(),
            false,
            "bench",
        );
        let mut index = LocalIndex::default();
        for key in 0..SUBSCRIBERS {
            let mut s = Session::default();
            s.raw = true;
            let who = ConnId {
                worker: 0,
                key: key as u32,
                gen: 0,
            };
            let req = SubscribeReq {
                channel: CHANNEL,
                worker: 0,
                since: None,
                user: None,
            };
            let Answer::Now(Ok(sub)) = hub.engine.subscribe(req, NO_REPLY) else {
                panic!("the memory engine answers at once");
            };
            session::register(&mut index, &mut s, who, CHANNEL, &sub, false);
        }
        Worker {
            hub,
            rx,
            _poll: poll,
            index,
            batch: Batch::default(),
            outqs: (0..SUBSCRIBERS).map(|_| None).collect(),
        }
    }

    /// Publish once, drain the command channel as the worker does, and deliver to every
    /// subscriber through `socket`. Returns the deliveries made.
    fn publish_and_deliver<W: Write>(&mut self, socket: &mut W) -> usize {
        let _ = self.hub.publish(CHANNEL, &Data::Json(PAYLOAD), NO_REPLY);
        if let Some(link) = self.hub.workers().first() {
            // The worker clears this before draining, so every publish pays its wake-up.
            link.wake_pending.store(false, Ordering::Release);
            link.queued.store(0, Ordering::Relaxed);
        }
        for cmd in self.rx.try_iter() {
            if let Cmd::Deliver { channel, item } = cmd {
                self.batch.gather(&self.index, channel, item);
            }
        }
        let mut delivered = 0;
        let outqs = &mut self.outqs;
        self.batch.drain(|group, items| {
            let Some(outq) = group.first().and_then(|o| outqs.get_mut(o.key as usize)) else {
                return;
            };
            match deliver_ws(socket, outq, group, items, MAX_QUEUED, None) {
                Ok(Delivered::Ok(_)) => delivered += group.len(),
                other => panic!("delivery failed: {other:?}"),
            }
        });
        delivered
    }

    /// Drops every queue (what a drained subscriber looks like).
    fn clear_queues(&mut self) {
        self.outqs.iter_mut().for_each(|q| *q = None);
    }

    /// Empties every queue but keeps it (and its capacity).
    fn empty_queues(&mut self) {
        for q in self.outqs.iter_mut().flatten() {
            q.consume(q.len());
        }
    }
}

fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout_10k");
    g.throughput(Throughput::Elements(SUBSCRIBERS as u64));

    let mut w = Worker::new();
    let mut sink = TakeAll { bytes: 0 };
    assert_eq!(w.publish_and_deliver(&mut sink), SUBSCRIBERS);
    // Each subscriber got the 2-byte header and the payload, and nothing was queued.
    assert_eq!(sink.bytes, (SUBSCRIBERS * (2 + PAYLOAD.len())) as u64);
    assert!(w.outqs.iter().all(Option::is_none));
    g.bench_function("take_all", |b| {
        b.iter(|| black_box(w.publish_and_deliver(&mut sink)))
    });

    let mut w = Worker::new();
    assert_eq!(w.publish_and_deliver(&mut Full), SUBSCRIBERS);
    assert!(w
        .outqs
        .iter()
        .all(|q| q.as_ref().map(|q| q.len()) == Some(2 + PAYLOAD.len())));
    g.bench_function("would_block", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                w.clear_queues();
                let t = Instant::now();
                black_box(w.publish_and_deliver(&mut Full));
                total += t.elapsed();
            }
            total
        })
    });

    let mut w = Worker::new();
    w.publish_and_deliver(&mut Full);
    g.bench_function("already_queued", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                if i % REQUEUE_EVERY == 0 {
                    w.empty_queues();
                }
                let t = Instant::now();
                black_box(w.publish_and_deliver(&mut Full));
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
