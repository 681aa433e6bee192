//! Running the loop: `run` and its passes (waiting on the inner set, timers due,
//! ready fds, process tasks, signals, the inbox's records and completions), and
//! dispatching a ready registration to its handler.

use super::{
    io_error, thread_number, Event, Handler, Kind, Loop, RunMode, Runner, KEY_FD, KEY_INBOX, KEY_PROC_PIPE, KEY_SIGNAL,
    KEY_TIMER, YIELD_TIMER_GAP_NS,
};
use crate::error::{Code, Error, Result};
use crate::fork;
use crate::inbox::Record;
use crate::pool;
use crate::shrink;
use crate::signal;
use crate::slots::{self, Id};
use crate::sys;
use crate::task;
use crate::timer;
use crate::watch;
use std::ffi::CStr;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};

/// A pass takes the inbox's records in slices of at most this many (see `pass`).
const SLICE: usize = 1024;

impl<H: Handler> Loop<H> {
    // ---- running -----------------------------------------------------------------------

    /// Runs the loop on the calling thread; see [`RunMode`]. Busy if it is already running.
    pub fn run(&self, mode: RunMode) -> Result<()> {
        self.usable()?;
        let mut runner = self.runner.0.try_lock().map_err(|_| {
            Error::new(Code::Busy, "the loop is already running (re-entered from a callback, or on another thread)")
        })?;
        // Kept until `run` returns: this thread owns the loop (owner.rs).
        let gate = self.hold_gate()?;
        self.running.store(true, SeqCst);
        self.runner_thread.store(thread_number(), SeqCst);
        self.outer.enter();
        if self.metrics.watched() {
            self.metrics.run_began(sys::coarse_now_ns());
        }
        // One thread-local lookup for the whole run: the passes flush and defer the
        // callbacks' pool wake-ups through it (in a cdylib each lookup is a call).
        let result = pool::deferring_scope(|scope| self.run_passes(&mut runner, mode, scope));
        if self.metrics.watched() {
            self.metrics.run_ended(sys::coarse_now_ns());
        }
        // No thread-local may point at this loop's staging feeders once another thread
        // can own the loop (a nested run returns inside another loop's callback).
        pool::publish_staged();
        self.runner_thread.store(0, SeqCst);
        self.running.store(false, SeqCst);
        // Records that producers did not ring for (the loop was awake), and completions
        // a pass limit left for later, must make the loop's fd readable now: an
        // embedding host waits on it.
        self.held_back.store(!runner.done.is_empty(), SeqCst);
        if self.inbox.doze(false) || !runner.done.is_empty() {
            self.inbox.wake();
        }
        self.outer.leave();
        // As in libuv, a stop is used up by the run it ends, or by the next run.
        self.stop.store(false, SeqCst);
        drop(gate);
        result
    }

    fn run_passes(&self, runner: &mut Runner<H>, mode: RunMode, scope: &pool::Deferring<'_>) -> Result<()> {
        loop {
            if mode == RunMode::Default && !self.alive() {
                return Ok(());
            }
            let stopping = self.stop.load(SeqCst);
            let ran = self.pass(runner, mode != RunMode::NoWait && !stopping, scope)?;
            self.metrics.passed(runner.done.len());
            if self.stop.load(SeqCst) {
                return Ok(());
            }
            match mode {
                RunMode::Default => {}
                RunMode::NoWait => return Ok(()),
                // A pass can wake for nothing (a timer wheel cascade, a cancelled
                // timer's deadline): Once waits until a callback has run.
                RunMode::Once if ran > 0 => return Ok(()),
                RunMode::Once => {}
            }
        }
    }

    /// Makes `run` return after its current pass (or the next run after one pass).
    pub fn stop(&self) -> Result<()> {
        fork::check()?;
        self.stop.store(true, SeqCst);
        self.inbox.wake();
        Ok(())
    }

