//! Loops, posts, timers, fd and signal watches, topics.

use super::{c_str, guard, non_null};
use crate::error::{Code, Error, Result};
use crate::fork;
use crate::r#loop::{Event, Handler, Loop, RunMode};
use std::ffi::{c_char, c_int, c_void};

/// A registration id. 0 is never a valid id: calls that return an id return 0 on error.
/// Ids are checked, never trusted: a stale, cancelled, forged or foreign id gives
/// `WEFT_ERR_NOT_FOUND`.
pub type weft_id = u64;

/// An event loop. Opaque; made by `weft_loop_new`, freed by `weft_loop_free`.
pub struct weft_loop {
    _private: [u8; 0],
}

/// How `weft_loop_run` runs: one of the `WEFT_RUN_*` values.
pub type weft_run_mode = c_int;
/// Run until `weft_loop_stop` is called or nothing is registered (timers, watches,
/// subscriptions, posts and events not yet delivered, tasks whose `done` has not run).
pub const WEFT_RUN_DEFAULT: weft_run_mode = 0;
/// Wait until something is ready, then make one pass.
pub const WEFT_RUN_ONCE: weft_run_mode = 1;
/// Make one pass over what is ready now, without waiting. The embedding mode.
pub const WEFT_RUN_NOWAIT: weft_run_mode = 2;

/// fd watch interest and readiness bit: the fd is readable.
pub const WEFT_READABLE: u32 = 1;
/// fd watch interest and readiness bit: the fd is writable.
pub const WEFT_WRITABLE: u32 = 2;
/// Readiness bit, always reported: the peer hung up (the fd reads EOF).
pub const WEFT_HANGUP: u32 = 4;
/// Readiness bit, always reported: an error is pending on the fd.
pub const WEFT_ERROR: u32 = 8;

/// Ends a registration's ownership of `user_data`. Runs exactly once per successful
/// registration: after its last callback, when it is cancelled, or when its loop is
/// freed; on the loop thread, or on the thread that cancelled it while no callback of
/// it was running. It is never called for a registration call that failed. May be NULL.
pub type weft_free_fn = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// The callback of posts and timers. Runs on the loop thread.
pub type weft_cb = Option<unsafe extern "C" fn(lp: *mut weft_loop, id: weft_id, user_data: *mut c_void)>;

/// The callback of an fd watch: `events` holds the `WEFT_READABLE` / `WEFT_WRITABLE`
/// bits of the watch's interest that are ready, plus `WEFT_HANGUP` and `WEFT_ERROR`.
/// Runs on the loop thread.
pub type weft_fd_cb =
    Option<unsafe extern "C" fn(lp: *mut weft_loop, id: weft_id, fd: c_int, events: u32, user_data: *mut c_void)>;

/// The callback of a signal watch. Runs on the loop thread, never in a signal handler.
pub type weft_signal_cb =
    Option<unsafe extern "C" fn(lp: *mut weft_loop, id: weft_id, signum: c_int, user_data: *mut c_void)>;

/// The callback of a subscription: `topic` is the emitted topic (NUL-terminated), and
/// `payload`/`len` the bytes emitted, valid until the callback returns. Runs on the
/// loop thread.
pub type weft_event_cb = Option<
    unsafe extern "C" fn(
        lp: *mut weft_loop,
        sub: weft_id,
        topic: *const c_char,
        payload: *const c_void,
        len: usize,
        user_data: *mut c_void,
    ),
>;

pub(super) type CLoop = Loop<CHandler>;

/// A C callback, its user data and its free function. Dropping it runs `free_fn`.
pub struct CHandler {
    /// One of the callback types above, as the registration's kind determines.
    func: unsafe extern "C" fn(),
    user_data: *mut c_void,
    free_fn: weft_free_fn,
}

// SAFETY: the C contract lets user data cross threads (registrations are made on one
// thread and run on the loop thread); what the data is, is the caller's business.
unsafe impl Send for CHandler {}

