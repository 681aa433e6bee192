//! The inbox (see `crate::inbox` and its queue, `src/inbox/queue.rs`): its wake-up pair
//! (a producer's claim and `sleep`), so a consumer that goes to sleep is rung for every
//! record queued after its last look; records across block boundaries (a block holds
//! two records in the loom build) taken exactly once and in each producer's order; a
//! cancel racing the consumer's take; and the loop freed while a producer rings.

use super::{model, rang};
use crate::inbox::{Cancel, Inbox, Record};
use loom::sync::Arc;
use loom::thread;

/// Takes what is queued and hands out every record taken (a pass's take, then its
/// slice's records run from their slots), with their numbers.
fn take_all<H>(inbox: &Inbox<H>) -> Vec<(u64, Record<H>)> {
    inbox.take(usize::MAX);
    std::iter::from_fn(|| inbox.next_record()).collect()
}

/// The loop's side: passes (wake up, take, doze) until it would sleep, that is until
/// `doze` finds nothing queued and the bell has not rung. Returns how many records it
/// took.
fn consume(inbox: &Inbox<u32>, mut took: usize) -> usize {
    loop {
        inbox.wake_up();
        took += take_all(inbox).into_iter().filter(|(_, r)| matches!(r, Record::Post { .. })).count();
        if inbox.doze(true) || rang(inbox.bell_fd()) {
            continue;
        }
        return took;
    }
}

#[test]
fn loom_inbox_wakeup() {
    model(|| {
        let inbox = Arc::new(Inbox::<u32>::new().expect("an eventfd"));
        let producers: Vec<_> = (0..2)
            .map(|n| {
                let inbox = inbox.clone();
                thread::spawn(move || {
                    inbox.post(n);
                })
            })
            .collect();
        let took = consume(&inbox, 0);
        for p in producers {
            p.join().unwrap();
        }
        // Asleep now: a record it has not taken must have rung the bell.
        if took < 2 {
            assert!(rang(inbox.bell_fd()), "a record was queued for a sleeping loop and nobody rang");
            assert_eq!(consume(&inbox, took), 2);
        }
        assert!(inbox.close().is_empty());
    });
}

/// A record that counts its drops: delivered or dropped, exactly once.
struct Counted(loom::sync::Arc<loom::sync::atomic::AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, loom::sync::atomic::Ordering::SeqCst);
    }
}

/// The loop is freed while a producer posts to it and rings its bell: the record is
/// handed back by `close`, dropped by its producer, or dropped with the inbox, once, and no ring reaches the
/// bell after `close` (its fd number may name another file by then).
#[test]
fn loom_inbox_close_while_ringing() {
    model(|| {
        let inbox = Arc::new(Inbox::<Counted>::new().expect("an eventfd"));
        let drops = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let producer = {
            let inbox = inbox.clone();
            let drops = drops.clone();
            thread::spawn(move || {
                inbox.post(Counted(drops));
            })
        };
        // The consumer dozes (so the producer rings), then the loop is freed.
        assert!(!inbox.doze(true) || inbox.has_queued());
        drop(inbox.close());
        producer.join().unwrap();
        // A record published after `close` is dropped with the queue.
        drop(inbox);
        assert_eq!(drops.load(loom::sync::atomic::Ordering::SeqCst), 1, "a record lost or dropped twice");
    });
}

/// A record tagged with its producer and its rank, counting its drops.
struct Tagged {
    producer: u32,
    rank: u32,
    _drop: Counted,
}

