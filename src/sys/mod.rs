//! The platform seam: what the loop needs from the operating system, behind one small
//! interface, with the code of one backend selected at build time.
//!
//! The seam owns the descriptors the loop is woken by and the system calls on them.
//! What each item guarantees, whatever the backend:
//!
//! * [`Poller`]: a set of descriptors, each with an interest and a 64-bit key
//!   (`add`, `set` = modify or add, `delete`); `Poller::wait_fd` fills a reusable
//!   [`Events`] buffer (each event: its key and readiness), blocking or not, and an
//!   interrupted wait reports nothing. A poller is itself a descriptor that is readable
//!   while a wait would report something, so pollers nest: the loop's outer poller (the
//!   fd an embedding host watches) holds its inner one.
//! * [`Bell`]: one descriptor, polled and rung ([`ring`]: from any thread or a signal
//!   handler, one system call). Added with [`EDGE`], each ring wakes one wait and the
//!   bell need never be drained (the inbox relies on it); level-triggered, it stays
//!   readable until drained.
//! * [`TimerWake`]: a descriptor readable from an absolute deadline on the clock of
//!   [`now_ns`] (CLOCK_MONOTONIC) until drained or re-armed; arming and disarming are
//!   one system call each.
//! * [`ChildWatch`]: a descriptor readable once a child has exited (it does not reap
//!   it), or None where the kernel has none: the loop then polls `waitpid(WNOHANG)`.
//! * readiness and interest bits ([`READABLE`], [`WRITABLE`], [`HANGUP`], [`ERROR`],
//!   [`EDGE`]) are weft's own (the C API's `WEFT_*` values); the backend maps them.
//! * the monotonic clock, a pipe and a socket pair for process tasks, errno, and small
//!   descriptor queries.
//!
//! Every wake-up source is a descriptor in the inner poller like any other (or, for the
//! timer where there is no timer descriptor, the waits' deadline), so the loop keeps one
//! fd for an embedding host whatever the backend.
//!
//! The types are concrete and chosen by `cfg` (no trait objects, no boxing): a pass of
//! the loop (a wait, reading its events, re-arming the timer) makes the same system
//! calls and inlines as if it called the kernel directly. Besides the poller, the loop
//! waits with a [`Waiter`] (kept in a `WaitSlot`, so it waits without its lock), adds
//! its timer with `Poller::add_timer`, and gives an embedding host an [`Outer`], which
//! it enters and leaves around `run`.
//!
//! # Backends
//!
//! * `linux.rs` (the default on Linux): epoll, eventfd, timerfd, pidfd.
//! * `portable/` (every other platform, and Linux with the `portable` feature): the
//!   `polling` crate (kqueue, event ports, poll(2)), eventfds (Linux) or pipes as bells,
//!   a kqueue timer filter or a deadline the waits honour, a kqueue process filter or
//!   `waitpid` polling, and a helper thread for the host's fd where no poller fd turns
//!   readable by itself.
//! * `unix.rs`: the POSIX calls both share.
//!
//! # Code no test here runs
//!
//! `make test` runs every suite against both backends on Linux (the portable one with
//! poll(2)) and checks the macOS, FreeBSD, NetBSD and illumos builds with clippy, but
//! these lines run on no machine here:
//!
//! * `portable/`, the `weft_kqueue` code (macOS and the BSDs): the timer filter and its
//!   re-arming (`wake.rs`), the EVFILT_PROC child watch (`wake.rs`), the nested-kqueue
//!   `Outer` (`outer.rs`); and the one-shot re-arming of members where the poller has
//!   no level mode (event ports, illumos: `Shared::rearm_member` in `mod.rs`).
//! * `unix.rs`, the lines under a `target_os`/`target_vendor` other than Linux: pipe and
//!   socketpair made close-on-exec by fcntl and SO_NOSIGPIPE (macOS), the thread-name
//!   calls of macOS, NetBSD, OpenBSD and DragonFly, the errno locations of the BSDs and
//!   illumos, FreeBSD's first real-time signal (65).
//!
//! Known differences there: on kqueue a peer's hang-up is reported as readable, not as
//! HANGUP (polling reports EOF that way); on poll(2) a watched fd closed and reopened
//! under the same number before the loop next waits is polled under the old watch
//! (epoll drops the old file; poll(2) only has numbers).

// The backend: Linux's own (epoll, eventfd, timerfd, pidfd), or the portable one on
// `polling` (kqueue, event ports, poll(2)), which every other platform gets and Linux
// gets with the `portable` feature.
#[cfg(all(target_os = "linux", not(feature = "portable")))]
mod linux;
#[cfg(all(target_os = "linux", not(feature = "portable")))]
use linux as backend;
#[cfg(any(feature = "portable", not(target_os = "linux")))]
mod portable;
#[cfg(any(feature = "portable", not(target_os = "linux")))]
use portable as backend;
mod unix;

pub use backend::{call, ring, Bell, Events, Outer, Poller, TimerWake, WaitSlot};
pub use unix::{
    close_fds_above_stderr_except, coarse_now_ns, coarse_resolution_ns, errno, fd_is_open, first_realtime_signal,
    grow_pipe, name_this_thread, now_ns, pipe, send_all, set_errno, socketpair, thread_id, ticks, ticks_are_steady,
    ChildWatch,
};

/// Interest and readiness: the fd can be read without blocking (or is at its end).
pub(crate) const READABLE: u32 = 1;
/// Interest and readiness: the fd can be written without blocking.
pub(crate) const WRITABLE: u32 = 2;
/// Readiness: the peer hung up (always reported). As interest, with `READABLE`: also
/// report a stream socket's peer shutting down its writing half.
pub(crate) const HANGUP: u32 = 4;
/// Readiness: an error is pending on the fd (always reported).
pub(crate) const ERROR: u32 = 8;
/// Interest only: edge-triggered, each change of readiness is reported once, and the
/// descriptor need not be drained (the inbox's bell, see `crate::inbox`). Without it,
/// interest is level-triggered: reported by every wait while it holds.
pub(crate) const EDGE: u32 = 16;
