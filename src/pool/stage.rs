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
//! `word` says who has the stage: nobody (0), `OWNER` (pushing) or `WORKER` (taking).
//! `staged` is touched only by the holder; `count` is a hint for lookers (the holder
//! stores a lower bound of the length, Relaxed, which is 0 only while the stage is
//! empty); `want` says a worker found the stage held by the owner. Taking the stage is
//! a compare-exchange from 0 (Acquire); giving it back is a Release store of 0, so what
//! one holder left in `staged` the next one sees. A push costs the owner one locked
//! instruction.
//!
//! * **The owner** ([`Stage::push`]) takes the stage; if `want` is set, it clears it and
//!   hands everything staged to its `publish` (the feeder's deque, where any worker
//!   finds it); it appends its job, gives the stage back, fences
//!   ([`crate::barrier::light`]: no instruction) and reads `want` again: set meanwhile,
//!   it takes the stage once more and publishes (unless a worker has taken it: that one
//!   takes a group, and makes a submission if it leaves jobs staged). The caller then makes a submission (an `events` bump and
//!   `wake_if_needed`) if it published, or if the stage was empty before the push (the
//!   job is findable: in the stage, which a worker's last look before sleeping takes).
//!   If a worker holds the stage, the owner does not wait: it submits the job directly.
//! * **A worker** ([`Stage::take`]) looks at `count`; if jobs are staged (at least
//!   `at_least` of them), it takes the stage, moves the oldest jobs (up to
//!   [`TAKE_MAX`]) into its own deque, stores what is left in `count` and gives the
//!   stage back. If the owner holds the stage, it sets
//!   `want`; a spinning look then looks no further (the owner publishes soon). The last
//!   look before sleeping (`at_least` 1) fences ([`crate::barrier::heavy`]) and reads
//!   `word` again: given back meanwhile, it tries again; still held, it looks no
//!   further. If another worker holds the stage, there is nothing to find: that one
//!   takes a group, and makes a submission if it left jobs staged.
//!
//! The last look's fence and the owner's are a Dekker pair: the worker stores `want`,
//! fences, reads `word`; the owner stores 0 in `word`, fences, reads `want`. Either the
//! worker sees the stage given back (and takes it), or the owner sees `want` after its
//! give-back (and publishes, a submission). The heavy side runs only in a last look
//! that finds the owner pushing.
//!
//! Why no job waits for a later call. Every non-empty period of the stage begins with a
//! push that found it empty, and that push is a submission of the sleep protocol
//! (SLEEP.md): after it some worker is awake and will look for work before it sleeps, or
//! sees `events` changed and looks again. A worker's last look before it sleeps (after
//! it read `events`: `find_last`) takes from the stage whatever its length, or finds it
//! held by a worker (which makes a submission if it leaves jobs), or by the owner, which then publishes what is staged
//! as a new submission (the pair above), which that worker's sleep check sees (its
//! `seen` was read before). A job pushed after that look either found the stage empty
//! (a new submission) or non-empty because of a push after the look, which was itself a
//! submission: by induction, some submission after every worker's last look covers
//! each staged job. The loom model (`src/loom_models/pool.rs`) runs this with the sleep
//! protocol's own loop.
//!
//! Workers take smaller groups than they could only in their last look; while they
//! spin they take the stage once it holds at least [`TAKE_AT`] jobs. A take moves at
//! most [`TAKE_MAX`] jobs, the oldest, and leaves the rest staged; the taker then makes
//! a submission (an `events` bump, after it gave the stage back and stored the new
//! `count`), which covers what it left: the taker itself may have lost its jobs to a
//! stealer before it ran one, and would otherwise sleep with jobs staged (the loom
//! model finds that). Any worker whose sleep check read `events` before the bump sees
//! it and looks again; one that read it after sees `count` non-zero. Bounded, a take
//! never grows a worker's deque past a few KiB: a burst staged while the workers were
//! off the CPU (100k jobs and more) would otherwise be moved whole into one deque,
//! whose buffer grows (fresh pages, each a page fault) and shrinks again per burst.
//!
//! A stage's pushes are not a burst (SLEEP.md, "Bursts"): outside callbacks nothing
//! marks a burst's end, and a worker that took a group must wake another as any worker
//! that found a job does (the last-searcher rule), so that blocking jobs of one group
//! run side by side.
//!
//! The owner's `push` and a worker's `take` are for one owner at a time; `drain` (a
//! feeder dropped, a pool shutting down) is for anyone and waits (yields) while the
//! stage is held, which is never for long: neither holder blocks.