/// Two producers post three records between them (the first two, then one) while the
/// consumer takes: the loom build's blocks hold two records, so a block fills up and
/// the next is linked while the other producer may be waiting at the marker, and the
/// consumer crosses into it. Each record arrives once, in its producer's order, and
/// all three are dropped once.
#[test]
fn loom_inbox_blocks_fifo() {
    model(|| {
        let inbox = Arc::new(Inbox::<Tagged>::new().expect("an eventfd"));
        let drops = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let mut producers: Vec<_> = [2, 1]
            .into_iter()
            .enumerate()
            .map(|(producer, count)| {
                let inbox = inbox.clone();
                let drops = drops.clone();
                thread::spawn(move || {
                    for rank in 0..count {
                        inbox.post(Tagged { producer: producer as u32, rank, _drop: Counted(drops.clone()) });
                    }
                })
            })
            .collect();
        let mut next = [0u32; 2];
        let mut took = 0;
        // One take while the producers run, one after they are done (a spin until all
        // three arrive would exceed loom's branch limit).
        for round in 0..2 {
            if round == 1 {
                for p in std::mem::take(&mut producers) {
                    p.join().unwrap();
                }
            }
            for (_, record) in take_all(&inbox) {
                let Record::Post { handler } = record else { panic!("only posts were queued") };
                assert_eq!(handler.rank, next[handler.producer as usize], "a producer's records out of order");
                next[handler.producer as usize] += 1;
                took += 1;
            }
        }
        assert_eq!(took, 3, "a record published before the last take was not taken");
        assert!(inbox.close().is_empty());
        drop(inbox);
        assert_eq!(drops.load(loom::sync::atomic::Ordering::SeqCst), 3, "a record lost or dropped twice");
    });
}

/// The hand-over of records and blocks: one producer posts three records (the loom
/// build's blocks hold two, so it links a second block) while the consumer, once the
/// first is claimed, takes and runs them as they are published. Loom checks that each
/// record, and the second block, is read only after its producer's Release store
/// (the slot's stamp, the block's `next`, the tail's block) made it visible.
/// (`loom_inbox_blocks_fifo`'s consumer takes before any producer has run, in every
/// execution loom explores: it never reads a record in the middle of its hand-over.)
#[test]
fn loom_inbox_hand_over() {
    model(|| {
        let inbox = Arc::new(Inbox::<u32>::new().expect("an eventfd"));
        let producer = {
            let inbox = inbox.clone();
            thread::spawn(move || {
                for rank in 0..3 {
                    inbox.post(rank);
                }
            })
        };
        while !inbox.has_queued() {
            thread::yield_now();
        }
        let mut next = 0;
        while next < 3 {
            for (_, record) in take_all(&inbox) {
                let Record::Post { handler } = record else { panic!("only posts were queued") };
                assert_eq!(handler, next, "records out of order");
                next += 1;
            }
            thread::yield_now();
        }
        producer.join().unwrap();
        assert!(inbox.close().is_empty());
    });
}

/// A post is cancelled by another thread while the consumer takes (and a second
/// producer's post makes the block fill up meanwhile): its handler is either handed to
/// the canceller or taken by the consumer, never both, and dropped once.
#[test]
fn loom_inbox_cancel_races_take() {
    model(|| {
        let inbox = Arc::new(Inbox::<Counted>::new().expect("an eventfd"));
        let drops = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let seq = inbox.post(Counted(drops.clone()));
        let canceller = {
            let inbox = inbox.clone();
            thread::spawn(move || match inbox.cancel_post(seq, false) {
                Cancel::Removed(handler) => {
                    drop(handler);
                    true
                }
                Cancel::NotFound => false,
            })
        };
        let producer = {
            let inbox = inbox.clone();
            let drops = drops.clone();
            thread::spawn(move || {
                inbox.post(Counted(drops));
            })
        };
        let batch = take_all(&inbox);
        let took_it = batch.iter().any(|&(s, _)| s == seq);
        drop(batch);
        let cancelled = canceller.join().unwrap();
        producer.join().unwrap();
        assert!(took_it != cancelled, "the post was both taken and cancelled, or neither");
        drop(inbox.close());
        drop(inbox);
        assert_eq!(drops.load(loom::sync::atomic::Ordering::SeqCst), 2, "a record lost or dropped twice");
    });
}
