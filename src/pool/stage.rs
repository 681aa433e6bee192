//! A stage: jobs a loop submits to a CPU pool outside the staging of its callbacks
//! (its owner before `run`, between `WEFT_RUN_NOWAIT` passes, from another thread while
//! nobody runs the loop; any thread under the loop's lock), held back where the pool's
//! workers take them as a group when they run out of other work. "The owner" below is
//! the stage's one submitter at a time: the loop's owner for the loop's own feeder,
//! the holder of the loop's lock for its shared one.
//!
//! # Why
//!
//! A submission that makes its job visible at once pays the sleep protocol per job (an
//! `events` bump, the counters read) and, worse, lets the workers take each job as it
//! comes: with tiny jobs they drain the queue faster than one thread fills it, park, and
//! are woken again (a futex call on each side) every few jobs. Inside a loop callback,
//! staging solves this (feeder.rs), because the callback's end publishes what is left.
//! Outside callbacks nothing comes after the call: a job held back there must still
//! never wait for a later call of the user's. Here the workers themselves take what is
//! staged, and the owner makes the stage a submission only when it goes from empty to
//! non-empty.
//!
//! # The protocol
//!
//! `word` holds two bits: `HELD` (one thread has the stage: the owner pushing, or a
//! worker taking) and `WANT` (a worker came to take while the stage was held). `staged`
//! is touched only by the holder; `count` is a hint for lookers (the holder stores a
//! lower bound of the length, Relaxed, which is 0 only while the stage is empty).
//! Taking the stage is a compare-exchange from 0 to `HELD` (Acquire); giving it back
//! is a Release store or compare-exchange, so what one holder left in `staged` the
//! next one sees.
//!
//! * **The owner** ([`Stage::push`]) takes the stage, appends its job, and gives it back
//!   with a compare-exchange from `HELD` to 0. If that fails, a worker set `WANT`: the
//!   owner clears it, hands everything staged to its `publish` (the feeder's deque,
//!   where any worker finds it) and tries again; the caller then makes that one
//!   submission (an `events` bump and `wake_if_needed`). If the stage was empty before
//!   the push, the caller makes the push a submission the same way (the job is
//!   findable: in the stage, which a worker's last look before sleeping takes). If a
//!   worker holds the stage, the owner does not wait: it submits the job directly.
//!   The owner never blocks while it holds the stage.
//! * **A worker** ([`Stage::take`]) looks at `count`; if jobs are staged (at least
//!   `at_least` of them), it takes the stage, moves every job into its own deque, stores
//!   0 in `count` and gives the stage back with a plain store of 0 (clearing a `WANT` a
//!   second worker set meanwhile: nothing could be staged while it held it, and it took
//!   everything). If the owner holds the stage, the worker sets `WANT` (a
//!   compare-exchange from `HELD`: if the stage was given back meanwhile, it tries
//!   again) and looks no further: the owner publishes at its release.
//!
//! Why no job waits for a later call. Every non-empty period of the stage begins with a
//! push that found it empty, and that push is a submission of the sleep protocol
//! (SLEEP.md): after it some worker is awake and will look for work before it sleeps, or
//! sees `events` changed and looks again. A worker's last look before it sleeps (after
//! it read `events`: `find_last`) takes the stage whatever its length, or sets `WANT`,
//! and then the owner's release publishes what is staged, as a new submission, which
//! that worker's sleep check sees (its `seen` was read before). A job pushed after that
//! look either found the stage empty (a new submission) or non-empty because of a push
//! after the look, which was itself a submission: by induction, some submission after
//! every worker's last look covers each staged job. The loom model
//! (`src/loom_models/pool.rs`) runs this with the sleep protocol's own loop.
//!
//! Workers take smaller groups than they could only in their last look; while they
//! spin they take the stage once it holds at least [`TAKE_AT`] jobs.
//!
//! A stage's pushes are not a burst (SLEEP.md, "Bursts"): outside callbacks nothing
//! marks a burst's end, and a worker that took a group must wake another as any worker
//! that found a job does (the last-searcher rule), so that blocking jobs of one group
//! run side by side.
//!
//! The owner's `push` and a worker's `take` are for one owner at a time; `drain` (a
//! feeder dropped, a pool shutting down) is for anyone and waits (yields) while the
//! stage is held, which is never for long: neither holder blocks.

