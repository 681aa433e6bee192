//! The owner's timer records, and how a cancel from another thread settles with the
//! owner without a lock.
//!
//! A timer scheduled by the loop's owner is a [`Record`] in the loop's [`Table`]: its
//! handler, its interval, and an atomic `state` word, generation (26 bits, as in the
//! timer's id) and phase. Its id names the record's index and the generation; the
//! owner's wheel holds an [`Entry`](super::Entry) for it. Records live in chunks that
//! never move or go before the table, so a thread holding an id may look its record up
//! at any time. Only the owner writes a record's handler, interval and free-list link,
//! and only in the phases where nobody else reads them. The phases:
//!
//! ```text
//!   FREE(g) ──schedule──▶ ARMED(g) ──fire (CAS)──▶ ONCE(g) ──call returns──▶ FREE(g+1)
//!                          │  │  ▲                  EVERY(g) ─call returns (CAS)─▶ ARMED(g)
//!     owner cancel (CAS) ◀─┘  │  └──────────────────────┘            │
//!     → FREE(g+1)             │                       any cancel (CAS): EVERY_CANCELLED(g)
//!                             │                                      → owner ends it: FREE(g+1)
//!        other thread (CAS) ──┴─▶ CLAIMED(g) ─handler taken─▶ CANCELLED(g) ─owner meets it─▶ FREE(g+1)
//! ```
//!
//! * The owner schedules into a FREE record: it writes the handler and interval, then
//!   stores ARMED (Release). A canceller's successful CAS from ARMED is Acquire, so it
//!   sees the handler.
//! * Every cancel of an ARMED timer is a compare-exchange from ARMED(g): exactly one of
//!   the owner's cancel, the owner's firing (→ ONCE / EVERY) and another thread's cancel
//!   (→ CLAIMED) wins; the others see another phase or generation and answer
//!   accordingly (a one-shot timer whose call has begun: not found, as the header says).
//! * Another thread's cancel takes the handler out (its free function runs on that
//!   thread, as a cancel's does), then stores CANCELLED (Release). The owner reuses the
//!   record only after it has loaded CANCELLED (Acquire), when its wheel meets the entry
//!   or it ends every timer: so the canceller's read of the handler is over by then. A
//!   CLAIMED record is a canceller in the middle of that move; the owner waits for it
//!   (a few instructions, unless the canceller is preempted).
//! * An `every` timer in its call (EVERY) cancelled by anyone becomes EVERY_CANCELLED,
//!   and the owner, whose CAS back to ARMED then fails, ends it after the call.
//! * FREE(g+1): the next timer in the record gets generation g+1, so an old id matches
//!   nothing. A record whose generations are used up is retired, never reused.
//!
//! `crate::loom_models::timers` runs this protocol under loom.

use crate::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use crate::sync::atomic::{AtomicPtr, AtomicU32};
use crate::sync::UnsafeCell;
use std::mem::MaybeUninit;
use std::ptr::NonNull;

const PHASE_BITS: u32 = 3;
const PHASE_MASK: u32 = (1 << PHASE_BITS) - 1;
/// Generations as in ids (26 bits).
const GEN_MASK: u32 = crate::slots::TASK_GEN_MASK;

const FREE: u32 = 0;
const ARMED: u32 = 1;
const ONCE: u32 = 2;
const EVERY: u32 = 3;
const EVERY_CANCELLED: u32 = 4;
const CLAIMED: u32 = 5;
const CANCELLED: u32 = 6;

fn state(generation: u32, phase: u32) -> u32 {
    generation << PHASE_BITS | phase
}

fn generation_of(state: u32) -> u32 {
    state >> PHASE_BITS
}

fn phase_of(state: u32) -> u32 {
    state & PHASE_MASK
}

/// The generation after `generation`: 0 (a retired record) once they are used up.
fn next_generation(generation: u32) -> u32 {
    if generation >= GEN_MASK {
        0
    } else {
        generation + 1
    }
}

