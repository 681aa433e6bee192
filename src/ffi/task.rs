//! Tasks: `weft_spawn` (work on the loop, a pool or a forked child; `done` on the loop)
//! and what a work function calls on its `weft_task`.

use super::args::{bytes_arg, c_str, non_null, read_options};
use super::guard::guard;
use super::handle::{weft_id, weft_loop, weft_pool, weft_task};
use super::handler::{weft_done_fn, weft_free_fn, weft_work_fn, CHandler, CWork};
use super::pool::the_pool;
use super::r#loop::the_loop;
use super::timing::{self, Parts};
use crate::error::{Code, Error, Result};
use crate::pool::Pool;
use crate::process::{Fds, HostFork};
use crate::r#loop::SpawnOptions;
use crate::task::{Task, Where};
use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;

/// Where `weft_spawn` runs a task's work: one of the `WEFT_ON_*` values.
pub type weft_where = c_int;
/// On the loop thread, soon (in its next pass).
pub const WEFT_ON_LOOP: weft_where = 0;
/// On an IO pool thread: for blocking calls (files, DNS, a database client).
pub const WEFT_ON_IO: weft_where = 1;
/// On a CPU pool thread: for computation.
pub const WEFT_ON_CPU: weft_where = 2;
/// In a forked child process: the work runs against a copy-on-write snapshot of this
/// process, so nothing is serialised but the bytes it writes (see `weft_spawn`).
pub const WEFT_ON_PROCESS: weft_where = 3;

/// Options of `weft_spawn` (NULL: all defaults). Zero-initialise, set
/// `size = sizeof(weft_spawn_options)`, then the fields you need.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct weft_spawn_options {
    /// sizeof(weft_spawn_options) as your program sees it.
    pub size: usize,
    /// Milliseconds after which `done` gets `WEFT_ERR_TIMEOUT` (the work keeps running
    /// and sees `weft_task_cancelled`); 0: none.
    pub timeout_ms: u64,
    /// The pool for `WEFT_ON_IO` / `WEFT_ON_CPU` tasks, of the matching kind; NULL: the
    /// default pool.
    pub pool: *mut weft_pool,
    /// `WEFT_ON_PROCESS`: the task starts (forks) only while fewer of its loop's process
    /// tasks run; it waits in FIFO order otherwise. 0: one per core.
    pub max_children: u32,
    /// `WEFT_ON_PROCESS`: called instead of fork(2) to make the task's child, for a host
    /// that must fork with its own hooks (Python's `os.fork()`). It must fork and return
    /// as fork does: the child's pid in the parent, 0 in the child, -1 on failure (errno
    /// set); never 0 in the parent. It is called on the thread that starts the task (in
    /// `weft_spawn`, or the loop thread when a slot frees), with no weft lock held. In the
    /// child, weft runs the work (and, with `reuse_child`, later works) and ends the
    /// child; the call never returns to its caller there. NULL: weft forks.
    pub fork_fn: weft_fork_fn,
    /// Passed to `fork_fn`.
    pub fork_data: *mut c_void,
    /// `WEFT_ON_PROCESS`: the task's child may go on to run later process tasks of the
    /// loop spawned with `reuse_child` (and the same `fork_fn` and `fork_data`), and the
    /// task may run in a child that ran earlier ones: one fork for many tasks, as a
    /// process pool's workers. See `weft_spawn` for which tasks a child runs.
    pub reuse_child: bool,
    /// `WEFT_ON_PROCESS`: descriptors of this process the task's child keeps open (array
    /// of `keep_fds_len` fds, read during `weft_spawn`; NULL with 0: none). By default the
    /// child closes every fd above stderr (2) but its own pipes to the parent, before the
    /// work runs, so that it holds none of the parent's sockets, pipes and files: a
    /// listening socket the parent closes refuses connections at once, a connection it
    /// closes ends for the peer at once, even while a child runs. A work that uses a
    /// descriptor of the parent lists it here (or sets `inherit_fds`); any other fd it
    /// finds at a number is not the parent's (the closed numbers are reused by the
    /// work's own opens).
    pub keep_fds: *const c_int,
    /// The number of fds at `keep_fds`.
    pub keep_fds_len: usize,
    /// `WEFT_ON_PROCESS`: the child keeps every descriptor of this process open, as
    /// fork(2) leaves them (weft's behaviour before `keep_fds`); `keep_fds` is then
    /// unused. The parent's sockets then stay open while the child runs.
    pub inherit_fds: bool,
    /// `WEFT_SPAWN_*` bits (0: none). A u64, at offset 80: a field in the tail padding
    /// of the older struct would be read from callers that never set it.
    pub flags: u64,
}