    /// At most `limit` inbox records (posts, events, completions) per pass; 0: no limit.
    pub fn set_pass_limit(&self, limit: usize) -> Result<()> {
        self.usable()?;
        self.inbox.set_limit(limit);
        Ok(())
    }

    /// True while anything is registered or queued.
    pub fn alive(&self) -> bool {
        // The slab's count first: `run(Default)` asks before every pass, and a loop that
        // runs has registrations far more often than only records or tasks.
        self.registrations.load(Acquire) > 0
            || self.inbox.has_records()
            || self.table_live.load(Relaxed) > 0
            || self.timers_live.load(SeqCst) > self.timers_foreign.load(SeqCst)
    }

    /// The fd an embedding host watches: readable when `run(NoWait)` has work.
    pub fn fd(&self) -> Result<RawFd> {
        fork::check()?;
        self.outer.host_fd().map_err(io_error("starting the embedding fd's helper thread"))
    }

    /// Milliseconds until the next timer (rounded up), 0 when work is ready now, None
    /// when nothing is scheduled.
    pub fn timeout_ms(&self) -> Result<Option<u64>> {
        fork::check()?;
        let pending = || self.inbox.has_records() || self.held_back.load(SeqCst);
        if pending() || self.outer.is_ready() {
            return Ok(Some(0));
        }
        // A look at the poller may drain the inbox bell (the portable backend's host fd):
        // work that came meanwhile must keep the host's fd readable.
        if pending() {
            self.inbox.wake();
            return Ok(Some(0));
        }
        // Timers other threads cancelled stay in the owner's wheel until it meets them.
        let own_live = self.timers_live.load(SeqCst) > self.timers_foreign.load(SeqCst);
        let own = if own_live { self.own_next.load(SeqCst) } else { u64::MAX };
        let next = self.lock().wheel.next_deadline_ns().map_or(own, |core| core.min(own));
        if next == u64::MAX {
            return Ok(None);
        }
        Ok(Some(next.saturating_sub(sys::now_ns()).div_ceil(timer::NS_PER_MS)))
    }

