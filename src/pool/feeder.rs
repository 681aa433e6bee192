//! Feeders: a loop's own FIFO deque into a CPU pool, and staging, which publishes the
//! jobs a loop callback spawns in groups. Feeders submit under the CPU pool's sleep
//! protocol (SLEEP.md, beside this file): each publication is one submission.

use super::cpu::Cpu;
use super::job::JobRef;
use super::stage::{Pushed, Stage};
use super::thread::THREAD;
use crate::error::{Code, Error, Result};
use crossbeam_deque::Worker;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

/// A FIFO deque that feeds a CPU pool, for a submitter that serialises its own
/// submissions (a loop feeds each CPU pool it spawns on under its lock): a push is a
/// plain store, where the pool's shared injector costs two atomic read-modify-writes
/// and a slot twice the size. The pool's workers steal from it as from each other's
/// deques (oldest first, in batches). Dropping the feeder moves what it still holds to
/// the injector and detaches it.
///
/// # Staging
///
/// A staging feeder (the loop's own, used only by the thread running the loop) keeps the
/// jobs submitted inside a loop callback to itself, [`STAGE`] at a time (more when the
/// workers keep running out: see `limit`), and publishes them together: when it holds
/// that many, when the callback returns, when the loop's `run` returns, and before the
/// loop thread blocks (see [`flush_deferred_wakeups`](super::flush_deferred_wakeups)).
/// Workers then take them from the deque in batches, instead of taking each as it is
/// pushed: a worker that keeps pace with a loop spawning in a burst would otherwise
/// move the deque's indices between the two threads' caches once per job (on a 2-CPU
/// VM, a spawn went from 30 ns to 200). Each publication counts as one submission for
/// the sleep protocol (one `events` bump); one that the burst fills (not its end) wakes
/// a worker only if all of them sleep, so an awake worker runs the burst's jobs while
/// the loop submits the next ones, and no worker is woken every few dozen jobs only to
/// run out and park again (SLEEP.md, "Bursts").
///
/// Outside the loop's callbacks (a spawn through the loop's gate: before `run`, between
/// `WEFT_RUN_NOWAIT` passes, from another thread while nobody runs the loop), a
/// staging feeder stages on its [`Stage`] instead, which the workers take from
/// themselves, so that no job waits for a later call ([`submit_now`](Self::submit_now);
/// the protocol is in stage.rs).
pub struct Feeder {
    id: u64,
    deque: Worker<JobRef>,
    cpu: Arc<Cpu>,
    /// None: not a staging feeder.
    staged: Option<std::cell::RefCell<Vec<JobRef>>>,
    /// The stage for [`submit_now`](Self::submit_now) (also in the pool's feeder list,
    /// where the workers take from it).
    stage: Option<Arc<Stage<JobRef>>>,
    /// A midway publication did not wake anyone: the final one must.
    owes_wake: std::cell::Cell<bool>,
    /// How many jobs to stage before a midway publication: [`STAGE`], doubled (up to
    /// [`STAGE_MAX`]) each time a midway publication finds every worker asleep (they
    /// run the jobs faster than the callback spawns them, and a worker woken for a
    /// few dozen jobs would run out and park again at once), reset at the end.
    limit: std::cell::Cell<usize>,
    /// This feeder counts in its pool's `bursts`: it published midway in the current
    /// callback.
    bursting: std::cell::Cell<bool>,
}

/// The most jobs a staging feeder holds back (see `Feeder::limit`).
const STAGE_MAX: usize = 1024;

/// How many jobs a staging feeder holds back inside a callback (see [`Feeder`]).
const STAGE: usize = 64;

impl Feeder {
    /// Queues `job` as [`Pool::submit`](super::Pool::submit) does (or stages it: see
    /// the type's comment).
    pub fn submit(&self, job: JobRef) -> Result<()> {
        if let Some(staged) = &self.staged {
            let this = self as *const Feeder;
            // One thread-local access (a function call in a shared library): whether
            // this thread defers, and if so, this feeder registered for the flush.
            let previous = THREAD.with(|t| (t.deferring.get() > 0).then(|| t.staged.replace(this)));
            if let Some(previous) = previous {
                let full = {
                    let mut staged = staged.borrow_mut();
                    staged.push(job);
                    staged.len() >= self.limit.get()
                };
                if !previous.is_null() && previous != this {
                    // SAFETY: a staging feeder clears its own entry when dropped, so
                    // a registered one is alive.
                    unsafe { &*previous }.publish(false);
                }
                if full {
                    self.publish(true);
                }
                return Ok(());
            }
        }
        self.cpu.submit_to(job, Some(&self.deque))
    }

