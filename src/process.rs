//! Process tasks: a work function run in a forked child, its result streamed back
//! through a pipe. Nothing is serialised but the bytes the work writes.
//!
//! # The pipe protocol
//!
//! A child speaks to its parent in frames, written to the pipe's write end:
//!
//! ```text
//! frame  = length:u32le  kind:u8  body[length]
//! kind 'W' (0x57)  body = result bytes, appended to the task's result
//! kind 'E' (0x45)  body = topic_len:u32le  topic[topic_len] (UTF-8, no NUL, no '*')
//!                         payload[length - 4 - topic_len]: an event for the parent
//!                         loop's subscribers, delivered in order, before done
//! kind 'S' (0x53)  body = status:i32le: the work's status; the last frame. The result
//!                         is complete only once it has arrived.
//! ```
//!
//! A body is at most [`MAX_BODY`] bytes; a longer result is sent as several 'W' frames.
//! Anything else (an unknown kind, a bad length, a frame after 'S', a topic that is not
//! valid) is a protocol error: the child is killed and the task ends `Crashed`. Another
//! language can speak the protocol by itself; weft's `weft_child_task` speaks it for
//! hosts that fork on their own.
//!
//! # The child
//!
//! Between `fork` and the work, the child makes only async-signal-safe calls (`close`,
//! `sigprocmask`, `signal`): other threads of the parent may have held any lock at the
//! fork, malloc's included. Writes go straight to the pipe with `writev`, without
//! allocating. After the work returns the child writes 'S' and calls `_exit(0)`, so no
//! atexit handler and no destructor of the parent's objects runs in it.
//!
//! # The parent
//!
//! The loop watches the pipe (non-blocking) and, where the kernel has it, a pidfd of the
//! child. The result is complete when the child has exited and the pipe is drained
//! (end of file, or no more data once the child is gone: a sibling forked meanwhile may
//! hold a copy of the write end, so end of file is not guaranteed). Children are reaped
//! with `waitpid(pid)` on their own pid only, never `waitpid(-1)`, so the host's other
//! children are left alone. Without pidfd (Linux before 5.3), the loop polls
//! `waitpid(pid, WNOHANG)` every few milliseconds.

use crate::error::{Code, Error, Result};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub(crate) const FRAME_RESULT: u8 = b'W';
pub(crate) const FRAME_EVENT: u8 = b'E';
pub(crate) const FRAME_STATUS: u8 = b'S';
/// The largest frame body (16 MiB).
pub(crate) const MAX_BODY: usize = 16 << 20;
const HEADER: usize = 5;

/// How long a child gets between SIGTERM and SIGKILL.
pub(crate) const KILL_GRACE_NS: u64 = 250_000_000;
/// How often a child is polled for its exit where there is no pidfd.
pub(crate) const POLL_EXIT_NS: u64 = 5_000_000;

// ---- the child's side ---------------------------------------------------------------------

/// Writes every byte of `parts` (a frame) to `fd`, blocking; no allocation, so it is
/// safe in a freshly forked child.
fn write_all(fd: RawFd, parts: &[&[u8]]) -> io::Result<()> {
    let mut iov = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; 4];
    assert!(parts.len() <= iov.len());
    let (mut first, mut skip) = (0, 0); // the part and the offset in it still to write
    while first < parts.len() {
        let mut n = 0;
        for (i, part) in parts[first..].iter().enumerate() {
            let part = if i == 0 { &part[skip..] } else { part };
            iov[n] = libc::iovec { iov_base: part.as_ptr() as *mut libc::c_void, iov_len: part.len() };
            n += 1;
        }
        // SAFETY: `iov` holds `n` valid (pointer, length) pairs borrowed from `parts`.
        let written = unsafe { libc::writev(fd, iov.as_ptr(), n as libc::c_int) };
        if written < 0 {
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => {
                    // A non-blocking pipe (the host's choice) that is full: wait until
                    // the parent has read some, so a frame is never left half written.
                    let mut pfd = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
                    // SAFETY: one valid pollfd; poll is async-signal-safe.
                    unsafe { libc::poll(&mut pfd, 1, -1) };
                    continue;
                }
                _ => return Err(err),
            }
        }
        let mut written = written as usize;
        while first < parts.len() && written >= parts[first].len() - skip {
            written -= parts[first].len() - skip;
            first += 1;
            skip = 0;
        }
        skip += written;
    }
    Ok(())
}

fn frame_header(kind: u8, len: usize) -> [u8; HEADER] {
    let len = (len as u32).to_le_bytes();
    [len[0], len[1], len[2], len[3], kind]
}

