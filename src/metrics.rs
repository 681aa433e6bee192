//! A loop's counters, for `weft_loop_get_stats`: written by the loop thread alone,
//! read by any thread.
//!
//! Every counter has one writer, the thread running the loop (its passes and
//! callbacks), so an increment is a Relaxed load and store, no locked instruction: on
//! x86 a plain add to memory, on a line the loop thread alone writes. A reader loads
//! each counter Relaxed: the values are each exact, but a read taken while the loop
//! runs is not one instant (a callback counted before the pass that ran it, say).
//! Reading never takes a lock of the loop's and never writes a line the loop writes
//! per callback: it does not slow the loop.
//!
//! What costs a clock read is measured only once a reader has asked (`watched`), as
//! libuv measures idle time only once configured to: busy and idle time (a read when
//! `run` begins and ends, and two around each wait that may block; none in a pass that
//! does not wait) and timer lateness (one read per timer call, kept for the last [`WINDOW`]
//! calls in a ring that is allocated then; read on the time-stamp counter where the CPU
//! vouches for it, see [`clock`]). A loop nobody watches pays two plain adds
//! per pass and one per callback.
//!
//! Busy and idle time are read on the coarse clock (`sys::coarse_now_ns`, a sixth of
//! a precise read's cost on a VM, in steps of a scheduler tick). Summed over many
//! passes the two are still right: each pass's readings telescope (busy + idle is the
//! time since the first read, to a step), and a pass shorter than a step is counted
//! as a whole step with the probability that a step falls inside it, as long as the
//! passes are not in step with the tick. Lateness, a single interval per sample, is
//! read on the precise clock, or on the counter scaled against it ([`clock`]: to a few
//! ns below a millisecond, precisely past one).

mod clock;

use crate::watchdog::Kind;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use std::sync::OnceLock;

/// How many timer calls the lateness percentiles cover.
pub(crate) const WINDOW: usize = 1024;

/// The number of callback kinds ([`Kind`]'s values are 1 to this).
const KINDS: usize = 6;

#[repr(align(64))]
#[derive(Default)]
pub struct Metrics {
    passes: AtomicU64,
    callbacks: [AtomicU64; KINDS],
    busy_ns: AtomicU64,
    idle_ns: AtomicU64,
    /// Where the busy time being counted began, or the wait in progress (while watched
    /// and `run` runs; 0: not counting).
    mark_ns: AtomicU64,
    /// A pass waits now (since `mark_ns`).
    in_wait: AtomicBool,
    /// Completions held back (by the pass limit) when the last pass ended.
    waiting: AtomicU64,
    watched: AtomicBool,
    late_next: AtomicU64,
    late: OnceLock<Box<[AtomicU64; WINDOW]>>,
    /// What lateness is read on (set up with `late`).
    clock: clock::LateClock,
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
    /// Callbacks run, by [`Kind`] (index: the kind's number less one).
    pub callbacks: [u64; KINDS],
    pub busy_ns: u64,
    pub idle_ns: u64,
    /// Timer lateness over the window: median, 99th percentile and maximum, in ns
    /// (zeros before the first timer call watched).
    pub late_p50_ns: u64,
    pub late_p99_ns: u64,
    pub late_max_ns: u64,
    /// How many timer calls the percentiles cover (at most `WINDOW`).
    pub late_samples: u64,
    pub waiting_completions: u64,
}

impl Metrics {
    /// The loop thread ran a callback of `kind`.
    #[inline(always)]
    pub fn callback(&self, kind: Kind) {
        bump(&self.callbacks[kind as usize - 1], 1);
    }

    /// Whether a reader has asked: time and lateness are measured from then on.
    #[inline(always)]
    pub fn watched(&self) -> bool {
        self.watched.load(Relaxed)
    }

    /// `run` began at `now_ns` (watched only): busy from here.
    pub fn run_began(&self, now_ns: u64) {
        self.mark_ns.store(now_ns, Relaxed);
    }

    /// The loop thread was busy until `now_ns` (watched only): `run` returns, or a pass
    /// is about to wait. Busy time is counted only inside `run`, and only here and at
    /// the end of a wait: passes that do not wait read no clock.
    pub fn busy_until(&self, now_ns: u64) {
        let mark = self.mark_ns.load(Relaxed);
        if mark != 0 {
            bump(&self.busy_ns, now_ns.saturating_sub(mark));
        }
        // After the count: a reader that sees the old mark sees the old count.
        self.mark_ns.store(now_ns, Release);
    }

    /// A pass is about to wait, from `now_ns` (watched only).
    pub fn wait_begins(&self, now_ns: u64) {
        self.in_wait.store(true, Release);
        self.busy_until(now_ns);
    }

    /// `run` returned at `now_ns` (watched only).
    pub fn run_ended(&self, now_ns: u64) {
        self.busy_until(now_ns);
        self.mark_ns.store(0, Relaxed);
    }

    /// The loop thread waited from `from_ns` to `to_ns` in a pass (watched only).
    pub fn waited(&self, from_ns: u64, to_ns: u64) {
        bump(&self.idle_ns, to_ns.saturating_sub(from_ns));
        self.mark_ns.store(to_ns, Release);
        self.in_wait.store(false, Release);
    }

