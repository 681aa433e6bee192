//! Unit tests of the owner's timer table (`table.rs`).

use super::super::chunks::FIRST_CHUNK;
use super::*;

impl Pack for Box<u32> {}

/// Inert, packs: as C's handler without a `free_fn`.
impl Pack for () {
    fn pack(&self) -> Option<[usize; 2]> {
        Some([0, 0])
    }

    unsafe fn unpack(_: [usize; 2]) -> Self {}
}

/// Packs (it has no drop), and says which timer it was.
#[derive(Debug, PartialEq)]
struct Word(usize);

impl Pack for Word {
    fn pack(&self) -> Option<[usize; 2]> {
        Some([self.0, !self.0])
    }

    unsafe fn unpack(words: [usize; 2]) -> Self {
        assert_eq!(words[1], !words[0], "packed words come back whole");
        Word(words[0])
    }
}

#[test]
fn packed_handlers_come_back_from_calls_cancels_and_the_end() {
    let table = Table::<Word>::default();
    let mut own = OwnTimers::new(0);
    let (a, ga) = table.schedule(&mut own, Word(1), 0).ok().unwrap();
    let (b, gb) = table.schedule(&mut own, Word(2), 0).ok().unwrap();
    let (c, gc) = table.schedule(&mut own, Word(3), 0).ok().unwrap();
    // An `every` timer is never packed: its handler goes back after each call.
    let (e, ge) = table.schedule(&mut own, Word(4), 5).ok().unwrap();
    assert_eq!(table.cancel_foreign(a, ga), Ok(Some(Word(1))));
    assert_eq!(table.cancel_owned(&mut own, b, gb), Ok(None), "forgotten unread");
    let Begin::Call { handler, interval_ns: 0 } = table.begin(&mut own, c, gc) else { panic!() };
    assert_eq!(handler, Word(3));
    assert_eq!(table.finish(&mut own, c, gc, handler), Some(Word(3)));
    let Begin::Call { handler, interval_ns: 5 } = table.begin(&mut own, e, ge) else { panic!() };
    assert_eq!(table.finish(&mut own, e, ge, handler), None);
    // Reused records: packed where a body was, and the other way round.
    let (f, gf) = table.schedule(&mut own, Word(5), 7).ok().unwrap();
    let (g, gg) = table.schedule(&mut own, Word(6), 0).ok().unwrap();
    assert!(gf > 1 && gg > 1);
    assert_eq!(table.cancel_owned(&mut own, f, gf), Ok(Some(Word(5))));
    let mut ended = table.end_all(&mut own);
    ended.sort_by_key(|w| w.0);
    assert_eq!(ended, vec![Word(4), Word(6)]);
    assert_eq!(table.cancel_foreign(g, gg), Err(()));
    assert_eq!(own.live(), 0);
}

#[test]
fn record_indices_map_onto_chunks_without_gaps() {
    type T = Chunks<()>;
    let mut expected = (0, 0);
    for index in 0..100_000u32 {
        assert_eq!(T::locate(index), expected, "index {index}");
        expected.1 += 1;
        if expected.1 == FIRST_CHUNK << expected.0 {
            expected = (expected.0 + 1, 0);
        }
    }
    const { assert!(TABLE_MAX < 1 << 24, "an index fits an id") };
}

#[test]
fn cancels_and_calls_settle_once() {
    let table = Table::<Box<u32>>::default();
    let mut own = OwnTimers::new(0);
    let (a, ga) = table.schedule(&mut own, Box::new(1), 0).ok().unwrap();
    let (b, gb) = table.schedule(&mut own, Box::new(2), 5).ok().unwrap();
    assert_eq!(own.live(), 2);
    // Another thread cancels a; the owner's cancel and firing of it then fail.
    assert_eq!(table.cancel_foreign(a, ga), Ok(Some(Box::new(1))));
    assert_eq!(table.cancel_foreign(a, ga), Err(()));
    assert_eq!(table.cancel_owned(&mut own, a, ga), Err(()));
    assert!(matches!(table.begin(&mut own, a, ga), Begin::Reclaimed));
    assert_eq!(own.take_reclaimed(), 1);
    assert_eq!(own.live(), 1);
    // b fires, is cancelled in its call, and ends when the call returns.
    let Begin::Call { handler, interval_ns: 5 } = table.begin(&mut own, b, gb) else { panic!() };
    assert_eq!(table.cancel_foreign(b, gb), Ok(None));
    assert_eq!(table.cancel_owned(&mut own, b, gb), Err(()));
    assert_eq!(table.finish(&mut own, b, gb, handler), Some(Box::new(2)));
    assert_eq!(own.live(), 0);
    // The records are reused with new generations; old ids match nothing.
    let (c, gc) = table.schedule(&mut own, Box::new(3), 0).ok().unwrap();
    assert!(c == a || c == b);
    assert!(gc > 1);
    assert_eq!(table.cancel_foreign(a, ga), Err(()));
    assert!(matches!(table.begin(&mut own, c, gc - 1), Begin::Stale));
    let Begin::Call { handler, .. } = table.begin(&mut own, c, gc) else { panic!() };
    assert_eq!(table.cancel_owned(&mut own, c, gc), Err(()), "a one-shot call has begun");
    assert_eq!(table.finish(&mut own, c, gc, handler), Some(Box::new(3)));
    let (d, gd) = table.schedule(&mut own, Box::new(4), 0).ok().unwrap();
    assert_eq!(table.end_all(&mut own), vec![Box::new(4)]);
    assert_eq!(table.cancel_foreign(d, gd), Err(()));
    assert_eq!(own.live(), 0);
}