impl CHandler {
    pub(super) fn new<F: Copy>(func: Option<F>, user_data: *mut c_void, free_fn: weft_free_fn) -> Result<CHandler> {
        assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<unsafe extern "C" fn()>());
        let func = func.ok_or_else(|| Error::new(Code::Null, "cb is NULL"))?;
        // SAFETY: F is one of the callback types above, all plain function pointers; it
        // is cast back to F by `call`, according to the registration's kind.
        let func = unsafe { std::mem::transmute_copy::<F, unsafe extern "C" fn()>(&func) };
        Ok(CHandler { func, user_data, free_fn })
    }
}

impl Handler for CHandler {
    type Work = super::tasks::CWork;

    fn call(&mut self, lp: &CLoop, id: u64, event: Event<'_>) {
        let lp = lp as *const CLoop as *mut weft_loop;
        let ud = self.user_data;
        // SAFETY: `func` was made from the callback type this event kind uses.
        unsafe {
            match event {
                Event::Timer | Event::Post => {
                    let f: unsafe extern "C" fn(*mut weft_loop, u64, *mut c_void) = std::mem::transmute(self.func);
                    f(lp, id, ud)
                }
                Event::Fd { fd, events } => {
                    let f: unsafe extern "C" fn(*mut weft_loop, u64, c_int, u32, *mut c_void) =
                        std::mem::transmute(self.func);
                    f(lp, id, fd, events, ud)
                }
                Event::Signal { signum } => {
                    let f: unsafe extern "C" fn(*mut weft_loop, u64, c_int, *mut c_void) =
                        std::mem::transmute(self.func);
                    f(lp, id, signum, ud)
                }
                Event::Done { status, result, message } => {
                    let f: unsafe extern "C" fn(*mut weft_loop, u64, c_int, *const u8, usize, *mut c_void) =
                        std::mem::transmute(self.func);
                    if let Some(message) = message {
                        // Why a process task (spawned or adopted) crashed: weft_last_error,
                        // inside done.
                        let code = if status == Code::Io as i32 { Code::Io } else { Code::Crashed };
                        super::set_last_error("process task", code, message);
                    }
                    let ptr = if result.is_empty() { std::ptr::null() } else { result.as_ptr() };
                    f(lp, id, status, ptr, result.len(), ud)
                }
                Event::Topic { topic, payload } => {
                    let f: unsafe extern "C" fn(*mut weft_loop, u64, *const c_char, *const c_void, usize, *mut c_void) =
                        std::mem::transmute(self.func);
                    f(lp, id, topic.as_ptr(), payload.as_ptr().cast(), payload.len(), ud)
                }
            }
        }
    }

    fn refused(self) {
        std::mem::forget(self);
    }
}

impl Drop for CHandler {
    fn drop(&mut self) {
        if let Some(free_fn) = self.free_fn {
            // SAFETY: the caller's finalizer, called exactly once (Drop runs once).
            unsafe { free_fn(self.user_data) }
        }
    }
}

/// `len` bytes at `ptr` (which may be NULL when `len` is 0).
pub(super) fn bytes_arg<'a>(ptr: *const c_void, len: usize, name: &str) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Error::new(Code::Null, format!("{name} is NULL with len {len}")));
    }
    if len > isize::MAX as usize {
        return Err(Error::invalid(format!("len {len} is larger than any object")));
    }
    // SAFETY: the caller gives `len` readable bytes at `ptr`.
    Ok(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) })
}

pub(super) fn the_loop<'a>(lp: *const weft_loop) -> Result<&'a CLoop> {
    non_null(lp.cast::<CLoop>(), "loop")
}

// ---- loops --------------------------------------------------------------------------------

/// Creates an event loop. It runs on whichever thread calls `weft_loop_run`, or inside a
/// host's loop through `weft_loop_fd`. Any thread. Returns NULL on failure (out of fds:
/// `WEFT_ERR_IO`; in a forked child: `WEFT_ERR_FORKED`).
#[no_mangle]
pub extern "C" fn weft_loop_new() -> *mut weft_loop {
    guard("weft_loop_new", || Ok(Box::into_raw(Box::new(CLoop::new()?)).cast()))
}

