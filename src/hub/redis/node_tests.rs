//! The channel table against a fake store: what it asks of Redis and what reaches the
//! workers' mailboxes, for the merge of a subscription, the shortcut for a subscriber from
//! now, gap filling and resets.

use std::sync::Arc;

use crossbeam_channel::Receiver;
use mio::{Poll, Waker};

use super::*;
use crate::hub::link::{Cmd, Delivery, WorkerLink};
use crate::hub::redis::wire::Kind;

/// What the node asked of Redis.
#[derive(Debug, Default)]
struct Fake {
    subscribed: Vec<String>,
    reads: Vec<(String, u64, u64)>,   // channel, since, tag
    fences: Vec<(String, u64, bool)>, // channel, top, force
    digests: Vec<Option<String>>,
}

impl Store for Fake {
    fn subscribe(&mut self, channel: &str) -> Result<(), String> {
        self.subscribed.push(channel.into());
        Ok(())
    }
    fn unsubscribe(&mut self, _: &str) {}
    fn read(
        &mut self,
        channel: &str,
        since: u64,
        _: Option<&Epoch>,
        _: usize,
        tag: u64,
    ) -> Result<(), String> {
        self.reads.push((channel.into(), since, tag));
        Ok(())
    }
    fn fence(&mut self, channel: &str, _: &Epoch, top: u64, force: bool, digest: Option<&str>) {
        self.fences.push((channel.into(), top, force));
        self.digests.push(digest.map(str::to_owned));
    }
    fn join(&mut self, _: &str, _: &str) {}
    fn leave(&mut self, _: &str, _: &str) {}
}

struct Rig {
    node: Node,
    store: Fake,
    mailbox: Receiver<Cmd>,
    _poll: Poll,
}

fn rig() -> Rig {
    let poll = Poll::new().expect("poll");
    let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).expect("waker"));
    let (tx, rx) = crossbeam_channel::unbounded();
    let workers: Workers = vec![WorkerLink::new(tx, waker)].into();
    Rig {
        node: Node::new(workers, 100, 10),
        store: Fake::default(),
        mailbox: rx,
        _poll: poll,
    }
}

fn reply(ticket: u32) -> ReplyTo {
    ReplyTo {
        worker: 0,
        key: 1,
        gen: 1,
        ticket,
    }
}

fn epoch() -> Epoch {
    Epoch::parse("e1").expect("epoch")
}

fn entry(id: u64) -> Entry {
    Entry {
        id,
        kind: Kind::Text,
        payload: format!("m{id}").into_bytes(),
    }
}

fn kept(top: u64, ids: std::ops::RangeInclusive<u64>) -> Kept {
    Kept {
        epoch: epoch(),
        top,
        oldest: *ids.start(),
        entries: ids.map(entry).collect(),
    }
}

/// Everything in the mailbox: (answered ticket with its last_seq and replay ids) or
/// delivered ids, in order.
fn drain(r: &Rig) -> Vec<String> {
    r.mailbox
        .try_iter()
        .map(|cmd| match cmd {
            Cmd::Answer {
                to,
                answer: Answered::Subscribed(Ok(s)),
            } => {
                let ids: Vec<u64> = s.replay.iter().map(|m| m.seq).collect();
                format!("answer {} at {} replay {ids:?}", to.ticket, s.last_seq)
            }
            Cmd::Deliver {
                item: Delivery::Message(m),
                ..
            } => format!("msg {}", m.seq),
            Cmd::Deliver {
                item: Delivery::Reset { id, .. },
                ..
            } => format!("reset at {id}"),
            other => format!("{other:?}"),
        })
        .collect()
}

/// Subscribes the first subscriber of `c` with a resume from `since`, and answers its read
/// with history up to `top`.
fn first_subscriber(r: &mut Rig, since: u64, top: u64) {
    let since = Some(Since {
        id: since,
        epoch: Some(epoch()),
    });
    r.node
        .subscribe(&mut r.store, "c", 0, since, None, reply(1));
    assert_eq!(r.store.subscribed, ["c"]);
    assert!(r.store.reads.is_empty(), "reads wait for the subscription");
    r.node.on_subscribed(&mut r.store, "c");
    let (_, _, tag) = r.store.reads.pop().expect("a read");
    r.node.on_read(&mut r.store, tag, Ok(kept(top, 3..=top)));
}

#[test]
fn a_resume_replays_history_and_answers_at_its_end() {
    let mut r = rig();
    first_subscriber(&mut r, 2, 5);
    assert_eq!(drain(&r), ["answer 1 at 5 replay [3, 4, 5]"]);
}

#[test]
fn a_subscriber_from_now_on_a_followed_channel_needs_no_read() {
    let mut r = rig();
    first_subscriber(&mut r, 2, 5);
    r.node.on_message(&mut r.store, "c", entry(6), epoch());
    drain(&r);
    r.node.subscribe(&mut r.store, "c", 0, None, None, reply(2));
    assert!(
        r.store.reads.is_empty(),
        "no read for a subscriber from now"
    );
    assert_eq!(drain(&r), ["answer 2 at 6 replay []"]);
    // With a position, a read is still needed.
    let since = Some(Since {
        id: 4,
        epoch: Some(epoch()),
    });
    r.node
        .subscribe(&mut r.store, "c", 0, since, None, reply(3));
    assert_eq!(r.store.reads.len(), 1);
}

