//! Process tasks and adopted children as registrations of the loop: the glue between
//! the loop's tables and `crate::process`, which supervises the children themselves
//! (see it for the child's side, the pipe protocol and the bookkeeping of bounds).
//!
//! A process task is a registration whose child the loop supervises: its pipe and
//! child watch (`sys::ChildWatch`) are members of the inner set (keys KEY_PROC_PIPE / KEY_PROC_EXIT with its
//! slab index), and its wheel entry serves its timeout, the SIGKILL after the grace
//! period and, without a child watch, the polling of its exit. `done` runs once the child is
//! reaped and its pipe drained, so a finished task leaves no zombie and no fd; or, for a
//! reused child, once it has sent the task's status and was handed the next task (whose
//! registration then owns the child, its fds re-keyed to it).
//!
//! A reused child is sent its next task ahead while it runs one (`send_ahead`, see
//! `crate::process::Supervisor`): the pass that reads its status then finds the child
//! already on the next task (`move_on`), rather than idle and waiting for this pass to
//! send it one (`hand_on`, which remains for a child that had nothing sent ahead).

use super::{
    registering, Core, Entry, Event, Handler, Kind, Loop, ProcTask, KEY_PROC_EXIT, KEY_PROC_PIPE, PIPE_BUDGET,
};
use crate::error::Result;
use crate::pool;
use crate::process;
use crate::slots::{Id, Slab};
use crate::sys;
use crate::task::{self, TaskWork};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

impl<H: Handler> Loop<H> {
    pub(super) fn add_process(
        &self,
        work: &mut Option<H::Work>,
        done: &mut Option<H>,
        timeout_ms: u64,
        mut plan: process::Plan,
    ) -> Result<Id> {
        if plan.max_children == 0 {
            plan.max_children = pool::cores();
        }
        let deadline_ns = process::deadline_ns(timeout_ms);
        let (id, index, fork_now) = {
            let mut core = self.lock();
            // Reserved first: a refused registration must hand the work back untouched.
            let (id, index) = self.register(&mut core, done, Kind::Reserved)?;
            // The snapshot is taken now if a slot is free and nobody waits before this
            // task; otherwise when a slot frees, on the loop thread.
            let (child, fork_now) = core.children.admit(index, plan, deadline_ns);
            core.entries.set_kind(index, Kind::Process(Box::new(ProcTask { child, work: work.take() })));
            self.schedule_child(&mut core, index);
            (id, index, fork_now)
        };
        if fork_now {
            if let Err(e) = self.fork_child(index) {
                // Nothing started: the registration is undone and the work handed back.
                let mut guard = self.lock();
                let core = &mut *guard;
                let fds = self.forget_child(core, index);
                Self::unwatch_child_fds(core, fds);
                self.unlink_timer(core, index);
                let entry = core.entries.remove_at(index);
                drop(guard);
                *done = entry.handler;
                if let Kind::Process(task) = entry.kind {
                    *work = task.work;
                }
                return Err(e);
            }
        }
        Ok(id)
    }

    /// Forks the child of the process task at `index` (in state Forking) on this thread,
    /// and starts supervising it. No lock is held during the fork (a host's fork runs
    /// the host's code).
    fn fork_child(&self, index: u32) -> Result<()> {
        let (host, reuse, work, queued, fork_seq, fds) = {
            let mut core = self.lock();
            let core = &mut *core;
            let Kind::Process(task) = &core.entries.at(index).kind else { unreachable!("a process task") };
            let (host, reuse) = task.child.fork_plan();
            // A reused child gets the works of the waiting tasks it may run later.
            let group = process::Child::group_of(host);
            let queued = if reuse { core.children.snapshot(group, |i| task_at(&core.entries, i)) } else { Vec::new() };
            // A reused child keeps every fd one of the tasks it may run keeps.
            let fds = if reuse {
                let indices =
                    core.children.snapshot(group, |i| (task_at(&core.entries, i).0, task_at(&core.entries, i).1, i));
                let all = indices.iter().map(|&(_, i)| child_in_ref(&core.entries, i).kept_fds());
                process::Fds::union(std::iter::once(task.child.kept_fds()).chain(all))
            } else {
                task.child.kept_fds().clone()
            };
            (host, reuse, work_of(&core.entries, index), queued, core.children.fork_seq(), fds)
        };
        let run = |work: *const H::Work, write_fd| {
            let mut task = task::Task::<'static, H>::in_child(write_fd);
            // SAFETY: see below.
            unsafe { (*work).run(&mut task) }
        };
        // SAFETY: the child runs the works through `Task`, whose pipe calls allocate
        // nothing. `work` points into the task's box, which stays in the slab while it
        // is Forking (nothing removes a Forking task); in the child it is the copy made by
        // the fork, as are the boxes of the `queued` tasks the parent will send it (those
        // still waiting then, so alive at the fork).
        let forked = unsafe {
            if reuse {
                process::fork_worker(host, &fds, work, queued, run)
            } else {
                process::fork_task(host, &fds, move |write_fd| run(work, write_fd))
            }
        }?;
        let mut core = self.lock();
        let core = &mut *core;
        child_in(&mut core.entries, index).forked(forked, fork_seq);
        Self::watch_child_fds(core, index);
        self.schedule_child(core, index);
        Self::send_ahead(core);
        Ok(())
    }

