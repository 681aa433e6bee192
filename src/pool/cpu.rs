//! The CPU pool: work stealing, and workers that sleep without losing a wake-up.
//!
//! A global `Injector` takes jobs submitted from outside the pool; each worker has a
//! LIFO `Worker` deque for jobs submitted from inside it (nested work) and steals from
//! the others through their `Stealer`s when its own deque and the injector are empty
//! (the find-task loop of crossbeam-deque's documentation). A loop submits through a
//! [`Feeder`](super::Feeder) instead (feeder.rs): a FIFO deque of its own that the
//! workers steal from (in batches) after the injector.
//!
//! This file owns [`Cpu`] and its workers' side of the sleep protocol (searching,
//! sleeping, waking another). The protocol as a whole, with the submitters' side that
//! feeder.rs and deferred.rs follow, is written out in `SLEEP.md` beside this file,
//! included below: read it before changing anything that touches `events`, `sleepers`,
//! `searching` or `bursts`.
//!
#![doc = include_str!("SLEEP.md")]

use super::cores;
use super::job::JobRef;
use super::thread::{Common, THREAD};
use crate::error::{Code, Error, Result};
use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
/// How many times an idle CPU worker looks for a job before it parks.
const SPINS: usize = 16;

/// A CPU pool's queues and sleep state (the counters are described in SLEEP.md).
/// feeder.rs and deferred.rs, the protocol's other submitters, push to `injector`,
/// bump `events`, count `bursts`, register in `feeders` and call the `wake_*` methods;
/// nothing else writes here.
pub(super) struct Cpu {
    pub(super) common: Arc<Common>,
    pub(super) injector: Injector<JobRef>,
    /// One per worker: its length is the number of workers.
    pub(super) stealers: Vec<Stealer<JobRef>>,
    /// Each worker's own deque, handed to its thread when the pool starts.
    locals: Mutex<Vec<Option<Worker<JobRef>>>>,
    /// Bumped by every submission (SLEEP.md).
    pub(super) events: AtomicU64,
    /// Workers asleep or about to be.
    pub(super) sleepers: AtomicUsize,
    /// Workers awake and looking for a job (not running one, not asleep).
    pub(super) searching: AtomicUsize,
    /// Staging feeders in the middle of a burst (see [`Feeder`](super::Feeder)): their
    /// loop threads are busy submitting, each on a CPU of its own.
    pub(super) bursts: AtomicUsize,
    /// How many workers wait on `wake` (counted under the mutex, so a waker that holds
    /// it knows whether a notify would reach anyone).
    sleep: Mutex<usize>,
    wake: Condvar,
    started: AtomicBool,
    /// The deques of feeders (see [`Feeder`](super::Feeder)), with their ids;
    /// `feeders_epoch` changes with the list, so that workers refresh their copy of it
    /// only then.
    pub(super) feeders: Mutex<Vec<(u64, Stealer<JobRef>)>>,
    pub(super) feeders_epoch: AtomicU64,
}

/// A worker's copy of its pool's feeder deques.
struct Feeds {
    epoch: u64,
    stealers: Vec<Stealer<JobRef>>,
}

impl Cpu {
    /// A pool of `threads` workers, none started yet.
    pub(super) fn new(common: Arc<Common>, threads: usize) -> Cpu {
        let locals: Vec<_> = (0..threads).map(|_| Worker::new_lifo()).collect();
        Cpu {
            common,
            injector: Injector::new(),
            stealers: locals.iter().map(|w| w.stealer()).collect(),
            locals: Mutex::new(locals.into_iter().map(Some).collect()),
            events: AtomicU64::new(0),
            sleepers: AtomicUsize::new(0),
            searching: AtomicUsize::new(0),
            bursts: AtomicUsize::new(0),
            sleep: Mutex::new(0),
            wake: Condvar::new(),
            started: AtomicBool::new(false),
            feeders: Mutex::new(Vec::new()),
            feeders_epoch: AtomicU64::new(0),
        }
    }

    /// Brings a worker's copy of the feeder list up to date.
    fn refresh(&self, feeds: &mut Feeds) {
        let epoch = self.feeders_epoch.load(SeqCst);
        if epoch != feeds.epoch {
            let feeders = self.feeders.lock().unwrap_or_else(|p| p.into_inner());
            feeds.stealers = feeders.iter().map(|(_, s)| s.clone()).collect();
            feeds.epoch = self.feeders_epoch.load(SeqCst);
        }
    }

