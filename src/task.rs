//! Tasks: work run on the loop, on the IO pool or on the CPU pool, with one completion
//! (`done`) on the loop thread.
//!
//! A task is a registration of its loop (its `done` handler lives in the loop's slab,
//! or, for a task the loop's own thread spawned on a CPU pool, in the loop's task table:
//! see [`Table`]) plus a [`TaskCell`] that a pool (or the loop itself, for
//! `Where::Loop`) runs as a job.
//! The cell holds the work and its user data, the task's state, and, once the work has
//! returned, its status and result.
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

use crate::inbox::{Inbox, Link};
use crate::pool::{self, JobHeader, JobRef, JobVTable, Pool};
use crate::slots::Id;
use std::cell::{Cell, UnsafeCell};
use std::mem::ManuallyDrop;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8};
use std::sync::{Arc, Mutex, MutexGuard};

/// Where a task's work runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Where {
    Loop,
    Io,
    Cpu,
    Process,
}

/// A task's completion status: what work returned (>= 0), or a negative `weft_result`.
pub const CANCELLED: i32 = crate::error::Code::Cancelled as i32;
pub const TIMEOUT: i32 = crate::error::Code::Timeout as i32;

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

/// A task's work, as the spawner supplies it. Dropping it is the end of the task's user
/// data (the C layer runs `free_fn` then), which happens once both the loop and the
/// pool are done with the task.
pub trait TaskWork<H>: Send + Sync + Sized {
    /// Runs the work (at most once per task); returns its status (>= 0 by convention).
    fn run(&self, task: &mut Task<H>) -> i32;

    /// The spawn was refused: the caller keeps what the work refers to.
    fn refused(self) {}
}

/// A Rust closure as a task's work.
pub struct BoxedWork<H>(Mutex<Option<WorkFn<H>>>);

/// A Rust closure run once as a task's work.
type WorkFn<H> = Box<dyn FnOnce(&mut Task<H>) -> i32 + Send>;

impl<H> BoxedWork<H> {
    pub fn new(work: impl FnOnce(&mut Task<H>) -> i32 + Send + 'static) -> BoxedWork<H> {
        BoxedWork(Mutex::new(Some(Box::new(work))))
    }
}

