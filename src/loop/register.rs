//! Registrations other than tasks: timers (and the timer wake-up that follows the wheels), fd
//! and signal watches, subscriptions, posts and emits; and cancel, which ends any of
//! them, tasks included.
//!
//! # Timers and the wake-up
//!
//! A timer scheduled by the loop's owner goes to the owner's timer table and wheel
//! (`crate::timer`), with no lock; one scheduled by another thread (or when the table is
//! full) goes to the slab and the core's wheel, under the lock. The timer wake-up is
//! armed (under the lock, `rearm`) at the earlier of the two wheels' next deadlines: the
//! core's, and `own_next`, which the owner publishes. The owner lowers `own_next` when
//! it schedules an earlier timer; then, outside `run`, it re-arms at once if the wake-up
//! is armed later (`armed_hint`); inside `run`, the pass does so before it waits. A
//! `rearm` on another thread may move the wake-up later (a cancel): it stores
//! `armed_hint` and then reads `own_next` again, while the owner stores `own_next` and
//! then reads `armed_hint` (a Dekker pair, SeqCst): one of the two sees the other's
//! write, so the wake-up is never left later than an owner's timer.
//!
//! Pacing: a pass that fires n timers sets `pace_ns` to n * 2 µs (at most 1 ms) after
//! its start, and the wake-up is armed no earlier than that. A loop firing fewer than
//! about 500 timers per millisecond wakes at the tick after each deadline (n timers per
//! tick then pace less than a tick); one busier than that (timers_fire: a thousand per
//! millisecond) makes a pass per millisecond, as a 1 ms wheel would, instead of one per
//! tick. (At 8 µs per timer, 10,000 timers spread over 50 ms already reached the 1 ms
//! cap and fired 0.56 ms late at the median; at 2 µs, 0.06 ms.) Other wake-ups (fds,
//! posts) are not paced, and a pass fires every timer due by then.

use super::children::child_in;
use super::owner::{Own, Owned};
use super::{registering, Core, Handler, Kind, Loop};
use crate::bus::{self, Pattern};
use crate::error::{Code, Error, Result};
use crate::fork;
use crate::inbox::{Cancel, Record};
use crate::signal;
use crate::slots::{self, Id, IdKind};
use crate::sys;
use crate::task;
use crate::timer;
use crate::watch;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering::{Relaxed, SeqCst};

/// An owner's timer keeps a handler that packs in two words (crate::timer::Pack).
impl<H: Handler> crate::timer::Pack for H {
    #[inline(always)]
    fn pack(&self) -> Option<[usize; 2]> {
        Handler::pack(self)
    }

    #[inline(always)]
    unsafe fn unpack(words: [usize; 2]) -> Self {
        // SAFETY: the caller's promise, the same as Handler::unpack's.
        unsafe { <H as Handler>::unpack(words) }
    }
}

impl<H: Handler> Loop<H> {
    // ---- timers -------------------------------------------------------------------

    pub(super) fn check_delay(name: &str, ms: u64) -> Result<()> {
        if ms > timer::MAX_DELAY_MS {
            return Err(Error::invalid(format!(
                "{name} {ms} is beyond the maximum of {} ms (about 397 days)",
                timer::MAX_DELAY_MS
            )));
        }
        Ok(())
    }

    /// A timer that calls `handler` once, `delay_ms` from now (never earlier).
    pub fn timer_after(&self, delay_ms: u64, handler: H) -> Result<Id> {
        registering(handler, |handler| {
            Self::check_delay("delay_ms", delay_ms)?;
            self.add_timer(delay_ms, 0, handler)
        })
    }

    /// A timer that calls `handler` every `interval_ms`, at a fixed rate: call n is due at
    /// start + n·interval; when the loop falls behind, the missed calls are skipped.
    pub fn timer_every(&self, interval_ms: u64, handler: H) -> Result<Id> {
        registering(handler, |handler| {
            if interval_ms == 0 {
                return Err(Error::invalid("interval_ms 0 must be at least 1"));
            }
            Self::check_delay("interval_ms", interval_ms)?;
            self.add_timer(interval_ms, interval_ms * timer::NS_PER_MS, handler)
        })
    }

