//! Watching the loop: its statistics (its counters, `crate::metrics`, the loop
//! thread's, with the depth of its queues and its registrations by kind, read from any
//! thread) and its slow-callback watchdog (`crate::watchdog`).

use super::{Handler, Loop};
use crate::error::Result;
use crate::metrics::{Metrics, Snapshot};
use crate::watchdog::Watchdog;
use std::sync::atomic::Ordering::Relaxed;

/// What [`Loop::stats`] reads.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub metrics: Snapshot,
    /// Posts, events and other records queued for the loop and not yet run.
    pub queued_records: u64,
    /// Tasks on the loop or a pool whose `done` has not run.
    pub tasks: u64,
    /// Process tasks waiting for a slot or running, and adopted children.
    pub process_tasks: u64,
    /// Process tasks running in a child.
    pub children: u64,
    pub timers: u64,
    pub fd_watches: u64,
    pub signal_watches: u64,
    pub subscriptions: u64,
}

impl<H: Handler> Loop<H> {
    /// The loop's slow-callback watchdog: the C layer marks each callback's start and
    /// end in it, and `weft_loop_set_watchdog` sets it.
    pub fn watchdog(&self) -> &Watchdog {
        &self.watchdog
    }

    /// The watchdog, to set: refused once the loop is closed (or in a forked child).
    pub fn watchdog_if_open(&self) -> Result<&Watchdog> {
        self.usable()?;
        Ok(&self.watchdog)
    }

    /// The loop thread's counters (the C layer counts each callback it runs).
    #[inline(always)]
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The loop's statistics; any thread. The core lock is taken for a few loads (never
    /// held by the loop while a callback runs); counts kept as registrations come and
    /// go, so the cost does not grow with them. From the first call on, the loop
    /// measures its busy and idle time and its timers' lateness.
    pub fn stats(&self) -> Result<Stats> {
        self.usable()?;
        let metrics = self.metrics.snapshot(crate::sys::coarse_now_ns());
        let queued_records = self.inbox.queued();
        let owned_tasks = self.table_live.load(Relaxed) as u64;
        let owned_timers = self.timers_live.load(Relaxed).saturating_sub(self.timers_foreign.load(Relaxed)) as u64;
        let core = self.lock();
        let counts = core.entries.counts();
        let (running, _waiting) = core.children.counts();
        Ok(Stats {
            metrics,
            queued_records,
            tasks: owned_tasks + counts.tasks as u64,
            process_tasks: counts.processes as u64,
            children: running as u64,
            timers: owned_timers + counts.timers as u64,
            fd_watches: counts.fds as u64,
            signal_watches: counts.signals as u64,
            subscriptions: counts.subscriptions as u64,
        })
    }
}
