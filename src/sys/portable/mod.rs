//! The portable backend of the seam (see `sys/mod.rs`), on the `polling` crate: kqueue
//! on macOS and the BSDs, event ports on illumos, epoll on Linux, poll(2) elsewhere (and
//! on Linux too when built with `--cfg polling_test_poll_backend`, the configuration the
//! tests run, as it has the fewest features).
//!
//! * [`Poller`]: a `polling::Poller`. Interest is level-triggered (on event ports, whose
//!   members are one-shot, by re-arming each member it reports); an `EDGE` member (a
//!   bell) is drained by the poller itself when it reports it (the loop's waits: by
//!   `Events::drain_bells` at the end of the pass, `bell.rs`), which is what an
//!   edge-triggered bell amounts to, and keeps a pipe bell from ever filling up.
//!   A member closed by its owner without being removed (poll(2) reports such an fd for
//!   ever, as POLLNVAL) is removed by the poller when it reports it, as kqueue and epoll
//!   do by themselves.
//!   On epoll (Linux, where polling's backend is epoll) a wait is one `epoll_wait` on
//!   the poller's own fd, not polling's wait, which makes five system calls (`direct.rs`).
//!   On poll(2), a busy loop's blocking wait looks first (`Shared::look_then_wait`).
//!   A wait through the loop's [`WaitSlot`] (`slot.rs`) takes no lock: the waiter is
//!   kept in the `Events` between waits, and a bell is looked up under the members'
//!   lock only when an event's key may be a bell's (`Shared::drained_keys`).
//! * [`Bell`] (`bell.rs`): an eventfd on Linux and Android, a non-blocking pipe elsewhere.
//! * [`TimerWake`] (`wake.rs`): on kqueue a `Timer` filter in the loop's poller, so that
//!   poller's fd turns readable at the deadline; elsewhere the deadline bounds the
//!   poller's waits, and a wait that reaches it reports the timer's key.
//! * [`ChildWatch`] (`wake.rs`): on kqueue a small kqueue of its own holding an
//!   EVFILT_PROC/NOTE_EXIT filter, readable once the child exits; elsewhere None (the
//!   loop polls `waitpid(pid, WNOHANG)`).
//! * [`Outer`] (`outer.rs`): the fd an embedding host watches. On kqueue a kqueue
//!   holding the loop's poller. Elsewhere (no pollable poller, or no timer filter) a pipe
//!   that a helper thread makes readable when the loop's poller reports something or its
//!   timer is due; the thread exists once the host has asked for the fd, and waits only
//!   while no thread runs the loop.

mod bell;
#[cfg(weft_polling_epoll)]
mod direct;
mod outer;
mod slot;
mod wake;

pub use bell::{ring, Bell};
pub use outer::Outer;
pub use slot::WaitSlot;
pub use wake::TimerWake;

use super::unix::fd_is_open;
use super::{EDGE, ERROR, HANGUP, READABLE, WRITABLE};
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Release, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

// Keys are 64 bits wide in the loop and a usize in polling.
const _: () = assert!(std::mem::size_of::<usize>() == 8, "the portable backend needs 64-bit keys");

/// The calls as error messages name them (`"{call}: {error}"`).
pub mod call {
    pub const POLLER: &str = "polling::Poller::new";
    pub const POLLER_ADD: &str = "polling::Poller::add";
    pub const WAIT: &str = "polling::Poller::wait";
    pub const BELL: &str = "pipe";
    pub const TIMER: &str = "timer";
    pub const PIPE: &str = "pipe";
}

/// No deadline (a [`TimerWake`] disarmed).
const NEVER: u64 = u64::MAX;

/// A member of a poller.
#[derive(Clone, Copy)]
struct Member {
    key: usize,
    fd: RawFd,
    interest: u32,
}

/// What a poller and the threads waiting on it share.
pub(super) struct Shared {
    poller: polling::Poller,
    /// Members added with `EDGE` (bells): (key, fd), drained when reported.
    drained: Mutex<Vec<(usize, RawFd)>>,
    /// A bit (`key_bit`) for the key of every member ever in `drained`: a wait whose
    /// events have none of them set drains nothing, and takes no lock to know it. Bits
    /// are set before the member is added to the poller and never cleared (a bit of a
    /// member gone costs a lock). A wait that missed a bit set meanwhile leaves the bell
    /// undrained: it is level-triggered, so the next wait reports it again.
    drained_keys: AtomicU64,
    /// Every member, to remove one reported as closed and to re-arm one-shot members.
    members: Mutex<Vec<Member>>,
    /// The backend has no level mode (event ports): members are one-shot, re-armed after
    /// each report, which is what level-triggered means.
    rearm: bool,
    /// The timer wake-up added with `add_timer`: its key (NEVER: none) and deadline.
    timer_key: AtomicU64,
    timer: OnceLock<Arc<AtomicU64>>,
    /// A thread is in a blocking wait (a timer armed earlier must interrupt it).
    waiting: AtomicBool,
}

