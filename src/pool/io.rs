//! The IO pool: an elastic FIFO for blocking work.
//!
//! One FIFO queue under a mutex and a condvar. A submission that finds no idle thread
//! starts one, up to the bound; an idle thread that waits longer than the keep-alive
//! exits. Threads are counted under the same mutex, so "no idle thread" is exact.

use super::job::JobRef;
use super::thread::Common;
use crate::error::{Code, Error, Result};
use std::collections::VecDeque;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

struct IoQueue {
    jobs: VecDeque<JobRef>,
    threads: usize,
    /// Threads waiting for work that nobody has woken yet.
    idle: usize,
    /// Wake-ups sent and not yet taken by a waiting thread.
    permits: usize,
    next_index: usize,
    /// Jobs run to their end, for statistics.
    ran: u64,
}

pub(super) struct Io {
    common: Arc<Common>,
    queue: Mutex<IoQueue>,
    ready: Condvar,
    bound: usize,
}

impl Io {
    /// A pool of at most `bound` threads, none started yet.
    pub(super) fn new(common: Arc<Common>, bound: usize) -> Io {
        Io {
            common,
            queue: Mutex::new(IoQueue {
                jobs: VecDeque::new(),
                threads: 0,
                idle: 0,
                permits: 0,
                next_index: 0,
                ran: 0,
            }),
            ready: Condvar::new(),
            bound,
        }
    }

    fn lock(&self) -> MutexGuard<'_, IoQueue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pop(&self, queue: &mut IoQueue) -> Option<JobRef> {
        queue.jobs.pop_front()
    }

    fn work(self: &Arc<Self>) {
        let mut queue = self.lock();
        loop {
            if let Some(job) = self.pop(&mut queue) {
                drop(queue);
                job.run();
                if crate::fork::is_child() {
                    std::mem::forget(self.clone()); // touch nothing inherited
                    return;
                }
                queue = self.lock();
                queue.ran += 1;
                continue;
            }
            if self.common.shutdown.load(SeqCst) {
                break;
            }
            // Wait for a permit (a submitter's wake-up) or the keep-alive.
            queue.idle += 1;
            let deadline = std::time::Instant::now() + self.common.options.keep_alive;
            let woken = loop {
                if queue.permits > 0 {
                    queue.permits -= 1;
                    break true;
                }
                if self.common.shutdown.load(SeqCst) {
                    break false;
                }
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break false;
                }
                queue = self.ready.wait_timeout(queue, left).unwrap_or_else(|p| p.into_inner()).0;
            };
            if !woken {
                queue.idle -= 1;
                if queue.jobs.is_empty() {
                    break;
                }
            }
        }
        queue.threads -= 1;
    }

    pub(super) fn submit(self: &Arc<Self>, job: JobRef) -> Result<()> {
        let mut queue = self.lock();
        // Checked under the lock that shutdown takes to drain the queue.
        if self.common.shutdown.load(SeqCst) {
            drop(queue);
            job.abandon();
            return Err(Error::new(Code::Closed, "the pool is shutting down"));
        }
        queue.jobs.push_back(job);
        if queue.idle > 0 {
            // One permit per waiting thread woken: no redundant wake-ups.
            queue.idle -= 1;
            queue.permits += 1;
            drop(queue);
            self.ready.notify_one();
            return Ok(());
        }
        // No thread is waiting: start one, up to the bound. (Waiting for a busy thread
        // instead could deadlock tasks that wait for each other.)
        if queue.threads < self.bound {
            queue.threads += 1;
            let index = queue.next_index;
            queue.next_index += 1;
            drop(queue);
            let io = self.clone();
            if let Err(e) = self.common.spawn_thread(index, move || io.work()) {
                let mut queue = self.lock();
                queue.threads -= 1;
                if queue.threads == 0 {
                    // No thread will ever take these: give them up.
                    let jobs = std::mem::take(&mut queue.jobs);
                    drop(queue);
                    jobs.into_iter().for_each(|job| job.abandon());
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Gives up every queued job (the pool is shutting down).
    pub(super) fn abandon_queued(&self) {
        let jobs = std::mem::take(&mut self.lock().jobs);
        for job in jobs {
            job.abandon();
        }
    }

    /// (threads, busy threads, queued jobs, jobs run), for statistics.
    pub(super) fn counts(&self) -> (usize, usize, usize, u64) {
        let queue = self.lock();
        (queue.threads, queue.threads - queue.idle, queue.jobs.len(), queue.ran)
    }

    pub(super) fn wake_all(&self) {
        let _queue = self.lock();
        self.ready.notify_all();
    }
}
