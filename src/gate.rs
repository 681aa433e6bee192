//! A gate: a word that one thread at a time holds, to own some state that has no lock
//! of its own (a loop's owner state: see `loop/owner.rs`). A thread that took it for a
//! call keeps it between its calls ("sticky"), so that its next call enters with no
//! atomic read-modify-write, until another thread takes it away.
//!
//! # The word
//!
//! `word` is 0 when free; `held(me)` while thread `me` (any non-zero number unique to a
//! live thread) holds it for the length of one call or of a `run`; `sticky(me)` while
//! `me` keeps it between calls. `busy` is the number of the thread inside a call on a
//! sticky gate (0: none); only a sticky holder sets it to its own number.
//!
//! # Entering (`enter`: one call of the owner)
//!
//! * On a gate sticky for this thread: `busy = me`; [`barrier::light`] (no
//!   instruction); read `word` again. Still `sticky(me)`: the call owns the state, and
//!   its end stores `busy = 0` (Release). Otherwise a taker took the gate meanwhile: the
//!   call clears `busy` with a compare-exchange from `me` (a later holder may have set
//!   it already) and goes the other way (None). `busy == me` already: a call nested in
//!   this thread's own (a free function run by a spawn that spawns): None.
//! * On a free gate: a compare-exchange from 0 to `held(me)` (Acquire). At the call's
//!   end the word becomes `sticky(me)` (Release), or 0 where [`barrier::heavy`] is not
//!   available (Release: as a mutex's unlock).
//! * Held by another thread, or sticky for another: None. A call does not take the
//!   gate away from another thread: each take costs a barrier (microseconds), and two
//!   threads that call in turn would pay one per call.
//!
//! # Taking (`take`: `run` and `close`, which wait)
//!
//! Free: the compare-exchange from 0. Sticky for this thread and not busy: adopted (a
//! compare-exchange, which a taker may win). Sticky for another thread `o`: a
//! compare-exchange from `sticky(o)` to `held(me)` (Acquire), then [`barrier::heavy`],
//! then a wait while `busy == o` (Acquire), which is never long: a call on the gate
//! runs no user callback and waits for no other thread. Held by another thread: a wait
//! (yield) for it to become free or sticky.
//!
//! Why a taker and a sticky call never both own the state: it is a Dekker pair, with
//! the cheap side on the owner. The owner stores `busy`, fences (light), reads `word`;
//! the taker stores `word`, fences (heavy: a full barrier on every thread), reads
//! `busy`. One of the two reads sees the other's store: either the owner sees the word
//! taken and keeps off, or the taker sees `busy == o` and waits for the call's end.
//! What the owner wrote in its calls the taker sees: the calls on the sticky gate end
//! with a Release store to `busy`, which the taker's last read of `busy` reads (a call
//! whose `busy = o` that read missed is one that saw the word taken and touched
//! nothing), and the call that made the gate sticky ends with a Release store to
//! `word`, which the taker's compare-exchange reads.
//!
//! A thread's number may be reused after it exits (loop/thread.rs): a new thread that
//! finds the gate sticky under its number inherits it, which is sound, since the old
//! thread's writes happen before the new thread starts (its memory is handed on
//! through the thread library's locks), and the old thread cannot be inside a call.

use crate::sync::atomic::{AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};

/// The word of a gate held by thread `me` for one call or a run.
#[inline(always)]
fn held(me: u64) -> u64 {
    me << 1
}

/// The word of a gate thread `me` keeps between its calls.
#[inline(always)]
fn sticky(me: u64) -> u64 {
    (me << 1) | 1
}

pub(crate) struct Gate {
    word: AtomicU64,
    busy: AtomicU64,
    /// Whether calls keep the gate between them ([`crate::barrier::available`]).
    keeps: bool,
}

/// The gate, held until dropped (see the module comment for what the drop does).
pub(crate) struct Held<'a> {
    gate: &'a Gate,
    how: How,
}

#[derive(Clone, Copy)]
enum How {
    /// A call on the gate sticky for thread `me`: its end clears `busy`.
    Sticky,
    /// Taken from free by a call of thread `me`: its end makes it sticky (or free).
    Call(u64),
    /// Taken for a run or a close: its end frees it.
    Run,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        match self.how {
            How::Sticky => self.gate.busy.store(0, Release),
            How::Call(me) if self.gate.keeps => self.gate.word.store(sticky(me), Release),
            How::Call(_) | How::Run => self.gate.word.store(0, Release),
        }
    }
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new(crate::barrier::available())
    }
}

impl Gate {
    /// A gate; `keeps`: calls keep it between them (only where the barrier works).
    pub(crate) fn new(keeps: bool) -> Gate {
        Gate { word: AtomicU64::new(0), busy: AtomicU64::new(0), keeps }
    }

    /// Enters a call of thread `me` (not 0) if the gate is free or sticky for `me` (see
    /// the module comment); None if another thread holds or keeps it, or `me` is inside
    /// a call on it already. (The guard is made only on success: dropping one ends the
    /// call, whoever holds it.)
    #[inline]
    pub(crate) fn enter(&self, me: u64) -> Option<Held<'_>> {
        if self.word.load(Relaxed) == sticky(me) {
            if self.busy.load(Relaxed) == me {
                return None; // a call nested in this thread's own
            }
            self.busy.store(me, Relaxed);
            crate::barrier::light(); // the Dekker pair with take's barrier::heavy
            if self.word.load(Relaxed) == sticky(me) {
                return Some(Held { gate: self, how: How::Sticky });
            }
            // Taken away meanwhile: the taker waits for this; a later holder's number
            // stays.
            let _ = self.busy.compare_exchange(me, 0, Release, Relaxed);
            return None;
        }
        self.word
            .compare_exchange(0, held(me), Acquire, Relaxed)
            .is_ok()
            .then(|| Held { gate: self, how: How::Call(me) })
    }

    /// Takes the gate for thread `me` for a run or a close, waiting (yielding) while
    /// another thread holds it for a call or a run, and taking it away from a thread
    /// that keeps it; Err if `me` is inside a call on it (waiting would never end).
    pub(crate) fn take(&self, me: u64) -> Result<Held<'_>, ()> {
        let run = || Held { gate: self, how: How::Run };
        loop {
            let word = self.word.load(Relaxed);
            if word == 0 {
                if self.word.compare_exchange(0, held(me), Acquire, Relaxed).is_ok() {
                    return Ok(run());
                }
            } else if word == held(me) {
                return Err(());
            } else if word == sticky(me) {
                if self.busy.load(Relaxed) == me {
                    return Err(());
                }
                // Kept by this thread, between its calls: its own (unless a taker takes
                // it away first).
                if self.word.compare_exchange(word, held(me), Relaxed, Relaxed).is_ok() {
                    return Ok(run());
                }
            } else if word & 1 == 1 {
                if self.word.compare_exchange(word, held(me), Acquire, Relaxed).is_ok() {
                    crate::barrier::heavy(); // the Dekker pair with enter's barrier::light
                    let other = word >> 1;
                    while self.busy.load(Acquire) == other {
                        crate::sync::yield_now();
                    }
                    return Ok(run());
                }
            } else {
                crate::sync::yield_now();
            }
        }
    }
}