    /// Busy time to `now_ns`, the pass in progress included (a reader's view: a callback
    /// that blocks the loop shows as busy while it runs, not once its pass ends). The
    /// count and the mark are read between two reads of the mark, again if it moved.
    fn busy_now(&self, now_ns: u64) -> u64 {
        for _ in 0..4 {
            let mark = self.mark_ns.load(Acquire);
            let busy = self.busy_ns.load(Acquire);
            let waiting = self.in_wait.load(Acquire);
            if self.mark_ns.load(Acquire) != mark {
                continue;
            }
            let live = if mark != 0 && !waiting { now_ns.saturating_sub(mark) } else { 0 };
            return busy + live;
        }
        self.busy_ns.load(Acquire)
    }

    /// The loop thread ended a pass, with `waiting` completions held back for the next.
    #[inline]
    pub fn passed(&self, waiting: usize) {
        bump(&self.passes, 1);
        if self.waiting.load(Relaxed) != waiting as u64 {
            self.waiting.store(waiting as u64, Relaxed);
        }
    }

    /// A timer due at `deadline_ns` (on `sys::now_ns`'s clock) is being called now
    /// (watched only): its lateness is kept.
    #[inline]
    pub fn timer_called(&self, deadline_ns: u64) {
        // After the ring: `late` set means the clock's `begin` has run (and is seen).
        if self.late.get().is_some() {
            self.lateness(self.clock.now_ns().saturating_sub(deadline_ns));
        }
    }

    /// A timer's callback started `late_ns` after its deadline (watched only).
    #[inline]
    fn lateness(&self, late_ns: u64) {
        let Some(late) = self.late.get() else { return };
        let n = self.late_next.load(Relaxed);
        late[(n % WINDOW as u64) as usize].store(late_ns, Relaxed);
        self.late_next.store(n + 1, Relaxed);
    }

    /// The counters at `now_ns` (the coarse clock; any thread); turns measuring on for
    /// later passes.
    pub fn snapshot(&self, now_ns: u64) -> Snapshot {
        let ring = self.late.get_or_init(|| {
            self.clock.begin();
            Box::new([const { AtomicU64::new(0) }; WINDOW])
        });
        self.watched.store(true, Relaxed);
        let samples = self.late_next.load(Relaxed).min(WINDOW as u64) as usize;
        let mut late: Vec<u64> = ring[..samples].iter().map(|l| l.load(Relaxed)).collect();
        late.sort_unstable();
        let at = |q: f64| late.get(((samples as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0);
        Snapshot {
            passes: self.passes.load(Relaxed),
            callbacks: std::array::from_fn(|i| self.callbacks[i].load(Relaxed)),
            busy_ns: self.busy_now(now_ns),
            idle_ns: self.idle_ns.load(Relaxed),
            late_p50_ns: at(0.5),
            late_p99_ns: at(0.99),
            late_max_ns: late.last().copied().unwrap_or(0),
            late_samples: samples as u64,
            waiting_completions: self.waiting.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_is_kept_once_watched_over_the_last_window() {
        let m = Metrics::default();
        m.lateness(5); // nobody watches yet: not kept
        assert_eq!(m.snapshot(0).late_samples, 0);
        for i in 1..=100u64 {
            m.lateness(i * 1000);
        }
        let s = m.snapshot(0);
        assert_eq!((s.late_samples, s.late_p50_ns, s.late_p99_ns, s.late_max_ns), (100, 50_000, 99_000, 100_000));
        // the window slides: 2000 more, all 7 us
        for _ in 0..2000 {
            m.lateness(7000);
        }
        let s = m.snapshot(0);
        assert_eq!((s.late_samples, s.late_p50_ns, s.late_max_ns), (WINDOW as u64, 7000, 7000));
    }

    #[test]
    fn counters_count_and_time_is_measured_once_read() {
        let m = Metrics::default();
        m.callback(Kind::Post);
        m.callback(Kind::Post);
        m.callback(Kind::Done);
        m.passed(3);
        assert!(!m.watched());
        let s = m.snapshot(0);
        assert!(m.watched());
        assert_eq!(s.callbacks, [0, 2, 0, 0, 0, 1]);
        assert_eq!((s.passes, s.waiting_completions), (1, 3));
        // run from 90: busy to 100, idle to 150, busy to 180, then outside run
        m.run_began(90);
        m.busy_until(100);
        m.waited(100, 150);
        m.passed(0);
        m.run_ended(180);
        m.busy_until(500); // not counting: run has returned
        let s = m.snapshot(0);
        assert_eq!((s.busy_ns, s.idle_ns, s.passes, s.waiting_completions), (40, 50, 2, 0));
    }

    #[test]
    fn a_pass_in_progress_counts_as_busy_and_a_wait_does_not() {
        let m = Metrics::default();
        m.snapshot(0);
        m.run_began(100);
        assert_eq!(m.snapshot(150).busy_ns, 50); // a callback blocks: busy while it runs
        m.wait_begins(160);
        assert_eq!(m.snapshot(500).busy_ns, 60); // waiting: not busy
        m.waited(160, 200);
        let s = m.snapshot(230);
        assert_eq!((s.busy_ns, s.idle_ns), (90, 40));
        m.run_ended(240);
        assert_eq!(m.snapshot(900).busy_ns, 100); // outside run: not counting
    }
}
