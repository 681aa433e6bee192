//! The CPU pool's sleep protocol (SLEEP.md, beside this file): its state, the
//! submitters' side (`submitted`, `wake_if_needed`, `all_asleep`, `wake_one`,
//! `wake_all`, the burst count) and the workers' loop ([`Sleep::work`]: search, find,
//! stop searching and maybe wake another, run, search again, sleep), generic over the
//! queues ([`Search`]) so that the loom model (`src/loom_models/sleep.rs`) runs this
//! very loop on a model queue. Built with `crate::sync`'s primitives; nothing else
//! touches the counters.
//!
//! Each Dekker pair (a store, then a load of the other side's variable) is written
//! store; `fence(SeqCst)`; `Acquire` load, as `crate::sync` explains: the fence is what
//! orders it (loom checks it that way; on the hardware it is what SeqCst gives). On the
//! submitters' side, paid per submission, the store is the SeqCst bump of `events` and
//! the fence is `crate::sync::after_rmw` (nothing outside loom: a SeqCst RMW and the
//! SeqCst load after it are ordered already).

use crate::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering::Acquire, Ordering::SeqCst};
use crate::sync::{after_rmw, Condvar, Mutex, LOAD_AFTER_RMW};

/// How many times an idle worker looks for a job before it goes through the sleep
/// check (SLEEP.md, "Who may sleep"). Once under loom: the spins are the same look.
#[cfg(not(loom))]
const SPINS: usize = 16;
#[cfg(loom)]
const SPINS: usize = 1;

/// A worker's queues, as the sleep protocol sees them.
pub(crate) trait Search {
    type Job;
    /// One look for a job, in every queue (SLEEP.md, "Where a worker looks"). A look
    /// that moves jobs out of sight of other workers (a batch steal into the worker's
    /// own deque) calls [`Sleep::submitted`].
    fn find(&mut self) -> Option<Self::Job>;
    /// The last look before the sleep check, after `events` was read: as `find`, and it
    /// also takes what a stage holds however little (stage.rs).
    fn find_last(&mut self) -> Option<Self::Job> {
        self.find()
    }
    /// Whether jobs are queued anywhere (for the last searcher's wake-up).
    fn queued(&self) -> bool;
    /// Runs `job` and then the jobs of the worker's own deque (or abandons them once
    /// the pool is shutting down). False in a child forked by the work.
    fn run(&mut self, job: Self::Job) -> bool;
    /// The pool is shutting down.
    fn shutting_down(&self) -> bool;
}

/// The sleep protocol's state (SLEEP.md, "State").
pub(crate) struct Sleep {
    /// Bumped by every submission.
    events: AtomicU64,
    /// Workers asleep or about to be.
    sleepers: AtomicUsize,
    /// Workers awake and looking for a job (not running one, not asleep).
    searching: AtomicUsize,
    /// Staging feeders in the middle of a burst: their loop threads are busy
    /// submitting, each on a CPU of its own.
    bursts: AtomicUsize,
    /// How many workers wait on `wake` (counted under the mutex, so a waker that holds
    /// it knows whether a notify would reach anyone).
    sleep: Mutex<usize>,
    wake: Condvar,
    /// The number of workers.
    workers: usize,
    /// The number of CPUs the process may use (`pool::cores`; a constant in a model).
    cores: fn() -> usize,
}

impl Sleep {
    pub(crate) fn new(workers: usize, cores: fn() -> usize) -> Sleep {
        Sleep {
            events: AtomicU64::new(0),
            sleepers: AtomicUsize::new(0),
            searching: AtomicUsize::new(0),
            bursts: AtomicUsize::new(0),
            sleep: Mutex::new(0),
            wake: Condvar::new(),
            workers,
            cores,
        }
    }

    // The submitters' side.

    /// A submission: its job is queued (visible to any worker that looks). The wake-up
    /// decision comes next (`wake_if_needed`, `all_asleep`) or not at all (a batch
    /// steal, a deferred submission's own bump comes at the flush).
    #[inline]
    pub(crate) fn submitted(&self) {
        self.events.fetch_add(1, SeqCst);
    }

    /// After a submission: a searching worker will find the job; wake a sleeper only
    /// when none is searching.
    #[inline]
    pub(crate) fn wake_if_needed(&self) {
        // The Dekker pair with sleep_unless: `events` bumped (a SeqCst RMW, by every
        // caller), then the counters read (see crate::sync::after_rmw).
        after_rmw();
        if self.searching.load(LOAD_AFTER_RMW) == 0 && self.sleepers.load(LOAD_AFTER_RMW) > 0 {
            self.wake_one();
        }
    }

    /// After a midway publication: no worker searches and all of them sleep (the
    /// publisher then wakes one).
    pub(crate) fn all_asleep(&self) -> bool {
        after_rmw(); // the Dekker pair with sleep_unless, as in wake_if_needed
        self.searching.load(LOAD_AFTER_RMW) == 0 && self.sleepers.load(LOAD_AFTER_RMW) >= self.workers
    }