/// Frees a loop: cancels every registration, drops every queued post and event, and runs
/// each `free_fn` once, on the calling thread. NULL is a no-op. Refused while the loop is
/// running (from one of its own callbacks, or while another thread is in
/// `weft_loop_run`): nothing is freed and `weft_last_error` says why; stop the loop and
/// free it after `weft_loop_run` returns. Do not use the loop pointer afterwards, and
/// make sure no other thread is still using it (posting or emitting to it).
/// In a forked child it does nothing (the parent owns the loop).
#[no_mangle]
pub extern "C" fn weft_loop_free(lp: *mut weft_loop) {
    guard("weft_loop_free", || {
        if lp.is_null() {
            return Ok(());
        }
        fork::check()?;
        the_loop(lp)?.close()?;
        // SAFETY: made by Box::into_raw in weft_loop_new; close() succeeded, so it is
        // not running and this thread is its last user.
        drop(unsafe { Box::from_raw(lp.cast::<CLoop>()) });
        Ok(())
    })
}

/// Runs the loop on the calling thread. `WEFT_RUN_DEFAULT` runs until `weft_loop_stop`
/// or until nothing is registered (timers, watches, subscriptions, posts and events not
/// yet delivered, tasks whose `done` has not run); `WEFT_RUN_ONCE` waits for something to be ready and
/// makes one pass; `WEFT_RUN_NOWAIT` makes one pass without waiting. A pass runs every
/// callback that was ready when it began: due timers, ready fd watches, caught signals,
/// then posts and events in the order they were queued.
/// Returns `WEFT_OK` when stopped or idle. `WEFT_ERR_BUSY` if the loop is already running
/// (called from one of its callbacks, or while another thread runs it);
/// `WEFT_ERR_INVALID` for an unknown mode; `WEFT_ERR_NULL`.
#[no_mangle]
pub extern "C" fn weft_loop_run(lp: *mut weft_loop, mode: weft_run_mode) -> c_int {
    guard("weft_loop_run", || {
        let lp = the_loop(lp)?;
        let mode = match mode {
            WEFT_RUN_DEFAULT => RunMode::Default,
            WEFT_RUN_ONCE => RunMode::Once,
            WEFT_RUN_NOWAIT => RunMode::NoWait,
            other => return Err(Error::invalid(format!("mode {other} is not a WEFT_RUN_* value"))),
        };
        lp.run(mode).map(|()| 0)
    })
}

/// Makes `weft_loop_run` return once its current pass is done. Called while the loop is
/// not running, it makes the next run return after one pass. Any thread.
/// Returns `WEFT_OK`, `WEFT_ERR_NULL`, or `WEFT_ERR_FORKED`.
#[no_mangle]
pub extern "C" fn weft_loop_stop(lp: *mut weft_loop) -> c_int {
    guard("weft_loop_stop", || the_loop(lp)?.stop().map(|()| 0))
}

/// The loop's embedding fd: it is readable whenever `weft_loop_run(loop,
/// WEFT_RUN_NOWAIT)` has work (ready watched fds, queued posts and events, due timers,
/// caught signals). A host that has its own loop (poll, asyncio, libuv, GLib) watches
/// this one fd for readability and calls `weft_loop_run(loop, WEFT_RUN_NOWAIT)` on its
/// own thread when it fires. Do not read from it or close it. Any thread.
/// Returns a negative `weft_result` on error: `WEFT_ERR_NULL`, `WEFT_ERR_FORKED`.
#[no_mangle]
pub extern "C" fn weft_loop_fd(lp: *const weft_loop) -> c_int {
    guard("weft_loop_fd", || the_loop(lp)?.fd())
}