    /// Queues `job` on the feeder's stage, where the workers take it without a later
    /// call (stage.rs): a submission of the sleep protocol only when the stage was
    /// empty, or published what a worker wanted. For the feeder's one submitter at a
    /// time outside the callbacks of a loop's staging (the loop's owner through its
    /// gate, on the loop's own feeder; whoever holds the loop's lock, on its shared one).
    /// Feeders without a stage submit as [`Pool::submit`](super::Pool::submit) does.
    pub fn submit_now(&self, job: JobRef) -> Result<()> {
        let Some(stage) = &self.stage else { return self.cpu.submit_to(job, Some(&self.deque)) };
        let cpu = &self.cpu;
        if let Err(e) = cpu.start() {
            job.abandon();
            return Err(e);
        }
        let submission = match stage.push(job, |job| self.deque.push(job)) {
            Pushed::Busy(job) => return cpu.submit_to(job, Some(&self.deque)),
            Pushed::Behind => false,
            Pushed::First | Pushed::Published => true,
        };
        if submission {
            cpu.sleep.submitted();
        }
        if cpu.common.shutdown.load(SeqCst) {
            // As in submit_to: shutdown may have drained the stage before the push.
            cpu.abandon_queued();
            cpu.sleep.wake_all();
            return Err(Error::new(Code::Closed, "the pool is shutting down"));
        }
        if submission {
            cpu.sleep.wake_if_needed();
        }
        Ok(())
    }

    /// Makes the staged jobs visible to the workers: one submission for the sleep
    /// protocol. `midway`: the burst goes on (wake a worker only if all of them sleep).
    fn publish(&self, midway: bool) {
        let Some(staged) = &self.staged else { return };
        let mut staged = staged.borrow_mut();
        if !midway {
            self.limit.set(STAGE);
            self.end_burst();
        } else if !self.bursting.replace(true) {
            self.cpu.sleep.begin_burst();
        }
        if staged.is_empty() {
            if !midway && self.owes_wake.replace(false) {
                self.cpu.sleep.wake_if_needed();
            }
            return;
        }
        let cpu = &self.cpu;
        if cpu.start().is_err() {
            staged.drain(..).for_each(JobRef::abandon);
            return;
        }
        for job in staged.drain(..) {
            self.deque.push(job);
        }
        drop(staged);
        cpu.sleep.submitted();
        if cpu.common.shutdown.load(SeqCst) {
            // As in submit_to: shutdown may have drained the feeders before the push.
            cpu.abandon_queued();
            cpu.sleep.wake_all();
            return;
        }
        if !midway {
            self.owes_wake.set(false);
            cpu.sleep.wake_if_needed();
        } else if cpu.sleep.all_asleep() {
            self.limit.set((self.limit.get() * 2).min(STAGE_MAX));
            cpu.sleep.wake_one();
        } else {
            self.owes_wake.set(true);
        }
    }

    fn end_burst(&self) {
        if self.bursting.replace(false) {
            self.cpu.sleep.end_burst();
        }
    }
}

impl Feeder {
    /// The final publication of the staged jobs (a flush: see `pool::deferred`).
    pub(super) fn publish_now(&self) {
        self.publish(false);
    }
}

/// Publishes the jobs of the staging feeder this thread registered, if any.
pub fn publish_staged() {
    let feeder = THREAD.with(|t| t.staged.replace(std::ptr::null()));
    if !feeder.is_null() {
        // SAFETY: as in `Feeder::submit`.
        unsafe { &*feeder }.publish(false);
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        let this = self as *const Feeder;
        THREAD.with(|t| {
            if t.staged.get() == this {
                t.staged.set(std::ptr::null());
            }
        });
        if let Some(staged) = &self.staged {
            for job in staged.borrow_mut().drain(..) {
                self.deque.push(job);
            }
        }
        if let Some(stage) = &self.stage {
            stage.drain(|job| self.deque.push(job));
        }
        self.end_burst();
        let cpu = &self.cpu;
        let moved = !self.deque.is_empty();
        while let Some(job) = self.deque.pop() {
            cpu.injector.push(job);
        }
        {
            let mut feeders = cpu.feeders.lock().unwrap_or_else(|p| p.into_inner());
            feeders.retain(|(id, _, _)| *id != self.id);
            cpu.feeders_epoch.fetch_add(1, SeqCst);
        }
        if moved {
            cpu.sleep.submitted();
            if cpu.common.shutdown.load(SeqCst) {
                cpu.abandon_queued();
                cpu.sleep.wake_all();
            } else {
                cpu.sleep.wake_if_needed();
            }
        }
    }
}

impl Feeder {
    /// A feeder of `cpu` (a staging one if `staging`), registered with its workers.
    pub(super) fn new(cpu: &Arc<Cpu>, staging: bool) -> Feeder {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let deque = Worker::new_fifo();
        let id = NEXT.fetch_add(1, SeqCst);
        let stage = Some(Arc::new(Stage::default()));
        let mut feeders = cpu.feeders.lock().unwrap_or_else(|p| p.into_inner());
        feeders.push((id, deque.stealer(), stage.clone()));
        cpu.feeders_epoch.fetch_add(1, SeqCst);
        drop(feeders);
        let staged = staging.then(|| std::cell::RefCell::new(Vec::with_capacity(STAGE)));
        let (owes_wake, limit, bursting) =
            (std::cell::Cell::new(false), std::cell::Cell::new(STAGE), std::cell::Cell::new(false));
        Feeder { id, deque, cpu: cpu.clone(), staged, stage, owes_wake, limit, bursting }
    }
}
