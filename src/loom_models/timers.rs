//! The owner's timer records against cancels from other threads (see
//! `crate::timer::Table`): a timer's handler is taken exactly once (by a cancel or by the
//! owner's call), a cancel answers Ok only for a timer that then never starts (a one-shot)
//! or starts no more (an `every` in its call), and the owner reuses a record only once a
//! canceller is done with its handler.

use super::model;
use crate::timer::{Begin, OwnTimers, Table};
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::sync::Arc as LoomArc;
use loom::thread;

/// A handler that counts its drops (its end: `free_fn` in C).
struct Handler(LoomArc<AtomicUsize>);

impl crate::timer::Pack for Handler {}

impl Drop for Handler {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// The owner schedules a one-shot timer A and fires it while another thread cancels it
/// (by A's id, known beforehand), from before A is scheduled; then the owner schedules
/// B, which reuses A's record when A is over (so a canceller still reading A's handler
/// would race with B's write). Twice: A in a record never used (published by `count`),
/// and A in a record of the free list (published by its state).
#[test]
fn loom_timers_cancel_against_fire_and_reuse() {
    for reused in [false, true] {
        model(move || cancel_against_fire_and_reuse(reused));
    }
}

fn cancel_against_fire_and_reuse(reused: bool) {
    let table = LoomArc::new(Table::<Handler>::default());
    let mut own = OwnTimers::new(0);
    let drops = LoomArc::new(AtomicUsize::new(0));
    if reused {
        // A timer Z in the first record, cancelled: the record is free, generation 2.
        let (z, gz) = table.schedule(&mut own, Handler(drops.clone()), 0).ok().unwrap();
        assert!(table.cancel_owned(&mut own, z, gz).unwrap().is_some());
    }
    let base = usize::from(reused);
    let (a, ga) = (0, if reused { 2 } else { 1 });
    let canceller = {
        let table = table.clone();
        thread::spawn(move || table.cancel_foreign(a, ga).map(|handler| handler.is_some()))
    };
    assert_eq!(table.schedule(&mut own, Handler(drops.clone()), 0).ok(), Some((a, ga)));
    let called = match table.begin(&mut own, a, ga) {
        Begin::Call { handler, .. } => {
            let over = table.finish(&mut own, a, ga, handler);
            assert!(over.is_some(), "a one-shot timer is over after its call");
            true
        }
        Begin::Reclaimed => false,
        Begin::Stale => {
            // The canceller holds the record (CLAIMED): the owner met it mid-move.
            unreachable!("the owner waits for a claimed record")
        }
    };
    let (b, _) = table.schedule(&mut own, Handler(drops.clone()), 0).ok().expect("room");
    let cancelled = canceller.join().unwrap();
    match cancelled {
        Ok(true) => assert!(!called, "cancelled, then called"),
        Ok(false) => unreachable!("a one-shot timer has no EVERY phase"),
        Err(()) => assert!(called, "neither called nor cancelled"),
    }
    if !called {
        assert_eq!(b, a, "a reclaimed record is reused");
    }
    assert_eq!(drops.load(SeqCst), base + 1, "A's handler ended exactly once");
    drop(table.end_all(&mut own));
    assert_eq!(drops.load(SeqCst), base + 2);
}

/// An `every` timer in its call, cancelled by another thread: Ok, and the owner ends it
/// after the call; or the cancel comes after the call put it back (ARMED), and takes it.
#[test]
fn loom_timers_cancel_of_an_every_timer_in_its_call() {
    model(|| {
        let table = LoomArc::new(Table::<Handler>::default());
        let mut own = OwnTimers::new(0);
        let drops = LoomArc::new(AtomicUsize::new(0));
        let (a, ga) = table.schedule(&mut own, Handler(drops.clone()), 5).ok().expect("room");
        let Begin::Call { handler, interval_ns: 5 } = table.begin(&mut own, a, ga) else {
            unreachable!("nobody else touched it yet")
        };
        let canceller = {
            let table = table.clone();
            thread::spawn(move || table.cancel_foreign(a, ga).map(|handler| handler.is_some()))
        };
        let over = table.finish(&mut own, a, ga, handler);
        let ended_by_owner = over.is_some();
        drop(over);
        let cancelled = canceller.join().unwrap();
        assert!(cancelled.is_ok(), "a live every timer is always found");
        if !ended_by_owner {
            // Re-armed before the cancel came: the cancel took the handler, and the owner
            // reclaims the record when it meets it.
            assert_eq!(cancelled, Ok(true));
            assert!(matches!(table.begin(&mut own, a, ga), Begin::Reclaimed));
        } else {
            assert_eq!(cancelled, Ok(false));
        }
        assert_eq!(drops.load(SeqCst), 1);
        assert_eq!(own.live(), 0);
    });
}

/// The owner cancels an armed timer while another thread cancels it too: exactly one of
/// them wins (Ok with the handler; the other: not found), the handler ends once, and
/// the owner's later schedule, which reuses the record, is not disturbed by the loser.
#[test]
fn loom_timers_owner_cancel_against_foreign_cancel() {
    model(|| {
        let table = LoomArc::new(Table::<Handler>::default());
        let mut own = OwnTimers::new(0);
        let drops = LoomArc::new(AtomicUsize::new(0));
        let (a, ga) = table.schedule(&mut own, Handler(drops.clone()), 0).ok().expect("room");
        let canceller = {
            let table = table.clone();
            thread::spawn(move || table.cancel_foreign(a, ga).map(|handler| handler.is_some()))
        };
        let by_owner = table.cancel_owned(&mut own, a, ga);
        let by_owner = by_owner.map(|handler| handler.is_some());
        let (b, gb) = table.schedule(&mut own, Handler(drops.clone()), 0).ok().expect("room");
        let by_other = canceller.join().unwrap();
        match (by_owner, by_other) {
            (Ok(true), Err(())) => assert_eq!(b, a, "the owner's cancel frees the record at once"),
            (Err(()), Ok(true)) => {}
            other => unreachable!("exactly one cancel wins: {other:?}"),
        }
        assert_eq!(drops.load(SeqCst), 1, "A's handler ended exactly once");
        // B is live whoever won; the owner ends it (and reclaims A's record if needed).
        assert_eq!(table.cancel_owned(&mut own, b, gb).map(|handler| handler.is_some()), Ok(true));
        assert_eq!(drops.load(SeqCst), 2);
        drop(table.end_all(&mut own));
        assert_eq!(drops.load(SeqCst), 2);
    });
}

/// A handler that packs (as C's without a `free_fn`), so that the owner's straight line
/// (`crate::timer` fast.rs) schedules and cancels it; its two words check each other,
/// so a canceller that read them half-written would see it (and loom sees the race).
#[derive(Debug, PartialEq)]
struct Words(usize);

impl crate::timer::Pack for Words {
    fn pack(&self) -> Option<[usize; 2]> {
        Some([self.0, !self.0])
    }

