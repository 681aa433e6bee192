//! The owner's timer records, and how a cancel from another thread settles with the
//! owner without a lock.
//!
//! A timer scheduled by the loop's owner is a [`Record`] in the loop's [`Table`], in two
//! halves kept in two arrays at the same index: the hot 4 bytes (an atomic `state` word:
//! generation (26 bits, as in the timer's id), the [`PACKED`] flag of a live timer and
//! the phase) and the cold [`Body`] (the handler and the interval: 32 bytes for C's
//! handler, 64-byte aligned chunks so that no body straddles two cache lines). The free
//! records are a stack of indices on the owner's side (`OwnTimers::free`), so a record
//! holds nothing else. An owner's cancel of a timer whose handler is inert (C's without
//! a `free_fn`: dropping it does nothing) touches the hot half only: 4 MB for a million
//! timers, within the TLB's reach (a thousand 4 KB pages), where 40 MB of whole
//! records did not. Its id names the record's index and the generation; the owner's
//! wheel holds an [`Entry`](super::Entry) for it. Records live in chunks that never
//! move or go before the table, so a thread holding an id may look its record up at any
//! time. Only the owner writes a record's handler and interval, and only in the phases
//! where nobody else reads them. The phases (the PACKED flag rides along, from the
//! schedule to the FREE that ends the timer, and every comparison ignores it):
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
//! * The owner's cancel of an ARMED timer takes no locked instruction where Linux's
//!   membarrier is there (`crate::barrier`): the owner writes the record's index to
//!   `cancelling`, then (`barrier::light`) reads `foreign`, the number of cancels other
//!   threads have under way; when it is 0, the owner frees the record with a plain load
//!   and store, and clears `cancelling` (Release). Another thread's cancel counts itself
//!   in `foreign`, runs `barrier::heavy`, and waits until `cancelling` is 0 (Acquire)
//!   before its claim: either the owner sees the count (and settles by
//!   compare-exchange, as everyone then does), or the canceller sees `cancelling` and
//!   finds the record FREE once the owner is done. The owner reads `foreign` with
//!   Acquire, so a cancel already counted out (Release) is seen whole. So cancels from
//!   other threads cost a membarrier each (microseconds) and the owner's cost a few
//!   plain instructions: the owner's cancel misses the cache on the record, and with no
//!   locked instruction the CPU overlaps that miss with the next call's.
//! * An `every` timer in its call (EVERY) cancelled by anyone becomes EVERY_CANCELLED,
//!   and the owner, whose CAS back to ARMED then fails, ends it after the call.
//! * FREE(g+1): the next timer in the record gets generation g+1, so an old id matches
//!   nothing. A record whose generations are used up is retired, never reused.
//!
//! `crate::loom_models::timers` runs this protocol under loom.

use crate::sync::atomic::AtomicU32;
use crate::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use crate::sync::UnsafeCell;
use std::mem::MaybeUninit;

use super::chunks::{Body, Chunks, Pack, Parts, Record, TABLE_MAX};
use super::own::OwnTimers;

const PHASE_BITS: u32 = 3;
const PHASE_MASK: u32 = (1 << PHASE_BITS) - 1;
/// The state word's flag of a live timer whose handler is inert: dropping it does
/// nothing, so the owner's cancel need not read it (nor touch the cold half).
const PACKED: u32 = 1 << PHASE_BITS;
/// The generation sits above the phase and the flag.
const GEN_SHIFT: u32 = PHASE_BITS + 1;
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
    generation << GEN_SHIFT | phase
}

/// `state` without its PACKED flag, for comparisons with `state(generation, phase)`.
fn bare(state: u32) -> u32 {
    state & !PACKED
}

fn generation_of(state: u32) -> u32 {
    state >> GEN_SHIFT
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
    chunks: Chunks<H>,
    /// Cancels by other threads under way (they count themselves in and out).
    foreign: AtomicU32,
    /// The record the owner is cancelling with plain stores, plus one; 0 when none.
    /// Written by the owner only.
    cancelling: AtomicU32,
    /// Whether the owner may cancel with plain stores (`crate::barrier::available`).
    plain: bool,
}