/// Milliseconds until the loop's next timer is due (rounded up to whole ms), 0 when
/// work is ready now, -1 when no timer is pending (and for NULL). For hosts that track
/// time themselves rather than watching `weft_loop_fd` alone. After a timer is
/// cancelled the value may be shorter than the time to the next remaining timer, until
/// the next pass (which costs nothing more than an early wake-up). Any thread.
#[no_mangle]
pub extern "C" fn weft_loop_timeout_ms(lp: *const weft_loop) -> i64 {
    guard("weft_loop_timeout_ms", || Ok(the_loop(lp)?.timeout_ms()?.map_or(-1, |ms| ms.min(i64::MAX as u64) as i64)))
}

/// Bounds a pass: at most `max_records` posts, emitted events and task completions run
/// per pass; the rest wait for the next passes, in order (the loop's fd stays readable,
/// and `WEFT_RUN_DEFAULT` does not wait before running them). 0, the default: a pass runs
/// all that were queued when it began. For hosts that embed the loop (Node, asyncio): a
/// flood of events from other threads cannot hold the host's own loop for long. Timers
/// and fd and signal watches are not counted. Any thread. Returns `WEFT_OK`,
/// `WEFT_ERR_NULL`, `WEFT_ERR_CLOSED`, `WEFT_ERR_FORKED`.
#[no_mangle]
pub extern "C" fn weft_loop_set_pass_limit(lp: *mut weft_loop, max_records: u32) -> c_int {
    guard("weft_loop_set_pass_limit", || the_loop(lp)?.set_pass_limit(max_records as usize).map(|()| 0))
}

/// 1 while anything is registered or queued on the loop (timers, watches, subscriptions,
/// posts and events not yet delivered, tasks whose `done` has not run), 0 when nothing
/// is: the condition under which
/// `WEFT_RUN_DEFAULT` keeps running, for embedding hosts that decide themselves when to
/// stop. Any thread. Returns `WEFT_ERR_NULL` or `WEFT_ERR_FORKED` on error.
#[no_mangle]
pub extern "C" fn weft_loop_alive(lp: *const weft_loop) -> c_int {
    guard("weft_loop_alive", || {
        let lp = the_loop(lp)?;
        fork::check()?;
        Ok(lp.alive() as c_int)
    })
}

/// Queues `cb(loop, id, user_data)` to run on the loop thread during its next pass, after
/// everything this thread posted or emitted to the loop before. Never waits for the loop.
/// The post can be cancelled with `weft_cancel` until it starts; `free_fn` runs after it
/// ran (or when cancelled or the loop freed). Any thread.
/// Returns the post's id, or 0: `WEFT_ERR_NULL` (loop or cb), `WEFT_ERR_CLOSED`.
#[no_mangle]
pub extern "C" fn weft_post(lp: *mut weft_loop, cb: weft_cb, user_data: *mut c_void, free_fn: weft_free_fn) -> weft_id {
    guard("weft_post", || {
        let lp = the_loop(lp)?;
        lp.post(CHandler::new(cb, user_data, free_fn)?)
    })
}

// ---- timers -------------------------------------------------------------------------------

/// Calls `cb` once on the loop thread, `delay_ms` milliseconds from now (0: the next
/// pass). Never early: the deadline is the monotonic clock at this call plus the delay,
/// and the loop has 1 ms granularity, so it fires within about a millisecond after the
/// deadline when the loop is not busy. `free_fn` runs after the callback. Any thread.
/// Returns the timer's id, or 0: `WEFT_ERR_NULL`, `WEFT_ERR_INVALID` (delay above about
/// 397 days, 2^35 - 1 ms), `WEFT_ERR_CLOSED`.
#[no_mangle]
pub extern "C" fn weft_timer_after(
    lp: *mut weft_loop,
    delay_ms: u64,
    cb: weft_cb,
    user_data: *mut c_void,
    free_fn: weft_free_fn,
) -> weft_id {
    guard("weft_timer_after", || {
        let lp = the_loop(lp)?;
        lp.timer_after(delay_ms, CHandler::new(cb, user_data, free_fn)?)
    })
}