    /// Sends the first waiting task ahead, if none is and one waits, to the reused
    /// child that has run its task the longest of those that may run it next (see
    /// `crate::process::Supervisor`), to go on to once it has finished that one.
    fn send_ahead(core: &mut Core<H>) {
        if core.children.ahead().is_some() {
            return;
        }
        // The running tasks: those whose pipes are watched.
        let mut hosts: Vec<(u64, u32)> = Vec::new();
        for &(_, key) in &core.proc_fds {
            if key & !0xffff_ffff == KEY_PROC_PIPE {
                let index = (key & 0xffff_ffff) as u32;
                let child = child_in_ref(&core.entries, index);
                if child.can_send_ahead().is_some() {
                    hosts.push((child.started_ns(), index));
                }
            }
        }
        hosts.sort_unstable();
        let now = sys::now_ns();
        for (_, host) in hosts {
            let (fork_seq, group) = child_in(&mut core.entries, host).can_send_ahead().expect("checked above");
            let entries = &mut core.entries;
            let Some((next, seq)) = core.children.next_ahead(fork_seq, group, now, host, |i| child_in(entries, i))
            else {
                continue;
            };
            if !child_in(&mut core.entries, host).send_ahead(seq, next) {
                core.children.requeue(next, child_in(&mut core.entries, next));
            }
            return;
        }
    }

    /// Before another task starts: the task sent ahead, if its child has not taken it,
    /// waits at the head of the queue again (it comes first). Only if a task of its
    /// bound could start now (`slot`: a fresh fork; otherwise a ready child's turn).
    fn reclaim_ahead(&self, core: &mut Core<H>, slot: bool) {
        let Some(next) = core.children.ahead() else { return };
        if slot && !core.children.has_slot(child_in_ref(&core.entries, next).max_children()) {
            return;
        }
        let host = child_in_ref(&core.entries, next).ahead_of().expect("sent ahead");
        if child_in(&mut core.entries, host).take_back_ahead().is_ok() {
            self.requeue(core, next);
        }
    }

    /// A task sent ahead that its child never took waits at the head of the queue again;
    /// or, if it was cancelled or timed out meanwhile, ends in the next pass.
    fn requeue(&self, core: &mut Core<H>, next: u32) {
        let child = child_in(&mut core.entries, next);
        if !child.is_ending() {
            core.children.requeue(next, child);
            return;
        }
        core.children.taken_back(next, child);
        if core.wheel.is_linked(next) {
            core.wheel.remove(next);
        }
        core.wheel.insert(next, sys::now_ns());
        self.rearm(core);
    }

    /// The reused child of the task at `index` has finished it and gone on to the task
    /// sent ahead: that one runs in it from now on (its index is returned, with how
    /// many of the events read in this turn were this one's), and this one is over.
    fn move_on(&self, core: &mut Core<H>, index: u32) -> Option<(u32, usize)> {
        let (worker, next, events) = child_in(&mut core.entries, index).move_on()?;
        core.children.start_ahead(next, child_in(&mut core.entries, next));
        self.took_over(core, next, worker);
        Some((next, events))
    }

    /// The task at `next` runs in `worker`, the child its predecessor ran in: its fds are
    /// re-keyed to it. (`serve_process` serves it at once if what its child sent was
    /// read in its predecessor's turn, or else sends it its own next task ahead, once
    /// the predecessor has left its slot.)
    fn took_over(&self, core: &mut Core<H>, next: u32, worker: process::Worker) {
        child_in(&mut core.entries, next).take_over(worker);
        Self::rekey_child_fds(core, next);
        self.schedule_child(core, next);
    }

