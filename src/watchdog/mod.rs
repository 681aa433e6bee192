//! The slow-callback watchdog: a thread of the loop's own that reports a callback on
//! the loop thread running longer than a threshold while it still runs, and again when
//! it returns, with its total time.
//!
//! How the two reports are made:
//! * The loop thread marks each callback's start and end in [`Current`] (a sequence
//!   lock; see current.rs), when a watchdog is set. Off, a callback costs one Relaxed
//!   load of `on`.
//! * The watchdog thread looks at `Current` every `period` (a quarter of the threshold,
//!   1 to 250 ms). A callback that has run longer than the threshold, and that it has
//!   not reported yet, it reports as running: so a callback longer than threshold +
//!   period always gets that report while it runs.
//! * The loop thread measures each callback's total time at its end; above the
//!   threshold it queues a returned report and wakes the watchdog thread, which makes
//!   it. So each slow callback gets exactly one returned report, after its running one
//!   when there is one (both are made by the watchdog thread, in that order).
//! * Reports are made on the watchdog thread, never under its lock, and never on the
//!   loop thread: the sink may take as long as it likes (a Python sampler waits for the
//!   interpreter lock) without delaying the loop; the next look waits for it.
//!
//! `set` with another threshold or sink replaces them; `off` (and `Drop`) stops and
//! joins the thread and drops the sink, on the calling thread.

mod current;

pub use current::{Current, Running};

use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The kinds of callback a loop runs, numbered as the header's `WEFT_CALLBACK_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Timer = 1,
    Post = 2,
    Fd = 3,
    Signal = 4,
    Event = 5,
    Done = 6,
}

/// What a callback of the loop thread was doing, as a report tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// The callback's number: a running report and the returned report of the same
    /// callback share it.
    pub seq: u64,
    /// The registration's id (a task's for `done` and loop-thread work).
    pub id: u64,
    /// What ran: a [`Kind`] as u8 (the header's `WEFT_CALLBACK_*`).
    pub kind: u8,
    /// False: still running, `elapsed_ns` so far. True: returned, its total time.
    pub returned: bool,
    pub elapsed_ns: u64,
    /// The loop thread's kernel thread id.
    pub tid: i32,
}

/// Where reports go: called on the watchdog thread.
pub type Sink = Box<dyn FnMut(&Report) + Send>;

