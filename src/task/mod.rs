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
//! # Files
//!
//! * `cell.rs`: the cell hand-over: [`TaskCell`], lent to a pool and always given back
//!   (the protocol is written out there), [`TaskRef`], the loop's handle on it, and
//!   [`Cells`], the loop's spare cells.
//! * `table.rs`: the task table ([`Table`], [`Lender`]): cells found by index, for
//!   tasks a loop spawns from its own thread.
//! * `work.rs`: [`TaskWork`], what a spawner supplies, and [`Task`], what a work
//!   function sees.
//!
//! # What the files may not touch
//!
//! Only `cell.rs` reads or writes a cell's fields: the table lends and ends its cells
//! through `TaskCell`'s methods, and `work.rs` knows nothing of cells. Nothing here
//! touches a pool's insides: a cell is a job to a pool ([`crate::pool::JobRef`]), and
//! the default pools live in [`crate::pool::defaults`].

mod cell;
mod table;
mod work;

pub use cell::{Back, Cells, TaskCell, TaskRef};
pub use table::{prefetch, Lender, Table};
pub use work::{BoxedWork, Task, TaskWork};

// For compatibility until callers move: the default pools and the pool epoch moved to
// `crate::pool::defaults`.
pub use crate::pool::defaults::{default_pool, pool_epoch, pools_changed, shutdown};
pub(crate) use crate::pool::defaults::{DEFAULT_CPU, DEFAULT_IO};

/// Where a task's work runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Where {
    Loop,
    Io,
    Cpu,
    Process,
}

/// A task's completion status: what work returned (>= 0), or a negative `weft_result`.
/// These are `Code` values, so that the process supervisor uses them without importing
/// this module (which uses it).
pub const CANCELLED: i32 = crate::error::Code::Cancelled as i32;
pub const TIMEOUT: i32 = crate::error::Code::Timeout as i32;