    /// After a cancel or timeout ended the task at `index`: a task sent ahead to its
    /// child and taken back waits at the head of the queue again; and the task itself,
    /// if it was sent ahead, is taken back from its child, if that has not taken it (it
    /// then ends as a waiting task does; otherwise it ends once it has started, killed).
    fn after_end(&self, core: &mut Core<H>, index: u32) {
        if let Some(next) = child_in(&mut core.entries, index).take_given_back() {
            self.requeue(core, next);
        }
        let child = child_in(&mut core.entries, index);
        if !child.is_ahead_and_ending() {
            return;
        }
        let host = child.ahead_of().expect("sent ahead");
        if child_in(&mut core.entries, host).take_back_ahead().is_ok() {
            core.children.taken_back(index, child_in(&mut core.entries, index));
        }
    }

    /// Cancels the process task at `index` (see `weft_cancel`): false if it was ending
    /// already. A child that runs it is killed (SIGTERM, SIGKILL after the grace
    /// period) and `done` runs once it is reaped; one not yet forked never will be.
    pub(super) fn cancel_process(&self, core: &mut Core<H>, index: u32) -> bool {
        if !child_in(&mut core.entries, index).end_with(task::CANCELLED, sys::now_ns()) {
            return false;
        }
        self.after_end(core, index);
        if child_in(&mut core.entries, index).is_waiting() {
            core.children.dequeue(index);
            // `done` on the loop thread, in its next pass.
            let id = core.entries.id_of(index);
            self.inbox.push(crate::inbox::Record::Done { id, status: task::CANCELLED });
        } else {
            self.schedule_child(core, index);
        }
        true
    }

    /// Stops supervising the process task at `index` (it ended, or its loop closes): a
    /// task sent ahead to its child that the child never took waits at the head of the
    /// queue again; if it was itself sent ahead, its host's child will not run it. Its
    /// pipe and exit watch are handed back (to take out of the poller, then close).
    pub(super) fn forget_child(&self, core: &mut Core<H>, index: u32) -> [Option<OwnedFd>; 2] {
        if let Some(next) = child_in(&mut core.entries, index).give_up_ahead() {
            self.requeue(core, next);
        }
        if let Some(host) = child_in(&mut core.entries, index).ahead_of() {
            child_in(&mut core.entries, host).forget_ahead();
        }
        core.children.forget(index, child_in(&mut core.entries, index))
    }

    /// Puts a process task's next timer event in the wheel (or takes it out).
    pub(super) fn schedule_child(&self, core: &mut Core<H>, index: u32) {
        let Kind::Process(task) = &core.entries.at(index).kind else { return };
        let next = task.child.next_timer_ns(sys::now_ns());
        if core.wheel.is_linked(index) {
            core.wheel.remove(index);
        }
        if let Some(at) = next {
            core.wheel.insert(index, at);
        }
        self.rearm(core);
    }

    /// Puts the pipe and child watch of the process task at `index` in the inner set.
    fn watch_child_fds(core: &mut Core<H>, index: u32) {
        let [pipe, exit] = child_in(&mut core.entries, index).fds();
        let fds = [(pipe, KEY_PROC_PIPE), (exit, KEY_PROC_EXIT)];
        let fds = fds.map(|(fd, key)| fd.map(|fd| (fd, key | index as u64)));
        for (fd, key) in fds.into_iter().flatten() {
            // Cannot fail for a fresh fd but for lack of memory; then the timer polls.
            if core.poller.add(fd, sys::READABLE, key).is_ok() {
                core.proc_fds.push((fd, key));
            }
        }
    }

    /// The pipe and child watch of a reused child now serve the task at `index`: their
    /// keys in the inner set say so.
    fn rekey_child_fds(core: &mut Core<H>, index: u32) {
        let [pipe, exit] = child_in(&mut core.entries, index).fds();
        for (fd, key) in [(pipe, KEY_PROC_PIPE), (exit, KEY_PROC_EXIT)] {
            let Some(fd) = fd else { continue };
            let key = key | index as u64;
            if core.poller.set(fd, sys::READABLE, key).is_ok() {
                if let Some(entry) = core.proc_fds.iter_mut().find(|(f, _)| *f == fd) {
                    entry.1 = key;
                }
            }
        }
    }

