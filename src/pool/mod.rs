//! Worker pools: a work-stealing CPU pool and an elastic IO pool, behind one [`Pool`].
//!
//! Both run jobs ([`JobRef`]). A job is run once, or, if the pool shuts down before it
//! starts, abandoned once (so its task can report `Cancelled`): never both, never
//! neither.
//!
//! # Files
//!
//! * `mod.rs`: [`Pool`] (making, submitting, shutting down), its [`Options`], [`cores`].
//! * `job.rs`: [`Job`], and [`JobRef`], the thin pointer a queue holds, with its vtable.
//! * `thread.rs`: pool threads (plain pthreads, so a host's `pthread_exit` ends one
//!   cleanly), what both flavours share (`Common`), and the one thread-local that says
//!   what a thread knows of pools (`ThreadState`).
//! * `cpu.rs`: the CPU pool, its queues and work stealing; `SLEEP.md` writes the
//!   sleep protocol out whole (included in cpu's docs).
//! * `sleep.rs`: the sleep protocol's state and methods, and the workers' loop,
//!   generic over their queues (the loom model runs it on a model queue).
//! * `feeder.rs`: [`Feeder`], a loop's own deque into a CPU pool, and staging.
//! * `stage.rs`: a staging feeder's stage for submissions outside loop callbacks,
//!   which the workers take from (its protocol is written out there).
//! * `deferred.rs`: CPU-pool wake-ups deferred to a loop callback's end.
//! * `io.rs`: the IO pool, an elastic FIFO.
//! * `stats.rs`: a pool's statistics ([`PoolStats`]), read from any thread.
//! * `defaults.rs`: the process-wide default pools, their shutdown, and the pool epoch
//!   loops check their cached pools against.
//!
//! # What the files may not touch
//!
//! Only `sleep.rs` touches the sleep protocol's state (`events`, `sleepers`,
//! `searching`, `bursts`, the condvar and its waiter count); `cpu.rs` runs its workers'
//! loop (`Sleep::work`) over their queues. `feeder.rs` and `deferred.rs` are
//! submitters under the sleep protocol: they may push jobs, register and remove
//! feeders, and call the CPU pool's methods (`start`, `submit_to`, `abandon_queued`)
//! and its `Sleep`'s submitters' ones (`submitted`, `wake_*`, `all_asleep`, the burst
//! count); nothing else of it. `io.rs` keeps its queue to itself; `job.rs` knows no
//! pool; `thread.rs` knows the CPU pool and feeders only as its thread-local's
//! pointers, and each field of that thread-local (`ThreadState`) is written only by
//! the file its comment names. Nothing in this folder uses `crate::task` or the loop:
//! tasks are jobs to it.

mod cpu;
pub mod defaults;
mod deferred;
mod feeder;
mod io;
mod job;
pub(crate) mod sleep;
pub(crate) mod stage;
mod stats;
mod thread;

pub use deferred::{deferring_scope, deferring_wakeups, flush_deferred_wakeups, Deferring, Slice};
pub use feeder::{publish_staged, Feeder};
pub use job::{Job, JobHeader, JobRef, JobVTable};
pub use stats::{default_stats, PoolStats};

use crate::error::{Code, Error, Result};
use cpu::Cpu;
use io::Io;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;
use thread::Common;

/// Called on each pool thread when it starts and before it exits, with its index.
pub type Hook = Arc<dyn Fn(usize) + Send + Sync>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Cpu,
    Io,
}

#[derive(Clone)]
pub struct Options {
    pub kind: Kind,
    /// CPU: the number of threads (0: one per core). IO: the most threads (0: 64).
    pub threads: usize,
    /// Thread names are this prefix and the thread's index ("weft-cpu-0").
    pub name: String,
    /// 0: the platform default.
    pub stack_size: usize,
    /// IO: how long an idle thread waits for work before it exits (default 10 s).
    pub keep_alive: Duration,
    pub on_start: Option<Hook>,
    pub on_stop: Option<Hook>,
}

