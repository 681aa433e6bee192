//! Process tasks and adopted children as registrations of the loop: the glue between
//! the loop's tables and `crate::process`, which supervises the children themselves
//! (see it for the child's side, the pipe protocol and the bookkeeping of bounds).
//!
//! A process task is a registration whose child the loop supervises: its pipe and
//! child watch (`sys::ChildWatch`) are members of the inner set (keys KEY_PROC_PIPE / KEY_PROC_EXIT with its
//! slab index), and its wheel entry serves its timeout, the SIGKILL after the grace
//! period and, without a child watch, the polling of its exit. `done` runs once the child is
//! reaped and its pipe drained, so a finished task leaves no zombie and no fd.

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
        max_children: usize,
    ) -> Result<Id> {
        let max_children = if max_children == 0 { pool::cores() } else { max_children };
        let deadline_ns = process::deadline_ns(timeout_ms);
        let (id, index, fork_now) = {
            let mut core = self.lock();
            // Reserved first: a refused registration must hand the work back untouched.
            let (id, index) = self.register(&mut core, done, Kind::Reserved)?;
            // The snapshot is taken now if a slot is free and nobody waits before this
            // task; otherwise when a slot frees, on the loop thread.
            let (child, fork_now) = core.children.admit(index, max_children, deadline_ns);
            core.entries.at_mut(index).kind = Kind::Process(Box::new(ProcTask { child, work: work.take() }));
            self.schedule_child(&mut core, index);
            (id, index, fork_now)
        };
        if fork_now {
            if let Err(e) = self.fork_child(index) {
                // Nothing started: the registration is undone and the work handed back.
                let mut guard = self.lock();
                let core = &mut *guard;
                let fds = core.children.forget(index, child_in(&mut core.entries, index));
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
    /// and starts supervising it.
    fn fork_child(&self, index: u32) -> Result<()> {
        let work: *const H::Work = {
            let core = self.lock();
            let Kind::Process(task) = &core.entries.at(index).kind else { unreachable!("a process task") };
            task.work.as_ref().expect("a spawned process task has its work")
        };
        // SAFETY: the child runs the work through `Task`, whose pipe calls allocate
        // nothing. `work` points into the task's box, which stays in the slab while it
        // is Forking (nothing removes a Forking task), and in the child it is the copy
        // made by fork.
        let forked = unsafe {
            process::fork_task(move |write_fd| {
                let mut task = task::Task::<'static, H>::in_child(write_fd);
                (*work).run(&mut task)
            })
        }?;
        let mut core = self.lock();
        let core = &mut *core;
        child_in(&mut core.entries, index).forked(forked);
        Self::watch_child_fds(core, index);
        self.schedule_child(core, index);
        Ok(())
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
    /// Loop thread. Returns the number of callbacks run.
    pub(super) fn serve_process(&self, index: u32, key: u64, ids: &mut Vec<(Id, u32)>) -> usize {
        let mut events = Vec::new();
        let finished = {
            let mut core = self.lock();
            let core = &mut *core;
            if !core.entries.is_live(index) {
                return 0;
            }
            let id = core.entries.id_of(index);
            if !matches!(core.entries.at(index).kind, Kind::Process(_)) {
                return 0;
            }
            let now = sys::now_ns();
            let child = child_in(&mut core.entries, index);
            match key {
                KEY_PROC_PIPE => {
                    let pipe = child.read_pipe(PIPE_BUDGET, &mut events);
                    Self::unwatch_child_fds(core, [pipe]);
                }
                KEY_PROC_EXIT => child.poll_exit(),
                _ => core.children.on_timer(index, child, now),
            }
            let fds = child_in(&mut core.entries, index).collect_exit(&mut events);
            Self::unwatch_child_fds(core, fds);
            if child_in(&mut core.entries, index).is_over() && core.entries.at(index).handler.is_some() {
                Some(self.end_process(core, index, id))
            } else {
                self.schedule_child(core, index);
                None
            }
        };
        let mut ran = 0;
        for event in &events {
            self.deliver(&event.bytes, event.topic_len, ids);
            ran += 1;
        }
        if let Some((id, mut handler, entry, status, result, message)) = finished {
            pool::deferring_wakeups(|| {
                handler.call(self, id, Event::Done { status, result: &result, message: message.as_deref() })
            });
            // Dropped without the lock: the work's end is the user data's (free_fn).
            drop(handler);
            drop(entry);
            ran += 1;
            self.start_waiting();
        }
        ran
    }

    /// Takes an ended process task out of the loop: its entry, handler and outcome.
    #[allow(clippy::type_complexity)]
    fn end_process(&self, core: &mut Core<H>, index: u32, id: Id) -> (Id, H, Entry<H>, i32, Vec<u8>, Option<String>) {
        self.unlink_timer(core, index);
        let fds = core.children.forget(index, child_in(&mut core.entries, index));
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
            core.entries.at_mut(index).kind = Kind::Process(Box::new(ProcTask { child, work: None }));
            Self::watch_child_fds(core, index);
            self.schedule_child(core, index);
            Ok(id)
        })
    }
}

/// The child of the process task at `index`.
pub(super) fn child_in<H: Handler>(entries: &mut Slab<Entry<H>>, index: u32) -> &mut process::Child {
    let Kind::Process(task) = &mut entries.at_mut(index).kind else { unreachable!("a process task") };
    &mut task.child
}