    /// A reused child finished the task at `index` and is ready: hands it the first
    /// waiting task if it may run it (whose index is returned), or tells it to exit.
    fn hand_on(&self, core: &mut Core<H>, index: u32) -> Option<u32> {
        let Some((fork_seq, group)) = child_in(&mut core.entries, index).ready_for_next() else {
            // Ready, but ending anyway (cancelled, timed out): it gets nothing more.
            child_in(&mut core.entries, index).release_if_ready();
            return None;
        };
        self.reclaim_ahead(core, false);
        let entries = &mut core.entries;
        let Some((next, seq)) = core.children.next_for(fork_seq, group, sys::now_ns(), |i| child_in(entries, i)) else {
            child_in(&mut core.entries, index).release_if_ready();
            return None;
        };
        match child_in(&mut core.entries, index).hand_on(seq) {
            Some(worker) => {
                self.took_over(core, next, worker);
                Some(next)
            }
            None => {
                core.children.give_back(next, child_in(&mut core.entries, next));
                child_in(&mut core.entries, index).release_if_ready();
                None
            }
        }
    }

    /// Takes a process task's fds out of the inner set, then closes them (in that order:
    /// a sibling child may hold a copy, and epoll keeps reporting a file closed while in
    /// the set).
    pub(super) fn unwatch_child_fds<const N: usize>(core: &mut Core<H>, fds: [Option<OwnedFd>; N]) {
        for fd in fds.into_iter().flatten() {
            let _ = core.poller.delete(fd.as_raw_fd());
            core.proc_fds.retain(|&(f, _)| f != fd.as_raw_fd());
        }
    }

    /// Serves the process task at `index`: reads its pipe, reaps its child, runs its
    /// timer work; delivers the events it sent and, once it is over, calls `done`.
    /// When its reused child has gone on to the next task, and that one's status was
    /// read in the same turn, serves that one too (and so on). Loop thread. Returns the
    /// number of callbacks run.
    pub(super) fn serve_process(&self, index: u32, key: u64, ids: &mut Vec<(Id, u32)>) -> usize {
        let mut events = Vec::new();
        // The tasks that ended, in order, each with the number of events read before
        // its end (its own and its predecessors', delivered before its done).
        let mut finished = Vec::new();
        {
            let mut core = self.lock();
            let core = &mut *core;
            if !core.entries.is_live(index) || !matches!(core.entries.at(index).kind, Kind::Process(_)) {
                return 0;
            }
            let child = child_in(&mut core.entries, index);
            match key {
                KEY_PROC_PIPE => {
                    let pipe = child.read_pipe(PIPE_BUDGET, &mut events);
                    Self::unwatch_child_fds(core, [pipe]);
                }
                KEY_PROC_EXIT => child.poll_exit(),
                _ => {
                    core.children.on_timer(index, child, sys::now_ns());
                    self.after_end(core, index);
                }
            }
            let mut index = index;
            loop {
                let fds = child_in(&mut core.entries, index).collect_exit(&mut events);
                Self::unwatch_child_fds(core, fds);
                // Its child finished the task: gone on to the one sent ahead (whose
                // events read in this turn come after this one's done), or ready for one.
                let (next, split) = if child_in(&mut core.entries, index).has_moved_on() {
                    self.move_on(core, index).map_or((None, events.len()), |(next, split)| (Some(next), split))
                } else {
                    (self.hand_on(core, index), events.len())
                };
                if child_in(&mut core.entries, index).is_over() && core.entries.at(index).handler.is_some() {
                    let id = core.entries.id_of(index);
                    finished.push((split, self.end_process(core, index, id)));
                } else {
                    self.schedule_child(core, index);
                }
                let Some(next) = next else { break };
                if !child_in(&mut core.entries, next).needs_service() {
                    break;
                }
                index = next; // its status (or its child's exit) was read in this turn too
            }
            // A task goes ahead, now that the one that ended has left its slot.
            Self::send_ahead(core);
        }
        let mut ran = 0;
        let mut delivered = 0;
        for (split, (id, mut handler, entry, status, result, message)) in finished {
            for event in &events[delivered..split.max(delivered)] {
                self.deliver(&event.bytes, event.topic_len, ids);
                ran += 1;
            }
            delivered = split.max(delivered);
            pool::deferring_wakeups(|| {
                handler.call(self, id, Event::Done { status, result: &result, message: message.as_deref() })
            });
            // Dropped without the lock: the work's end is the user data's (free_fn).
            drop(handler);
            drop(entry);
            ran += 1;
            self.start_waiting();
        }
        for event in &events[delivered..] {
            self.deliver(&event.bytes, event.topic_len, ids);
            ran += 1;
        }
        ran
    }

