//! The task table: the cells of the tasks a loop spawns from its own thread, found by
//! index (a task id names its cell), so that such a spawn takes no lock.

use super::cell::{TaskCell, FIRST_CHUNK};
use super::TaskWork;
use crate::inbox::Inbox;
use crate::pool::JobRef;
use crate::slots::Id;
use crate::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use crate::sync::atomic::{AtomicPtr, AtomicU32};
use crate::sync::{Mutex, MutexGuard};
use std::ptr::NonNull;
use std::sync::Arc;

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
/// (they are owned by it, as [`Cells`](super::Cells)' are), so a looked-up cell stays
/// valid.
pub struct Table<H, W> {
    chunks: [AtomicPtr<TaskCell<H, W>>; TABLE_CHUNKS],
    /// Cells below this index have been initialised (published with Release).
    count: AtomicU32,
    ends: Mutex<()>,
}

// SAFETY: the cells are shared as TaskCell is (see its impls); the rest is atomic.
unsafe impl<H: Send, W: Send + Sync> Send for Table<H, W> {}
unsafe impl<H: Send, W: Send + Sync> Sync for Table<H, W> {}

/// The owner's side of a [`Table`]: its spare cells (a stack: the last kept is lent
/// first) and how many it lent.
///
/// A stack, not a list linked through the cells: the spawn that lends a cell starts
/// fetching the cell [`AHEAD`] spawns later will lend, which a list linked through the
/// cells could only do one cell ahead, each fetch waiting for the last. With many
/// tasks in flight the spare cells are out of the cache, and the atomic operations of
/// a spawn wait for its stores to them.
pub struct Lender<H, W> {
    spare: Vec<NonNull<TaskCell<H, W>>>,
    lent: u64,
}

// SAFETY: spare cells belong to the owner alone.
unsafe impl<H: Send, W: Send + Sync> Send for Lender<H, W> {}

impl<H, W> Default for Lender<H, W> {
    fn default() -> Self {
        Lender { spare: Vec::new(), lent: 0 }
    }
}

/// How many spawns ahead the lender fetches spare cells.
const AHEAD: usize = 8;

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
        if crate::slots::task_generation(unsafe { cell.as_ref() }.owner_id()) == RETIRED_GENERATION {
            return;
        }
        self.spare.push(cell);
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
        Table {
            chunks: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
            count: AtomicU32::new(0),
            ends: Mutex::new(()),
        }
    }
}

impl<H, W> Table<H, W> {
    /// The chunk and the offset in it of cell `index`.
    #[inline(always)]
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

    /// Cancels task `id` (its cell is `index`), from any thread: None if no such task
    /// is live (or it was cancelled already), else whether it had not started (then it
    /// never will, and the caller reports its `Cancelled` completion). `ends` is held
    /// from the id check to the cancel flag, so the cancel lands on task `id` and never
    /// on the next task of the same cell.
    pub fn cancel(&self, id: Id, index: u32) -> Option<bool> {
        let cell = self.cell(index)?;
        let _ends = self.hold_ends();
        // SAFETY: the table's cells live as long as the table.
        let cell = unsafe { cell.as_ref() };
        if cell.id() != id || cell.is_cancelled() {
            return None;
        }
        Some(cell.cancel())
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
        let id = this.owner_id();
        let next = crate::slots::next_task_id(id)
            .unwrap_or_else(|| crate::slots::untagged_task_id(crate::slots::task_index(id), RETIRED_GENERATION));
        this.set_id(next);
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
        let cell = match lender.spare.pop() {
            Some(cell) => {
                if let Some(at) = lender.spare.len().checked_sub(AHEAD) {
                    // A later spawn writes that cell: start fetching it now (with many
                    // tasks in flight it is rarely in the cache any more).
                    prefetch(lender.spare[at].as_ptr().cast());
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
                unsafe { TaskCell::init_in_table(cell, crate::slots::untagged_task_id(index, 1)) };
                self.count.store(index + 1, Release);
                cell
            }
        };
        // SAFETY: a spare or fresh cell of this table, lent by its owner.
        let id = unsafe { TaskCell::lend_in_table(cell, tag, inbox, work) };
        lender.lent += 1;
        // SAFETY: the cell starts with its job header; the job is the pool's loan.
        Ok((id, cell, unsafe { JobRef::from_raw(cell.cast()) }))
    }
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