#[test]
fn a_jump_in_ids_is_filled_from_history_before_anything_later() {
    let mut r = rig();
    first_subscriber(&mut r, 2, 5);
    drain(&r);
    r.node.on_message(&mut r.store, "c", entry(8), epoch());
    let (_, since, tag) = r.store.reads.pop().expect("a fill read");
    assert_eq!(since, 5);
    assert!(drain(&r).is_empty(), "8 waits for 6 and 7");
    // While the fill is out, a subscriber from now cannot take the shortcut.
    r.node.subscribe(&mut r.store, "c", 0, None, None, reply(4));
    assert_eq!(r.store.reads.len(), 1);
    r.node.on_read(&mut r.store, tag, Ok(kept(8, 6..=8)));
    assert_eq!(drain(&r), ["msg 6", "msg 7", "msg 8"]);
}

#[test]
fn a_gap_history_no_longer_holds_is_a_reset() {
    let mut r = rig();
    first_subscriber(&mut r, 2, 5);
    drain(&r);
    r.node.on_message(&mut r.store, "c", entry(20), epoch());
    let (_, _, tag) = r.store.reads.pop().expect("a fill read");
    r.node.on_read(&mut r.store, tag, Ok(kept(20, 15..=20)));
    assert_eq!(
        drain(&r),
        [
            "reset at 14",
            "msg 15",
            "msg 16",
            "msg 17",
            "msg 18",
            "msg 19",
            "msg 20"
        ]
    );
    assert_eq!((r.node.gap_fills, r.node.resets), (1, 1));
}

#[test]
fn another_epoch_is_a_reset_and_the_channel_limit_refuses() {
    let mut r = rig();
    first_subscriber(&mut r, 2, 5);
    drain(&r);
    let other = Epoch::parse("e2").expect("epoch");
    r.node.on_message(&mut r.store, "c", entry(1), other);
    assert_eq!(drain(&r), ["reset at 0", "msg 1"]);
    for i in 0..9 {
        r.node
            .subscribe(&mut r.store, &format!("x{i}"), 0, None, None, reply(10));
    }
    drain(&r);
    r.node
        .subscribe(&mut r.store, "one-too-many", 0, None, None, reply(11));
    let refused = r.mailbox.try_recv().expect("an answer");
    assert!(
        matches!(
            refused,
            Cmd::Answer {
                answer: Answered::Subscribed(Err(EngineError::TooManyChannels)),
                ..
            }
        ),
        "{refused:?}"
    );
}

#[test]
fn a_message_numbered_again_proves_the_stream_went_back() {
    let mut r = rig();
    first_subscriber(&mut r, 2, 5);
    // 5 came by the read, not Pub/Sub: seeing it again is a duplicate, not proof.
    r.node.on_message(&mut r.store, "c", entry(5), epoch());
    r.node.on_message(&mut r.store, "c", entry(6), epoch());
    r.node.on_message(&mut r.store, "c", entry(7), epoch());
    assert_eq!(
        drain(&r),
        ["answer 1 at 5 replay [3, 4, 5]", "msg 6", "msg 7"]
    );
    assert!(r.store.fences.is_empty());
    // Redis lost 6 and 7 and numbers the next publish 6: held back, and the stream fenced.
    r.node.on_message(&mut r.store, "c", entry(6), epoch());
    assert_eq!(r.store.fences, [("c".to_string(), 7, true)]);
    assert!(drain(&r).is_empty());

    // The fence gave it epoch e2: the subscribers are reset and get history replayed,
    // the new 6 included.
    let e2 = Epoch::parse("e2").expect("epoch");
    r.node.on_top(&mut r.store, "c", e2.clone(), 6);
    let (_, since, tag) = r.store.reads.pop().expect("a fill read");
    assert_eq!(since, 7);
    let replay = Kept {
        epoch: e2.clone(),
        ..kept(6, 1..=6)
    };
    r.node.on_read(&mut r.store, tag, Ok(replay));
    assert_eq!(
        drain(&r),
        [
            "reset at 0",
            "msg 1",
            "msg 2",
            "msg 3",
            "msg 4",
            "msg 5",
            "msg 6"
        ]
    );
    // Pub/Sub lagging with a message of the old epoch changes nothing; the new one goes on.
    r.node.on_message(&mut r.store, "c", entry(6), epoch());
    r.node.on_message(&mut r.store, "c", entry(7), e2);
    assert_eq!(drain(&r), ["msg 7"]);
    assert_eq!(r.store.fences.len(), 1);
}

#[test]
fn a_fill_that_finds_redis_below_the_node_fences_and_checks_send_the_top() {
    let mut r = rig();
    first_subscriber(&mut r, 2, 5);
    drain(&r);
    r.node.check(&mut r.store);
    assert_eq!(r.store.fences, [("c".to_string(), 5, false)]);
    assert_eq!(r.store.digests, [None], "5 came by a read: no message kept");
    // One straight from Pub/Sub is kept, and the check names it.
    r.node.on_message(&mut r.store, "c", entry(6), epoch());
    r.node.check(&mut r.store);
    assert_eq!(r.store.fences[1], ("c".to_string(), 6, false));
    assert_eq!(r.store.digests[1], Some(entry(6).digest()));
    r.store.fences.clear();
    drain(&r);
    // A jump makes the node read after 6; Redis says its top is 3.
    r.node.on_message(&mut r.store, "c", entry(8), epoch());
    let (_, since, tag) = r.store.reads.pop().expect("a fill read");
    assert_eq!(since, 6);
    r.node.on_read(&mut r.store, tag, Ok(kept(3, 3..=3)));
    assert_eq!(r.store.fences, [("c".to_string(), 6, true)]);
    assert!(
        drain(&r).is_empty(),
        "nothing delivered from a stream that went back"
    );
}
