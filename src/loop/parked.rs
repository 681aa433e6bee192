//! The handler of the last fd watch a pass called, parked until the next lock of the
//! loop's core: a pass that calls one watch takes its handler out under the lock it
//! takes anyway, and rather than taking the lock again after the call only to put it
//! back, leaves it here; whoever takes the lock next (the next pass, or any thread)
//! puts it back first ([`Loop::lock`](super::Loop)). A pass thus takes the core lock
//! once, not twice.
//!
//! # Protocol
//!
//! * `park` (the loop thread, after the call, without the lock; nothing is parked,
//!   since every pass takes the lock, and so empties the slot, before it calls): writes
//!   the slot, then raises `full` (SeqCst RMW), then reads `cancelled`.
//! * `take` (under the lock): when `full` is up, takes the slot and lowers it. The slot
//!   is written only while `full` is down and read only while it is up, so the two
//!   sides never touch it at once.
//! * A cancel that finds the handler out of its entry (under the lock, after the lock's
//!   `take`: the call is running, or has just ended and not yet parked) marks the entry
//!   cancelled and calls `cancelled_in_call`: raises `cancelled` (SeqCst RMW), then
//!   reads `full`, and takes the slot if it is up.
//!
//! The two RMW-then-load pairs are a Dekker pair: either the cancel sees `full` (it
//! takes the handler back and ends the registration itself, as a cancel of an idle
//! watch does), or the loop thread sees `cancelled` (it takes the lock, which puts the
//! handler back, and ends the registration if it was cancelled), or both (whoever
//! comes second finds the registration gone). A handler is never left parked in a
//! cancelled registration that nobody ends. `cancelled` is lowered under the lock (by
//! the loop thread, settling), so no raise is lost; a stale one costs one lock.
//! Modelled by `loom_parked_*` (src/loom_models/parked.rs).

use super::{Core, Handler, Loop};
use crate::slots::Id;
use crate::sync::atomic::{AtomicBool, Ordering::Acquire, Ordering::Release, Ordering::SeqCst};
use crate::sync::{after_rmw, UnsafeCell, LOAD_AFTER_RMW};
use std::sync::MutexGuard;

impl<H: Handler> Loop<H> {
    /// Locks the core, and puts back a parked handler: under the lock, every
    /// registration has its handler unless a call of it is running.
    #[inline(always)]
    pub(super) fn lock(&self) -> MutexGuard<'_, Core<H>> {
        let mut core = self.core.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((id, index, handler)) = self.parked.take() {
            Self::unpark(&mut core, id, index, handler);
        }
        core
    }

    /// Puts a parked handler back into its registration, `id` at slab `index` (which
    /// stays in the slab while its handler is out: only a lock's holder removes it,
    /// after this).
    #[inline(always)]
    pub(super) fn unpark(core: &mut Core<H>, id: Id, index: u32, handler: H) {
        debug_assert_eq!(core.entries.index(id), Some(index), "a parked handler's registration is in the slab");
        core.entries.at_mut(index).handler = Some(handler);
    }
}

pub(crate) struct Parked<T> {
    full: AtomicBool,
    /// A registration whose handler was out (in a call) was cancelled.
    cancelled: AtomicBool,
    slot: UnsafeCell<Option<T>>,
}

// SAFETY: the slot is handed between threads by the protocol above (one side at a time).
unsafe impl<T: Send> Sync for Parked<T> {}

impl<T> Default for Parked<T> {
    fn default() -> Parked<T> {
        Parked { full: AtomicBool::new(false), cancelled: AtomicBool::new(false), slot: UnsafeCell::new(None) }
    }
}

impl<T> Parked<T> {
    /// Parks `value` (loop thread, without the lock, the slot empty). True when a
    /// cancel during the call may have missed it: the caller then takes the lock (which
    /// takes the value back) and settles.
    #[inline]
    pub(crate) fn park(&self, value: T) -> bool {
        // SAFETY: `full` is down: no other thread reads the slot (see the protocol).
        self.slot.with_mut(|slot| unsafe { *slot = Some(value) });
        self.full.swap(true, SeqCst);
        after_rmw();
        self.cancelled.load(LOAD_AFTER_RMW)
    }

    /// Takes what is parked (under the lock).
    #[inline]
    pub(crate) fn take(&self) -> Option<T> {
        if !self.full.load(Acquire) {
            return None;
        }
        // SAFETY: `full` is up: the loop thread wrote the slot before raising it, and
        // writes it again only after a lock that follows this one.
        let value = self.slot.with_mut(|slot| unsafe { (*slot).take() });
        self.full.store(false, Release);
        value
    }

    /// A cancel found a handler out of its entry (under the lock): the call may have
    /// ended and parked it meanwhile. Returns what is parked now, if anything.
    pub(crate) fn cancelled_in_call(&self) -> Option<T> {
        self.cancelled.swap(true, SeqCst);
        after_rmw();
        if !self.full.load(LOAD_AFTER_RMW) {
            return None;
        }
        self.take()
    }

    /// The loop thread settles a `park` that returned true (under the lock).
    pub(crate) fn settled(&self) {
        self.cancelled.store(false, Release);
    }
}