impl<H> TaskWork<H> for BoxedWork<H> {
    fn run(&self, task: &mut Task<H>) -> i32 {
        let work = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        work.map_or(0, |work| work(task))
    }
}

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
    head: UnsafeCell<Head>,
    /// The registration: a slab id, written by the loop under its lock; or, for a cell
    /// of the task table, its task's id while the task is live and the next task's id
    /// (untagged) between tasks (see [`Table`]).
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
const FIRST_CHUNK: usize = 64;
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
            head: UnsafeCell::new(Head { job: JobHeader { vtable: &Self::VTABLE } }),
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
            let status = unsafe { &*this.work.get() }.run(&mut task);
            if crate::fork::is_child() {
                // The work forked and the child returned here: the task belongs to the
                // parent; touch nothing (no second free_fn, no inherited lock).
                std::mem::forget(task);
                return;
            }
            let result = task.into_result();
            // SAFETY: the pool's side of the handover, before the give-back.
            unsafe {
                *this.result.get() = (!result.is_empty()).then(|| Box::new(result));
                *this.status.get() = status;
            }
            if !this.cancelled.load(Acquire) {
                this.stage.store(FINISHED, Release);
            } else if this.stage.fetch_or(FINISHED_BIT, SeqCst) & ENDED_BIT != 0 {
                // Its `done` has run: the user data ends now, on this thread.
                unsafe {
                    drop((*this.result.get()).take());
                    ManuallyDrop::drop(&mut *this.work.get());
                }
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
            unsafe { *this.status.get() = CANCELLED };
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
        let result = unsafe { (*this.result.get()).take() }.map_or_else(Vec::new, |r| *r);
        match this.cancelled.load(SeqCst) {
            true => (CANCELLED, Vec::new()),
            false => (unsafe { *this.status.get() }, result),
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
            unsafe { drop((*this.result.get()).take()) };
            if this.stage.load(Acquire) & WORK_GONE == 0 {
                unsafe { ManuallyDrop::drop(&mut *this.work.get()) };
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
    /// task table, after [`Table::end`].
    pub fn end_lent(&self) {
        self.home.set(ENDED);
        if self.stage.fetch_or(ENDED_BIT, SeqCst) & STATE == ABANDONED {
            // The pool will only give the cell back: end the user data at the `done`.
            // SAFETY: the work never ran and never will; the pool does not touch it.
            unsafe { ManuallyDrop::drop(&mut *self.work.get()) };
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

// ---- the task table ------------------------------------------------------------------

/// Chunk k of the table holds `FIRST_CHUNK << k` cells.
const TABLE_CHUNKS: usize = 18;
/// Most cells a table holds: what its chunks hold, just under 2^24 (the index bits of
/// a task id).
const TABLE_MAX: u32 = (FIRST_CHUNK * ((1 << TABLE_CHUNKS) - 1)) as u32;

/// The task table of a loop: the cells of the tasks it spawns from its own thread, which
/// are registered here rather than in the loop's slab, so that such a spawn takes no
/// lock. A task's id names its cell (its index) and a generation; the cell holds the id
/// of its live task, and between tasks the next task's id without the loop's tag, which
/// matches no id.
///
/// Only the loop's owner (the thread running it, or the one freeing it) lends cells,
/// recycles them and ends their tasks; any thread may look a cell up by index, to
/// cancel its task. The race between a cancel and the task's end is settled by `ends`:
/// the owner changes a cell's id under it (the end of a task; a chunk of completions
/// takes it once), and a canceller holds it from reading the id until it has raised the
/// task's cancel flag, so a cancel that matched the id lands on that task, never on the
/// next one in the same cell. Chunks are never moved or freed before the loop's inbox
/// (they are owned by it, as [`Cells`]' are), so a looked-up cell stays valid.
pub struct Table<H, W> {
    chunks: [AtomicPtr<TaskCell<H, W>>; TABLE_CHUNKS],
    /// Cells below this index have been initialised (published with Release).
    count: AtomicU32,
    ends: Mutex<()>,
}

// SAFETY: the cells are shared as TaskCell is (see its impls); the rest is atomic.
unsafe impl<H: Send, W: Send + Sync> Send for Table<H, W> {}
unsafe impl<H: Send, W: Send + Sync> Sync for Table<H, W> {}

/// The owner's side of a [`Table`]: its spare cells and how many it lent.
pub struct Lender<H, W> {
    spare: Option<NonNull<TaskCell<H, W>>>,
    lent: u64,
}

// SAFETY: spare cells belong to the owner alone.
unsafe impl<H: Send, W: Send + Sync> Send for Lender<H, W> {}

impl<H, W> Default for Lender<H, W> {
    fn default() -> Self {
        Lender { spare: None, lent: 0 }
    }
}

impl<H, W> Lender<H, W> {
    /// How many cells have been lent since the loop was made.
    pub fn lent(&self) -> u64 {
        self.lent
    }

    /// Keeps a cell whose task is over (and released) for a later spawn, unless its
    /// generations are used up.
    ///
    /// # Safety
    /// For a released cell of this lender's table, by its owner, once.
    pub unsafe fn keep(&mut self, cell: NonNull<TaskCell<H, W>>) {
        // SAFETY: the owner's alone.
        if crate::slots::task_generation(unsafe { cell.as_ref() }.id.load(Relaxed)) == RETIRED_GENERATION {
            return;
        }
        unsafe { cell.cast::<Option<NonNull<TaskCell<H, W>>>>().write(self.spare) };
        self.spare = Some(cell);
    }
}

/// Asks the CPU to fetch the cache line at `p` (a hint; nothing on other targets).
#[inline(always)]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The generation in the id a retired cell holds (tasks' generations start at 1): the
/// id still marks the cell as the table's, and matches no task.
const RETIRED_GENERATION: u32 = 0;

impl<H, W> Default for Table<H, W> {
    fn default() -> Self {
        Table { chunks: Default::default(), count: AtomicU32::new(0), ends: Mutex::new(()) }
    }
}

impl<H, W> Table<H, W> {
    /// The chunk and the offset in it of cell `index`.
    fn locate(index: u32) -> (usize, usize) {
        let n = index as usize / FIRST_CHUNK + 1;
        let k = (usize::BITS - 1 - n.leading_zeros()) as usize;
        (k, index as usize - FIRST_CHUNK * ((1 << k) - 1))
    }

    /// Cell `index`, if it has been initialised. Any thread.
    pub fn cell(&self, index: u32) -> Option<NonNull<TaskCell<H, W>>> {
        if index >= self.count.load(Acquire) {
            return None;
        }
        let (k, offset) = Self::locate(index);
        let chunk = NonNull::new(self.chunks[k].load(Acquire))?;
        // SAFETY: within chunk k, which holds FIRST_CHUNK << k cells.
        Some(unsafe { chunk.add(offset) })
    }

    /// Holds task ends off while a canceller looks at a cell.
    pub fn hold_ends(&self) -> MutexGuard<'_, ()> {
        self.ends.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends the task of `cell` (back or lent): from now on its id names nothing, and
    /// the cell holds the next task's. Under [`hold_ends`](Self::hold_ends), by the
    /// owner.
    ///
    /// # Safety
    /// A cell of this table whose task is live.
    pub unsafe fn end(cell: NonNull<TaskCell<H, W>>, _ends: &MutexGuard<'_, ()>) {
        // SAFETY: cells live as long as the table.
        let this = unsafe { cell.as_ref() };
        let id = this.id.load(Relaxed);
        let next = crate::slots::next_task_id(id)
            .unwrap_or_else(|| crate::slots::untagged_task_id(crate::slots::task_index(id), RETIRED_GENERATION));
        this.id.store(next, Release);
    }
}

impl<H: Send + 'static, W: TaskWork<H> + 'static> Table<H, W> {
    /// Lends a cell for a new task of the loop tagged `tag`: its id, the cell and the
    /// job to queue; the work back when the table is full. By the owner.
    #[allow(clippy::type_complexity)]
    pub fn lend(
        &self,
        lender: &mut Lender<H, W>,
        tag: u16,
        inbox: &Arc<Inbox<H>>,
        work: W,
    ) -> Result<(Id, NonNull<TaskCell<H, W>>, JobRef), W> {
        let cell = match lender.spare {
            Some(cell) => {
                // SAFETY: a spare cell is the owner's alone; its first word links it.
                lender.spare = unsafe { cell.cast::<Option<NonNull<TaskCell<H, W>>>>().read() };
                if let Some(next) = lender.spare {
                    // The next spawn writes that cell: start fetching it now (with many
                    // tasks in flight it is rarely in the cache any more).
                    prefetch(next.as_ptr().cast());
                }
                cell
            }
            None => {
                let index = self.count.load(Relaxed);
                if index >= TABLE_MAX {
                    return Err(work);
                }
                let (k, offset) = Self::locate(index);
                let mut chunk = self.chunks[k].load(Relaxed);
                if chunk.is_null() {
                    let layout = std::alloc::Layout::array::<TaskCell<H, W>>(FIRST_CHUNK << k).expect("a valid size");
                    // SAFETY: a non-zero size.
                    let memory = NonNull::new(unsafe { std::alloc::alloc(layout) })
                        .unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
                    inbox.own_chunk(memory, layout);
                    chunk = memory.as_ptr().cast();
                    self.chunks[k].store(chunk, Release);
                }
                // SAFETY: within chunk k; not yet visible to any other thread (`count`).
                let cell = unsafe { NonNull::new_unchecked(chunk.add(offset)) };
                unsafe {
                    std::ptr::addr_of_mut!((*cell.as_ptr()).id)
                        .write(AtomicU64::new(crate::slots::untagged_task_id(index, 1)));
                    std::ptr::addr_of_mut!((*cell.as_ptr()).stage).write(AtomicU8::new(FINISHED));
                    std::ptr::addr_of_mut!((*cell.as_ptr()).cancelled).write(AtomicBool::new(false));
                }
                self.count.store(index + 1, Release);
                cell
            }
        };
        let c = cell.as_ptr();
        // SAFETY: a spare or fresh cell is the owner's, and holds nothing to drop. A
        // canceller may read its atomics (with a stale or forged id), so they are
        // written as atomics; the rest is written whole. The id goes last (Release):
        // a canceller that matches it sees the task's state.
        let id = unsafe {
            std::ptr::addr_of_mut!((*c).head)
                .write(UnsafeCell::new(Head { job: JobHeader { vtable: &TaskCell::<H, W>::VTABLE } }));
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
        };
        lender.lent += 1;
        // SAFETY: the cell starts with its job header; the job is the pool's loan.
        Ok((id, cell, unsafe { JobRef::from_raw(cell.cast()) }))
    }
}
/// What a work function sees: its cancel flag, and where its result and events go: to
/// its loop (a task on a thread), or down a pipe to the parent (a process task's child).
pub struct Task<'a, H> {
    cancelled: &'a AtomicBool,
    sink: Sink<'a, H>,
}

enum Sink<'a, H> {
    Memory {
        inbox: &'a Inbox<H>,
        result: Vec<u8>,
    },
    /// In a process task's child: frames on `fd` (see [`crate::process`]).
    Pipe {
        fd: RawFd,
        parent: libc::pid_t,
    },
}

/// A child's cancel flag: a child learns of a cancel by being killed.
static NEVER: AtomicBool = AtomicBool::new(false);

impl<'a, H> Task<'a, H> {
    fn in_memory(cancelled: &'a AtomicBool, inbox: &'a Inbox<H>) -> Task<'a, H> {
        Task { cancelled, sink: Sink::Memory { inbox, result: Vec::new() } }
    }

    fn into_result(self) -> Vec<u8> {
        match self.sink {
            Sink::Memory { result, .. } => result,
            Sink::Pipe { .. } => Vec::new(),
        }
    }
}

impl<H> Task<'static, H> {
    /// The task of a forked child that reports to its parent through `fd`. Makes no
    /// allocation and no call that is not async-signal-safe.
    pub fn in_child(fd: RawFd) -> Task<'static, H> {
        // SAFETY: getppid cannot fail.
        Task { cancelled: &NEVER, sink: Sink::Pipe { fd, parent: unsafe { libc::getppid() } } }
    }
}

