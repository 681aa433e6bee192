//! Supervising children, the parent's side: each [`Child`] (its pipe, its exit, its
//! timeout and kill, its outcome) and the [`Supervisor`] of a loop's children (which
//! run, which wait for a slot under their `max_children` bound). The loop holds both
//! under its lock and drives them through these methods; their fields are theirs.
//!
//! The loop watches the pipe (non-blocking) and, where the kernel has it, a watch of the
//! child's exit ([`sys::ChildWatch`]). The result is complete when the child has exited
//! and the pipe is drained (end of file, or no more data once the child is gone: a
//! sibling forked meanwhile may hold a copy of the write end, so end of file is not
//! guaranteed). Children are reaped
//! with `waitpid(pid)` on their own pid only, never `waitpid(-1)`, so the host's other
//! children are left alone. Without a watch (Linux before 5.3), the loop polls
//! `waitpid(pid, WNOHANG)` every few milliseconds.

use super::fork::{set_nonblocking, Forked};
use super::protocol::{ChildEvent, Reader};
use crate::error::{Code, Error, Result};
use crate::sys;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// How long a child gets between SIGTERM and SIGKILL.
const KILL_GRACE_NS: u64 = 250_000_000;
/// How often a child is polled for its exit where there is no watch of it.
const POLL_EXIT_NS: u64 = 5_000_000;

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

/// Where a supervised child is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Spawned, waiting for a free slot under its bound: not forked yet.
    Waiting,
    /// Being forked by the spawning thread right now.
    Forking,
    /// Forked (or adopted): the loop watches its pipe and its exit.
    Running,
}

/// A process task's child as its loop supervises it (the loop thread, under its lock).
pub struct Child {
    state: State,
    /// The most process tasks of its loop that may run while this one starts.
    max_children: usize,
    /// Counted among its loop's running children (forked by weft, not adopted).
    counted: bool,
    pid: i32,
    pipe: Option<OwnedFd>,
    exit_watch: Option<sys::ChildWatch>,
    exit: Option<Exit>,
    reader: Reader,
    /// A protocol error or a failed fork: the task ends with it.
    failure: Option<(Code, String)>,
    /// Set by cancel or timeout: the status `done` gets, whatever the child does.
    end: Option<i32>,
    /// The timeout's deadline (0: none), when SIGKILL follows SIGTERM (0: not asked).
    deadline_ns: u64,
    kill_at_ns: u64,
}

/// The deadline of a timeout of `timeout_ms` from now (0: none).
pub fn deadline_ns(timeout_ms: u64) -> u64 {
    if timeout_ms > 0 {
        crate::sys::now_ns() + timeout_ms * crate::timer::TICK_NS
    } else {
        0
    }
}

impl Child {
    /// A process task's child, waiting to be forked.
    fn new(max_children: usize, deadline_ns: u64) -> Child {
        Child {
            state: State::Waiting,
            max_children,
            counted: false,
            pid: 0,
            pipe: None,
            exit_watch: None,
            exit: None,
            reader: Reader::default(),
            failure: None,
            end: None,
            deadline_ns,
            kill_at_ns: 0,
        }
    }

    /// A child the host forked itself, reporting through `pipe_read_fd` (made
    /// non-blocking), which it owns from now on; it is not counted under a bound.
    ///
    /// # Safety
    /// `pipe_read_fd` is open and handed over: nothing else closes it.
    pub unsafe fn adopted(pid: i32, pipe_read_fd: RawFd, deadline_ns: u64) -> Child {
        set_nonblocking(pipe_read_fd);
        let mut child = Child::new(0, deadline_ns);
        child.state = State::Running;
        child.pid = pid;
        // SAFETY: the caller hands the descriptor over (checked open).
        child.pipe = Some(unsafe { OwnedFd::from_raw_fd(pipe_read_fd) });
        child.exit_watch = sys::ChildWatch::new(pid);
        child
    }

    /// The child (Forking) was forked: supervised from now on. A cancel that came while
    /// it was being forked is carried out now.
    pub fn forked(&mut self, forked: Forked) {
        self.pid = forked.pid;
        self.state = State::Running;
        self.pipe = Some(forked.pipe);
        self.exit_watch = forked.exit_watch;
        if let Some(status) = self.end {
            // Cancelled while it was being forked.
            self.end = None;
            self.end_with(status, crate::sys::now_ns());
        }
    }

