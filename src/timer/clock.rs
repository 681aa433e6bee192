//! The owner's clock for new timers' deadlines: the monotonic clock (`sys::now_ns`),
//! read through the CPU's time-stamp counter between two reads of it, never below it.
//!
//! A deadline is the monotonic clock at the call plus the delay, never earlier. On a VM
//! a read of the monotonic clock costs 30-45 ns, most of a timer's schedule; the TSC the
//! kernel itself reads costs a third of that. So, where the kernel's clock source is
//! the TSC (x86-64 Linux, `clocksource0` = `tsc`: the kernel found it constant and
//! synchronised across CPUs), the owner keeps:
//!
//! * the last real read `ns`, and the TSC read just before it: `ns >= T(tsc)`, the
//!   clock's value at that TSC;
//! * `mult`, an upper bound of the clock's nanoseconds per TSC tick (32.32 fixed
//!   point), from two real reads at least [`CALIBRATE_NS`] apart, each bracketed by TSC
//!   reads: the earlier read's `ns` is at most the clock at the TSC read after it, the
//!   later one's at least the clock at the TSC read before it, so their ratio bounds the
//!   rate from above; plus 1/1024 for the kernel's frequency corrections (NTP slews it
//!   by 500 ppm at most).
//!
//! Then `now` = `ns + (tsc_now - tsc) * mult` is at least the clock at `tsc_now`, and
//! later than it by a few hundred nanoseconds at most: a TSC read further than
//! [`WINDOW_NS`] from the last real read takes a new real read (so does a TSC that went
//! back). Each real read also checks that the bound held; if it ever did not (the
//! kernel's clock ran faster than it could), the TSC is no longer used. The TSC is read
//! after an `lfence`, so it is not read ahead of the call. Elsewhere `now` is a real
//! read.

use crate::sys;

/// A calibration needs two real reads at least this far apart (1 ms).
const CALIBRATE_NS: u64 = 1_000_000;
/// A real read at least this often (in TSC ticks' worth of nanoseconds) while the TSC
/// stands in: 250 µs, so the bound's slack adds 0.25 µs at most.
const WINDOW_NS: u64 = 250_000;
/// A real read whose bracketing TSC reads are further apart than this (ticks: under a
/// microsecond; the thread was preempted in it) does not calibrate.
const BRACKET_TICKS: u64 = 2_000;

/// The owner's clock (see the module comment). Owner only.
pub struct Clock {
    /// Whether the TSC may stand in (the kernel's clock source is the TSC, and no
    /// bound failed).
    tsc_ok: bool,
    /// The last real read, and the TSC read just before it.
    ns: u64,
    tsc: u64,
    /// Nanoseconds per TSC tick (32.32), an upper bound; 0 until calibrated.
    mult: u64,
    /// TSC ticks that [`WINDOW_NS`] spans at most.
    window: u64,
    /// The calibration's first real read, and the TSC read just after it (0: none yet).
    anchor_ns: u64,
    anchor_tsc: u64,
}

impl Clock {
    pub fn new() -> Clock {
        let mut clock =
            Clock { tsc_ok: tsc_is_the_clock(), ns: 0, tsc: 0, mult: 0, window: 0, anchor_ns: 0, anchor_tsc: 0 };
        clock.read();
        clock
    }

    /// The monotonic clock now (ns), or a little later; never earlier.
    #[inline]
    pub fn now(&mut self) -> u64 {
        if self.mult != 0 {
            let ticks = tsc().wrapping_sub(self.tsc);
            if ticks < self.window {
                return self.ns + ((ticks as u128 * self.mult as u128) >> 32) as u64 + 1;
            }
        }
        self.read()
    }

    /// A real read; calibrates (or checks the bound) when the TSC stands in.
    #[cold]
    #[inline(never)]
    fn read(&mut self) -> u64 {
        if !self.tsc_ok {
            return sys::now_ns();
        }
        let before = tsc();
        let ns = sys::now_ns();
        let after = tsc();
        let ticks = after.wrapping_sub(self.tsc);
        if self.mult != 0 && ticks < 1 << 40 {
            // The bound at `after` must not be below the clock read before it.
            let bound = self.ns + ((ticks as u128 * self.mult as u128) >> 32) as u64 + 1;
            if bound < ns {
                self.tsc_ok = false;
                self.mult = 0;
                return ns;
            }
        }
        (self.ns, self.tsc) = (ns, before);
        if after.wrapping_sub(before) >= BRACKET_TICKS {
            return ns; // preempted in the read: too loose to calibrate with
        }
        if self.anchor_tsc == 0 {
            (self.anchor_ns, self.anchor_tsc) = (ns, after);
            return ns;
        }
        let (span_ns, span_ticks) = (ns.wrapping_sub(self.anchor_ns), before.wrapping_sub(self.anchor_tsc));
        if (CALIBRATE_NS..1 << 40).contains(&span_ns) && (1..1 << 50).contains(&span_ticks) {
            let mult = ((span_ns as u128) << 32).div_ceil(span_ticks as u128) as u64;
            let mult = mult + (mult >> 10) + 1;
            self.window = ((WINDOW_NS as u128) << 32).div_ceil(mult as u128) as u64;
            self.mult = mult;
        }
        ns
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// The TSC, read after every earlier instruction has completed (`lfence`): as the
/// kernel's own read.
#[cfg(all(target_arch = "x86_64", target_os = "linux", not(miri), not(loom)))]
#[inline(always)]
fn tsc() -> u64 {
    // SAFETY: lfence and rdtsc have no memory effects; every x86-64 CPU has both.
    unsafe {
        std::arch::x86_64::_mm_lfence();
        std::arch::x86_64::_rdtsc()
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux", not(miri), not(loom))))]
fn tsc() -> u64 {
    0
}

/// Whether the kernel's clock source is the TSC (read once per process).
fn tsc_is_the_clock() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux", not(miri), not(loom)))]
    {
        static TSC: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *TSC.get_or_init(|| {
            let path = "/sys/devices/system/clocksource/clocksource0/current_clocksource";
            std::fs::read_to_string(path).is_ok_and(|source| source.trim() == "tsc")
        })
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux", not(miri), not(loom))))]
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_behind_the_monotonic_clock_and_close_to_it() {
        let mut clock = Clock::new();
        let start = sys::now_ns();
        let mut worst_ahead = 0;
        let mut fast = 0;
        while sys::now_ns() - start < 20_000_000 {
            let before = sys::now_ns();
            let now = clock.now();
            let after = sys::now_ns();
            assert!(now >= before, "{now} is behind {before}");
            // Ahead of the read after it by the bound's slack at most (plus a
            // preemption between the two reads, which only makes `after` later).
            worst_ahead = worst_ahead.max(now.saturating_sub(after));
            fast += usize::from(clock.mult != 0);
        }
        assert!(worst_ahead < 10_000, "ahead by {worst_ahead} ns");
        if tsc_is_the_clock() {
            assert!(fast > 0, "calibrated within 20 ms");
        }
    }
}
