//! Task timings: a task spawned with `WEFT_SPAWN_TIMING` in `weft_spawn_options.flags` records when it was
//! queued, started and finished; its `done` reads them with `weft_task_get_timing`.
//!
//! All of it lives here, around the caller's functions: the task's work, `done` and
//! `free_fn` are wrapped in a block ([`Timed`]) that holds the caller's three and the
//! times. The wrapped work stamps the start and the end; the wrapped `done` makes the
//! block the thread's current timing for the call. A task without the option pays
//! nothing. A process task's work runs in a child: its block is a shared mapping (the
//! child's stamps reach the parent); it is made before the fork, so it is in every
//! child that may run the task, reused ones included.

use super::args::out_struct;
use super::guard::guard;
use super::handle::{weft_id, weft_loop, weft_task};
use super::handler::{weft_done_fn, weft_free_fn};
use crate::error::{Code, Error, Result};
use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// What `weft_task_get_timing` fills: set `size = sizeof(weft_task_timing)` first.
/// Times are CLOCK_MONOTONIC nanoseconds (Python's `time.monotonic_ns()`, Node's
/// `process.hrtime.bigint()` on Linux).
#[repr(C)]
#[derive(Default)]
pub struct weft_task_timing {
    /// sizeof(weft_task_timing) as your program sees it.
    pub size: usize,
    /// When `weft_spawn` was called.
    pub queued_ns: u64,
    /// When the work began; 0: it never did (cancelled or timed out before it started).
    pub started_ns: u64,
    /// When the work returned; 0: it has not (a timeout's `done` runs without waiting
    /// for it) or never ran.
    pub finished_ns: u64,
    /// When `done` was called.
    pub done_ns: u64,
}

type WorkFn = unsafe extern "C-unwind" fn(*mut weft_task, *mut c_void) -> c_int;

/// The caller's functions and data, and the task's times.
struct Timed {
    work: WorkFn,
    done: weft_done_fn,
    user_data: *mut c_void,
    free_fn: weft_free_fn,
    queued_ns: u64,
    started_ns: AtomicU64,
    finished_ns: AtomicU64,
    /// In a shared mapping (a process task's), not on the heap.
    mapped: bool,
}

/// A task's functions, wrapped or not.
pub(super) struct Parts {
    pub work: WorkFn,
    pub done: weft_done_fn,
    pub user_data: *mut c_void,
    pub free_fn: weft_free_fn,
}

thread_local! {
    /// The task whose wrapped `done` runs on this thread: its id, its block, and when
    /// `done` was called.
    static CURRENT: Cell<Option<(weft_id, *const Timed, u64)>> = const { Cell::new(None) };
}

/// Wraps a task's functions to record its times; `shared`: its work runs in a child.
pub(super) fn wrap(parts: Parts, shared: bool) -> Result<Parts> {
    let timed = Timed {
        work: parts.work,
        done: parts.done,
        user_data: parts.user_data,
        free_fn: parts.free_fn,
        queued_ns: crate::sys::now_ns(),
        started_ns: AtomicU64::new(0),
        finished_ns: AtomicU64::new(0),
        mapped: shared,
    };
    let block: *mut Timed = if shared {
        // SAFETY: a fresh anonymous shared mapping, large enough, written before use.
        unsafe {
            let at = libc::mmap(
                std::ptr::null_mut(),
                std::mem::size_of::<Timed>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if at == libc::MAP_FAILED {
                return Err(Error::io("mapping a process task's timing", std::io::Error::last_os_error()));
            }
            let at = at.cast::<Timed>();
            at.write(timed);
            at
        }
    } else {
        Box::into_raw(Box::new(timed))
    };
    Ok(Parts { work: timed_work, done: Some(timed_done), user_data: block.cast(), free_fn: Some(timed_free) })
}

unsafe extern "C-unwind" fn timed_work(task: *mut weft_task, data: *mut c_void) -> c_int {
    // SAFETY: the block `wrap` made; it lives until `timed_free`, after the work.
    let timed = unsafe { &*data.cast::<Timed>() };
    timed.started_ns.store(crate::sys::now_ns(), Relaxed);
    // SAFETY: the caller's work function with its data.
    let status = unsafe { (timed.work)(task, timed.user_data) };
    timed.finished_ns.store(crate::sys::now_ns(), Relaxed);
    status
}

unsafe extern "C" fn timed_done(
    lp: *mut weft_loop,
    id: weft_id,
    status: c_int,
    result: *const u8,
    len: usize,
    data: *mut c_void,
) {
    let timed = data.cast::<Timed>().cast_const();
    let outer = CURRENT.with(|c| c.replace(Some((id, timed, crate::sys::now_ns()))));
    // Restored however the call ends (a C++ exception or a forced unwind through it).
    struct Restore(Option<(weft_id, *const Timed, u64)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(outer);
    // SAFETY: the block lives until `timed_free`, which runs after `done`.
    let timed = unsafe { &*timed };
    if let Some(done) = timed.done {
        // SAFETY: the caller's done function with its data.
        unsafe { done(lp, id, status, result, len, timed.user_data) };
    }
}

unsafe extern "C" fn timed_free(data: *mut c_void) {
    let block = data.cast::<Timed>();
    // SAFETY: the block `wrap` made, freed once (free_fn runs once), after done and work.
    unsafe {
        let (free_fn, user_data, mapped) = ((*block).free_fn, (*block).user_data, (*block).mapped);
        if mapped {
            libc::munmap(block.cast(), std::mem::size_of::<Timed>());
        } else {
            drop(Box::from_raw(block));
        }
        if let Some(free_fn) = free_fn {
            free_fn(user_data);
        }
    }
}

/// Fills `*timing` with the times of task `task` (see `weft_task_timing`). Only inside
/// that task's `done` (on the loop thread), for a task spawned with
/// `weft_spawn_options.timing`. Returns `WEFT_OK`, `WEFT_ERR_NULL`, `WEFT_ERR_INVALID`
/// (a bad `size`; not inside this task's `done`, or spawned without `timing`).
#[no_mangle]
pub extern "C" fn weft_task_get_timing(lp: *const weft_loop, task: weft_id, timing: *mut weft_task_timing) -> c_int {
    guard("weft_task_get_timing", || {
        if lp.is_null() {
            return Err(Error::new(Code::Null, "loop is NULL"));
        }
        let Some((id, timed, done_ns)) = CURRENT.with(|c| c.get()).filter(|&(id, _, _)| id == task) else {
            return Err(Error::invalid(format!(
                "task {task}: not inside its done, or spawned without WEFT_SPAWN_TIMING"
            )));
        };
        debug_assert_eq!(id, task);
        // SAFETY: the block of the task whose done runs now: alive for the call.
        let timed = unsafe { &*timed };
        let full = weft_task_timing {
            size: std::mem::size_of::<weft_task_timing>(),
            queued_ns: timed.queued_ns,
            started_ns: timed.started_ns.load(Relaxed),
            finished_ns: timed.finished_ns.load(Relaxed),
            done_ns,
        };
        out_struct(timing, full, "timing")?;
        Ok(0)
    })
}
