//! A number for the calling thread, unique among the process's live threads: how the
//! loop tells its owner and the thread running it from other threads (owner.rs, pass.rs).

#[cfg(not(all(target_arch = "x86_64", target_os = "linux", not(loom), not(miri))))]
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

/// A number for the calling thread, unique among the process's live threads (never 0).
/// On x86-64 Linux, the thread pointer: the ABI keeps its own address at `%fs:0`, so it
/// is one load, where a thread-local in a shared library is a call (`__tls_get_addr`).
#[cfg(all(target_arch = "x86_64", target_os = "linux", not(loom), not(miri)))]
#[inline(always)]
pub(super) fn thread_number() -> u64 {
    let pointer: u64;
    // SAFETY: reads the thread control block's self-pointer, which the x86-64 TLS ABI
    // (variant II, glibc and musl) puts at %fs:0 for every thread; no side effect.
    unsafe {
        std::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) pointer, options(nostack, readonly, preserves_flags))
    };
    pointer
}

/// A number for the calling thread, unique in the process (never 0).
#[cfg(not(all(target_arch = "x86_64", target_os = "linux", not(loom), not(miri))))]
pub(super) fn thread_number() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static NUMBER: u64 = NEXT.fetch_add(1, SeqCst);
    }
    NUMBER.with(|n| *n)
}
