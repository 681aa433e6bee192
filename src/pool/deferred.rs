//! Deferred wake-ups: CPU-pool submissions made inside a loop callback wake a worker
//! once, at the callback's end (SLEEP.md, beside this file, "Deferred wake-ups").

use super::cpu::Cpu;
use super::feeder::Feeder;
use super::thread::{ThreadState, THREAD};
use std::sync::Arc;

/// Runs `f` (a loop callback) with CPU-pool wake-ups deferred to its end: a callback
/// that spawns many tasks wakes a sleeping worker once, not once per task (a wake-up
/// costs a system call on each side). Correct because the job itself is queued at
/// once, where any worker that looks finds it; only its `events` bump and the wake-up
/// wait for the callback's end, and a worker that went to sleep meanwhile is found by
/// them then (see `defer_wake`).
pub fn deferring_wakeups<R>(f: impl FnOnce() -> R) -> R {
    struct Depth;
    impl Drop for Depth {
        fn drop(&mut self) {
            // One thread-local access (a function call in a shared library) per
            // callback's end: the depth, and at depth 0 what is to flush.
            let flush = THREAD.with(|t| {
                t.deferring.set(t.deferring.get() - 1);
                (t.deferring.get() == 0)
                    .then(|| (t.staged.replace(std::ptr::null()), t.deferred.replace(std::ptr::null())))
            });
            if let Some((staged, deferred)) = flush {
                if !staged.is_null() || !deferred.is_null() {
                    flush_taken(staged, deferred);
                }
            }
        }
    }
    THREAD.with(|t| t.deferring.set(t.deferring.get() + 1));
    let _depth = Depth;
    f()
}

/// Runs `f` with a [`Deferring`] scope, for a loop pass that runs a slice of callbacks
/// (posts, events) one after another: each callback run through [`Deferring::run`]
/// defers and flushes exactly as [`deferring_wakeups`] would, with one thread-local
/// lookup for the whole slice rather than several per callback (in a cdylib each is a
/// call to `__tls_get_addr`).
pub fn deferring_scope<R>(f: impl FnOnce(&Deferring<'_>) -> R) -> R {
    THREAD.with(|t| f(&Deferring(t)))
}

/// This thread's state, for [`deferring_scope`]'s callbacks.
pub struct Deferring<'a>(&'a ThreadState);

/// One deferring level of this thread, raised by whoever made it: its drop lowers the
/// depth and, at depth 0, sends what was deferred (also when a callback unwinds).
struct Depth<'a>(&'a ThreadState);

impl Drop for Depth<'_> {
    fn drop(&mut self) {
        let t = self.0;
        t.deferring.set(t.deferring.get() - 1);
        if t.deferring.get() == 0 {
            let (staged, deferred) = (t.staged.replace(std::ptr::null()), t.deferred.replace(std::ptr::null()));
            if !staged.is_null() || !deferred.is_null() {
                flush_taken(staged, deferred);
            }
        }
    }
}

impl Deferring<'_> {
    /// [`deferring_wakeups`]`(f)`, on the scope's thread.
    #[inline]
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        self.0.deferring.set(self.0.deferring.get() + 1);
        let _depth = Depth(self.0);
        f()
    }

    /// Runs `f`, which runs a slice of callbacks, inside one deferring level for the
    /// whole slice instead of one per callback: `f` calls [`Slice::after`] after each
    /// callback, which sends what that callback deferred exactly where
    /// [`Deferring::run`] would have (at the callback's end, when the slice is not
    /// itself inside a callback). The same wake-ups, in the same places; per callback,
    /// two loads instead of the depth's two updates and the two stores that empty
    /// the thread's state. Between two callbacks the depth stays raised: what runs
    /// there (the dispatch of an event or a completion, whose handlers are called
    /// directly) defers too, and [`Slice::after`] sends it.
    #[inline]
    pub fn slice<R>(&self, f: impl FnOnce(&Slice<'_>) -> R) -> R {
        let t = self.0;
        let outermost = t.deferring.get() == 0;
        t.deferring.set(t.deferring.get() + 1);
        let _depth = Depth(t);
        f(&Slice { t, outermost })
    }

    /// [`flush_deferred_wakeups`], on the scope's thread.
    #[inline]
    pub fn flush(&self) {
        let t = self.0;
        let (staged, deferred) = (t.staged.replace(std::ptr::null()), t.deferred.replace(std::ptr::null()));
        if !staged.is_null() || !deferred.is_null() {
            flush_taken(staged, deferred);
        }
    }
}

/// Sends the wake-up this thread deferred, if any: called before the loop thread
/// blocks, so that a loop run from inside another loop's callback (or any wait inside a
/// callback) cannot sleep on work whose worker was never woken.
pub fn flush_deferred_wakeups() {
    let (staged, deferred) =
        THREAD.with(|t| (t.staged.replace(std::ptr::null()), t.deferred.replace(std::ptr::null())));
    flush_taken(staged, deferred);
}

/// Publishes the staged jobs of `staged` and sends the wake-up `cpu` stands for (either
/// null: none), as taken from this thread's state by a flush.
fn flush_taken(staged: *const Feeder, cpu: *const Cpu) {
    if crate::fork::is_child() {
        // A host forked inside a callback: the staged jobs and the wake-up are the
        // parent's; touch nothing (no pool thread may start here).
        return;
    }
    if !staged.is_null() {
        // SAFETY: a staging feeder clears its own entry when dropped, so a registered
        // one is alive (see `Feeder::submit`).
        unsafe { &*staged }.publish_now();
    }
    if !cpu.is_null() {
        // SAFETY: made by Arc::into_raw in `defer_wake`, taken back once.
        let cpu = unsafe { Arc::from_raw(cpu) };
        // The submissions it stands for did not bump `events`: one bump for them all.
        cpu.sleep.submitted();
        cpu.sleep.wake_if_needed();
    }
}

/// Records a wake-up of `cpu` for later if this thread is deferring them (one pool; a
/// second one in the same callback is woken at once). A deferred submission also
/// leaves its `events` bump to the flush: a worker that checks `events` before the
/// flush may sleep, and the flush's bump and wake-up then find it (the sleep protocol's
/// Dekker pair holds between the flush and the sleeper).
pub(super) fn defer_wake(t: &ThreadState, cpu: &Arc<Cpu>) -> bool {
    if t.deferring.get() == 0 {
        return false;
    }
    let current = t.deferred.get();
    if current.is_null() {
        t.deferred.set(Arc::into_raw(cpu.clone()));
        true
    } else {
        std::ptr::eq(current, Arc::as_ptr(cpu))
    }
}

/// A slice of callbacks run inside one deferring level (see [`Deferring::slice`]).
pub struct Slice<'a> {
    t: &'a ThreadState,
    /// The slice is not inside a callback: a callback's end is where its wake-ups go.
    outermost: bool,
}

impl Slice<'_> {
    /// A callback of the slice has returned: sends the wake-ups it deferred, as the end
    /// of [`Deferring::run`] would have.
    #[inline(always)]
    pub fn after(&self) {
        let t = self.t;
        if self.outermost && (!t.staged.get().is_null() || !t.deferred.get().is_null()) {
            flush_taken(t.staged.replace(std::ptr::null()), t.deferred.replace(std::ptr::null()));
        }
    }
}