    /// [`timer_after`](Self::timer_after) without its error path, for the C layer's
    /// fast path: the owner's one-shot timer. The handler comes back untouched when the
    /// call must take the ordinary path: this thread does not own the loop now, the
    /// table is full, or there is an error to report (which that path finds again).
    #[inline]
    pub fn try_timer_after(&self, delay_ms: u64, handler: H) -> std::result::Result<Id, H> {
        if delay_ms > timer::MAX_DELAY_MS || fork::is_child() || self.closed.load(SeqCst) {
            return Err(handler);
        }
        let deadline_ns = if delay_ms == 0 { 0 } else { sys::now_ns() + delay_ms * timer::NS_PER_MS };
        let mut slot = Some(handler);
        match self.as_owner(|own, how| self.schedule_owned(own, how, deadline_ns, 0, &mut slot)) {
            Some(Some(id)) => Ok(id),
            _ => Err(slot.take().expect("not taken: refused")),
        }
    }

    /// [`try_timer_after`](Self::try_timer_after) of a handler that packs, as a straight
    /// line (`crate::timer` fast.rs): the id, or None when the call must take another
    /// path (which finds again why), with nothing changed.
    ///
    /// # Safety
    /// `words` are `Handler::pack` of a handler of `H`; on Some it is the table's, and
    /// the caller forgets it (its drop does nothing, as `Pack` says).
    #[inline(always)]
    pub unsafe fn try_timer_after_packed(&self, delay_ms: u64, words: [usize; 2]) -> Option<Id> {
        if delay_ms > timer::MAX_DELAY_MS || fork::is_child() || self.closed.load(SeqCst) {
            return None;
        }
        let deadline_ns = if delay_ms == 0 { 0 } else { sys::now_ns() + delay_ms * timer::NS_PER_MS };
        self.as_owner(
            #[inline(always)]
            |own, _| self.schedule_packed_owned(own, deadline_ns, words),
        )
        .flatten()
    }

    /// The owner's part of [`try_timer_after_packed`](Self::try_timer_after_packed).
    #[inline(always)]
    fn schedule_packed_owned(&self, own: &mut Own<H>, deadline_ns: u64, words: [usize; 2]) -> Option<Id> {
        // What would call (an earlier wake-up, the wheel's growth) is the general path's,
        // asked before anything changes.
        if deadline_ns < self.own_next.load(Relaxed) || !own.timers.wheel.has_room() {
            return None;
        }
        let (index, generation) = self.timers.schedule_packed(&mut own.timers, words)?;
        own.timers.wheel.insert_in_room(timer::Entry { deadline_ns, index, generation });
        self.timers_live.store(own.timers.live(), Relaxed);
        Some(slots::timer_id(self.tag, index, generation))
    }

    fn add_timer(&self, delay_ms: u64, interval_ns: u64, handler: &mut Option<H>) -> Result<Id> {
        self.usable()?;
        // A delay of 0 is due at once (the next pass); a deadline of 0 says so.
        let deadline_ns = if delay_ms == 0 { 0 } else { sys::now_ns() + delay_ms * timer::NS_PER_MS };
        if let Some(Some(id)) =
            self.as_owner(|own, how| self.schedule_owned(own, how, deadline_ns, interval_ns, handler))
        {
            return Ok(id);
        }
        let mut core = self.lock();
        let (id, index) = self.register(&mut core, handler, Kind::Timer { interval_ns })?;
        core.wheel.insert(index, deadline_ns);
        if core.armed_ns.is_none_or(|armed| deadline_ns < armed) {
            self.rearm(&mut core);
        }
        Ok(id)
    }

    /// The owner's timer: a record of the timer table and an entry in the owner's
    /// wheel, no lock (but to re-arm the wake-up earlier outside `run`). None when the
    /// table is full (the handler stays in `handler`).
    #[inline]
    fn schedule_owned(
        &self,
        own: &mut Own<H>,
        how: Owned,
        deadline_ns: u64,
        interval_ns: u64,
        handler: &mut Option<H>,
    ) -> Option<Id> {
        let taken = handler.take().expect("not taken yet");
        let (index, generation) = match self.timers.schedule(&mut own.timers, taken, interval_ns) {
            Ok(record) => record,
            Err(back) => {
                *handler = Some(back);
                return None;
            }
        };
        Some(self.scheduled(own, how, deadline_ns, index, generation))
    }