    fn find_job(&self, local: &Worker<JobRef>, feeds: &mut Feeds) -> Option<JobRef> {
        local.pop().or_else(|| {
            self.refresh(feeds);
            let job = std::iter::repeat_with(|| {
                self.injector
                    .steal_batch_and_pop(local)
                    .or_else(|| feeds.stealers.iter().map(|s| s.steal_batch_and_pop(local)).collect())
                    .or_else(|| self.stealers.iter().map(|s| s.steal()).collect())
            })
            .find(|s| !s.is_retry())
            .and_then(|s| s.success());
            if job.is_some() && !local.is_empty() {
                // A batch steal moved jobs into this deque, where a worker that looked
                // in the injector a moment ago did not see them: count it as a
                // submission, so that worker does not go to sleep (SLEEP.md).
                self.events.fetch_add(1, SeqCst);
            }
            job
        })
    }

    fn work(self: &Arc<Self>, local: Worker<JobRef>) {
        THREAD.with(|t| t.local.set(&local));
        let mut feeds = Feeds { epoch: u64::MAX, stealers: Vec::new() };
        self.searching.fetch_add(1, SeqCst);
        loop {
            let found = match self.find_job_spinning(&local, &mut feeds) {
                Some(job) => Some(job),
                None if self.common.shutdown.load(SeqCst) => break,
                None => {
                    let seen = self.events.load(SeqCst);
                    match self.find_job(&local, &mut feeds) {
                        Some(job) => Some(job),
                        None => {
                            self.sleep_unless(seen);
                            None
                        }
                    }
                }
            };
            if let Some(job) = found {
                if !self.run_found(job, &feeds, &local) {
                    // The work forked and the child came back here: touch nothing.
                    std::mem::forget(local);
                    return;
                }
            }
        }
        self.searching.fetch_sub(1, SeqCst);
        THREAD.with(|t| t.local.set(std::ptr::null()));
        // Jobs left in this worker's deque at shutdown are abandoned, not lost.
        while let Some(job) = local.pop() {
            job.abandon();
        }
    }

    /// The sleep check of SLEEP.md: sleeps unless a job was submitted since
    /// `events` read `seen` (or the pool is shutting down).
    fn sleep_unless(&self, seen: u64) {
        let mut guard = self.sleep.lock().unwrap_or_else(|p| p.into_inner());
        self.sleepers.fetch_add(1, SeqCst);
        self.searching.fetch_sub(1, SeqCst);
        if self.events.load(SeqCst) == seen && !self.common.shutdown.load(SeqCst) {
            *guard += 1;
            guard = self.wake.wait(guard).unwrap_or_else(|p| p.into_inner());
            *guard -= 1;
        }
        self.searching.fetch_add(1, SeqCst);
        self.sleepers.fetch_sub(1, SeqCst);
        drop(guard);
    }

    /// Looks for a job a few times, briefly, before the caller goes to sleep: jobs
    /// often come in bursts, and a wake-up costs two system calls. Bounded: an idle
    /// worker spins for a few microseconds at most, then parks.
    fn find_job_spinning(&self, local: &Worker<JobRef>, feeds: &mut Feeds) -> Option<JobRef> {
        for _ in 0..SPINS {
            if let Some(job) = self.find_job(local, feeds) {
                return Some(job);
            }
            for _ in 0..16 {
                std::hint::spin_loop();
            }
        }
        None
    }

