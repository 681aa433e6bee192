//! A pool's statistics, read from any thread: its threads, what they run and what
//! waits. The counters a worker keeps per job are its own (cpu.rs `WorkerCounters`:
//! single-writer, on a line of its own); an IO pool counts under the lock its threads
//! take for each job anyway. Reading takes no lock a CPU worker takes per job.

use super::cpu::Cpu;
use super::defaults;
use super::{Flavor, Kind, Pool};
use std::sync::atomic::Ordering::{Relaxed, SeqCst};

/// What [`Pool::stats`] reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Threads alive, and how many of them run a job now.
    pub threads: u64,
    pub busy: u64,
    /// Jobs submitted and not started.
    pub queued: u64,
    /// Jobs run to their end since the pool was made.
    pub run: u64,
    /// CPU pools: jobs a worker took from another worker's deque.
    pub steals: u64,
    /// Threads started, and threads that ended, since the pool was made.
    pub started: u64,
    pub retired: u64,
}

impl Pool {
    /// The pool's statistics now (each exact, not all taken at one instant).
    pub fn stats(&self) -> PoolStats {
        let started = self.common.started.load(SeqCst);
        let retired = self.common.retired.load(SeqCst);
        let mut stats =
            PoolStats { started, retired, threads: started.saturating_sub(retired), ..PoolStats::default() };
        match &self.flavor {
            Flavor::Cpu(cpu) => cpu_stats(cpu, &mut stats),
            Flavor::Io(io) => {
                let (_, busy, queued, run) = io.counts();
                stats.busy = busy as u64;
                stats.queued = queued as u64;
                stats.run = run;
            }
        }
        stats
    }
}

fn cpu_stats(cpu: &Cpu, stats: &mut PoolStats) {
    for c in cpu.counters.iter() {
        stats.run += c.ran.load(Relaxed);
        stats.steals += c.steals.load(Relaxed);
        stats.busy += c.busy.load(Relaxed) as u64;
    }
    let mut queued = cpu.injector.len() + cpu.stealers.iter().map(|s| s.len()).sum::<usize>();
    let feeders = cpu.feeders.lock().unwrap_or_else(|p| p.into_inner());
    for (_, stealer, stage) in feeders.iter() {
        queued += stealer.len() + stage.as_ref().map_or(0, |s| s.len());
    }
    stats.queued = queued as u64;
}

/// The statistics of the default pool of `kind`: all zero while it has not been made.
pub fn default_stats(kind: Kind) -> PoolStats {
    defaults::existing(kind).map_or_else(PoolStats::default, |pool| pool.stats())
}