/// Sends result bytes (as many 'W' frames as it takes).
pub fn send_result(fd: RawFd, bytes: &[u8]) -> io::Result<()> {
    for chunk in bytes.chunks(MAX_BODY) {
        write_all(fd, &[&frame_header(FRAME_RESULT, chunk.len()), chunk])?;
    }
    Ok(())
}

/// Sends an event ('E').
pub fn send_event(fd: RawFd, topic: &str, payload: &[u8]) -> Result<()> {
    crate::bus::check_topic(topic)?;
    let body = 4 + topic.len() + payload.len();
    if body > MAX_BODY {
        return Err(Error::invalid(format!(
            "an event from a process task holds at most {} bytes of topic and payload ({} given)",
            MAX_BODY - 4,
            body - 4
        )));
    }
    let topic_len = (topic.len() as u32).to_le_bytes();
    write_all(fd, &[&frame_header(FRAME_EVENT, body), &topic_len, topic.as_bytes(), payload])
        .map_err(|e| Error::io("writing to the parent's pipe", e))
}

/// Sends the status ('S'), closes the pipe and ends the child without running atexit
/// handlers or destructors.
pub fn finish(fd: RawFd, status: i32) -> ! {
    let _ = write_all(fd, &[&frame_header(FRAME_STATUS, 4), &status.to_le_bytes()]);
    // SAFETY: the end of the child; `_exit` is async-signal-safe and never returns.
    unsafe {
        libc::close(fd);
        libc::_exit(0)
    }
}

/// Checks that `fd` is open for writing and is a pipe or a socket.
pub fn check_write_fd(fd: RawFd) -> Result<()> {
    check_pipe_end(fd, libc::O_RDONLY, "writing (the pipe's read end?)")
}

/// Checks that `fd` is open for reading and is a pipe or a socket.
pub fn check_read_fd(fd: RawFd) -> Result<()> {
    check_pipe_end(fd, libc::O_WRONLY, "reading (the pipe's write end?)")
}

/// `fd` is open, not in access mode `wrong`, and a pipe or a socket.
fn check_pipe_end(fd: RawFd, wrong: libc::c_int, open_for: &str) -> Result<()> {
    // SAFETY: F_GETFL only reads the descriptor's flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if fd < 0 || flags < 0 {
        return Err(Error::invalid(format!("fd {fd} is not an open file descriptor")));
    }
    if flags & libc::O_ACCMODE == wrong {
        return Err(Error::invalid(format!("fd {fd} is not open for {open_for}")));
    }
    check_pipe(fd)
}

fn check_pipe(fd: RawFd) -> Result<()> {
    // SAFETY: `st` is a valid out-pointer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return Err(Error::invalid(format!("fd {fd} is not an open file descriptor")));
    }
    let kind = st.st_mode & libc::S_IFMT;
    if kind != libc::S_IFIFO && kind != libc::S_IFSOCK {
        return Err(Error::invalid(format!("fd {fd} is not a pipe or a socket")));
    }
    Ok(())
}

// ---- the parent's side --------------------------------------------------------------------

/// Parses the frames of one child as bytes arrive, in any split.
#[derive(Default)]
pub struct Reader {
    header: [u8; HEADER],
    /// Bytes of `header` filled; the frame's body is being read once it is full.
    have: usize,
    /// Body bytes still to come in the current frame.
    left: usize,
    /// The body of an 'E' or 'S' frame, gathered whole.
    body: Vec<u8>,
    pub result: Vec<u8>,
    pub status: Option<i32>,
}

/// An event from a child: the topic, a NUL, then the payload (as `Record::Emit`).
pub struct ChildEvent {
    pub bytes: Box<[u8]>,
    pub topic_len: usize,
}

impl Reader {
    /// Consumes `data`; complete events are appended to `events`. Err: a protocol error.
    pub fn feed(&mut self, mut data: &[u8], events: &mut Vec<ChildEvent>) -> std::result::Result<(), String> {
        while !data.is_empty() {
            if self.have < HEADER {
                let n = (HEADER - self.have).min(data.len());
                self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
                self.have += n;
                data = &data[n..];
                if self.have == HEADER {
                    self.begin_frame()?;
                    if self.left == 0 {
                        self.end_frame(events)?;
                    }
                }
                continue;
            }
            let n = self.left.min(data.len());
            if self.header[4] == FRAME_RESULT {
                self.result.extend_from_slice(&data[..n]);
            } else {
                self.body.extend_from_slice(&data[..n]);
            }
            self.left -= n;
            data = &data[n..];
            if self.left == 0 {
                self.end_frame(events)?;
            }
        }
        Ok(())
    }

