//! The cell hand-over: a task's [`TaskCell`], lent by its loop to a pool and always
//! given back, and the loop's [`Cells`] it is recycled among.
//!
//! # One owner at a time, no reference counts
//!
//! The loop lends a cell to a pool and the pool always gives it back: when the work has
//! returned, or when the job is given up (the task was cancelled before it started, the
//! pool shut down, the queued job was dropped). Giving back pushes the cell onto the
//! loop's completion list (see [`Inbox::give_back`]), one compare-and-swap, and that
//! push is also how the completion is reported, so a finished task costs its worker no
//! lock and its loop no atomic operation per task: the loop takes the whole list with
//! one swap, delivers `done` for each cell, drops the work (the C layer's `free_fn`,
//! on the loop thread) and keeps the cell for the next spawn. Cells are recycled by their
//! loop, so a spawn makes no allocation once the loop has seen as many tasks in flight.
//!
//! States (`stage`, shared): Queued → Running → Finished, or Queued → Abandoned (the
//! loop cancelled it before it started: the work never runs, and the canceller queues
//! the `Cancelled` completion itself, so `done` does not wait for a busy pool to reach
//! the job). Cancel of a running task only raises the flag work can poll; the loop
//! reports `Cancelled` when the cell comes back. A timeout reports `Timeout` at the
//! deadline without waiting for the work, which sees the flag raised.
//!
//! The loop's side (`home`, touched only by the thread that owns the loop: the one
//! running it, or the one freeing it) says which of the two ends came first: the cell
//! coming back, or the task's registration ending (`done` ran, or the loop was freed).
//! Whichever comes second releases the work and the cell.
//!
//! Two cases end the user data sooner, as the API promises. A task cancelled before it
//! started has its work dropped when its registration ends (at its `done`), since the
//! pool will never touch it. A task whose `done` ran while its work was still running
//! (a timeout, a cancel) has its work dropped by its pool thread as soon as it returns.
//! That second case is settled on `stage`: the loop sets `ENDED_BIT`, the work's thread
//! sets `FINISHED_BIT`, each with one atomic or, and the work's thread drops the work if
//! it saw `ENDED_BIT`. The work's thread pays for that only when the task's cancel flag
//! is raised (which the loop always does first); otherwise it stores `FINISHED` plainly
//! and the loop drops the work when the cell is back.
//!
//! A freed loop may still have cells lent out. It closes its completion list; a pool
//! thread that finds it closed frees the cell itself (so the work's user data ends on
//! that thread), and the last of them lets go of the inbox (see [`Inbox::close_done`]).
//!
//! A task that never returns keeps its pool thread forever: weft cannot stop a thread.
//! Its `done` still runs once (on cancel or timeout, if one is set), and its user data
//! is released when (if) the work returns.

use super::work::{Task, TaskWork};
use super::CANCELLED;
use crate::inbox::{Inbox, Link};
use crate::pool::{JobHeader, JobRef, JobVTable};
use crate::slots::Id;
use crate::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use crate::sync::atomic::{AtomicBool, AtomicU64, AtomicU8};
use crate::sync::UnsafeCell;
use std::cell::Cell;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::Arc;

// `stage`, shared by the loop and the pool: a state and two flags.
const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
/// Running, then finished: the pool sets this bit.
const FINISHED_BIT: u8 = 2;
const FINISHED: u8 = RUNNING | FINISHED_BIT;
const ABANDONED: u8 = 4;
const STATE: u8 = 7;
/// The registration ended (its `done` ran) while the cell was lent.
const ENDED_BIT: u8 = 8;
/// The work has been dropped already (by the pool, or by the loop after an abandon).
const WORK_GONE: u8 = 16;

// `home`, the loop's side.
/// Lent to a pool; the registration is live.
const LENT: u8 = 0;
/// The registration has ended; the pool still has the cell.
const ENDED: u8 = 2;
/// A spare cell: its work has been dropped.
const SPARE: u8 = 3;

/// The first word of a cell: its job header while a pool has it, its link in the
/// loop's completion list once given back.
#[repr(C)]
union Head {
    job: JobHeader,
    link: Link,
}