// SAFETY: handlers move between threads (H: Send) only by the protocol above; the
// chunks' owner lookups are the owner's alone (one thread at a time); the rest is
// atomic.
unsafe impl<H: Send> Send for Table<H> {}
unsafe impl<H: Send> Sync for Table<H> {}

impl<H> Default for Table<H> {
    fn default() -> Self {
        Table {
            chunks: Chunks::default(),
            foreign: AtomicU32::new(0),
            cancelling: AtomicU32::new(0),
            plain: crate::barrier::available(),
        }
    }
}

/// Takes the handler out of a record that holds one (ARMED or CLAIMED, by whoever
/// ended or began the timer): from its packed words if `state` says so, else from its
/// body.
///
/// # Safety
/// The caller ended or began the timer (it owns the handler); once per timer.
unsafe fn take_handler<H: Pack>(parts: &Parts<'_, H>, state: u32) -> H {
    if state & PACKED != 0 {
        // SAFETY: packed by `schedule` (the PACKED flag), taken once (the caller's word).
        parts.packed.with(|p| unsafe { H::unpack((*p).assume_init_read()) })
    } else {
        // SAFETY: written by `schedule` or `finish`, taken once (the caller's word).
        parts.body.handler.with(|h| unsafe { (*h).assume_init_read() })
    }
}

impl<H: Pack> Table<H> {
    /// Starts fetching record `index` into the cache (the owner's, for an entry it will
    /// meet soon).
    #[inline]
    pub fn prefetch(&self, index: u32) {
        self.chunks.prefetch(index);
    }

    /// The hot half of record `index`, which the owner knows exists.
    #[inline(always)]
    fn owned(&self, index: u32) -> &Record {
        self.chunks.owned(index).record
    }

    /// Schedules a timer: a free record gets `handler` (packed, for a one-shot timer
    /// whose handler packs: see `chunks.rs`) and `interval_ns`, and is armed. Returns
    /// (index, generation), or the handler back when the table is full. Owner.
    #[inline]
    pub fn schedule(&self, own: &mut OwnTimers, handler: H, interval_ns: u64) -> Result<(u32, u32), H> {
        let words = if interval_ns == 0 { handler.pack() } else { None };
        let flag = if words.is_some() { PACKED } else { 0 };
        let Some(index) = own.free.pop() else {
            return self.schedule_new(own, handler, interval_ns, words);
        };
        let parts = self.chunks.owned(index);
        let record = parts.record;
        let generation = generation_of(record.state.load(Relaxed));
        // SAFETY: a FREE record: nobody else touches its handler or interval.
        match words {
            Some(words) => {
                std::mem::forget(handler);
                parts.packed.with_mut(|p| unsafe { (*p).write(words) });
            }
            None => {
                parts.body.handler.with_mut(|h| unsafe { (*h).write(handler) });
                parts.body.interval_ns.with_mut(|i| unsafe { *i = interval_ns });
            }
        }
        record.state.store(state(generation, ARMED) | flag, Release);
        own.live += 1;
        Ok((index, generation))
    }

    /// `schedule` into a record that has never been used (record `count`; a new chunk
    /// when it starts one), made armed at once: generation 1, published by the Release
    /// store of `count` (a canceller reads `count` with Acquire before the record). Only
    /// the part the timer uses is written (the other stays untouched memory; under
    /// loom, whose cells must be made before use, both are).
    #[inline]
    fn schedule_new(
        &self,
        own: &mut OwnTimers,
        handler: H,
        interval_ns: u64,
        words: Option<[usize; 2]>,
    ) -> Result<(u32, u32), H> {
        let index = self.chunks.count.load(Relaxed);
        if index >= TABLE_MAX {
            return Err(handler);
        }
        let (k, offset) = Chunks::<H>::locate(index);
        if offset == 0 {
            self.chunks.new_chunk(k);
            own.fresh_end = Chunks::<H>::end_of(k).min(TABLE_MAX);
        }
        let (record, packed, body) = self.chunks.owned_ptrs(index);
        let flag = if words.is_some() { PACKED } else { 0 };
        // SAFETY: within chunk k; not yet visible to any other thread (`count`).
        unsafe {
            if words.is_some() || cfg!(loom) {
                packed.write(UnsafeCell::new(MaybeUninit::new(words.unwrap_or_default())));
            }
            match words {
                Some(_) => std::mem::forget(handler),
                None => body.write(Body {
                    interval_ns: UnsafeCell::new(interval_ns),
                    handler: UnsafeCell::new(MaybeUninit::new(handler)),
                }),
            }
            #[cfg(loom)]
            if words.is_some() {
                body.write(Body { interval_ns: UnsafeCell::new(0), handler: UnsafeCell::new(MaybeUninit::uninit()) });
            }
            record.write(Record { state: AtomicU32::new(state(1, ARMED) | flag) });
        }
        self.chunks.count.store(index + 1, Release);
        own.live += 1;
        Ok((index, 1))
    }