    fn begin_frame(&mut self) -> std::result::Result<(), String> {
        let len = u32::from_le_bytes([self.header[0], self.header[1], self.header[2], self.header[3]]) as usize;
        let kind = self.header[4];
        if self.status.is_some() {
            return Err(format!("a frame (kind {kind:#04x}) after the status frame"));
        }
        let ok = match kind {
            FRAME_RESULT => len <= MAX_BODY,
            FRAME_EVENT => (4..=MAX_BODY).contains(&len),
            FRAME_STATUS => len == 4,
            _ => return Err(format!("unknown frame kind {kind:#04x}")),
        };
        if !ok {
            return Err(format!("frame kind {:?} with a body of {len} bytes", kind as char));
        }
        self.left = len;
        self.body.clear();
        Ok(())
    }

    fn end_frame(&mut self, events: &mut Vec<ChildEvent>) -> std::result::Result<(), String> {
        self.have = 0;
        match self.header[4] {
            FRAME_STATUS => {
                self.status = Some(i32::from_le_bytes([self.body[0], self.body[1], self.body[2], self.body[3]]));
            }
            FRAME_EVENT => {
                let topic_len = u32::from_le_bytes([self.body[0], self.body[1], self.body[2], self.body[3]]) as usize;
                if topic_len > self.body.len() - 4 {
                    return Err(format!("an event whose topic ({topic_len} bytes) overruns its frame"));
                }
                let topic = std::str::from_utf8(&self.body[4..4 + topic_len])
                    .map_err(|_| "an event whose topic is not UTF-8".to_string())?;
                if topic.contains('\0') {
                    return Err("an event whose topic holds a NUL".to_string());
                }
                crate::bus::check_topic(topic).map_err(|e| e.message)?;
                // Topic, NUL, payload: the body with its length prefix replaced.
                let mut bytes = std::mem::take(&mut self.body);
                bytes.drain(..4);
                bytes.insert(topic_len, 0);
                events.push(ChildEvent { bytes: bytes.into_boxed_slice(), topic_len });
            }
            _ => {}
        }
        Ok(())
    }
}

// ---- system calls -------------------------------------------------------------------------

/// A pipe: (read end, non-blocking; write end, blocking), both close-on-exec.
pub fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-array of two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(Error::io("pipe2", io::Error::last_os_error()));
    }
    // SAFETY: two fresh descriptors we own.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    set_nonblocking(r.as_raw_fd());
    // A bigger pipe: fewer wake-ups for a large result (best effort; the default is 64 KiB).
    // SAFETY: plain fcntl on our descriptor.
    unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
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

/// A pidfd for `pid` (readable once it exits), or None where the kernel has none.
pub fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: the pidfd_open system call; the result is a fresh descriptor (close-on-exec
    // by default) or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a fresh descriptor we own.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

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

// ---- supervision ---------------------------------------------------------------------------

/// Where a supervised child is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Spawned, waiting for a free slot under its bound: not forked yet.
    Waiting,
    /// Being forked by the spawning thread right now.
    Forking,
    /// Forked (or adopted): the loop watches its pipe and its exit.
    Running,
}

/// A process task's child as its loop supervises it (the loop thread, under its lock).
pub struct Child {
    pub state: State,
    /// The most process tasks of its loop that may run while this one starts.
    pub max_children: usize,
    /// Counted among its loop's running children (forked by weft, not adopted).
    pub counted: bool,
    pub pid: i32,
    pub pipe: Option<OwnedFd>,
    pub pidfd: Option<OwnedFd>,
    pub exit: Option<Exit>,
    pub reader: Reader,
    /// A protocol error or a failed fork: the task ends with it.
    pub failure: Option<(Code, String)>,
    /// Set by cancel or timeout: the status `done` gets, whatever the child does.
    pub end: Option<i32>,
    /// The timeout's deadline (0: none), when SIGKILL follows SIGTERM (0: not asked).
    pub deadline_ns: u64,
    pub kill_at_ns: u64,
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
    pub fn new(max_children: usize, deadline_ns: u64) -> Child {
        Child {
            state: State::Waiting,
            max_children,
            counted: false,
            pid: 0,
            pipe: None,
            pidfd: None,
            exit: None,
            reader: Reader::default(),
            failure: None,
            end: None,
            deadline_ns,
            kill_at_ns: 0,
        }
    }

