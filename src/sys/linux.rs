//! The Linux backend of the seam (see `sys/mod.rs`): epoll for the [`Poller`], an
//! eventfd for the [`Bell`], a timerfd for the [`TimerWake`], a pidfd for the
//! [`ChildWatch`], and the few other Linux-only calls weft makes. Every descriptor made
//! here is close-on-exec and is closed by `Drop` (it is an [`OwnedFd`]).
//!
//! weft calls epoll directly rather than through the `polling` crate: the loop needs its
//! epoll descriptor to be the one fd an embedding host watches (timers and the inbox are
//! members of the epoll set), and `polling`'s wait re-arms its own notifier and timer with
//! extra system calls on every pass, which the fd ping-pong benchmark pays for.

use super::unix::{check, is_readable, ChildWatch};
use super::{EDGE, ERROR, HANGUP, READABLE, WRITABLE};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::Acquire, Ordering::Release, Ordering::SeqCst};
use std::sync::{Mutex, MutexGuard};

/// The system calls as error messages name them (`"{call}: {error}"`).
pub mod call {
    pub const POLLER: &str = "epoll_create1";
    pub const POLLER_ADD: &str = "epoll_ctl";
    pub const WAIT: &str = "epoll_wait";
    pub const BELL: &str = "eventfd";
    pub const TIMER: &str = "timerfd_create";
    pub const PIPE: &str = "pipe2";
}

// ---- the poller: epoll ----------------------------------------------------------------

/// An epoll set. Interest maps to epoll's bits: `READABLE` to EPOLLIN, `WRITABLE` to
/// EPOLLOUT, `HANGUP` to EPOLLRDHUP, `EDGE` to EPOLLET.
pub struct Poller {
    fd: OwnedFd,
}

/// epoll's bits. Private: cbindgen reads every `pub const` of the crate for
/// include/weft.h, and writes a blank line for each one it cannot evaluate.
const EPOLLIN: u32 = libc::EPOLLIN as u32;
const EPOLLET: u32 = libc::EPOLLET as u32;
const EPOLLOUT: u32 = libc::EPOLLOUT as u32;
const EPOLLHUP: u32 = libc::EPOLLHUP as u32;
const EPOLLRDHUP: u32 = libc::EPOLLRDHUP as u32;
const EPOLLERR: u32 = libc::EPOLLERR as u32;

#[inline]
fn to_epoll(interest: u32) -> u32 {
    let mut events = 0;
    if interest & READABLE != 0 {
        events |= EPOLLIN;
    }
    if interest & WRITABLE != 0 {
        events |= EPOLLOUT;
    }
    if interest & HANGUP != 0 {
        events |= EPOLLRDHUP;
    }
    if interest & EDGE != 0 {
        events |= EPOLLET;
    }
    events
}

impl Poller {
    pub fn new() -> io::Result<Poller> {
        // SAFETY: plain system call; the result is a fresh descriptor we own.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Poller { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    #[inline]
    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, key: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: key };
        // SAFETY: `ev` lives across the call; the kernel validates `fd`.
        check(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) }).map(drop)
    }

    /// Adds `fd` with `interest`, reported under `key`. Fails when it is a member already,
    /// and with EPERM for a file that cannot be polled (a regular file, a directory).
    #[inline]
    pub fn add(&self, fd: RawFd, interest: u32, key: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, to_epoll(interest), key)
    }

    /// Changes the interest and key of `fd`, or adds it when it is not a member (one
    /// system call when it is).
    #[inline]
    pub fn set(&self, fd: RawFd, interest: u32, key: u64) -> io::Result<()> {
        let events = to_epoll(interest);
        match self.ctl(libc::EPOLL_CTL_MOD, fd, events, key) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => self.ctl(libc::EPOLL_CTL_ADD, fd, events, key),
            other => other,
        }
    }

    /// Removes `fd`. ENOENT means it is not a member; EBADF that the number is closed
    /// (epoll keeps a closed fd's file while another copy of it is open: only a new set
    /// is rid of it).
    #[inline]
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// Waits on the poller whose fd is `poller_fd` until something is ready (`block`),
    /// or only looks (not `block`), and fills `events` (up to its capacity); EINTR gives
    /// no events. (Takes a raw fd: the loop waits without its lock on an inner poller
    /// that it may replace.)
    #[inline]
    pub fn wait_fd(poller_fd: RawFd, events: &mut Events, block: bool) -> io::Result<()> {
        let events = &mut events.0;
        events.clear();
        let cap = events.capacity() as libc::c_int;
        // SAFETY: the kernel writes at most `cap` entries into the vector's spare capacity
        // (an `Event` is an `epoll_event`).
        let n = unsafe { libc::epoll_wait(poller_fd, events.as_mut_ptr().cast(), cap, if block { -1 } else { 0 }) };
        if n < 0 {
            let err = io::Error::last_os_error();
            return if err.kind() == io::ErrorKind::Interrupted { Ok(()) } else { Err(err) };
        }
        // SAFETY: the kernel initialised the first `n` entries.
        unsafe { events.set_len(n as usize) };
        Ok(())
    }
}

