//! The owner's timer records, and how a cancel from another thread settles with the
//! owner without a lock.
//!
//! A timer scheduled by the loop's owner is a [`Record`] in the loop's [`Table`], in two
//! halves kept in two arrays at the same index: the hot 8 bytes (an atomic `state` word,
//! generation (26 bits, as in the timer's id) and phase; and the owner's `aux` word:
//! the free-list link of a free record, [`INERT`] of a live one) and the cold [`Body`]
//! (the handler and the interval: 32 bytes for C's handler, 64-byte aligned chunks so
//! that no body straddles two cache lines). An owner's cancel of a timer whose handler
//! is inert (C's without a `free_fn`: dropping it does nothing) touches the hot half
//! only: 8 MB for a million timers, which stays in the cache where 40 MB of whole
//! records did not. Its id names the record's index and the generation; the owner's
//! wheel holds an [`Entry`](super::Entry) for it. Records live in chunks that never
//! move or go before the table, so a thread holding an id may look its record up at any
//! time. Only the owner writes a record's handler, interval and `aux`, and only in the
//! phases where nobody else reads them. The phases:
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

use crate::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use crate::sync::atomic::{AtomicPtr, AtomicU32};
use crate::sync::UnsafeCell;
use std::mem::MaybeUninit;
use std::ptr::NonNull;

use super::own::{OwnTimers, NIL};

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
/// Entries of the owner's chunk arrays: a power of two, so that a chunk number needs
/// a mask and no bounds check.
const CHUNK_SLOTS: usize = 32;
const _: () = assert!(CHUNKS <= CHUNK_SLOTS && CHUNK_SLOTS.is_power_of_two());
/// Most records a table holds: under 2^24, the index bits of an id.
const TABLE_MAX: u32 = (FIRST_CHUNK * ((1 << CHUNKS) - 1)) as u32;
/// `aux` of a live record whose handler is inert: dropping it does nothing, so the
/// owner's cancel need not read it (nor touch the cold half).
const INERT: u32 = 1;
/// Chunks are aligned to a cache line: a 32-byte body never straddles two.
const CHUNK_ALIGN: usize = 64;
/// Chunks of this size or more are aligned to it and, on Linux, asked to be backed by
/// transparent huge pages (`MADV_HUGEPAGE`, for systems whose THP mode is `madvise`):
/// a cancel's one random access then costs a cache miss without a TLB miss (a page
/// walk, nested under a hypervisor) on top.
const HUGE_PAGE: usize = 2 << 20;

/// The hot half of one owner's timer (see the module comment).
pub struct Record {
    state: AtomicU32,
    /// Owner only: the next free record while this one is free; [`INERT`] or 0 while
    /// it is live.
    aux: UnsafeCell<u32>,
}

/// The cold half of one owner's timer: read when it fires, or by a cancel that takes
/// the handler.
pub struct Body<H> {
    /// 0 for a one-shot timer. Owner only.
    interval_ns: UnsafeCell<u64>,
    /// Present in ARMED and CLAIMED (and with the owner during a call).
    handler: UnsafeCell<MaybeUninit<H>>,
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
    /// The hot halves, chunk by chunk.
    records: [AtomicPtr<Record>; CHUNKS],
    /// The cold halves, chunk by chunk (published before `count`, as `records`).
    bodies: [AtomicPtr<Body<H>>; CHUNKS],
    /// Records below this index have been initialised (published with Release).
    count: AtomicU32,
    /// Cancels by other threads under way (they count themselves in and out).
    foreign: AtomicU32,
    /// The record the owner is cancelling with plain stores, plus one; 0 when none.
    /// Written by the owner only.
    cancelling: AtomicU32,
    /// Whether the owner may cancel with plain stores (`crate::barrier::available`).
    plain: bool,
    /// The owner's lookups: per chunk, the address record 0 would have if chunk k
    /// began at it (`records[k]` minus its first index), so that record `index` is at
    /// `owner_chunks[k].0 + index` (bodies likewise). Written by `new_chunk` (the owner,
    /// which alone reads them), out of loom's sight.
    owner_chunks: std::cell::UnsafeCell<[(*mut Record, *mut Body<H>); CHUNK_SLOTS]>,
}

// SAFETY: handlers move between threads (H: Send) only by the protocol above;
// `owner_chunks` is the owner's alone (one thread at a time); the rest
// is atomic.
unsafe impl<H: Send> Send for Table<H> {}
unsafe impl<H: Send> Sync for Table<H> {}

