//! The CPU pool: work stealing, and workers that sleep without losing a wake-up.
//!
//! A global `Injector` takes jobs submitted from outside the pool; each worker has a
//! LIFO `Worker` deque for jobs submitted from inside it (nested work) and steals from
//! the others through their `Stealer`s when its own deque and the injector are empty
//! (the find-task loop of crossbeam-deque's documentation). A loop submits through a
//! [`Feeder`](super::Feeder) instead (feeder.rs): a FIFO deque of its own that the
//! workers steal from (in batches) after the injector.
//!
//! This file owns [`Cpu`] and its workers' queues; the sleep protocol (searching,
//! sleeping, waking another, and the submitters' side that feeder.rs and deferred.rs
//! follow) is in sleep.rs, and written out in `SLEEP.md` beside this file, included
//! below: read it before changing anything that touches `events`, `sleepers`,
//! `searching` or `bursts`.
//!
#![doc = include_str!("SLEEP.md")]

use super::cores;
use super::job::JobRef;
use super::sleep::{Search, Sleep};
use super::stage::{Stage, Took, TAKE_AT};
use super::thread::{Common, THREAD};
use crate::error::{Code, Error, Result};
use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

/// A CPU pool's queues and sleep state (the counters are described in SLEEP.md).
/// feeder.rs and deferred.rs, the protocol's other submitters, push to `injector`,
/// register in `feeders` and call `sleep`'s submitters' methods; nothing else writes
/// here.
pub(super) struct Cpu {
    pub(super) common: Arc<Common>,
    pub(super) injector: Injector<JobRef>,
    /// One per worker: its length is the number of workers.
    pub(super) stealers: Vec<Stealer<JobRef>>,
    /// Each worker's own deque, handed to its thread when the pool starts.
    locals: Mutex<Vec<Option<Worker<JobRef>>>>,
    /// The sleep protocol's state (SLEEP.md).
    pub(super) sleep: Sleep,
    started: AtomicBool,
    /// The deques of feeders (see [`Feeder`](super::Feeder)), with their ids and the
    /// stages of staging ones (stage.rs); `feeders_epoch` changes with the list, so that
    /// workers refresh their copy of it only then.
    pub(super) feeders: Mutex<Vec<FeederEntry>>,
    pub(super) feeders_epoch: AtomicU64,
    /// Each worker's counters, for statistics (stats.rs).
    pub(super) counters: Box<[WorkerCounters]>,
}

/// A worker's counters: written by the worker alone (a load and a store, no locked
/// instruction, on a line of its own), read by anyone.
#[repr(align(64))]
#[derive(Default)]
pub(super) struct WorkerCounters {
    /// Jobs run to their end.
    pub(super) ran: AtomicU64,
    /// Jobs taken from another worker's deque.
    pub(super) steals: AtomicU64,
    /// Whether it is running a job now.
    pub(super) busy: AtomicBool,
}

/// Adds one to a counter only the calling thread writes.
#[inline(always)]
fn bump(c: &AtomicU64) {
    c.store(c.load(Relaxed).wrapping_add(1), Relaxed);
}

/// A feeder as its pool's workers see it: its id, its deque, its stage if it stages.
pub(super) type FeederEntry = (u64, Stealer<JobRef>, Option<Arc<Stage<JobRef>>>);

