//! The primitives weft's lock-free protocols are written with: std's in every build,
//! loom's in the model-checking build (`--cfg loom`, `make loom`), where the models in
//! `src/loom/` run the real protocol code under every interleaving loom can reach.
//!
//! The protocols that use this module: the inbox's record queue, wake-up pair and
//! completion stack (`crate::inbox`), a task cell's `stage` and cancel flag (`crate::task::cell`), the
//! task table's id publication (`crate::task::table`), the CPU pool's sleep protocol
//! (`crate::pool::sleep`), the parked handler of an fd watch (`crate::loop::Parked`), the signal bells (`crate::signal`) and the watchdog's view of
//! the loop thread (`crate::watchdog::Current`). The rest of weft uses
//! std directly: its atomics are counters, flags read by one thread, or statics, which
//! must be built in a `const` (loom's are not).
//!
//! Loom treats SeqCst loads and stores as AcqRel (loom issue 180), so it would report a
//! store-then-load pair (a Dekker pair) that is correct with SeqCst as broken. Where a
//! protocol relies on that ordering, the code writes it as store; [`atomic::fence`]
//! (SeqCst); load, which is what SeqCst gives on the targets weft runs on, and says so.
//!
//! [`UnsafeCell`] has loom's interface (`with`, `with_mut`) in both builds, so loom can
//! check that every access to the data a protocol hands over is ordered after the
//! hand-over.

#[cfg(loom)]
pub use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub use std::sync::{Condvar, Mutex, MutexGuard};

/// Atomics and fences.
pub mod atomic {
    #[cfg(loom)]
    pub use loom::sync::atomic::{
        fence, AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize,
    };
    pub use std::sync::atomic::Ordering;
    #[cfg(not(loom))]
    pub use std::sync::atomic::{fence, AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize};
}

/// The middle of a Dekker pair whose store is a SeqCst read-modify-write, on a hot path
/// (a submission to a CPU pool, a task's give-back): `rmw(SeqCst); after_rmw(); load(
/// LOAD_AFTER_RMW)`. On every target weft runs on the SeqCst RMW and the SeqCst load
/// that follows are already ordered (C++'s SeqCst total order; a locked instruction is
/// a full barrier on x86), so this is nothing and the load is SeqCst, as before the
/// models: no `mfence` per task. Loom models SeqCst accesses as AcqRel, so in its build
/// this is the fence SeqCst stands for and the load is Acquire, and a model fails
/// without it. Rare paths write the fence itself.
#[inline(always)]
pub fn after_rmw() {
    #[cfg(loom)]
    atomic::fence(atomic::Ordering::SeqCst);
}

/// The ordering of the load after [`after_rmw`].
pub const LOAD_AFTER_RMW: atomic::Ordering =
    if cfg!(loom) { atomic::Ordering::Acquire } else { atomic::Ordering::SeqCst };

/// Lets another thread run: a spin-wait's pause (loom schedules another thread there).
#[inline]
pub fn yield_now() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::thread::yield_now();
}

#[cfg(loom)]
pub use loom::cell::UnsafeCell;

/// std's `UnsafeCell` with loom's interface: the data is reached in a closure, which
/// loom checks against concurrent access.
#[cfg(not(loom))]
#[derive(Default)]
#[repr(transparent)]
pub struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    #[inline(always)]
    pub const fn new(value: T) -> UnsafeCell<T> {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    /// Reads through the pointer the closure gets.
    #[inline(always)]
    pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Writes through the pointer the closure gets.
    #[inline(always)]
    pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// A model's check that an object is not used after its owner let it go: [`Life::end`]
/// marks the moment (the last reference dropped, a descriptor closed), [`Life::touch`] a
/// use. Under loom, a use that is not ordered before the end is a data race loom reports
/// (and a use after it fails at once); in other builds both are nothing.
#[derive(Default)]
pub struct Life {
    #[cfg(loom)]
    ended: UnsafeCell<bool>,
}

impl Life {
    /// A use of the object.
    #[inline(always)]
    pub fn touch(&self) {
        #[cfg(loom)]
        // SAFETY: loom checks the access.
        self.ended.with(|ended| assert!(!unsafe { *ended }, "used after its end"));
    }

    /// The object's end: nothing may use it after this.
    #[inline(always)]
    pub fn end(&self) {
        #[cfg(loom)]
        // SAFETY: loom checks the access.
        self.ended.with_mut(|ended| unsafe { *ended = true });
    }
}