impl<H> Default for Table<H> {
    fn default() -> Self {
        Table {
            records: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
            bodies: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
            count: AtomicU32::new(0),
            foreign: AtomicU32::new(0),
            cancelling: AtomicU32::new(0),
            plain: crate::barrier::available(),
            owner_chunks: std::cell::UnsafeCell::new([(std::ptr::null_mut(), std::ptr::null_mut()); CHUNK_SLOTS]),
        }
    }
}

impl<H> Drop for Table<H> {
    fn drop(&mut self) {
        // Handlers were ended by the loop's close (or belong to a forked child's copy,
        // which must not run them): only the memory goes.
        for k in 0..CHUNKS {
            let (records, bodies) = (self.records[k].load(Relaxed), self.bodies[k].load(Relaxed));
            if !records.is_null() {
                // SAFETY: allocated in `new_chunk` with these layouts.
                unsafe {
                    std::alloc::dealloc(records.cast(), Self::layout::<Record>(k));
                    std::alloc::dealloc(bodies.cast(), Self::layout::<Body<H>>(k));
                }
            }
        }
    }
}

impl<H> Table<H> {
    fn layout<T>(k: usize) -> std::alloc::Layout {
        let array = std::alloc::Layout::array::<T>(FIRST_CHUNK << k).expect("a valid size");
        let align = if array.size() >= HUGE_PAGE { HUGE_PAGE } else { CHUNK_ALIGN };
        array.align_to(align).expect("a valid alignment")
    }

    /// The chunk and the offset in it of record `index`.
    #[inline]
    fn locate(index: u32) -> (usize, usize) {
        let n = index as usize / FIRST_CHUNK + 1;
        let k = (usize::BITS - 1 - n.leading_zeros()) as usize;
        (k, index as usize - FIRST_CHUNK * ((1 << k) - 1))
    }

    /// Record `index`, if it has been initialised. Any thread.
    fn record(&self, index: u32) -> Option<(&Record, &Body<H>)> {
        if index >= self.count.load(Acquire) {
            return None;
        }
        let (k, offset) = Self::locate(index);
        let record = NonNull::new(self.records[k].load(Acquire))?;
        let body = NonNull::new(self.bodies[k].load(Acquire))?;
        // SAFETY: within chunk k, initialised (below `count`), alive as long as `self`.
        Some(unsafe { (record.add(offset).as_ref(), body.add(offset).as_ref()) })
    }

    /// The chunk of record `index`, as `owner_chunks` indexes it.
    #[inline(always)]
    fn chunk_of(index: u32) -> usize {
        let n = index as usize / FIRST_CHUNK + 1;
        (usize::BITS - 1 - n.leading_zeros()) as usize & (CHUNK_SLOTS - 1)
    }

    /// Both halves of record `index`, which the owner knows exists.
    #[inline(always)]
    fn owned_pair(&self, index: u32) -> (&Record, &Body<H>) {
        // SAFETY: owner only; `new_chunk` set the chunk's entry before it made the
        // record (below `count`), and chunks live as long as `self`. The wrapping
        // arithmetic lands inside chunk k.
        unsafe {
            let (records, bodies) = (*self.owner_chunks.get())[Self::chunk_of(index)];
            (&*records.wrapping_add(index as usize), &*bodies.wrapping_add(index as usize))
        }
    }

    /// The hot half of record `index`, which the owner knows exists.
    #[inline(always)]
    fn owned(&self, index: u32) -> &Record {
        self.owned_pair(index).0
    }

    /// The cold half of record `index`, which the owner knows exists.
    #[inline(always)]
    fn body(&self, index: u32) -> &Body<H> {
        self.owned_pair(index).1
    }

    /// Starts fetching record `index` into the cache, both halves (the owner's, for an
    /// entry it will meet soon).
    #[inline]
    pub fn prefetch(&self, index: u32) {
        if index < self.count.load(Relaxed) {
            prefetch((self.owned(index) as *const Record).cast());
            prefetch((self.body(index) as *const Body<H>).cast());
        }
    }

