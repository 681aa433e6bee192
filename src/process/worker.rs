//! A reused child's side: after each task it says it is ready for another and waits for
//! the parent to send the next task's number (or to say it is done).
//!
//! The parent sends on a socket pair of its own (not the result pipe): 8 bytes, a task's
//! sequence number, little-endian; 0 means exit. The child reads it only after it has
//! sent the last task's status and 'R', so the parent may send the next number ahead,
//! while the child still runs a task: the child then goes on without waiting for the
//! parent's loop. The parent keeps a copy of the child's end of the socket, so it can
//! take a number sent ahead back ([`take_back`]: a cancel or timeout of that task):
//! whichever of the two reads the 8 bytes first has them, so either the child runs that
//! task, or it never does and reports ready as if nothing had been sent. At most one
//! number is in the socket at a time. The child runs only tasks it was given
//! at its fork, looked up by number in its copy of the list (see
//! [`Supervisor`](super::Supervisor) for the rule), and exits on anything else: an
//! unknown number, the end of the socket, or a parent that has gone (a sibling child may
//! hold a copy of the parent's end, so the child also looks at its parent while it
//! waits). Nothing here allocates.

use super::fork::{close_unkept, fork, pipe, Fds, Forked, HostFork};
use super::protocol::send_status_ready;
use crate::error::{Error, Result};
use crate::sys;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

/// The exit code of a child sent a number it was not given (a bug: the task fails as crashed).
const EXIT_UNKNOWN_TASK: i32 = 71;
/// How often a waiting child looks at whether its parent is still there.
const PARENT_CHECK_MS: i32 = 1000;

/// Forks (with `host`'s fork, if given) a child that closes the fds `fds` does not keep
/// (its pipe and control socket stay open), runs `first`, then each task the
/// parent sends it of `queued` (sequence number and work, in number order), each with
/// `run(work, pipe_write_fd)`, sending each task's status and 'R' after it.
///
/// # Safety
/// As [`super::fork_task`]: `run` runs in the forked child, the works must be valid in the
/// child's copy of the process, for the tasks the parent will send (those still waiting
/// then, which were at the fork).
pub unsafe fn fork_worker<W: Copy>(
    host: Option<HostFork>,
    fds: &Fds,
    first: W,
    queued: Vec<(u64, W)>,
    mut run: impl FnMut(W, RawFd) -> i32,
) -> Result<Forked> {
    let (read, write) = pipe()?;
    let (control, theirs) = sys::socketpair().map_err(|e| Error::io("socketpair", e))?;
    let (read_fd, write_fd) = (read.as_raw_fd(), write.as_raw_fd());
    let (control_fd, theirs_fd) = (control.as_raw_fd(), theirs.as_raw_fd());
    let kept = fds.kept(&[write_fd, theirs_fd]);
    let kept = kept.as_deref();
    // SAFETY: the child closes the parent's ends and runs the works (the caller's
    // contract), and ends with _exit.
    let forked = unsafe {
        fork(host, move || {
            libc::close(read_fd);
            libc::close(control_fd);
            close_unkept(kept);
            let parent = libc::getppid();
            let mut work = first;
            loop {
                let status = run(work, write_fd);
                if send_status_ready(write_fd, status).is_err() {
                    libc::_exit(0); // the parent is gone
                }
                let Some(seq) = next_task(theirs_fd, parent) else { libc::_exit(0) };
                match queued.binary_search_by_key(&seq, |&(s, _)| s) {
                    Ok(at) => work = queued[at].1,
                    Err(_) => libc::_exit(EXIT_UNKNOWN_TASK),
                }
            }
        })
    };
    drop(write);
    let pid = forked?;
    let exit_watch = sys::ChildWatch::new(pid);
    Ok(Forked { pid, pipe: read, control: Some(control), theirs: Some(theirs), exit_watch })
}

/// True if the child has read every number sent to it (through the parent's copy of
/// its end, `theirs`): only then may the next be sent ahead, so that at most one number
/// is ever in the socket, and [`take_back`] takes back that one and no other.
pub fn has_read_all(theirs: RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: peeks at one byte into our variable; MSG_DONTWAIT never blocks.
    let n = unsafe { libc::recv(theirs, (&mut byte as *mut u8).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    n < 0 && matches!(io::Error::last_os_error().raw_os_error(), Some(e) if e == libc::EAGAIN || e == libc::EWOULDBLOCK)
}

/// Takes back the task number sent ahead to a child whose end of the control socket the
/// parent holds a copy of (`theirs`), if the child has not read it: Some(true) if it
/// was taken back (the child never runs that task), Some(false) if the child has it,
/// None if that cannot be told (an error; eight bytes written at once are read at once,
/// all of them by one reader, so a part of them is not expected either).
pub fn take_back(theirs: RawFd) -> Option<bool> {
    let mut buf = [0u8; 8];
    loop {
        // SAFETY: reads into our buffer; MSG_DONTWAIT never blocks.
        let n = unsafe { libc::recv(theirs, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n == buf.len() as isize {
            return Some(true);
        }
        if n < 0 {
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(e) if e == libc::EAGAIN || e == libc::EWOULDBLOCK => return Some(false),
                _ => {}
            }
        }
        return None;
    }
}

/// The number of the next task the parent sends on `fd`; None: exit (0, the end of the
/// socket, an error, or the parent `parent` gone).
fn next_task(fd: RawFd, parent: libc::pid_t) -> Option<u64> {
    let mut buf = [0u8; 8];
    let mut have = 0;
    while have < buf.len() {
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, PARENT_CHECK_MS) };
        if ready == 0 {
            // SAFETY: getppid cannot fail.
            if unsafe { libc::getppid() } != parent {
                return None;
            }
            continue;
        }
        let n = if ready > 0 {
            // SAFETY: reads into the rest of our buffer.
            unsafe { libc::read(fd, buf[have..].as_mut_ptr().cast(), buf.len() - have) }
        } else {
            -1
        };
        match n {
            0 => return None,
            n if n > 0 => have += n as usize,
            _ if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => continue,
            _ => return None,
        }
    }
    Some(u64::from_le_bytes(buf)).filter(|&seq| seq != 0)
}
