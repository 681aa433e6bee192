//! The inbox's record queue: many producers, one consumer, no lock per record. A
//! linked list of blocks of slots, in the manner of crossbeam's `list` channel and
//! Tokio's block-linked mpsc: a producer claims a slot with one compare-and-swap on the
//! tail index, writes its record there and publishes it with the slot's state; the
//! consumer reads the slots in order, and recycles each block it has read through (a
//! few are kept for the producers to reuse, the rest freed).
//!
//! # Indices and blocks
//!
//! `tail.index` counts positions, [`LAP`] per block: offsets 0 to `SLOTS - 1` are
//! slots, offset `SLOTS` is a marker ("the next block is being linked"). A record's
//! position is its sequence number (a post's id holds it): increasing in claim order,
//! with a gap at each block's end. `head` is the consumer's position, never on a marker.
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
//!      cannot free before it has read that slot;
//!   4. the last slot's claimant links the fresh block: `tail.block`, then the index past
//!      the marker (Release), then the old block's `next` (Release);
//!   5. write the record, then store the slot's state, POST or OTHER (Release): the
//!      hand-over. After that store the producer touches nothing in the block.
//!
//! The claim (step 3) is the producer's half of the inbox's wake-up pair: a SeqCst
//! read-modify-write of `tail.index`, read back by the consumer's `doze` after its
//! fence (see `crate::inbox`).
//!
//! # Consumer (the loop thread, under the inbox's lock): [`Records::take`]
//!
//! Reads the slots from `head` up to the tail index it loaded at the start (Acquire): a
//! slot's state POST or OTHER, the record is moved out; CANCELLED, skipped; EMPTY (a
//! producer claimed it and has not published yet), the consumer waits for it, as it
//! would wait for a producer holding a lock: a producer publishes a few instructions
//! after it claims and waits for nobody meanwhile (at a marker it waits for another
//! producer, never for the consumer). So every record claimed before a take begins,
//! hence every post whose call returned, is taken by it. After a
//! block's last slot, `next` is set (step 4 comes before step 5 of that slot's
//! producer): the consumer moves on and retires the block (its states reset, it becomes
//! a spare, or is freed). Nothing else holds a retired block: every producer that
//! claimed one of its slots has published (step 5 was its last use), a producer that
//! loaded it and has not claimed will fail its swap (the index never comes back), and
//! cancellers reach blocks only under the lock, from `head_block`.
//!
//! # Cancel (any thread, under the inbox's lock): [`Records::cancel`]
//!
//! A post still queued (its position at or after `head`) is found by walking `next`
//! from `head_block`; a POST state becomes CANCELLED and the canceller moves the
//! handler out. The consumer reads states under the same lock, so the two never race
//! for a record. A position not claimed or not yet published is not found: its id has
//! not been returned to anybody.
//!
//! Memory: blocks are mapped memory (not the allocator's), unmapped as the consumer
//! reads through them, so a burst's memory is given back once it is dispatched (one block and up to [`SPARES`] spares stay).

use super::Record;
use crate::sync::atomic::{
    AtomicPtr, AtomicU64, AtomicU8, Ordering::Acquire, Ordering::Relaxed, Ordering::Release, Ordering::SeqCst,
};
use crate::sync::UnsafeCell;
use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::ptr::null_mut;

/// Positions per block: its slots and the marker. Small under loom, so that a model's
/// few records cross block boundaries.
#[cfg(not(loom))]
const LAP: u64 = 1024;
#[cfg(loom)]
const LAP: u64 = 3;
/// Slots per block.
const SLOTS: usize = LAP as usize - 1;

/// A slot's state: claimed or not yet, but not published.
const EMPTY: u8 = 0;
/// Published: a post (which a cancel may take back).
const POST: u8 = 1;
/// Published: another record.
const OTHER: u8 = 2;
/// A post taken back by a cancel: the consumer skips it.
const CANCELLED: u8 = 3;

struct Block<H> {
    /// The next block, set by the producer of this block's last slot before it
    /// publishes that slot.
    next: AtomicPtr<Block<H>>,
    states: [AtomicU8; SLOTS],
    records: [UnsafeCell<MaybeUninit<Record<H>>>; SLOTS],
}