    unsafe fn unpack(words: [usize; 2]) -> Self {
        assert_eq!(words[1], !words[0], "a packed handler read half-written");
        Words(words[0])
    }
}

/// The owner's straight line against another thread's cancel: timer A, packed, is
/// scheduled by `schedule_packed` (into a record never used, published by `count`, or
/// into a freed one, published by its state) while another thread cancels it by its id
/// (known beforehand), then the owner cancels it by `cancel_packed` (the general
/// `cancel_owned` answering when that declines): exactly one cancel ends A, and the
/// other thread, when it wins, reads A's words whole.
#[test]
fn loom_timers_packed_owner_cancel_against_foreign_cancel() {
    for reused in [false, true] {
        model(move || packed_cancel_against_foreign_cancel(reused));
    }
}

fn packed_cancel_against_foreign_cancel(reused: bool) {
    let table = LoomArc::new(Table::<Words>::default());
    let mut own = OwnTimers::new(0);
    // Records 0, 1, 2; 0 cancelled the general way, which leaves a budget of 2 (two
    // live timers), so that the straight line cancels without a look at stale entries.
    for n in 0..3 {
        assert_eq!(table.schedule(&mut own, Words(n), 0).ok(), Some((n as u32, 1)));
    }
    assert_eq!(table.cancel_owned(&mut own, 0, 1), Ok(None), "packed: nothing to drop");
    if !reused {
        assert_eq!(table.schedule(&mut own, Words(0), 0).ok(), Some((0, 2)), "the freed record");
    }
    let (a, ga) = if reused { (0, 2) } else { (3, 1) };
    let canceller = {
        let table = table.clone();
        thread::spawn(move || table.cancel_foreign(a, ga))
    };
    assert_eq!(table.schedule_packed(&mut own, [7, !7]), Some((a, ga)));
    let by_owner = table.cancel_packed(&mut own, a, ga) || table.cancel_owned(&mut own, a, ga).is_ok();
    let by_other = canceller.join().unwrap();
    match (by_owner, by_other) {
        (true, Err(())) => {}
        (false, Ok(Some(handler))) => {
            assert_eq!(handler, Words(7));
            // The owner reclaims the record when it meets it.
            assert!(matches!(table.begin(&mut own, a, ga), Begin::Reclaimed));
        }
        other => unreachable!("exactly one cancel wins: {other:?}"),
    }
    assert_eq!(own.live(), if reused { 2 } else { 3 });
    drop(table.end_all(&mut own));
}