    /// One pass; returns how many callbacks it ran.
    fn pass(&self, runner: &mut Runner<H>, block: bool, scope: &pool::Deferring<'_>) -> Result<usize> {
        let mut ran = 0;
        let Runner {
            events,
            ids,
            indices,
            due,
            procs,
            watchers,
            done,
            groups,
            dispatched,
            returned,
            deliver,
            spare,
            oversized,
        } = runner;
        // Wake-ups deferred by callbacks must not wait for this thread to wake.
        if block {
            scope.flush();
        }
        // How many cells `done` held in this pass, at most (its use, for the shrink at
        // the end: it is empty again by then).
        let mut done_used = done.len();
        // The inbox protocol: doze, and do not wait if records came in meanwhile.
        let queued = self.inbox.doze(block && done.is_empty()) || !done.is_empty();
        let block = block && !queued;
        // An owner's timer scheduled in a callback earlier than the wake-up is armed.
        if self.own_next.load(Relaxed) < self.armed_hint.load(SeqCst) {
            self.rearm(&mut self.lock());
        }
        if block && self.metrics.watched() {
            let from = sys::coarse_now_ns();
            self.metrics.wait_begins(from);
            self.inner.load().wait(events, block).map_err(io_error(sys::call::WAIT))?;
            self.metrics.waited(from, sys::coarse_now_ns());
        } else {
            self.inner.load().wait(events, block).map_err(io_error(sys::call::WAIT))?;
        }
        self.inbox.wake_up();
        let (mut inbox_rang, mut timer_rang, mut signal_rang) = (false, false, false);
        // How many fd reports: each is read from `events` again under the lock below.
        let mut fds = 0;
        procs.clear();
        for ev in events.iter() {
            let key = ev.key();
            match key {
                KEY_INBOX => inbox_rang = true,
                KEY_TIMER => {
                    self.timer.drain();
                    timer_rang = true;
                }
                KEY_SIGNAL => {
                    self.signal_bell.drain();
                    signal_rang = true;
                }
                _ if is_fd_key(key) => fds += 1,
                _ => procs.push(key),
            }
        }

        // Timers due now: the owner's (without the lock), then the core's.
        let mut now = 0;
        due.clear();
        {
            // SAFETY: on the loop's thread, no callback running; the borrow ends here.
            let own = unsafe { self.own() };
            if !own.timers.wheel.is_empty() || timer_rang {
                now = sys::now_ns();
                own.timers.wheel.poll(now, due);
                self.publish_own_next(own);
            }
        }
        // One lock for the timers due, the inner set's upkeep and the ready fds'
        // watchers (collected now: a pass runs the callbacks ready when it began).
        let mut single = None;
        // Only one watch's callback runs in this pass (and nothing else: see the end).
        let mut quiet = false;
        {
            let mut core = self.lock();
            let core = &mut *core;
            if core.polluted {
                self.replace_inner_set(core);
            }
            // After a burst of registrations, the wheel's links follow the slab down.
            core.wheel.trim(core.entries.slot_count());
            indices.clear();
            ids.clear();
            // With no timers and no expiry to account for, skip the clock read. (After
            // an expiry, rearm must run even with no timers left: `armed_ns` has to stop
            // naming a deadline the timer wake-up has already passed.)
            if !core.wheel.is_empty() || timer_rang || now != 0 {
                if now == 0 {
                    now = sys::now_ns();
                }
                core.wheel.poll(now, indices);
                ids.extend(indices.iter().map(|&i| (core.entries.id_of(i), 0)));
                let fired = indices.len() + due.len();
                if fired > 0 {
                    // Pacing (register.rs): a pass that fires n timers lets the next timer
                    // wake-up wait up to n * 2 µs, at most 1 ms.
                    let gap = (fired as u64 * timer::PACE_NS_PER_TIMER).min(timer::NS_PER_MS);
                    self.pace_ns.store(now + gap, Relaxed);
                }
                self.rearm(core);
            }
            // Ready fds: each watcher gets the part of the report it asked for.
            watchers.clear();
            let alone = fds == 1 && ids.is_empty() && due.is_empty();
            for ev in events.iter().filter(|_| fds > 0) {
                let (key, bits) = (ev.key(), ev.readiness());
                if !is_fd_key(key) {
                    continue;
                }
                if watch::is_watch_key(key) {
                    // The fd's one watch, by its id (see `crate::watch`).
                    let Some(index) = core.entries.index(key) else {
                        if !core.unwatched.contains(&key) {
                            // A stale id no cancel of this pass explains: a closed fd's
                            // file that the poller kept (see the module comment).
                            core.polluted = true;
                        }
                        continue;
                    };
                    let entry = core.entries.at_mut(index);
                    let Kind::Fd { fd, interest } = entry.kind else { continue };
                    let events = watch::events_for(interest, bits);
                    if events == 0 {
                        continue;
                    }
                    // The common pass, one watch ready and no callback before it: its
                    // handler is taken under this lock (`dispatch` would take it again).
                    if alone && !entry.cancelled {
                        single = entry.handler.take().map(|handler| (key, index, fd, events, handler));
                    } else {
                        watchers.push((key, fd, events));
                    }
                    continue;
                }
                let fd = (key & 0xffff_ffff) as u32 as RawFd;
                let watching = core.fds.watchers(fd);
                if watching.is_empty() && !core.unwatched.contains(&key) {
                    // Reported, yet watched by no one (and not unwatched since the wait):
                    // a closed fd's file that the poller kept (see the module comment).
                    core.polluted = true;
                }
                for &(id, interest) in watching {
                    let events = watch::events_for(interest, bits);
                    if events != 0 {
                        watchers.push((id, fd, events));
                    }
                }
            }
            core.unwatched.clear();
        }
        for &(id, _) in ids.iter() {
            ran += self.dispatch(id, Event::Timer) as usize;
        }
        ran += self.fire_owned(due, now);
        if let Some((id, index, fd, events, handler)) = single {
            ran += self.call_parking(id, index, handler, Event::Fd { fd, events }, scope) as usize;
            quiet = procs.is_empty() && !signal_rang && !inbox_rang && !queued;
        } else {
            for &(id, fd, events) in watchers.iter() {
                ran += self.dispatch(id, Event::Fd { fd, events }) as usize;
            }
        }

        // Process tasks: their pipes and exits.
        for &key in procs.iter() {
            ran += self.serve_process((key & 0xffff_ffff) as u32, key & !0xffff_ffff, ids);
        }

        if signal_rang {
            ran += self.dispatch_signals(ids);
        }

        if inbox_rang || queued {
            // The pass limit bounds posts, events and completions together. Completions a
            // previous pass held back (ready then: their events had been dispatched) run
            // first, before any later record; then this pass's records, then the
            // completions they make ready, while the budget lasts.
            let limit = self.inbox.limit();
            let mut budget = if limit == 0 { usize::MAX } else { limit };
            if limit > 0 {
                let held = take_ready(groups, *dispatched, budget);
                if held > 0 {
                    ran += self.serve_cells(done, held, deliver, spare);
                    budget -= held;
                }
            }
            if budget > 0 {
                // Cells first, then records: a task's events are queued before its cell
                // is given back, so they are before the end of the take below, and its
                // `done` waits until they have been dispatched.
                let mut taken = self.inbox.take_done(done);
                if block && taken > 0 && events.len() == 1 && inbox_rang && !self.inbox.has_queued() {
                    // Woken by finished tasks alone while others still run: yield the CPU
                    // once before serving. When the pools' threads keep every core busy, the
                    // one this wake-up preempted finishes its job first, and the loop serves
                    // a batch instead of waking (and preempting) once per task; with a core
                    // to spare, the yield returns at once. (fork_join: 1.8x -> 2.2x or more
                    // speed-up on 2 cores.) Nothing else is waiting: no fd, signal, post or
                    // event is delayed by it. A timer falling due while the loop has yielded
                    // would wait for the worker's time slice (a few ms), so the loop does not
                    // yield when one is due within YIELD_TIMER_GAP_NS.
                    let (out, next_timer) = {
                        // SAFETY: on the loop's thread, no callback running.
                        let lent = unsafe { self.own() }.lender.lent();
                        let core = self.lock();
                        let own_next = Some(self.own_next.load(Relaxed)).filter(|&n| n != u64::MAX);
                        let next = match (core.wheel.next_deadline_ns(), own_next) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                        (core.cells.lent() + lent - (*returned + taken as u64), next)
                    };
                    if out > 0 && next_timer.is_none_or(|at| at > sys::now_ns() + YIELD_TIMER_GAP_NS) {
                        std::thread::yield_now();
                        taken += self.inbox.take_done(done);
                    }
                }
                *returned += taken as u64;
                done_used += taken;
                // What one take would take, in slices of at most SLICE records, run
                // straight from the inbox's slots while they are in cache.
                let (mut count, mut now_dispatched, end) = self.inbox.take(budget.min(SLICE));
                if taken > 0 {
                    groups.push_back((end, taken));
                }
                loop {
                    budget -= count;
                    // The run's scope for the callbacks' deferred wake-ups (see
                    // pool::deferring_scope): no thread-local lookup per slice.
                    ran += self.dispatch_records(ids, scope);
                    if count < SLICE || budget == 0 || now_dispatched >= end {
                        break;
                    }
                    (count, now_dispatched, _) = self.inbox.take_until(budget.min(SLICE), end);
                }
                *dispatched = now_dispatched;
                let ready = take_ready(groups, now_dispatched, budget);
                if ready > 0 {
                    ran += self.serve_cells(done, ready, deliver, spare);
                }
            }
        }

        // The inbox bell, where the backend drains it (the portable one's), is drained
        // now that its records ran, not on the wake-up's path (see sys/portable/bell.rs).
        events.drain_bells();

        // An owner's timer scheduled (or an `every` timer re-armed) in this pass earlier
        // than the wake-up is armed: `run(NoWait)` returns to a host that waits on the
        // loop's fd, which must turn readable at that deadline.
        if self.own_next.load(Relaxed) < self.armed_hint.load(SeqCst) {
            self.rearm(&mut self.lock());
        }

        // After a burst, the pass's buffers give back what this pass did not need (a
        // few compares when nothing is to be shrunk; see `crate::shrink`). A quiet pass
        // (one callback, no buffer beyond a few entries) grew none of them: it looks
        // only when the last pass that looked found one above the floor.
        if quiet && !*oversized {
            return Ok(ran);
        }
        let biggest = (done.capacity().max(groups.capacity()))
            .max(ids.capacity())
            .max(indices.capacity().max(procs.capacity()))
            .max(watchers.capacity());
        *oversized = biggest > shrink::FLOOR;
        if *oversized {
            // By its use in the pass, not by what is left: emptied by every pass, it would
            // be shrunk and grown again (fresh pages) pass after pass in a burst.
            shrink::deque(done, done_used);
            shrink::deque(groups, groups.len());
            shrink::vec(ids, ids.len());
            shrink::vec(indices, indices.len());
            shrink::vec(procs, procs.len());
            shrink::vec(watchers, watchers.len());
        }
        Ok(ran)
    }