/// Calls `cb` on the loop thread every `interval_ms` milliseconds until cancelled, at a
/// fixed rate: call n is due at start + n * interval (start = this call). When the loop
/// falls behind, the calls it missed are skipped, not made in a burst: one late call
/// stands for all of them, and the call after it is due at the next multiple of the
/// interval that is still ahead. Cancel it with `weft_cancel`,
/// from any thread or from its own callback. Any thread.
/// Returns the timer's id, or 0: `WEFT_ERR_NULL`, `WEFT_ERR_INVALID` (interval 0, or
/// above 2^35 - 1 ms), `WEFT_ERR_CLOSED`.
#[no_mangle]
pub extern "C" fn weft_timer_every(
    lp: *mut weft_loop,
    interval_ms: u64,
    cb: weft_cb,
    user_data: *mut c_void,
    free_fn: weft_free_fn,
) -> weft_id {
    guard("weft_timer_every", || {
        let lp = the_loop(lp)?;
        lp.timer_every(interval_ms, CHandler::new(cb, user_data, free_fn)?)
    })
}

/// Ends a registration of this loop: a timer, a post that has not started, an fd or
/// signal watch, or a subscription. Once it returns `WEFT_OK`, the callback does not
/// start again; its `free_fn` runs now (on this thread), or, when called while that
/// callback is running (from inside it, or from another thread), right after the
/// callback returns, on the loop thread. A post that the loop has already taken into
/// the pass in progress (one queued before the pass began) can still be cancelled from
/// the loop thread (a callback of that pass), and its `free_fn` runs when the pass
/// reaches it; for any other thread it counts as started (`WEFT_ERR_NOT_FOUND`). A
/// task is not ended by cancel: its `done` still runs, with `WEFT_ERR_CANCELLED` (see
/// `weft_spawn`). Any thread.
/// Returns `WEFT_OK`; `WEFT_ERR_NOT_FOUND` when `id` does not name a live registration of
/// this loop (finished, cancelled already, stale, forged, another loop's); `WEFT_ERR_NULL`.
#[no_mangle]
pub extern "C" fn weft_cancel(lp: *mut weft_loop, id: weft_id) -> c_int {
    guard("weft_cancel", || the_loop(lp)?.cancel(id).map(|()| 0))
}

// ---- fd and signal watches ---------------------------------------------------------------

/// Watches `fd` for `interest` (`WEFT_READABLE` | `WEFT_WRITABLE`, or 0 to report only
/// hang-ups and errors), level-triggered: `cb(loop, id, fd, events, user_data)` runs on
/// the loop thread in every pass while the fd is ready. Several watches of one fd (in one
/// loop or several) all work. weft does not own the fd: cancel the watch before closing
/// it; a watched fd that gets closed is dropped from the kernel's set, and never crashes
/// the loop. Any thread.
/// Returns the watch's id, or 0: `WEFT_ERR_INVALID` (negative or closed fd, a regular
/// file, unknown interest bits), `WEFT_ERR_NULL`, `WEFT_ERR_CLOSED`.
#[no_mangle]
pub extern "C" fn weft_watch_fd(
    lp: *mut weft_loop,
    fd: c_int,
    interest: u32,
    cb: weft_fd_cb,
    user_data: *mut c_void,
    free_fn: weft_free_fn,
) -> weft_id {
    guard("weft_watch_fd", || {
        let lp = the_loop(lp)?;
        lp.watch_fd(fd, interest, CHandler::new(cb, user_data, free_fn)?)
    })
}

/// Changes the interest set of an fd watch (0 pauses it, leaving hang-ups and errors).
/// Any thread. Returns `WEFT_OK`; `WEFT_ERR_NOT_FOUND` (not a live watch of this loop),
/// `WEFT_ERR_INVALID` (unknown bits, or the id is not an fd watch), `WEFT_ERR_IO` (the fd
/// was closed), `WEFT_ERR_NULL`.
#[no_mangle]
pub extern "C" fn weft_watch_fd_modify(lp: *mut weft_loop, watch: weft_id, interest: u32) -> c_int {
    guard("weft_watch_fd_modify", || the_loop(lp)?.watch_fd_modify(watch, interest).map(|()| 0))
}