/// A set of descriptors, each with an interest and a key.
pub struct Poller {
    shared: Arc<Shared>,
}

fn interest_event(key: u64, interest: u32) -> polling::Event {
    let mut event = polling::Event::new(key as usize, interest & READABLE != 0, interest & WRITABLE != 0);
    event.set_interrupt(interest & HANGUP != 0);
    event
}

/// The time from now until `deadline` (on the clock of `now_ns`), zero once it is due.
fn until(deadline: u64) -> Duration {
    Duration::from_nanos(deadline.saturating_sub(super::unix::now_ns()))
}

/// weft's readiness bits for an event polling reported.
#[inline]
fn readiness(ev: &polling::Event) -> u32 {
    let mut readiness = 0;
    if ev.readable {
        readiness |= READABLE;
    }
    if ev.writable {
        readiness |= WRITABLE;
    }
    if ev.is_interrupt() {
        readiness |= HANGUP;
    }
    if ev.is_err() == Some(true) {
        readiness |= ERROR;
    }
    readiness
}

impl Poller {
    pub fn new() -> io::Result<Poller> {
        let poller = polling::Poller::new()?;
        let rearm = !poller.supports_level();
        let shared = Shared {
            poller,
            drained: Mutex::new(Vec::new()),
            drained_keys: AtomicU64::new(0),
            members: Mutex::new(Vec::new()),
            rearm,
            timer_key: AtomicU64::new(NEVER),
            timer: OnceLock::new(),
            waiting: AtomicBool::new(false),
        };
        Ok(Poller { shared: Arc::new(shared) })
    }

    /// Adds `fd` with `interest`, reported under `key`. Fails when it is a member already.
    /// `EDGE` (a bell) is level-triggered here too, and the poller drains the bell when it
    /// reports it: each ring wakes one wait, and a bell never fills up unseen.
    pub fn add(&self, fd: RawFd, interest: u32, key: u64) -> io::Result<()> {
        check_pollable(fd)?;
        let mut members = lock(&self.shared.members);
        if members.iter().any(|m| m.fd == fd) {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        if interest & EDGE != 0 {
            self.shared.drained_keys.fetch_or(key_bit(key), SeqCst);
        }
        // SAFETY: the caller removes `fd` before closing it (or the poller removes it when
        // it reports it closed).
        unsafe { self.shared.poller.add_with_mode(fd, interest_event(key, interest), self.shared.mode()) }?;
        members.push(Member { key: key as usize, fd, interest });
        if interest & EDGE != 0 {
            lock(&self.shared.drained).push((key as usize, fd));
        }
        Ok(())
    }

    /// Changes the interest and key of `fd`, or adds it when it is not a member.
    pub fn set(&self, fd: RawFd, interest: u32, key: u64) -> io::Result<()> {
        let mut members = lock(&self.shared.members);
        let Some(at) = members.iter().position(|m| m.fd == fd) else {
            drop(members);
            return self.add(fd, interest, key);
        };
        if interest & EDGE != 0 {
            self.shared.drained_keys.fetch_or(key_bit(key), SeqCst);
        }
        // SAFETY: a member is open until its owner removes it.
        let source = unsafe { BorrowedFd::borrow_raw(fd) };
        self.shared.poller.modify_with_mode(source, interest_event(key, interest), self.shared.mode())?;
        members[at] = Member { key: key as usize, fd, interest };
        let mut drained = lock(&self.shared.drained);
        drained.retain(|&(_, f)| f != fd);
        if interest & EDGE != 0 {
            drained.push((key as usize, fd));
        }
        Ok(())
    }

    /// Removes `fd`. EBADF: the number was closed while a member; the kernel dropped it,
    /// but polling may still count it (its kqueue backend does), so, as for epoll's
    /// closed members, the loop replaces the poller.
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        let mut members = lock(&self.shared.members);
        let Some(at) = members.iter().position(|m| m.fd == fd) else {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        };
        members.swap_remove(at);
        lock(&self.shared.drained).retain(|&(_, f)| f != fd);
        // SAFETY: the number only names the member to drop; a closed one is not used.
        let result = self.shared.poller.delete(unsafe { BorrowedFd::borrow_raw(fd) });
        if fd_is_open(fd) {
            result
        } else {
            Err(io::Error::from_raw_os_error(libc::EBADF))
        }
    }