use crate::sync::atomic::{
    fence, AtomicBool, AtomicU8, AtomicUsize, Ordering::Acquire, Ordering::Relaxed, Ordering::Release, Ordering::SeqCst,
};
use crate::sync::UnsafeCell;
use std::collections::VecDeque;

const OWNER: u8 = 1;
const WORKER: u8 = 2;

/// How many staged jobs a spinning worker waits for before it takes them (its last
/// look before sleeping takes any number).
pub(crate) const TAKE_AT: usize = 32;

/// The most jobs one take moves (see the module comment): crossbeam's smallest deque
/// buffer (64 slots), so that a take into a worker's empty deque never resizes it (a
/// resize allocates, and frees through the epoch collector: 512 a take cost six). In
/// the loom models, one: a take then leaves jobs staged.
#[cfg(not(loom))]
pub(crate) const TAKE_MAX: usize = 64;
#[cfg(loom)]
pub(crate) const TAKE_MAX: usize = 1;

/// Keeps a field on a cache line (pair) of its own.
#[derive(Default)]
#[repr(align(128))]
struct Line<T>(T);

/// See the module comment.
pub(crate) struct Stage<J> {
    word: AtomicU8,
    /// Whether the fences of `want` are the asymmetric pair ([`crate::barrier`]); if
    /// not, both sides fence (SeqCst).
    plain: bool,
    /// A worker found the stage held by the owner (a hint: see the module comment).
    want: AtomicBool,
    /// Oldest first: the owner pushes at the back, a take moves from the front.
    staged: UnsafeCell<VecDeque<J>>,
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
    /// Staged, after everything staged before was handed to `publish` (a worker wanted
    /// it): the caller makes that a submission.
    Published,
    /// A worker holds the stage: the job is the caller's to submit directly.
    Busy(J),
}

/// What [`Stage::take`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Took {
    /// Nothing staged (or fewer than asked for).
    Nothing,
    /// This many jobs, handed to `into`; true: jobs are left staged, which the caller
    /// makes a submission (see the module comment).
    Jobs(usize, bool),
    /// The owner holds the stage and will publish (a last look's wish: right after the
    /// push in progress; a spinning look's: at the next push).
    Wanted,
}

impl<J> Default for Stage<J> {
    fn default() -> Self {
        Stage {
            word: AtomicU8::new(0),
            plain: crate::barrier::available(),
            want: AtomicBool::new(false),
            staged: UnsafeCell::new(VecDeque::new()),
            count: Default::default(),
        }
    }
}

impl<J> Stage<J> {
    /// The owner's push (see the module comment): `publish` gets every staged job, in
    /// order, if a worker wanted them.
    #[inline]
    pub(crate) fn push(&self, job: J, mut publish: impl FnMut(J)) -> Pushed<J> {
        if self.word.compare_exchange(0, OWNER, Acquire, Relaxed).is_err() {
            return Pushed::Busy(job);
        }
        let mut published = self.publish_wanted(&mut publish);
        // SAFETY: held.
        let first = self.staged.with_mut(|staged| unsafe {
            let staged = &mut *staged;
            staged.push_back(job);
            let len = staged.len();
            if len == 1 || len % TAKE_AT == 0 {
                // A lower bound is enough for a look, and it is 0 only while the stage
                // is empty. Stored seldom: the workers read its line in every look, so
                // each store would wait for the line to come back.
                self.count.0.store(len, Relaxed);
            }
            len == 1
        });
        self.word.store(0, Release);
        // The Dekker pair with a last look's `want`, fence, look at `word`.
        if self.plain {
            crate::barrier::light();
        } else {
            fence(SeqCst);
        }
        if self.want.load(Relaxed) && self.word.compare_exchange(0, OWNER, Acquire, Relaxed).is_ok() {
            // A worker found the stage held meanwhile (or a taker has it now, and makes
            // a submission if it leaves jobs).
            published |= self.publish_wanted(&mut publish);
            self.word.store(0, Release);
        }
        match (published, first) {
            (true, _) => Pushed::Published,
            (false, true) => Pushed::First,
            (false, false) => Pushed::Behind,
        }
    }

    /// Held by the owner: if a worker wanted the jobs, hands them all to `publish`.
    #[inline(always)]
    fn publish_wanted(&self, publish: &mut impl FnMut(J)) -> bool {
        self.want.load(Relaxed) && self.publish_all(publish)
    }

