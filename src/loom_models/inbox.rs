//! The inbox's wake-up pair, `queued` and `awake` (see `crate::inbox`): a consumer that
//! goes to sleep is rung for every record queued after its last look.

use super::{model, rang};
use crate::inbox::{Inbox, Record};
use loom::sync::Arc;
use loom::thread;
use std::collections::VecDeque;

/// The loop's side: passes (wake up, take, doze) until it would sleep, that is until
/// `doze` finds nothing queued and the bell has not rung. Returns how many records it
/// took.
fn consume(inbox: &Inbox<u32>, mut took: usize) -> usize {
    let mut batch = VecDeque::new();
    loop {
        inbox.wake_up();
        inbox.take(&mut batch, usize::MAX);
        took += batch.drain(..).filter(|r| matches!(r, Record::Post { .. })).count();
        if inbox.doze() || rang(inbox.bell_fd()) {
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
/// handed back by `close` or dropped by its producer, once, and no ring reaches the
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
        assert!(!inbox.doze() || inbox.has_queued());
        drop(inbox.close());
        producer.join().unwrap();
        assert_eq!(drops.load(loom::sync::atomic::Ordering::SeqCst), 1, "a record lost or dropped twice");
    });
}