    /// Frees a record the owner ended (its handler is out).
    fn release(&self, own: &mut OwnTimers, index: u32, generation: u32, ordering: std::sync::atomic::Ordering) {
        let record = self.owned(index);
        let next = next_generation(generation);
        record.state.store(state(next, FREE), ordering);
        if next != 0 {
            own.free.push(index);
        }
        own.live -= 1;
        own.budget = own.budget.min(own.live);
    }

    /// Cancels timer (index, generation) as the owner: Err if no such timer is live or
    /// its one-shot call has begun; Ok(Some(handler)) to drop (the timer is over), or
    /// Ok(None): over with an inert handler (left unread), or an `every` timer in its
    /// call (it ends when the call returns).
    ///
    /// The common case, an ARMED timer, is a load and a store of the record's hot half
    /// (a compare-exchange while another thread cancels; see the module comment), and a
    /// read of its body unless the handler is inert.
    #[allow(clippy::result_unit_err)]
    #[inline(always)]
    pub fn cancel_owned(&self, own: &mut OwnTimers, index: u32, generation: u32) -> Result<Option<H>, ()> {
        if index >= self.chunks.count.load(Relaxed) {
            return Err(());
        }
        let record = self.owned(index);
        let armed = state(generation, ARMED);
        // Frees the record at once; its wheel entry goes stale.
        let next = next_generation(generation);
        let Some(was) = self.free_armed(record, index, armed, state(next, FREE)) else {
            return self.cancel_owned_unarmed(own, index, generation);
        };
        let handler = if was & PACKED != 0 {
            None // its drop does nothing (`Pack`): left unread
        } else {
            // SAFETY: it was ARMED, and this cancel ended it: the handler is ours.
            Some(self.chunks.owned(index).body.handler.with(|h| unsafe { (*h).assume_init_read() }))
        };
        if next != 0 {
            own.free.push(index);
        }
        own.live -= 1;
        // budget <= live + 1 here (see `budget`), so the cancel of the last timer looks.
        if own.budget <= 1 {
            self.look_at_stale(own);
        } else {
            own.budget -= 1;
        }
        Ok(handler)
    }

    /// When the owner's cancels have used up their budget: drops the wheel's entries
    /// if no timer is left (O(occupied slots)), or the stale ones if they outnumber
    /// both twice the live timers and the table's records (the most timers the owner
    /// ever held at once), so O(1) per cancel, and the wheel never holds many more
    /// entries than it did at its fullest. Then the budget: the cancels after which
    /// stale entries could first outnumber that (each cancel adds one and takes a live
    /// timer, which lowers twice the live timers by 2), at least 1, at most `live`.
    #[cold]
    #[inline(never)]
    fn look_at_stale(&self, own: &mut OwnTimers) {
        if own.live == 0 {
            own.wheel.clear();
            own.budget = 0;
            return;
        }
        let (live, count) = (own.live, self.chunks.count.load(Relaxed) as usize);
        // Every live timer has an entry, but those in their call, or due in the pass
        // under way: an estimate from below, which only delays the sweep.
        let mut stale = own.wheel.len().saturating_sub(live);
        if stale > (2 * live).max(count) + 4096 {
            self.drop_stale(own);
            stale = 0;
        }
        // stale + c > max(2 (live - c), count) + 4096 needs c > both of these.
        let budget = if 2 * live > count { (2 * live + 4096 - stale) / 3 + 1 } else { count + 4097 - stale };
        own.budget = budget.clamp(1, live);
    }

