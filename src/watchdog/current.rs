//! What the loop thread is running right now, for the watchdog thread to read while it
//! runs: a sequence lock with one writer (the loop thread) and one reader (the
//! watchdog).
//!
//! The protocol:
//! * `seq` counts callbacks: `2n + 1` while the loop thread is inside its n-th watched
//!   callback, `2n + 2` once it returned. Only the loop thread writes anything here.
//! * [`Current::enter`]: a Release fence, then the callback's `id`, `kind`, `start_ns` and
//!   the thread's `tid` (Relaxed), then `seq = 2n + 1` (Release). [`Current::leave`]:
//!   `seq = 2n + 2` (Release).
//! * [`Current::peek`] (the watchdog): `seq` (Acquire), the fields (Relaxed), an
//!   Acquire fence, `seq` again (Relaxed). Both loads equal and odd: the fields are
//!   those of callback `seq`, which was running when `seq` was first read.
//!
//! Why the fields cannot belong to another callback when both loads agree: the first
//! load saw `2n + 1`, whose Release store the fields of callback n precede, so the
//! fields are at least that new. If a field load saw a value of a later callback, that
//! value was written after `enter`'s Release fence, which came after `seq = 2n + 2`;
//! the reader's Acquire fence after the field loads then makes that store (or a later
//! one) visible to the second load, which differs from `2n + 1`. Without the writer's
//! fence (or the reader's), the second load may still see `2n + 1` next to a later
//! callback's id (the loom model `loom_watchdog_reads_one_callback` finds it).
//!
//! Cost on the loop thread: a few plain stores per callback (x86: the fence and the
//! Release stores are ordinary moves).

use crate::sync::atomic::{fence, AtomicI32, AtomicU64, AtomicU8, Ordering::*};

/// The callback the loop thread was running when the watchdog looked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Running {
    /// The callback's number (odd); both reports of one callback carry it.
    pub seq: u64,
    pub id: u64,
    pub kind: u8,
    pub start_ns: u64,
    pub tid: i32,
}

#[derive(Default)]
pub struct Current {
    seq: AtomicU64,
    id: AtomicU64,
    kind: AtomicU8,
    start_ns: AtomicU64,
    tid: AtomicI32,
}

impl Current {
    /// The loop thread starts a callback; returns its number, for `leave`.
    pub fn enter(&self, id: u64, kind: u8, start_ns: u64, tid: i32) -> u64 {
        let seq = self.seq.load(Relaxed) | 1; // only this thread writes it: even here
        fence(Release);
        self.id.store(id, Relaxed);
        self.kind.store(kind, Relaxed);
        self.start_ns.store(start_ns, Relaxed);
        self.tid.store(tid, Relaxed);
        self.seq.store(seq, Release);
        seq
    }

    /// The loop thread returned from callback `seq`.
    pub fn leave(&self, seq: u64) {
        self.seq.store(seq + 1, Release);
    }

    /// The callback running now, if the loop thread is inside one and it did not
    /// change while this read it (then: None, look again later).
    pub fn peek(&self) -> Option<Running> {
        let seq = self.seq.load(Acquire);
        if seq & 1 == 0 {
            return None;
        }
        let running = Running {
            seq,
            id: self.id.load(Relaxed),
            kind: self.kind.load(Relaxed),
            start_ns: self.start_ns.load(Relaxed),
            tid: self.tid.load(Relaxed),
        };
        fence(Acquire);
        (self.seq.load(Relaxed) == seq).then_some(running)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn peek_sees_the_callback_inside_and_nothing_between() {
        let c = Current::default();
        assert_eq!(c.peek(), None);
        let s = c.enter(7, 2, 100, 42);
        assert_eq!(c.peek(), Some(Running { seq: s, id: 7, kind: 2, start_ns: 100, tid: 42 }));
        c.leave(s);
        assert_eq!(c.peek(), None);
        let t = c.enter(8, 3, 200, 42);
        assert!(t > s && t & 1 == 1);
        assert_eq!(c.peek().map(|r| r.id), Some(8));
    }
}
