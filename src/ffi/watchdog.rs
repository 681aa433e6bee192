//! The slow-callback watchdog: `weft_loop_set_watchdog` and its report.

use super::args::c_str;
use super::guard::guard;
use super::handle::{weft_id, weft_loop};
use super::handler::weft_free_fn;
use super::r#loop::the_loop;
use crate::error::{Code, Error};
use crate::watchdog::Report;
use std::ffi::{c_char, c_int, c_void, CString};

/// A report's `kind`: a timer's callback.
pub const WEFT_CALLBACK_TIMER: c_int = 1;
/// A report's `kind`: a post's callback.
pub const WEFT_CALLBACK_POST: c_int = 2;
/// A report's `kind`: an fd watch's callback.
pub const WEFT_CALLBACK_FD: c_int = 3;
/// A report's `kind`: a signal watch's callback.
pub const WEFT_CALLBACK_SIGNAL: c_int = 4;
/// A report's `kind`: a subscription's callback.
pub const WEFT_CALLBACK_EVENT: c_int = 5;
/// A report's `kind`: a task's `done`.
pub const WEFT_CALLBACK_DONE: c_int = 6;

/// What `weft_loop_set_watchdog`'s callback receives: one callback of the loop thread
/// that ran longer than the threshold. Valid during the call.
#[repr(C)]
pub struct weft_watchdog_report {
    /// sizeof(weft_watchdog_report) as weft fills it (later versions may add fields).
    pub size: usize,
    /// The callback's number on its loop: its running report and its returned report
    /// carry the same one.
    pub seq: u64,
    /// The registration the callback belongs to (the task's id for `done`).
    pub id: weft_id,
    /// What ran: a `WEFT_CALLBACK_*` value.
    pub kind: c_int,
    /// 0: it is still running and `elapsed_ns` is its time so far; 1: it returned and
    /// `elapsed_ns` is its total time.
    pub returned: c_int,
    /// Nanoseconds since the callback started (monotonic clock).
    pub elapsed_ns: u64,
    /// The registration's label (`weft_set_label`), valid during the callback; NULL
    /// when it has none, and always in the topic form.
    pub label: *const c_char,
    /// The loop thread, as the kernel numbers threads (Linux: gettid; 0 where none), for
    /// a sampler that reads its stack.
    pub thread_id: c_int,
}

/// The callback of the watchdog. Runs on the watchdog's own thread, never on the loop
/// thread, and never two at a time for one loop.
pub type weft_watchdog_cb =
    Option<unsafe extern "C" fn(lp: *mut weft_loop, report: *const weft_watchdog_report, user_data: *mut c_void)>;

/// The longest threshold (2^35 - 1 ms, as for timers).
const MAX_THRESHOLD_MS: u64 = (1 << 35) - 1;

/// Sets the loop's slow-callback watchdog: when one callback on the loop thread has run
/// longer than `threshold_ms`, `cb(loop, report, user_data)` is called while it still
/// runs (`report->returned` 0), from a thread of the watchdog's own, and again when it
/// returns (`returned` 1, with its total time). The watchdog looks every quarter of the
/// threshold (1 to 250 ms), so a callback longer than 1.25 times the threshold always
/// gets its first report while it runs; one a little over the threshold may get only
/// the second. `cb` runs on the watchdog thread, one report at a time, while the loop
/// goes on: it may call weft functions, but `weft_loop_free` and
/// `weft_loop_set_watchdog` of this loop are refused there (`WEFT_ERR_BUSY`), since
/// they wait for the watchdog thread. Called again, it replaces the
/// threshold and the callback (the previous `free_fn` runs once). `threshold_ms` 0
/// turns the watchdog off (`cb` may then be NULL): the thread ends, and `free_fn` runs
/// on this thread. Freeing the loop turns it off. Off, a callback costs one load; on,
/// two clock reads. Any thread.
/// `cb` NULL (with a threshold): each report is emitted instead as an event on the
/// loop's topic "weft.watchdog", its payload the `weft_watchdog_report` (`label` NULL),
/// so that subscribers get it on the loop thread once the slow callback has returned:
/// for hosts that cannot take a call from another thread (Node).
/// Returns `WEFT_OK`; `WEFT_ERR_NULL` (loop), `WEFT_ERR_INVALID`
/// (a threshold above 2^35 - 1 ms), `WEFT_ERR_BUSY` (from the watchdog's callback),
/// `WEFT_ERR_IO` (no thread could be started), `WEFT_ERR_CLOSED`. On failure `free_fn`
/// does not run and the watchdog is as it was.
#[no_mangle]
pub extern "C" fn weft_loop_set_watchdog(
    lp: *mut weft_loop,
    threshold_ms: u64,
    cb: weft_watchdog_cb,
    user_data: *mut c_void,
    free_fn: weft_free_fn,
) -> c_int {
    guard("weft_loop_set_watchdog", || {
        let dog = the_loop(lp)?.watchdog_if_open()?;
        if dog.is_own_thread() {
            return Err(Error::new(Code::Busy, "called from the loop's watchdog callback"));
        }
        if threshold_ms == 0 {
            dog.off();
            if let Some(free_fn) = free_fn {
                // SAFETY: the caller's finalizer; this registration made nothing else.
                unsafe { free_fn(user_data) }
            }
            return Ok(0);
        }
        if threshold_ms > MAX_THRESHOLD_MS {
            return Err(Error::invalid(format!("threshold_ms {threshold_ms} is above 2^35 - 1")));
        }
        let sink = CSink { lp: lp as usize, cb, user_data, free_fn };
        dog.set(threshold_ms * 1_000_000, Box::new(move |r: &Report| sink.report(r)))
            .map_err(|e| Error::io("starting the watchdog thread", e))?;
        Ok(0)
    })
}