    /// Reads the pipe until it is empty, closed, or `budget` bytes were read (the rest
    /// then waits for the next pass). True when the pipe is done: end of file, or a
    /// protocol error; the caller takes it out of its epoll set, then closes it.
    pub fn read(&mut self, budget: usize, events: &mut Vec<ChildEvent>) -> bool {
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
    pub fn kill(&self, signal: i32) {
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

    /// Timer work: the timeout, the SIGKILL after the grace, and (without a pidfd) a
    /// look at whether the child exited.
    pub fn on_timer(&mut self, now_ns: u64) {
        if self.deadline_ns != 0 && now_ns >= self.deadline_ns {
            self.deadline_ns = 0;
            self.end_with(Code::Timeout as i32, now_ns); // task::TIMEOUT, named by its code: no import circle
        }
        if self.kill_at_ns != 0 && now_ns >= self.kill_at_ns {
            self.kill_at_ns = 0;
            self.kill(libc::SIGKILL);
        }
        if self.state == State::Running && self.pidfd.is_none() && self.exit.is_none() {
            self.exit = reap(self.pid, false);
        }
    }

    /// When the loop should next call [`Child::on_timer`] (None: no need).
    pub fn next_timer_ns(&self, now_ns: u64) -> Option<u64> {
        let poll = (self.state == State::Running && self.pidfd.is_none() && self.exit.is_none())
            .then_some(now_ns + POLL_EXIT_NS);
        [poll, (self.deadline_ns != 0).then_some(self.deadline_ns), (self.kill_at_ns != 0).then_some(self.kill_at_ns)]
            .into_iter()
            .flatten()
            .min()
    }

    /// True once the task can end: it never started and was cancelled or timed out, or
    /// the child was reaped and its pipe drained (the caller drains it after the exit).
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
        match (self.reader.status, self.exit) {
            (Some(status), _) => (status, std::mem::take(&mut self.reader.result), None),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> Vec<u8> {
        let mut out = Vec::new();
        let mut push = |kind: u8, body: &[u8]| {
            out.extend_from_slice(&(body.len() as u32).to_le_bytes());
            out.push(kind);
            out.extend_from_slice(body);
        };
        push(FRAME_RESULT, b"hello ");
        let mut ev = 3u32.to_le_bytes().to_vec();
        ev.extend_from_slice(b"a.bpayload");
        push(FRAME_EVENT, &ev);
        push(FRAME_RESULT, b"");
        push(FRAME_RESULT, b"world");
        push(FRAME_STATUS, &7i32.to_le_bytes());
        out
    }

    #[test]
    fn frames_parse_in_any_split() {
        let bytes = frames();
        for split in 1..bytes.len() {
            let mut reader = Reader::default();
            let mut events = Vec::new();
            for chunk in bytes.chunks(split) {
                reader.feed(chunk, &mut events).unwrap();
            }
            assert_eq!(reader.result, b"hello world");
            assert_eq!(reader.status, Some(7));
            assert_eq!(events.len(), 1);
            assert_eq!(&*events[0].bytes, b"a.b\0payload");
            assert_eq!(events[0].topic_len, 3);
        }
    }

    #[test]
    fn bad_frames_are_protocol_errors() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![1, 0, 0, 0, b'X', 0], "unknown"),
            (vec![3, 0, 0, 0, b'S', 0, 0, 0], "body of 3"),
            (vec![2, 0, 0, 0, b'E', 0, 0], "body of 2"),
            (vec![5, 0, 0, 0, b'E', 9, 0, 0, 0, b'x'], "overruns"),
            (vec![5, 0, 0, 0, b'E', 1, 0, 0, 0, b'*'], "must not contain"),
            (vec![6, 0, 0, 0, b'E', 1, 0, 0, 0, 0xff, 1], "UTF-8"),
            (vec![4, 0, 0, 0, b'S', 0, 0, 0, 0, 0, 0, 0, 0, b'W'], "after the status"),
            ((MAX_BODY as u32 + 1).to_le_bytes().iter().copied().chain([b'W']).collect(), "body of"),
        ];
        for (bytes, want) in cases {
            let err = Reader::default().feed(&bytes, &mut Vec::new()).unwrap_err();
            assert!(err.contains(want), "{bytes:?}: {err}");
        }
    }

    #[test]
    fn writes_reach_the_reader_through_a_pipe() {
        let (r, w) = pipe().unwrap();
        let big: Vec<u8> = (0..3 * MAX_BODY / 2).map(|i| i as u8).collect();
        let writer = std::thread::spawn({
            let big = big.clone();
            move || {
                send_result(w.as_raw_fd(), &big).unwrap();
                send_event(w.as_raw_fd(), "t", b"p").unwrap();
                drop(w);
            }
        });
        let mut reader = Reader::default();
        let mut events = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n == 0 {
                break;
            }
            if n < 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
                continue;
            }
            reader.feed(&buf[..n as usize], &mut events).unwrap();
        }
        writer.join().unwrap();
        assert!(reader.result == big);
        assert_eq!(events.len(), 1);
        assert_eq!(send_event(1, "bad*topic", b"").unwrap_err().code, Code::Invalid);
    }
}