    /// The rest of an owner's schedule once its record is armed: its wheel entry, the
    /// counts, the wake-up if it is the earliest; its id.
    #[inline(always)]
    fn scheduled(&self, own: &mut Own<H>, how: Owned, deadline_ns: u64, index: u32, generation: u32) -> Id {
        own.timers.wheel.insert(timer::Entry { deadline_ns, index, generation });
        self.timers_live.store(own.timers.live(), Relaxed);
        if deadline_ns < self.own_next.load(Relaxed) {
            self.lower_own_next(own, how);
        }
        slots::timer_id(self.tag, index, generation)
    }

    /// An owner's timer earlier than the wheel's next work: publishes it, and re-arms the
    /// wake-up outside `run` if it is armed later (see the module comment).
    #[cold]
    #[inline(never)]
    fn lower_own_next(&self, own: &Own<H>, how: Owned) {
        self.publish_own_next(own);
        if how == Owned::Gate && self.own_next.load(Relaxed) < self.armed_hint.load(SeqCst) {
            let mut core = self.lock();
            self.rearm(&mut core);
        }
    }

    /// Counts down the timers other threads cancelled whose records the owner has
    /// reclaimed. Owner.
    pub(super) fn count_reclaimed(&self, own: &mut Own<H>) {
        let reclaimed = own.timers.take_reclaimed();
        if reclaimed > 0 {
            self.timers_foreign.fetch_sub(reclaimed, SeqCst);
        }
    }

    /// Publishes when the owner's wheel next has work (see the module comment). Owner.
    pub(super) fn publish_own_next(&self, own: &Own<H>) {
        let next = own.timers.wheel.next_deadline_ns().unwrap_or(u64::MAX);
        if next != self.own_next.load(Relaxed) {
            self.own_next.store(next, SeqCst);
        }
    }

    /// [`cancel`](Self::cancel) of an owner's timer by its owner, without the error
    /// path, for the C layer's fast path: true when it ended the timer; false when the
    /// call must take the ordinary path (another kind of id, another thread owns the
    /// loop, or no such timer: that path says why).
    #[inline]
    pub fn try_cancel_timer(&self, id: Id) -> bool {
        if !slots::is_timer_of(self.tag, id) || fork::is_child() {
            return false;
        }
        let (index, generation) = slots::timer_parts(id);
        self.try_cancel_timer_generally(index, generation)
    }

    /// [`try_cancel_timer`](Self::try_cancel_timer)'s common case as a straight line with
    /// no call in it (`crate::timer` fast.rs): an ARMED timer whose handler packs, the
    /// owner's free stack with room. False, with nothing changed, for every other case,
    /// which `try_cancel_timer` then answers.
    #[inline(always)]
    pub fn try_cancel_timer_fast(&self, id: Id) -> bool {
        if !slots::is_timer_of(self.tag, id) || fork::is_child() {
            return false;
        }
        let (index, generation) = slots::timer_parts(id);
        let ended = self.as_owner(
            #[inline(always)]
            |own, _| {
                if !self.timers.cancel_packed(&mut own.timers, index, generation) {
                    return false;
                }
                // Nothing reclaimed, and the wheel keeps the entry (not empty): the rest
                // of `cancel_as_owner`'s bookkeeping has nothing to do.
                self.timers_live.store(own.timers.live(), Relaxed);
                true
            },
        );
        ended == Some(true)
    }

    /// `try_cancel_timer` of a timer (index, generation) that is not the common case.
    #[cold]
    #[inline(never)]
    fn try_cancel_timer_generally(&self, index: u32, generation: u32) -> bool {
        match self.as_owner(|own, _| self.cancel_as_owner(own, index, generation)) {
            Some(Ok(handler)) => {
                // Dropped here, with no borrow of the owner's state: its free function
                // may call the loop.
                drop(handler);
                true
            }
            _ => false,
        }
    }

    /// The owner's cancel of timer (index, generation), and its bookkeeping.
    #[inline]
    fn cancel_as_owner(&self, own: &mut Own<H>, index: u32, generation: u32) -> std::result::Result<Option<H>, ()> {
        let result = self.timers.cancel_owned(&mut own.timers, index, generation);
        self.count_reclaimed(own);
        if result.is_ok() {
            self.timers_live.store(own.timers.live(), Relaxed);
            if own.timers.wheel.is_empty() {
                self.publish_own_next(own);
            }
        }
        result
    }