/// The topic of the reports when no callback takes them.
/// Names the registration `id` of `loop` with `label` (copied), for the reports that
/// name it (the watchdog's: `weft_watchdog_report.label`); `label` NULL removes the
/// name. `id` is a live timer, fd or signal watch, subscription, task, or a post not
/// yet run. The name lasts as long as the registration. Any thread. Returns
/// `WEFT_OK`, `WEFT_ERR_NULL` (loop), `WEFT_ERR_NOT_FOUND` (not a live registration of
/// this loop), `WEFT_ERR_INVALID` (a label over 4096 bytes or not UTF-8),
/// `WEFT_ERR_CLOSED`.
#[no_mangle]
pub extern "C" fn weft_set_label(lp: *mut weft_loop, id: weft_id, label: *const c_char) -> c_int {
    guard("weft_set_label", || {
        let the = the_loop(lp)?;
        let label = if label.is_null() {
            None
        } else {
            let text = c_str(label, "label")?;
            if text.len() > MAX_LABEL {
                return Err(Error::invalid(format!("label is {} bytes, above {MAX_LABEL}", text.len())));
            }
            Some(CString::new(text).expect("a C string holds no NUL"))
        };
        the.set_label(id, label)?;
        Ok(0)
    })
}

/// The longest label, in bytes.
const MAX_LABEL: usize = 4096;

const TOPIC: &str = "weft.watchdog";

/// The C callback (or the loop's topic) as the watchdog's sink; dropping it runs
/// `free_fn`.
struct CSink {
    lp: usize,
    cb: weft_watchdog_cb,
    user_data: *mut c_void,
    free_fn: weft_free_fn,
}

// SAFETY: the C contract lets user data cross to the watchdog thread.
unsafe impl Send for CSink {}

impl CSink {
    fn report(&self, r: &Report) {
        // Zeroed first, then filled in place: the padding is zeros in the topic's
        // payload, not whatever the stack held.
        // SAFETY: the struct is plain data, for which all-zero bytes are valid.
        let mut report: weft_watchdog_report = unsafe { std::mem::zeroed() };
        report.size = std::mem::size_of::<weft_watchdog_report>();
        report.seq = r.seq;
        report.id = r.id;
        report.kind = r.kind as c_int;
        report.returned = r.returned as c_int;
        report.elapsed_ns = r.elapsed_ns;
        report.label = std::ptr::null();
        report.thread_id = r.tid;
        // SAFETY: the loop is alive while its watchdog reports (closing it stops the
        // watchdog first).
        let lp = unsafe { &*(self.lp as *const super::handler::CLoop) };
        let label = self.cb.and_then(|_| lp.label(r.id));
        if let Some(label) = &label {
            report.label = label.as_ptr();
        }
        match self.cb {
            // SAFETY: the caller's callback, with a report valid for the call; the loop
            // outlives the watchdog (closing it stops the watchdog first).
            Some(cb) => unsafe { cb(self.lp as *mut weft_loop, &report, self.user_data) },
            None => {
                // SAFETY: the report is plain data: its bytes are its C layout.
                let bytes = unsafe {
                    std::slice::from_raw_parts((&report as *const weft_watchdog_report).cast::<u8>(), report.size)
                };
                let _ = lp.emit(TOPIC, bytes); // refused only once the loop is closing
            }
        }
    }
}

impl Drop for CSink {
    fn drop(&mut self) {
        if let Some(free_fn) = self.free_fn {
            // SAFETY: the caller's finalizer; Drop runs once.
            unsafe { free_fn(self.user_data) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watchdog::Kind;

    #[test]
    fn kinds_match_the_core() {
        assert_eq!(WEFT_CALLBACK_TIMER, Kind::Timer as c_int);
        assert_eq!(WEFT_CALLBACK_POST, Kind::Post as c_int);
        assert_eq!(WEFT_CALLBACK_FD, Kind::Fd as c_int);
        assert_eq!(WEFT_CALLBACK_SIGNAL, Kind::Signal as c_int);
        assert_eq!(WEFT_CALLBACK_EVENT, Kind::Event as c_int);
        assert_eq!(WEFT_CALLBACK_DONE, Kind::Done as c_int);
    }
}