impl<H> Task<'_, H> {
    /// True once the task was cancelled or timed out; in a process task's child, once
    /// the parent has gone.
    pub fn cancelled(&self) -> bool {
        match self.sink {
            // SAFETY: getppid cannot fail.
            Sink::Pipe { parent, .. } => (unsafe { libc::getppid() }) != parent,
            Sink::Memory { .. } => self.cancelled.load(SeqCst),
        }
    }

    pub fn write(&mut self, bytes: &[u8]) -> crate::Result<()> {
        match &mut self.sink {
            Sink::Memory { result, .. } => {
                result.extend_from_slice(bytes);
                Ok(())
            }
            Sink::Pipe { fd, .. } => crate::process::send_result(*fd, bytes)
                .map_err(|e| crate::Error::io("writing the result to the parent's pipe", e)),
        }
    }

    /// Emits an event to the task's loop; it reaches subscribers before `done`.
    pub fn emit(&self, topic: &str, payload: &[u8]) -> crate::Result<()> {
        match &self.sink {
            Sink::Memory { inbox, .. } => {
                crate::fork::check()?;
                crate::bus::check_topic(topic)?;
                inbox.emit(topic, payload);
                Ok(())
            }
            Sink::Pipe { fd, .. } => crate::process::send_event(*fd, topic, payload),
        }
    }

    /// True for a process task's child.
    pub fn is_child(&self) -> bool {
        matches!(self.sink, Sink::Pipe { .. })
    }

    /// In a process task's child: sends `status` as the work's status and ends the
    /// child. Err for a task on a thread (it cannot end the process).
    pub fn child_exit(&self, status: i32) -> crate::Result<std::convert::Infallible> {
        match self.sink {
            Sink::Pipe { fd, .. } => crate::process::finish(fd, status),
            Sink::Memory { .. } => Err(crate::Error::invalid(
                "task is not a process task's (it runs on a thread: return from work instead)",
            )),
        }
    }
}

