//! An asymmetric fence: a Dekker pair whose one side runs often and must be cheap (a
//! loop's owner taking its gate, cancelling its timer) and whose other side is rare (a
//! thread taking the gate from the owner, a cancel from another thread).
//!
//! The often side writes its flag, calls [`light`] (a compiler fence: no instruction),
//! then reads the other side's flag. The rare side writes its flag, calls [`heavy`],
//! then reads the often side's flag. [`heavy`] is Linux's `membarrier(2)`
//! (`MEMBARRIER_CMD_PRIVATE_EXPEDITED`): when it returns, every thread of the process
//! has run a full memory barrier (or been switched out, which is one) somewhere between
//! the call and the return, as if each had a `mfence` where it happened to be. So either
//! the often side's read follows that barrier and sees the rare side's write, or its
//! write precedes it and the rare side's read, after the return, sees that write: the
//! two reads cannot both miss, which is all a Dekker pair needs.
//!
//! [`available`] says whether the kernel offers it (it registers the process the first
//! time); where it does not (another OS, an old kernel, a seccomp filter), the callers
//! keep their symmetric protocol (a compare-exchange on the often side), and so does
//! Miri, which cannot run the system call (the fallback is what it checks). In the loom
//! build both sides are a SeqCst fence, the fence a membarrier stands for (loom cannot
//! run a barrier on another thread's behalf); the models fail without either.

use std::sync::atomic::Ordering::SeqCst;

/// The often side's fence: orders its write before its read against a concurrent
/// [`heavy`] (no instruction outside loom).
#[inline(always)]
pub(crate) fn light() {
    #[cfg(loom)]
    crate::sync::atomic::fence(SeqCst);
    #[cfg(not(loom))]
    std::sync::atomic::compiler_fence(SeqCst);
}

/// The rare side's fence: a full barrier on every thread of the process. Only after
/// [`available`] said yes. A few microseconds (an inter-processor interrupt to each CPU
/// running a thread of the process).
pub(crate) fn heavy() {
    #[cfg(loom)]
    crate::sync::atomic::fence(SeqCst);
    #[cfg(all(not(loom), not(miri), target_os = "linux"))]
    {
        std::sync::atomic::fence(SeqCst);
        // SAFETY: a system call with integer arguments only.
        let done = unsafe { libc::syscall(libc::SYS_membarrier, PRIVATE_EXPEDITED, 0, 0) };
        if done != 0 {
            // The process is registered (`available`), so this cannot fail; going on
            // without the barrier would break the callers' exclusion.
            eprintln!("weft: membarrier failed after its registration: {}", std::io::Error::last_os_error());
            std::process::abort();
        }
    }
    #[cfg(all(not(loom), any(miri, not(target_os = "linux"))))]
    unreachable!("heavy() without available()");
}

#[cfg(all(not(loom), not(miri), target_os = "linux"))]
const PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
#[cfg(all(not(loom), not(miri), target_os = "linux"))]
const REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

/// Whether [`heavy`] works here: registers the process for it on the first call.
pub(crate) fn available() -> bool {
    #[cfg(loom)]
    return true;
    #[cfg(all(not(loom), not(miri), target_os = "linux"))]
    {
        use std::sync::atomic::{AtomicU8, Ordering::Acquire};
        // 0: not asked yet; 1: yes; 2: no.
        static STATE: AtomicU8 = AtomicU8::new(0);
        match STATE.load(Acquire) {
            1 => true,
            2 => false,
            _ => {
                // SAFETY: a system call with integer arguments only.
                let ok = unsafe { libc::syscall(libc::SYS_membarrier, REGISTER_PRIVATE_EXPEDITED, 0, 0) } == 0;
                // SeqCst: a thread that reads 1 and then calls `heavy` finds the
                // registration done (the system call returned before the store).
                STATE.store(if ok { 1 } else { 2 }, SeqCst);
                ok
            }
        }
    }
    #[cfg(all(not(loom), any(miri, not(target_os = "linux"))))]
    false
}

#[cfg(all(test, not(loom)))]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", not(miri)))]
    fn membarrier_is_there_and_works() {
        // Kernels since 4.14 have it; CI's and the supported ones do.
        assert!(super::available());
        super::heavy();
        super::light();
    }
}
