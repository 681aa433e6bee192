//! The portable backend's bell ([`Bell`]): an eventfd on Linux and Android, a pipe
//! elsewhere, and when the loop drains it.
//!
//! The poller reports a bell level-triggered, so it must be drained before the next
//! wait, or that wait returns at once. Where a pass waits for a post, the ring and the
//! drain were on the wake-up's path (wakeup_latency: the post, the ring, the wait's
//! return, the drain, the callback): an eventfd's ring and drain are the cheaper (a
//! write or read of its 8-byte counter under a spinlock, where a pipe's take its mutex
//! and copy through a page: about 0.35 against 0.5 us each here), and the loop's waits
//! leave the bell to the end of the pass.
//!
//! # When the loop's bell is drained
//!
//! The loop's [`Events`](super::Events) are made with `deferring_bells`: a wait that
//! reports a bell leaves it rung, and the pass drains it (`Events::drain_bells`) once
//! its records ran, before its next wait. Other waits (the host fd's helper,
//! `has_work`) drain at once, as do pollers with one-shot members (event ports, whose
//! re-arming would report a bell still rung). A later drain can eat a later ring: one
//! made after the wait returned and before the drain. None is lost:
//!
//! * a producer's ring for a record: the pass's next doze (after the drain) looks at
//!   the queue before it waits (the inbox protocol), and finds the record;
//! * `Inbox::wake` (a stop, a cancel that leaves nothing alive): its flag is set
//!   before the ring, and `run_passes` reads it (`stop`, `alive`) after the pass;
//! * the host fd's helper ring (only while no thread runs the loop, see `outer.rs`):
//!   for members that are level-triggered, which the next wait reports again.
//!
//! The drain's read and the ring's write meet in the kernel (the bell's lock), so a
//! flag stored before an eaten ring is seen by a load after the drain. A pass that
//! ends early (an error) leaves the bell rung: the next wait returns at once, no more.
//!
//! Either way one descriptor number is polled ([`Bell::as_raw_fd`]: the host's fd of
//! `outer.rs` where no poller is pollable) and one is rung ([`Bell::ring_fd`]): the
//! same eventfd, or the pipe's two ends. Both are non-blocking: a ring that finds the
//! pipe full (or the counter at its maximum, 2^64 - 2 rings) finds the bell rung.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// A doorbell: [`ring`] rings it (from any thread or a signal handler),
/// [`drain`](Self::drain) silences it.
pub struct Bell {
    /// The eventfd, or the pipe's read end.
    poll: OwnedFd,
    /// The pipe's write end (the eventfd rings itself).
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    write: OwnedFd,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl Bell {
    pub fn new() -> io::Result<Bell> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain system call; the result is a fresh descriptor we own.
        let fd = crate::sys::unix::check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: as above.
        Ok(Bell { poll: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// The descriptor [`ring`] writes to.
    pub fn ring_fd(&self) -> RawFd {
        self.poll.as_raw_fd()
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
impl Bell {
    pub fn new() -> io::Result<Bell> {
        let (read, write) = crate::sys::unix::pipe()?;
        set_nonblocking(read.as_raw_fd())?;
        set_nonblocking(write.as_raw_fd())?;
        Ok(Bell { poll: read, write })
    }

    /// The descriptor [`ring`] writes to.
    pub fn ring_fd(&self) -> RawFd {
        self.write.as_raw_fd()
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    use crate::sys::unix::check;
    // SAFETY: plain fcntl calls on our own descriptor.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) }).map(drop)
}

impl Bell {
    /// Silences the bell (reads everything rung).
    pub fn drain(&self) {
        drain_fd(self.poll.as_raw_fd());
    }
}

/// Silences the bell whose polled descriptor is `fd`: reads the eventfd's counter (one
/// system call), or the pipe until it is empty.
pub(super) fn drain_fd(fd: RawFd) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let mut count = 0u64;
        // SAFETY: reads 8 bytes into `count`; EAGAIN (not rung) is fine.
        unsafe { libc::read(fd, (&mut count as *mut u64).cast(), 8) };
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let mut buf = [0u8; 256];
        // SAFETY: reads into our buffer until the pipe is empty (EAGAIN) or closed.
        while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } == buf.len() as isize {}
    }
}

/// Rings the bell whose ring descriptor is `bell` (a [`Bell`]'s `ring_fd`): one system
/// call, async-signal-safe. A full pipe or counter (EAGAIN) is rung already.
#[inline]
pub fn ring(bell: RawFd) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let one = 1u64;
        // SAFETY: writes 8 bytes from `one`.
        unsafe { libc::write(bell, (&one as *const u64).cast(), 8) };
    }
    // SAFETY: writes one byte from a static.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    unsafe {
        libc::write(bell, b"!".as_ptr().cast(), 1)
    };
}

/// The bell's descriptor as a poller sees it: the eventfd, or the pipe's read end.
impl AsRawFd for Bell {
    fn as_raw_fd(&self) -> RawFd {
        self.poll.as_raw_fd()
    }
}

impl super::Shared {
    /// Drains the bells among the reported events `out`.
    pub(super) fn drain_bells(&self, out: &[super::Event]) {
        // Under the lock: a member is not removed (and its fd closed) meanwhile.
        let drained = super::lock(&self.drained);
        for ev in out.iter() {
            // No readiness: the fd may be closed (and its number reused): no read.
            if ev.readiness != 0 {
                if let Some(&(_, fd)) = drained.iter().find(|&&(key, _)| key as u64 == ev.key) {
                    drain_fd(fd);
                }
            }
        }
    }
}
