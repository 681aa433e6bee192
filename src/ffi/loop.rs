//! Loops (`weft_loop_*`), posts, timers and `weft_cancel`: each converts its arguments
//! and calls the safe core's `Loop`.

use super::args::non_null;
use super::guard::guard;
use super::handle::{weft_id, weft_loop};
use super::handler::{weft_cb, weft_free_fn, CHandler, CLoop};
use crate::error::{Error, Result};
use crate::fork;
use crate::r#loop::RunMode;
use std::ffi::{c_int, c_void};

/// How `weft_loop_run` runs: one of the `WEFT_RUN_*` values.
pub type weft_run_mode = c_int;
/// Run until `weft_loop_stop` is called or nothing is registered (timers, watches,
/// subscriptions, posts and events not yet delivered, tasks whose `done` has not run).
pub const WEFT_RUN_DEFAULT: weft_run_mode = 0;
/// Wait until something is ready, then make one pass.
pub const WEFT_RUN_ONCE: weft_run_mode = 1;
/// Make one pass over what is ready now, without waiting. The embedding mode.
pub const WEFT_RUN_NOWAIT: weft_run_mode = 2;

/// `lp` as the loop it points to, or `WEFT_ERR_NULL`.
pub(super) fn the_loop<'a>(lp: *const weft_loop) -> Result<&'a CLoop> {
    non_null(lp.cast::<CLoop>(), "loop")
}

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
/// While it runs, the calling thread owns the loop (see `weft_spawn`); a spawn on
/// another thread that owns the loop at that moment delays the start by its own length
/// (a few hundred nanoseconds), and never makes it fail.
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
/// Where the poller has no fd of its own (the portable build's poll(2) backend), the fd
/// is a pipe that posts, events and completions ring at once and a helper thread (started
/// by the first call here, idle while the loop runs) rings for the rest, within
/// microseconds; `weft_loop_timeout_ms` looks for itself and is exact.
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
    // The common case first, without the error machinery (a post is a few ns; building
    // and moving a `Result` through `guard` cost as much again). Nothing on this path
    // panics: a queue's slot claim and store, no allocation but a block's mapping
    // (which aborts when it fails, as an allocation does).
    // SAFETY: a loop pointer from weft_loop_new, as for every call (`the_loop`).
    if let (Some(fast), Some(_)) = (unsafe { lp.cast::<CLoop>().as_ref() }, cb) {
        if let Ok(handler) = CHandler::new(cb, user_data, free_fn) {
            match fast.try_post(handler) {
                Ok(id) => return id,
                Err(handler) => crate::r#loop::Handler::refused(handler),
            }
        }
    }
    post_slowly(lp, cb, user_data, free_fn)
}

/// `weft_post`'s error path (and its panic boundary), out of line: the fast path then
/// saves no registers for it.
#[cold]
#[inline(never)]
fn post_slowly(lp: *mut weft_loop, cb: weft_cb, user_data: *mut c_void, free_fn: weft_free_fn) -> weft_id {
    guard("weft_post", || {
        let lp = the_loop(lp)?;
        lp.post(CHandler::new(cb, user_data, free_fn)?)
    })
}

/// Calls `cb` once on the loop thread, `delay_ms` milliseconds from now (0: the next
/// pass). Never early: the deadline is the monotonic clock at this call plus the delay.
/// The loop wakes at the first 65.5 us tick after the earliest deadline, so on an idle
/// loop a timer fires about 0.1 ms after its deadline; a loop that has just fired many
/// timers lets the next ones gather, up to 1 ms. `free_fn` runs after the callback. The
/// loop's owner (see `weft_spawn`) schedules and cancels timers without a lock. Any
/// thread.
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
    // The owner's common case first, as a straight line without the error machinery
    // (as weft_post's): a one-shot timer without a free_fn, its handler packed in the
    // record.
    // SAFETY: a loop pointer from weft_loop_new, as for every call (`the_loop`).
    if let (Some(fast), Some(_), None) = (unsafe { lp.cast::<CLoop>().as_ref() }, cb, free_fn) {
        if let Ok(handler) = CHandler::new(cb, user_data, None) {
            if let Some(words) = crate::r#loop::Handler::pack(&handler) {
                // SAFETY: the words of `handler`, forgotten once the table has them.
                if let Some(id) = unsafe { fast.try_timer_after_packed(delay_ms, words) } {
                    std::mem::forget(handler);
                    return id;
                }
            }
        }
    }
    timer_after_generally(lp, delay_ms, cb, user_data, free_fn)
}

/// `weft_timer_after` but for the straight line: the owner's timer with any handler,
/// without the error machinery, else the ordinary path (and its panic boundary). Out
/// of line.
#[cold]
#[inline(never)]
fn timer_after_generally(
    lp: *mut weft_loop,
    delay_ms: u64,
    cb: weft_cb,
    user_data: *mut c_void,
    free_fn: weft_free_fn,
) -> weft_id {
    // SAFETY: a loop pointer from weft_loop_new, as for every call (`the_loop`).
    if let (Some(fast), Some(_)) = (unsafe { lp.cast::<CLoop>().as_ref() }, cb) {
        if let Ok(handler) = CHandler::new(cb, user_data, free_fn) {
            match fast.try_timer_after(delay_ms, handler) {
                Ok(id) => return id,
                Err(handler) => crate::r#loop::Handler::refused(handler),
            }
        }
    }
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
/// the loop thread (a callback of that pass), its `free_fn` run now as for any
/// other; for any other thread it counts as started (`WEFT_ERR_NOT_FOUND`). A
/// one-shot timer (`weft_after`) whose callback has begun is over in the same way:
/// `WEFT_ERR_NOT_FOUND` from any thread, its callback included, so `WEFT_OK` means it
/// will not fire. A task is not ended by cancel: its `done` still runs, with
/// `WEFT_ERR_CANCELLED` (see `weft_spawn`). Any thread. On Linux, a timer's cancel from
/// a thread that does not own the loop costs a process-wide memory barrier
/// (`membarrier(2)`, a few microseconds): the owner's cancels then need no atomic
/// read-modify-write.
/// Returns `WEFT_OK`; `WEFT_ERR_NOT_FOUND` when `id` does not name a live registration of
/// this loop (finished, cancelled already, stale, forged, another loop's); `WEFT_ERR_NULL`.
#[no_mangle]
pub extern "C" fn weft_cancel(lp: *mut weft_loop, id: weft_id) -> c_int {
    // The owner's cancel of its timer first, as a straight line that calls nothing.
    // SAFETY: a loop pointer from weft_loop_new, as for every call (`the_loop`).
    if unsafe { lp.cast::<CLoop>().as_ref() }.is_some_and(|fast| fast.try_cancel_timer_fast(id)) {
        return 0;
    }
    cancel_generally(lp, id)
}

/// `weft_cancel` but for the straight line: the owner's cancel of its timer in any
/// state, without the error machinery, else the ordinary path (and its panic
/// boundary). Out of line.
#[cold]
#[inline(never)]
fn cancel_generally(lp: *mut weft_loop, id: weft_id) -> c_int {
    // SAFETY: a loop pointer from weft_loop_new, as for every call (`the_loop`).
    if unsafe { lp.cast::<CLoop>().as_ref() }.is_some_and(|fast| fast.try_cancel_timer(id)) {
        return 0;
    }
    guard("weft_cancel", || the_loop(lp)?.cancel(id).map(|()| 0))
}