    /// Cancels an owner's timer: as the owner if this thread may own the loop now, else
    /// through the record's state (crate::timer::Table).
    fn cancel_timer(&self, id: Id, index: u32, generation: u32) -> Result<()> {
        let owned = self.as_owner(|own, _| self.cancel_as_owner(own, index, generation));
        let result = owned.unwrap_or_else(|| {
            // Counted before the claim, so the owner, which reclaims the record after it,
            // never counts it down first.
            self.timers_foreign.fetch_add(1, SeqCst);
            let result = self.timers.cancel_foreign(index, generation);
            if !matches!(result, Ok(Some(_))) {
                self.timers_foreign.fetch_sub(1, SeqCst);
            }
            result
        });
        let Ok(handler) = result else { return Err(Error::not_found(id)) };
        // Dropped here, with no borrow of the owner's state: its free function may call
        // the loop.
        drop(handler);
        // A run(Default) blocked with nothing left to wait for must notice and return.
        if self.running.load(SeqCst) && !self.on_loop_thread() && !self.alive() {
            self.inbox.wake();
        }
        Ok(())
    }

    /// Takes the entry at `index` out of the wheel, if it is there. The last one out
    /// disarms the timer wake-up, so that an embedding host's fd goes quiet.
    pub(super) fn unlink_timer(&self, core: &mut Core<H>, index: u32) {
        if core.wheel.is_linked(index) {
            core.wheel.remove(index);
            if core.wheel.is_empty() {
                self.rearm(core);
            }
        }
    }

    /// Keeps the timer wake-up armed at the earlier of the wheels' next deadlines (see
    /// the module comment), paced: no earlier than `pace_ns`.
    pub(super) fn rearm(&self, core: &mut Core<H>) {
        let own = self.own_next.load(SeqCst);
        let mut next = core.wheel.next_deadline_ns().map_or(own, |n| n.min(own));
        loop {
            let wanted = (next != u64::MAX).then(|| next.max(self.pace_ns.load(Relaxed)));
            if wanted != core.armed_ns {
                self.timer.arm(wanted);
                core.armed_ns = wanted;
            }
            self.armed_hint.store(next, SeqCst);
            // The other half of the Dekker pair with `schedule_owned`.
            let own = self.own_next.load(SeqCst);
            if own >= next {
                return;
            }
            next = own;
        }
    }

    // ---- fd and signal watches -----------------------------------------------------

    /// Watches `fd` for `interest` (READABLE | WRITABLE), level-triggered.
    pub fn watch_fd(&self, fd: RawFd, interest: u32, handler: H) -> Result<Id> {
        registering(handler, |handler| self.add_fd_watch(fd, interest, handler))
    }

    fn add_fd_watch(&self, fd: RawFd, interest: u32, handler: &mut Option<H>) -> Result<Id> {
        self.usable()?;
        watch::check_fd(fd)?;
        watch::check_interest(interest)?;
        if fd == self.outer.as_raw_fd() {
            return Err(Error::invalid(format!(
                "fd {fd} is this loop's own fd (weft_loop_fd): it cannot watch itself"
            )));
        }
        let mut core = self.lock();
        let (id, index) = self.register(&mut core, handler, Kind::Fd { fd, interest })?;
        let events = core.fds.set(fd, id, interest);
        if let Err(e) = core.poller.set(fd, events, watch::fd_key(&core.fds, fd)) {
            if core.fds.remove(fd, id).is_none() {
                let _ = core.poller.delete(fd);
            }
            *handler = core.entries.remove_at(index).handler;
            let why = match e.raw_os_error() {
                Some(libc::EPERM) => "does not support polling (a regular file or directory?)".to_string(),
                _ => format!("cannot be watched: {e}"),
            };
            return Err(Error::invalid(format!("fd {fd} {why}")));
        }
        Ok(id)
    }

    /// Changes the interest set of an fd watch.
    pub fn watch_fd_modify(&self, id: Id, interest: u32) -> Result<()> {
        self.usable()?;
        watch::check_interest(interest)?;
        if let Some(IdKind::Timer { index, generation }) = slots::decode(self.tag, id) {
            if self.timers.is_live(index, generation) {
                return Err(Error::invalid(format!("id {id:#x} is not an fd watch")));
            }
        }
        let mut core = self.lock();
        let index = self.live_index(&core, id)?;
        let Kind::Fd { fd, interest: current } = &mut core.entries.at_mut(index).kind else {
            return Err(Error::invalid(format!("id {id:#x} is not an fd watch")));
        };
        *current = interest;
        let fd = *fd;
        let events = core.fds.set(fd, id, interest);
        core.poller
            .set(fd, events, watch::fd_key(&core.fds, fd))
            .map_err(|e| Error::new(Code::Io, format!("fd {fd} can no longer be watched (closed?): {e}")))
    }