    /// Adds the timer wake-up `timer`, reported under `key` once its deadline is due.
    pub fn add_timer(&self, timer: &TimerWake, key: u64) -> io::Result<()> {
        timer.attach(&self.shared, key)
    }

    /// What a thread waits on this poller with.
    pub fn waiter(&self) -> Waiter {
        Waiter(self.shared.clone())
    }
}

#[cfg(weft_kqueue)]
impl std::os::fd::AsRawFd for Poller {
    fn as_raw_fd(&self) -> RawFd {
        self.shared.poller.as_raw_fd()
    }
}

/// As epoll refuses them (EPERM): a regular file or a directory is always "ready", and
/// watching one is a mistake the caller hears of. EBADF for a closed number.
fn check_pollable(fd: RawFd) -> io::Result<()> {
    // SAFETY: `st` is a valid out-pointer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG | libc::S_IFDIR => Err(io::Error::from_raw_os_error(libc::EPERM)),
        _ => Ok(()),
    }
}

/// A key's bit in `Shared::drained_keys` (the top 6 bits of a multiplicative hash: keys
/// differ in their low bits, watch ids, or their high ones, the loop's own keys).
#[inline]
fn key_bit(key: u64) -> u64 {
    1 << (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// How members are added: level-triggered, or one-shot and re-armed (`rearm`).
    fn mode(&self) -> polling::PollMode {
        if self.rearm {
            polling::PollMode::Oneshot
        } else {
            polling::PollMode::Level
        }
    }

    pub(super) fn poller(&self) -> &polling::Poller {
        &self.poller
    }

    /// The deadline of its timer wake-up, if it has one.
    #[cfg_attr(weft_kqueue, allow(dead_code))]
    pub(super) fn timer_deadline(&self) -> Option<&Arc<AtomicU64>> {
        self.timer.get()
    }

    /// Reports `deadline` (a timer wake-up's) under `key` (once per poller).
    pub(super) fn set_timer(&self, deadline: Arc<AtomicU64>, key: u64) {
        if self.timer.set(deadline).is_ok() {
            self.timer_key.store(key, SeqCst);
        }
    }

    /// Wakes a thread blocked in a wait on this poller, if one is (a timer was armed).
    #[cfg_attr(weft_kqueue, allow(dead_code))]
    pub(super) fn interrupt_wait(&self) {
        if self.waiting.load(SeqCst) {
            let _ = self.poller.notify();
        }
    }

    /// Waits (`block`: until something is ready, or the timer is due), fills `events`.
    #[inline]
    fn wait(&self, events: &mut Events, block: bool) -> io::Result<()> {
        events.out.clear();
        let timer_key = self.timer_key.load(SeqCst);
        let (timeout, deadline) = if block {
            // Dekker with TimerWake::arm: announce the wait, then read the deadline.
            self.waiting.store(true, SeqCst);
            let deadline = self.armed_deadline(timer_key);
            ((deadline != NEVER).then(|| until(deadline)), deadline)
        } else {
            (Some(Duration::ZERO), NEVER)
        };
        #[cfg(weft_polling_poll)]
        let result = if block && events.look_first && events.busy {
            self.look_then_wait(events, timer_key)
        } else {
            self.wait_members(events, timeout, deadline)
        };
        #[cfg(not(weft_polling_poll))]
        let result = self.wait_members(events, timeout, deadline);
        #[cfg(weft_polling_poll)]
        {
            events.busy = !events.out.is_empty();
        }
        if block {
            // Release is enough: a TimerWake::arm that still reads `true` notifies a wait
            // that has ended, which makes the next wait return once, empty; each wait's
            // own Dekker is its SeqCst store of `true` above.
            self.waiting.store(false, Release);
        }
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            // polling's poll(2) backend: `notify` sets its flag, then writes the pipe; a
            // wait that sees the flag between the two reads an empty pipe and returns
            // EAGAIN. The notification was for this wait: it is a wake, reported as an
            // empty wait (the late byte is drained by the next wait, which goes on).
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
        if !events.out.is_empty() {
            let defer = events.defer_bells && !self.rearm;
            events.bells_pending = self.settle(&mut events.out, defer);
        }
        if timer_key != NEVER {
            wake::report_due(self, timer_key, &mut events.out);
        }
        Ok(())
    }

    /// Waits on the poller (for `timeout`, None: until something is ready; a timeout
    /// other than zero ends at `deadline`); the members' events into `events.out`, as
    /// reported.
    fn wait_members(&self, events: &mut Events, timeout: Option<Duration>, deadline: u64) -> io::Result<()> {
        #[cfg(weft_polling_epoll)]
        let timeout = match direct::timeout_ms(timeout) {
            Some(ms) => match direct::wait(&self.poller, &mut events.direct, ms, &mut events.out)? {
                // polling's own wake-ups were reported: it clears them (see direct.rs).
                false => Some(Duration::ZERO),
                // Whole milliseconds passed, short of the deadline: the rest on polling's timer.
                true if ms > 0 && events.out.is_empty() => Some(until(deadline)),
                true => return Ok(()),
            },
            None => timeout,
        };
        #[cfg(not(weft_polling_epoll))]
        let _ = deadline;
        events.raw.clear();
        self.poller.wait(&mut events.raw, timeout)?;
        events.out.extend(events.raw.iter().map(|ev| Event { key: ev.key as u64, readiness: readiness(&ev) }));
        Ok(())
    }

    /// A blocking wait of a busy loop on poll(2) (its last wait reported something):
    /// first a look, and only when it finds nothing, the wait. poll(2) queues a blocking
    /// wait on every fd it finds not ready before the first ready one (and unqueues them
    /// all on return); a look queues on none. A busy loop's fd is mostly ready already
    /// (fd_pingpong: 127k to 147k round trips/s); the look costs one poll(2) more when it
    /// goes idle. The look may use up a notify meant for the wait (polling's notified
    /// flag): the only one the loop's waits get is `interrupt_wait`'s, whose timer
    /// deadline is stored before it notifies, so it is read again after the look. The
    /// helper thread's waits (outer.rs), which other notifies stop, never look first.
    #[cfg(weft_polling_poll)]
    fn look_then_wait(&self, events: &mut Events, timer_key: u64) -> io::Result<()> {
        self.wait_members(events, Some(Duration::ZERO), NEVER)?;
        if !events.out.is_empty() {
            return Ok(());
        }
        let deadline = self.armed_deadline(timer_key);
        self.wait_members(events, (deadline != NEVER).then(|| until(deadline)), deadline)
    }

    /// The deadline of the timer wake-up a wait must end at: NEVER when none is attached
    /// (`timer_key`, read once per wait) or none is armed.
    fn armed_deadline(&self, timer_key: u64) -> u64 {
        if timer_key == NEVER {
            return NEVER;
        }
        self.timer.get().map_or(NEVER, |t| t.load(SeqCst))
    }

    /// What the reported members need: one reported closed is forgotten (its event
    /// dropped), a bell is drained (or, `defer`, left to `Events::drain_bells`: true
    /// when one may be among them), a one-shot member is armed again.
    fn settle(&self, out: &mut Vec<Event>, defer: bool) -> bool {
        // One look at the events: whether one may be a bell's, whether one is closed.
        let drained_keys = self.drained_keys.load(SeqCst);
        let (mut bell, mut closed) = (false, false);
        for ev in out.iter() {
            bell |= ev.readiness != 0 && drained_keys & key_bit(ev.key) != 0;
            closed |= ev.readiness == 0;
        }
        if bell && !defer {
            self.drain_bells(out);
        }
        if closed {
            out.retain(|ev| ev.readiness != 0 || !self.forget_if_closed(ev.key as usize));
        }
        if self.rearm {
            for ev in out.iter() {
                self.rearm_member(ev.key as usize);
            }
        }
        bell && defer
    }

    /// A one-shot member was reported: armed again, with its interest.
    fn rearm_member(&self, key: usize) {
        let members = lock(&self.members);
        if let Some(m) = members.iter().find(|m| m.key == key) {
            // SAFETY: a member is open until its owner removes it.
            let source = unsafe { BorrowedFd::borrow_raw(m.fd) };
            let _ = self.poller.modify_with_mode(source, interest_event(key as u64, m.interest), self.mode());
        }
    }

    /// A member reported with no readiness: poll(2)'s POLLNVAL, the fd was closed. It is
    /// removed (true), as kqueue and epoll remove a closed fd.
    fn forget_if_closed(&self, key: usize) -> bool {
        let mut members = lock(&self.members);
        let Some(at) = members.iter().position(|m| m.key == key && !fd_is_open(m.fd)) else { return false };
        let Member { fd, .. } = members.swap_remove(at);
        lock(&self.drained).retain(|&(_, f)| f != fd);
        // polling keeps the number in its list; taking it out needs only the number.
        // SAFETY: the descriptor is closed; polling's poll(2) backend only forgets it.
        let _ = self.poller.delete(unsafe { BorrowedFd::borrow_raw(fd) });
        true
    }
}

/// A handle to wait on a poller ([`Poller::waiter`]).
#[derive(Clone)]
pub struct Waiter(Arc<Shared>);

impl Waiter {
    /// Waits until something is ready or the timer is due (`block`), or only looks, and
    /// fills `events`; an interrupted wait reports nothing.
    #[inline]
    pub fn wait(&self, events: &mut Events, block: bool) -> io::Result<()> {
        self.0.wait(events, block)
    }

    #[cfg_attr(weft_kqueue, allow(dead_code))]
    pub(super) fn shared(&self) -> &Arc<Shared> {
        &self.0
    }

    /// Looks (without waiting) whether anything but a bell is ready: what a pass would
    /// find besides the inbox. A bell it reports is drained, as by any wait.
    #[cfg_attr(weft_kqueue, allow(dead_code))]
    pub(super) fn has_work(&self) -> bool {
        let mut events = Events::with_capacity(16);
        // A notification left from an interrupted wait makes a wait return empty once.
        for _ in 0..2 {
            if self.0.wait(&mut events, false).is_err() {
                return false;
            }
            if events.len() > 0 {
                break;
            }
        }
        let drained = lock(&self.0.drained);
        events.iter().any(|e| !drained.iter().any(|&(key, _)| key as u64 == e.key))
    }
}

/// A reusable buffer of reported events.
pub struct Events {
    raw: polling::Events,
    /// What a direct wait fills (direct.rs).
    #[cfg(weft_polling_epoll)]
    direct: direct::Buffer,
    /// The waiter these events last waited with through a [`WaitSlot`], and the slot's
    /// generation then (slot.rs).
    slot_waiter: Option<(u64, Waiter)>,
    out: Vec<Event>,
    /// A blocking wait looks first when the last one reported something (poll(2) only,
    /// `Shared::look_then_wait`); never for the helper thread of `outer.rs`.
    #[cfg(weft_polling_poll)]
    look_first: bool,
    #[cfg(weft_polling_poll)]
    busy: bool,
    /// A bell these events report is drained by `drain_bells`, not by the wait (see
    /// `bell.rs`); `bells_pending`: the last wait reported one, maybe.
    defer_bells: bool,
    bells_pending: bool,
}

impl Events {
    pub fn with_capacity(capacity: usize) -> Events {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Events {
            raw: polling::Events::with_capacity(capacity),
            #[cfg(weft_polling_epoll)]
            direct: Vec::with_capacity(capacity.get()),
            slot_waiter: None,
            out: Vec::with_capacity(capacity.get() + 1),
            #[cfg(weft_polling_poll)]
            look_first: true,
            #[cfg(weft_polling_poll)]
            busy: false,
            defer_bells: false,
            bells_pending: false,
        }
    }

    /// Events whose waits leave the bells they report undrained until
    /// [`drain_bells`](Self::drain_bells) (the loop's: see `bell.rs`).
    pub fn deferring_bells(self) -> Events {
        Events { defer_bells: true, ..self }
    }

    /// Drains the bells the last wait reported, if it left them undrained (a wait
    /// through a [`WaitSlot`] only, whose waiter the events keep).
    #[inline]
    pub fn drain_bells(&mut self) {
        if std::mem::take(&mut self.bells_pending) {
            debug_assert!(self.slot_waiter.is_some(), "deferring events wait through a WaitSlot");
            if let Some((_, waiter)) = &self.slot_waiter {
                waiter.0.drain_bells(&self.out);
            }
        }
    }

    /// Events for a wait that a notify must always wake (outer.rs's helper): blocking
    /// waits never look first.
    #[cfg_attr(weft_kqueue, allow(dead_code))]
    pub(super) fn never_looking_first(self) -> Events {
        #[cfg(weft_polling_poll)]
        return Events { look_first: false, ..self };
        #[cfg(not(weft_polling_poll))]
        self
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.out.len()
    }

    #[inline]
    pub fn iter(&self) -> std::slice::Iter<'_, Event> {
        self.out.iter()
    }
}