/// A task's state, work and outcome: one 64-byte cache line for a C task, lent by the
/// loop to a pool and given back (see the module comment).
#[repr(C, align(64))]
pub struct TaskCell<H, W> {
    /// First field: the pool reaches the task through it (see [`JobRef`]), and the
    /// completion list links it.
    /// (std's cell: the pool reads the header through a cast pointer.)
    head: std::cell::UnsafeCell<Head>,
    /// The registration: a slab id, written by the loop under its lock; or, for a cell
    /// of the task table, its task's id while the task is live and the next task's id
    /// (untagged) between tasks (see [`Table`](super::Table)).
    id: AtomicU64,
    /// The loop's inbox: alive while any of its cells is lent out.
    inbox: *const Inbox<H>,
    /// What the work wrote (None: nothing); written before the cell is given back.
    /// Boxed so that the cell holds one word for it, not three: most tasks write nothing.
    #[allow(clippy::box_collection)]
    result: UnsafeCell<Option<Box<Vec<u8>>>>,
    status: UnsafeCell<i32>,
    stage: AtomicU8,
    cancelled: AtomicBool,
    home: Cell<u8>,
    /// The registration has a timeout (an entry in the loop's wheel); loop side only.
    timed: Cell<bool>,
    work: UnsafeCell<ManuallyDrop<W>>,
}

// SAFETY: a cell is owned by one side at a time (the loop until it lends the job, the
// pool until it gives the cell back); while lent, the loop touches only the atomics
// and its own `home` and `id`, which the pool never reads, and `work` is shared as `&W`
// (W: Sync). The give-back is a release/acquire handover of everything else.
unsafe impl<H: Send, W: Send + Sync> Send for TaskCell<H, W> {}
unsafe impl<H: Send, W: Send + Sync> Sync for TaskCell<H, W> {}

/// How many cells a loop allocates at a time: 64 at first, twice as many each time
/// after, up to 1024 (64 KiB), so that a small loop stays small and a busy one makes
/// few allocations, each with a negligible malloc overhead per cell.
pub(super) const FIRST_CHUNK: usize = 64;
const MAX_CHUNK: usize = 1024;

/// A loop's cells (under the loop's lock): the spare ones, the unused rest of the last
/// chunk, and how many it has lent. Chunks are owned by the loop's inbox (see
/// [`Inbox::own_chunk`]), which outlives every cell lent out, so a cell is never freed
/// on its own: a cell whose task is over only has its work dropped ([`TaskCell::release`]).
pub struct Cells<H, W> {
    /// Spare cells, linked through their first word.
    spare: Option<NonNull<TaskCell<H, W>>>,
    fresh: Option<NonNull<TaskCell<H, W>>>,
    fresh_left: usize,
    next_chunk: usize,
    lent: u64,
}

// SAFETY: spare and fresh cells belong to the loop alone.
unsafe impl<H: Send, W: Send + Sync> Send for Cells<H, W> {}

impl<H, W> Default for Cells<H, W> {
    fn default() -> Self {
        Cells { spare: None, fresh: None, fresh_left: 0, next_chunk: FIRST_CHUNK, lent: 0 }
    }
}

impl<H, W> Cells<H, W> {
    /// How many cells have been lent since the loop was made.
    pub fn lent(&self) -> u64 {
        self.lent
    }

    /// Keeps recycled cells (see [`TaskCell::take_back`]) for later spawns.
    pub fn keep(&mut self, cells: impl IntoIterator<Item = NonNull<TaskCell<H, W>>>) {
        for cell in cells {
            // SAFETY: a spare cell is the loop's alone; its first word links it.
            unsafe { cell.cast::<Option<NonNull<TaskCell<H, W>>>>().write(self.spare) };
            self.spare = Some(cell);
        }
    }
}

/// What the loop does with a cell it took off its completion list.
pub enum Back {
    /// Deliver the task's completion to registration `id`, then recycle the cell.
    Deliver(Id),
    /// The registration has ended: recycle the cell.
    Recycle,
}

impl<H: Send + 'static, W: TaskWork<H> + 'static> TaskCell<H, W> {
    const VTABLE: JobVTable = JobVTable { run: Self::run_job, abandon: Self::abandon_job, release: Self::abandon_job };