    /// Calls `handler` on the loop thread after `signum` is caught.
    pub fn watch_signal(&self, signum: i32, handler: H) -> Result<Id> {
        registering(handler, |handler| self.add_signal_watch(signum, handler))
    }

    fn add_signal_watch(&self, signum: i32, handler: &mut Option<H>) -> Result<Id> {
        self.usable()?;
        signal::check(signum)?;
        let mut core = self.lock();
        // The bell goes up before the handler, so a signal caught right after the
        // handler is installed already rings it.
        if core.signal_bell_slot.is_none() {
            core.signal_bell_slot = Some(signal::register_bell(self.signal_bell.ring_fd())?);
        }
        if core.signal_watchers[signum as usize].is_empty() {
            core.signal_seen[signum as usize] = signal::count(signum);
        }
        let registered = signal::add_watcher(signum).and_then(|()| {
            self.register(&mut core, handler, Kind::Signal { signum }).inspect_err(|_| {
                signal::remove_watcher(signum);
            })
        });
        match registered {
            Ok((id, index)) => {
                core.signal_watchers[signum as usize].push(index);
                Ok(id)
            }
            Err(e) => {
                Self::release_signal_bell_if_unused(&mut core);
                Err(e)
            }
        }
    }

    /// Takes the loop's bell out of the signal handler's list once it watches no signal.
    fn release_signal_bell_if_unused(core: &mut Core<H>) {
        if core.signal_watchers.iter().all(Vec::is_empty) {
            if let Some(slot) = core.signal_bell_slot.take() {
                signal::unregister_bell(slot);
            }
        }
    }

    // ---- topics ------------------------------------------------------------------------

    pub fn subscribe(&self, pattern: &str, handler: H) -> Result<Id> {
        registering(handler, |handler| {
            self.usable()?;
            let pattern = Pattern::parse(pattern)?;
            let mut core = self.lock();
            let (id, index) =
                self.register(&mut core, handler, Kind::Subscription { pattern: Box::new(pattern.clone()) })?;
            core.subscriptions.add(&pattern, index);
            Ok(id)
        })
    }

    /// Queues an event; the payload is copied. Never blocks on the loop.
    pub fn emit(&self, topic: &str, payload: &[u8]) -> Result<()> {
        self.usable()?;
        bus::check_topic(topic)?;
        self.inbox.emit(topic, payload);
        Ok(())
    }

    /// Queues `handler` to run on the loop thread, after what was posted before it by
    /// the same thread.
    /// [`Loop::post`] without its error path, for the C layer's fast path: the handler
    /// comes back (refused, untouched) when the call must take that path to say why (in
    /// a forked child, or the loop being freed).
    #[inline]
    pub fn try_post(&self, handler: H) -> std::result::Result<Id, H> {
        if fork::is_child() || self.closed.load(SeqCst) {
            return Err(handler);
        }
        Ok(slots::post_id(self.tag, self.inbox.post(handler)))
    }

    pub fn post(&self, handler: H) -> Result<Id> {
        registering(handler, |handler| {
            self.usable()?;
            let handler = handler.take().expect("not taken yet");
            Ok(slots::post_id(self.tag, self.inbox.post(handler)))
        })
    }

    // ---- cancel ------------------------------------------------------------------------

    pub(super) fn live_index(&self, core: &Core<H>, id: Id) -> Result<u32> {
        match core.entries.index(id) {
            Some(index) if !core.entries.at(index).cancelled => Ok(index),
            _ => Err(Error::not_found(id)),
        }
    }

