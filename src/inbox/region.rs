//! Where the record queue's fresh blocks come from in a burst: carved from 2 MB regions
//! that the kernel backs with a huge page (Linux's transparent huge pages), instead of
//! each mapped by itself.
//!
//! A block mapped by itself costs a page fault per 4 KB page as it is populated. On a
//! virtual machine each fault goes through the hypervisor (and the host's free page
//! reporting): a few microseconds per page, 10 ns or more per record, which made
//! fresh blocks most of a producer's cost whenever the consumer fell behind (measured
//! on the development VM, a fresh process each time: about 3 us per 4 KB mapped block
//! by block with MAP_POPULATE, about 0.3 us per 4 KB in a populated huge-page region).
//!
//! Policy: the first [`SINGLE`] fresh blocks after the consumer last found the queue
//! empty are mapped one by one (a small backlog keeps a small footprint); past them the
//! queue is in a burst, and fresh blocks are carved from a region, mapped and populated
//! 2 MB at a time. A carved block is freed like any other block (its own unmapping;
//! `Block::free_all` unmaps adjacent blocks together, so a region read through in one
//! burst goes back whole). When the consumer finds the queue empty ([`Regions::idle`])
//! the part of the region not carved yet is unmapped and the count starts again: after
//! a burst the memory goes back, as before.
//!
//! Elsewhere (other systems, loom, Miri) every block is mapped by itself.

use super::block::Block;

/// Fresh blocks mapped one by one after the queue was last empty, before a burst's
/// blocks come from regions.
pub(super) const SINGLE: u32 = 8;

/// A region's size: a huge page on x86-64 and aarch64 (with 4 KB pages).
#[cfg(all(any(target_os = "linux", target_os = "android"), not(loom), not(miri)))]
const REGION: usize = 2 << 20;

/// The region being carved: `[next, end)` not handed out yet (both 0: none), and the
/// fresh blocks made since the queue was last empty.
#[derive(Default)]
struct State {
    next: usize,
    end: usize,
    fresh: u32,
}

/// The carver of one record queue (a cold path: one call per block of 1023 records,
/// so a lock).
#[derive(Default)]
pub(super) struct Regions {
    state: std::sync::Mutex<State>,
}

impl Regions {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh block (zeroed, as [`Block::new`] makes them).
    pub(super) fn fresh<H>(&self) -> *mut Block<H> {
        if cfg!(loom) {
            return Block::new();
        }
        let mut state = self.lock();
        if state.fresh < SINGLE {
            state.fresh += 1;
            drop(state);
            return Block::new();
        }
        carve(&mut state).unwrap_or_else(|| {
            drop(state);
            Block::new()
        })
    }

    /// The consumer found the queue empty: the burst is over. Unmaps what the region
    /// has not handed out.
    pub(super) fn idle(&self) {
        let mut state = self.lock();
        let (next, end) = (state.next, state.end);
        *state = State::default();
        drop(state);
        if next < end {
            // SAFETY: a part of a region mapped by `carve`, handed to nobody.
            unsafe { unmap(next, end - next) };
        }
    }
}

impl Drop for Regions {
    fn drop(&mut self) {
        self.idle();
    }
}

/// The next block of the region, mapping a new region when this one is used up (None
/// when it cannot be mapped: the caller maps the block by itself).
#[cfg(all(any(target_os = "linux", target_os = "android"), not(loom), not(miri)))]
fn carve<H>(state: &mut State) -> Option<*mut Block<H>> {
    let span = Block::<H>::span();
    if state.end - state.next < span {
        if state.next < state.end {
            // SAFETY: the region's tail, too short for a block, handed to nobody.
            unsafe { unmap(state.next, state.end - state.next) };
        }
        (state.next, state.end) = (0, 0);
        let start = map_region()?;
        (state.next, state.end) = (start, start + REGION);
    }
    let block = state.next;
    state.next += span;
    Some(block as *mut Block<H>)
}

#[cfg(not(all(any(target_os = "linux", target_os = "android"), not(loom), not(miri))))]
fn carve<H>(_: &mut State) -> Option<*mut Block<H>> {
    None
}

/// Maps a region aligned to its size, asks for a huge page, and populates it (a write
/// to each page: one fault for the whole region when the kernel gave a huge page, one
/// per page otherwise, which the producers would have paid anyway). Zeroed, as the
/// kernel maps it.
#[cfg(all(any(target_os = "linux", target_os = "android"), not(loom), not(miri)))]
fn map_region() -> Option<usize> {
    let len = 2 * REGION;
    // SAFETY: an anonymous private mapping; the parts outside the aligned region are
    // unmapped at once.
    unsafe {
        let raw = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if raw == libc::MAP_FAILED {
            return None;
        }
        let raw = raw as usize;
        let start = raw.next_multiple_of(REGION);
        if start > raw {
            unmap(raw, start - raw);
        }
        if raw + len > start + REGION {
            unmap(start + REGION, raw + len - (start + REGION));
        }
        // Advice only: without it (or without transparent huge pages) the region is
        // mapped with small pages, as blocks are one by one.
        libc::madvise(start as *mut libc::c_void, REGION, libc::MADV_HUGEPAGE);
        for page in (start..start + REGION).step_by(4096) {
            std::ptr::write_volatile(page as *mut u8, 0);
        }
        Some(start)
    }
}

/// Unmaps `[at, at + len)`.
///
/// # Safety
/// Mapped memory nobody uses.
unsafe fn unmap(at: usize, len: usize) {
    #[cfg(not(loom))]
    // SAFETY: as the caller promises.
    unsafe {
        libc::munmap(at as *mut libc::c_void, len);
    }
    #[cfg(loom)]
    let _ = (at, len);
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    type B = Block<[usize; 3]>;

    /// Past the first SINGLE blocks, a burst's blocks come from a region: zeroed,
    /// distinct, adjacent; once the queue is idle, the count starts again.
    #[test]
    #[cfg_attr(miri, ignore = "mmap of 2 MB regions and madvise: calls Miri does not emulate")]
    fn a_burst_is_carved_from_regions_and_the_rest_given_back_when_idle() {
        let regions = Regions::default();
        let mut blocks: Vec<*mut B> = (0..SINGLE + 100).map(|_| regions.fresh()).collect();
        for &block in &blocks {
            // SAFETY: fresh blocks, ours alone.
            let block = unsafe { &*block };
            assert!(block.slots.iter().all(|slot| slot.stamp.load(std::sync::atomic::Ordering::Relaxed) == 0));
            assert!(block.next.load(std::sync::atomic::Ordering::Relaxed).is_null());
        }
        let mut sorted = blocks.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), blocks.len());
        #[cfg(all(any(target_os = "linux", target_os = "android"), not(miri)))]
        {
            let carved = &blocks[SINGLE as usize..];
            let adjacent = carved.windows(2).filter(|w| w[1] as usize == w[0] as usize + B::span()).count();
            // 100 blocks span two regions (64 blocks each): one gap between them.
            assert_eq!(adjacent, carved.len() - 2);
            let state = regions.lock();
            assert_eq!(state.fresh, SINGLE);
            assert!(state.next < state.end);
        }
        regions.idle();
        let state = regions.lock();
        assert_eq!((state.next, state.end, state.fresh), (0, 0, 0));
        drop(state);
        // SAFETY: every block handed out above, freed once.
        unsafe { Block::free_all(&mut blocks) };
    }
}
