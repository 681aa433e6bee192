//! The inbox's record queue: many producers, one consumer, no lock per record. A
//! linked list of blocks of slots, in the manner of crossbeam's `list` channel and
//! Tokio's block-linked mpsc: a producer claims a slot with one compare-and-swap on the
//! tail index, writes its record there and publishes it with the slot's stamp; the
//! consumer reads the slots in order, runs each record straight from its slot, and
//! recycles each block it has read through (a few are kept for the producers to reuse,
//! the rest freed).
//!
//! # Indices, blocks and stamps
//!
//! `tail.index` counts positions, [`LAP`] per block: offsets 0 to `SLOTS - 1` are
//! slots, offset `SLOTS` is a marker ("the next block is being linked"). A record's
//! position is its sequence number (a post's id holds it): increasing in claim order,
//! with a gap at each block's end. Positions are never reused, so a slot's `stamp`,
//! the position of the record it holds and that record's kind (POST, OTHER, CANCELLED),
//! says by itself whether the slot's record for position `p` is published: the stamp is
//! `p`'s, or another's (an earlier lap of a recycled block, or 0 in a fresh one). So a
//! recycled block needs no reset, and the consumer never writes a line producers are
//! about to write (only a cancel writes a stamp).
//!
//! A slot is 32 bytes, two to a cache line (see `src/inbox/slot.rs`): a block of 1023
//! slots is 8 pages.
//!
//! # Producer (any thread): [`Records::push`]
//!
//!   1. load `tail.index` (Acquire), then `tail.block` (Acquire). At the marker, wait
//!      for the producer that links the next block (a few instructions);
//!   2. about to claim a block's last slot: get a fresh block first (a spare or a new
//!      one);
//!   3. claim the position with a compare-and-swap of `tail.index` (SeqCst). Only now is
//!      `block` used: the index was loaded before the block, a block is stored before
//!      the index moves into its lap (Release), and the swap fails if the index left
//!      that lap meanwhile, so `block` is the claimed slot's block, which the consumer
//!      cannot recycle before it has read that slot;
//!   4. the last slot's claimant links the fresh block: `tail.block`, then the index past
//!      the marker (Release), then the old block's `next` (Release);
//!   5. write the record, then store the slot's stamp (Release): the hand-over. After
//!      that store the producer touches nothing in the block;
//!   6. the producer that linked a block (step 4) when [`BACKLOG`] blocks (or twice,
//!      four times as many...) wait for the consumer offers its CPU (a yield: it waits
//!      for nothing).
//!
//! The claim (step 3) is the producer's half of the inbox's wake-up pair: a SeqCst
//! read-modify-write of `tail.index`, read back by the consumer's `doze` after its
//! fence (see `crate::inbox`).
//!
//! # Consumer (the loop thread): [`Records::take`], then [`Records::run`]
//!
//! Two cursors: `head`, the end of what the consumer has taken, and `read`, the next
//! position it runs (`read <= head`; equal between slices).
//!
//! `take` (under the inbox's lock) moves `head` over the positions up to the tail
//! index it loaded at the start (Acquire), at most a slice's worth, without reading the
//! slots (past a block's end it waits for `next`, which the claimant of the last slot
//! sets a few instructions after its claim).
//!
//! `run` (the loop thread, no lock) moves `read` up to `head`: it moves each record out
//! of its slot (a CANCELLED one is skipped) and hands it to the pass to run, `read`
//! already past it, with the cursors in registers between records (`next`, one record,
//! is `run` stopped after the first). A slot not
//! yet stamped for its position (a producer claimed it and has not published yet) is
//! waited for, as for a producer holding a lock: a producer publishes a few
//! instructions after it claims and waits for nobody meanwhile (at a marker it waits
//! for another producer, never for the consumer). So every record claimed before a
//! take begins, hence every post whose call returned, is run after it. Past a block's
//! last slot, `next` is set (step 4 comes before step 5 of that slot's producer): the
//! consumer moves on and, once that slot's record has run, retires the block (a spare
//! for the producers, or kept for them while a backlog lasts). Nothing else holds a
//! retired block: every producer that claimed one of its slots has published (step 5
//! was its last use), a producer that loaded it and has not claimed will fail its swap
//! (the index never comes back), and cancellers reach blocks only under the lock, from
//! `head.block` (other threads) or `read.block` (the loop thread).
//!
//! # Cancel (under the inbox's lock): [`Records::cancel`]
//!
//! A post still queued (its position at or after `head`) is found by walking `next`
//! from `head_block`; its POST stamp becomes CANCELLED and the canceller moves the
//! record out. `take` reads stamps under the same lock, so the two never race for a
//! record. A position not claimed or not yet published is not found: its id has not
//! been returned to anybody. The loop thread (a callback) may also cancel a post taken
//! and not yet run (between `read` and `head`): those slots are its own, it walks from
//! `read.block`, and `next` reads the CANCELLED stamp. For another thread such a post
//! counts as started: it would otherwise race `next`, which would then need a
//! read-modify-write per record.
//!
//! Memory: blocks are mapped memory (not the allocator's). The consumer keeps the
//! blocks it has read through for the producers while a backlog lasts, and unmaps them
//! once it finds the queue empty, so a burst's memory is given back once it is
//! dispatched (one block and up to [`SPARES`] spares stay). A block is mapped with its
//! pages populated: one system call instead of a page fault per page as the producers
//! fill it; in a burst, blocks are carved from regions backed by a huge page (see
//! `src/inbox/region.rs`).