    /// Calls the owner's timers whose entries came out of the wheel (`due`, taken at
    /// `now`): those still live. Returns how many were called.
    fn fire_owned(&self, due: &[timer::Entry], now: u64) -> usize {
        const AHEAD: usize = 8;
        let mut ran = 0;
        due.iter().take(AHEAD).for_each(|entry| self.timers.prefetch(entry.index));
        for (at, &entry) in due.iter().enumerate() {
            if let Some(later) = due.get(at + AHEAD) {
                self.timers.prefetch(later.index);
            }
            let timer::Entry { deadline_ns, index, generation } = entry;
            let begun = {
                // SAFETY: on the loop's thread; the borrow ends before the call.
                let own = unsafe { self.own() };
                self.timers.begin(&mut own.timers, index, generation)
            };
            let (mut handler, interval_ns) = match begun {
                timer::Begin::Call { handler, interval_ns } => (handler, interval_ns),
                timer::Begin::Reclaimed => {
                    // SAFETY: as above.
                    let own = unsafe { self.own() };
                    self.count_reclaimed(own);
                    self.timers_live.store(own.timers.live(), Relaxed);
                    continue;
                }
                timer::Begin::Stale => continue,
            };
            let id = slots::timer_id(self.tag, index, generation);
            if self.metrics.watched() {
                self.metrics.timer_called(deadline_ns);
            }
            pool::deferring_wakeups(|| handler.call(self, id, Event::Timer));
            ran += 1;
            let over = {
                // SAFETY: on the loop's thread, after the call; the borrow ends here.
                let own = unsafe { self.own() };
                let over = self.timers.finish(&mut own.timers, index, generation, handler);
                if over.is_none() {
                    // Fixed rate: the next call is due one interval after this one's
                    // deadline; calls the loop was too late for are skipped.
                    let mut next = deadline_ns + interval_ns;
                    if next <= now {
                        next += (now - next) / interval_ns * interval_ns + interval_ns;
                    }
                    own.timers.wheel.insert(timer::Entry { deadline_ns: next, index, generation });
                    if next < self.own_next.load(Relaxed) {
                        self.publish_own_next(own);
                    }
                }
                self.timers_live.store(own.timers.live(), Relaxed);
                over
            };
            // Without the borrow: its free function may call the loop.
            drop(over);
        }
        ran
    }

