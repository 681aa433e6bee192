//! Pools, tasks (weft_spawn) and what work functions call.

use super::api::{bytes_arg, the_loop, weft_free_fn, weft_id, weft_loop, CHandler};
use super::{c_str, guard, non_null};
use crate::error::{Code, Error, Result};
use crate::pool::{self, Pool};
use crate::r#loop::SpawnOptions;
use crate::task::{self, Task, TaskWork, Where};
use std::ffi::{c_char, c_int, c_void};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// A pool's kind: one of the `WEFT_POOL_*` values.
pub type weft_pool_kind = c_int;
/// A work-stealing pool with a fixed number of threads, for computation.
pub const WEFT_POOL_CPU: weft_pool_kind = 0;
/// An elastic FIFO pool that grows up to a bound and retires idle threads, for
/// blocking calls.
pub const WEFT_POOL_IO: weft_pool_kind = 1;

/// A task, as its work function sees it. Valid only during the work call, and only
/// on the thread running it.
pub struct weft_task {
    _private: [u8; 0],
}

/// A worker pool. Opaque; made by `weft_pool_new`, freed by `weft_pool_free`.
pub struct weft_pool {
    _private: [u8; 0],
}

/// A task's work: runs on the thread `weft_spawn`'s `where` chose. Returns the task's
/// status, which should be >= 0 (negative values are reserved for weft's codes).
/// Inside it, call `weft_task_cancelled`, `weft_task_write` and `weft_task_emit`.
pub type weft_work_fn = Option<unsafe extern "C-unwind" fn(task: *mut weft_task, user_data: *mut c_void) -> c_int>;

/// A task's completion, on the loop thread, exactly once: `status` is what work
/// returned (>= 0), or `WEFT_ERR_CANCELLED` or `WEFT_ERR_TIMEOUT`; `result`/`len` are the
/// bytes work wrote with `weft_task_write` (NULL/0 when cancelled or timed out), valid
/// until `done` returns.
pub type weft_done_fn = Option<
    unsafe extern "C" fn(
        lp: *mut weft_loop,
        task: weft_id,
        status: c_int,
        result: *const u8,
        len: usize,
        user_data: *mut c_void,
    ),
>;

/// A pool thread hook: called on the thread itself, with its index in the pool.
pub type weft_thread_hook = Option<unsafe extern "C-unwind" fn(index: u32, user_data: *mut c_void)>;

/// Options of `weft_pool_new`. Zero-initialise, set `size = sizeof(weft_pool_options)`,
/// then the fields you need: a later version may add fields at the end, and `size`
/// tells it which ones your program knows.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct weft_pool_options {
    /// sizeof(weft_pool_options) as your program sees it.
    pub size: usize,
    /// `WEFT_POOL_CPU` or `WEFT_POOL_IO`.
    pub kind: weft_pool_kind,
    /// CPU: the number of threads (0: one per core). IO: the most threads (0: 64).
    pub threads: u32,
    /// Thread name prefix (threads are named "<name>-<index>", as seen in /proc and in
    /// debuggers; Linux keeps 15 bytes). NULL: "weft-cpu" or "weft-io". Copied.
    pub name: *const c_char,
    /// Stack size of each thread in bytes (0: the platform default; at most 1 GiB).
    pub stack_size: usize,
    /// IO: milliseconds an idle thread waits for work before it exits (0: 10000).
    pub keep_alive_ms: u32,
    /// Called on each thread when it starts, before it runs any work. May be NULL.
    pub on_thread_start: weft_thread_hook,
    /// Called on each thread before it exits. May be NULL.
    pub on_thread_stop: weft_thread_hook,
    /// Passed to both hooks.
    pub hook_data: *mut c_void,
}

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
}

/// The size of the first `weft_spawn_options` (size, timeout_ms, pool): the smallest
/// accepted.
const SPAWN_OPTIONS_V1: usize = std::mem::offset_of!(weft_spawn_options, pool) + std::mem::size_of::<*mut weft_pool>();

/// Reads a caller's options struct of `size` bytes into ours (missing fields zero).
fn read_options<T: Copy>(ptr: *const T, name: &str, minimum: usize) -> Result<Option<T>> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: every options struct starts with its size; the caller owns `ptr`.
    let size = unsafe { *ptr.cast::<usize>() };
    if size < minimum || size > 1 << 16 {
        return Err(Error::invalid(format!(
            "{name}.size {size} is not sizeof({name}) (this library's is {})",
            std::mem::size_of::<T>()
        )));
    }
    if size >= std::mem::size_of::<T>() {
        // SAFETY: the caller's struct holds at least ours (the common case: no copy
        // of a variable length).
        return Ok(Some(unsafe { ptr.read_unaligned() }));
    }
    let mut out = std::mem::MaybeUninit::<T>::zeroed();
    let n = size;
    // SAFETY: copies the `n` bytes both sides have; the rest of `out` stays zero, which
    // is a valid value for every field of these structs (integers, pointers, Options).
    unsafe {
        std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), out.as_mut_ptr().cast::<u8>(), n);
        Ok(Some(out.assume_init()))
    }
}