impl Poller {
    /// Adds the timer wake-up `timer`, reported under `key` once its deadline is due.
    pub fn add_timer(&self, timer: &TimerWake, key: u64) -> io::Result<()> {
        self.add(timer.as_raw_fd(), READABLE, key)
    }

    /// What a thread waits on this poller with, without borrowing it.
    pub fn waiter(&self) -> Waiter {
        Waiter(self.fd.as_raw_fd())
    }
}

/// A handle to wait on a poller ([`Poller::waiter`]): its descriptor here.
#[derive(Clone, Copy)]
pub struct Waiter(RawFd);

impl Waiter {
    /// Waits until something is ready (`block`), or only looks, and fills `events`; see
    /// [`Poller::wait_fd`].
    #[inline]
    pub fn wait(self, events: &mut Events, block: bool) -> io::Result<()> {
        Poller::wait_fd(self.0, events, block)
    }
}

/// The waiter of a loop's current inner poller, replaced on the loop thread and read
/// without its lock: an atomic descriptor number here.
pub struct WaitSlot(AtomicI32);

impl WaitSlot {
    pub fn new(waiter: Waiter) -> WaitSlot {
        WaitSlot(AtomicI32::new(waiter.0))
    }

    #[inline]
    pub fn load(&self) -> Waiter {
        Waiter(self.0.load(SeqCst))
    }

    pub fn store(&self, waiter: Waiter) {
        self.0.store(waiter.0, SeqCst);
    }
}

/// The descriptor an embedding host watches: an epoll set holding the loop's inner
/// poller (itself an epoll set, readable while a wait on it would report something).
///
/// The inner poller joins the set only when a host first asks for the fd: while it is a
/// member, every readiness change of a watched fd also runs the outer set's wake-up
/// callback inside the kernel (a nested epoll's cost), which a loop that no host
/// watches need not pay (fd_pingpong: about 4% of its time). Adding it later is exact:
/// the kernel looks at the member's readiness when it is added. `is_ready` looks at the
/// inner poller itself, nested or not.
pub struct Outer {
    poller: Poller,
    /// The inner poller's descriptor (replaced on the loop thread), and whether it is a
    /// member of `poller`: one lock for the rare changes and looks, so that a host's
    /// first `host_fd` and a replacement cannot cross.
    inner: Mutex<(RawFd, bool)>,
    /// The inner poller is a member (set once, under the lock): `host_fd`'s fast path.
    nested: AtomicBool,
}

impl Outer {
    /// The loop's `inner` poller, and its inbox bell (poll end, ring end; unused here).
    pub fn new(inner: &Poller, _bell: (RawFd, RawFd)) -> io::Result<Outer> {
        let poller = Poller::new()?;
        Ok(Outer { poller, inner: Mutex::new((inner.as_raw_fd(), false)), nested: AtomicBool::new(false) })
    }

    fn lock_inner(&self) -> MutexGuard<'_, (RawFd, bool)> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Holds `fresh` instead of `old` (the loop replaced its inner poller; it closes
    /// `old` after this call).
    pub fn replace(&self, old: &Poller, fresh: &Poller) -> io::Result<()> {
        let mut inner = self.lock_inner();
        if inner.1 {
            self.poller.add(fresh.as_raw_fd(), READABLE, 0)?;
            let _ = self.poller.delete(old.as_raw_fd());
        }
        inner.0 = fresh.as_raw_fd();
        Ok(())
    }

    /// True when a pass would find something to do now.
    #[inline]
    pub fn is_ready(&self) -> bool {
        // Under the lock: the loop thread may be replacing (and closing) the inner set.
        is_readable(self.lock_inner().0)
    }

    /// The host's fd; from the first call on, the inner poller is a member of it.
    pub fn host_fd(&self) -> io::Result<RawFd> {
        if !self.nested.load(Acquire) {
            let mut inner = self.lock_inner();
            if !inner.1 {
                self.poller.add(inner.0, READABLE, 0)?;
                inner.1 = true;
                self.nested.store(true, Release);
            }
        }
        Ok(self.poller.as_raw_fd())
    }

    /// A thread starts running the loop (nothing to do here: the kernel keeps the set).
    #[inline]
    pub fn enter(&self) {}

    /// The thread leaves the loop.
    #[inline]
    pub fn leave(&self) {}

    /// The loop is closing (before its bells are closed).
    #[inline]
    pub fn shut_down(&self) {}
}

impl AsRawFd for Outer {
    fn as_raw_fd(&self) -> RawFd {
        self.poller.as_raw_fd()
    }
}

/// The poller's own descriptor: readable when a wait on it would report something.
impl AsRawFd for Poller {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A reusable buffer of reported events; a wait fills it up to its capacity.
pub struct Events(Vec<Event>);

impl Events {
    pub fn with_capacity(capacity: usize) -> Events {
        Events(Vec::with_capacity(capacity))
    }