/// A loop's watchdog: off until `set`.
#[derive(Default)]
pub struct Watchdog {
    on: AtomicBool,
    threshold_ns: AtomicU64,
    /// Callbacks are timed on the coarse clock (see `set`).
    coarse: AtomicBool,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct Shared {
    current: Current,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    sink: Option<Sink>,
    threshold_ns: u64,
    returned: Vec<Report>,
    stop: bool,
}

/// A callback the loop thread entered while the watchdog was on.
pub struct Entered {
    seq: u64,
    id: u64,
    kind: Kind,
    start_ns: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Watchdog {
    /// Turns the watchdog on, or changes its threshold and sink. The previous sink is
    /// dropped on this thread (or, if it is making a report right now, on the watchdog
    /// thread once that report is made). Err if the thread cannot be started.
    pub fn set(&self, threshold_ns: u64, sink: Sink) -> std::io::Result<()> {
        let mut thread = lock(&self.thread);
        let old = {
            let mut state = lock(&self.shared.state);
            state.threshold_ns = threshold_ns;
            state.stop = false;
            state.sink.replace(sink)
        };
        drop(old);
        if thread.is_none() {
            let shared = self.shared.clone();
            *thread = Some(std::thread::Builder::new().name("weft-watchdog".into()).spawn(move || watch(&shared))?);
        }
        self.threshold_ns.store(threshold_ns, Relaxed);
        // Two clock reads per callback are most of the watchdog's cost; the coarse
        // clock's are a sixth of a precise one's on a VM. Used when its steps (a
        // scheduler tick, 1-4 ms) are at most a twentieth of the threshold: a callback's
        // time is then measured within 5% of the threshold.
        self.coarse.store(crate::sys::coarse_resolution_ns().saturating_mul(20) <= threshold_ns, Relaxed);
        self.on.store(true, Relaxed);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// True on the watchdog's own thread (where `off` would wait for itself).
    pub fn is_own_thread(&self) -> bool {
        lock(&self.thread).as_ref().is_some_and(|t| t.thread().id() == std::thread::current().id())
    }

    /// Turns the watchdog off: stops and joins its thread, and drops the sink here.
    /// Not from the watchdog thread (see `is_own_thread`).
    pub fn off(&self) {
        self.on.store(false, Relaxed);
        let handle = lock(&self.thread).take();
        lock(&self.shared.state).stop = true;
        self.shared.wake.notify_one();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
        let sink = {
            let mut state = lock(&self.shared.state);
            state.returned.clear();
            state.sink.take()
        };
        drop(sink);
    }

    /// The loop thread starts a callback. None (and nothing to do at its end) when off.
    #[inline]
    pub fn enter(&self, id: u64, kind: Kind) -> Option<Entered> {
        if !self.on.load(Relaxed) {
            return None;
        }
        Some(self.entered(id, kind))
    }

    /// The clock callbacks are timed on (see `set`).
    #[inline]
    fn now_ns(&self) -> u64 {
        if self.coarse.load(Relaxed) {
            crate::sys::coarse_now_ns()
        } else {
            crate::sys::now_ns()
        }
    }

    #[cold]
    fn entered(&self, id: u64, kind: Kind) -> Entered {
        let start_ns = self.now_ns();
        let seq = self.shared.current.enter(id, kind as u8, start_ns, tid());
        Entered { seq, id, kind, start_ns }
    }

    /// The loop thread returned from a callback that `enter` saw.
    pub fn leave(&self, e: Entered) {
        self.shared.current.leave(e.seq);
        let elapsed_ns = self.now_ns().saturating_sub(e.start_ns);
        if elapsed_ns <= self.threshold_ns.load(Relaxed) {
            return;
        }
        let report = Report { seq: e.seq, id: e.id, kind: e.kind as u8, returned: true, elapsed_ns, tid: tid() };
        lock(&self.shared.state).returned.push(report);
        self.shared.wake.notify_one();
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.off();
    }
}

/// The calling thread's kernel id, cached per thread.
fn tid() -> i32 {
    thread_local!(static TID: i32 = crate::sys::thread_id());
    TID.with(|t| *t)
}

/// The watchdog thread: looks every period, makes the reports due, sleeps.
fn watch(shared: &Shared) {
    let mut reported = 0u64;
    let mut state = lock(&shared.state);
    loop {
        if state.stop {
            return;
        }
        let threshold = state.threshold_ns;
        let period = Duration::from_nanos((threshold / 4).clamp(1_000_000, 250_000_000));
        let mut due = std::mem::take(&mut state.returned);
        if let Some(r) = shared.current.peek() {
            let elapsed_ns = crate::sys::now_ns().saturating_sub(r.start_ns);
            if elapsed_ns > threshold && r.seq != reported {
                reported = r.seq;
                due.push(Report { seq: r.seq, id: r.id, kind: r.kind, returned: false, elapsed_ns, tid: r.tid });
            }
        }
        if due.is_empty() {
            state = shared.wake.wait_timeout(state, period).unwrap_or_else(|p| p.into_inner()).0;
            continue;
        }
        let mut sink = state.sink.take();
        drop(state);
        if let Some(sink) = sink.as_mut() {
            for report in &due {
                sink(report);
            }
        }
        state = lock(&shared.state);
        if state.sink.is_none() {
            state.sink = sink;
        } else {
            // `set` gave a new sink while this one reported: the old one ends here.
            drop(state);
            drop(sink);
            state = lock(&shared.state);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A callback that sleeps 200 ms past a 50 ms threshold: the running report comes
    /// while it sleeps, the returned one after, with the total time; a fast callback
    /// gets none.
    #[test]
    fn a_slow_callback_is_reported_while_it_runs_and_when_it_returns() {
        let dog = Watchdog::default();
        let (tx, rx) = mpsc::channel();
        dog.set(50_000_000, Box::new(move |r: &Report| tx.send(*r).unwrap())).unwrap();
        let fast = dog.enter(1, Kind::Post).unwrap();
        dog.leave(fast);
        let e = dog.enter(7, Kind::Timer).unwrap();
        let running = rx.recv_timeout(Duration::from_secs(5)).expect("no running report");
        assert!(!running.returned && running.id == 7 && running.kind == Kind::Timer as u8);
        assert!(running.elapsed_ns > 50_000_000);
        std::thread::sleep(Duration::from_millis(150));
        dog.leave(e);
        let returned = rx.recv_timeout(Duration::from_secs(5)).expect("no returned report");
        assert!(returned.returned && returned.seq == running.seq && returned.id == 7);
        assert!(returned.elapsed_ns >= 150_000_000 + running.elapsed_ns.min(50_000_000));
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err(), "one report of each");
        dog.off();
        assert!(dog.enter(1, Kind::Post).is_none());
    }
}
