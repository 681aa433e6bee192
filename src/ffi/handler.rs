//! The caller's functions: the callback types of the header, and the owners of a C
//! function, its user data and its `free_fn` (wasmtime's shape): `CHandler` for loop
//! callbacks and `done`, `CWork` for a task's work. Dropping either runs `free_fn`, once.

use super::error::set_last_error;
use super::handle::{weft_id, weft_loop, weft_task};
use crate::error::{Code, Error, Result};
use crate::r#loop::{Event, Handler, Loop};
use crate::task::{Task, TaskWork};
use crate::watchdog::Kind;
use std::ffi::{c_char, c_int, c_void};

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

/// The loop as the C layer instantiates it: its handlers are C callbacks.
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
    type Work = CWork;

    #[inline(always)]
    fn pack(&self) -> Option<[usize; 2]> {
        self.free_fn.is_none().then_some([self.func as usize, self.user_data as usize])
    }

    #[inline(always)]
    unsafe fn unpack(words: [usize; 2]) -> Self {
        // SAFETY: `words[0]` is `func` as `pack` made it (the caller's promise).
        let func = unsafe { std::mem::transmute::<usize, unsafe extern "C" fn()>(words[0]) };
        CHandler { func, user_data: words[1] as *mut c_void, free_fn: None }
    }

    /// Inlined: a post's or a timer's call (the callers that run them by the million)
    /// is then a counter, the watchdog's flag and the C call.
    #[inline(always)]
    fn call(&mut self, lp: &CLoop, id: u64, event: Event<'_>) {
        let kind = callback_kind(&event);
        lp.metrics().callback(kind);
        let entered = lp.watchdog().enter(id, kind);
        match event {
            Event::Timer | Event::Post => {
                // SAFETY: `func` was made from the callback type these events use.
                let f: unsafe extern "C" fn(*mut weft_loop, u64, *mut c_void) =
                    unsafe { std::mem::transmute(self.func) };
                unsafe { f(lp as *const CLoop as *mut weft_loop, id, self.user_data) }
            }
            event => self.call_c(lp, id, event),
        }
        if let Some(entered) = entered {
            lp.watchdog().leave(entered);
        }
    }

    fn refused(self) {
        std::mem::forget(self);
    }
}

/// The kind of callback an event is, as the watchdog's reports name it.
fn callback_kind(event: &Event<'_>) -> Kind {
    match event {
        Event::Timer => Kind::Timer,
        Event::Post => Kind::Post,
        Event::Fd { .. } => Kind::Fd,
        Event::Signal { .. } => Kind::Signal,
        Event::Topic { .. } => Kind::Event,
        Event::Done { .. } => Kind::Done,
    }
}

impl CHandler {
    /// Calls the C function as the event's kind types it (out of line: see `call`).
    #[inline(never)]
    fn call_c(&mut self, lp: &CLoop, id: u64, event: Event<'_>) {
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
                        set_last_error("process task", code, message);
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
}

impl Drop for CHandler {
    fn drop(&mut self) {
        if let Some(free_fn) = self.free_fn {
            // SAFETY: the caller's finalizer, called exactly once (Drop runs once).
            unsafe { free_fn(self.user_data) }
        }
    }
}

/// Data crossing threads with a task (the caller's pointers).
pub(super) struct Shared(pub(super) *mut c_void);
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

impl CWork {
    #[inline]
    pub(super) fn new(
        work: unsafe extern "C-unwind" fn(*mut weft_task, *mut c_void) -> c_int,
        user_data: *mut c_void,
        free_fn: weft_free_fn,
    ) -> CWork {
        CWork { work, user_data: Shared(user_data), free_fn }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_task_is_one_cache_line() {
        // With the loop's 48-byte slot and the queue's 16-byte slot, a queued task
        // costs 128 bytes (cells come in chunks, without a per-cell malloc header).
        assert_eq!(std::mem::size_of::<crate::task::TaskCell<CHandler, CWork>>(), 64);
    }
}
