//! Where the owner's timer records live (`table.rs` holds the protocol): chunks that
//! never move or go before the table, so that a thread holding an id may look its
//! record up at any time.
//!
//! Chunk k holds `FIRST_CHUNK << k` records, as three arrays at the same index, each
//! written only where a timer needs it (memory never written costs no page and no
//! fault):
//!
//! * the hot [`Record`] (4 bytes: the atomic state word), for every timer;
//! * the [`Packed`] handler (16 bytes), for a one-shot timer whose handler packs into
//!   two words (C's without a `free_fn`: [`Pack`]), the common case;
//! * the [`Body`] (the handler and the interval: 32 bytes for C's handler), for the
//!   others.
//!
//! So a million C timers without a `free_fn` write 20 MB of records, where hot records
//! and bodies together wrote 40 (each page written is a fault, which on a VM whose
//! memory the host took back is an exit to the hypervisor too).

use crate::sync::atomic::AtomicPtr;
use crate::sync::atomic::AtomicU32;
use crate::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use crate::sync::UnsafeCell;
use std::mem::MaybeUninit;
use std::ptr::NonNull;

/// Chunk k holds `FIRST_CHUNK << k` records.
pub(super) const FIRST_CHUNK: usize = 64;
pub(super) const CHUNKS: usize = 18;
/// Entries of the owner's chunk arrays: a power of two, so that a chunk number needs
/// a mask and no bounds check.
const CHUNK_SLOTS: usize = 32;
const _: () = assert!(CHUNKS <= CHUNK_SLOTS && CHUNK_SLOTS.is_power_of_two());
/// Most records a table holds: under 2^24, the index bits of an id.
pub(super) const TABLE_MAX: u32 = (FIRST_CHUNK * ((1 << CHUNKS) - 1)) as u32;
/// Chunks are aligned to a cache line: a 32-byte body or a 16-byte packed handler never
/// straddles two.
const CHUNK_ALIGN: usize = 64;
/// Chunks of this size or more are aligned to it, so that a system whose transparent
/// huge pages are on for every mapping (THP `always`) can back them with huge pages
/// when it has them free.
///
/// They are not *asked* for huge pages (`MADV_HUGEPAGE`): with THP's default `defrag`
/// setting, a fault in such a mapping compacts memory synchronously when no huge page
/// is free, and that stall would land on the thread scheduling a timer. Measured on a
/// 2-core VM (1M timers scheduled, then cancelled in shuffled order; `bench_weft
/// timers_cancel`, 7 interleaved runs): with the advice, schedule took 35-37 ns when
/// huge pages were free and 63-76 ns when not (half the runs of a long benchmark);
/// without it, 40-43 ns every time. A cancel touches only the 4-byte hot records (4 MB
/// for a million timers: within the TLB's reach), 22-29 ns either way.
const HUGE_PAGE: usize = 2 << 20;

/// A handler that may be kept in two words while its timer waits: one whose drop does
/// nothing (C's callback and user data, without a `free_fn`). The owner's cancel of
/// such a timer forgets it unread.
pub trait Pack: Sized {
    /// The handler as two words, if it packs: then it is forgotten, and
    /// [`unpack`](Pack::unpack) gives it back.
    fn pack(&self) -> Option<[usize; 2]> {
        None
    }

    /// The handler `pack` gave these words for.
    ///
    /// # Safety
    /// `words` came from `pack` of a handler that was then forgotten, and are unpacked
    /// once.
    unsafe fn unpack(words: [usize; 2]) -> Self {
        let _ = words;
        unreachable!("a handler that does not pack was unpacked")
    }
}

/// The hot half of one owner's timer: its state word (`table.rs`).
pub(super) struct Record {
    pub(super) state: AtomicU32,
}

/// A packed handler (see [`Pack`]): present in ARMED and CLAIMED.
pub(super) type Packed = UnsafeCell<MaybeUninit<[usize; 2]>>;