    /// Lends a cell (a spare one if the loop has any) for task `id`: the loop's handle
    /// on it, and the job to queue.
    pub fn lend(
        cells: &mut Cells<H, W>,
        id: Id,
        inbox: &Arc<Inbox<H>>,
        work: W,
        timed: bool,
    ) -> (TaskRef<H, W>, JobRef) {
        let fresh = |work| TaskCell {
            head: std::cell::UnsafeCell::new(Head { job: JobHeader { vtable: &Self::VTABLE } }),
            id: AtomicU64::new(id),
            inbox: Arc::as_ptr(inbox),
            result: UnsafeCell::new(None),
            status: UnsafeCell::new(0),
            stage: AtomicU8::new(QUEUED),
            cancelled: AtomicBool::new(false),
            home: Cell::new(LENT),
            timed: Cell::new(timed),
            work: UnsafeCell::new(ManuallyDrop::new(work)),
        };
        let cell = match cells.spare {
            Some(cell) => {
                // SAFETY: as in `keep`.
                cells.spare = unsafe { cell.cast::<Option<NonNull<Self>>>().read() };
                cell
            }
            None => {
                if cells.fresh_left == 0 {
                    let n = cells.next_chunk;
                    cells.next_chunk = (n * 2).min(MAX_CHUNK);
                    let layout = std::alloc::Layout::array::<Self>(n).expect("a small array");
                    // SAFETY: a non-zero size.
                    let chunk = NonNull::new(unsafe { std::alloc::alloc(layout) })
                        .unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
                    inbox.own_chunk(chunk, layout);
                    cells.fresh = Some(chunk.cast());
                    cells.fresh_left = n;
                }
                let cell = cells.fresh.expect("a chunk");
                cells.fresh_left -= 1;
                // SAFETY: within the chunk (the last step lands one past its end, unused).
                cells.fresh = Some(unsafe { cell.add(1) });
                cell
            }
        };
        // SAFETY: a spare or unused cell is the loop's alone and holds nothing to drop:
        // it is written whole.
        unsafe { cell.as_ptr().write(fresh(work)) };
        cells.lent += 1;
        // SAFETY: the cell starts with its job header; the job is the pool's loan.
        (TaskRef(cell), unsafe { JobRef::from_raw(cell.cast()) })
    }

    unsafe fn run_job(header: NonNull<JobHeader>) {
        let cell = header.cast::<Self>();
        // SAFETY: the pool has the cell until it gives it back.
        let this = unsafe { cell.as_ref() };
        if this.stage.compare_exchange(QUEUED, RUNNING, SeqCst, SeqCst).is_ok() {
            // SAFETY: the inbox outlives every lent cell.
            let mut task = Task::in_memory(&this.cancelled, unsafe { &*this.inbox });
            // SAFETY: the work is dropped only once the cell is back.
            let status = this.work.with(|work| unsafe { &*work }.run(&mut task));
            if crate::fork::is_child() {
                // The work forked and the child returned here: the task belongs to the
                // parent; touch nothing (no second free_fn, no inherited lock).
                std::mem::forget(task);
                return;
            }
            let result = task.into_result();
            // SAFETY: the pool's side of the handover, before the give-back.
            this.result.with_mut(|r| unsafe { *r = (!result.is_empty()).then(|| Box::new(result)) });
            this.status.with_mut(|s| unsafe { *s = status });
            if !this.cancelled.load(Acquire) {
                this.stage.store(FINISHED, Release);
            } else if this.stage.fetch_or(FINISHED_BIT, SeqCst) & ENDED_BIT != 0 {
                // Its `done` has run: the user data ends now, on this thread.
                this.result.with_mut(|r| drop(unsafe { (*r).take() }));
                this.work.with_mut(|work| unsafe { ManuallyDrop::drop(&mut *work) });
                this.stage.fetch_or(WORK_GONE, Release);
            }
        } // else the loop cancelled it before it started, and reported it
        unsafe { Self::give_back(cell) }
    }

    /// The pool gave the job up (it shut down), or dropped it unrun.
    unsafe fn abandon_job(header: NonNull<JobHeader>) {
        let cell = header.cast::<Self>();
        // SAFETY: as in run_job.
        let this = unsafe { cell.as_ref() };
        if this.stage.compare_exchange(QUEUED, FINISHED, SeqCst, SeqCst).is_ok() {
            this.cancelled.store(true, SeqCst);
            // SAFETY: as in run_job.
            this.status.with_mut(|s| unsafe { *s = CANCELLED });
        }
        unsafe { Self::give_back(cell) }
    }