    /// Moves `record` (at `index`) from `armed` to `free` if it is armed: with plain
    /// stores while no other thread is cancelling (see the module comment), else with a
    /// compare-exchange. The state it had (`armed`, with its PACKED flag, if any), or
    /// None when it was not armed (or not seen to be, for the compare-exchange to
    /// settle). Owner.
    #[inline(always)]
    fn free_armed(&self, record: &Record, index: u32, armed: u32, free: u32) -> Option<u32> {
        self.free_matching(record, index, armed, !PACKED, free)
    }

    /// [`free_armed`](Self::free_armed) of a record whose state, masked with `mask`,
    /// is `armed`: `!PACKED` for any armed timer, `!0` for one whose PACKED flag is
    /// as in `armed` (the owner's common case, `fast.rs`).
    #[inline(always)]
    fn free_matching(&self, record: &Record, index: u32, armed: u32, mask: u32, free: u32) -> Option<u32> {
        if self.plain {
            self.cancelling.store(index + 1, Relaxed);
            crate::barrier::light(); // the Dekker pair with cancel_foreign's barrier::heavy
                                     // Acquire: a cancel from another thread that is over (counted out with
                                     // Release) is seen whole, its claim included.
            let alone = self.foreign.load(Acquire) == 0;
            let current = record.state.load(Relaxed);
            let done = alone && current & mask == armed;
            if done {
                record.state.store(free, Relaxed);
            }
            self.cancelling.store(0, Release);
            if alone {
                return done.then_some(current);
            }
        }
        let current = record.state.load(Relaxed);
        if current & mask != armed {
            return None;
        }
        record.state.compare_exchange(current, free, Acquire, Relaxed).ok()
    }

    /// `cancel_owned` of a timer that was not ARMED when it looked: an `every` timer in
    /// its call, one another thread claimed meanwhile, or no live timer.
    #[cold]
    fn cancel_owned_unarmed(&self, own: &mut OwnTimers, index: u32, generation: u32) -> Result<Option<H>, ()> {
        let record = self.owned(index);
        loop {
            let current = record.state.load(Acquire);
            if bare(current) == state(generation, EVERY) {
                let cancelled = current & PACKED | state(generation, EVERY_CANCELLED);
                if record.state.compare_exchange(current, cancelled, AcqRel, Acquire).is_ok() {
                    return Ok(None);
                }
                continue;
            }
            if bare(current) == state(generation, ARMED) {
                return self.cancel_owned(own, index, generation);
            }
            return Err(());
        }
    }

    /// Drops the wheel's entries of timers that are over: O(entries) (see
    /// `look_at_stale` for when). Timers another thread cancelled are reclaimed here
    /// too.
    #[cold]
    fn drop_stale(&self, own: &mut OwnTimers) {
        let mut wheel = std::mem::replace(&mut own.wheel, super::LazyWheel::new(0));
        let ahead = |entry: &super::Entry| super::chunks::prefetch((self.owned(entry.index) as *const Record).cast());
        wheel.retain(ahead, |entry| match self.begin_check(own, entry.index, entry.generation) {
            Check::Live => true,
            Check::Over => false,
        });
        own.wheel = wheel;
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
        self.chunks.get(index).is_some_and(|parts| {
            let current = parts.record.state.load(Relaxed);
            generation_of(current) == generation && matches!(phase_of(current), ARMED | ONCE | EVERY)
        })
    }

    /// Cancels timer (index, generation) from a thread that does not own the loop: the
    /// same answers as [`cancel_owned`](Self::cancel_owned). Any thread.
    #[allow(clippy::result_unit_err)]
    pub fn cancel_foreign(&self, index: u32, generation: u32) -> Result<Option<H>, ()> {
        let parts = self.chunks.get(index).ok_or(())?;
        if !self.plain {
            return Self::claim(&parts, generation);
        }
        // Counted in, then the barrier: from here on the owner cancels by
        // compare-exchange; one that began before with plain stores is waited for.
        self.foreign.fetch_add(1, Relaxed);
        crate::barrier::heavy(); // the Dekker pair with free_armed's barrier::light
        while self.cancelling.load(Acquire) != 0 {
            crate::sync::yield_now();
        }
        let result = Self::claim(&parts, generation);
        self.foreign.fetch_sub(1, Release);
        result
    }