/// Chunk k holds `FIRST_CHUNK << k` records.
const FIRST_CHUNK: usize = 64;
const CHUNKS: usize = 18;
/// Most records a table holds: under 2^24, the index bits of an id.
const TABLE_MAX: u32 = (FIRST_CHUNK * ((1 << CHUNKS) - 1)) as u32;
const NIL: u32 = u32::MAX;

/// One owner's timer (see the module comment).
pub struct Record<H> {
    state: AtomicU32,
    /// The next free record while this one is free. Owner only.
    next_free: UnsafeCell<u32>,
    /// 0 for a one-shot timer. Owner only.
    interval_ns: UnsafeCell<u64>,
    /// Present in ARMED and CLAIMED (and with the owner during a call).
    handler: UnsafeCell<MaybeUninit<H>>,
}

/// The owner's side of the table: its free records, its wheel, and how many timers it
/// holds.
pub struct OwnTimers {
    pub wheel: super::LazyWheel,
    free_head: u32,
    /// Timers scheduled and not yet ended by the owner (cancelled by another thread
    /// and not yet met included).
    live: usize,
    /// Entries in the wheel whose timer the owner ended (cancelled) before they came
    /// out of it.
    stale: usize,
    /// Records of timers other threads cancelled that the owner has reclaimed since it
    /// last looked ([`take_reclaimed`](Self::take_reclaimed)).
    reclaimed: usize,
}

impl OwnTimers {
    pub fn new(base_ns: u64) -> OwnTimers {
        OwnTimers { wheel: super::LazyWheel::new(base_ns), free_head: NIL, live: 0, stale: 0, reclaimed: 0 }
    }

    /// How many records of timers other threads cancelled were reclaimed since the last
    /// call (when a cancelled timer's entry came out of the wheel, or stale entries were
    /// dropped).
    pub fn take_reclaimed(&mut self) -> usize {
        std::mem::take(&mut self.reclaimed)
    }

    pub fn live(&self) -> usize {
        self.live
    }
}

/// What the owner finds in the record of an entry that came out of its wheel.
pub enum Begin<H> {
    /// A live timer, now in its call: call the handler, then [`Table::finish`].
    Call { handler: H, interval_ns: u64 },
    /// Cancelled by another thread, now reclaimed: one live timer less.
    Reclaimed,
    /// The entry of a timer that is over.
    Stale,
}

/// The records of a loop's owner timers (see the module comment).
pub struct Table<H> {
    chunks: [AtomicPtr<Record<H>>; CHUNKS],
    /// Records below this index have been initialised (published with Release).
    count: AtomicU32,
}

// SAFETY: handlers move between threads (H: Send) only by the protocol above; the rest
// is atomic.
unsafe impl<H: Send> Send for Table<H> {}
unsafe impl<H: Send> Sync for Table<H> {}

impl<H> Default for Table<H> {
    fn default() -> Self {
        Table { chunks: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())), count: AtomicU32::new(0) }
    }
}

impl<H> Drop for Table<H> {
    fn drop(&mut self) {
        // Handlers were ended by the loop's close (or belong to a forked child's copy,
        // which must not run them): only the memory goes.
        for (k, chunk) in self.chunks.iter().enumerate() {
            let chunk = chunk.load(Relaxed);
            if !chunk.is_null() {
                let layout = Self::layout(k);
                // SAFETY: allocated in `record_at` with this layout.
                unsafe { std::alloc::dealloc(chunk.cast(), layout) };
            }
        }
    }
}

impl<H> Table<H> {
    fn layout(k: usize) -> std::alloc::Layout {
        std::alloc::Layout::array::<Record<H>>(FIRST_CHUNK << k).expect("a valid size")
    }

    /// The chunk and the offset in it of record `index`.
    fn locate(index: u32) -> (usize, usize) {
        let n = index as usize / FIRST_CHUNK + 1;
        let k = (usize::BITS - 1 - n.leading_zeros()) as usize;
        (k, index as usize - FIRST_CHUNK * ((1 << k) - 1))
    }