impl Options {
    pub fn new(kind: Kind) -> Options {
        Options {
            kind,
            threads: 0,
            name: match kind {
                Kind::Cpu => "weft-cpu".into(),
                Kind::Io => "weft-io".into(),
            },
            stack_size: 0,
            keep_alive: Duration::from_secs(10),
            on_start: None,
            on_stop: None,
        }
    }
}

/// The number of CPUs this process may use (affinity and cgroup quota respected).
/// Asked once: the standard library reads cgroup files for it every time.
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

enum Flavor {
    Cpu(Arc<Cpu>),
    Io(Arc<Io>),
}

/// A pool of threads that run jobs. Threads start lazily, on the first submission.
pub struct Pool {
    flavor: Flavor,
    common: Arc<Common>,
}

impl Pool {
    pub fn new(mut options: Options) -> Result<Pool> {
        crate::fork::check()?;
        crate::fork::install();
        if options.stack_size > 1 << 30 {
            return Err(Error::invalid(format!("stack_size {} is above the limit of 1 GiB", options.stack_size)));
        }
        if options.name.is_empty() || options.name.contains('\0') {
            return Err(Error::invalid(format!("name {:?} must be non-empty, without NUL", options.name)));
        }
        let limit = 4096;
        if options.threads > limit {
            return Err(Error::invalid(format!("threads {} is above the limit of {limit}", options.threads)));
        }
        if options.threads == 0 {
            options.threads = match options.kind {
                Kind::Cpu => cores(),
                Kind::Io => 64,
            };
        }
        let common = Common::new(options);
        let threads = common.options.threads;
        let flavor = match common.options.kind {
            Kind::Cpu => Flavor::Cpu(Arc::new(Cpu::new(common.clone(), threads))),
            Kind::Io => Flavor::Io(Arc::new(Io::new(common.clone(), threads))),
        };
        Ok(Pool { flavor, common })
    }

    pub fn kind(&self) -> Kind {
        self.common.options.kind
    }

    /// Queues `job`; Closed once the pool is shutting down (the job is abandoned).
    pub fn submit(&self, job: JobRef) -> Result<()> {
        if self.common.shutdown.load(SeqCst) {
            job.abandon();
            return Err(Error::new(Code::Closed, "the pool is shutting down"));
        }
        match &self.flavor {
            Flavor::Cpu(cpu) => cpu.submit(job),
            Flavor::Io(io) => io.submit(job),
        }
    }

    /// A feeder for this pool (CPU pools only): see [`Feeder`].
    pub fn feeder(&self) -> Option<Feeder> {
        match &self.flavor {
            Flavor::Cpu(cpu) => Some(Feeder::new(cpu, false)),
            Flavor::Io(_) => None,
        }
    }

    /// A staging feeder (see [`Feeder`]), boxed: the thread using it keeps its
    /// address while it holds staged jobs. For one thread's use only (a loop's own).
    pub fn staging_feeder(&self) -> Option<Box<Feeder>> {
        match &self.flavor {
            Flavor::Cpu(cpu) => Some(Box::new(Feeder::new(cpu, true))),
            Flavor::Io(_) => None,
        }
    }

    /// True once `shutdown` has begun.
    pub fn is_shut_down(&self) -> bool {
        self.common.shutdown.load(SeqCst)
    }

    /// True on one of this pool's threads.
    pub fn on_own_thread(&self) -> bool {
        self.common.on_own_thread().is_some()
    }

    /// Stops the pool: jobs that have not started are abandoned, running ones finish,
    /// and every thread is joined. Busy when called from one of the pool's threads.
    pub fn shutdown(&self) -> Result<()> {
        if self.on_own_thread() {
            return Err(Error::new(Code::Busy, "a pool cannot be freed from one of its own threads"));
        }
        self.common.shutdown.store(true, SeqCst);
        // Abandon what is queued, then wake everyone so they see the shutdown.
        match &self.flavor {
            Flavor::Cpu(cpu) => {
                cpu.abandon_queued();
                cpu.sleep.wake_all();
            }
            Flavor::Io(io) => {
                io.abandon_queued();
                io.wake_all();
            }
        }
        self.common.join_threads();
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if !crate::fork::is_child() {
            let _ = self.shutdown();
        }
    }
}
