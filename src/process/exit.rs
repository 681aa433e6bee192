//! A child's end, seen from the parent: reaping it (`waitpid` on its own pid only,
//! never `waitpid(-1)`, so a host's other children are left alone), signalling it,
//! checking that a pid is an unreaped child of ours, and saying how it ended.

use crate::error::{Error, Result};
use std::io;

/// How a child ended, from `waitpid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// Someone else reaped it (a host's SIGCHLD handler calling `waitpid(-1)`).
    Unknown,
}

/// Reaps `pid` if it has exited (`block`: waits for it).
pub fn reap(pid: i32, block: bool) -> Option<Exit> {
    loop {
        let mut status = 0;
        // SAFETY: waits for our own child `pid` only.
        let r = unsafe { libc::waitpid(pid, &mut status, if block { 0 } else { libc::WNOHANG }) };
        if r == pid {
            return Some(if libc::WIFSIGNALED(status) {
                Exit::Signal(libc::WTERMSIG(status))
            } else {
                Exit::Code(libc::WEXITSTATUS(status))
            });
        }
        if r == 0 {
            return None;
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            _ => return Some(Exit::Unknown), // ECHILD: not ours (any more)
        }
    }
}

pub fn kill(pid: i32, signal: i32) {
    // SAFETY: signals our own child, which has not been reaped (the caller knows).
    unsafe { libc::kill(pid, signal) };
}

/// Checks that `pid` is a child of this process that has not been reaped.
pub fn check_child(pid: i32) -> Result<()> {
    if pid <= 0 {
        return Err(Error::invalid(format!("pid {pid} is not a process id")));
    }
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: looks at our child `pid` without reaping it (WNOWAIT).
    let r = unsafe {
        libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT)
    };
    if r < 0 {
        return Err(Error::invalid(format!("pid {pid} is not a child of this process (or was reaped already)")));
    }
    Ok(())
}

/// "killed by signal 11 (SIGSEGV)" and the like.
pub fn describe(pid: i32, exit: Exit, complete: bool) -> String {
    match exit {
        Exit::Signal(sig) => format!("the child (pid {pid}) was killed by signal {sig} ({})", signal_name(sig)),
        Exit::Code(code) if !complete => {
            format!("the child (pid {pid}) exited with code {code} before its result was complete")
        }
        Exit::Code(code) => format!("the child (pid {pid}) exited with code {code}"),
        Exit::Unknown => format!("the child (pid {pid}) was reaped by someone else before its result was complete"),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => "a real-time or uncommon signal",
    }
}
