//! A CPU pool's stage (`crate::pool::stage`): jobs the loop's owner stages outside its
//! callbacks never wait for a later call. The owner's pushes race the workers' takes
//! (a last look that finds the owner pushing waits for the push), and every job runs
//! although the owner does nothing after its last push.
//!
//! The workers run the real loop, [`Sleep::work`], over a model queue (a count, as in
//! `sleep.rs`) and the real [`Stage`]: `find` looks at the queue and takes the stage only
//! when it holds many jobs (never, here), `find_last` (the look after `events` was
//! read) takes whatever is staged, as `Cpu::find_job` does. The owner is written here as
//! `Feeder::submit_now` is: push; a submission (`submitted`, `wake_if_needed`) when the
//! push found the stage empty or published it; the job submitted directly when a worker
//! holds the stage. The last job to run shuts the pool down.
//!
//! A job left staged shows as a deadlock: every worker waits on the condvar, while the
//! main thread joins them.

use super::model_bounded;
use crate::pool::sleep::{Search, Sleep};
use crate::pool::stage::{Pushed, Stage, Took};
use crate::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Acquire, Ordering::Release, Ordering::SeqCst};
use loom::sync::Arc;
use loom::thread;

struct Pool {
    sleep: Sleep,
    /// Jobs visible to every worker (the feeder's deque and the workers' own, as one).
    queued: AtomicUsize,
    stage: Stage<()>,
    ran: AtomicUsize,
    jobs: usize,
    shutdown: AtomicBool,
}

impl Pool {
    fn new(jobs: usize, workers: usize) -> Pool {
        Pool {
            sleep: Sleep::new(workers, || 2),
            queued: AtomicUsize::new(0),
            stage: Stage::default(),
            ran: AtomicUsize::new(0),
            jobs,
            shutdown: AtomicBool::new(false),
        }
    }

    /// `Feeder::submit_now` on a staging feeder.
    fn submit_now(&self) {
        let submission = match self.stage.push((), |()| {
            self.queued.fetch_add(1, Release);
        }) {
            Pushed::Busy(()) => {
                // Cpu::submit_to
                self.queued.fetch_add(1, Release);
                true
            }
            Pushed::Behind => false,
            Pushed::First | Pushed::Published => true,
        };
        if submission {
            self.sleep.submitted();
            self.sleep.wake_if_needed();
        }
    }
}

struct Queues<'a>(&'a Pool);

impl Queues<'_> {
    fn take_queued(&self) -> Option<()> {
        let queue = &self.0.queued;
        let mut n = queue.load(Acquire);
        while n > 0 {
            match queue.compare_exchange(n, n - 1, Acquire, Acquire) {
                Ok(_) => return Some(()),
                Err(now) => n = now,
            }
        }
        None
    }
}

impl Search for Queues<'_> {
    type Job = ();

    fn find(&mut self) -> Option<()> {
        self.take_queued()
    }

    fn find_last(&mut self) -> Option<()> {
        self.take_queued().or_else(|| {
            match self.0.stage.take(1, |()| {
                self.0.queued.fetch_add(1, Release);
            }) {
                Took::Jobs(n, left) => {
                    if left {
                        // Cpu::find_job: jobs left staged (TAKE_MAX is 1 here).
                        self.0.sleep.submitted();
                    }
                    if n > 1 {
                        // Cpu::find_job: jobs moved where a worker that looked a moment ago
                        // did not see them.
                        self.0.sleep.submitted();
                    }
                    self.take_queued()
                }
                Took::Nothing | Took::Wanted => None,
            }
        })
    }

    fn queued(&self) -> bool {
        self.0.queued.load(Acquire) > 0 || !self.0.stage.is_empty()
    }

    fn run(&mut self, (): ()) -> bool {
        let pool = self.0;
        assert!(!pool.shutdown.load(SeqCst), "a job still queued at shutdown");
        if pool.ran.fetch_add(1, SeqCst) + 1 == pool.jobs {
            pool.shutdown.store(true, SeqCst);
            pool.sleep.wake_all();
        }
        true
    }

    fn shutting_down(&self) -> bool {
        self.0.shutdown.load(SeqCst)
    }
}

/// The owner stages `jobs` jobs one call at a time while `workers` workers run, and
/// then does nothing more: every job runs.
fn staged_jobs_run(jobs: usize, workers: usize) {
    model_bounded(2, move || {
        let pool = Arc::new(Pool::new(jobs, workers));
        let workers: Vec<_> = (0..workers)
            .map(|_| {
                let pool = pool.clone();
                thread::spawn(move || assert!(pool.sleep.work(&mut Queues(&pool))))
            })
            .collect();
        for _ in 0..jobs {
            pool.submit_now();
        }
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(pool.ran.load(SeqCst), jobs);
    });
}

/// One job: staged into an empty stage, a submission.
#[test]
fn loom_pool_stage_one_job() {
    staged_jobs_run(1, 2);
}

/// Two jobs: the second staged behind the first (no submission of its own), or pushed
/// while a worker takes the first, or while a worker wants what is staged.
#[test]
fn loom_pool_stage_two_jobs() {
    staged_jobs_run(2, 2);
}

/// Two jobs and one worker, whose last look may find the owner pushing the second: no
/// other worker comes to take what the look leaves.
#[test]
fn loom_pool_stage_one_worker() {
    staged_jobs_run(2, 1);
}