    /// Record `index`, if it has been initialised. Any thread.
    fn record(&self, index: u32) -> Option<&Record<H>> {
        if index >= self.count.load(Acquire) {
            return None;
        }
        let (k, offset) = Self::locate(index);
        let chunk = NonNull::new(self.chunks[k].load(Acquire))?;
        // SAFETY: within chunk k, initialised (below `count`), alive as long as `self`.
        Some(unsafe { chunk.add(offset).as_ref() })
    }

    /// Record `index`, which the owner knows exists.
    fn owned(&self, index: u32) -> &Record<H> {
        let (k, offset) = Self::locate(index);
        // SAFETY: the owner made it (below `count`); chunks live as long as `self`.
        unsafe { &*self.chunks[k].load(Relaxed).add(offset) }
    }

    /// Starts fetching record `index` into the cache (the owner's, for an entry it will
    /// meet soon).
    #[inline]
    pub fn prefetch(&self, index: u32) {
        if index < self.count.load(Relaxed) {
            prefetch((self.owned(index) as *const Record<H>).cast());
        }
    }

    /// Schedules a timer: a free record gets `handler` and `interval_ns` and is armed.
    /// Returns (index, generation), or the handler back when the table is full. Owner.
    pub fn schedule(&self, own: &mut OwnTimers, handler: H, interval_ns: u64) -> Result<(u32, u32), H> {
        let index = if own.free_head != NIL {
            let index = own.free_head;
            // SAFETY: owner-only field of a free record.
            own.free_head = self.owned(index).next_free.with(|next| unsafe { *next });
            index
        } else {
            let index = self.count.load(Relaxed);
            if index >= TABLE_MAX {
                return Err(handler);
            }
            let (k, offset) = Self::locate(index);
            let mut chunk = self.chunks[k].load(Relaxed);
            if chunk.is_null() {
                let layout = Self::layout(k);
                // SAFETY: a non-zero size.
                chunk = unsafe { std::alloc::alloc(layout) }.cast();
                if chunk.is_null() {
                    std::alloc::handle_alloc_error(layout);
                }
                self.chunks[k].store(chunk, Release);
            }
            // SAFETY: within chunk k; not yet visible to any other thread (`count`).
            unsafe {
                chunk.add(offset).write(Record {
                    state: AtomicU32::new(state(1, FREE)),
                    next_free: UnsafeCell::new(NIL),
                    interval_ns: UnsafeCell::new(0),
                    handler: UnsafeCell::new(MaybeUninit::uninit()),
                })
            };
            self.count.store(index + 1, Release);
            index
        };
        let record = self.owned(index);
        let generation = generation_of(record.state.load(Relaxed));
        // SAFETY: a FREE record: nobody else touches these fields.
        record.handler.with_mut(|h| unsafe { (*h).write(handler) });
        record.interval_ns.with_mut(|i| unsafe { *i = interval_ns });
        record.state.store(state(generation, ARMED), Release);
        own.live += 1;
        Ok((index, generation))
    }

    /// Frees a record the owner ended (its handler is out).
    fn release(&self, own: &mut OwnTimers, index: u32, generation: u32, ordering: std::sync::atomic::Ordering) {
        let record = self.owned(index);
        let next = next_generation(generation);
        record.state.store(state(next, FREE), ordering);
        if next != 0 {
            // SAFETY: owner-only field of a free record.
            record.next_free.with_mut(|n| unsafe { *n = own.free_head });
            own.free_head = index;
        }
        own.live -= 1;
    }

