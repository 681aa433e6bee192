//! The clock timer lateness is read on once a reader watches (`Metrics::timer_called`):
//! the CPU's time-stamp counter scaled to ns against precise reads where the CPU vouches
//! for the counter's rate, the precise clock (`sys::now_ns`) elsewhere.
//!
//! Why a counter will do: lateness is a statistic, not a deadline. What it must get
//! right is a timer's start behind a slow callback (that is what it is watched for),
//! and sub-millisecond values to well under a microsecond. A precise read costs 20-40
//! ns on a VM, about what the rest of a timer call costs; `rdtsc` about a third of it.
//!
//! The protocol (one writer, the loop thread, but for [`LateClock::begin`]):
//! * A *base* is a precise read taken between two counter reads no more than
//!   [`BRACKET`] ticks apart: the precise ns and the middle tick (a thread descheduled
//!   between the reads gives no base, after a second try; [`GIVE_UP`] such misses in a
//!   row, a clock that is a system call say, and the counter is not used again).
//! * A reading is the ticks since the base, scaled, plus the base's ns, as long as they
//!   are fewer than [`LIMIT_NS`]' worth: beyond that, before the scale is known, or
//!   with the counter behind the base (another core's), it is a precise read, which
//!   becomes the new base. So no reading extrapolates past 1 ms: its error is the
//!   base's (half a bracket at worst, a few ns in the common case) plus 1 ms times the
//!   scale's (below 1e-5: under 10 ns). A timer behind a callback of a millisecond or
//!   more is always read precisely: the lateness that matters is exact.
//! * The scale (ns per tick, 32.32 fixed point) is measured between the *calibration*
//!   base and a later base at least [`CALIBRATE_NS`] on (two bases' errors over 10 ms:
//!   below 1e-5), and re-measured at every base after; the calibration base moves up
//!   once it is [`RECALIBRATE_NS`] old, so the scale follows the last second (a VM moved
//!   to another host). The first reader's first read sets the first calibration base,
//!   so the scale is known 10 ms later (the loop need not have run timers by then).
//!
//! Where the counter is not vouched for (no invariant TSC, not x86_64, Miri), every
//! reading is precise, as before this clock.

use crate::sys;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// The farthest a reading extrapolates from its base.
const LIMIT_NS: u64 = 1_000_000;
/// The shortest span the scale is measured over.
const CALIBRATE_NS: u64 = 10_000_000;
/// How old the calibration base grows before it moves up.
const RECALIBRATE_NS: u64 = 1_000_000_000;
/// The widest pair of counter reads around a precise read that makes a base (1.4 µs
/// at 3 GHz; a precise read takes about a hundred ticks).
const BRACKET: u64 = 4096;
/// Misses in a row after which the counter is left alone.
const GIVE_UP: u64 = 16;

/// All Relaxed: the loop thread alone reads and writes these, but for `begin`, which the
/// first reader runs before the loop thread can see the clock (`Metrics::snapshot`).
#[derive(Default)]
pub(super) struct LateClock {
    /// The counter is used (vouched for, and not given up on).
    steady: AtomicBool,
    /// ns per tick << 32; 0: not known yet.
    scale: AtomicU64,
    /// [`LIMIT_NS`] in ticks (with the scale).
    limit: AtomicU64,
    base_ns: AtomicU64,
    base_tick: AtomicU64,
    /// The calibration base (0 ns: none yet).
    cal_ns: AtomicU64,
    cal_tick: AtomicU64,
    /// Misses in a row (see [`BRACKET`]).
    misses: AtomicU64,
}

impl LateClock {
    /// The first reader asks (once, on its thread, before the loop thread reads the
    /// clock): the counter is used if vouched for, from a first base.
    pub(super) fn begin(&self) {
        if sys::ticks_are_steady() {
            self.steady.store(true, Relaxed);
            self.read_precisely();
        }
    }