use crate::sync::atomic::{AtomicU8, AtomicUsize, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use crate::sync::UnsafeCell;

const HELD: u8 = 1;
const WANT: u8 = 2;

/// How many staged jobs a spinning worker waits for before it takes them (its last
/// look before sleeping takes any number).
pub(crate) const TAKE_AT: usize = 32;

/// Keeps a field on a cache line (pair) of its own.
#[derive(Default)]
#[repr(align(128))]
struct Line<T>(T);

/// See the module comment.
pub(crate) struct Stage<J> {
    word: AtomicU8,
    staged: UnsafeCell<Vec<J>>,
    /// On a cache line of its own: the workers read it in every look.
    count: Line<AtomicUsize>,
}

// SAFETY: `staged` is touched only by the thread holding the stage (see the module
// comment); the jobs move between threads.
unsafe impl<J: Send> Sync for Stage<J> {}
unsafe impl<J: Send> Send for Stage<J> {}

/// What [`Stage::push`] did with the job.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed<J> {
    /// Staged into an empty stage: the caller makes it a submission.
    First,
    /// Staged behind others: a submission covers it already.
    Behind,
    /// Staged, and then everything staged was handed to `publish` (a worker wanted it):
    /// the caller makes that a submission.
    Published,
    /// A worker holds the stage: the job is the caller's to submit directly.
    Busy(J),
}

/// What [`Stage::take`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Took {
    /// Nothing staged (or fewer than asked for).
    Nothing,
    /// This many jobs, handed to `into`.
    Jobs(usize),
    /// The owner holds the stage: it publishes at its release.
    Wanted,
}

impl<J> Default for Stage<J> {
    fn default() -> Self {
        Stage { word: AtomicU8::new(0), staged: UnsafeCell::new(Vec::new()), count: Default::default() }
    }
}

impl<J> Stage<J> {
    /// The owner's push (see the module comment): `publish` gets every staged job, in
    /// order, if a worker wanted them meanwhile.
    #[inline]
    pub(crate) fn push(&self, job: J, mut publish: impl FnMut(J)) -> Pushed<J> {
        if self.word.compare_exchange(0, HELD, Acquire, Relaxed).is_err() {
            return Pushed::Busy(job);
        }
        // SAFETY: held.
        let first = self.staged.with_mut(|staged| unsafe {
            let staged = &mut *staged;
            staged.push(job);
            let len = staged.len();
            if len == 1 || len % TAKE_AT == 0 {
                // A lower bound is enough for a look, and it is 0 only while the stage
                // is empty. Stored seldom: the workers read its line in every look, so
                // each store would wait for the line to come back.
                self.count.0.store(len, Relaxed);
            }
            len == 1
        });
        let mut published = false;
        while self.word.compare_exchange(HELD, 0, Release, Relaxed).is_err() {
            // WANT: a worker found the stage held. Cleared before the jobs go, so that a
            // later want is seen at the next try.
            self.word.fetch_and(!WANT, Acquire);
            // SAFETY: held.
            self.staged.with_mut(|staged| unsafe { (*staged).drain(..).for_each(&mut publish) });
            self.count.0.store(0, Relaxed);
            published = true;
        }
        match (published, first) {
            (true, _) => Pushed::Published,
            (false, true) => Pushed::First,
            (false, false) => Pushed::Behind,
        }
    }

    /// A worker's look (see the module comment): takes every staged job into `into` if
    /// at least `at_least` (>= 1) are staged, the last staged first (for a LIFO deque,
    /// whose pops then give them in the order they were staged).
    pub(crate) fn take(&self, at_least: usize, into: impl FnMut(J)) -> Took {
        if self.count.0.load(Relaxed) < at_least {
            return Took::Nothing;
        }
        loop {
            match self.word.compare_exchange(0, HELD, Acquire, Relaxed) {
                Ok(_) => break,
                Err(word) if word & WANT != 0 => return Took::Wanted,
                Err(_) => {
                    if self.word.compare_exchange(HELD, HELD | WANT, Relaxed, Relaxed).is_ok() {
                        return Took::Wanted;
                    }
                }
            }
        }
        let n = self.empty_into(true, into);
        self.word.store(0, Release);
        if n == 0 {
            Took::Nothing
        } else {
            Took::Jobs(n)
        }
    }

    /// Takes every staged job into `into`, waiting while the stage is held: a feeder's
    /// end, a pool's shutdown. Returns how many.
    pub(crate) fn drain(&self, into: impl FnMut(J)) -> usize {
        while self.word.compare_exchange(0, HELD, Acquire, Relaxed).is_err() {
            crate::sync::yield_now();
        }
        let n = self.empty_into(false, into);
        self.word.store(0, Release);
        n
    }

    /// Whether jobs are staged (a hint).
    pub(crate) fn is_empty(&self) -> bool {
        self.count.0.load(Relaxed) == 0
    }

    /// How many jobs are staged (a hint, for statistics).
    pub(crate) fn len(&self) -> usize {
        self.count.0.load(Relaxed)
    }

    /// Held: moves the staged jobs out, in order or `reversed`.
    fn empty_into(&self, reversed: bool, into: impl FnMut(J)) -> usize {
        // SAFETY: held.
        let n = self.staged.with_mut(|staged| unsafe {
            let n = (*staged).len();
            if reversed {
                (*staged).drain(..).rev().for_each(into);
            } else {
                (*staged).drain(..).for_each(into);
            }
            n
        });
        self.count.0.store(0, Relaxed);
        n
    }
}