    /// Runs the records of the slice the pass took from the inbox, straight from the
    /// inbox's slots (a callback of the slice may still cancel a post after it: see
    /// `crate::inbox`); returns how many callbacks ran. One deferring level for the
    /// slice (see [`pool::Deferring::slice`]): each record's wake-ups are sent after it.
    fn dispatch_records(&self, ids: &mut Vec<(Id, u32)>, scope: &pool::Deferring<'_>) -> usize {
        let mut ran = 0;
        // Read once: a post's id is made of it and the post's number.
        let tag = self.tag;
        scope.slice(|slice| {
            // Inlined (the queue calls it from two places, one for posts alone).
            self.inbox.run_records(
                #[inline(always)]
                |seq, record| {
                    match record {
                        Record::Post { mut handler } => {
                            handler.call(self, slots::post_id(tag, seq), Event::Post);
                            ran += 1;
                            drop(handler);
                        }
                        Record::Emit { bytes, topic_len } => {
                            self.deliver(&bytes, topic_len, ids);
                            ran += 1;
                        }
                        Record::Done { id, .. } if slots::is_task_id(id) => {
                            ran += self.deliver_unstarted(id) as usize;
                        }
                        Record::Done { id, status } => {
                            ran += self.dispatch(id, Event::Done { status, result: &[], message: None }) as usize;
                        }
                        Record::Job(job) => job.run(),
                    }
                    slice.after();
                    true
                },
            )
        });
        ran
    }