impl<H> Block<H> {
    /// A block with every slot EMPTY.
    fn new() -> *mut Block<H> {
        #[cfg(loom)]
        {
            Box::into_raw(Box::new(Block {
                next: AtomicPtr::new(null_mut()),
                states: std::array::from_fn(|_| AtomicU8::new(EMPTY)),
                records: std::array::from_fn(|_| UnsafeCell::new(MaybeUninit::uninit())),
            }))
        }
        #[cfg(not(loom))]
        {
            // Mapped memory, not the allocator's: unmapped when freed, a burst's blocks
            // go back to the system at once (a malloc arena would keep them). Zeroed:
            // `next` null, every state EMPTY; the records may stay uninitialised.
            // SAFETY: an anonymous private mapping of the block's size.
            let block = unsafe {
                libc::mmap(
                    null_mut(),
                    std::mem::size_of::<Block<H>>(),
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if block == libc::MAP_FAILED {
                std::alloc::handle_alloc_error(std::alloc::Layout::new::<Block<H>>());
            }
            block.cast()
        }
    }

    /// Frees a block (its records have been moved out or dropped).
    ///
    /// # Safety
    /// Made by [`Block::new`], used by nobody else.
    unsafe fn free(block: *mut Block<H>) {
        // SAFETY: dropping the fields drops no record (MaybeUninit); loom's atomics
        // are boxed, std's need no drop.
        #[cfg(loom)]
        drop(unsafe { Box::from_raw(block) });
        // SAFETY: mapped by `new` with this size.
        #[cfg(not(loom))]
        unsafe {
            libc::munmap(block.cast(), std::mem::size_of::<Block<H>>());
        }
    }
}

/// One step of a wait for a producer to publish: a pause, then yields.
#[inline]
fn wait_a_little(spins: &mut u32) {
    *spins += 1;
    if cfg!(not(loom)) && *spins < 100 {
        std::hint::spin_loop();
    } else {
        crate::sync::yield_now();
    }
}

/// Keeps a field on a cache line of its own.
#[repr(align(64))]
struct Line<T>(T);

/// How many retired blocks are kept for reuse (about 40 KB each outside loom): enough
/// that a consumer a few blocks behind its producers never hands memory back to the
/// allocator only for a producer to fault it in again.
const SPARES: usize = 8;

/// What producers share: the tail.
struct Tail<H> {
    index: AtomicU64,
    block: AtomicPtr<Block<H>>,
}

pub struct Records<H> {
    tail: Line<Tail<H>>,
    /// Blocks the consumer retired, for the producers that need one (each slot holds
    /// one or is null: taken with a swap, filled with a compare-and-swap, so no ABA).
    spares: Line<[AtomicPtr<Block<H>>; SPARES]>,
    /// The consumer's position (written by the consumer under the inbox's lock).
    head: Line<AtomicU64>,
    /// The block holding `head` (read and written under the inbox's lock).
    head_block: AtomicPtr<Block<H>>,
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
            head: Line(AtomicU64::new(LAP)),
            head_block: AtomicPtr::new(block),
        }
    }

    /// The consumer's position: every record before it has been taken.
    pub fn head(&self) -> u64 {
        self.head.0.load(Relaxed)
    }

    /// The consumer's position, read by a producer after its claim and fence (the
    /// wake-up protocol in `crate::inbox`).
    pub fn head_after_fence(&self) -> u64 {
        self.head.0.load(Acquire)
    }

    /// True when a producer has claimed a position the consumer has not taken (its
    /// record may not be published yet). On the consumer's side of the wake-up pair,
    /// after its fence.
    pub fn has_records(&self) -> bool {
        self.tail.0.index.load(Acquire) > self.head.0.load(Relaxed)
    }

    /// A fresh block: a spare, or a new one.
    fn fresh_block(&self) -> *mut Block<H> {
        for spare in &self.spares.0 {
            if !spare.load(Relaxed).is_null() {
                let block = spare.swap(null_mut(), Acquire);
                if !block.is_null() {
                    return block;
                }
            }
        }
        Block::new()
    }

    /// Keeps `block` (all EMPTY, unlinked) as a spare, or frees it.
    ///
    /// # Safety
    /// Nobody else uses the block.
    unsafe fn recycle(&self, block: *mut Block<H>) {
        for spare in &self.spares.0 {
            if spare.compare_exchange(null_mut(), block, Release, Relaxed).is_ok() {
                return;
            }
        }
        // SAFETY: ours alone.
        unsafe { Block::free(block) };
    }