    /// `publish_wanted`'s work, out of line: seldom needed. Returns true.
    #[cold]
    #[inline(never)]
    fn publish_all(&self, publish: &mut impl FnMut(J)) -> bool {
        // Cleared before the jobs go: a later want is seen at the next check.
        self.want.store(false, Relaxed);
        // SAFETY: held.
        self.staged.with_mut(|staged| unsafe { (*staged).drain(..).for_each(publish) });
        self.count.0.store(0, Relaxed);
        true
    }

    /// A worker's look (see the module comment): takes the oldest staged jobs (up to
    /// [`TAKE_MAX`]) into `into` if at least `at_least` (>= 1) are staged, the last of
    /// them first (for a LIFO deque, whose pops then give them in the order they were
    /// staged). `at_least` 1 is the last look before sleeping.
    pub(crate) fn take(&self, at_least: usize, into: impl FnMut(J)) -> Took {
        if self.count.0.load(Relaxed) < at_least {
            return Took::Nothing;
        }
        let mut fenced = false;
        loop {
            match self.word.compare_exchange(0, WORKER, Acquire, Relaxed) {
                Ok(_) => break,
                Err(OWNER) => {
                    self.want.store(true, Relaxed);
                    if at_least > 1 || fenced {
                        return Took::Wanted;
                    }
                    // The last look: the owner's push in progress checks `want` after
                    // it gives the stage back, or has given it back (then take it).
                    if self.plain {
                        crate::barrier::heavy();
                    } else {
                        fence(SeqCst);
                    }
                    fenced = true;
                    if self.word.load(Relaxed) == OWNER {
                        return Took::Wanted;
                    }
                }
                // A worker takes a group, and makes a submission if it leaves jobs.
                Err(_) => return Took::Nothing,
            }
        }
        let (n, left) = self.move_oldest(into);
        self.word.store(0, Release);
        if n == 0 {
            Took::Nothing
        } else {
            Took::Jobs(n, left)
        }
    }

    /// Held by a taker: moves the oldest staged jobs (up to [`TAKE_MAX`]) into `into`,
    /// the last of them first; returns how many, and whether jobs are left staged.
    fn move_oldest(&self, into: impl FnMut(J)) -> (usize, bool) {
        // SAFETY: held.
        self.staged.with_mut(|staged| unsafe {
            let staged = &mut *staged;
            let n = staged.len().min(TAKE_MAX);
            staged.drain(..n).rev().for_each(into);
            // Exact: the holder's store (0 only if it took everything).
            self.count.0.store(staged.len(), Relaxed);
            (n, !staged.is_empty())
        })
    }

    /// Takes every staged job into `into`, waiting while the stage is held: a feeder's
    /// end, a pool's shutdown. Returns how many.
    pub(crate) fn drain(&self, into: impl FnMut(J)) -> usize {
        while self.word.compare_exchange(0, WORKER, Acquire, Relaxed).is_err() {
            crate::sync::yield_now();
        }
        // SAFETY: held.
        let n = self.staged.with_mut(|staged| unsafe {
            let n = (*staged).len();
            (*staged).drain(..).for_each(into);
            n
        });
        self.count.0.store(0, Relaxed);
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
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_take_moves_the_oldest_group_and_says_what_is_left() {
        let stage = Stage::<usize>::default();
        let n = TAKE_MAX + TAKE_MAX / 2;
        for job in 0..n {
            let pushed = stage.push(job, |_| unreachable!("no worker wants them"));
            assert_eq!(pushed, if job == 0 { Pushed::First } else { Pushed::Behind });
        }
        let mut taken = Vec::new();
        assert_eq!(stage.take(1, |job| taken.push(job)), Took::Jobs(TAKE_MAX, true));
        // The last of the group first (for a LIFO deque).
        assert_eq!(taken, (0..TAKE_MAX).rev().collect::<Vec<_>>());
        assert_eq!(stage.len(), n - TAKE_MAX);
        // A look that wants more than is left takes nothing.
        assert_eq!(stage.take(n - TAKE_MAX + 1, |_| unreachable!()), Took::Nothing);
        taken.clear();
        assert_eq!(stage.take(1, |job| taken.push(job)), Took::Jobs(n - TAKE_MAX, false));
        assert_eq!(taken, (TAKE_MAX..n).rev().collect::<Vec<_>>());
        assert!(stage.is_empty());
        assert_eq!(stage.take(1, |_| unreachable!()), Took::Nothing);
        // Empty again: the next push is a submission.
        assert_eq!(stage.push(n, |_| unreachable!()), Pushed::First);
        assert_eq!(stage.drain(|_| ()), 1);
    }
}
