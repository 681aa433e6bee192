//! Waiting on polling's epoll instance with one `epoll_wait` (`weft_polling_epoll`:
//! Linux and Android, where polling's backend is epoll; the `weft-portable-epoll` build).
//!
//! polling's `Poller::wait` on epoll makes five system calls where one would do: it sets
//! its timerfd and re-arms it in the set (timerfd_settime, epoll_ctl) even when the wait
//! has no deadline, and after every wait it reads its notifier and re-arms it, one-shot
//! (read, epoll_ctl). A wait without a deadline, or with a zero timeout (every wait of a
//! busy loop) is made here instead, as one `epoll_wait` on the poller's descriptor (its
//! `AsRawFd`, the epoll instance):
//!
//! * members are added through polling in level mode (`Shared::mode`), with their key as
//!   the event's data (polling's epoll backend stores `key as u64`), so the events read
//!   are the events polling's wait would report; the readiness is read from the flags
//!   as polling reads them (`READ_FLAGS`, `WRITE_FLAGS`, HUP for its `is_interrupt`).
//! * polling's own wake-ups, its notifier (`Poller::notify`) and its timerfd, are
//!   reported under its reserved key `usize::MAX`. When one is among the events, the
//!   wait is made again through polling with a zero timeout: that clears the notifier
//!   and re-arms it (and its flag that lets the next `notify` write), disarms the timer,
//!   and reports every member still ready. The direct events are dropped: members are
//!   level-triggered and bells are drained only once reported, so the second wait
//!   reports them again and none is lost.
//! * a wait with a deadline (a timer is armed) waits its whole milliseconds here
//!   (`epoll_wait` has no finer timeout); when they pass with nothing reported, the rest
//!   (under a millisecond) goes through polling, whose timerfd keeps nanoseconds. A wake
//!   by an event before the deadline, the common case, is one system call; a wake by the
//!   timer costs one more than polling alone.
//!
//! polling allows one waiter at a time (its own waits `try_lock` a mutex); the loop
//! keeps to that without it (see `outer.rs`: the helper never waits while the loop
//! does), so bypassing that lock changes nothing.

use super::Event;
use crate::sys::{ERROR, HANGUP, READABLE, WRITABLE};
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// polling's key for its own wake-ups (`NOTIFY_KEY`, the notifier and the timerfd).
const POLLING_KEY: u64 = usize::MAX as u64;

/// The flags polling's epoll backend reports as readable, and as writable.
const READ_FLAGS: u32 = (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR | libc::EPOLLPRI) as u32;
const WRITE_FLAGS: u32 = (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32;

/// The buffer a direct wait fills.
pub(super) type Buffer = Vec<libc::epoll_event>;

/// `epoll_wait`'s timeout for a wait made directly: none (-1), zero (0), or the whole
/// milliseconds of a timeout of one or more (the rest, after a wait that reported
/// nothing, is polling's: its timerfd keeps nanoseconds). None for less than 1 ms.
#[inline]
pub(super) fn timeout_ms(timeout: Option<Duration>) -> Option<i32> {
    match timeout {
        None => Some(-1),
        Some(t) if t.is_zero() => Some(0),
        Some(t) if t >= Duration::from_millis(1) => Some(t.as_millis().min(i32::MAX as u128) as i32),
        Some(_) => None,
    }
}

/// One `epoll_wait` on `poller` into `buf`, its members' events appended to `out`.
/// False (`out` unchanged) when polling's own wake-ups were among them: the caller waits
/// again through polling, with a zero timeout.
#[inline]
pub(super) fn wait(
    poller: &polling::Poller,
    buf: &mut Buffer,
    timeout_ms: i32,
    out: &mut Vec<Event>,
) -> io::Result<bool> {
    buf.clear();
    let capacity = buf.capacity().min(i32::MAX as usize) as i32;
    // SAFETY: the kernel writes at most `capacity` events into `buf`'s storage; the
    // poller's descriptor is open while `poller` lives.
    let n = unsafe { libc::epoll_wait(poller.as_raw_fd(), buf.as_mut_ptr(), capacity, timeout_ms) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel initialised the first `n` events.
    unsafe { buf.set_len(n as usize) };
    let reported = out.len();
    for ev in buf.iter() {
        let (key, flags) = (ev.u64, ev.events);
        if key == POLLING_KEY {
            out.truncate(reported);
            return Ok(false);
        }
        out.push(Event { key, readiness: readiness(flags) });
    }
    Ok(true)
}

/// weft's readiness bits for an event's epoll flags, as polling's `Event` reads them.
#[inline]
fn readiness(flags: u32) -> u32 {
    let mut readiness = 0;
    if flags & READ_FLAGS != 0 {
        readiness |= READABLE;
    }
    if flags & WRITE_FLAGS != 0 {
        readiness |= WRITABLE;
    }
    if flags & libc::EPOLLHUP as u32 != 0 {
        readiness |= HANGUP;
    }
    if flags & libc::EPOLLERR as u32 != 0 {
        readiness |= ERROR;
    }
    readiness
}