    fn dispatch_signals(&self, ids: &mut Vec<(Id, u32)>) -> usize {
        ids.clear();
        {
            let mut core = self.lock();
            for signum in 1..signal::NSIG {
                if core.signal_watchers[signum].is_empty() {
                    continue;
                }
                let count = signal::count(signum as i32);
                if count == core.signal_seen[signum] {
                    continue;
                }
                core.signal_seen[signum] = count;
                for &index in &core.signal_watchers[signum] {
                    ids.push((core.entries.id_of(index), signum as u32));
                }
            }
        }
        ids.iter().filter(|&&(id, signum)| self.dispatch(id, Event::Signal { signum: signum as i32 })).count()
    }

    pub(super) fn deliver(&self, bytes: &[u8], topic_len: usize, ids: &mut Vec<(Id, u32)>) {
        let topic = CStr::from_bytes_with_nul(&bytes[..=topic_len]).expect("topic is NUL-terminated");
        let payload = &bytes[topic_len + 1..];
        ids.clear();
        {
            let core = self.lock();
            let mut indices = Vec::new();
            core.subscriptions.lookup(topic.to_str().unwrap_or(""), &mut indices);
            ids.extend(indices.iter().map(|&i| (core.entries.id_of(i), 0)));
        }
        for &(id, _) in ids.iter() {
            self.dispatch(id, Event::Topic { topic, payload });
        }
    }

    /// Calls the handler of registration `id`, if it is still live, without holding the
    /// core lock; then puts the handler back, or ends the registration. True if called.
    fn dispatch(&self, id: Id, mut event: Event<'_>) -> bool {
        let (mut handler, task_entry) = {
            let mut guard = self.lock();
            let Some(index) = guard.entries.index(id) else { return false };
            if let Kind::Process(_) = guard.entries.at(index).kind {
                // Its timer work, or a cancel before it forked: served by serve_process.
                drop(guard);
                return self.serve_process(index, 0, &mut Vec::new()) > 0;
            }
            let core = &mut *guard;
            let entry = core.entries.at_mut(index);
            if entry.cancelled || !entry.kind.accepts(&event) {
                return false;
            }
            let Some(handler) = entry.handler.take() else { return false };
            let mut is_task = false;
            if let Kind::Task(task) = &entry.kind {
                // Its wheel entry is its timeout; either way the task ends now.
                let cancelled = task.is_cancelled();
                if matches!(event, Event::Timer) {
                    task.cancel();
                    event = Event::Done {
                        status: if cancelled { task::CANCELLED } else { task::TIMEOUT },
                        result: &[],
                        message: None,
                    };
                } else if cancelled {
                    event = Event::Done { status: task::CANCELLED, result: &[], message: None };
                }
                is_task = true;
            }
            if is_task {
                // The task is over: its entry goes now (one lock per completion), and a
                // cancel from its own `done` finds nothing.
                self.unlink_timer(core, index);
                (handler, Some(core.entries.remove_at(index)))
            } else if let Kind::Timer { interval_ns } = core.entries.at(index).kind {
                if self.metrics.watched() {
                    self.metrics.timer_called(core.wheel.deadline_ns(index));
                }
                if interval_ns > 0 {
                    let now = sys::now_ns();
                    // Fixed rate: the next call is due one interval after this one's
                    // deadline; calls the loop was too late for are skipped.
                    let mut next = core.wheel.deadline_ns(index) + interval_ns;
                    if next <= now {
                        next += (now - next) / interval_ns * interval_ns + interval_ns;
                    }
                    core.wheel.insert(index, next);
                    self.rearm(core);
                }
                (handler, None)
            } else {
                (handler, None)
            }
        };
        if let Some(task) = task_entry {
            pool::deferring_wakeups(|| handler.call(self, id, event));
            // Dropped without the lock: a task's entry may end its user data (free_fn).
            drop(handler);
            drop(task);
            return true;
        }
        pool::deferring_scope(|scope| self.call_taken(id, handler, event, scope))
    }