/// `weft_spawn_options.flags`: record when the task was queued, started and finished,
/// for its `done` to read with `weft_task_get_timing` (a few clock reads per task, and
/// for a process task a page of shared memory).
pub const WEFT_SPAWN_TIMING: u64 = 1;

/// A host's fork for process tasks (see `weft_spawn_options.fork_fn`).
pub type weft_fork_fn = Option<unsafe extern "C" fn(fork_data: *mut c_void) -> c_int>;

/// The size of the first `weft_spawn_options` (size, timeout_ms, pool): the smallest
/// accepted.
pub(super) const SPAWN_OPTIONS_V1: usize =
    std::mem::offset_of!(weft_spawn_options, pool) + std::mem::size_of::<*mut weft_pool>();

/// Runs `work(task, user_data)` where `where` says: `WEFT_ON_LOOP` (on the loop thread,
/// in its next pass), `WEFT_ON_IO` (the default IO pool, or `options->pool`) or
/// `WEFT_ON_CPU` (the default CPU pool, or `options->pool`); then calls
/// `done(loop, id, status, result, len, user_data)` on the loop thread exactly once.
/// `weft_cancel(loop, id)` before the work starts: `done` gets `WEFT_ERR_CANCELLED` and
/// the work never runs; while it runs: `weft_task_cancelled` turns true and `done` gets
/// `WEFT_ERR_CANCELLED` when the work returns (its result discarded); after `done`, or
/// once the loop has taken the finished task's completion to deliver it in the current
/// pass (a cancel from the `done` of a task delivered just before it):
/// `WEFT_ERR_NOT_FOUND`. With `options->timeout_ms`, `done` gets `WEFT_ERR_TIMEOUT` at the
/// deadline without waiting for the work, which sees `weft_task_cancelled`.
/// `free_fn(user_data)` runs once, after both `done` and the work are over: on the loop
/// thread, or on the work's thread when the work outlives `done`. A work function that
/// never returns keeps its pool thread, and its `free_fn` never runs. `done` may be
/// NULL. The default pools start on first use (CPU: one thread per core; IO: up to 64
/// threads, idle ones exit after 10 s). Any thread.
///
/// Who owns a loop: the thread running it (in `weft_loop_run`, so in its callbacks),
/// or, while no thread runs it, the first thread to call into it since it was made or
/// last ran, which keeps it until a thread runs or frees the loop. A task on a pool
/// without a timeout spawned by the loop's owner takes no lock of the loop's: from a
/// callback, before `weft_loop_run`, or between `WEFT_RUN_NOWAIT` passes. A spawn from
/// another thread takes the loop's lock.
/// From a callback, CPU tasks are handed to the pool 64 at a time, and the rest when
/// the callback returns, so a callback must not wait for a task it has just spawned to
/// start; outside callbacks they are staged where a free worker takes them without
/// any later call, so a thread may block on a task it has just spawned.
///
/// `WEFT_ON_PROCESS`: the work runs in a forked child, against a copy-on-write snapshot
/// of this process taken at the fork: inside `weft_spawn` (on the calling thread) when
/// fewer than `options->max_children` (default: one per core) of the loop's process
/// tasks run and none waits, otherwise on the loop thread when a slot frees (FIFO). In
/// the child, `weft_task_write` and `weft_task_emit` stream to the parent through a
/// pipe; `weft_task_cancelled` is true once the parent is gone. When work returns, the
/// child sends its status and `_exit`s (no atexit handler, no destructor runs). Between
/// the fork and the work, weft makes only async-signal-safe calls; what the work itself
/// calls is the caller's business (another thread may have held any lock at the fork:
/// glibc's malloc is safe, most other libraries' locks are not). The child starts with
/// no signal blocked and SIGTERM at its default action, and with only stdin, stdout,
/// stderr, its pipes to the parent and `options->keep_fds` of this process's descriptors
/// open (the others are closed before the work, with close_range(2) where there is one):
/// a server's sockets are not held open by a child, so a listening socket the server
/// closes refuses connections at once, and a peer sees a connection the server closes
/// end at once, while its renders run in children. The trade-off: a work that uses a
/// descriptor it inherits (a log file, a database connection) must list it in
/// `keep_fds`, or set `inherit_fds` to keep them all (the behaviour before these
/// fields; NULL options and an older, shorter struct get the closing default). With
/// `reuse_child`, a child keeps the fds any of the tasks it may run keeps. The events
/// reach the loop's subscribers in emit order, before `done`. `done` runs once the child is reaped and
/// its output read: `status` is what work returned; `WEFT_ERR_CRASHED` if the child died
/// by a signal or exited before sending its status (`weft_last_error`, called inside
/// `done`, names the signal or exit code); `WEFT_ERR_TIMEOUT` or `WEFT_ERR_CANCELLED`
/// after a timeout or `weft_cancel`, which kill the child (SIGTERM, then SIGKILL 250 ms
/// later) or, if it has not forked yet, make sure it never does; `WEFT_ERR_IO` if the
/// fork failed on the loop thread. `free_fn` runs in the parent, after `done`. Freeing
/// the loop kills and reaps its children (their `done` does not run).
///
/// With `options->reuse_child`, a child that has finished its task and sent its status
/// may run another: the first waiting process task, if that one was spawned with
/// `reuse_child` (and the same `fork_fn` and `fork_data`) *before* the child was forked,
/// so its work and everything it points to are in the child's copy of memory. The task
/// still sees everything done before its `weft_spawn` returned, but also what earlier
/// tasks run in the same child changed in it (globals, caches): the trade-off of reuse.
/// A child with no such task to run exits. Its task's `done` runs when the next task
/// starts in the child, or once the child is reaped; `weft_child_exit` in a reused child
/// ends it as usual (the next task gets a fresh child). `max_children`, timeouts and
/// cancels hold as without reuse: a cancel or timeout kills the child, which ends only
/// the task it runs. The next task is sent to the child while it still runs one, so
/// it goes on at once; cancelled or timed out before the child has taken it up, that
/// task ends at once and never runs (the child goes on to the one after it).
///
/// Returns the task's id, or 0: `WEFT_ERR_NULL` (loop, work), `WEFT_ERR_INVALID` (unknown
/// `where`, a bad options size, a pool of the other kind, a freed pool, a pool with
/// `WEFT_ON_LOOP` or `WEFT_ON_PROCESS`, a timeout above 2^35 - 1 ms), `WEFT_ERR_IO` (the
/// fork or the pipe failed: out of processes or fds), `WEFT_ERR_BUSY` (2^24 tasks, or
/// registrations, of this loop at once), `WEFT_ERR_CLOSED` (the loop is being freed, or
/// `options->pool` is being freed by another thread right now).
#[no_mangle]
pub extern "C" fn weft_spawn(
    lp: *mut weft_loop,
    place: weft_where,
    work: weft_work_fn,
    done: weft_done_fn,
    user_data: *mut c_void,
    free_fn: weft_free_fn,
    options: *const weft_spawn_options,
) -> weft_id {
    guard("weft_spawn", || {
        crate::fork::check()?; // before the pool registry's lock, which a fork may hold
        let lp = the_loop(lp)?;
        let work = work.ok_or_else(|| Error::new(Code::Null, "work is NULL"))?;
        let place = match place {
            WEFT_ON_LOOP => Where::Loop,
            WEFT_ON_IO => Where::Io,
            WEFT_ON_CPU => Where::Cpu,
            WEFT_ON_PROCESS => Where::Process,
            other => return Err(Error::invalid(format!("where {other} is not a WEFT_ON_* value"))),
        };
        if place == Where::Io || place == Where::Cpu {
            // The common spawn: a pool task with default options but for the pool.
            let pool = match options.is_null() {
                true => Some(std::ptr::null_mut()),
                false => read_options(options, "weft_spawn_options", SPAWN_OPTIONS_V1)?
                    .filter(names_only_a_pool)
                    .map(|o| o.pool),
            };
            if let Some(pool) = pool {
                let resolve = || the_pool(pool, "options.pool");
                let pool_handle =
                    (!pool.is_null()).then_some((pool as usize, &resolve as &dyn Fn() -> Result<Arc<Pool>>));
                let done = CHandler::new(Some(done.unwrap_or(no_done)), user_data, None)?;
                return lp.spawn_on_pool(place, pool_handle, CWork::new(work, user_data, free_fn), done);
            }
        }
        let o = read_options(options, "weft_spawn_options", SPAWN_OPTIONS_V1)?;
        let timeout_ms = o.map_or(0, |o| o.timeout_ms);
        let max_children = o.map_or(0, |o| o.max_children as usize);
        let reuse_child = o.is_some_and(|o| o.reuse_child);
        let fds = spawn_fds(o.as_ref())?;
        let host_fork =
            o.and_then(|o| o.fork_fn).map(|call| HostFork { call, data: o.map_or(0, |o| o.fork_data as usize) });
        // The work and handler are made once nothing can fail before `spawn`, which
        // hands back a refused work without running its free_fn.
        let pool = o.map_or(std::ptr::null_mut(), |o| o.pool);
        let resolve = || the_pool(pool, "options.pool");
        // The loop keeps the pools it spawns on by handle (see SpawnOptions::pool_handle).
        let pool_handle = (!pool.is_null()).then_some((pool as usize, &resolve as &dyn Fn() -> Result<Arc<Pool>>));
        let mut parts = Parts { work, done, user_data, free_fn };
        let flags = o.map_or(0, |o| o.flags);
        if flags & !WEFT_SPAWN_TIMING != 0 {
            return Err(Error::invalid(format!("options.flags {flags:#x} has bits that are not WEFT_SPAWN_*")));
        }
        if flags & WEFT_SPAWN_TIMING != 0 {
            parts = timing::wrap(parts, place == Where::Process)?;
        }
        let Parts { work, done, user_data, free_fn } = parts;
        let done = CHandler::new(Some(done.unwrap_or(no_done)), user_data, None)?;
        let work = CWork::new(work, user_data, free_fn);
        let options = SpawnOptions { timeout_ms, pool: None, pool_handle, max_children, reuse_child, host_fork, fds };
        lp.spawn(place, work, done, options)
    })
}