    /// Now, in ns of `sys::now_ns`'s time line (see the module comment for how close).
    #[inline]
    pub(super) fn now_ns(&self) -> u64 {
        let scale = self.scale.load(Relaxed);
        if scale != 0 {
            let since = sys::ticks().wrapping_sub(self.base_tick.load(Relaxed));
            if since < self.limit.load(Relaxed) {
                // since < limit: the product stays below LIMIT_NS << 32.
                return self.base_ns.load(Relaxed) + ((since * scale) >> 32);
            }
        }
        self.read_precisely()
    }

    /// A precise read, made a base where the counter is used (and the scale measured).
    #[inline(never)]
    fn read_precisely(&self) -> u64 {
        if !self.steady.load(Relaxed) {
            return sys::now_ns();
        }
        // Twice at most: a first read may be descheduled, or take the clock's page in.
        let mut tries = 2;
        let (ns, tick) = loop {
            let before = sys::ticks();
            let ns = sys::now_ns();
            let width = sys::ticks().wrapping_sub(before);
            if width <= BRACKET {
                break (ns, before + width / 2);
            }
            tries -= 1;
            if tries == 0 {
                let misses = self.misses.load(Relaxed) + 1;
                self.misses.store(misses, Relaxed);
                if misses >= GIVE_UP {
                    self.steady.store(false, Relaxed);
                    self.scale.store(0, Relaxed);
                }
                return ns;
            }
        };
        self.misses.store(0, Relaxed);
        self.base_ns.store(ns, Relaxed);
        self.base_tick.store(tick, Relaxed);
        let cal_ns = self.cal_ns.load(Relaxed);
        let (span, ticks) = (ns.wrapping_sub(cal_ns), tick.wrapping_sub(self.cal_tick.load(Relaxed)));
        if cal_ns == 0 || (span as i64) < 0 || (ticks as i64) <= 0 {
            // The first base, or a calibration base the counter is behind: start again.
            self.cal_ns.store(ns, Relaxed);
            self.cal_tick.store(tick, Relaxed);
        } else if span >= CALIBRATE_NS {
            let scale = ((span as u128) << 32) / ticks as u128;
            if let Ok(scale @ 1..) = u64::try_from(scale) {
                self.scale.store(scale, Relaxed);
                self.limit.store((((LIMIT_NS as u128) << 32) / scale as u128).min(u64::MAX as u128) as u64, Relaxed);
            }
            if span >= RECALIBRATE_NS {
                self.cal_ns.store(ns, Relaxed);
                self.cal_tick.store(tick, Relaxed);
            }
        }
        ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Readings stay between precise reads taken around them, to the bases' error (a
    /// generous bound: the point is the scale and the base, not timing).
    #[test]
    fn readings_follow_the_precise_clock() {
        const SLACK: u64 = 100_000;
        let clock = LateClock::default();
        clock.begin();
        // The scale is known once a base lands 10 ms after the calibration base (a read
        // descheduled between its counter reads makes none, on a loaded machine).
        for _ in 0..50 {
            std::thread::sleep(std::time::Duration::from_millis(11));
            clock.now_ns();
            if clock.scale.load(Relaxed) != 0 || !clock.steady.load(Relaxed) {
                break;
            }
        }
        for round in 0..2000u64 {
            let before = sys::now_ns();
            let read = clock.now_ns();
            let after = sys::now_ns();
            assert!(read + SLACK >= before && read <= after + SLACK, "{before} {read} {after}");
            if round % 500 == 0 {
                // past the limit: a precise read, and a fresh scale
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        if sys::ticks_are_steady() && clock.steady.load(Relaxed) {
            assert_ne!(clock.scale.load(Relaxed), 0, "calibrated after 10 ms");
        }
    }

    /// Past the limit a reading is precise: a 20 ms gap reads as at least 20 ms.
    #[test]
    fn a_long_gap_is_read_precisely() {
        let clock = LateClock::default();
        clock.begin();
        std::thread::sleep(std::time::Duration::from_millis(11));
        let from = clock.now_ns(); // past the limit: precise
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(clock.now_ns() - from >= 20_000_000);
    }
}