/// The cold half of a timer whose handler does not pack: read when it fires, or by a
/// cancel that takes the handler.
pub(super) struct Body<H> {
    /// 0 for a one-shot timer. Owner only.
    pub(super) interval_ns: UnsafeCell<u64>,
    /// Present in ARMED and CLAIMED (and with the owner during a call).
    pub(super) handler: UnsafeCell<MaybeUninit<H>>,
}

/// One record's three parts.
pub(super) struct Parts<'a, H> {
    pub(super) record: &'a Record,
    pub(super) packed: &'a Packed,
    pub(super) body: &'a Body<H>,
}

/// The chunks of a table (see the module comment).
pub(super) struct Chunks<H> {
    records: [AtomicPtr<Record>; CHUNKS],
    /// Published before `count`, as `records`.
    packed: [AtomicPtr<Packed>; CHUNKS],
    /// Published before `count`, as `records`.
    bodies: [AtomicPtr<Body<H>>; CHUNKS],
    /// Records below this index have been initialised (published with Release).
    pub(super) count: AtomicU32,
    /// The owner's lookups: per chunk, the address record 0 would have if chunk k
    /// began at it (`records[k]` minus its first index), so that record `index` is at
    /// `owner_chunks[k].0 + index` (packed handlers and bodies likewise). Written by
    /// `new_chunk` (the owner, which alone reads them), out of loom's sight.
    owner_chunks: std::cell::UnsafeCell<[(*mut Record, *mut Packed, *mut Body<H>); CHUNK_SLOTS]>,
}

impl<H> Default for Chunks<H> {
    fn default() -> Self {
        use std::ptr::null_mut;
        Chunks {
            records: std::array::from_fn(|_| AtomicPtr::new(null_mut())),
            packed: std::array::from_fn(|_| AtomicPtr::new(null_mut())),
            bodies: std::array::from_fn(|_| AtomicPtr::new(null_mut())),
            count: AtomicU32::new(0),
            owner_chunks: std::cell::UnsafeCell::new([(null_mut(), null_mut(), null_mut()); CHUNK_SLOTS]),
        }
    }
}

impl<H> Drop for Chunks<H> {
    fn drop(&mut self) {
        // Handlers were ended by the loop's close (or belong to a forked child's copy,
        // which must not run them): only the memory goes.
        for k in 0..CHUNKS {
            let records = self.records[k].load(Relaxed);
            if !records.is_null() {
                // SAFETY: allocated in `new_chunk` with these layouts.
                unsafe {
                    std::alloc::dealloc(records.cast(), layout::<Record>(k));
                    std::alloc::dealloc(self.packed[k].load(Relaxed).cast(), layout::<Packed>(k));
                    std::alloc::dealloc(self.bodies[k].load(Relaxed).cast(), layout::<Body<H>>(k));
                }
            }
        }
    }
}

fn layout<T>(k: usize) -> std::alloc::Layout {
    let array = std::alloc::Layout::array::<T>(FIRST_CHUNK << k).expect("a valid size");
    let align = if array.size() >= HUGE_PAGE { HUGE_PAGE } else { CHUNK_ALIGN };
    array.align_to(align).expect("a valid alignment")
}

/// A chunk's array of `layout`, uninitialised.
fn alloc(layout: std::alloc::Layout) -> *mut u8 {
    // SAFETY: a non-zero size.
    let chunk = unsafe { std::alloc::alloc(layout) };
    if chunk.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    chunk
}

impl<H> Chunks<H> {
    /// The chunk and the offset in it of record `index`.
    #[inline]
    pub(super) fn locate(index: u32) -> (usize, usize) {
        let n = index as usize / FIRST_CHUNK + 1;
        let k = (usize::BITS - 1 - n.leading_zeros()) as usize;
        (k, index as usize - FIRST_CHUNK * ((1 << k) - 1))
    }

    /// The index after chunk k's last record.
    pub(super) fn end_of(k: usize) -> u32 {
        (FIRST_CHUNK * ((1 << (k + 1)) - 1)) as u32
    }

