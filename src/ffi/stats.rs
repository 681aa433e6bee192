//! Loop and pool statistics: `weft_loop_get_stats`, `weft_pool_get_stats`.

use super::args::out_struct;
use super::guard::guard;
use super::handle::{weft_loop, weft_pool};
use super::pool::{the_pool, weft_pool_kind, WEFT_POOL_CPU, WEFT_POOL_IO};
use super::r#loop::the_loop;
use crate::error::Error;
use crate::pool::{self, PoolStats};
use std::ffi::c_int;

/// What `weft_loop_get_stats` fills: set `size = sizeof(weft_loop_stats)` first (weft
/// fills the fields your program knows and sets `size` to the bytes it filled).
#[repr(C)]
#[derive(Default)]
pub struct weft_loop_stats {
    /// sizeof(weft_loop_stats) as your program sees it.
    pub size: usize,
    /// Passes the loop has made (each `weft_loop_run` makes one or more).
    pub passes: u64,
    /// Timer callbacks run.
    pub timer_callbacks: u64,
    /// Post callbacks run.
    pub post_callbacks: u64,
    /// fd watch callbacks run.
    pub fd_callbacks: u64,
    /// Signal watch callbacks run.
    pub signal_callbacks: u64,
    /// Event (subscription) callbacks run.
    pub event_callbacks: u64,
    /// Tasks' `done` callbacks run.
    pub done_callbacks: u64,
    /// Nanoseconds spent in passes (callbacks and the loop's own work), counted from
    /// the first `weft_loop_get_stats` on this loop (as libuv counts idle time only once
    /// asked to), the pass in progress included (a callback that blocks the loop counts
    /// while it runs): busy / (busy + idle) is the loop's utilisation between two reads.
    pub busy_ns: u64,
    /// Nanoseconds waiting for work inside `weft_loop_run`, counted likewise.
    pub idle_ns: u64,
    /// How late timers' callbacks started (ns after their deadline) over the last 1024
    /// timer calls since the first `weft_loop_get_stats`: the median,
    pub timer_late_p50_ns: u64,
    /// the 99th percentile,
    pub timer_late_p99_ns: u64,
    /// and the maximum;
    pub timer_late_max_ns: u64,
    /// how many calls they cover (0: none yet, and the three are 0).
    pub timer_late_samples: u64,
    /// Posts, events and task records queued for the loop and not yet run.
    pub queued_records: u64,
    /// Tasks finished whose `done` waits for a later pass (the pass limit).
    pub waiting_completions: u64,
    /// Tasks on the loop or a pool whose `done` has not run.
    pub tasks: u64,
    /// Process tasks waiting for a slot or running, and adopted children.
    pub process_tasks: u64,
    /// Process tasks running in a child now.
    pub children: u64,
    /// Timers registered (one-shot ones until they fire).
    pub timers: u64,
    /// fd watches registered.
    pub fd_watches: u64,
    /// Signal watches registered.
    pub signal_watches: u64,
    /// Subscriptions registered.
    pub subscriptions: u64,
}

/// What `weft_pool_get_stats` fills: set `size = sizeof(weft_pool_stats)` first.
#[repr(C)]
#[derive(Default)]
pub struct weft_pool_stats {
    /// sizeof(weft_pool_stats) as your program sees it.
    pub size: usize,
    /// Threads alive.
    pub threads: u64,
    /// Threads running a task now.
    pub busy_threads: u64,
    /// Tasks submitted and not yet started (CPU pools: those a loop's owner spawned
    /// outside callbacks are counted 32 at a time, so this is a lower bound).
    pub queued: u64,
    /// Tasks run to their end since the pool was made (counted as a task returns, a
    /// moment after its `done` may have run).
    pub tasks_run: u64,
    /// CPU pools: tasks a thread took from another thread's queue.
    pub steals: u64,
    /// Threads started since the pool was made.
    pub threads_started: u64,
    /// Threads that exited since the pool was made (an IO pool's idle ones).
    pub threads_retired: u64,
}

/// Fills `*stats` with the loop's counters (see `weft_loop_stats`). Any thread. It
/// writes nothing the loop writes per callback and takes the loop's lock only for a few
/// loads, never while the loop runs a callback: reading does not slow the loop. Each
/// counter is exact, but they are not all taken at one instant while the loop runs.
/// Returns `WEFT_OK`, `WEFT_ERR_NULL`, `WEFT_ERR_INVALID` (a bad `size`),
/// `WEFT_ERR_CLOSED` (the loop is being freed), `WEFT_ERR_FORKED`.
#[no_mangle]
pub extern "C" fn weft_loop_get_stats(lp: *const weft_loop, stats: *mut weft_loop_stats) -> c_int {
    guard("weft_loop_get_stats", || {
        let s = the_loop(lp as *mut weft_loop)?.stats()?;
        let m = &s.metrics;
        let full = weft_loop_stats {
            size: std::mem::size_of::<weft_loop_stats>(),
            passes: m.passes,
            timer_callbacks: m.callbacks[0],
            post_callbacks: m.callbacks[1],
            fd_callbacks: m.callbacks[2],
            signal_callbacks: m.callbacks[3],
            event_callbacks: m.callbacks[4],
            done_callbacks: m.callbacks[5],
            busy_ns: m.busy_ns,
            idle_ns: m.idle_ns,
            timer_late_p50_ns: m.late_p50_ns,
            timer_late_p99_ns: m.late_p99_ns,
            timer_late_max_ns: m.late_max_ns,
            timer_late_samples: m.late_samples,
            queued_records: s.queued_records,
            waiting_completions: m.waiting_completions,
            tasks: s.tasks,
            process_tasks: s.process_tasks,
            children: s.children,
            timers: s.timers,
            fd_watches: s.fd_watches,
            signal_watches: s.signal_watches,
            subscriptions: s.subscriptions,
        };
        out_struct(stats, full, "stats")?;
        Ok(0)
    })
}

/// Fills `*stats` with a pool's counters (see `weft_pool_stats`); `pool` NULL: the
/// default pool of `kind` (all zero until its first task; `kind` is ignored with a
/// pool). Any thread; reading takes no lock a CPU pool's thread takes per task.
/// Returns `WEFT_OK`, `WEFT_ERR_NULL` (stats), `WEFT_ERR_INVALID` (a bad `size` or
/// `kind`, a freed pool).
#[no_mangle]
pub extern "C" fn weft_pool_get_stats(
    pool: *const weft_pool,
    kind: weft_pool_kind,
    stats: *mut weft_pool_stats,
) -> c_int {
    guard("weft_pool_get_stats", || {
        let s: PoolStats = if pool.is_null() {
            let kind = match kind {
                WEFT_POOL_CPU => pool::Kind::Cpu,
                WEFT_POOL_IO => pool::Kind::Io,
                other => return Err(Error::invalid(format!("kind {other} is not a WEFT_POOL_* value"))),
            };
            pool::default_stats(kind)
        } else {
            the_pool(pool as *mut weft_pool, "pool")?.stats()
        };
        let full = weft_pool_stats {
            size: std::mem::size_of::<weft_pool_stats>(),
            threads: s.threads,
            busy_threads: s.busy,
            queued: s.queued,
            tasks_run: s.run,
            steals: s.steals,
            threads_started: s.started,
            threads_retired: s.retired,
        };
        out_struct(stats, full, "stats")?;
        Ok(0)
    })
}
