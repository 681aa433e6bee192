//! Loom models of weft's lock-free protocols. Each runs the real code of one protocol
//! (built with loom's primitives through `crate::sync`) under the interleavings loom
//! explores, and checks what the protocol promises: no lost wake-up, every record and
//! every cell taken exactly once, nothing used after its end, no data race on what a
//! hand-over publishes.
//!
//! `make loom` runs them with no preemption bound; `make test` runs them with
//! `LOOM_MAX_PREEMPTIONS=2`, which fits CI's time. `make loom-mutants` removes, one at
//! a time, each fence and flag a model guards (tests/loom/mutants.py lists them) and
//! checks that the model then fails.

mod cell;
mod completions;
mod gate;
mod inbox;
mod parked;
mod pool;
mod signal;
mod sleep;
mod table;
mod timers;
mod watchdog;

use std::os::fd::RawFd;

/// Runs `f` under loom (its settings from the environment: `LOOM_MAX_PREEMPTIONS`,
/// `LOOM_MAX_BRANCHES`, `LOOM_LOG`), and prints how many executions it explored.
pub(crate) fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    model_bounded(usize::MAX, f)
}

/// [`model`] with at most `max_preemptions` (fewer if `LOOM_MAX_PREEMPTIONS` says so):
/// for the models whose state space is too large at the bound the others run with.
pub(crate) fn model_bounded<F: Fn() + Sync + Send + 'static>(max_preemptions: usize, f: F) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(builder.preemption_bound.unwrap_or(usize::MAX).min(max_preemptions));
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = runs.clone();
    let started = std::time::Instant::now();
    builder.check(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f()
    });
    let name = std::thread::current().name().unwrap_or("model").to_owned();
    let runs = runs.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("{name}: {runs} executions in {:.1} s", started.elapsed().as_secs_f64());
}

/// Whether the bell `fd` (an eventfd) rang since the last look: reads and resets it.
/// The consumer of a model "waits" on the bell this way: a wait that would block is the
/// consumer gone to sleep.
pub(crate) fn rang(fd: RawFd) -> bool {
    let mut value = 0u64;
    // SAFETY: reads 8 bytes into `value`; the eventfd is non-blocking.
    unsafe { libc::read(fd, (&mut value as *mut u64).cast(), 8) == 8 }
}
