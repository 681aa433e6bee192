//! The loop's owner: the one thread at a time that may touch [`Own`], the state that
//! registrations made without the core lock live in (today: tasks of the task table,
//! their `done` handlers and the loop's own feeders of its pools; the owner's timers).
//!
//! # Who owns the loop
//!
//! * While a thread runs the loop (inside `run`, so in its callbacks too), that thread
//!   owns it, for the whole of `run`.
//! * While no thread runs it, the thread that calls into it owns it for that call (and
//!   keeps it for its next calls, until another thread runs or frees the loop): the
//!   host's thread spawning before `weft_loop_run`, or between two `WEFT_RUN_NOWAIT`
//!   passes (the bindings' shape), or any other thread that finds it free.
//! * A call that finds the loop owned by another thread (another thread runs it, or is
//!   in such a call itself) takes the locked path instead: the registration goes to the
//!   slab under the core lock, which is always correct, only slower.
//!
//! # The gate
//!
//! A [`Gate`] (crate::gate) says who owns the loop outside `run`'s own thread. A call
//! outside `run` takes it if it is free (one compare-exchange) and keeps it as it
//! returns, so that the same thread's next call enters with plain loads and stores
//! (the host's thread spawning before `weft_loop_run` or between NOWAIT passes pays no
//! locked instruction per call); a call on another thread then finds the gate kept and
//! takes the locked path. `run` and `close` take the runner first (which keeps them
//! apart from each other), then the gate, waiting for it (taking it away from a thread
//! that keeps it: one barrier, crate::barrier), and give it back when they return. A call holding the gate runs no user callback and does
//! not wait for another thread, so `run` waits a few hundred nanoseconds at most; the
//! one exception is a free function run while the gate is held (a refused job's end)
//! that itself calls `run` on this loop: the gate is this thread's then, and `run`
//! refuses (`Busy`) instead of waiting for itself.
//!
//! `run`'s thread never touches the gate per call: it is the owner because it holds
//! it, which `on_loop_thread` tells (the runner's thread number).

use super::{thread_number, CachedPool, Handler, Loop};
use crate::error::{Code, Error, Result};
use crate::gate::{Gate, Held};
use crate::pool;
use crate::task;
use std::sync::atomic::Ordering::SeqCst;

/// What only the loop's owner touches. A spawn made by the owner registers its task
/// here, with no lock: its cell in the task table, its `done` handler in `handlers` at
/// the cell's index, its job in the loop's own feeder of a CPU pool.
pub(super) struct Own<H: Handler> {
    pub(super) lender: task::Lender<H, H::Work>,
    pub(super) handlers: Vec<Option<H>>,
    /// Pools spawned on by the owner, by key (as `Core::pools`), with the (staging)
    /// feeder of a CPU pool; checked against the pool epoch.
    pub(super) pools: Vec<CachedPool<Box<pool::Feeder>>>,
    /// The owner's timers: their wheel and free records (register.rs).
    pub(super) timers: crate::timer::OwnTimers,
}

/// The owner's state and the gate (see the module comment).
pub(super) struct Owner<H: Handler> {
    own: std::cell::UnsafeCell<Own<H>>,
    gate: Gate,
}

// SAFETY: `Own` is touched only by the loop's owner, one thread at a time (the gate and
// `run` see to it), and everything in it may move between threads.
unsafe impl<H: Handler> Sync for Owner<H> {}
unsafe impl<H: Handler> Send for Owner<H> {}

impl<H: Handler> Default for Owner<H> {
    fn default() -> Self {
        Owner {
            own: std::cell::UnsafeCell::new(Own {
                lender: Default::default(),
                handlers: Vec::new(),
                pools: Vec::new(),
                timers: crate::timer::OwnTimers::new(crate::sys::now_ns()),
            }),
            gate: Gate::default(),
        }
    }
}

/// How a call came to own the loop.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Owned {
    /// On the thread running the loop: inside a callback (staged submissions are
    /// published when it returns).
    Running,
    /// Through the gate, for this call alone: submissions are published at once.
    Gate,
}

impl<H: Handler> Loop<H> {
    /// The owner's state.
    ///
    /// # Safety
    /// On the thread running the loop ([`on_loop_thread`](Self::on_loop_thread)), or
    /// holding the gate (inside [`as_owner`](Self::as_owner), or in `close`), with no
    /// other borrow of it alive: none is kept across a callback.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn own(&self) -> &mut Own<H> {
        // SAFETY: the caller's promise.
        unsafe { &mut *self.owner.own.get() }
    }

    /// Runs `f` as the loop's owner if this thread may own it now (see the module
    /// comment); None, without running `f`, if another thread owns it.
    #[inline(always)]
    pub(super) fn as_owner<R>(&self, f: impl FnOnce(&mut Own<H>, Owned) -> R) -> Option<R> {
        // One look at the thread's number (a function call in a shared library).
        let me = thread_number();
        // `f` is called in one place, so that it is inlined here (the timer entry points'
        // fast paths are this function and `f`).
        let _held;
        let how = if self.runner_thread.load(SeqCst) == me {
            Owned::Running
        } else {
            _held = self.owner.gate.enter(me)?;
            Owned::Gate
        };
        // SAFETY: on the thread running the loop, or holding the gate (`run`, on any
        // thread, waits for it); `f` keeps no borrow past its end.
        Some(f(unsafe { self.own() }, how))
    }

    /// Takes the gate for `run` or `close` (the runner is held) until the guard is
    /// dropped: waits while a call on another thread holds it. Busy if this thread holds
    /// it (a free function run by such a call that calls `run`).
    pub(super) fn hold_gate(&self) -> Result<Held<'_>> {
        self.owner.gate.take(thread_number()).map_err(|()| {
            Error::new(
                Code::Busy,
                "the loop is in a call on this thread (a free function run by a spawn cannot run it)",
            )
        })
    }
}