use super::block::{Block, LAP, SLOTS};
use super::prefetch::{prefetch_read, prefetch_write, AHEAD};
use super::region::Regions;
use super::slot::{stamp, Payload, Slot, CANCELLED, KIND_BITS, KIND_MASK, OTHER, POST};
use super::Record;
use crate::sync::atomic::{
    AtomicPtr, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release, Ordering::SeqCst,
};
use crate::sync::UnsafeCell;
use std::mem::ManuallyDrop;
use std::ptr::null_mut;

/// A producer's pause after a lost claim: 1, 2, 4, ... up to 16 spins.
#[inline]
fn backoff(tries: &mut u32) {
    for _ in 0..1u32 << (*tries).min(4) {
        std::hint::spin_loop();
    }
    *tries += 1;
}

/// Waits until `slot` is published for `position` (claimed, below the tail): returns
/// its stamp.
#[cold]
fn wait_for<H>(slot: &Slot<H>, position: u64) -> u64 {
    let mut spins = 0u32;
    loop {
        wait_a_little(&mut spins);
        let published = slot.stamp.load(Acquire);
        if published >> KIND_BITS == position {
            return published;
        }
    }
}

/// One step of a wait for a producer to publish: a pause, then yields.
#[inline]
fn wait_a_little(spins: &mut u32) {
    *spins += 1;
    // A model whose producer never publishes (a broken protocol: a record written into
    // the wrong block) fails here instead of spinning until loom runs out of memory.
    #[cfg(loom)]
    assert!(*spins < 1000, "waited for a record or a block that never came");
    if cfg!(not(loom)) && *spins < 100 {
        std::hint::spin_loop();
    } else {
        crate::sync::yield_now();
    }
}

/// Keeps a field on a cache line of its own.
#[repr(align(64))]
struct Line<T>(T);

/// A block [`Records::run`] has read through, retired when this is dropped: after the
/// call that got the block's last record (or if that call unwinds). Its last record has
/// been moved out by then, and nothing else holds the block (a cancel from that call
/// walks from `read.block`, the next block already), so the producers may have it.
struct Retire<'a, H>(&'a Records<H>, *mut Block<H>);

impl<H> Drop for Retire<'_, H> {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: read through by the consumer, used by nobody else (see above).
        unsafe { self.0.retire(self.1) };
    }
}

/// How many retired blocks producers can take for reuse (32 KB each outside loom: as
/// many bytes as 8 blocks of 48-byte slots were). The consumer keeps more (see `Records::kept`) while it has records to read,
/// and moves them here as producers take these.
const SPARES: usize = 12;

