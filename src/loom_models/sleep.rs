//! The CPU pool's sleep protocol (see `crate::pool::sleep` and `src/pool/SLEEP.md`):
//! no job stays queued while every worker sleeps, the last searcher to find a job wakes
//! a sleeper for the rest, and shutdown wakes every worker.
//!
//! The workers run the real loop, [`Sleep::work`], over a model queue: a count of
//! queued jobs (an atomic, whose looks may be stale as crossbeam's may, so that the
//! fences are what orders them; a mutex would order them itself). Each find takes one
//! job: the batch steal, and its `events` bump, are not modelled. The submitter is
//! written here, calling the same `Sleep` methods in the same order as `Cpu::submit_to`
//! (push; `submitted`; `wake_if_needed`) and `Feeder::publish` (a midway publication:
//! `begin_burst`; push; `submitted`; `all_asleep`, then `wake_one` or a wake-up owed;
//! the final one: `end_burst`; `wake_if_needed` for the one owed). Shutdown is the
//! pool's: the flag, then `wake_all`; here the last job sets it (a job's run checks
//! it, as `Cpu`'s does).
//!
//! A lost wake-up shows as a deadlock: every worker waits on the condvar with a job
//! queued, while the main thread joins them.
//!
//! At most 2 preemptions: the workers' loops make the state space grow fast (at 3,
//! `loom_sleep_last_searcher` takes 500 000 executions and two minutes, and
//! `loom_sleep_wakeup` more than five), while every mutant in tests/loom/mutants.py
//! fails at 2.

use super::model_bounded;
use crate::pool::sleep::{Search, Sleep};
use crate::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Acquire, Ordering::Release, Ordering::SeqCst};
use crate::sync::{Condvar, Mutex};
use loom::sync::Arc;
use loom::thread;

const WORKERS: usize = 2;

/// A pool of [`WORKERS`] on as many CPUs, with a model queue.
struct Pool {
    sleep: Sleep,
    /// How many jobs are queued, in two queues (as the injector and a feeder's deque).
    queued: [AtomicUsize; 2],
    /// How many jobs have run; the last one shuts the pool down.
    ran: AtomicUsize,
    jobs: usize,
    shutdown: AtomicBool,
    /// With `waits`: the first job to start waits (on `done`) until another has run.
    started: AtomicUsize,
    waits: bool,
    done: Mutex<bool>,
    done_cv: Condvar,
}

impl Pool {
    fn new(jobs: usize, waits: bool) -> Pool {
        Pool {
            sleep: Sleep::new(WORKERS, || WORKERS),
            queued: [AtomicUsize::new(0), AtomicUsize::new(0)],
            ran: AtomicUsize::new(0),
            jobs,
            shutdown: AtomicBool::new(false),
            started: AtomicUsize::new(0),
            waits,
            done: Mutex::new(false),
            done_cv: Condvar::new(),
        }
    }

    /// Queues `n` jobs on queue `q` (visible to any worker that looks from now on).
    fn push(&self, q: usize, n: usize) {
        self.queued[q].fetch_add(n, Release);
    }

    /// `Cpu::submit_to`: `n` jobs as one submission, on queue `q`.
    fn submit(&self, q: usize, n: usize) {
        self.push(q, n);
        self.sleep.submitted();
        self.sleep.wake_if_needed();
    }

    /// A worker's loop, as `Cpu::work` runs it.
    fn work(&self) {
        assert!(self.sleep.work(&mut Queues(self)));
    }
}

struct Queues<'a>(&'a Pool);

impl Search for Queues<'_> {
    type Job = ();

    fn find(&mut self) -> Option<()> {
        for queue in &self.0.queued {
            let mut n = queue.load(Acquire);
            while n > 0 {
                match queue.compare_exchange(n, n - 1, Acquire, Acquire) {
                    Ok(_) => return Some(()),
                    Err(now) => n = now,
                }
            }
        }
        None
    }

    fn queued(&self) -> bool {
        self.0.queued.iter().any(|queue| queue.load(Acquire) > 0)
    }

    fn run(&mut self, (): ()) -> bool {
        let pool = self.0;
        assert!(!pool.shutdown.load(SeqCst), "a job still queued at shutdown");
        if pool.waits && pool.started.fetch_add(1, SeqCst) == 0 {
            // Needs another job to run meanwhile: on another worker, woken if asleep.
            let mut done = pool.done.lock().unwrap();
            while !*done {
                done = pool.done_cv.wait(done).unwrap();
            }
        } else if pool.waits {
            *pool.done.lock().unwrap() = true;
            pool.done_cv.notify_all();
        }
        if pool.ran.fetch_add(1, SeqCst) + 1 == pool.jobs {
            // Pool::shutdown: the flag, then every sleeper woken.
            pool.shutdown.store(true, SeqCst);
            pool.sleep.wake_all();
        }
        true
    }

    fn shutting_down(&self) -> bool {
        self.0.shutdown.load(SeqCst)
    }
}

/// Spawns the workers, runs `submit` on this thread, and joins them: they leave only
/// once every job has run.
fn run_pool(pool: Arc<Pool>, submit: impl FnOnce(&Pool)) {
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let pool = pool.clone();
            thread::spawn(move || pool.work())
        })
        .collect();
    submit(&pool);
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(pool.ran.load(SeqCst), pool.jobs);
}

/// A job submitted alone (`Cpu::submit_to`), then one in a burst: a staging feeder's
/// midway publication, which wakes a worker only if all sleep and otherwise owes a
/// wake-up to the final publication (here with nothing left to publish).
#[test]
fn loom_sleep_wakeup() {
    model_bounded(2, || {
        run_pool(Arc::new(Pool::new(2, false)), |pool| {
            pool.submit(0, 1);
            // Feeder::publish(midway)
            pool.sleep.begin_burst();
            pool.push(0, 1);
            pool.sleep.submitted();
            let owes = if pool.sleep.all_asleep() {
                pool.sleep.wake_one();
                false
            } else {
                true
            };
            // Feeder::publish(final), with nothing staged
            pool.sleep.end_burst();
            if owes {
                pool.sleep.wake_if_needed();
            }
        });
    });
}

/// Two jobs in one submission, the first of which waits until the other has run: the
/// worker that finds the first is the last searcher, so it wakes a sleeper for the
/// second (SLEEP.md, "Searchers"); without that, the second would wait for the first.
#[test]
fn loom_sleep_last_searcher() {
    model_bounded(2, || {
        run_pool(Arc::new(Pool::new(2, true)), |pool| pool.submit(0, 2));
    });
}

/// The same with the two jobs submitted one after the other, on two queues: the last
/// searcher's look at the queues after it stops searching must see the second job, or
/// its submitter must see no worker searching (a Dekker pair: `run_found`'s fence).
#[test]
fn loom_sleep_last_searcher_two_queues() {
    model_bounded(2, || {
        run_pool(Arc::new(Pool::new(2, true)), |pool| {
            pool.submit(0, 1);
            pool.submit(1, 1);
        });
    });
}