    /// Its fork failed: the task ends with `error` (and stays counted under its bound
    /// until the supervisor forgets it).
    pub fn fork_failed(&mut self, error: Error) {
        self.state = State::Waiting;
        self.failure = Some((error.code, error.message));
    }

    /// True while it waits for a slot, not forked yet.
    pub fn is_waiting(&self) -> bool {
        self.state == State::Waiting
    }

    /// The fds to watch: its pipe (readable: [`read_pipe`](Self::read_pipe)) and its
    /// exit watch (readable once it exits: [`poll_exit`](Self::poll_exit)), where it has them.
    pub fn fds(&self) -> [Option<RawFd>; 2] {
        [self.pipe.as_ref().map(|fd| fd.as_raw_fd()), self.exit_watch.as_ref().map(|w| w.as_raw_fd())]
    }

    /// Reads the pipe up to `budget` bytes (see `read`); once the pipe is done, hands it
    /// back, for the caller to take out of its poller, then close.
    pub fn read_pipe(&mut self, budget: usize, events: &mut Vec<ChildEvent>) -> Option<OwnedFd> {
        if self.read(budget, events) {
            self.pipe.take()
        } else {
            None
        }
    }

    /// Its exit watch is readable: reaps it if it has exited.
    pub fn poll_exit(&mut self) {
        self.exit = self.exit.or_else(|| reap(self.pid, false));
    }

    /// Once the child has exited, what it wrote is all in the pipe: reads the rest and
    /// hands back its pipe and exit watch (to take out of the poller, then close).
    pub fn collect_exit(&mut self, events: &mut Vec<ChildEvent>) -> [Option<OwnedFd>; 2] {
        if self.exit.is_none() {
            return [None, None];
        }
        self.read(usize::MAX, events);
        [self.pipe.take(), self.exit_watch.take().map(OwnedFd::from)]
    }

    /// Reads the pipe until it is empty, closed, or `budget` bytes were read (the rest
    /// then waits for the next pass). True when the pipe is done: end of file, or a
    /// protocol error; the caller takes it out of its poller, then closes it.
    fn read(&mut self, budget: usize, events: &mut Vec<ChildEvent>) -> bool {
        let Some(fd) = self.pipe.as_ref().map(|p| p.as_raw_fd()) else { return true };
        let mut buf = [0u8; 64 << 10];
        let mut total = 0;
        loop {
            // SAFETY: reads into our stack buffer from our pipe.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                if let Err(e) = self.reader.feed(&buf[..n as usize], events) {
                    self.failure =
                        Some((Code::Crashed, format!("the child (pid {}) broke the pipe protocol: {e}", self.pid)));
                    self.kill(libc::SIGKILL);
                    return true;
                }
                total += n as usize;
                if total >= budget {
                    return false;
                }
                continue;
            }
            if n < 0 {
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => return false,
                    _ => {}
                }
            }
            return true; // end of file (or a read error: nothing more will come)
        }
    }

    /// Signals the child, if it is running and not reaped.
    fn kill(&self, signal: i32) {
        if self.state == State::Running && self.pid > 0 && self.exit.is_none() {
            kill(self.pid, signal);
        }
    }

    /// Ends the task with `status` (cancel or timeout): a running child gets SIGTERM now
    /// and SIGKILL after a grace period. False if it was ending already.
    pub fn end_with(&mut self, status: i32, now_ns: u64) -> bool {
        if self.end.is_some() {
            return false;
        }
        self.end = Some(status);
        if self.state == State::Running && self.exit.is_none() {
            self.kill(libc::SIGTERM);
            self.kill_at_ns = now_ns + KILL_GRACE_NS;
        }
        true
    }

    /// Timer work: the timeout, the SIGKILL after the grace, and (without an exit watch) a
    /// look at whether the child exited.
    fn on_timer(&mut self, now_ns: u64) {
        if self.deadline_ns != 0 && now_ns >= self.deadline_ns {
            self.deadline_ns = 0;
            self.end_with(Code::Timeout as i32, now_ns); // task::TIMEOUT, named by its code: no import circle
        }
        if self.kill_at_ns != 0 && now_ns >= self.kill_at_ns {
            self.kill_at_ns = 0;
            self.kill(libc::SIGKILL);
        }
        if self.state == State::Running && self.exit_watch.is_none() && self.exit.is_none() {
            self.exit = reap(self.pid, false);
        }
    }

    /// When the loop should next call `Supervisor::on_timer` (None: no need).
    pub fn next_timer_ns(&self, now_ns: u64) -> Option<u64> {
        let poll = (self.state == State::Running && self.exit_watch.is_none() && self.exit.is_none())
            .then_some(now_ns + POLL_EXIT_NS);
        [poll, (self.deadline_ns != 0).then_some(self.deadline_ns), (self.kill_at_ns != 0).then_some(self.kill_at_ns)]
            .into_iter()
            .flatten()
            .min()
    }

    /// True once the task can end: it never started and was cancelled or timed out, or
    /// the child was reaped and its pipe drained ([`collect_exit`](Self::collect_exit)).
    pub fn is_over(&self) -> bool {
        match self.state {
            State::Waiting => self.end.is_some() || self.failure.is_some(),
            State::Forking => false,
            State::Running => self.exit.is_some() && self.pipe.is_none(),
        }
    }

    /// The status for `done`, and the message for `weft_last_error` with it.
    pub fn outcome(&mut self) -> (i32, Vec<u8>, Option<String>) {
        if let Some(end) = self.end {
            return (end, Vec::new(), None);
        }
        if let Some((code, message)) = self.failure.take() {
            return (code as i32, Vec::new(), Some(message));
        }
        match (self.reader.status(), self.exit) {
            (Some(status), _) => (status, self.reader.take_result(), None),
            (None, exit) => {
                (Code::Crashed as i32, Vec::new(), Some(describe(self.pid, exit.unwrap_or(Exit::Unknown), false)))
            }
        }
    }

    /// Kills and reaps a running child (its loop is being freed).
    pub fn kill_and_reap(&mut self) {
        if self.state == State::Running && self.pid > 0 && self.exit.is_none() {
            kill(self.pid, libc::SIGKILL);
            self.exit = reap(self.pid, true);
        }
    }
}