/// Blocks of records not yet taken at which a producer that links a new block offers
/// its CPU (a yield, after its record is published: it waits for nothing): when that
/// many wait, and again at each doubling (32, 64, ...). The scheduler often puts a loop
/// woken by a producer on the producer's CPU (on a busy 2-CPU machine, nearly always,
/// measured: the two threads' CPU times add up to the run's wall time), where it waits
/// for the producer's time slice to end: the producer then queues a whole slice's
/// records (hundreds of thousands, tens of MB of fresh memory, a huge page's clearing
/// per 64 blocks) before the loop runs once. A yield there lets the loop run, and the
/// two take turns on blocks that stay in cache and are reused. With a CPU to itself,
/// or with no loop running (a host that posts before it runs the loop), a yield
/// returns at once: a few system calls per backlog, one per doubling. 16 blocks: 512
/// KB of slots, within a core's L2.
const BACKLOG: u64 = if cfg!(loom) { u64::MAX / LAP } else { 16 };

/// What producers share: the tail.
struct Tail<H> {
    index: AtomicU64,
    block: AtomicPtr<Block<H>>,
}

/// The end of what the consumer has taken (written under the inbox's lock).
struct Head<H> {
    index: AtomicU64,
    /// The block holding `index`.
    block: AtomicPtr<Block<H>>,
}

/// The consumer's read cursor: the next position it runs, and its block (the oldest
/// block not recycled). Written by the consumer alone, outside the lock; read by
/// the consumer's thread alone.
struct Read<H> {
    index: AtomicU64,
    block: AtomicPtr<Block<H>>,
    /// `head` at the consumer's last doze (see [`Records::took_since_doze`]).
    doze_at: AtomicU64,
}

pub struct Records<H> {
    tail: Line<Tail<H>>,
    /// Blocks the consumer retired, for the producers that need one (each slot holds
    /// one or is null: taken with a swap, filled with a compare-and-swap, so no ABA).
    spares: Line<[AtomicPtr<Block<H>>; SPARES]>,
    /// Read by producers only when the consumer dozes.
    head: Line<Head<H>>,
    /// Written for every record run: on a line of its own.
    read: Line<Read<H>>,
    /// Retired blocks beyond the spares, the consumer's alone: a backlog that shrinks
    /// and grows again (a consumer descheduled for a while) reuses its blocks instead
    /// of unmapping them and mapping new ones (page faults and TLB shootdowns, which
    /// cost the producers more than their posts). Given back once the consumer finds
    /// the queue empty ([`Records::idle`]).
    kept: UnsafeCell<Vec<*mut Block<H>>>,
    /// Where fresh blocks come from in a burst (see `src/inbox/region.rs`).
    regions: Regions,
}

// SAFETY: records cross threads as the inbox's did under its mutex (H: Send); the
// blocks are reached through the protocol above.
unsafe impl<H: Send> Send for Records<H> {}
unsafe impl<H: Send> Sync for Records<H> {}

impl<H> Records<H> {
    pub fn new() -> Records<H> {
        let block = Block::new();
        Records {
            // Lap 1: every position, hence every post's number, is at least 1.
            tail: Line(Tail { index: AtomicU64::new(LAP), block: AtomicPtr::new(block) }),
            spares: Line(std::array::from_fn(|_| AtomicPtr::new(null_mut()))),
            head: Line(Head { index: AtomicU64::new(LAP), block: AtomicPtr::new(block) }),
            read: Line(Read { index: AtomicU64::new(LAP), block: AtomicPtr::new(block), doze_at: AtomicU64::new(0) }),
            kept: UnsafeCell::new(Vec::new()),
            regions: Regions::default(),
        }
    }

    /// The end of what the consumer has taken: every record before it has been taken.
    pub fn head(&self) -> u64 {
        self.head.0.index.load(Relaxed)
    }

    /// The consumer's position, read by a producer after its claim and fence (the
    /// wake-up protocol in `crate::inbox`).
    #[inline]
    pub fn head_after_fence(&self) -> u64 {
        self.head.0.index.load(Acquire)
    }

    /// How many records producers have claimed that the consumer has not run yet
    /// (cancelled ones included until skipped): positions from `read` to the tail, less
    /// the blocks' markers among them. Any thread; a moment's view, for statistics.
    pub fn queued(&self) -> u64 {
        let read = self.read.0.index.load(Relaxed);
        let tail = self.tail.0.index.load(Relaxed).max(read);
        // The markers before position n: one per lap completed.
        (tail - read) - (tail / LAP - read / LAP)
    }