/// The default pools, made on first use and joined by [`shutdown`].
static DEFAULTS: Mutex<[Option<Arc<Pool>>; 2]> = Mutex::new([None, None]);

pub fn default_pool(kind: pool::Kind) -> crate::Result<Arc<Pool>> {
    let mut pools = DEFAULTS.lock().unwrap_or_else(|p| p.into_inner());
    let slot = &mut pools[(kind == pool::Kind::Io) as usize];
    if let Some(pool) = slot {
        return Ok(pool.clone());
    }
    let pool = Arc::new(Pool::new(pool::Options::new(kind))?);
    *slot = Some(pool.clone());
    Ok(pool)
}

/// Bumped whenever a pool is freed or the default pools are shut down: a loop's cached
/// pool is used only while the epoch it was cached at is still the current one.
static POOL_EPOCH: AtomicU64 = AtomicU64::new(0);

/// Call before a pool is unregistered (or its address can be reused).
pub fn pools_changed() {
    POOL_EPOCH.fetch_add(1, SeqCst);
}

/// The current pool epoch: a cached pool is used only while it is the one it was cached at.
pub fn pool_epoch() -> u64 {
    POOL_EPOCH.load(SeqCst)
}

/// Keys of the default pools in a loop's pool cache (pool handles' addresses are the
/// keys of the others).
pub(crate) const DEFAULT_CPU: usize = 1;
pub(crate) const DEFAULT_IO: usize = 2;