    /// A searching worker found `job`: it stops searching (and if it was the last
    /// searcher and more work is queued anywhere, wakes a sleeper to look for it: see
    /// SLEEP.md), runs the job, then the jobs in its own deque, and searches
    /// again. Running the jobs of its own deque is not searching: the two counter
    /// updates (shared by all workers) are paid once per batch, not once per job. Once
    /// the pool is shutting down, it abandons the jobs instead. Returns false in a
    /// child forked by the work.
    fn run_found(&self, job: JobRef, feeds: &Feeds, local: &Worker<JobRef>) -> bool {
        // Stop searching first, then look: a submitter that saw this worker still
        // searching (and so did not wake anyone) pushed its job before this decrement,
        // so the look below sees it. Jobs may wait in the injector or in any worker's
        // deque (a batch steal fills the stealer's own; nested submissions the
        // submitter's).
        if self.searching.fetch_sub(1, SeqCst) == 1
            && self.may_wake_another()
            && (!self.injector.is_empty()
                || self.stealers.iter().any(|s| !s.is_empty())
                || feeds.stealers.iter().any(|s| !s.is_empty()))
        {
            self.wake_one();
        }
        let mut next = Some(job);
        while let Some(job) = next {
            if self.common.shutdown.load(SeqCst) {
                job.abandon(); // queued when the pool began to shut down: not started
            } else {
                job.run();
                if crate::fork::is_child() {
                    return false;
                }
            }
            next = local.pop();
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
        bursts == 0 || self.stealers.len().saturating_sub(sleepers) + 1 + bursts <= cores()
    }

    /// Wakes one worker waiting on the condvar, if any: `sleepers` also counts workers
    /// about to sleep that will not (they saw a new `events`), and a notify (a system
    /// call) for nobody is worth avoiding.
    pub(super) fn wake_one(&self) {
        let waiting = self.sleep.lock().unwrap_or_else(|p| p.into_inner());
        if *waiting > 0 {
            self.wake.notify_one();
        }
    }

    pub(super) fn start(self: &Arc<Self>) -> Result<()> {
        if self.started.load(SeqCst) || self.started.swap(true, SeqCst) {
            return Ok(());
        }
        let locals: Vec<_> =
            self.locals.lock().unwrap_or_else(|p| p.into_inner()).iter_mut().map(|l| l.take()).collect();
        let mut started = 0;
        let mut failure = None;
        for (index, local) in locals.into_iter().enumerate() {
            let local = local.expect("each deque is handed out once");
            let cpu = self.clone();
            match self.common.spawn_thread(index, move || cpu.work(local)) {
                Ok(()) => started += 1,
                Err(e) => failure = Some(e),
            }
        }
        match failure {
            // Not one thread: nothing would ever run a job. Fail every submission.
            Some(e) if started == 0 => {
                self.common.shutdown.store(true, SeqCst);
                Err(e)
            }
            _ => Ok(()), // fewer threads than asked for still run every job
        }
    }

    pub(super) fn submit(self: &Arc<Self>, job: JobRef) -> Result<()> {
        self.submit_to(job, None)
    }

    /// Queues `job` on this thread's own deque (a worker's nested submission), on
    /// `feeder`, or on the injector.
    pub(super) fn submit_to(self: &Arc<Self>, job: JobRef, feeder: Option<&Worker<JobRef>>) -> Result<()> {
        if let Err(e) = self.start() {
            job.abandon();
            return Err(e);
        }
        let (local, deferred) = THREAD.with(|t| {
            let local = t.local.get();
            let own = !local.is_null() && t.current.get().is_some_and(|(serial, _)| serial == self.common.serial);
            (if own { local } else { std::ptr::null() }, super::deferred::defer_wake(t, self))
        });
        if !local.is_null() {
            // SAFETY: `local` is the deque owned by this very thread's `work` frame,
            // which outlives this call (it is set and cleared by `work`).
            unsafe { &*local }.push(job);
        } else if let Some(feeder) = feeder {
            feeder.push(job);
        } else {
            self.injector.push(job);
        }
        if !deferred {
            self.events.fetch_add(1, SeqCst);
        }
        if self.common.shutdown.load(SeqCst) {
            // Shutdown began meanwhile and may have drained the injector before the
            // push: give up what is left there (each job goes to exactly one taker).
            self.abandon_queued();
            self.wake_all();
            return Err(Error::new(Code::Closed, "the pool is shutting down"));
        }
        if !deferred {
            self.wake_if_needed();
        }
        Ok(())
    }

    pub(super) fn abandon_queued(&self) {
        loop {
            match self.injector.steal() {
                Steal::Success(job) => job.abandon(),
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
        let feeders = self.feeders.lock().unwrap_or_else(|p| p.into_inner());
        for (_, stealer) in feeders.iter() {
            loop {
                match stealer.steal() {
                    Steal::Success(job) => job.abandon(),
                    Steal::Retry => continue,
                    Steal::Empty => break,
                }
            }
        }
    }

    /// A searching worker will find queued jobs; wake a sleeper only when none is.
    pub(super) fn wake_if_needed(&self) {
        if self.searching.load(SeqCst) == 0 && self.sleepers.load(SeqCst) > 0 {
            self.wake_one();
        }
    }

    pub(super) fn wake_all(&self) {
        let _guard = self.sleep.lock().unwrap_or_else(|p| p.into_inner());
        self.wake.notify_all();
    }
}