    /// Whether the record at position `pos` has been claimed and not run yet. Any
    /// thread; a moment's view.
    pub fn is_pending(&self, pos: u64) -> bool {
        pos >= self.read.0.index.load(Relaxed) && pos < self.tail.0.index.load(Relaxed)
    }

    /// True when a producer has claimed a position the consumer has not taken (its
    /// record may not be published yet). On the consumer's side of the wake-up pair,
    /// after its fence.
    pub fn has_records(&self) -> bool {
        self.tail.0.index.load(Acquire) > self.head.0.index.load(Relaxed)
    }

    /// True when the record at `head` (the next one the consumer would take) is
    /// published (or cancelled since): what the consumer watches while it dozes (see
    /// `Inbox::doze`). It reads the line of that slot, which it reads next anyway, and
    /// not the tail's: every claim writes the tail, and a consumer watching it would
    /// take its line from the producer before each claim (the producer's
    /// compare-and-swap then waits for the line to come back).
    ///
    /// # Safety
    /// The consumer alone (only it moves `head`).
    #[inline]
    pub unsafe fn head_published(&self) -> bool {
        let head = self.head.0.index.load(Relaxed);
        let offset = (head % LAP) as usize;
        debug_assert!(offset < SLOTS, "`head` never rests on a marker");
        // SAFETY: `head.block` holds `head` and is not recycled before `read` passes it.
        let slot = unsafe { (*self.head.0.block.load(Relaxed)).slots.get_unchecked(offset) };
        slot.stamp.load(Acquire) >> KIND_BITS == head
    }

    /// A fresh block: a spare, or a new one (see `src/inbox/region.rs`).
    #[cold]
    fn fresh_block(&self) -> *mut Block<H> {
        for spare in &self.spares.0 {
            if !spare.load(Relaxed).is_null() {
                let block = spare.swap(null_mut(), Acquire);
                if !block.is_null() {
                    return block;
                }
            }
        }
        self.regions.fresh()
    }

    /// Keeps `block` (unlinked, its records moved out) as a spare, or frees it.
    ///
    /// # Safety
    /// Nobody else uses the block.
    unsafe fn recycle(&self, block: *mut Block<H>) {
        // SAFETY: ours alone.
        unsafe { (*block).next.store(null_mut(), Relaxed) };
        for spare in &self.spares.0 {
            if spare.compare_exchange(null_mut(), block, Release, Relaxed).is_ok() {
                return;
            }
        }
        // SAFETY: ours alone.
        unsafe { Block::free(block) };
    }

    /// Hands a block the consumer has read through to the producers (a spare), or
    /// keeps it; and refills the spares producers have taken from what it kept.
    ///
    /// # Safety
    /// The consumer alone; nobody else uses the block.
    unsafe fn retire(&self, block: *mut Block<H>) {
        // SAFETY: ours alone.
        unsafe { (*block).next.store(null_mut(), Relaxed) };
        // SAFETY: the consumer's alone.
        self.kept.with_mut(|kept| unsafe {
            let kept = &mut *kept;
            kept.push(block);
            for spare in &self.spares.0 {
                let Some(&block) = kept.last() else { break };
                if spare.load(Relaxed).is_null() && spare.compare_exchange(null_mut(), block, Release, Relaxed).is_ok()
                {
                    kept.pop();
                }
            }
        });
    }

    /// True if the consumer has taken records since it last called this (when it
    /// dozes).
    ///
    /// # Safety
    /// The consumer alone.
    pub unsafe fn took_since_doze(&self) -> bool {
        let head = self.head.0.index.load(Relaxed);
        self.read.0.doze_at.swap(head, Relaxed) != head
    }

    /// The consumer found the queue empty: the backlog the blocks it kept served is
    /// gone, and it gives them back (were it to keep them for a later burst, a
    /// producer that fills the queue before the consumer runs, as an embedding host's
    /// own thread does, would map new blocks while they wait).
    ///
    /// # Safety
    /// The consumer alone.
    pub unsafe fn idle(&self) {
        // SAFETY: the consumer.
        unsafe { self.trim() };
        self.regions.idle();
    }

