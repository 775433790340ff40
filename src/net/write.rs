//! Writing a connection's output to its socket: the batch buffer, the queue, and fan-out
//! frames straight from their shared buffers, with one system call per flush.

use std::io::{self, IoSlice, Write};

use crate::codec::deflate::Window;
use crate::hub::plan::{ws_frame, Item, Owed};
use crate::transport::out::OutQueue;

/// Iovecs per `writev` (well under IOV_MAX = 1024).
pub const MAX_IOVECS: usize = 64;

/// Writes gathered buffers with one system call: `writev` for several, plain `send` (std's
/// `TcpStream::write`) for one. One frame per socket is the common fan-out case, and `send`
/// skips the vfs layer `writev` goes through (`fdget_pos`, iovec import): about a tenth of
/// the kernel's cost per delivery in a 10,000-subscriber profile.
pub fn write_gathered<W: Write>(sink: &mut W, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    match slices {
        [one] => sink.write(one),
        _ => sink.write_vectored(slices),
    }
}

/// Outcome of a flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Everything was written.
    All,
    /// The socket would block; wait for the writable edge.
    Blocked,
}

/// Writes as much of `q` as the socket takes. Errors other than WouldBlock are returned.
pub fn flush_queue<W: Write>(q: &mut OutQueue, sink: &mut W) -> io::Result<Flushed> {
    while !q.is_empty() {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let n = q.slices(&mut slices);
        match write_gathered(sink, &slices[..n]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => q.consume(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::Blocked),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Flushed::All)
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
/// `window`: the connection compresses (permessage-deflate) and takes the messages'
/// compressed frames, already built (`plan::deflate_owed`).
pub fn deliver_ws<W: Write>(
    socket: &mut W,
    outq: &mut Option<Box<OutQueue>>,
    group: &[Owed],
    items: &[Item],
    max_queued: usize,
    window: Option<Window>,
) -> io::Result<Delivered> {
    let (mut done, mut partial) = (0, 0);
    if outq.is_none() {
        (done, partial) = write_direct(socket, group, items, window)?;
    }
    let written: usize = group
        .iter()
        .take(done)
        .filter_map(|o| ws_frame(items, o, window))
        .map(|f| f.len())
        .sum::<usize>()
        + partial;
    let Some(rest) = group.get(done..).filter(|r| !r.is_empty()) else {
        return Ok(Delivered::Ok(written));
    };
    let q = outq.get_or_insert_with(Box::default);
    for (i, o) in rest.iter().enumerate() {
        let Some(f) = ws_frame(items, o, window) else {
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
    window: Option<Window>,
) -> io::Result<(usize, usize)> {
    let frame = |o: &Owed| ws_frame(items, o, window).map_or(&[][..], |f| &f[..]);
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
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;

    /// A sink that takes at most `cap` bytes per call and then would block after `budget`;
    /// like a socket's writev, it takes from every buffer while there is room. Also the
    /// socket of the fan-out tests.
    pub(crate) struct Trickle {
        pub got: Vec<u8>,
        pub cap: usize,
        pub budget: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for b in bufs {
                for &byte in b.iter() {
                    if n == self.cap || self.budget == 0 {
                        return Ok(n);
                    }
                    self.got.push(byte);
                    n += 1;
                    self.budget -= 1;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Records which call each write came through.
    #[derive(Default)]
    struct Calls(Vec<&'static str>);

    impl Write for Calls {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.push("write");
            Ok(buf.len())
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.0.push("writev");
            Ok(bufs.iter().map(|b| b.len()).sum())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn one_buffer_is_a_plain_write_and_several_a_writev() {
        let mut sink = Calls::default();
        let n = write_gathered(&mut sink, &[IoSlice::new(b"abc")]);
        assert_eq!(n.ok(), Some(3));
        let n = write_gathered(&mut sink, &[IoSlice::new(b"ab"), IoSlice::new(b"cd")]);
        assert_eq!(n.ok(), Some(4));
        assert_eq!(sink.0, ["write", "writev"]);
    }

    #[test]
    fn order_is_kept_across_partial_writes_and_kinds() {
        let mut q = OutQueue::new();
        q.push_bytes(b"ab");
        q.push_bytes(b"cd");
        q.push_shared(Arc::from(&b"EFG"[..]));
        q.push_owned(b"hij".to_vec());
        q.push_bytes(b"k");
        assert_eq!(q.len(), 11);
        let mut sink = Trickle {
            got: Vec::new(),
            cap: 3,
            budget: 4,
        };
        assert_eq!(flush_queue(&mut q, &mut sink).unwrap(), Flushed::Blocked);
        assert_eq!(q.len(), 7);
        q.push_bytes(b"l");
        sink.budget = 100;
        assert_eq!(flush_queue(&mut q, &mut sink).unwrap(), Flushed::All);
        assert_eq!(sink.got, b"abcdEFGhijkl");
        assert!(q.is_empty());
    }

    #[test]
    fn small_pushes_coalesce_even_into_a_partly_written_front() {
        let mut q = OutQueue::new();
        for _ in 0..100 {
            q.push_bytes(b"xy");
        }
        assert_eq!(q.chunk_count(), 1);
        let mut sink = Trickle {
            got: Vec::new(),
            cap: 5,
            budget: 5,
        };
        flush_queue(&mut q, &mut sink).unwrap();
        q.push_bytes(b"z");
        assert_eq!(q.chunk_count(), 1);
        sink.budget = usize::MAX;
        flush_queue(&mut q, &mut sink).unwrap();
        assert_eq!(sink.got.len(), 201);
        assert_eq!(sink.got.last(), Some(&b'z'));
    }

    #[test]
    fn more_chunks_than_iovecs() {
        let mut q = OutQueue::new();
        let frame: Arc<[u8]> = Arc::from(&b"0123456789"[..]);
        for _ in 0..(MAX_IOVECS * 3 + 5) {
            q.push_shared(frame.clone());
        }
        let mut sink = Trickle {
            got: Vec::new(),
            cap: usize::MAX,
            budget: usize::MAX,
        };
        assert_eq!(flush_queue(&mut q, &mut sink).unwrap(), Flushed::All);
        assert_eq!(sink.got.len(), 10 * (MAX_IOVECS * 3 + 5));
    }
}

#[cfg(test)]
mod fanout_tests {
    use super::tests::Trickle;
    use super::*;
    use crate::codec::frame::{self, OpCode};

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
        let r = deliver_ws(&mut sink, &mut q, &owed(3), &items, 1 << 20, None).unwrap();
        assert_eq!(r, Delivered::Ok(25));
        let queued = q.as_ref().map_or(0, |q| q.len());
        assert_eq!(25 + queued, 12 + 22 + 32);
        sink.budget = usize::MAX;
        flush_queue(q.as_mut().unwrap(), &mut sink).unwrap();
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
        let r = deliver_ws(&mut sink, &mut q, &owed(2), &items, 64, None).unwrap();
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
            deliver_ws(&mut sink, &mut q, &owed(1), &items, 1024, None).unwrap(),
            Delivered::Ok(0)
        );
        assert_eq!(q.as_ref().unwrap().len(), 5004);
        // Behind it, the next one is over the cap.
        assert_eq!(
            deliver_ws(&mut sink, &mut q, &owed(1), &items, 1024, None).unwrap(),
            Delivered::OverCap
        );
    }
}
