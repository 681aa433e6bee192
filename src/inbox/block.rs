//! The blocks of the inbox's record queue (see `src/inbox/queue.rs`): [`SLOTS`] slots
//! and the link to the next block, in memory mapped for each block (not the
//! allocator's), so that a burst's blocks go back to the system once it is dispatched.

use super::slot::Slot;
use crate::sync::atomic::AtomicPtr;
use std::ptr::null_mut;

/// Positions per block: its slots and the marker. Small under loom, so that a model's
/// few records cross block boundaries.
#[cfg(not(loom))]
pub(super) const LAP: u64 = 1024;
#[cfg(loom)]
pub(super) const LAP: u64 = 3;
/// Slots per block.
pub(super) const SLOTS: usize = LAP as usize - 1;

pub(super) struct Block<H> {
    pub(super) slots: [Slot<H>; SLOTS],
    /// The next block, set by the producer of this block's last slot before it
    /// publishes that slot.
    pub(super) next: AtomicPtr<Block<H>>,
}

impl<H> Block<H> {
    /// A block whose stamps are 0 (no position's).
    pub(super) fn new() -> *mut Block<H> {
        #[cfg(loom)]
        {
            Box::into_raw(Box::new(Block {
                slots: std::array::from_fn(|_| Slot {
                    record: crate::sync::UnsafeCell::new(std::mem::MaybeUninit::uninit()),
                    stamp: crate::sync::atomic::AtomicU64::new(0),
                }),
                next: AtomicPtr::new(null_mut()),
            }))
        }
        #[cfg(not(loom))]
        {
            // Mapped memory, not the allocator's: unmapped when freed, a burst's blocks
            // go back to the system at once (a malloc arena would keep them). Zeroed:
            // `next` null, every stamp 0; the records may stay uninitialised. Populated:
            // the producers do not fault each page in, one at a time.
            // SAFETY: an anonymous private mapping of the block's size.
            let block = unsafe {
                libc::mmap(
                    null_mut(),
                    std::mem::size_of::<Block<H>>(),
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | populate(),
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
    pub(super) unsafe fn free(block: *mut Block<H>) {
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

    /// What a block's mapping spans: its size rounded up to whole pages (the page size
    /// asked of the system once).
    #[cfg(not(loom))]
    pub(super) fn span() -> usize {
        static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        // SAFETY: a plain query.
        let page =
            *PAGE.get_or_init(|| usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(1));
        std::mem::size_of::<Block<H>>().div_ceil(page) * page
    }

    /// Frees the blocks in `blocks` (emptied): those whose mappings are adjacent (the
    /// system tends to map them next to one another) with one system call per run of
    /// them, not one per block: an unmapping's fixed cost (flushing the address
    /// translations of the other CPUs that run the process's threads) is most of it.
    ///
    /// # Safety
    /// Each as for [`Block::free`].
    pub(super) unsafe fn free_all(blocks: &mut Vec<*mut Block<H>>) {
        #[cfg(loom)]
        for block in blocks.drain(..) {
            // SAFETY: as the caller promises.
            unsafe { Block::free(block) };
        }
        #[cfg(not(loom))]
        {
            let span = Block::<H>::span();
            blocks.sort_unstable();
            let mut run: Option<(usize, usize)> = None; // (first address, length)
            for block in blocks.drain(..) {
                let at = block as usize;
                run = match run {
                    Some((first, len)) if first + len == at => Some((first, len + span)),
                    other => {
                        if let Some((first, len)) = other {
                            // SAFETY: whole blocks' mappings, as the caller promises.
                            unsafe { libc::munmap(first as *mut libc::c_void, len) };
                        }
                        Some((at, span))
                    }
                };
            }
            if let Some((first, len)) = run {
                // SAFETY: as above.
                unsafe { libc::munmap(first as *mut libc::c_void, len) };
            }
        }
    }
}

/// `MAP_POPULATE` where the system has it.
#[cfg(not(loom))]
fn populate() -> libc::c_int {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    return libc::MAP_POPULATE;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    return 0;
}