    /// Gives back the blocks the consumer kept (the spares stay).
    ///
    /// # Safety
    /// The consumer alone.
    unsafe fn trim(&self) {
        // SAFETY: the consumer's alone; the blocks are unlinked and used by nobody.
        self.kept.with_mut(|kept| unsafe {
            Block::free_all(&mut *kept);
            if (*kept).capacity() > 64 {
                *kept = Vec::new();
            }
        });
    }

    /// Links a fresh block after the one whose last slot we claimed (step 4).
    ///
    /// # Safety
    /// `block` holds the slot we claimed at its last offset.
    #[cold]
    unsafe fn link(&self, block: *mut Block<H>, fresh: *mut Block<H>) {
        self.tail.0.block.store(fresh, Release);
        self.tail.0.index.fetch_add(1, Release);
        // SAFETY: the block of a slot we claimed: alive until we publish it.
        unsafe { (*block).next.store(fresh, Release) };
    }

    /// Queues `record` (see the protocol); returns its position.
    #[inline]
    pub fn push(&self, record: Record<H>) -> u64 {
        let (payload, kind) = Payload::of(record);
        self.push_payload(payload, kind)
    }

    /// Queues a post (see the protocol); returns its position.
    #[inline(always)]
    pub fn push_post(&self, handler: H) -> u64 {
        self.push_payload(Payload { post: ManuallyDrop::new(handler) }, POST)
    }

    /// The common case inline: a slot before the block's last, claimed at the first
    /// try. Anything else (the last slot, the marker, a lost claim) goes out of line, so
    /// that the common path needs few registers.
    #[inline(always)]
    fn push_payload(&self, payload: Payload<H>, kind: u64) -> u64 {
        let index = self.tail.0.index.load(Acquire);
        let block = self.tail.0.block.load(Acquire);
        let offset = (index % LAP) as usize;
        if offset + 1 < SLOTS && self.tail.0.index.compare_exchange_weak(index, index + 1, SeqCst, Relaxed).is_ok() {
            // SAFETY: claimed (step 3): the slot is ours until its stamp is published.
            unsafe { Self::publish(block, offset, index, payload, kind) };
            return index;
        }
        self.push_slowly(payload, kind)
    }

    /// Writes the record into its slot and publishes it (step 5).
    ///
    /// # Safety
    /// The caller claimed position `index`, at `offset` of `block`.
    #[inline(always)]
    unsafe fn publish(block: *mut Block<H>, offset: usize, index: u64, payload: Payload<H>, kind: u64) {
        // SAFETY: as the caller promises.
        unsafe {
            let slot = &(*block).slots[offset];
            if offset + AHEAD < SLOTS {
                prefetch_write((&(*block).slots[offset + AHEAD] as *const Slot<H>).cast());
            }
            slot.record.with_mut(|cell| (*cell).write(payload));
            slot.stamp.store(stamp(index, kind), Release);
        }
    }

    /// [`Records::push_payload`]'s every case, out of line.
    #[cold]
    #[inline(never)]
    fn push_slowly(&self, payload: Payload<H>, kind: u64) -> u64 {
        let mut fresh: *mut Block<H> = null_mut();
        let mut tries = 0u32;
        let (index, block, offset) = loop {
            let index = self.tail.0.index.load(Acquire);
            let block = self.tail.0.block.load(Acquire);
            let offset = (index % LAP) as usize;
            if offset == SLOTS {
                // The next block is being linked.
                crate::sync::yield_now();
                continue;
            }
            if offset + 1 == SLOTS && fresh.is_null() {
                fresh = self.fresh_block();
            }
            if self.tail.0.index.compare_exchange_weak(index, index + 1, SeqCst, Relaxed).is_ok() {
                break (index, block, offset);
            }
            // Another producer claimed first: back off a little (as crossbeam's channels
            // do), so that contending producers do not pass the tail's line back and
            // forth on every try.
            backoff(&mut tries);
        };
        let linked = offset + 1 == SLOTS;
        if linked {
            // SAFETY: we claimed the block's last slot.
            unsafe { self.link(block, fresh) };
        } else if !fresh.is_null() {
            // SAFETY: taken from the spares or made above, never shared.
            unsafe { self.recycle(fresh) };
        }
        // SAFETY: claimed above.
        unsafe { Self::publish(block, offset, index, payload, kind) };
        let waiting = index.saturating_sub(self.head.0.index.load(Relaxed)) / LAP;
        if linked && waiting >= BACKLOG && waiting.is_power_of_two() {
            // The consumer has fallen behind: offer this CPU (see BACKLOG).
            crate::sync::yield_now();
        }
        index
    }