/// Live pools by address, so a freed pool is refused instead of dereferenced. (A few
/// pools at most: a vector is the cheapest set.)
static POOLS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

fn the_pool(ptr: *mut weft_pool, name: &str) -> Result<Arc<Pool>> {
    non_null(ptr, name)?;
    let pools = POOLS.lock().unwrap_or_else(|p| p.into_inner());
    if !pools.contains(&(ptr as usize)) {
        return Err(Error::invalid(format!("{name} {ptr:p} is not a live pool (freed already?)")));
    }
    // SAFETY: registered by weft_pool_new and not yet freed (we hold the registry lock,
    // which weft_pool_free takes before it frees).
    Ok(unsafe { &*ptr.cast::<Arc<Pool>>() }.clone())
}

/// Data crossing threads with a task (the caller's pointers).
struct Shared(*mut c_void);
// SAFETY: the C contract: user data is handed to the work's thread and back.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

/// A task's work function, its user data and its free function: dropped (running
/// `free_fn`) when both the loop and the pool are done with the task.
pub struct CWork {
    work: unsafe extern "C-unwind" fn(*mut weft_task, *mut c_void) -> c_int,
    user_data: Shared,
    free_fn: weft_free_fn,
}

impl TaskWork<CHandler> for CWork {
    fn run(&self, task: &mut Task<'_, CHandler>) -> c_int {
        // SAFETY: the caller's work function, with its data and a task pointer that is
        // valid for the duration of the call.
        unsafe { (self.work)((task as *mut Task<'_, CHandler>).cast(), self.user_data.0) }
    }

    fn refused(self) {
        std::mem::forget(self);
    }
}

impl Drop for CWork {
    fn drop(&mut self) {
        if let Some(free_fn) = self.free_fn {
            // SAFETY: the caller's finalizer; Drop runs once.
            unsafe { free_fn(self.user_data.0) }
        }
    }
}

/// Makes a pool. Its threads start when the first task is submitted. Any thread.
/// Returns NULL on error: `WEFT_ERR_NULL` (options), `WEFT_ERR_INVALID` (a bad size or
/// kind, more than 4096 threads, a stack above 1 GiB, a name that is empty or not
/// UTF-8), `WEFT_ERR_FORKED`.
#[no_mangle]
pub extern "C" fn weft_pool_new(options: *const weft_pool_options) -> *mut weft_pool {
    guard("weft_pool_new", || {
        let minimum = std::mem::offset_of!(weft_pool_options, hook_data) + std::mem::size_of::<*mut c_void>();
        let o = read_options(options, "weft_pool_options", minimum)?
            .ok_or_else(|| Error::new(Code::Null, "options is NULL"))?;
        let kind = match o.kind {
            WEFT_POOL_CPU => pool::Kind::Cpu,
            WEFT_POOL_IO => pool::Kind::Io,
            other => return Err(Error::invalid(format!("kind {other} is not a WEFT_POOL_* value"))),
        };
        let mut opts = pool::Options::new(kind);
        opts.threads = o.threads as usize;
        if !o.name.is_null() {
            opts.name = c_str(o.name, "options.name")?.to_string();
        }
        opts.stack_size = o.stack_size;
        if o.keep_alive_ms > 0 {
            opts.keep_alive = Duration::from_millis(o.keep_alive_ms as u64);
        }
        let data = Arc::new(Shared(o.hook_data));
        let hook = |f: weft_thread_hook| -> Option<pool::Hook> {
            let f = f?;
            let data = data.clone();
            // SAFETY: the caller's hook, called with its data on the pool thread.
            Some(Arc::new(move |index: usize| unsafe { f(index as u32, data.0) }))
        };
        opts.on_start = hook(o.on_thread_start);
        opts.on_stop = hook(o.on_thread_stop);
        let pool = Box::into_raw(Box::new(Arc::new(Pool::new(opts)?)));
        POOLS.lock().unwrap_or_else(|p| p.into_inner()).push(pool as usize);
        Ok(pool.cast())
    })
}

/// Frees a pool: tasks queued and not started complete with `WEFT_ERR_CANCELLED` (their
/// `done` runs on their loop, if the loop is alive), running ones finish, then every
/// thread is joined (so this waits for running work). NULL is a no-op. Any thread but
/// the pool's own: from one of them it is refused (`WEFT_ERR_BUSY` in
/// `weft_last_error`), as it would wait for itself. A pool already freed is refused
/// (`WEFT_ERR_INVALID`).
#[no_mangle]
pub extern "C" fn weft_pool_free(pool: *mut weft_pool) {
    guard("weft_pool_free", || {
        if pool.is_null() {
            return Ok(());
        }
        crate::fork::check()?;
        let shared = the_pool(pool, "pool")?;
        shared.shutdown()?;
        let mut pools = POOLS.lock().unwrap_or_else(|p| p.into_inner());
        task::pools_changed(); // before the handle's address can be reused
        if let Some(at) = pools.iter().position(|&p| p == pool as usize) {
            pools.swap_remove(at);
            if pools.is_empty() {
                *pools = Vec::new(); // hold no memory while no pool exists
            }
            // SAFETY: made by Box::into_raw in weft_pool_new; now unregistered.
            drop(unsafe { Box::from_raw(pool.cast::<Arc<Pool>>()) });
        }
        Ok(())
    })
}

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
/// From one of the loop's own callbacks, a CPU task (without a timeout) takes no lock:
/// the loop hands such tasks to the pool 64 at a time, and the rest when the callback
/// returns, so a callback must not wait for a task it has just spawned to start.
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
/// no signal blocked and SIGTERM at its default action. The events reach the loop's
/// subscribers in emit order, before `done`. `done` runs once the child is reaped and
/// its output read: `status` is what work returned; `WEFT_ERR_CRASHED` if the child died
/// by a signal or exited before sending its status (`weft_last_error`, called inside
/// `done`, names the signal or exit code); `WEFT_ERR_TIMEOUT` or `WEFT_ERR_CANCELLED`
/// after a timeout or `weft_cancel`, which kill the child (SIGTERM, then SIGKILL 250 ms
/// later) or, if it has not forked yet, make sure it never does; `WEFT_ERR_IO` if the
/// fork failed on the loop thread. `free_fn` runs in the parent, after `done`. Freeing
/// the loop kills and reaps its children (their `done` does not run).
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
        let o = read_options(options, "weft_spawn_options", SPAWN_OPTIONS_V1)?;
        let timeout_ms = o.map_or(0, |o| o.timeout_ms);
        let max_children = o.map_or(0, |o| o.max_children as usize);
        // The work and handler are made once nothing can fail before `spawn`, which
        // hands back a refused work without running its free_fn.
        let pool = o.map_or(std::ptr::null_mut(), |o| o.pool);
        let resolve = || the_pool(pool, "options.pool");
        // The loop keeps the pools it spawns on by handle (see SpawnOptions::pool_handle).
        let pool_handle = (!pool.is_null()).then_some((pool as usize, &resolve as &dyn Fn() -> Result<Arc<Pool>>));
        let done = CHandler::new(Some(done.unwrap_or(no_done)), user_data, None)?;
        let work = CWork { work, user_data: Shared(user_data), free_fn };
        lp.spawn(place, work, done, SpawnOptions { timeout_ms, pool: None, pool_handle, max_children })
    })
}