/// A loop's children as a whole: the process tasks waiting for a slot (first come, first
/// forked; by the loop's index of their registration) and how many of its children
/// run. Only children forked by weft count; adopted ones run outside every bound.
#[derive(Default)]
pub(crate) struct Supervisor {
    waiting: VecDeque<u32>,
    running: usize,
}

impl Supervisor {
    /// A process task spawned as registration `index`: its child, and whether the
    /// spawning thread forks it now (a slot is free and nobody waits before it; the
    /// child is Forking then). Otherwise it waits, and forks on the loop thread when a
    /// slot frees ([`start_next`](Self::start_next)).
    pub fn admit(&mut self, index: u32, max_children: usize, deadline_ns: u64) -> (Child, bool) {
        let mut child = Child::new(max_children, deadline_ns);
        let fork_now = self.waiting.is_empty() && self.running < max_children;
        if fork_now {
            child.state = State::Forking;
            child.counted = true;
            self.running += 1;
        } else {
            self.waiting.push_back(index);
        }
        (child, fork_now)
    }

    /// The first waiting task, if its bound lets it start now: its index, its child
    /// (found by `child_at`) made Forking and counted. None: nothing can start.
    pub fn start_next<'a>(&mut self, child_at: impl FnOnce(u32) -> &'a mut Child) -> Option<u32> {
        let &index = self.waiting.front()?;
        let child = child_at(index);
        if self.running >= child.max_children {
            return None;
        }
        self.waiting.pop_front();
        self.running += 1;
        child.state = State::Forking;
        child.counted = true;
        Some(index)
    }

    /// Timer work of the child at `index`: its timeout, the SIGKILL after the grace,
    /// and (without an exit watch) a look at whether it exited. A task whose timeout expires
    /// while it waits leaves the queue.
    pub fn on_timer(&mut self, index: u32, child: &mut Child, now_ns: u64) {
        let expired = child.state == State::Waiting && child.deadline_ns != 0 && now_ns >= child.deadline_ns;
        child.on_timer(now_ns);
        if expired {
            self.waiting.retain(|&i| i != index);
        }
    }

    /// The waiting task at `index` was cancelled: it leaves the queue.
    pub fn dequeue(&mut self, index: u32) {
        self.waiting.retain(|&i| i != index);
    }

    /// Stops supervising the child at `index` (its task ended, or its loop closes): out
    /// of the queue, its slot freed, its pipe and exit watch handed back (to take out of
    /// the poller, then close).
    pub fn forget(&mut self, index: u32, child: &mut Child) -> [Option<OwnedFd>; 2] {
        self.waiting.retain(|&i| i != index);
        if std::mem::take(&mut child.counted) {
            self.running -= 1;
        }
        [child.pipe.take(), child.exit_watch.take().map(OwnedFd::from)]
    }
}