    /// Moves `head` over the positions from it on, at most `max` records (a record
    /// cancelled while queued counts) and none at or past `until` or the tail as it is
    /// now. Returns how many it took, and that end. The slots are not read here: `next`
    /// reads them (and waits for a producer that has claimed and not yet published).
    ///
    /// # Safety
    /// The consumer alone, under the inbox's lock.
    pub unsafe fn take(&self, max: usize, until: u64) -> (usize, u64) {
        let end = self.tail.0.index.load(Acquire).min(until);
        let mut head = self.head.0.index.load(Relaxed);
        let mut block = self.head.0.block.load(Relaxed);
        let mut taken = 0;
        while taken < max && head < end {
            let room = SLOTS as u64 - head % LAP;
            let n = room.min(end - head).min((max - taken) as u64);
            taken += n as usize;
            head += n;
            if n == room {
                // Past the block's last slot, which is claimed (below `end`): its
                // producer links the next block before it publishes (step 4), a few
                // instructions from its claim.
                let mut spins = 0u32;
                loop {
                    // SAFETY: `block` holds `head` and is not recycled before `read`
                    // passes it.
                    let next = unsafe { (*block).next.load(Acquire) };
                    if !next.is_null() {
                        block = next;
                        break;
                    }
                    wait_a_little(&mut spins);
                }
                head += 1; // past the marker
            }
        }
        self.head.0.block.store(block, Relaxed);
        self.head.0.index.store(head, Relaxed);
        (taken, end)
    }

    /// The next record taken and not yet run (moved out of its slot), with its
    /// position; None when `read` has reached `head`. See [`Records::run`].
    ///
    /// # Safety
    /// The consumer's thread alone (not under the lock).
    #[inline]
    pub unsafe fn next(&self) -> Option<(u64, Record<H>)> {
        let mut got = None;
        // SAFETY: as the caller promises.
        unsafe {
            self.run(|position, record| {
                got = Some((position, record));
                false
            })
        };
        got
    }

    /// Hands the records taken and not yet run to `f`, in order (each moved out of its
    /// slot, with its position), while `f` returns true and `read` has not reached
    /// `head`. Waits for a record claimed and not yet published (a few instructions
    /// away, as for a producer holding a lock: a producer publishes right after it
    /// claims and waits for nobody meanwhile; at a marker it waits for another
    /// producer, never for the consumer). So every record claimed before a take began,
    /// hence every post whose call returned, is run.
    ///
    /// `read` moves past a record before `f` gets it: `f` (a callback) may cancel a
    /// later post taken with it (see [`Records::cancel`]), never this one again.
    ///
    /// # Safety
    /// The consumer's thread alone (not under the lock).
    #[inline(always)]
    pub unsafe fn run(&self, mut f: impl FnMut(u64, Record<H>) -> bool) {
        // The cursors stay in registers while `f` runs: only `take` moves `head` and only
        // `run` moves `read`, both on this thread and neither from inside `f` (a
        // callback can neither run a pass of its own loop nor free it). `read.index` is
        // still stored before each call, for a cancel from `f` and the statistics.
        let head = self.head.0.index.load(Relaxed);
        let mut index = self.read.0.index.load(Relaxed);
        let mut block = self.read.0.block.load(Relaxed);
        while index != head {
            let offset = (index % LAP) as usize;
            debug_assert!(offset < SLOTS, "`read` never rests on a marker");
            // SAFETY: below `head`, so `block` is not recycled before `read` passes it
            // (nor before the call below returns: see `read_through`); `offset` is a
            // slot's (the index steps over markers); its record is read once, as
            // `read` moves past it.
            let slot = unsafe { (*block).slots.get_unchecked(offset) };
            // A few slots ahead: the producer wrote them, and their lines are in its
            // core's cache; ask for them before they are needed. Only slots taken: past
            // `head` the consumer has caught up with its producer, who is writing those
            // lines (it asked for them ahead, see `publish`), and reading one would take
            // it from the producer's cache just before its next store. Near a block's
            // end the address is past the block (the taken slots ahead are in the next
            // one): a prefetch there does nothing (it never faults), and that saves a
            // bound per record.
            if index + (AHEAD as u64) < head {
                prefetch_read((slot as *const Slot<H>).wrapping_add(AHEAD).cast());
            }
            let mut published = slot.stamp.load(Acquire);
            if published >> KIND_BITS != index {
                published = wait_for(slot, index);
            }
            let position = index;
            index += 1;
            let kind = published & KIND_MASK;
            // Past the block's last slot: `read` moves on to the next block now, and
            // this one is retired once its record has been handed out (see below).
            let mut read_through = None;
            if offset + 1 == SLOTS {
                // SAFETY: as above; `next` was set before the last slot was published.
                let next = unsafe { (*block).next.load(Acquire) };
                read_through = Some(Retire(self, block));
                block = next;
                index += 1; // past the marker
                self.read.0.block.store(block, Relaxed);
            }
            self.read.0.index.store(index, Relaxed);
            // Each kind read straight from the slot (a post's three words into
            // registers), and a call of `f` for each (inlined, see `Inbox::run_records`):
            // a post's goes straight to its arm of `f`'s match.
            // SAFETY: published (the Acquire above) with this kind, and the consumer's
            // alone; a CANCELLED slot's record was moved out by its canceller.
            let go_on = match kind {
                OTHER => f(position, unsafe { slot.record.with(|cell| (*cell).assume_init_read().into_record(OTHER)) }),
                CANCELLED => true,
                _ => {
                    let post = slot.record.with(|cell| unsafe { std::ptr::read(&(*cell).assume_init_ref().post) });
                    f(position, Record::Post { handler: ManuallyDrop::into_inner(post) })
                }
            };
            debug_assert_eq!(self.read.0.index.load(Relaxed), index, "`read` moved under `f`");
            drop(read_through);
            if !go_on {
                return;
            }
        }
    }