    /// Nothing to defer here: an eventfd bell is edge-triggered, never drained.
    pub fn deferring_bells(self) -> Events {
        self
    }

    /// Nothing to drain (see `deferring_bells`).
    #[inline]
    pub fn drain_bells(&mut self) {}

    #[inline]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    #[inline]
    pub fn iter(&self) -> std::slice::Iter<'_, Event> {
        self.0.iter()
    }
}

/// One reported event: the key its fd was added with, and its readiness.
#[repr(transparent)]
pub struct Event(libc::epoll_event);

impl Event {
    #[inline]
    pub fn key(&self) -> u64 {
        self.0.u64
    }

    /// Readiness in weft's bits: `READABLE` (EPOLLIN, EPOLLPRI), `WRITABLE`, `HANGUP`
    /// (EPOLLHUP, EPOLLRDHUP) and `ERROR`.
    #[inline]
    pub fn readiness(&self) -> u32 {
        from_epoll(self.0.events)
    }
}

#[inline]
fn from_epoll(events: u32) -> u32 {
    let mut bits = 0;
    if events & (EPOLLIN | libc::EPOLLPRI as u32) != 0 {
        bits |= READABLE;
    }
    if events & EPOLLOUT != 0 {
        bits |= WRITABLE;
    }
    if events & (EPOLLHUP | EPOLLRDHUP) != 0 {
        bits |= HANGUP;
    }
    if events & EPOLLERR != 0 {
        bits |= ERROR;
    }
    bits
}

// ---- wake-up sources ------------------------------------------------------------------

/// An eventfd used as a doorbell: one descriptor, both polled and rung. [`ring`] it
/// from any thread or a signal handler. In a poller with `EDGE`, each ring wakes one
/// wait and it need never be drained (its counter would take 2^64 rings to fill);
/// level-triggered, it stays readable until [`drain`](Self::drain)ed.
pub struct Bell {
    fd: OwnedFd,
}

impl Bell {
    pub fn new() -> io::Result<Bell> {
        // SAFETY: plain system call; the result is a fresh descriptor we own.
        let fd = check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        Ok(Bell { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// The descriptor [`ring`] writes to (the bell's only one).
    pub fn ring_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Silences the bell (reads its counter). One system call.
    #[inline]
    pub fn drain(&self) {
        let mut value = 0u64;
        // SAFETY: reads 8 bytes into `value`; EAGAIN (nothing to drain) is fine.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
    }
}

/// Rings the bell whose descriptor is `bell` (a [`Bell`]'s `as_raw_fd`): one system
/// call. Async-signal-safe: the signal handler calls it. The caller makes sure the
/// number still names the bell (see `crate::inbox` and `crate::signal`).
#[inline]
pub fn ring(bell: RawFd) {
    let one = 1u64;
    // SAFETY: writes 8 bytes from `one`. EAGAIN means the counter is already non-zero.
    unsafe { libc::write(bell, (&one as *const u64).cast(), 8) };
}

impl AsRawFd for Bell {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A timerfd on CLOCK_MONOTONIC, armed with absolute deadlines: readable from the
/// deadline on until [`drain`](Self::drain)ed or re-armed.
pub struct TimerWake {
    fd: OwnedFd,
}

impl TimerWake {
    pub fn new() -> io::Result<TimerWake> {
        // SAFETY: plain system call; the result is a fresh descriptor we own.
        let fd = check(unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC | libc::TFD_NONBLOCK) })?;
        Ok(TimerWake { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Arms the timer to expire at `deadline_ns` on the clock of [`now_ns`], or disarms
    /// it (None). One system call.
    #[inline]
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

    /// Silences an expired timer. One system call.
    #[inline]
    pub fn drain(&self) {
        let mut expirations = 0u64;
        // SAFETY: reads 8 bytes into `expirations`; EAGAIN (not expired) is fine.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut expirations as *mut u64).cast(), 8) };
    }
}

impl AsRawFd for TimerWake {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The child watch ([`ChildWatch`]) here is a pidfd: readable once its child has exited
/// (it does not reap it).
impl ChildWatch {
    /// A watch of the child `pid`, or None where the kernel has no pidfd (Linux before
    /// 5.3): then the caller polls with `waitpid(WNOHANG)`.
    pub fn new(pid: i32) -> Option<ChildWatch> {
        // SAFETY: the pidfd_open system call; the result is a fresh descriptor (close-on-exec
        // by default) or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        // SAFETY: a fresh descriptor we own.
        (fd >= 0).then(|| ChildWatch::from_fd(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_maps_epoll_bits() {
        assert_eq!(from_epoll((libc::EPOLLIN | libc::EPOLLHUP) as u32), READABLE | HANGUP);
        assert_eq!(from_epoll((libc::EPOLLOUT | libc::EPOLLERR) as u32), WRITABLE | ERROR);
        assert_eq!(to_epoll(READABLE | HANGUP | EDGE), (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32);
    }
}
