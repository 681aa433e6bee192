//! A gate: a word that one thread at a time holds, to own some state that has no lock
//! of its own (a loop's owner state: see `loop/owner.rs`).
//!
//! The word is 0 when free, else the number of the holding thread (any non-zero number
//! unique to a thread). Taking it is one compare-exchange from 0 (Acquire); giving it
//! back is a Release store of 0. The Acquire/Release pair orders everything one holder
//! wrote to the guarded state before anything the next holder reads: the guarded state
//! is handed over as under a mutex, at the cost of one atomic read-modify-write and one
//! plain store, and a taker that finds the gate held can go another way at once
//! (`try_take`) or wait for it (`take`), which refuses when the caller is the holder.

use crate::sync::atomic::{AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};

pub(crate) struct Gate(AtomicU64);

/// The gate, held until dropped.
pub(crate) struct Held<'a>(&'a AtomicU64);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.store(0, Release);
    }
}

impl Default for Gate {
    fn default() -> Self {
        Gate(AtomicU64::new(0))
    }
}

impl Gate {
    /// Takes the gate for thread `me` (not 0) if it is free. (The guard is made only
    /// on success: dropping one gives the gate back, whoever holds it.)
    #[inline]
    pub(crate) fn try_take(&self, me: u64) -> Option<Held<'_>> {
        self.0.compare_exchange(0, me, Acquire, Relaxed).is_ok().then(|| Held(&self.0))
    }

    /// Takes the gate for thread `me`, waiting (yielding) while another thread holds
    /// it; Err if `me` holds it already (waiting would never end).
    pub(crate) fn take(&self, me: u64) -> Result<Held<'_>, ()> {
        loop {
            match self.0.compare_exchange(0, me, Acquire, Relaxed) {
                Ok(_) => return Ok(Held(&self.0)),
                Err(holder) if holder == me => return Err(()),
                Err(_) => crate::sync::yield_now(),
            }
        }
    }
}