/// Drains and joins the default pools (queued tasks complete as cancelled).
pub fn shutdown() -> crate::Result<()> {
    crate::fork::check()?;
    let mut defaults = DEFAULTS.lock().unwrap_or_else(|p| p.into_inner());
    if defaults.iter().flatten().any(|pool| pool.on_own_thread()) {
        return Err(crate::Error::new(
            crate::Code::Busy,
            "called from a thread of a default pool, which cannot join itself",
        ));
    }
    let pools = std::mem::take(&mut *defaults);
    pools_changed();
    drop(defaults);
    for pool in pools.into_iter().flatten() {
        pool.shutdown()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_indices_map_onto_chunks_without_gaps() {
        type T = Table<(), ()>;
        assert_eq!(T::locate(0), (0, 0));
        assert_eq!(T::locate(63), (0, 63));
        assert_eq!(T::locate(64), (1, 0));
        assert_eq!(T::locate(191), (1, 127));
        assert_eq!(T::locate(192), (2, 0));
        let mut expected = (0, 0);
        for index in 0..100_000u32 {
            assert_eq!(T::locate(index), expected, "index {index}");
            expected.1 += 1;
            if expected.1 == FIRST_CHUNK << expected.0 {
                expected = (expected.0 + 1, 0);
            }
        }
        let (k, offset) = T::locate(TABLE_MAX - 1);
        assert_eq!((k, offset), (TABLE_CHUNKS - 1, (FIRST_CHUNK << (TABLE_CHUNKS - 1)) - 1));
        const { assert!(TABLE_MAX < 1 << 24, "an index fits a task id") };
    }
}
