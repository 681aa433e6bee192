//! The POSIX calls both backends share: the clock, descriptor queries, pipes and socket
//! pairs for process tasks, errno, thread names and the real-time signal range. Where a
//! platform differs, the difference is a `cfg` here, a line or two each (listed in
//! `sys/mod.rs`'s comment).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The result of a system call that returns -1 on failure.
#[inline]
pub(super) fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Nanoseconds of CLOCK_MONOTONIC. Timers are measured on this clock.
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// True when `fd` names an open descriptor of this process.
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor flags; a closed fd gives EBADF.
    fd >= 0 && unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0
}

/// Polls a single descriptor for readability without blocking (unused by the poll(2)
/// backend, whose host fd is looked at through its poller).
#[allow(dead_code)]
pub fn is_readable(fd: RawFd) -> bool {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, zero timeout.
    unsafe { libc::poll(&mut pfd, 1, 0) > 0 && pfd.revents & libc::POLLIN != 0 }
}

/// Sets close-on-exec (where the descriptor could not be made with it).
#[cfg(target_vendor = "apple")]
fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain fcntl on our own descriptor.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) }).map(drop)
}

/// Two fresh descriptors from `fds`, owned.
fn owned_pair(fds: [RawFd; 2]) -> (OwnedFd, OwnedFd) {
    // SAFETY: two fresh descriptors we own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// A pipe, both ends close-on-exec and blocking: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-array of two descriptors.
    #[cfg(not(target_vendor = "apple"))]
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: as above. macOS has no pipe2: close-on-exec by fcntl (another thread's
    // fork+exec in between would inherit the pipe; weft's own forks do not exec).
    #[cfg(target_vendor = "apple")]
    check(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
    let pair = owned_pair(fds);
    #[cfg(target_vendor = "apple")]
    {
        set_cloexec(fds[0])?;
        set_cloexec(fds[1])?;
    }
    Ok(pair)
}

/// A connected pair of stream sockets (AF_UNIX), both close-on-exec and blocking, that
/// never raise SIGPIPE (see [`send_all`]).
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    #[cfg(not(target_vendor = "apple"))]
    let kind = libc::SOCK_STREAM | libc::SOCK_CLOEXEC;
    #[cfg(target_vendor = "apple")]
    let kind = libc::SOCK_STREAM;
    // SAFETY: `fds` is a valid out-array of two descriptors.
    check(unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()) })?;
    let pair = owned_pair(fds);
    #[cfg(target_vendor = "apple")]
    for fd in fds {
        set_cloexec(fd)?;
        let on: libc::c_int = 1;
        // SAFETY: sets an int option from a valid pointer and size.
        check(unsafe {
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_NOSIGPIPE, (&on as *const libc::c_int).cast(), 4)
        })?;
    }
    Ok(pair)
}

/// Sends all of `bytes` on a socket of [`socketpair`], without SIGPIPE when the peer is
/// gone (an error then). Blocks if the socket is full.
pub fn send_all(fd: RawFd, mut bytes: &[u8]) -> io::Result<()> {
    #[cfg(not(target_vendor = "apple"))]
    let flags = libc::MSG_NOSIGNAL;
    #[cfg(target_vendor = "apple")]
    let flags = 0; // SO_NOSIGPIPE, set by socketpair
    while !bytes.is_empty() {
        // SAFETY: sends from the caller's slice.
        let n = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), flags) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(err);
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// Asks for a pipe's buffer to hold `bytes` (best effort: the default is 64 KiB; only
/// Linux can be asked).
pub fn grow_pipe(fd: RawFd, bytes: usize) {
    #[cfg(target_os = "linux")]
    // SAFETY: plain fcntl on the caller's descriptor.
    unsafe {
        libc::fcntl(fd, libc::F_SETPIPE_SZ, bytes as libc::c_int)
    };
    #[cfg(not(target_os = "linux"))]
    let _ = (fd, bytes);
}

/// Names the calling thread (as `ps` and debuggers show it; Linux keeps 15 bytes).
pub fn name_this_thread(name: &std::ffi::CStr) {
    // SAFETY (all): names the calling thread with a NUL-terminated string.
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd", target_os = "illumos"))]
    unsafe {
        libc::pthread_setname_np(libc::pthread_self(), name.as_ptr())
    };
    // macOS names only the calling thread.
    #[cfg(target_vendor = "apple")]
    unsafe {
        libc::pthread_setname_np(name.as_ptr())
    };
    // NetBSD takes a printf format and its argument.
    #[cfg(target_os = "netbsd")]
    unsafe {
        libc::pthread_setname_np(libc::pthread_self(), c"%s".as_ptr(), name.as_ptr() as *mut libc::c_void)
    };
    #[cfg(any(target_os = "openbsd", target_os = "dragonfly"))]
    unsafe {
        libc::pthread_set_name_np(libc::pthread_self(), name.as_ptr())
    };
}

/// The calling thread's errno location.
#[inline]
fn errno_location() -> *mut libc::c_int {
    // SAFETY: errno is thread-local; these return this thread's.
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "dragonfly"))]
    return unsafe { libc::__errno_location() };
    #[cfg(any(target_vendor = "apple", target_os = "freebsd"))]
    return unsafe { libc::__error() };
    #[cfg(any(target_os = "netbsd", target_os = "openbsd"))]
    return unsafe { libc::__errno() };
    #[cfg(any(target_os = "illumos", target_os = "solaris"))]
    return unsafe { libc::___errno() };
}

/// The calling thread's errno (a signal handler saves and restores it).
#[inline]
pub fn errno() -> i32 {
    // SAFETY: this thread's errno.
    unsafe { *errno_location() }
}

#[inline]
pub fn set_errno(value: i32) {
    // SAFETY: this thread's errno.
    unsafe { *errno_location() = value };
}

/// The first real-time signal: the C library keeps those below it (and above the
/// classic ones) for its own threads. Where there are none, the first signal past the
/// classic 31 (nothing is kept).
pub fn first_realtime_signal() -> i32 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    return libc::SIGRTMIN();
    // FreeBSD: 32 (SIGTHR) and 33 (SIGLIBRT) are libthr's and librt's; SIGRTMIN is 65.
    #[cfg(target_os = "freebsd")]
    return 65;
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    return 32;
}

/// A descriptor readable once a child has exited (it does not reap it): what it is, and
/// `ChildWatch::new(pid)`, is the backend's.
pub struct ChildWatch {
    fd: OwnedFd,
}

impl ChildWatch {
    // Unused where the backend cannot watch a child's exit (poll(2), event ports).
    #[allow(dead_code)]
    pub(super) fn from_fd(fd: OwnedFd) -> ChildWatch {
        ChildWatch { fd }
    }
}

impl AsRawFd for ChildWatch {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Its descriptor, for whoever takes it out of a poller and then closes it.
impl From<ChildWatch> for OwnedFd {
    fn from(watch: ChildWatch) -> OwnedFd {
        watch.fd
    }
}
