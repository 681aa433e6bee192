//! Thin, safe wrappers over the Linux system calls the loop is built on: epoll, eventfd,
//! timerfd and the monotonic clock. Every descriptor made here is close-on-exec and is
//! closed by `Drop` (it is an [`OwnedFd`]).
//!
//! weft calls epoll directly rather than through the `polling` crate: the loop needs its
//! epoll descriptor to be the one fd an embedding host watches (timers and the inbox are
//! members of the epoll set), and `polling`'s wait re-arms its own notifier and timer with
//! extra system calls on every pass, which the fd ping-pong benchmark pays for.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The result of a system call that returns -1 on failure.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Nanoseconds of CLOCK_MONOTONIC. Timers are measured on this clock.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// True when `fd` names an open descriptor of this process.
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor flags; a closed fd gives EBADF.
    fd >= 0 && unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0
}

/// An epoll instance.
pub struct Epoll {
    fd: OwnedFd,
}

/// Readiness bits as epoll reports them.
pub const EPOLLIN: u32 = libc::EPOLLIN as u32;
pub const EPOLLET: u32 = libc::EPOLLET as u32;
pub const EPOLLOUT: u32 = libc::EPOLLOUT as u32;
pub const EPOLLHUP: u32 = libc::EPOLLHUP as u32;
pub const EPOLLRDHUP: u32 = libc::EPOLLRDHUP as u32;
pub const EPOLLERR: u32 = libc::EPOLLERR as u32;

pub type EpollEvent = libc::epoll_event;

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain system call; the result is a fresh descriptor we own.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Epoll { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, key: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: key };
        // SAFETY: `ev` lives across the call; the kernel validates `fd`.
        check(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) }).map(drop)
    }

    /// Adds `fd`, or changes its interest when it is already a member.
    pub fn set(&self, fd: RawFd, events: u32, key: u64) -> io::Result<()> {
        match self.ctl(libc::EPOLL_CTL_MOD, fd, events, key) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => self.ctl(libc::EPOLL_CTL_ADD, fd, events, key),
            other => other,
        }
    }

    pub fn add(&self, fd: RawFd, events: u32, key: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, key)
    }

    /// Removes `fd`. ENOENT means it is not a member (closed with no other copy open).
    pub fn remove(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }
}

/// Waits on the epoll set `epfd` up to `timeout_ms` (-1: forever) and fills `events`;
/// EINTR gives no events. (Takes a raw fd: the loop's inner set can be replaced.)
pub fn epoll_wait(epfd: RawFd, events: &mut Vec<EpollEvent>, timeout_ms: i32) -> io::Result<()> {
    events.clear();
    let cap = events.capacity() as libc::c_int;
    // SAFETY: the kernel writes at most `cap` entries into the vector's spare capacity.
    let n = unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), cap, timeout_ms) };
    if n < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::Interrupted { Ok(()) } else { Err(err) };
    }
    // SAFETY: the kernel initialised the first `n` entries.
    unsafe { events.set_len(n as usize) };
    Ok(())
}

impl AsRawFd for Epoll {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// An eventfd used as a doorbell: `ring` from any thread (or a signal handler), `drain`
/// on the loop thread.
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: plain system call; the result is a fresh descriptor we own.
        let fd = check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        Ok(EventFd { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    pub fn drain(&self) {
        drain_fd(self.fd.as_raw_fd());
    }
}

/// Resets an eventfd's counter (reads it).
pub fn drain_fd(fd: RawFd) {
    let mut value = 0u64;
    // SAFETY: reads 8 bytes into `value`; EAGAIN (nothing to drain) is fine.
    unsafe { libc::read(fd, (&mut value as *mut u64).cast(), 8) };
}

/// Adds one to an eventfd. Async-signal-safe: the signal handler calls it.
pub fn ring_fd(fd: RawFd) {
    let one = 1u64;
    // SAFETY: writes 8 bytes from `one`. EAGAIN means the counter is already non-zero.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A timerfd on CLOCK_MONOTONIC, armed with absolute deadlines.
pub struct TimerFd {
    fd: OwnedFd,
}

impl TimerFd {
    pub fn new() -> io::Result<TimerFd> {
        // SAFETY: plain system call; the result is a fresh descriptor we own.
        let fd = check(unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC | libc::TFD_NONBLOCK) })?;
        Ok(TimerFd { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Arms the timer to expire at `deadline_ns` on CLOCK_MONOTONIC, or disarms it (None).
    pub fn arm(&self, deadline_ns: Option<u64>) {
        let mut spec: libc::itimerspec = unsafe { std::mem::zeroed() };
        if let Some(ns) = deadline_ns {
            // A zero it_value disarms, so the earliest deadline we ask for is 1 ns.
            let ns = ns.max(1);
            spec.it_value.tv_sec = (ns / 1_000_000_000) as libc::time_t;
            spec.it_value.tv_nsec = (ns % 1_000_000_000) as libc::c_long;
        }
        // SAFETY: `spec` is a valid itimerspec; the old value is not wanted.
        unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), libc::TFD_TIMER_ABSTIME, &spec, std::ptr::null_mut()) };
    }

    pub fn drain(&self) {
        let mut expirations = 0u64;
        // SAFETY: reads 8 bytes into `expirations`; EAGAIN (not expired) is fine.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut expirations as *mut u64).cast(), 8) };
    }
}

impl AsRawFd for TimerFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Polls a single descriptor for readability without blocking.
pub fn is_readable(fd: RawFd) -> bool {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, zero timeout.
    unsafe { libc::poll(&mut pfd, 1, 0) > 0 && pfd.revents & libc::POLLIN != 0 }
}
