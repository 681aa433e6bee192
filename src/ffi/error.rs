//! Errors as C sees them: the `weft_result` codes, this thread's last error (set by every
//! failed call, read with `weft_last_error`), `weft_strerror`, and the version calls.

use super::WEFT_ABI_VERSION;
use crate::error::Code;
use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr};

/// Result codes. 0 is success; every error is negative. Functions that return an `int`
/// return one of these; functions that return an id return 0 on error, and functions
/// that return a pointer return NULL. In every error case `weft_last_error` tells why.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum weft_result {
    WEFT_OK = 0,
    /// A required pointer argument was NULL.
    WEFT_ERR_NULL = -1,
    /// An argument is out of range or malformed (a negative fd, a bad pattern, ...).
    WEFT_ERR_INVALID = -2,
    /// The id does not name a live registration of this loop: stale, finished,
    /// cancelled, forged, or another loop's.
    WEFT_ERR_NOT_FOUND = -3,
    /// The loop is being freed.
    WEFT_ERR_CLOSED = -4,
    /// The loop is running (re-entered, or run by another thread), or a limit is reached.
    WEFT_ERR_BUSY = -5,
    /// The work was cancelled.
    WEFT_ERR_CANCELLED = -6,
    /// The work did not finish before its deadline.
    WEFT_ERR_TIMEOUT = -7,
    /// A process task died without a result.
    WEFT_ERR_CRASHED = -8,
    /// weft caught a panic inside itself (a bug: please report it).
    WEFT_ERR_PANIC = -9,
    /// A system call failed; the message holds the OS error.
    WEFT_ERR_IO = -10,
    /// Not supported on this platform or in this build.
    WEFT_ERR_UNSUPPORTED = -11,
    /// Called in a child forked from a process that used weft.
    WEFT_ERR_FORKED = -12,
}

impl From<Code> for weft_result {
    fn from(code: Code) -> weft_result {
        use weft_result::*;
        match code {
            Code::Null => WEFT_ERR_NULL,
            Code::Invalid => WEFT_ERR_INVALID,
            Code::NotFound => WEFT_ERR_NOT_FOUND,
            Code::Closed => WEFT_ERR_CLOSED,
            Code::Busy => WEFT_ERR_BUSY,
            Code::Cancelled => WEFT_ERR_CANCELLED,
            Code::Timeout => WEFT_ERR_TIMEOUT,
            Code::Crashed => WEFT_ERR_CRASHED,
            Code::Panic => WEFT_ERR_PANIC,
            Code::Io => WEFT_ERR_IO,
            Code::Unsupported => WEFT_ERR_UNSUPPORTED,
            Code::Forked => WEFT_ERR_FORKED,
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static LAST_CODE: std::cell::Cell<c_int> = const { std::cell::Cell::new(0) };
}

pub(crate) fn set_last_error(function: &str, code: Code, message: &str) {
    LAST_CODE.with(|last| last.set(weft_result::from(code) as c_int));
    LAST_ERROR.with(|last| {
        let mut last = last.borrow_mut();
        last.clear();
        last.extend_from_slice(function.as_bytes());
        last.extend_from_slice(b": ");
        last.extend(message.bytes().filter(|&b| b != 0));
    });
}

/// Copies this thread's last error message into `buf` (at most `len - 1` bytes and a
/// NUL) and returns the message's full length, so a caller can size its buffer with
/// `weft_last_error(NULL, 0)`. The message names the function, the argument and the
/// value ("weft_watch_fd: fd -1 is not a valid descriptor"). It is set by every failed
/// call and left as it is by successful ones, so read it right after the failure.
/// Returns 0 (and writes an empty string when `len > 0`) if no call on this thread has
/// failed. Any thread; works in a forked child.
#[no_mangle]
pub extern "C" fn weft_last_error(buf: *mut c_char, len: usize) -> usize {
    LAST_ERROR.with(|last| {
        let last = last.borrow();
        if !buf.is_null() && len > 0 {
            let n = last.len().min(len - 1);
            // SAFETY: the caller gives a buffer of at least `len` bytes; n < len.
            unsafe {
                std::ptr::copy_nonoverlapping(last.as_ptr(), buf.cast::<u8>(), n);
                *buf.add(n) = 0;
            }
        }
        last.len()
    })
}

/// The `weft_result` code of this thread's last failed call (0 if none has failed), for
/// calls that return an id or a pointer and so cannot return the code themselves. Set
/// together with `weft_last_error`, with the same lifetime. Any thread; works in a
/// forked child.
#[no_mangle]
pub extern "C" fn weft_last_error_code() -> c_int {
    LAST_CODE.with(|last| last.get())
}

/// A static description of a `weft_result` code ("WEFT_ERR_NOT_FOUND: ..."); an unknown
/// code gives "unknown weft_result code". Never NULL. Any thread.
#[no_mangle]
pub extern "C" fn weft_strerror(code: c_int) -> *const c_char {
    let text: &'static CStr = match code {
        0 => c"WEFT_OK: success",
        -1 => c"WEFT_ERR_NULL: a required pointer argument was NULL",
        -2 => c"WEFT_ERR_INVALID: an argument is out of range or malformed",
        -3 => c"WEFT_ERR_NOT_FOUND: the id does not name a live registration of this loop",
        -4 => c"WEFT_ERR_CLOSED: the loop is being freed",
        -5 => c"WEFT_ERR_BUSY: the loop is already running, or a limit is reached",
        -6 => c"WEFT_ERR_CANCELLED: the work was cancelled",
        -7 => c"WEFT_ERR_TIMEOUT: the work did not finish before its deadline",
        -8 => c"WEFT_ERR_CRASHED: the process task died without a result",
        -9 => c"WEFT_ERR_PANIC: weft caught an internal panic",
        -10 => c"WEFT_ERR_IO: a system call failed",
        -11 => c"WEFT_ERR_UNSUPPORTED: not supported here",
        -12 => c"WEFT_ERR_FORKED: called in a forked child",
        _ => c"unknown weft_result code",
    };
    text.as_ptr()
}

/// The library version, "MAJOR.MINOR.PATCH". Static; never NULL. Any thread.
#[no_mangle]
pub extern "C" fn weft_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The ABI version of the loaded library; compare it with `WEFT_ABI_VERSION` from the
/// header you compiled against. Any thread.
#[no_mangle]
pub extern "C" fn weft_abi_version() -> u32 {
    WEFT_ABI_VERSION
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::{WEFT_VERSION_MAJOR, WEFT_VERSION_MINOR, WEFT_VERSION_PATCH};

    #[test]
    fn version_macros_match_the_crate_version() {
        let v = format!("{WEFT_VERSION_MAJOR}.{WEFT_VERSION_MINOR}.{WEFT_VERSION_PATCH}");
        assert_eq!(v, env!("CARGO_PKG_VERSION"));
        let s = unsafe { CStr::from_ptr(weft_version()) };
        assert_eq!(s.to_str().unwrap(), v);
    }

    #[test]
    fn codes_and_messages_agree() {
        for code in -13..=1 {
            let text = unsafe { CStr::from_ptr(weft_strerror(code)) }.to_str().unwrap();
            assert!(!text.is_empty());
        }
        assert_eq!(Code::Forked as i32, weft_result::WEFT_ERR_FORKED as i32);
        assert_eq!(Code::Null as i32, weft_result::WEFT_ERR_NULL as i32);
    }
}