/// A worker's copy of its pool's feeder deques and stages.
struct Feeds {
    epoch: u64,
    stealers: Vec<Stealer<JobRef>>,
    stages: Vec<Arc<Stage<JobRef>>>,
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
            sleep: Sleep::new(threads, cores),
            started: AtomicBool::new(false),
            feeders: Mutex::new(Vec::new()),
            feeders_epoch: AtomicU64::new(0),
            counters: (0..threads).map(|_| WorkerCounters::default()).collect(),
        }
    }

    /// Brings a worker's copy of the feeder list up to date.
    fn refresh(&self, feeds: &mut Feeds) {
        let epoch = self.feeders_epoch.load(SeqCst);
        if epoch != feeds.epoch {
            let feeders = self.feeders.lock().unwrap_or_else(|p| p.into_inner());
            feeds.stealers = feeders.iter().map(|(_, s, _)| s.clone()).collect();
            feeds.stages = feeders.iter().filter_map(|(_, _, stage)| stage.clone()).collect();
            feeds.epoch = self.feeders_epoch.load(SeqCst);
        }
    }

    /// One look for a job (SLEEP.md, "Where a worker looks"); last, the feeders'
    /// stages: any staged job in the `last` look before sleeping, else only a stage that
    /// holds [`TAKE_AT`] jobs (stage.rs).
    fn find_job(
        &self,
        local: &Worker<JobRef>,
        feeds: &mut Feeds,
        last: bool,
        counters: &WorkerCounters,
    ) -> Option<JobRef> {
        local.pop().or_else(|| {
            self.refresh(feeds);
            let job = std::iter::repeat_with(|| {
                self.injector
                    .steal_batch_and_pop(local)
                    .or_else(|| feeds.stealers.iter().map(|s| s.steal_batch_and_pop(local)).collect())
                    .or_else(|| {
                        // A batch (half of the victim's deque) into this worker's own.
                        let stolen: Steal<JobRef> =
                            self.stealers.iter().map(|s| s.steal_batch_and_pop(local)).collect();
                        if stolen.is_success() {
                            // The job returned and those moved into `local` (empty before).
                            let c = &counters.steals;
                            c.store(c.load(Relaxed).wrapping_add(1 + local.len() as u64), Relaxed);
                        }
                        stolen
                    })
            })
            .find(|s| !s.is_retry())
            .and_then(|s| s.success())
            .or_else(|| {
                let at_least = if last { 1 } else { TAKE_AT };
                feeds.stages.iter().find_map(|stage| match stage.take(at_least, |job| local.push(job)) {
                    Took::Jobs(_, left) => {
                        if left {
                            // Jobs left staged: a submission covers them (stage.rs).
                            self.sleep.submitted();
                        }
                        local.pop()
                    }
                    Took::Nothing | Took::Wanted => None,
                })
            });
            if job.is_some() && !local.is_empty() {
                // A batch steal moved jobs into this deque, where a worker that looked
                // in the injector a moment ago did not see them: count it as a
                // submission, so that worker does not go to sleep (SLEEP.md).
                self.sleep.submitted();
            }
            job
        })
    }

    fn work(self: &Arc<Self>, local: Worker<JobRef>, index: usize) {
        THREAD.with(|t| t.local.set(&local));
        let feeds = Feeds { epoch: u64::MAX, stealers: Vec::new(), stages: Vec::new() };
        let counters = &self.counters[index];
        if !self.sleep.work(&mut Queues { cpu: self, local: &local, feeds, counters }) {
            // The work forked and the child came back here: touch nothing.
            std::mem::forget(local);
            return;
        }
        THREAD.with(|t| t.local.set(std::ptr::null()));
        // Jobs left in this worker's deque at shutdown are abandoned, not lost.
        while let Some(job) = local.pop() {
            job.abandon();
        }
    }

    /// Starts the workers on the first submission (a load, after that).
    #[inline]
    pub(super) fn start(self: &Arc<Self>) -> Result<()> {
        if self.started.load(SeqCst) {
            return Ok(());
        }
        self.start_threads()
    }

    #[cold]
    fn start_threads(self: &Arc<Self>) -> Result<()> {
        if self.started.swap(true, SeqCst) {
            return Ok(());
        }
        let locals: Vec<_> =
            self.locals.lock().unwrap_or_else(|p| p.into_inner()).iter_mut().map(|l| l.take()).collect();
        let mut started = 0;
        let mut failure = None;
        for (index, local) in locals.into_iter().enumerate() {
            let local = local.expect("each deque is handed out once");
            let cpu = self.clone();
            match self.common.spawn_thread(index, move || cpu.work(local, index)) {
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
            self.sleep.submitted();
        }
        if self.common.shutdown.load(SeqCst) {
            // Shutdown began meanwhile and may have drained the injector before the
            // push: give up what is left there (each job goes to exactly one taker).
            self.abandon_queued();
            self.sleep.wake_all();
            return Err(Error::new(Code::Closed, "the pool is shutting down"));
        }
        if !deferred {
            self.sleep.wake_if_needed();
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
        for (_, stealer, stage) in feeders.iter() {
            if let Some(stage) = stage {
                stage.drain(JobRef::abandon);
            }
            loop {
                match stealer.steal() {
                    Steal::Success(job) => job.abandon(),
                    Steal::Retry => continue,
                    Steal::Empty => break,
                }
            }
        }
    }
}

/// A worker's queues, as the sleep protocol sees them: its own deque, then the
/// injector, the feeders and the other workers' deques.
struct Queues<'a> {
    cpu: &'a Cpu,
    /// Shared: the thread-local `local` points at it too (nested submissions).
    local: &'a Worker<JobRef>,
    feeds: Feeds,
    counters: &'a WorkerCounters,
}

impl Search for Queues<'_> {
    type Job = JobRef;

    fn find(&mut self) -> Option<JobRef> {
        self.cpu.find_job(self.local, &mut self.feeds, false, self.counters)
    }

    fn find_last(&mut self) -> Option<JobRef> {
        self.cpu.find_job(self.local, &mut self.feeds, true, self.counters)
    }

    /// Jobs may wait in the injector or in any worker's deque (a batch steal fills the
    /// stealer's own; nested submissions the submitter's) or feeder, or stage.
    fn queued(&self) -> bool {
        !self.cpu.injector.is_empty()
            || self.cpu.stealers.iter().any(|s| !s.is_empty())
            || self.feeds.stealers.iter().any(|s| !s.is_empty())
            || self.feeds.stages.iter().any(|s| !s.is_empty())
    }

    /// Runs the job, then the jobs of this worker's deque; once the pool is shutting
    /// down, abandons them instead.
    fn run(&mut self, job: JobRef) -> bool {
        let mut next = Some(job);
        while let Some(job) = next {
            if self.cpu.common.shutdown.load(SeqCst) {
                job.abandon(); // queued when the pool began to shut down: not started
            } else {
                self.counters.busy.store(true, Relaxed);
                job.run();
                if crate::fork::is_child() {
                    return false;
                }
                self.counters.busy.store(false, Relaxed);
                bump(&self.counters.ran);
            }
            next = self.local.pop();
        }
        true
    }

    fn shutting_down(&self) -> bool {
        self.cpu.common.shutdown.load(SeqCst)
    }
}