    /// Cancels timer (index, generation) as the owner: Err if no such timer is live or
    /// its one-shot call has begun; Ok(Some(handler)) to drop (the timer is over), or
    /// Ok(None) for an `every` timer in its call (it ends when the call returns).
    #[allow(clippy::result_unit_err)]
    pub fn cancel_owned(&self, own: &mut OwnTimers, index: u32, generation: u32) -> Result<Option<H>, ()> {
        if index >= self.count.load(Relaxed) {
            return Err(());
        }
        let record = self.owned(index);
        let armed = state(generation, ARMED);
        loop {
            let current = record.state.load(Acquire);
            if current == state(generation, EVERY) {
                if record.state.compare_exchange(current, state(generation, EVERY_CANCELLED), AcqRel, Acquire).is_ok() {
                    return Ok(None);
                }
                continue;
            }
            if current != armed {
                return Err(());
            }
            // Frees the record at once; its wheel entry goes stale.
            let next = next_generation(generation);
            if record.state.compare_exchange(armed, state(next, FREE), Acquire, Relaxed).is_err() {
                continue; // another thread claimed it meanwhile: see what it left
            }
            // SAFETY: it was ARMED, and this CAS ended it: the handler is ours.
            let handler = record.handler.with(|h| unsafe { (*h).assume_init_read() });
            if next != 0 {
                // SAFETY: owner-only field of a free record.
                record.next_free.with_mut(|n| unsafe { *n = own.free_head });
                own.free_head = index;
            }
            own.live -= 1;
            own.stale += 1;
            if own.live == 0 {
                own.wheel.clear();
                own.stale = 0;
            } else if own.stale > 2 * own.live + 4096 {
                self.drop_stale(own);
            }
            return Ok(Some(handler));
        }
    }

    /// Drops the wheel's entries of timers that are over: O(entries), run once they
    /// outnumber live timers twice, so O(1) per cancel. Timers another thread cancelled
    /// are reclaimed here too.
    #[cold]
    fn drop_stale(&self, own: &mut OwnTimers) {
        let mut wheel = std::mem::replace(&mut own.wheel, super::LazyWheel::new(0));
        let ahead = |entry: &super::Entry| prefetch((self.owned(entry.index) as *const Record<H>).cast());
        wheel.retain(ahead, |entry| match self.begin_check(own, entry.index, entry.generation) {
            Check::Live => true,
            Check::Over => false,
        });
        own.wheel = wheel;
        own.stale = 0;
    }

    /// Whether the entry (index, generation) still stands for a live timer; reclaims the
    /// record of one another thread cancelled.
    fn begin_check(&self, own: &mut OwnTimers, index: u32, generation: u32) -> Check {
        let record = self.owned(index);
        loop {
            let current = record.state.load(Acquire);
            if generation_of(current) != generation {
                return Check::Over;
            }
            match phase_of(current) {
                CLAIMED => crate::sync::yield_now(),
                CANCELLED => {
                    self.release(own, index, generation, Relaxed);
                    own.reclaimed += 1;
                    return Check::Over;
                }
                FREE => return Check::Over,
                _ => return Check::Live,
            }
        }
    }

    /// Whether (index, generation) names a timer that is scheduled or in its call. Any
    /// thread; a hint only, as the answer may change at once.
    pub fn is_live(&self, index: u32, generation: u32) -> bool {
        self.record(index).is_some_and(|record| {
            let current = record.state.load(Relaxed);
            generation_of(current) == generation && matches!(phase_of(current), ARMED | ONCE | EVERY)
        })
    }

    /// Cancels timer (index, generation) from a thread that does not own the loop: the
    /// same answers as [`cancel_owned`](Self::cancel_owned). Any thread.
    #[allow(clippy::result_unit_err)]
    pub fn cancel_foreign(&self, index: u32, generation: u32) -> Result<Option<H>, ()> {
        let record = self.record(index).ok_or(())?;
        let armed = state(generation, ARMED);
        let every = state(generation, EVERY);
        loop {
            let current = record.state.load(Relaxed);
            if current == every {
                if record.state.compare_exchange(every, state(generation, EVERY_CANCELLED), AcqRel, Relaxed).is_ok() {
                    return Ok(None);
                }
                continue;
            }
            if current != armed {
                return Err(());
            }
            if record.state.compare_exchange(armed, state(generation, CLAIMED), Acquire, Relaxed).is_err() {
                continue;
            }
            // SAFETY: claimed from ARMED (Acquire): the owner's write of the handler is
            // visible, and the owner touches it no more.
            let handler = record.handler.with(|h| unsafe { (*h).assume_init_read() });
            record.state.store(state(generation, CANCELLED), Release);
            return Ok(Some(handler));
        }
    }