    /// Queues the record `make` builds from its position (see the protocol); returns
    /// that position.
    pub fn push(&self, make: impl FnOnce(u64) -> Record<H>) -> u64 {
        let mut fresh: *mut Block<H> = null_mut();
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
        };
        if offset + 1 == SLOTS {
            self.tail.0.block.store(fresh, Release);
            self.tail.0.index.fetch_add(1, Release);
            // SAFETY: the block of a slot we claimed: alive until we publish it.
            unsafe { (*block).next.store(fresh, Release) };
        } else if !fresh.is_null() {
            // SAFETY: taken from the spare or made above, never shared.
            unsafe { self.recycle(fresh) };
        }
        let record = make(index);
        let state = if matches!(record, Record::Post { .. }) { POST } else { OTHER };
        // SAFETY: the slot is ours until its state is published.
        unsafe {
            (*block).records[offset].with_mut(|slot| (*slot).write(record));
            (*block).states[offset].store(state, Release);
        }
        index
    }

    /// Moves the records from `head` on into `batch`, at most `max` of them and none at
    /// or past `until` or the tail as it is now (waiting for any of those claimed and
    /// not yet published); returns that end.
    ///
    /// # Safety
    /// The consumer alone, under the inbox's lock.
    pub unsafe fn take(&self, batch: &mut VecDeque<Record<H>>, max: usize, until: u64) -> u64 {
        let end = self.tail.0.index.load(Acquire).min(until);
        let mut head = self.head.0.load(Relaxed);
        let mut block = self.head_block.load(Relaxed);
        let mut taken = 0;
        while taken < max && head < end {
            let offset = (head % LAP) as usize;
            // SAFETY: `block` holds `head` and is the consumer's to read.
            let mut state = unsafe { (*block).states[offset].load(Acquire) };
            let mut spins = 0u32;
            while state == EMPTY {
                // Claimed (below `end`), not yet published: its producer is a few
                // instructions from its store (as a producer holding a lock would be).
                wait_a_little(&mut spins);
                // SAFETY: as above.
                state = unsafe { (*block).states[offset].load(Acquire) };
            }
            match state {
                CANCELLED => {}
                _ => {
                    // SAFETY: published (the Acquire above), and read once: `head` moves.
                    let record = unsafe { (*block).records[offset].with(|slot| (*slot).assume_init_read()) };
                    batch.push_back(record);
                    taken += 1;
                }
            }
            head += 1;
            if offset + 1 == SLOTS {
                // SAFETY: as above. `next` was set before the last slot was published.
                let next = unsafe { (*block).next.load(Acquire) };
                debug_assert!(!next.is_null());
                // SAFETY: read through; nobody else holds it (see the protocol).
                unsafe { self.retire(block) };
                block = next;
                head += 1; // past the marker
            }
        }
        self.head_block.store(block, Relaxed);
        self.head.0.store(head, Relaxed);
        end
    }

    /// Resets a block the consumer has read through, and recycles it.
    ///
    /// # Safety
    /// As for [`Records::recycle`].
    unsafe fn retire(&self, block: *mut Block<H>) {
        // SAFETY: ours alone now.
        unsafe {
            for state in &(*block).states {
                state.store(EMPTY, Relaxed);
            }
            (*block).next.store(null_mut(), Relaxed);
            self.recycle(block);
        }
    }

    /// Takes post `seq` back if it is queued and published (at or after `head`): its
    /// record, which is a post.
    ///
    /// # Safety
    /// Under the inbox's lock.
    pub unsafe fn cancel(&self, seq: u64) -> Option<Record<H>> {
        let head = self.head.0.load(Relaxed);
        let offset = (seq % LAP) as usize;
        if seq < head || offset == SLOTS {
            return None;
        }
        let mut block = self.head_block.load(Relaxed);
        for _ in head / LAP..seq / LAP {
            // SAFETY: blocks from `head_block` on are alive while the lock is held.
            block = unsafe { (*block).next.load(Acquire) };
            if block.is_null() {
                return None;
            }
        }
        // SAFETY: as above; a POST slot is published, and the consumer reads it only
        // under the lock, after this state.
        unsafe {
            if (*block).states[offset].load(Acquire) != POST {
                return None;
            }
            (*block).states[offset].store(CANCELLED, Relaxed);
            Some((*block).records[offset].with(|slot| (*slot).assume_init_read()))
        }
    }
}

impl<H> Drop for Records<H> {
    /// Drops the records still queued (every producer is gone: every claimed slot is
    /// published) and frees the blocks.
    fn drop(&mut self) {
        let mut rest = VecDeque::new();
        // SAFETY: no other user is left.
        unsafe { self.take(&mut rest, usize::MAX, u64::MAX) };
        drop(rest);
        // SAFETY: the last blocks, ours alone.
        unsafe { Block::free(self.head_block.load(Relaxed)) };
        for spare in &self.spares.0 {
            let block = spare.load(Relaxed);
            if !block.is_null() {
                // SAFETY: as above.
                unsafe { Block::free(block) };
            }
        }
    }
}