    /// Record `index`, if it has been initialised. Any thread.
    pub(super) fn get(&self, index: u32) -> Option<Parts<'_, H>> {
        if index >= self.count.load(Acquire) {
            return None;
        }
        let (k, offset) = Self::locate(index);
        let record = NonNull::new(self.records[k].load(Acquire))?;
        let packed = NonNull::new(self.packed[k].load(Acquire))?;
        let body = NonNull::new(self.bodies[k].load(Acquire))?;
        // SAFETY: within chunk k, initialised (below `count`), alive as long as `self`.
        unsafe {
            Some(Parts {
                record: record.add(offset).as_ref(),
                packed: packed.add(offset).as_ref(),
                body: body.add(offset).as_ref(),
            })
        }
    }

    /// The chunk of record `index`, as `owner_chunks` indexes it.
    #[inline(always)]
    fn chunk_of(index: u32) -> usize {
        let n = index as usize / FIRST_CHUNK + 1;
        (usize::BITS - 1 - n.leading_zeros()) as usize & (CHUNK_SLOTS - 1)
    }

    /// Where record `index`'s parts are, in a chunk the owner has made
    /// ([`new_chunk`](Self::new_chunk)). Owner.
    #[inline(always)]
    pub(super) fn owned_ptrs(&self, index: u32) -> (*mut Record, *mut Packed, *mut Body<H>) {
        // SAFETY: owner only (see `owner_chunks`).
        let (records, packed, bodies) = unsafe { (*self.owner_chunks.get())[Self::chunk_of(index)] };
        // The wrapping arithmetic lands inside the chunk.
        let at = index as usize;
        (records.wrapping_add(at), packed.wrapping_add(at), bodies.wrapping_add(at))
    }

    /// Record `index`, which the owner knows exists (below `count`).
    #[inline(always)]
    pub(super) fn owned(&self, index: u32) -> Parts<'_, H> {
        let (record, packed, body) = self.owned_ptrs(index);
        // SAFETY: a record of a chunk that lives as long as `self`; its cells are read
        // only in the phases that say they hold something.
        unsafe { Parts { record: &*record, packed: &*packed, body: &*body } }
    }

    /// Starts fetching record `index` into the cache, all its parts (the owner's, for
    /// an entry it will meet soon).
    #[inline]
    pub(super) fn prefetch(&self, index: u32) {
        if index < self.count.load(Relaxed) {
            let parts = self.owned(index);
            prefetch((parts.record as *const Record).cast());
            prefetch((parts.packed as *const Packed).cast());
            prefetch((parts.body as *const Body<H>).cast());
        }
    }

    /// Makes sure chunk k exists, allocating its arrays when it is the first time it is
    /// needed (a forked child's table may have them already). Owner.
    #[cold]
    pub(super) fn new_chunk(&self, k: usize) {
        let mut records = self.records[k].load(Relaxed);
        if records.is_null() {
            records = alloc(layout::<Record>(k)).cast();
            self.packed[k].store(alloc(layout::<Packed>(k)).cast(), Release);
            self.bodies[k].store(alloc(layout::<Body<H>>(k)).cast(), Release);
            self.records[k].store(records, Release);
        }
        let first = FIRST_CHUNK * ((1 << k) - 1);
        let (packed, bodies) = (self.packed[k].load(Relaxed), self.bodies[k].load(Relaxed));
        let bases = (records.wrapping_sub(first), packed.wrapping_sub(first), bodies.wrapping_sub(first));
        // SAFETY: owner only (see `owner_chunks`).
        unsafe { (*self.owner_chunks.get())[k] = bases };
    }
}

/// Asks the CPU to fetch the cache line at `p` (a hint; nothing on other targets). The
/// same as `crate::task::prefetch`, which this module cannot import (task depends on
/// process, which depends on timer).
#[inline(always)]
pub(super) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
