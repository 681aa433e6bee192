//! A loop's counters, for `weft_loop_get_stats`: written by the loop thread alone,
//! read by any thread.
//!
//! Every counter has one writer, the thread running the loop (its passes and
//! callbacks), so an increment is a Relaxed load and store, no locked instruction: on
//! x86 a plain add to memory. A reader loads each counter Relaxed: the values are each
//! exact, but a read taken while the loop runs is not one instant (a callback counted
//! before the pass that ran it, say). Reading never takes a lock of the loop's and
//! never writes a line the loop writes: it does not slow the loop.
//!
//! Timer lateness (how long after its deadline a timer's callback started) is kept for
//! the last [`WINDOW`] timer calls in a ring; a reader copies the ring and takes its
//! percentiles.
//!
//! Busy and idle time are measured once a reader has asked for them (`timing`), as
//! libuv measures idle time only once configured to: two clock reads per pass are not
//! spent on a loop nobody watches.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// How many timer calls the lateness percentiles cover.
pub(crate) const WINDOW: usize = 1024;

/// The kinds of callback a loop runs, numbered as the header's `WEFT_CALLBACK_*`; the
/// counters and the watchdog's reports name callbacks by them. `Snapshot::callbacks`
/// is in this order (index: the number less one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Callback {
    Timer = 1,
    Post = 2,
    Fd = 3,
    Signal = 4,
    Event = 5,
    Done = 6,
}

pub struct Metrics {
    passes: AtomicU64,
    callbacks: [AtomicU64; 6],
    busy_ns: AtomicU64,
    idle_ns: AtomicU64,
    timing: AtomicBool,
    late_next: AtomicU64,
    late: Box<[AtomicU64; WINDOW]>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            passes: AtomicU64::new(0),
            callbacks: Default::default(),
            busy_ns: AtomicU64::new(0),
            idle_ns: AtomicU64::new(0),
            timing: AtomicBool::new(false),
            late_next: AtomicU64::new(0),
            late: Box::new([const { AtomicU64::new(0) }; WINDOW]),
        }
    }
}

/// Adds `n` to a counter only the calling thread writes.
#[inline(always)]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

/// What a reader gets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub passes: u64,
    pub callbacks: [u64; 6],
    pub busy_ns: u64,
    pub idle_ns: u64,
    /// Timer lateness over the window: median, 99th percentile and maximum, in ns
    /// (zeros before the first timer call).
    pub late_p50_ns: u64,
    pub late_p99_ns: u64,
    pub late_max_ns: u64,
    /// How many timer calls the percentiles cover (at most `WINDOW`).
    pub late_samples: u64,
}

impl Metrics {
    /// The loop thread ran a callback of `kind`.
    #[inline(always)]
    pub fn callback(&self, kind: Callback) {
        bump(&self.callbacks[kind as usize - 1], 1);
    }

    /// The loop thread made a pass.
    #[inline(always)]
    pub fn pass(&self) {
        bump(&self.passes, 1);
    }

    /// Whether busy and idle time are measured (a reader asked for them).
    #[inline(always)]
    pub fn timing(&self) -> bool {
        self.timing.load(Relaxed)
    }

    /// The loop thread spent `busy` ns in a pass and `idle` ns waiting before it.
    pub fn time(&self, busy: u64, idle: u64) {
        bump(&self.busy_ns, busy);
        bump(&self.idle_ns, idle);
    }

    /// A timer's callback started `late_ns` after its deadline.
    #[inline]
    pub fn lateness(&self, late_ns: u64) {
        let n = self.late_next.load(Relaxed);
        self.late[(n % WINDOW as u64) as usize].store(late_ns, Relaxed);
        self.late_next.store(n + 1, Relaxed);
    }

    /// The counters now (any thread); turns timing on for later passes.
    pub fn snapshot(&self) -> Snapshot {
        self.timing.store(true, Relaxed);
        let samples = self.late_next.load(Relaxed).min(WINDOW as u64) as usize;
        let mut late: Vec<u64> = self.late[..samples].iter().map(|l| l.load(Relaxed)).collect();
        late.sort_unstable();
        let at = |q: f64| late.get(((samples as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0);
        Snapshot {
            passes: self.passes.load(Relaxed),
            callbacks: std::array::from_fn(|i| self.callbacks[i].load(Relaxed)),
            busy_ns: self.busy_ns.load(Relaxed),
            idle_ns: self.idle_ns.load(Relaxed),
            late_p50_ns: at(0.5),
            late_p99_ns: at(0.99),
            late_max_ns: late.last().copied().unwrap_or(0),
            late_samples: samples as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_percentiles_cover_the_last_window() {
        let m = Metrics::default();
        assert_eq!(m.snapshot().late_samples, 0);
        for i in 1..=100u64 {
            m.lateness(i * 1000);
        }
        let s = m.snapshot();
        assert_eq!((s.late_samples, s.late_p50_ns, s.late_p99_ns, s.late_max_ns), (100, 50_000, 99_000, 100_000));
        // the window slides: 2000 more, all 7 us
        for _ in 0..2000 {
            m.lateness(7000);
        }
        let s = m.snapshot();
        assert_eq!((s.late_samples, s.late_p50_ns, s.late_max_ns), (WINDOW as u64, 7000, 7000));
    }

    #[test]
    fn counters_count_and_timing_turns_on_when_read() {
        let m = Metrics::default();
        m.callback(Callback::Post);
        m.callback(Callback::Post);
        m.callback(Callback::Done);
        m.pass();
        assert!(!m.timing());
        let s = m.snapshot();
        assert!(m.timing());
        assert_eq!(s.callbacks, [0, 2, 0, 0, 0, 1]);
        assert_eq!(s.passes, 1);
        m.time(5, 7);
        assert_eq!((m.snapshot().busy_ns, m.snapshot().idle_ns), (5, 7));
    }
}
