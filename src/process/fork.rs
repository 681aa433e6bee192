//! Forking a child for a task: the pipe it reports through, the fork itself (weft's own,
//! or the host's: [`HostFork`]), and the watch of its exit the parent keeps
//! ([`sys::ChildWatch`]).
//!
//! Between `fork` and the work, the child makes only async-signal-safe calls (`close`,
//! `close_range`, `sigprocmask`, `signal`): it closes the parent's descriptors the task
//! does not keep ([`Fds`]) with a list sorted in the parent: other threads of the parent may have held any lock at the
//! fork, malloc's included. Writes go straight to the pipe with `writev`, without
//! allocating. After the work returns the child writes 'S' and calls `_exit(0)`, so no
//! atexit handler and no destructor of the parent's objects runs in it.

use super::protocol::finish;
use crate::error::{Code, Error, Result};
use crate::sys;
use std::ffi::{c_int, c_void};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// A host's own fork (`weft_spawn_options.fork_fn`), for a language runtime that must
/// fork with its own hooks (Python's `os.fork()`): called instead of fork(2), on the
/// thread that starts the task and with no weft lock held, it returns as fork does: the
/// child's pid in the parent, 0 in the child, -1 on failure (errno set).
#[derive(Clone, Copy)]
pub struct HostFork {
    pub call: unsafe extern "C" fn(*mut c_void) -> c_int,
    /// The host's pointer, passed to `call`.
    pub data: usize,
}

impl HostFork {
    /// Tasks of one group may share a child (the same fork, the same data).
    pub fn group(&self) -> (usize, usize) {
        (self.call as usize, self.data)
    }
}

/// Which of the parent's descriptors a task's child keeps (`weft_spawn_options`'
/// `keep_fds` and `inherit_fds`). The default: stdin, stdout, stderr and its own pipes
/// only, so a server's sockets and pipes are not held open by its children.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct Fds {
    /// Every descriptor stays open (the child inherits the parent's table as is).
    pub inherit: bool,
    /// Descriptors above stderr kept open as well.
    pub keep: Vec<RawFd>,
}

impl Fds {
    /// What a child that may run tasks of each of `all` keeps: every fd one of them keeps.
    pub fn union<'a>(all: impl IntoIterator<Item = &'a Fds>) -> Fds {
        let mut out = Fds::default();
        for fds in all {
            out.inherit |= fds.inherit;
            out.keep.extend_from_slice(&fds.keep);
        }
        out
    }

    /// The sorted list of fds the child keeps, its own `pipes` added; None: all. Made
    /// in the parent, so the child only reads it.
    pub(super) fn kept(&self, pipes: &[RawFd]) -> Option<Vec<RawFd>> {
        if self.inherit {
            return None;
        }
        let mut keep: Vec<RawFd> = self.keep.iter().chain(pipes).copied().filter(|&fd| fd > 2).collect();
        keep.sort_unstable();
        keep.dedup();
        Some(keep)
    }
}

/// In a forked child: closes what `kept` does not list (see [`Fds::kept`]).
pub(super) fn close_unkept(kept: Option<&[RawFd]>) {
    if let Some(keep) = kept {
        sys::close_fds_above_stderr_except(keep);
    }
}

/// A child forked for a task, as its parent holds it: handed to
/// [`Child::forked`](super::Child::forked).
pub struct Forked {
    pub(super) pid: i32,
    /// The pipe's read end (non-blocking).
    pub(super) pipe: OwnedFd,
    /// A reused child: the parent's end of the socket that sends it its next task.
    pub(super) control: Option<OwnedFd>,
    /// A reused child: the parent's copy of the child's end of that socket, to take a
    /// task sent ahead back (see `worker::take_back`).
    pub(super) theirs: Option<OwnedFd>,
    /// None where the kernel cannot watch a child's exit: then it is polled.
    pub(super) exit_watch: Option<sys::ChildWatch>,
}

/// Forks (with `host`'s fork, if given) a child that closes the fds `fds` does not keep
/// and runs `work` with the write end of a fresh pipe, then sends the status `work` returns and ends (see [`finish`]); the parent
/// gets the read end.
///
/// # Safety
/// `work` runs in the forked child: it must reach user code making only
/// async-signal-safe calls, and anything it points to must be valid in the child's copy
/// of the process (see [`fork`]).
pub unsafe fn fork_task(host: Option<HostFork>, fds: &Fds, work: impl FnOnce(RawFd) -> i32) -> Result<Forked> {
    let (read, write) = pipe()?;
    let write_fd = write.as_raw_fd();
    let read_fd = read.as_raw_fd();
    let kept = fds.kept(&[write_fd]);
    let kept = kept.as_deref();
    // SAFETY: the child closes the read end and runs `work` (the caller's contract),
    // then `finish` ends it with _exit.
    let forked = unsafe {
        fork(host, move || {
            libc::close(read_fd);
            close_unkept(kept);
            let status = work(write_fd);
            finish(write_fd, status)
        })
    };
    drop(write);
    let pid = forked?;
    let exit_watch = sys::ChildWatch::new(pid);
    Ok(Forked { pid, pipe: read, control: None, theirs: None, exit_watch })
}

/// Forks (with `host`'s fork, if given); in the child, runs `child` (which must end the
/// process, never return). Returns the child's pid in the parent.
///
/// # Safety
/// `child` runs in a copy of a multi-threaded process: until it reaches user code it must
/// make only async-signal-safe calls, and it must end with `_exit`.
pub unsafe fn fork(host: Option<HostFork>, child: impl FnOnce() -> std::convert::Infallible) -> Result<i32> {
    crate::fork::install();
    // SAFETY: getpid cannot fail.
    let parent = unsafe { libc::getpid() };
    let (name, pid) = match host {
        // SAFETY: the caller's contract.
        None => ("fork", unsafe { libc::fork() }),
        // SAFETY: the host's function, as its spawn options promise (see HostFork).
        Some(host) => ("fork_fn", unsafe { (host.call)(host.data as *mut c_void) }),
    };
    match pid {
        -1 => Err(Error::new(Code::Io, format!("{name}: {}", io::Error::last_os_error()))),
        // SAFETY: getpid cannot fail.
        0 if unsafe { libc::getpid() } == parent => {
            Err(Error::invalid("fork_fn returned 0 in the parent (it must return the child's pid there)"))
        }
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
        pid if pid < 0 => Err(Error::invalid(format!("fork_fn returned {pid}, neither a pid nor -1"))),
        pid if host.is_some() && super::exit::check_child(pid).is_err() => {
            Err(Error::invalid(format!("fork_fn returned {pid}, which is not a child of this process")))
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
