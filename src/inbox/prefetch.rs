//! The record queue's requests for cache lines ahead of use (see `src/inbox/queue.rs`):
//! a producer asks for the slots it will write, the consumer for the slots it will read.
//! Hints only: they never fault, and do nothing under loom or on other architectures.

/// How many slots ahead a producer asks for its line (see [`prefetch_write`]).
pub(super) const AHEAD: usize = 8;

/// Asks for the cache line at `p` in a state a store can use at once. A producer's
/// claim (a locked instruction) waits for its earlier stores to reach the cache; a
/// slot's line is usually in the consumer's cache (it read the block last lap), so
/// without this each claim would wait for that line to come over.
#[inline(always)]
pub(super) fn prefetch_write(p: *const u8) {
    #[cfg(all(target_arch = "x86_64", not(loom)))]
    // SAFETY: a prefetch is a hint; it does not fault. PREFETCHW (x86-64 CPUs without
    // it decode it as a NOP); `_MM_HINT_ET0` needs the `prfchw` target feature, which
    // the default target does not enable.
    unsafe {
        std::arch::asm!("prefetchw [{}]", in(reg) p, options(nostack, preserves_flags, readonly));
    }
    #[cfg(not(all(target_arch = "x86_64", not(loom))))]
    let _ = p;
}

/// Asks for the cache line at `p` ahead of a read (a hint: it does not fault).
#[inline(always)]
pub(super) fn prefetch_read(p: *const u8) {
    #[cfg(all(target_arch = "x86_64", not(loom)))]
    // SAFETY: a prefetch is a hint; it does not fault.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(all(target_arch = "x86_64", not(loom))))]
    let _ = p;
}
