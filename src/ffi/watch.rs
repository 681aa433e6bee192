//! fd and signal watches: `weft_watch_fd`, `weft_watch_fd_modify`, `weft_watch_signal`.

use super::guard::guard;
use super::handle::{weft_id, weft_loop};
use super::handler::{weft_fd_cb, weft_free_fn, weft_signal_cb, CHandler};
use super::r#loop::the_loop;
use std::ffi::{c_int, c_void};

/// fd watch interest and readiness bit: the fd is readable.
pub const WEFT_READABLE: u32 = 1;
/// fd watch interest and readiness bit: the fd is writable.
pub const WEFT_WRITABLE: u32 = 2;
/// Readiness bit, always reported: the peer hung up (the fd reads EOF). On macOS and the
/// BSDs (kqueue) a hang-up is reported as `WEFT_READABLE` only: the read gives EOF.
pub const WEFT_HANGUP: u32 = 4;
/// Readiness bit, always reported: an error is pending on the fd.
pub const WEFT_ERROR: u32 = 8;

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
    }
}