    /// Ends a registration. Its callback does not start again once this returns Ok; its
    /// handler is dropped now, or when its call in progress returns.
    pub fn cancel(&self, id: Id) -> Result<()> {
        fork::check()?;
        match slots::decode(self.tag, id) {
            Some(IdKind::Post { seq }) => {
                return match self.inbox.cancel_post(seq, self.on_loop_thread()) {
                    Cancel::Removed(handler) => {
                        drop(handler);
                        Ok(())
                    }
                    Cancel::NotFound => Err(Error::not_found(id)),
                };
            }
            Some(IdKind::Slot { .. }) => {}
            Some(IdKind::Task { index, .. }) => return self.cancel_owned(id, index),
            Some(IdKind::Timer { index, generation }) => return self.cancel_timer(id, index, generation),
            None => return Err(Error::not_found(id)),
        }
        let mut core = self.lock();
        let index = self.live_index(&core, id)?;
        if let Kind::Task(task) = &core.entries.at(index).kind {
            // A task ends when its completion arrives; cancel raises its flag, and
            // reports the completion itself when the work had not started. Once `done`
            // is running (its handler is out), the task is over: not found.
            if task.is_cancelled() || core.entries.at(index).handler.is_none() {
                return Err(Error::not_found(id));
            }
            if task.cancel() {
                self.inbox.push(Record::Done { id, status: task::CANCELLED });
            }
            return Ok(());
        }
        if let Kind::Process(_) = &core.entries.at(index).kind {
            // As for a task: cancel asks, the loop reports (see cancel_process).
            if core.entries.at(index).handler.is_none() || !self.cancel_process(&mut core, index) {
                return Err(Error::not_found(id));
            }
            return Ok(());
        }
        let entry = core.entries.at(index);
        if entry.handler.is_none() && matches!(entry.kind, Kind::Timer { interval_ns: 0 }) {
            // A one-shot timer whose call has begun is over, as a started post is: its
            // callback runs (or ran) whatever a cancel says now.
            return Err(Error::not_found(id));
        }
        self.unregister(&mut core, index);
        let entry = core.entries.at_mut(index);
        if entry.handler.is_none() {
            entry.cancelled = true;
            // Its call may have ended and parked the handler since the lock was taken
            // (see parked.rs): then the registration ends here, as an idle one does.
            let Some((parked, at, handler)) = self.parked.cancelled_in_call() else { return Ok(()) };
            Self::unpark(&mut core, parked, at, handler);
            if parked != id {
                return Ok(());
            }
        }
        let entry = core.entries.remove_at(index);
        let now_idle = core.entries.is_empty();
        drop(core);
        drop(entry);
        // A run(Default) blocked with nothing left to wait for must notice and return.
        if now_idle && self.running.load(SeqCst) {
            self.inbox.wake();
        }
        Ok(())
    }

    /// Removes the registration at `index` from the wheel and the tables (not the slab).
    pub(super) fn unregister(&self, core: &mut Core<H>, index: u32) {
        let core = &mut *core;
        match &core.entries.at(index).kind {
            Kind::Timer { .. } => {
                self.unlink_timer(core, index);
            }
            // Given its kind under the lock that reserved it: never here.
            Kind::Reserved => {}
            Kind::Task(task) => {
                task.cancel();
                self.unlink_timer(core, index);
            }
            &Kind::Fd { fd, .. } => {
                let key = watch::fd_key(&core.fds, fd);
                let (result, rekeyed) = match core.fds.remove(fd, core.entries.id_of(index)) {
                    Some(events) => {
                        let fresh = watch::fd_key(&core.fds, fd);
                        (core.poller.set(fd, events, fresh), fresh != key)
                    }
                    None => (core.poller.delete(fd), true),
                };
                // Reports of this pass's wait under the old key are stale.
                if rekeyed && result.is_ok() && self.running.load(SeqCst) {
                    core.unwatched.push(key);
                }
                // EBADF: the fd number was closed. If another copy of the file is open,
                // the poller still holds it, unreachable by number: replace the set.
                if result.is_err_and(|e| e.raw_os_error() == Some(libc::EBADF)) {
                    core.polluted = true;
                }
            }
            &Kind::Signal { signum } => {
                core.signal_watchers[signum as usize].retain(|&i| i != index);
                signal::remove_watcher(signum);
                Self::release_signal_bell_if_unused(core);
            }
            Kind::Subscription { pattern } => {
                let pattern = (**pattern).clone();
                core.subscriptions.remove(&pattern, index);
            }
            Kind::Process(_) => {
                // Only `close` ends a process task this way: its child is killed and
                // reaped here, and `done` never runs.
                self.unlink_timer(core, index);
                child_in(&mut core.entries, index).kill_and_reap();
                let fds = self.forget_child(core, index);
                Self::unwatch_child_fds(core, fds);
            }
        }
    }
}