    /// Hands the cell back to its loop; if the loop is gone, frees it here.
    unsafe fn give_back(cell: NonNull<Self>) {
        // SAFETY: the inbox outlives every lent cell (this one included, until below).
        let inbox = unsafe { cell.as_ref() }.inbox;
        if !unsafe { &*inbox }.give_back(cell.cast()) {
            // SAFETY: the loop has closed its list: the cell is this thread's alone.
            unsafe { TaskCell::release(cell) };
            // SAFETY: `inbox` came from the Arc that close_done keeps for stragglers.
            unsafe { Inbox::straggler_gone(inbox) };
        }
    }
}

impl<H, W> TaskCell<H, W> {
    /// Raises the cancel flag; true if the task had not started, so it never will.
    pub fn cancel(&self) -> bool {
        self.cancelled.store(true, SeqCst);
        self.stage.compare_exchange(QUEUED, ABANDONED, SeqCst, SeqCst).is_ok()
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(SeqCst)
    }

    /// Whether the task has a timeout (loop side only).
    pub fn timed(&self) -> bool {
        self.timed.get()
    }

    /// The loop took `cell` off its completion list: what to do with it.
    ///
    /// # Safety
    /// On the thread that owns the loop, for a cell just taken back.
    pub unsafe fn take_back(cell: NonNull<Self>) -> Back {
        // SAFETY: the cell is back: the loop's alone.
        let this = unsafe { cell.as_ref() };
        // A task the loop cancelled before it started (its `Cancelled` completion is
        // queued, or already ran and ended the registration) is delivered here if it
        // comes back first: `outcome` says `Cancelled`, and the queued completion then
        // finds no registration.
        match this.home.get() {
            ENDED => Back::Recycle,
            _ => Back::Deliver(this.id.load(Relaxed)),
        }
    }

    /// The completion to deliver: the work's status and result, or `Cancelled`.
    ///
    /// # Safety
    /// For a cell [`take_back`](Self::take_back) said to deliver, once.
    pub unsafe fn outcome(cell: NonNull<Self>) -> (i32, Vec<u8>) {
        // SAFETY: the cell is back: the loop's alone.
        let this = unsafe { cell.as_ref() };
        let result = this.result.with_mut(|r| unsafe { (*r).take() }).map_or_else(Vec::new, |r| *r);
        match this.cancelled.load(SeqCst) {
            true => (CANCELLED, Vec::new()),
            false => (this.status.with(|s| unsafe { *s }), result),
        }
    }

    /// Drops the work (ending its user data) and any result: the cell becomes a spare
    /// (for [`Cells::keep`], or left in its chunk). Without the loop's lock: the user
    /// data's end is user code.
    ///
    /// # Safety
    /// For a cell whose task is over (back, its registration ended, or its loop gone),
    /// by its only holder, once.
    pub unsafe fn release(cell: NonNull<Self>) {
        // SAFETY: the caller's alone.
        let this = unsafe { cell.as_ref() };
        if this.home.replace(SPARE) != SPARE {
            this.result.with_mut(|r| drop(unsafe { (*r).take() }));
            if this.stage.load(Acquire) & WORK_GONE == 0 {
                this.work.with_mut(|work| unsafe { ManuallyDrop::drop(&mut *work) });
            }
        }
    }
}

/// The loop's handle on a task's cell, in the task's registration. Dropping it ends the
/// registration's hold: the cell, still lent, is marked so that the loop recycles it when
/// it comes back.
pub struct TaskRef<H, W>(NonNull<TaskCell<H, W>>);

// SAFETY: as for the cell itself.
unsafe impl<H: Send, W: Send + Sync> Send for TaskRef<H, W> {}
unsafe impl<H: Send, W: Send + Sync> Sync for TaskRef<H, W> {}

impl<H, W> TaskRef<H, W> {
    /// The cell, for a registration that ends by delivering it (no drop).
    pub fn into_cell(self) -> NonNull<TaskCell<H, W>> {
        std::mem::ManuallyDrop::new(self).0
    }

    /// Whether this is the handle on `cell`.
    pub fn is(&self, cell: NonNull<TaskCell<H, W>>) -> bool {
        self.0 == cell
    }
}

impl<H, W> std::ops::Deref for TaskRef<H, W> {
    type Target = TaskCell<H, W>;
    fn deref(&self) -> &TaskCell<H, W> {
        // SAFETY: the cell lives until both the registration and the pool let go.
        unsafe { self.0.as_ref() }
    }
}

impl<H, W> Drop for TaskRef<H, W> {
    fn drop(&mut self) {
        // Only the loop's owner drops registrations, and `home` is its alone. A cell
        // that is back has been delivered (its handle consumed), so this one is lent.
        self.end_lent();
    }
}