    /// The owner meets the entry (index, generation) coming out of its wheel: a live
    /// timer begins its call (and leaves `live` count until `finish`).
    pub fn begin(&self, own: &mut OwnTimers, index: u32, generation: u32) -> Begin<H> {
        let record = self.owned(index);
        let armed = state(generation, ARMED);
        loop {
            let current = record.state.load(Acquire);
            if current == armed {
                // SAFETY: owner-only field.
                let interval_ns = record.interval_ns.with(|i| unsafe { *i });
                let running = state(generation, if interval_ns == 0 { ONCE } else { EVERY });
                if record.state.compare_exchange(armed, running, Acquire, Relaxed).is_err() {
                    continue;
                }
                // SAFETY: it was ARMED and this CAS began its call: the handler is ours
                // until `finish`.
                let handler = record.handler.with(|h| unsafe { (*h).assume_init_read() });
                return Begin::Call { handler, interval_ns };
            }
            return match self.begin_check(own, index, generation) {
                Check::Over if generation_of(current) == generation && phase_of(current) != FREE => Begin::Reclaimed,
                Check::Over => {
                    own.stale = own.stale.saturating_sub(1);
                    Begin::Stale
                }
                Check::Live => continue, // changed meanwhile; look again
            };
        }
    }

    /// Ends the call [`begin`](Self::begin) started. For an `every` timer not cancelled
    /// meanwhile, the handler goes back and the timer is armed again: None (the caller
    /// puts its next entry in the wheel). Otherwise the timer is over: its handler, to
    /// drop.
    pub fn finish(&self, own: &mut OwnTimers, index: u32, generation: u32, handler: H) -> Option<H> {
        let record = self.owned(index);
        let current = record.state.load(Relaxed);
        if current == state(generation, EVERY) {
            // SAFETY: in its call, the handler's place is the owner's alone.
            record.handler.with_mut(|h| unsafe { (*h).write(handler) });
            if record.state.compare_exchange(current, state(generation, ARMED), Release, Relaxed).is_ok() {
                return None;
            }
            // Cancelled during the call (EVERY_CANCELLED): take the handler back.
            // SAFETY: written just above; nobody reads it in EVERY_CANCELLED.
            let handler = record.handler.with(|h| unsafe { (*h).assume_init_read() });
            self.release(own, index, generation, Release);
            return Some(handler);
        }
        // ONCE (nobody changes it) or EVERY_CANCELLED.
        self.release(own, index, generation, Release);
        Some(handler)
    }

    /// Ends every timer (the loop is closing): their handlers, to drop. Owner.
    pub fn end_all(&self, own: &mut OwnTimers) -> Vec<H> {
        let mut handlers = Vec::new();
        for index in 0..self.count.load(Relaxed) {
            let record = self.owned(index);
            loop {
                let current = record.state.load(Acquire);
                let generation = generation_of(current);
                match phase_of(current) {
                    ARMED => {
                        if record.state.compare_exchange(current, state(generation, CLAIMED), Acquire, Relaxed).is_ok()
                        {
                            // SAFETY: ended by this CAS: the handler is ours.
                            handlers.push(record.handler.with(|h| unsafe { (*h).assume_init_read() }));
                            self.release(own, index, generation, Release);
                            break;
                        }
                    }
                    CLAIMED => crate::sync::yield_now(),
                    CANCELLED => {
                        self.release(own, index, generation, Release);
                        break;
                    }
                    _ => break,
                }
            }
        }
        own.wheel.clear();
        own.stale = 0;
        handlers
    }
}

/// Asks the CPU to fetch the cache line at `p` (a hint; nothing on other targets). The
/// same as `crate::task::prefetch`, which this module cannot import (task depends on
/// process, which depends on timer).
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

enum Check {
    Live,
    Over,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_indices_map_onto_chunks_without_gaps() {
        type T = Table<()>;
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
}