/// Whether `o` sets no field but `pool` (and `size`): no timeout, no flags, nothing
/// of process tasks.
fn names_only_a_pool(o: &weft_spawn_options) -> bool {
    o.timeout_ms == 0
        && o.flags == 0
        && o.max_children == 0
        && o.fork_fn.is_none()
        && !o.reuse_child
        && o.keep_fds_len == 0
        && !o.inherit_fds
}

/// The fds a process task's child keeps, from its options.
fn spawn_fds(o: Option<&weft_spawn_options>) -> Result<Fds> {
    let Some(o) = o else { return Ok(Fds::default()) };
    if o.keep_fds_len == 0 {
        return Ok(Fds { inherit: o.inherit_fds, keep: Vec::new() });
    }
    if o.keep_fds.is_null() {
        return Err(Error::new(Code::Null, format!("options.keep_fds is NULL, with keep_fds_len {}", o.keep_fds_len)));
    }
    if o.keep_fds_len > 1 << 20 {
        return Err(Error::invalid(format!("options.keep_fds_len {} is above 2^20", o.keep_fds_len)));
    }
    // SAFETY: the caller's array of keep_fds_len fds, read during the call.
    let keep = unsafe { std::slice::from_raw_parts(o.keep_fds, o.keep_fds_len) }.to_vec();
    if let Some(bad) = keep.iter().find(|&&fd| fd < 0) {
        return Err(Error::invalid(format!("options.keep_fds holds {bad}, not a descriptor")));
    }
    Ok(Fds { inherit: o.inherit_fds, keep })
}