impl<H, W> TaskCell<H, W> {
    /// The task's registration ended while its cell is lent: the loop recycles the cell
    /// when it comes back, and the work of a task abandoned before it started ends now
    /// (so, not under a lock: that is user code). Loop side only. For a cell of the
    /// task table, after [`Table::end`](super::Table::end).
    pub fn end_lent(&self) {
        self.home.set(ENDED);
        if self.stage.fetch_or(ENDED_BIT, SeqCst) & STATE == ABANDONED {
            // The pool will only give the cell back: end the user data at the `done`.
            // SAFETY: the work never ran and never will; the pool does not touch it.
            self.work.with_mut(|work| unsafe { ManuallyDrop::drop(&mut *work) });
            self.stage.fetch_or(WORK_GONE, Release);
        }
    }

    /// Whether the cell is lent with its registration live (loop side only).
    pub fn is_lent(&self) -> bool {
        self.home.get() == LENT
    }

    /// The id in the cell (see the field).
    pub fn id(&self) -> Id {
        self.id.load(Acquire)
    }
}

/// The task table's ways into a cell (see [`Table`](super::Table)): a table cell is
/// written in place, since a canceller may read its atomics at any time.
impl<H, W> TaskCell<H, W> {
    /// Writes the atomics of a table cell never used before: the id of its first task
    /// (untagged) and a state no cancel changes.
    ///
    /// # Safety
    /// `cell` is unused memory of a table chunk, not yet visible to any other thread.
    #[inline(always)]
    pub(super) unsafe fn init_in_table(cell: NonNull<Self>, id: Id) {
        // SAFETY: the caller's contract.
        unsafe {
            std::ptr::addr_of_mut!((*cell.as_ptr()).id).write(AtomicU64::new(id));
            std::ptr::addr_of_mut!((*cell.as_ptr()).stage).write(AtomicU8::new(FINISHED));
            std::ptr::addr_of_mut!((*cell.as_ptr()).cancelled).write(AtomicBool::new(false));
        }
    }

    /// The id in the cell, as its owner reads it (the owner alone writes it).
    #[inline(always)]
    pub(super) fn owner_id(&self) -> Id {
        self.id.load(Relaxed)
    }

    /// Replaces the id in the cell (by the owner; Release: a canceller that reads the
    /// new id sees what the owner wrote before).
    #[inline(always)]
    pub(super) fn set_id(&self, id: Id) {
        self.id.store(id, Release);
    }
}

impl<H: Send + 'static, W: TaskWork<H> + 'static> TaskCell<H, W> {
    /// Lends table cell `cell` for a new task of the loop tagged `tag`, with `work`;
    /// returns the task's id.
    ///
    /// # Safety
    /// A spare or fresh (see [`init_in_table`](Self::init_in_table)) cell of a table,
    /// by the table's owner.
    #[inline(always)]
    pub(super) unsafe fn lend_in_table(cell: NonNull<Self>, tag: u16, inbox: &Arc<Inbox<H>>, work: W) -> Id {
        let c = cell.as_ptr();
        // SAFETY: a spare or fresh cell is the owner's, and holds nothing to drop. A
        // canceller may read its atomics (with a stale or forged id), so they are
        // written as atomics; the rest is written whole. The id goes last (Release):
        // a canceller that matches it sees the task's state.
        unsafe {
            std::ptr::addr_of_mut!((*c).head)
                .write(std::cell::UnsafeCell::new(Head { job: JobHeader { vtable: &TaskCell::<H, W>::VTABLE } }));
            std::ptr::addr_of_mut!((*c).inbox).write(Arc::as_ptr(inbox));
            std::ptr::addr_of_mut!((*c).result).write(UnsafeCell::new(None));
            std::ptr::addr_of_mut!((*c).status).write(UnsafeCell::new(0));
            std::ptr::addr_of_mut!((*c).home).write(Cell::new(LENT));
            std::ptr::addr_of_mut!((*c).timed).write(Cell::new(false));
            std::ptr::addr_of_mut!((*c).work).write(UnsafeCell::new(ManuallyDrop::new(work)));
            let this = &*c;
            this.stage.store(QUEUED, Relaxed);
            this.cancelled.store(false, Relaxed);
            let id = crate::slots::tagged(tag, this.id.load(Relaxed));
            this.id.store(id, Release);
            id
        }
    }
}