#[test]
fn owner_cancels_keep_stale_entries_bounded_and_clear_the_wheel_at_the_end() {
    // Whatever the mix of schedules and cancels, the wheel holds at most the live
    // timers' entries plus max(2 live, records) + 4097 stale ones (the sweep's rule,
    // checked when the cancels' budget runs out), and none once no timer is left.
    let table = Table::<()>::default();
    let mut own = OwnTimers::new(0);
    let mut live = Vec::new();
    let mut state = 0x9E3779B97F4A7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let rounds = if cfg!(miri) { 3 } else { 40 };
    let mut swept = false;
    for round in 0..rounds {
        // Bursts of schedules, then cancels of most of them in random order.
        let burst = 1 + next() as usize % 20_000;
        for _ in 0..burst {
            let (index, generation) = table.schedule(&mut own, (), 0).ok().unwrap();
            // The owner's lookup (biased chunk bases) finds the record any thread finds.
            let (parts, owned) = (table.chunks.get(index).unwrap(), table.chunks.owned(index));
            assert!(std::ptr::eq(owned.record, parts.record) && std::ptr::eq(owned.packed, parts.packed));
            assert!(std::ptr::eq(owned.body, parts.body));
            let deadline_ns = 1_000_000_000 + next() % 60_000_000_000;
            own.wheel.insert(super::super::Entry { deadline_ns, index, generation });
            live.push((index, generation));
        }
        let keep = if round % 7 == 6 { 0 } else { next() as usize % 50 };
        while live.len() > keep {
            let at = next() as usize % live.len();
            let (index, generation) = live.swap_remove(at);
            let before = own.wheel.len();
            assert_eq!(table.cancel_owned(&mut own, index, generation), Ok(None));
            swept |= own.wheel.len() < before;
            let count = table.chunks.count.load(Relaxed) as usize;
            let bound = own.live() + (2 * own.live()).max(count) + 4097;
            assert!(own.wheel.len() <= bound, "{} entries, {} live, {count} records", own.wheel.len(), own.live());
            assert_eq!(own.live(), live.len());
        }
        if live.is_empty() {
            assert!(own.wheel.is_empty());
        }
    }
    assert!(swept || cfg!(miri), "some cancels swept stale entries");
}

/// The owner's straight line (`fast.rs`): it schedules into records never used (past a
/// chunk's end only after the general path made the next chunk) and freed ones, cancels
/// ARMED packed timers, and declines, with nothing changed, whatever the general path
/// must answer: the budget's look at stale entries, a handler with an end, a timer over.
#[test]
fn the_straight_line_schedules_and_cancels_or_declines_untouched() {
    let table = Table::<Word>::default();
    let mut own = OwnTimers::new(0);
    // No chunk yet: declined; the general path makes the first.
    assert_eq!(table.schedule_packed(&mut own, [9, !9]), None);
    let (a, ga) = table.schedule(&mut own, Word(1), 0).ok().unwrap();
    let mut ids = vec![(a, ga)];
    while ids.len() < FIRST_CHUNK {
        let n = ids.len();
        ids.push(table.schedule_packed(&mut own, [n, !n]).expect("room in chunk 0"));
    }
    assert_eq!(ids[FIRST_CHUNK - 1], (FIRST_CHUNK as u32 - 1, 1));
    assert_eq!(table.schedule_packed(&mut own, [0, !0]), None, "chunk 0 is full");
    let (e, ge) = table.schedule(&mut own, Word(5), 7).ok().unwrap(); // an `every` timer
    assert_eq!(e, FIRST_CHUNK as u32);
    // Budget 0: the first cancel is the general path's, which sets the budget.
    assert!(!table.cancel_packed(&mut own, a, ga));
    assert_eq!(table.cancel_owned(&mut own, a, ga), Ok(None));
    let (b, gb) = ids[1];
    assert!(table.cancel_packed(&mut own, b, gb));
    assert!(!table.cancel_packed(&mut own, b, gb), "over: declined");
    assert_eq!(table.cancel_owned(&mut own, b, gb), Err(()), "over: not found");
    assert!(!table.cancel_packed(&mut own, e, ge), "not packed: declined");
    assert!(table.is_live(e, ge));
    assert!(!table.cancel_packed(&mut own, 1 << 20, 1), "no such record: declined");
    // Freed records come back, last freed first, with their next generation.
    assert_eq!(table.schedule_packed(&mut own, [7, !7]), Some((b, gb + 1)));
    assert_eq!(table.schedule_packed(&mut own, [8, !8]), Some((a, ga + 1)));
    let Begin::Call { handler, interval_ns: 0 } = table.begin(&mut own, b, gb + 1) else { panic!() };
    assert_eq!(handler, Word(7));
    assert_eq!(table.finish(&mut own, b, gb + 1, handler), Some(Word(7)));
    assert_eq!(table.cancel_foreign(a, ga + 1), Ok(Some(Word(8))));
    let live = own.live();
    assert_eq!(table.end_all(&mut own).len(), live - 1, "all but the one cancelled");
}