    /// Takes post `seq` back if it is published and has not been run: queued (at or
    /// after `head`), or, for the consumer's own thread (`on_consumer`), taken and not
    /// yet run (at or after `read`). Returns its record, which is a post.
    ///
    /// # Safety
    /// Under the inbox's lock; `on_consumer` only on the consumer's thread.
    pub unsafe fn cancel(&self, seq: u64, on_consumer: bool) -> Option<Record<H>> {
        let head = self.head.0.index.load(Relaxed);
        let (from, mut block) = if seq >= head {
            (head, self.head.0.block.load(Relaxed))
        } else if on_consumer {
            (self.read.0.index.load(Relaxed), self.read.0.block.load(Relaxed))
        } else {
            return None;
        };
        if seq < from || seq % LAP == SLOTS as u64 {
            return None;
        }
        for _ in from / LAP..seq / LAP {
            // SAFETY: blocks from `head.block` (and, on the consumer's thread, from
            // `read.block`) on are alive while the lock is held.
            block = unsafe { (*block).next.load(Acquire) };
            if block.is_null() {
                return None;
            }
        }
        // SAFETY: as above; a slot stamped POST for `seq` is published, and the
        // consumer reads it only under the lock (`take`) or on this thread (`next`).
        unsafe {
            let slot = &(*block).slots[(seq % LAP) as usize];
            if slot.stamp.load(Acquire) != stamp(seq, POST) {
                return None;
            }
            slot.stamp.store(stamp(seq, CANCELLED), Relaxed);
            Some(slot.record.with(|cell| (*cell).assume_init_read().into_record(POST)))
        }
    }
}

impl<H> Drop for Records<H> {
    /// Drops the records still queued (every producer is gone: every claimed slot is
    /// published) and frees the blocks.
    fn drop(&mut self) {
        // SAFETY: no other user is left.
        unsafe {
            while self.next().is_some() {}
            self.take(usize::MAX, u64::MAX);
            while self.next().is_some() {}
        }
        // SAFETY: the last blocks, ours alone.
        unsafe {
            self.trim();
            Block::free(self.read.0.block.load(Relaxed));
        }
        for spare in &self.spares.0 {
            let block = spare.load(Relaxed);
            if !block.is_null() {
                // SAFETY: as above.
                unsafe { Block::free(block) };
            }
        }
    }
}