    /// Takes an ended process task out of the loop: its entry, handler and outcome.
    #[allow(clippy::type_complexity)]
    fn end_process(&self, core: &mut Core<H>, index: u32, id: Id) -> (Id, H, Entry<H>, i32, Vec<u8>, Option<String>) {
        self.unlink_timer(core, index);
        let fds = self.forget_child(core, index);
        Self::unwatch_child_fds(core, fds);
        let mut entry = core.entries.remove_at(index);
        let handler = entry.handler.take().expect("checked by the caller");
        let Kind::Process(task) = &mut entry.kind else { unreachable!("a process task") };
        let (status, result, message) = task.child.outcome();
        (id, handler, entry, status, result, message)
    }

    /// Forks waiting process tasks while their bounds allow. Loop thread.
    fn start_waiting(&self) {
        loop {
            let index = {
                let mut core = self.lock();
                let core = &mut *core;
                self.reclaim_ahead(core, true);
                let entries = &mut core.entries;
                let Some(index) = core.children.start_next(|index| child_in(entries, index)) else { return };
                index
            };
            if let Err(e) = self.fork_child(index) {
                // The task ends with the error; `done` runs in the next pass.
                let mut core = self.lock();
                child_in(&mut core.entries, index).fork_failed(e);
                if core.wheel.is_linked(index) {
                    core.wheel.remove(index);
                }
                core.wheel.insert(index, sys::now_ns());
                self.rearm(&mut core);
            }
        }
    }

    /// Supervises a child the host forked itself: it reports through `pipe_read_fd` (the
    /// protocol of [`crate::process`]), which the loop owns from now on.
    pub fn adopt_child(&self, pid: i32, pipe_read_fd: RawFd, done: H, timeout_ms: u64) -> Result<Id> {
        registering(done, |done| {
            self.usable()?;
            Self::check_delay("timeout_ms", timeout_ms)?;
            process::check_child(pid)?;
            process::check_read_fd(pipe_read_fd)?;
            let mut core = self.lock();
            // Reserved first: a refused registration must leave the fd the caller's.
            let (id, index) = self.register(&mut core, done, Kind::Reserved)?;
            // SAFETY: the caller hands the descriptor over (checked open above).
            let child = unsafe { process::Child::adopted(pid, pipe_read_fd, process::deadline_ns(timeout_ms)) };
            let core = &mut *core;
            core.entries.set_kind(index, Kind::Process(Box::new(ProcTask { child, work: None })));
            Self::watch_child_fds(core, index);
            self.schedule_child(core, index);
            Ok(id)
        })
    }
}

/// The work of the process task at `index` (it has one: it was spawned, not adopted).
fn work_of<H: Handler>(entries: &Slab<Entry<H>>, index: u32) -> *const H::Work {
    let Kind::Process(task) = &entries.at(index).kind else { unreachable!("a process task") };
    task.work.as_ref().expect("a spawned process task has its work")
}

/// What a reused child's snapshot holds of the waiting task at `index`.
fn task_at<H: Handler>(entries: &Slab<Entry<H>>, index: u32) -> (Option<process::Group>, u64, *const H::Work) {
    let Kind::Process(task) = &entries.at(index).kind else { unreachable!("a process task") };
    let (group, seq) = task.child.place();
    (group, seq, work_of(entries, index))
}

/// The child of the process task at `index`, to read.
fn child_in_ref<H: Handler>(entries: &Slab<Entry<H>>, index: u32) -> &process::Child {
    let Kind::Process(task) = &entries.at(index).kind else { unreachable!("a process task") };
    &task.child
}

/// The child of the process task at `index`.
pub(super) fn child_in<H: Handler>(entries: &mut Slab<Entry<H>>, index: u32) -> &mut process::Child {
    let Kind::Process(task) = &mut entries.at_mut(index).kind else { unreachable!("a process task") };
    &mut task.child
}