    /// Chunk k's hot halves, allocating the chunk (both halves) when it is the first
    /// time it is needed (a forked child's table may have it already). Owner.
    #[cold]
    fn new_chunk(&self, k: usize) -> *mut Record {
        let mut records = self.records[k].load(Relaxed);
        if records.is_null() {
            let alloc = |layout: std::alloc::Layout| {
                // SAFETY: a non-zero size.
                let chunk = unsafe { std::alloc::alloc(layout) };
                if chunk.is_null() {
                    std::alloc::handle_alloc_error(layout);
                }
                #[cfg(target_os = "linux")]
                if layout.size() >= HUGE_PAGE {
                    // SAFETY: advice on memory this table owns; it changes no content.
                    unsafe { libc::madvise(chunk.cast(), layout.size(), libc::MADV_HUGEPAGE) };
                }
                chunk
            };
            records = alloc(Self::layout::<Record>(k)).cast();
            self.bodies[k].store(alloc(Self::layout::<Body<H>>(k)).cast(), Release);
            self.records[k].store(records, Release);
        }
        let first = FIRST_CHUNK * ((1 << k) - 1);
        let bodies = self.bodies[k].load(Relaxed);
        // SAFETY: owner only (see `owner_chunks`).
        unsafe { (*self.owner_chunks.get())[k] = (records.wrapping_sub(first), bodies.wrapping_sub(first)) };
        records
    }

    /// Schedules a timer: a free record gets `handler` and `interval_ns` and is armed.
    /// `inert`: dropping `handler` does nothing (a cancel may forget it unread).
    /// Returns (index, generation), or the handler back when the table is full. Owner.
    #[inline]
    pub fn schedule(&self, own: &mut OwnTimers, handler: H, interval_ns: u64, inert: bool) -> Result<(u32, u32), H> {
        let aux = if inert { INERT } else { 0 };
        if own.free_head == NIL {
            return self.schedule_new(own, handler, interval_ns, aux);
        }
        let index = own.free_head;
        let (record, body) = self.owned_pair(index);
        // SAFETY: owner-only field of a free record.
        own.free_head = record.aux.with(|next| unsafe { *next });
        let generation = generation_of(record.state.load(Relaxed));
        // SAFETY: a FREE record: nobody else touches these fields.
        record.aux.with_mut(|a| unsafe { *a = aux });
        body.handler.with_mut(|h| unsafe { (*h).write(handler) });
        body.interval_ns.with_mut(|i| unsafe { *i = interval_ns });
        record.state.store(state(generation, ARMED), Release);
        own.live += 1;
        Ok((index, generation))
    }

    /// `schedule` into a record that has never been used (record `count`; a new chunk
    /// when it starts one), made armed at once: generation 1, published by the Release
    /// store of `count` (a canceller reads `count` with Acquire before the record).
    #[inline]
    fn schedule_new(&self, own: &mut OwnTimers, handler: H, interval_ns: u64, aux: u32) -> Result<(u32, u32), H> {
        let index = self.count.load(Relaxed);
        if index >= TABLE_MAX {
            return Err(handler);
        }
        let (k, offset) = Self::locate(index);
        let records = if offset == 0 { self.new_chunk(k) } else { self.records[k].load(Relaxed) };
        let bodies = self.bodies[k].load(Relaxed);
        // SAFETY: within chunk k; not yet visible to any other thread (`count`).
        unsafe {
            let handler = UnsafeCell::new(MaybeUninit::new(handler));
            bodies.add(offset).write(Body { interval_ns: UnsafeCell::new(interval_ns), handler });
            records.add(offset).write(Record { state: AtomicU32::new(state(1, ARMED)), aux: UnsafeCell::new(aux) });
        }
        self.count.store(index + 1, Release);
        own.live += 1;
        Ok((index, 1))
    }

