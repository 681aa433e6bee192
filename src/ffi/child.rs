//! Children the host forks by itself (a runtime with its own fork hooks, such as
//! Python's `os.fork()`): `weft_adopt_child` in the parent; `weft_child_task` and
//! `weft_child_exit` in the child.

use super::args::read_options;
use super::guard::guard;
use super::handle::{weft_id, weft_loop, weft_task};
use super::handler::{weft_done_fn, weft_free_fn, CHandler};
use super::r#loop::the_loop;
use super::task::{no_done, the_task, weft_spawn_options, SPAWN_OPTIONS_V1};
use crate::error::Error;
use crate::task::Task;
use std::ffi::{c_int, c_void};

/// Supervises a child the host forked by itself (a language runtime that must fork with
/// its own hooks, such as Python's `os.fork()`), exactly as a `WEFT_ON_PROCESS` task:
/// the child reports through the pipe whose read end is `pipe_read_fd` (in the child,
/// `weft_child_task` on the write end), and `done` runs on the loop thread once the child
/// is reaped and its output read, with the same statuses. `options->timeout_ms` applies;
/// `pool` and `max_children` do not, and an adopted child is not counted under any
/// bound (`weft_spawn`'s `fork_fn` has weft bound, queue and reuse a host's forks);
/// `reuse_child` and `fork_fn` must be unset. On success the loop owns `pipe_read_fd` (it closes
/// it; close the write end in the parent yourself, after the fork). Any thread.
/// Returns the id, or 0: `WEFT_ERR_NULL` (loop), `WEFT_ERR_INVALID` (`pid` not an unreaped
/// child of this process, `pipe_read_fd` not a pipe or socket open for reading, a bad
/// options size or timeout), `WEFT_ERR_CLOSED`, `WEFT_ERR_FORKED`. On failure the fd
/// stays the caller's and `free_fn` does not run.
///
/// The pipe protocol, for children written in any language: frames of
/// `length:u32le kind:u8 body[length]`; kind 'W' appends `body` to the result; kind 'E'
/// is an event, `body = topic_len:u32le topic payload`; kind 'S' ends the result,
/// `body = status:i32le`. A body holds at most 16 MiB. Anything else is a protocol
/// error: the child is killed and `done` gets `WEFT_ERR_CRASHED`.
#[no_mangle]
pub extern "C" fn weft_adopt_child(
    lp: *mut weft_loop,
    pid: c_int,
    pipe_read_fd: c_int,
    done: weft_done_fn,
    user_data: *mut c_void,
    free_fn: weft_free_fn,
    options: *const weft_spawn_options,
) -> weft_id {
    guard("weft_adopt_child", || {
        crate::fork::check()?;
        let lp = the_loop(lp)?;
        let o = read_options(options, "weft_spawn_options", SPAWN_OPTIONS_V1)?;
        if let Some(o) = o.filter(|o| o.reuse_child || o.fork_fn.is_some()) {
            let what = if o.reuse_child { "reuse_child" } else { "fork_fn" };
            return Err(Error::invalid(format!("options.{what} is set, but an adopted child is forked already")));
        }
        let done = CHandler::new(Some(done.unwrap_or(no_done)), user_data, free_fn)?;
        lp.adopt_child(pid, pipe_read_fd, done, o.map_or(0, |o| o.timeout_ms))
    })
}

/// In a child forked by the host (see `weft_adopt_child`): a task whose
/// `weft_task_write`, `weft_task_emit` and `weft_task_cancelled` report to the parent
/// through `pipe_write_fd`, and which `weft_child_exit` ends. Works in a forked child
/// (the exception to `WEFT_ERR_FORKED`), from any of its threads; use the task from one
/// thread at a time. Returns NULL on error: `WEFT_ERR_INVALID`
/// (`pipe_write_fd` not a pipe or socket open for writing).
#[no_mangle]
pub extern "C" fn weft_child_task(pipe_write_fd: c_int) -> *mut weft_task {
    guard("weft_child_task", || {
        crate::process::check_write_fd(pipe_write_fd)?;
        // Leaked on purpose: the child ends with weft_child_exit.
        Ok(Box::into_raw(Box::new(Task::<CHandler>::in_child(pipe_write_fd))).cast())
    })
}

/// Sends `status` to the parent as the work's status (>= 0 by convention; `done` gets
/// it), closes the pipe and ends the child with `_exit(0)`: no atexit handler and no
/// destructor runs. For a task of `weft_child_task`, or a `WEFT_ON_PROCESS` task's own
/// `task` (to end the child early). From the thread using the task. Returns only on bad
/// input (`weft_last_error` says
/// why): NULL, or a task that runs on a thread, not in a child.
#[no_mangle]
pub extern "C" fn weft_child_exit(task: *mut weft_task, status: c_int) {
    guard("weft_child_exit", || {
        let task = the_task(task)?;
        match task.child_exit(status)? {}
    })
}
