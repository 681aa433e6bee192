//! The portable backend's wake-up sources besides the bell (`bell.rs`): the timer
//! wake-up (a kqueue `Timer` filter, or a deadline the poller's waits honour) and the
//! child watch (a small kqueue with an EVFILT_PROC filter, or none).

use super::{lock, Event, Shared, NEVER};
use crate::sys::unix::{now_ns, ChildWatch};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Weak};

/// The timer wake-up: armed with absolute deadlines on the clock of `now_ns`, reported
/// under its key by the poller it was added to (`Poller::add_timer`) from the deadline on,
/// until drained or re-armed.
pub struct TimerWake {
    deadline: Arc<AtomicU64>,
    /// The poller it is in (the loop's current inner poller) and its key there.
    target: Mutex<(Weak<Shared>, u64)>,
}

/// The kqueue filter's identifier (one timer per poller).
#[cfg(weft_kqueue)]
const TIMER_ID: usize = 1;
/// A disarmed kqueue timer fires in a year (re-armed long before).
#[cfg(weft_kqueue)]
const FAR: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

impl TimerWake {
    pub fn new() -> io::Result<TimerWake> {
        Ok(TimerWake { deadline: Arc::new(AtomicU64::new(NEVER)), target: Mutex::new((Weak::new(), 0)) })
    }

    /// Makes `shared` report this timer under `key` (see `Poller::add_timer`).
    pub(super) fn attach(&self, shared: &Arc<Shared>, key: u64) -> io::Result<()> {
        shared.set_timer(self.deadline.clone(), key);
        *lock(&self.target) = (Arc::downgrade(shared), key);
        #[cfg(weft_kqueue)]
        {
            use polling::os::kqueue::{PollerKqueueExt, Timer};
            let timer = Timer { id: TIMER_ID, timeout: FAR };
            shared.poller().add_filter(timer, key as usize, polling::PollMode::Oneshot)?;
            self.arm_filter(shared, key, self.deadline.load(SeqCst));
        }
        Ok(())
    }

    /// Arms the timer to be due at `deadline_ns`, or disarms it (None).
    pub fn arm(&self, deadline_ns: Option<u64>) {
        let deadline = deadline_ns.unwrap_or(NEVER);
        self.deadline.store(deadline, SeqCst);
        let (target, _key) = &*lock(&self.target);
        let Some(shared) = target.upgrade() else { return };
        #[cfg(weft_kqueue)]
        self.arm_filter(&shared, *_key, deadline);
        #[cfg(not(weft_kqueue))]
        shared.interrupt_wait();
    }

    #[cfg(weft_kqueue)]
    fn arm_filter(&self, shared: &Shared, key: u64, deadline: u64) {
        use polling::os::kqueue::{PollerKqueueExt, Timer};
        // Whole milliseconds, rounded up: kqueue timers are kept in ms or less precisely
        // (a sub-millisecond part can be dropped, firing early), and never early is the
        // promise.
        let timeout = match deadline {
            NEVER => FAR,
            at => std::time::Duration::from_millis(at.saturating_sub(now_ns()).div_ceil(1_000_000).max(1)),
        };
        let timer = Timer { id: TIMER_ID, timeout };
        let _ = shared.poller().modify_filter(timer, key as usize, polling::PollMode::Oneshot);
    }

    /// Silences a due timer (until re-armed). A kqueue timer that fired before the
    /// deadline (the kernel's clock is not quite ours) is armed again for the rest.
    pub fn drain(&self) {
        #[cfg(weft_kqueue)]
        {
            let at = self.deadline.load(SeqCst);
            if at != NEVER && at > now_ns() {
                let (target, key) = &*lock(&self.target);
                if let Some(shared) = target.upgrade() {
                    self.arm_filter(&shared, *key, at);
                }
            }
        }
        #[cfg(not(weft_kqueue))]
        {
            let at = self.deadline.load(SeqCst);
            if at != NEVER && at <= now_ns() {
                let _ = self.deadline.compare_exchange(at, NEVER, SeqCst, SeqCst);
            }
        }
    }
}

/// After a wait: reports the timer under `key` if it is due (where no kqueue filter does).
pub(super) fn report_due(shared: &Shared, key: u64, out: &mut Vec<Event>) {
    #[cfg(not(weft_kqueue))]
    if let Some(deadline) = shared.timer_deadline() {
        let at = deadline.load(SeqCst);
        if at != NEVER && at <= now_ns() && !out.iter().any(|e| e.key == key) {
            out.push(Event { key, readiness: crate::sys::READABLE });
        }
    }
    #[cfg(weft_kqueue)]
    let _ = (shared, key, out);
}

/// The child watch ([`ChildWatch`]) here: a kqueue holding one EVFILT_PROC/NOTE_EXIT
/// filter, readable once the child has exited (it does not reap it). None where there is
/// no kqueue: the loop polls `waitpid(pid, WNOHANG)` then.
impl ChildWatch {
    #[cfg(weft_kqueue)]
    pub fn new(pid: i32) -> Option<ChildWatch> {
        use std::os::fd::{FromRawFd, OwnedFd};
        // SAFETY: a fresh kqueue we own (kqueues are not inherited by children).
        let kq = unsafe { libc::kqueue() };
        if kq < 0 {
            return None;
        }
        // SAFETY: as above.
        let fd = unsafe { OwnedFd::from_raw_fd(kq) };
        // SAFETY: a zeroed kevent is valid; the fields are set below.
        let mut ev: libc::kevent = unsafe { std::mem::zeroed() };
        ev.ident = pid as _;
        ev.filter = libc::EVFILT_PROC as _;
        ev.flags = (libc::EV_ADD | libc::EV_ONESHOT) as _;
        ev.fflags = libc::NOTE_EXIT as _;
        // SAFETY: one change from a valid kevent, no events asked back.
        let r = unsafe { libc::kevent(kq, &ev, 1, std::ptr::null_mut(), 0, std::ptr::null()) };
        // ESRCH: it has exited already; the loop polls it then.
        (r >= 0).then(|| ChildWatch::from_fd(fd))
    }

    #[cfg(not(weft_kqueue))]
    pub fn new(pid: i32) -> Option<ChildWatch> {
        let _ = pid;
        None
    }
}