    /// Frees a record the owner ended (its handler is out).
    fn release(&self, own: &mut OwnTimers, index: u32, generation: u32, ordering: std::sync::atomic::Ordering) {
        let record = self.owned(index);
        let next = next_generation(generation);
        record.state.store(state(next, FREE), ordering);
        if next != 0 {
            // SAFETY: owner-only field of a free record.
            record.aux.with_mut(|n| unsafe { *n = own.free_head });
            own.free_head = index;
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
        if index >= self.count.load(Relaxed) {
            return Err(());
        }
        let record = self.owned(index);
        let armed = state(generation, ARMED);
        // Frees the record at once; its wheel entry goes stale.
        let next = next_generation(generation);
        if !self.free_armed(record, index, armed, state(next, FREE)) {
            return self.cancel_owned_unarmed(own, index, generation);
        }
        // SAFETY: it was ARMED, and this CAS ended it: the handler and `aux` are ours.
        let inert = record.aux.with(|a| unsafe { *a }) == INERT;
        let handler = if inert {
            None
        } else {
            // SAFETY: as above.
            Some(self.body(index).handler.with(|h| unsafe { (*h).assume_init_read() }))
        };
        if next != 0 {
            // SAFETY: owner-only field of a free record.
            record.aux.with_mut(|n| unsafe { *n = own.free_head });
            own.free_head = index;
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
        let (live, count) = (own.live, self.count.load(Relaxed) as usize);
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
    /// compare-exchange. False when it was not armed (or not seen to be, for the
    /// compare-exchange to settle). Owner.
    #[inline]
    fn free_armed(&self, record: &Record, index: u32, armed: u32, free: u32) -> bool {
        if self.plain {
            self.cancelling.store(index + 1, Relaxed);
            crate::barrier::light(); // the Dekker pair with cancel_foreign's barrier::heavy
                                     // Acquire: a cancel from another thread that is over (counted out with
                                     // Release) is seen whole, its claim included.
            let alone = self.foreign.load(Acquire) == 0;
            let done = alone && record.state.load(Relaxed) == armed;
            if done {
                record.state.store(free, Relaxed);
            }
            self.cancelling.store(0, Release);
            if alone {
                return done;
            }
        }
        record.state.compare_exchange(armed, free, Acquire, Relaxed).is_ok()
    }

    /// `cancel_owned` of a timer that was not ARMED when it looked: an `every` timer in
    /// its call, one another thread claimed meanwhile, or no live timer.
    #[cold]
    fn cancel_owned_unarmed(&self, own: &mut OwnTimers, index: u32, generation: u32) -> Result<Option<H>, ()> {
        let record = self.owned(index);
        loop {
            let current = record.state.load(Acquire);
            if current == state(generation, EVERY) {
                if record.state.compare_exchange(current, state(generation, EVERY_CANCELLED), AcqRel, Acquire).is_ok() {
                    return Ok(None);
                }
                continue;
            }
            if current == state(generation, ARMED) {
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
        let ahead = |entry: &super::Entry| prefetch((self.owned(entry.index) as *const Record).cast());
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
        self.record(index).is_some_and(|(record, _)| {
            let current = record.state.load(Relaxed);
            generation_of(current) == generation && matches!(phase_of(current), ARMED | ONCE | EVERY)
        })
    }

    /// Cancels timer (index, generation) from a thread that does not own the loop: the
    /// same answers as [`cancel_owned`](Self::cancel_owned). Any thread.
    #[allow(clippy::result_unit_err)]
    pub fn cancel_foreign(&self, index: u32, generation: u32) -> Result<Option<H>, ()> {
        let (record, body) = self.record(index).ok_or(())?;
        if !self.plain {
            return Self::claim(record, body, generation);
        }
        // Counted in, then the barrier: from here on the owner cancels by
        // compare-exchange; one that began before with plain stores is waited for.
        self.foreign.fetch_add(1, Relaxed);
        crate::barrier::heavy(); // the Dekker pair with free_armed's barrier::light
        while self.cancelling.load(Acquire) != 0 {
            crate::sync::yield_now();
        }
        let result = Self::claim(record, body, generation);
        self.foreign.fetch_sub(1, Release);
        result
    }

    /// A cancel's claim of timer `generation` in `record` (any thread), by
    /// compare-exchange.
    fn claim(record: &Record, body: &Body<H>, generation: u32) -> Result<Option<H>, ()> {
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
            let handler = body.handler.with(|h| unsafe { (*h).assume_init_read() });
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
                let body = self.body(index);
                // SAFETY: owner-only field.
                let interval_ns = body.interval_ns.with(|i| unsafe { *i });
                let running = state(generation, if interval_ns == 0 { ONCE } else { EVERY });
                if record.state.compare_exchange(armed, running, Acquire, Relaxed).is_err() {
                    continue;
                }
                // SAFETY: it was ARMED and this CAS began its call: the handler is ours
                // until `finish`.
                let handler = body.handler.with(|h| unsafe { (*h).assume_init_read() });
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
        let record = self.owned(index);
        let body = self.body(index);
        let current = record.state.load(Relaxed);
        if current == state(generation, EVERY) {
            // SAFETY: in its call, the handler's place is the owner's alone.
            body.handler.with_mut(|h| unsafe { (*h).write(handler) });
            if record.state.compare_exchange(current, state(generation, ARMED), Release, Relaxed).is_ok() {
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
        for index in 0..self.count.load(Relaxed) {
            let record = self.owned(index);
            loop {
                let current = record.state.load(Acquire);
                let generation = generation_of(current);
                match phase_of(current) {
                    ARMED => {
                        if record.state.compare_exchange(current, state(generation, CLAIMED), Acquire, Relaxed).is_ok()
                        {
                            // SAFETY: ended by this CAS: the handler is ours. An inert one
                            // is read too: the caller drops it, which does nothing.
                            let body = self.body(index);
                            handlers.push(body.handler.with(|h| unsafe { (*h).assume_init_read() }));
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
#[path = "table_tests.rs"]
mod tests;
