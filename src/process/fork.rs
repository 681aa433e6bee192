//! Forking a child for a task: the pipe it reports through, the fork itself, and the
//! watch of its exit the parent keeps ([`sys::ChildWatch`]).
//!
//! Between `fork` and the work, the child makes only async-signal-safe calls (`close`,
//! `sigprocmask`, `signal`): other threads of the parent may have held any lock at the
//! fork, malloc's included. Writes go straight to the pipe with `writev`, without
//! allocating. After the work returns the child writes 'S' and calls `_exit(0)`, so no
//! atexit handler and no destructor of the parent's objects runs in it.

use super::protocol::finish;
use crate::error::{Code, Error, Result};
use crate::sys;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// A child forked for a task, as its parent holds it: handed to
/// [`Child::forked`](super::Child::forked).
pub struct Forked {
    pub(super) pid: i32,
    /// The pipe's read end (non-blocking).
    pub(super) pipe: OwnedFd,
    /// None where the kernel cannot watch a child's exit: then it is polled.
    pub(super) exit_watch: Option<sys::ChildWatch>,
}

/// Forks a child that runs `work` with the write end of a fresh pipe, then sends the
/// status `work` returns and ends (see [`finish`]); the parent gets the read end.
///
/// # Safety
/// `work` runs in the forked child: it must reach user code making only
/// async-signal-safe calls, and anything it points to must be valid in the child's copy
/// of the process (see [`fork`]).
pub unsafe fn fork_task(work: impl FnOnce(RawFd) -> i32) -> Result<Forked> {
    let (read, write) = pipe()?;
    let write_fd = write.as_raw_fd();
    let read_fd = read.as_raw_fd();
    // SAFETY: the child closes the read end and runs `work` (the caller's contract),
    // then `finish` ends it with _exit.
    let forked = unsafe {
        fork(move || {
            libc::close(read_fd);
            let status = work(write_fd);
            finish(write_fd, status)
        })
    };
    drop(write);
    let pid = forked?;
    let exit_watch = sys::ChildWatch::new(pid);
    Ok(Forked { pid, pipe: read, exit_watch })
}

/// Forks; in the child, runs `child` (which must end the process, never return).
/// Returns the child's pid in the parent.
///
/// # Safety
/// `child` runs in a copy of a multi-threaded process: until it reaches user code it must
/// make only async-signal-safe calls, and it must end with `_exit`.
pub unsafe fn fork(child: impl FnOnce() -> std::convert::Infallible) -> Result<i32> {
    crate::fork::install();
    // SAFETY: the caller's contract.
    match unsafe { libc::fork() } {
        -1 => Err(Error::new(Code::Io, format!("fork: {}", io::Error::last_os_error()))),
        0 => {
            // Signals: none blocked (the forking thread may have blocked some), SIGTERM
            // at its default so a cancel or timeout ends the child. Async-signal-safe.
            // SAFETY: plain signal-state calls on this (only) thread.
            unsafe {
                let mut all: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut all);
                libc::pthread_sigmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
                libc::signal(libc::SIGTERM, libc::SIG_DFL);
            }
            // A panic must not unwind into the parent's frames (copied into this child):
            // the child ends here either way.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child));
            // SAFETY: the end of the child.
            unsafe { libc::_exit(70) }
        }
        pid => Ok(pid),
    }
}

/// A pipe: (read end, non-blocking; write end, blocking), both close-on-exec.
pub fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) = sys::pipe().map_err(|e| Error::io(sys::call::PIPE, e))?;
    set_nonblocking(r.as_raw_fd());
    // A bigger pipe: fewer wake-ups for a large result (best effort).
    sys::grow_pipe(w.as_raw_fd(), 1 << 20);
    Ok((r, w))
}

pub fn set_nonblocking(fd: RawFd) {
    // SAFETY: plain fcntl calls on a descriptor the caller owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
}