    /// Calls `handler`, taken out of the live fd watch `id`, without the core lock; then
    /// parks it for the next lock to put back (parked.rs), or ends the registration if
    /// it was cancelled during the call. True (it was called).
    fn call_parking(&self, id: Id, index: u32, mut handler: H, event: Event<'_>, scope: &pool::Deferring<'_>) -> bool {
        scope.run(|| handler.call(self, id, event));
        if self.parked.park((id, index, handler)) {
            // A cancel during the call may have missed the park: settle under the lock
            // (which puts the handler back).
            let mut core = self.lock();
            self.parked.settled();
            let live = core.entries.index(id);
            let ended = live.filter(|&i| core.entries.at(i).cancelled && core.entries.at(i).handler.is_some());
            if let Some(index) = ended {
                // Dropped without the lock: its free function may call the loop.
                let entry = core.entries.remove_at(index);
                drop(core);
                drop(entry);
            }
        }
        true
    }

    /// Calls `handler`, taken out of the live registration `id` (not a task's), without
    /// the core lock; then puts it back, or ends the registration (cancelled during the
    /// call, or a one-shot timer). True (it was called).
    fn call_taken(&self, id: Id, mut handler: H, event: Event<'_>, scope: &pool::Deferring<'_>) -> bool {
        scope.run(|| handler.call(self, id, event));
        let mut core = self.lock();
        let index = core.entries.index(id).expect("an entry in a call stays in the slab");
        let entry = core.entries.at_mut(index);
        let one_shot = matches!(entry.kind, Kind::Timer { interval_ns: 0, .. });
        if !entry.cancelled && !one_shot {
            entry.handler = Some(handler);
            return true;
        }
        // Dropped without the lock: a task's entry may end its user data (free_fn).
        let entry = core.entries.remove_at(index);
        drop(core);
        drop(handler);
        drop(entry);
        true
    }
}

/// True for the key of an fd report (see `crate::watch`): a watch's id, or a shared fd.
fn is_fd_key(key: u64) -> bool {
    watch::is_watch_key(key) || (KEY_FD..KEY_PROC_PIPE).contains(&key)
}

/// Takes up to `max` cells off the front of `groups` whose records before their sequence
/// number have all been dispatched (`dispatched`): how many.
fn take_ready(groups: &mut std::collections::VecDeque<(u64, usize)>, dispatched: u64, max: usize) -> usize {
    let mut taken = 0;
    while taken < max {
        let Some(group) = groups.front_mut() else { break };
        if group.0 > dispatched {
            break;
        }
        let n = group.1.min(max - taken);
        group.1 -= n;
        taken += n;
        if group.1 == 0 {
            groups.pop_front();
        }
    }
    taken
}