/// Calls `cb(loop, id, signum, user_data)` on the loop thread after `signum` (SIGINT,
/// SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGCHLD, SIGWINCH, ...) is delivered to the
/// process. Any number of watches, in any number of loops, may watch one signal; each is
/// called. The first watch of a signal installs weft's handler; when the last one goes,
/// the disposition that was there before is restored. Several deliveries between two
/// passes may be reported once (as with POSIX signals). Any thread.
/// Returns the watch's id, or 0: `WEFT_ERR_INVALID` (not 1..64; SIGKILL, SIGSTOP,
/// SIGSEGV, SIGBUS, SIGFPE, SIGILL; or one the C library reserves, 32..SIGRTMIN-1),
/// `WEFT_ERR_NULL`, `WEFT_ERR_CLOSED`. In a forked child, weft's handlers are gone: the
/// child gets back the dispositions weft replaced.
#[no_mangle]
pub extern "C" fn weft_watch_signal(
    lp: *mut weft_loop,
    signum: c_int,
    cb: weft_signal_cb,
    user_data: *mut c_void,
    free_fn: weft_free_fn,
) -> weft_id {
    guard("weft_watch_signal", || {
        let lp = the_loop(lp)?;
        lp.watch_signal(signum, CHandler::new(cb, user_data, free_fn)?)
    })
}

// ---- topics ----------------------------------------------------------------------------

/// Subscribes to events emitted on this loop whose topic matches `pattern`: an exact
/// topic ("log.ready"), a prefix ending in ".*" ("job.*" matches "job.done" and
/// "job.a.b", not "job"), or "*" for every topic. `cb` runs on the loop thread for each
/// matching event, in emit order for the events of one emitting thread; none is dropped
/// or merged. A subscription may cancel itself, subscribe and emit from its callback.
/// The pattern is copied. Any thread.
/// Returns the subscription's id, or 0: `WEFT_ERR_INVALID` (empty or malformed pattern,
/// not UTF-8), `WEFT_ERR_NULL`, `WEFT_ERR_CLOSED`.
#[no_mangle]
pub extern "C" fn weft_subscribe(
    lp: *mut weft_loop,
    pattern: *const c_char,
    cb: weft_event_cb,
    user_data: *mut c_void,
    free_fn: weft_free_fn,
) -> weft_id {
    guard("weft_subscribe", || {
        let lp = the_loop(lp)?;
        let pattern = c_str(pattern, "pattern")?;
        lp.subscribe(pattern, CHandler::new(cb, user_data, free_fn)?)
    })
}

/// Emits an event: copies `topic` and the `len` bytes at `payload` (NULL is fine when
/// `len` is 0) and queues them for the loop, which calls every matching subscriber in
/// its next pass. Subscribers that exist when the event is delivered see it. Never
/// waits for the loop. Any thread, including the loop's own callbacks.
/// Returns `WEFT_OK`; `WEFT_ERR_INVALID` (empty topic, a topic with '*', not UTF-8, a
/// length above PTRDIFF_MAX), `WEFT_ERR_NULL` (loop, topic, or payload with len > 0),
/// `WEFT_ERR_CLOSED`.
#[no_mangle]
pub extern "C" fn weft_emit(lp: *mut weft_loop, topic: *const c_char, payload: *const c_void, len: usize) -> c_int {
    guard("weft_emit", || {
        let lp = the_loop(lp)?;
        let topic = c_str(topic, "topic")?;
        lp.emit(topic, bytes_arg(payload, len, "payload")?).map(|()| 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch;

    #[test]
    fn constants_match_the_core() {
        assert_eq!(WEFT_READABLE, watch::READABLE);
        assert_eq!(WEFT_WRITABLE, watch::WRITABLE);
        assert_eq!(WEFT_HANGUP, watch::HANGUP);
        assert_eq!(WEFT_ERROR, watch::ERROR);
        let _ = Code::Null;
    }
}