pub(super) unsafe extern "C" fn no_done(
    _: *mut weft_loop,
    _: weft_id,
    _: c_int,
    _: *const u8,
    _: usize,
    _: *mut c_void,
) {
}

pub(super) fn the_task<'a>(task: *const weft_task) -> Result<&'a Task<'a, CHandler>> {
    non_null(task.cast::<Task<'a, CHandler>>(), "task")
}

/// True once the task was cancelled or timed out: work should return soon (weft cannot
/// stop a thread). In a process task's child: true once the parent process is gone (a
/// cancel kills the child). Call it from inside the task's work. False for NULL.
#[no_mangle]
pub extern "C" fn weft_task_cancelled(task: *const weft_task) -> bool {
    guard("weft_task_cancelled", || Ok(the_task(task)?.cancelled()))
}

/// Appends `len` bytes to the task's result, which `done` receives (any size; copied).
/// Call it from inside the task's work. Returns `WEFT_OK`, `WEFT_ERR_NULL` (task, or buf
/// with len > 0), `WEFT_ERR_INVALID` (len above PTRDIFF_MAX).
#[no_mangle]
pub extern "C" fn weft_task_write(task: *mut weft_task, buf: *const c_void, len: usize) -> c_int {
    guard("weft_task_write", || {
        non_null(task.cast_const(), "task")?;
        let bytes = bytes_arg(buf, len, "buf")?;
        // SAFETY: a task pointer handed to work, used on its thread during the call.
        unsafe { &mut *task.cast::<Task<'_, CHandler>>() }.write(bytes).map(|()| 0)
    })
}

/// Emits an event from inside the task's work to the task's loop: its subscribers get
/// it on the loop thread, in emit order and before the task's `done`. Same rules as
/// `weft_emit`. Returns `WEFT_OK`, `WEFT_ERR_NULL`, `WEFT_ERR_INVALID`.
#[no_mangle]
pub extern "C" fn weft_task_emit(
    task: *mut weft_task,
    topic: *const c_char,
    payload: *const c_void,
    len: usize,
) -> c_int {
    guard("weft_task_emit", || {
        let task = the_task(task)?;
        let topic = c_str(topic, "topic")?;
        let payload = bytes_arg(payload, len, "payload")?;
        task.emit(topic, payload).map(|()| 0)
    })
}