unsafe extern "C" fn no_done(_: *mut weft_loop, _: weft_id, _: c_int, _: *const u8, _: usize, _: *mut c_void) {}

/// Supervises a child the host forked by itself (a language runtime that must fork with
/// its own hooks, such as Python's `os.fork()`), exactly as a `WEFT_ON_PROCESS` task:
/// the child reports through the pipe whose read end is `pipe_read_fd` (in the child,
/// `weft_child_task` on the write end), and `done` runs on the loop thread once the child
/// is reaped and its output read, with the same statuses. `options->timeout_ms` applies;
/// `pool` and `max_children` do not. On success the loop owns `pipe_read_fd` (it closes
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

fn the_task<'a>(task: *const weft_task) -> Result<&'a Task<'a, CHandler>> {
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

/// Drains and joins the default pools: tasks queued on them complete with
/// `WEFT_ERR_CANCELLED`, running ones finish. After every loop is freed and this has
/// returned, weft holds no thread and no fd. Later spawns start the pools again. For
/// atexit handlers and hosts that unload the library. Not from a pool thread.
#[no_mangle]
pub extern "C" fn weft_shutdown() {
    guard("weft_shutdown", task::shutdown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_task_is_one_cache_line() {
        // With the loop's 48-byte slot and the queue's 16-byte slot, a queued task
        // costs 128 bytes (cells come in chunks, without a per-cell malloc header).
        assert_eq!(std::mem::size_of::<task::TaskCell<CHandler, CWork>>(), 64);
    }
}
