//! A task cell's `stage` byte and cancel flag (see `crate::task::cell`): a task runs at
//! most once, a task cancelled before it started never runs, and its work (the user
//! data, `free_fn` in C) is dropped exactly once, by whichever side the protocol names,
//! never while the other side still uses it; the result is published by the give-back.

use super::model;
use crate::inbox::Inbox;
use crate::task::{Back, Cells, Task, TaskCell, TaskWork, CANCELLED};
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::sync::Arc as LoomArc;
use loom::thread;
use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::Arc;

/// A work that counts its runs and its drops.
struct Work {
    runs: LoomArc<AtomicUsize>,
    drops: LoomArc<AtomicUsize>,
}

impl TaskWork<u32> for Work {
    fn run(&self, task: &mut Task<u32>) -> i32 {
        self.runs.fetch_add(1, SeqCst);
        task.write(b"ok").expect("in memory");
        7
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
    }
}

type Cell = TaskCell<u32, Work>;

struct Setup {
    inbox: Arc<Inbox<u32>>,
    runs: LoomArc<AtomicUsize>,
    drops: LoomArc<AtomicUsize>,
    /// Kept until the end of the model: the chunk of cells is the inbox's.
    _cells: Cells<u32, Work>,
}

/// A loop with one task lent: the loop's handle and the job a pool thread runs.
fn lend() -> (Setup, crate::task::TaskRef<u32, Work>, crate::pool::JobRef) {
    let inbox = Arc::new(Inbox::<u32>::new().expect("an eventfd"));
    let runs = LoomArc::new(AtomicUsize::new(0));
    let drops = LoomArc::new(AtomicUsize::new(0));
    let mut cells = Cells::default();
    let work = Work { runs: runs.clone(), drops: drops.clone() };
    let (task, job) = Cell::lend(&mut cells, 1, &inbox, work, false);
    (Setup { inbox, runs, drops, _cells: cells }, task, job)
}

/// The loop waits for the cell to come back (a pass at a time).
fn take_back(inbox: &Inbox<u32>) -> NonNull<Cell> {
    let mut cells = VecDeque::new();
    while inbox.take_done::<Cell>(&mut cells) == 0 {
        loom::thread::yield_now();
    }
    cells.pop_front().expect("one cell")
}

/// A cancel races the task's start: if the cancel came first the work never runs and
/// the loop's `done` (for the queued `Cancelled` completion) ends the work; otherwise the
/// work runs once and the cell comes back reporting `Cancelled`.
#[test]
fn loom_cell_cancel_races_start() {
    model(|| {
        let (setup, task, job) = lend();
        let pool = thread::spawn(move || job.run());
        let unstarted = task.cancel();
        let cell = if unstarted {
            // The `Cancelled` completion is delivered: the registration ends.
            drop(task);
            let cell = take_back(&setup.inbox);
            // SAFETY: on the loop's thread, for a cell just taken back.
            assert!(matches!(unsafe { Cell::take_back(cell) }, Back::Recycle));
            cell
        } else {
            let cell = take_back(&setup.inbox);
            assert!(matches!(unsafe { Cell::take_back(cell) }, Back::Deliver(1)));
            // SAFETY: take_back said to deliver it.
            let (status, _) = unsafe { Cell::outcome(cell) };
            assert_eq!(status, CANCELLED);
            task.into_cell()
        };
        // SAFETY: back, its registration ended.
        unsafe { Cell::release(cell) };
        pool.join().unwrap();
        assert_eq!(setup.runs.load(SeqCst), usize::from(!unstarted), "ran when it should not, or twice");
        assert_eq!(setup.drops.load(SeqCst), 1, "the work was dropped twice or never");
    });
}

/// A timeout: the loop reports the task over (cancel, then the registration ends) while
/// its work may still run; whichever of the pool (`FINISHED_BIT`) and the loop
/// (`ENDED_BIT`) comes second drops the work, once.
#[test]
fn loom_cell_ends_while_running() {
    model(|| {
        let (setup, task, job) = lend();
        let pool = thread::spawn(move || job.run());
        task.cancel();
        drop(task);
        let cell = take_back(&setup.inbox);
        assert!(matches!(unsafe { Cell::take_back(cell) }, Back::Recycle));
        unsafe { Cell::release(cell) };
        pool.join().unwrap();
        assert!(setup.runs.load(SeqCst) <= 1);
        assert_eq!(setup.drops.load(SeqCst), 1, "the work was dropped twice or never");
    });
}

/// The task finishes normally: the loop sees its status and result, published by the
/// give-back.
#[test]
fn loom_cell_result() {
    model(|| {
        let (setup, task, job) = lend();
        let pool = thread::spawn(move || job.run());
        let cell = take_back(&setup.inbox);
        assert!(matches!(unsafe { Cell::take_back(cell) }, Back::Deliver(1)));
        let (status, result) = unsafe { Cell::outcome(cell) };
        assert_eq!((status, &result[..]), (7, &b"ok"[..]));
        unsafe { Cell::release(task.into_cell()) };
        pool.join().unwrap();
        assert_eq!(setup.drops.load(SeqCst), 1);
    });
}

/// The loop is freed while the task runs: it cancels, ends the registration and closes
/// the completion list. The cell comes back to `close_done`, or its pool thread finds
/// the list closed and frees it; the work is dropped once either way.
#[test]
fn loom_cell_loop_freed() {
    model(|| {
        let (setup, task, job) = lend();
        let pool = thread::spawn(move || job.run());
        task.cancel();
        drop(task);
        drop(setup.inbox.close());
        let keep = Arc::into_raw(setup.inbox.clone());
        // SAFETY: `keep` is handed over; a cell on the list is back and ours.
        unsafe { setup.inbox.close_done(1, keep, |cell: NonNull<Cell>| Cell::release(cell)) };
        pool.join().unwrap();
        assert_eq!(setup.drops.load(SeqCst), 1, "the work was dropped twice or never");
        assert_eq!(Arc::strong_count(&setup.inbox), 1);
    });
}