/// One reported event: the key its fd was added with, and its readiness.
pub struct Event {
    key: u64,
    readiness: u32,
}

impl Event {
    #[inline]
    pub fn key(&self) -> u64 {
        self.key
    }

    #[inline]
    pub fn readiness(&self) -> u32 {
        self.readiness
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;

    /// A poller holding a level-triggered bell under key 7.
    fn poller_with_bell() -> (Poller, Bell) {
        let poller = Poller::new().unwrap();
        let bell = Bell::new().unwrap();
        poller.add(bell.as_raw_fd(), READABLE, 7).unwrap();
        (poller, bell)
    }

    /// Each notify wakes a blocking wait, round after round: a wait that was woken
    /// leaves the poller's own wake-up armed again (direct.rs on epoll: polling clears
    /// and re-arms it). A notify that wakes nothing is a failure after 10 s, not a hang:
    /// the bell is rung then.
    #[test]
    #[cfg_attr(miri, ignore = "poll(2), epoll and pipes are not emulated")]
    fn every_notify_wakes_a_blocking_wait() {
        let (poller, bell) = poller_with_bell();
        let waiter = poller.waiter();
        let mut events = Events::with_capacity(8);
        for round in 0..100 {
            let woke = Arc::new(AtomicBool::new(false));
            let notifier = {
                let (shared, woke, ring_fd) = (poller.shared.clone(), woke.clone(), bell.ring_fd());
                std::thread::spawn(move || {
                    let give_up = Instant::now() + Duration::from_secs(10);
                    while !woke.load(SeqCst) {
                        if Instant::now() > give_up {
                            ring(ring_fd);
                            return false;
                        }
                        shared.poller.notify().unwrap();
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    true
                })
            };
            waiter.wait(&mut events, true).unwrap();
            woke.store(true, SeqCst);
            assert!(notifier.join().unwrap(), "round {round}: no notify woke the wait");
        }
    }

    /// A member ready when a notify wakes the wait is reported by that wait or, where the
    /// notify makes a wait return empty (poll(2)), by the next look; never lost (direct.rs
    /// on epoll drops its own events and waits again through polling).
    #[test]
    #[cfg_attr(miri, ignore = "poll(2), epoll and pipes are not emulated")]
    fn a_ready_member_is_reported_despite_a_notify() {
        let (poller, bell) = poller_with_bell();
        let waiter = poller.waiter();
        let mut events = Events::with_capacity(8);
        for block in [true, false, true] {
            ring(bell.ring_fd());
            poller.shared.poller.notify().unwrap();
            waiter.wait(&mut events, block).unwrap();
            if events.len() == 0 {
                waiter.wait(&mut events, false).unwrap();
            }
            let keys: Vec<u64> = events.iter().map(Event::key).collect();
            assert_eq!(keys, [7], "block: {block}");
            assert_eq!(events.iter().next().unwrap().readiness() & READABLE, READABLE);
            bell.drain();
            // Nothing is ready now, nor notified: a look reports nothing.
            waiter.wait(&mut events, false).unwrap();
            assert_eq!(events.len(), 0, "block: {block}");
        }
    }

    /// Wakes sent while the loop's thread waits are wakes, never errors: polling's
    /// poll(2) backend can fail a wait with EAGAIN when a notify lands mid-wait.
    #[test]
    #[cfg_attr(miri, ignore = "poll(2) and pipes are not emulated")]
    fn waits_racing_wakes_never_fail() {
        let poller = Poller::new().unwrap();
        let shared = poller.shared.clone();
        let waiter = poller.waiter();
        let done = Arc::new(AtomicUsize::new(0));
        let waker = {
            let (shared, done) = (shared.clone(), done.clone());
            std::thread::spawn(move || {
                while done.load(SeqCst) == 0 {
                    let _ = shared.poller.notify();
                    std::hint::spin_loop();
                }
            })
        };
        let mut events = Events::with_capacity(8);
        let mut failures = 0;
        for _ in 0..200_000 {
            if let Err(e) = waiter.wait(&mut events, false) {
                failures += 1;
                eprintln!("wait failed: {e}");
            }
        }
        done.store(1, SeqCst);
        waker.join().unwrap();
        assert_eq!(failures, 0);
    }
}