    /// A cancel's claim of timer `generation` in `record` (any thread), by
    /// compare-exchange.
    fn claim(parts: &Parts<'_, H>, generation: u32) -> Result<Option<H>, ()> {
        let record = parts.record;
        let armed = state(generation, ARMED);
        let every = state(generation, EVERY);
        loop {
            let current = record.state.load(Relaxed);
            if bare(current) == every {
                let cancelled = current & PACKED | state(generation, EVERY_CANCELLED);
                if record.state.compare_exchange(current, cancelled, AcqRel, Relaxed).is_ok() {
                    return Ok(None);
                }
                continue;
            }
            if bare(current) != armed {
                return Err(());
            }
            let claimed = current & PACKED | state(generation, CLAIMED);
            if record.state.compare_exchange(current, claimed, Acquire, Relaxed).is_err() {
                continue;
            }
            // SAFETY: claimed from ARMED (Acquire): the owner's write of the handler is
            // visible, and the owner touches it no more.
            let handler = unsafe { take_handler(parts, current) };
            record.state.store(state(generation, CANCELLED), Release);
            return Ok(Some(handler));
        }
    }

    /// The owner meets the entry (index, generation) coming out of its wheel: a live
    /// timer begins its call (and leaves `live` count until `finish`).
    pub fn begin(&self, own: &mut OwnTimers, index: u32, generation: u32) -> Begin<H> {
        let parts = self.chunks.owned(index);
        let record = parts.record;
        let armed = state(generation, ARMED);
        loop {
            let current = record.state.load(Acquire);
            if bare(current) == armed {
                let interval_ns = if current & PACKED != 0 {
                    0 // packed: one-shot
                } else {
                    // SAFETY: owner-only field.
                    parts.body.interval_ns.with(|i| unsafe { *i })
                };
                let running = current & PACKED | state(generation, if interval_ns == 0 { ONCE } else { EVERY });
                if record.state.compare_exchange(current, running, Acquire, Relaxed).is_err() {
                    continue;
                }
                // SAFETY: it was ARMED and this CAS began its call: the handler is ours
                // until `finish`.
                let handler = unsafe { take_handler(&parts, current) };
                return Begin::Call { handler, interval_ns };
            }
            return match self.begin_check(own, index, generation) {
                Check::Over if generation_of(current) == generation && phase_of(current) != FREE => Begin::Reclaimed,
                Check::Over => Begin::Stale,
                Check::Live => continue, // changed meanwhile; look again
            };
        }
    }

    /// Ends the call [`begin`](Self::begin) started. For an `every` timer not cancelled
    /// meanwhile, the handler goes back and the timer is armed again: None (the caller
    /// puts its next entry in the wheel). Otherwise the timer is over: its handler, to
    /// drop.
    pub fn finish(&self, own: &mut OwnTimers, index: u32, generation: u32, handler: H) -> Option<H> {
        let Parts { record, body, .. } = self.chunks.owned(index);
        let current = record.state.load(Relaxed);
        // EVERY: never packed (an `every` timer's handler is in its body).
        if bare(current) == state(generation, EVERY) {
            // SAFETY: in its call, the handler's place is the owner's alone.
            body.handler.with_mut(|h| unsafe { (*h).write(handler) });
            let armed = current & PACKED | state(generation, ARMED);
            if record.state.compare_exchange(current, armed, Release, Relaxed).is_ok() {
                return None;
            }
            // Cancelled during the call (EVERY_CANCELLED): take the handler back.
            // SAFETY: written just above; nobody reads it in EVERY_CANCELLED.
            let handler = body.handler.with(|h| unsafe { (*h).assume_init_read() });
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
        for index in 0..self.chunks.count.load(Relaxed) {
            let record = self.owned(index);
            loop {
                let current = record.state.load(Acquire);
                let generation = generation_of(current);
                match phase_of(current) {
                    ARMED => {
                        if record.state.compare_exchange(current, state(generation, CLAIMED), Acquire, Relaxed).is_ok()
                        {
                            // SAFETY: ended by this CAS: the handler is ours. A packed one
                            // is unpacked too: the caller drops it, which does nothing.
                            handlers.push(unsafe { take_handler(&self.chunks.owned(index), current) });
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
        own.budget = 0;
        handlers
    }
}

enum Check {
    Live,
    Over,
}

#[path = "fast.rs"]
mod fast;

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