    /// Wakes one worker waiting on the condvar, if any: `sleepers` also counts workers
    /// about to sleep that will not (they saw a new `events`), and a notify (a system
    /// call) for nobody is worth avoiding. Under the mutex, which a sleeper holds from
    /// its announcement until it waits.
    pub(crate) fn wake_one(&self) {
        let waiting = self.sleep.lock().unwrap_or_else(|p| p.into_inner());
        if *waiting > 0 {
            self.wake.notify_one();
        }
    }

    /// Wakes every waiting worker (shutdown: set the flag first).
    pub(crate) fn wake_all(&self) {
        let _guard = self.sleep.lock().unwrap_or_else(|p| p.into_inner());
        self.wake.notify_all();
    }

    /// A staging feeder's first midway publication in a callback.
    pub(crate) fn begin_burst(&self) {
        self.bursts.fetch_add(1, SeqCst);
    }

    /// The end of a staging feeder's burst.
    pub(crate) fn end_burst(&self) {
        self.bursts.fetch_sub(1, SeqCst);
    }

    // The workers' side.

    /// A worker's loop: searches, runs what it finds, sleeps when it finds nothing,
    /// until it finds nothing and the pool is shutting down. False in a child forked
    /// by the work (the caller then touches nothing).
    pub(crate) fn work<S: Search>(&self, queues: &mut S) -> bool {
        self.searching.fetch_add(1, SeqCst);
        loop {
            let found = match self.find_spinning(queues) {
                Some(job) => Some(job),
                None if queues.shutting_down() => break,
                None => {
                    let seen = self.events.load(SeqCst);
                    match queues.find_last() {
                        Some(job) => Some(job),
                        None => {
                            self.sleep_unless(seen, queues);
                            None
                        }
                    }
                }
            };
            if let Some(job) = found {
                if !self.run_found(job, queues) {
                    return false;
                }
            }
        }
        self.searching.fetch_sub(1, SeqCst);
        true
    }

    /// Looks for a job a few times, briefly, before the caller goes to sleep: jobs
    /// often come in bursts, and a wake-up costs two system calls. Bounded: an idle
    /// worker spins for a few microseconds at most, then parks.
    fn find_spinning<S: Search>(&self, queues: &mut S) -> Option<S::Job> {
        for _ in 0..SPINS {
            if let Some(job) = queues.find() {
                return Some(job);
            }
            for _ in 0..16 {
                std::hint::spin_loop();
            }
        }
        None
    }

    /// The sleep check of SLEEP.md: sleeps unless a job was submitted since
    /// `events` read `seen` (or the pool is shutting down).
    fn sleep_unless<S: Search>(&self, seen: u64, queues: &S) {
        let mut guard = self.sleep.lock().unwrap_or_else(|p| p.into_inner());
        self.sleepers.fetch_add(1, SeqCst);
        self.searching.fetch_sub(1, SeqCst);
        fence(SeqCst); // the Dekker pair with the submitters (the counters, then events)
        if self.events.load(Acquire) == seen && !queues.shutting_down() {
            *guard += 1;
            guard = self.wake.wait(guard).unwrap_or_else(|p| p.into_inner());
            *guard -= 1;
        }
        self.searching.fetch_add(1, SeqCst);
        self.sleepers.fetch_sub(1, SeqCst);
        drop(guard);
    }

    /// A searching worker found `job`: it stops searching (and if it was the last
    /// searcher and more work is queued anywhere, wakes a sleeper to look for it: see
    /// SLEEP.md), runs the job, then the jobs in its own deque, and searches
    /// again. Running the jobs of its own deque is not searching: the two counter
    /// updates (shared by all workers) are paid once per batch, not once per job.
    /// Returns false in a child forked by the work.
    fn run_found<S: Search>(&self, job: S::Job, queues: &mut S) -> bool {
        // Stop searching first, then look: a submitter that saw this worker still
        // searching (and so did not wake anyone) queued its job before this decrement,
        // so the look below sees it.
        if self.searching.fetch_sub(1, SeqCst) == 1 && self.may_wake_another() && {
            fence(SeqCst); // the Dekker pair with the submitters (searching, then the queues)
            queues.queued()
        } {
            self.wake_one();
        }
        if !queues.run(job) {
            return false;
        }
        self.searching.fetch_add(1, SeqCst);
        true
    }

    /// Whether a worker that found a job may wake a sleeper to look for more (see
    /// `run_found`). Not while a loop is in a burst of spawns if the sleeper would then
    /// take a CPU from that loop's thread: with as many workers as CPUs, the loop is
    /// what limits the burst, and a worker woken beside it would be placed on the
    /// loop's CPU (the scheduler puts a woken thread back where it last ran) and share
    /// it, while the burst's jobs need no second worker. The burst's end wakes the
    /// sleepers as usual (a final publication is an ordinary submission).
    fn may_wake_another(&self) -> bool {
        let sleepers = self.sleepers.load(SeqCst);
        if sleepers == 0 {
            return false;
        }
        let bursts = self.bursts.load(SeqCst);
        // Awake after the wake-up, plus one CPU per loop thread in a burst.
        bursts == 0 || self.workers.saturating_sub(sleepers) + 1 + bursts <= (self.cores)()
    }
}
