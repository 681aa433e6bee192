//! One process task as its loop supervises it, the parent's side: where it is (waiting
//! for a slot, being forked, running), its timeout and cancel, and the child process
//! that runs it ([`Worker`]: its pid, pipe, control socket, exit watch and the frames
//! read so far). A reused child passes from one task to the next (see
//! [`Supervisor`](super::Supervisor)); everything else here is one task's.
//!
//! The loop watches the pipe (non-blocking) and, where the kernel has it, a watch of the
//! child's exit ([`sys::ChildWatch`]). A task's result is complete when the child has
//! sent its status and, unless the child goes on to another task, has exited and its
//! pipe is drained (end of file, or no more data once the child is gone: a sibling
//! forked meanwhile may hold a copy of the write end, so end of file is not guaranteed).
//! Without an exit watch (Linux before 5.3), the loop polls `waitpid(pid, WNOHANG)` every
//! few milliseconds.

use super::exit::{describe, kill, reap, Exit};
use super::fork::{set_nonblocking, Fds, Forked, HostFork};
use super::protocol::{ChildEvent, Reader};
use crate::error::{Code, Error};
use crate::sys;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// How long a child gets between SIGTERM and SIGKILL.
const KILL_GRACE_NS: u64 = 250_000_000;
/// How often a child is polled for its exit where there is no watch of it.
const POLL_EXIT_NS: u64 = 5_000_000;

/// Where a supervised task is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Spawned, waiting for a free slot under its bound: not forked yet.
    Waiting,
    /// Being forked by the spawning thread or the loop thread right now.
    Forking,
    /// Forked (or adopted, or handed a reused child): the loop watches its child.
    Running,
    /// Its status came, and its child went on to the next task: over.
    HandedOn,
    /// Taken off the queue and sent ahead to the reused child of the task at `host`,
    /// which goes on to it once it has finished that one, without waiting for the loop.
    /// It runs from the moment that task's 'R' is read (or is taken back, and waits).
    Ahead,
}

/// How a task may share its child: tasks with the same group (the same host fork, or
/// none) and reuse set may run one after another in one child.
pub type Group = (usize, usize);

/// The child process that runs a task: moves to the next task when it is reused.
#[derive(Default)]
pub struct Worker {
    pid: i32,
    pipe: Option<OwnedFd>,
    /// Reused children only: the parent's end of the socket that sends the next task.
    control: Option<OwnedFd>,
    exit_watch: Option<sys::ChildWatch>,
    exit: Option<Exit>,
    reader: Reader,
    /// When SIGKILL follows SIGTERM (0: not asked).
    kill_at_ns: u64,
    /// The tasks it may run next were spawned before this sequence number (its fork).
    fork_seq: u64,
    /// Reused children only: the parent's copy of the child's end of the control socket,
    /// to take a task sent ahead back (`worker::take_back`).
    theirs: Option<OwnedFd>,
    /// The task sent ahead to it (the loop's index of its registration), until the
    /// child has gone on to it or it was taken back.
    next: Option<u32>,
    /// A protocol error in what the task sent ahead sent, read in its predecessor's
    /// turn: that task's failure once it takes over.
    broken: Option<(Code, String)>,
}

/// A process task's supervision (the loop thread, under its lock).
pub struct Child {
    state: State,
    /// The most process tasks of its loop that may run while this one starts.
    max_children: usize,
    /// Counted among its loop's running children (forked by weft, not adopted).
    counted: bool,
    /// Its place in spawn order (its loop's count of process tasks when it was spawned).
    seq: u64,
    /// Some: its child may run later tasks of the same group, and it may run in a child
    /// that ran earlier ones.
    reuse: Option<Group>,
    /// How its child is forked: None, weft's own fork.
    host_fork: Option<HostFork>,
    /// Which of the parent's fds its child keeps.
    fds: Fds,
    worker: Worker,
    /// A protocol error or a failed fork: the task ends with it.
    failure: Option<(Code, String)>,
    /// Set by cancel or timeout: the status `done` gets, whatever the child does.
    end: Option<i32>,
    /// HandedOn: its status and result.
    handed: Option<(i32, Vec<u8>)>,
    /// The timeout's deadline (0: none).
    deadline_ns: u64,
    /// Ahead: the task whose child it was sent to.
    host: u32,
    /// When it began to run in its child (Running; an estimate for a task sent ahead:
    /// when its 'R' was read).
    started_ns: u64,
    /// The task sent ahead to its child, taken back when a cancel or timeout ended it:
    /// for the loop to put back in the queue ([`take_given_back`](Self::take_given_back)).
    given_back: Option<u32>,
}

/// The deadline of a timeout of `timeout_ms` from now (0: none).
pub fn deadline_ns(timeout_ms: u64) -> u64 {
    if timeout_ms > 0 {
        crate::sys::now_ns() + timeout_ms * crate::timer::NS_PER_MS
    } else {
        0
    }
}

impl Child {
    /// The process task numbered `seq` in its loop, spawned with `plan`: waiting to be
    /// forked.
    pub(super) fn spawned(seq: u64, plan: super::Plan, deadline_ns: u64) -> Child {
        let mut child = Child::new(plan.max_children, deadline_ns);
        child.seq = seq;
        child.host_fork = plan.host_fork;
        child.reuse = plan.reuse.then(|| Child::group_of(plan.host_fork));
        child.fds = plan.fds;
        child
    }

    fn new(max_children: usize, deadline_ns: u64) -> Child {
        Child {
            state: State::Waiting,
            max_children,
            counted: false,
            seq: 0,
            reuse: None,
            host_fork: None,
            fds: Fds::default(),
            worker: Worker::default(),
            failure: None,
            end: None,
            handed: None,
            deadline_ns,
            host: 0,
            started_ns: 0,
            given_back: None,
        }
    }

    /// A child the host forked itself, reporting through `pipe_read_fd` (made
    /// non-blocking), which it owns from now on; it is not counted under a bound.
    ///
    /// # Safety
    /// `pipe_read_fd` is open and handed over: nothing else closes it.
    pub unsafe fn adopted(pid: i32, pipe_read_fd: RawFd, deadline_ns: u64) -> Child {
        set_nonblocking(pipe_read_fd);
        let mut child = Child::new(0, deadline_ns);
        child.state = State::Running;
        child.worker.pid = pid;
        // SAFETY: the caller hands the descriptor over (checked open).
        child.worker.pipe = Some(unsafe { OwnedFd::from_raw_fd(pipe_read_fd) });
        child.worker.exit_watch = sys::ChildWatch::new(pid);
        child
    }

    /// How its child is forked, and whether it may be reused.
    pub fn fork_plan(&self) -> (Option<HostFork>, bool) {
        (self.host_fork, self.reuse.is_some())
    }

    /// Which of the parent's fds its child keeps.
    pub fn kept_fds(&self) -> &Fds {
        &self.fds
    }

    /// The group of the tasks forked with `host` (see [`Group`]).
    pub fn group_of(host: Option<HostFork>) -> Group {
        host.map_or((0, 0), |h| h.group())
    }

    /// Its group if it may share a child, and its sequence number.
    pub fn place(&self) -> (Option<Group>, u64) {
        (self.reuse, self.seq)
    }

    /// The child (Forking) was forked, as a reused one if `fork_seq` is given: supervised
    /// from now on. A cancel that came while it was being forked is carried out now.
    pub fn forked(&mut self, forked: Forked, fork_seq: u64) {
        self.worker.pid = forked.pid;
        self.state = State::Running;
        self.worker.pipe = Some(forked.pipe);
        self.worker.control = forked.control;
        self.worker.theirs = forked.theirs;
        self.worker.exit_watch = forked.exit_watch;
        self.worker.fork_seq = fork_seq;
        self.started_ns = crate::sys::now_ns();
        if let Some(status) = self.end {
            // Cancelled while it was being forked.
            self.end = None;
            self.end_with(status, crate::sys::now_ns());
        }
    }

    /// Its fork failed: the task ends with `error` (and stays counted under its bound
    /// until the supervisor forgets it).
    pub fn fork_failed(&mut self, error: Error) {
        self.state = State::Waiting;
        self.failure = Some((error.code, error.message));
    }

    /// Takes a slot under its bound: it is being forked (or handed a reused child) now.
    pub(super) fn start_counted(&mut self) {
        self.state = State::Forking;
        self.counted = true;
    }

    /// Leaves its slot; true if it held one.
    pub(super) fn uncount(&mut self) -> bool {
        std::mem::take(&mut self.counted)
    }

    /// Waits for a slot again (a reused child it was to get had died).
    pub(super) fn back_to_waiting(&mut self) {
        self.state = State::Waiting;
    }

    /// The most process tasks of its loop that may run while it starts.
    pub fn max_children(&self) -> usize {
        self.max_children
    }

    /// True once its timeout's deadline has passed.
    pub(super) fn is_past_deadline(&self, now_ns: u64) -> bool {
        self.deadline_ns != 0 && now_ns >= self.deadline_ns
    }

    /// True while it waits for a slot, not forked yet.
    pub fn is_waiting(&self) -> bool {
        self.state == State::Waiting
    }

    /// The fds to watch: its pipe (readable: [`read_pipe`](Self::read_pipe)) and its
    /// exit watch (readable once it exits: [`poll_exit`](Self::poll_exit)), where it has them.
    pub fn fds(&self) -> [Option<RawFd>; 2] {
        [self.worker.pipe.as_ref().map(|fd| fd.as_raw_fd()), self.worker.exit_watch.as_ref().map(|w| w.as_raw_fd())]
    }

    /// Reads the pipe up to `budget` bytes (see `read`); once the pipe is done, hands it
    /// back, for the caller to take out of its poller, then close.
    pub fn read_pipe(&mut self, budget: usize, events: &mut Vec<ChildEvent>) -> Option<OwnedFd> {
        if self.read(budget, events) {
            self.worker.pipe.take()
        } else {
            None
        }
    }

    /// Its exit watch is readable: reaps it if it has exited.
    pub fn poll_exit(&mut self) {
        let worker = &mut self.worker;
        worker.exit = worker.exit.or_else(|| reap(worker.pid, false));
    }

    /// Once the child has exited, what it wrote is all in the pipe: reads the rest and
    /// hands back its pipe and exit watch (to take out of the poller, then close).
    pub fn collect_exit(&mut self, events: &mut Vec<ChildEvent>) -> [Option<OwnedFd>; 2] {
        if self.worker.exit.is_none() {
            return [None, None];
        }
        self.read(usize::MAX, events);
        self.worker.control = None;
        [self.worker.pipe.take(), self.worker.exit_watch.take().map(OwnedFd::from)]
    }

    /// Reads the pipe until it is empty, closed, or `budget` bytes were read (the rest
    /// then waits for the next pass). True when the pipe is done: end of file, or a
    /// protocol error; the caller takes it out of its poller, then closes it.
    fn read(&mut self, budget: usize, events: &mut Vec<ChildEvent>) -> bool {
        let Some(fd) = self.worker.pipe.as_ref().map(|p| p.as_raw_fd()) else { return true };
        let mut buf = [0u8; 64 << 10];
        let mut total = 0;
        loop {
            // SAFETY: reads into our stack buffer from our pipe.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                if let Err(e) = self.worker.reader.feed(&buf[..n as usize], events) {
                    let pid = self.worker.pid;
                    let failure = (Code::Crashed, format!("the child (pid {pid}) broke the pipe protocol: {e}"));
                    if self.worker.reader.has_finished() {
                        // After this task's end: the task sent ahead broke it.
                        self.worker.broken = Some(failure);
                    } else {
                        self.failure = Some(failure);
                    }
                    self.kill(libc::SIGKILL);
                    return true;
                }
                total += n as usize;
                if total >= budget {
                    return false;
                }
                continue;
            }
            if n < 0 {
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => return false,
                    _ => {}
                }
            }
            return true; // end of file (or a read error: nothing more will come)
        }
    }

    /// Signals the child, if it is running and not reaped.
    fn kill(&self, signal: i32) {
        if self.state == State::Running && self.worker.pid > 0 && self.worker.exit.is_none() {
            kill(self.worker.pid, signal);
        }
    }

    /// Ends the task with `status` (cancel or timeout): a running child gets SIGTERM now
    /// and SIGKILL after a grace period. False if it was ending already.
    pub fn end_with(&mut self, status: i32, now_ns: u64) -> bool {
        if self.end.is_some() || self.state == State::HandedOn {
            return false;
        }
        self.end = Some(status);
        if self.state == State::Running && self.worker.exit.is_none() {
            if self.worker.next.is_some() {
                match self.take_back_ahead() {
                    Ok(next) => self.given_back = Some(next),
                    // The child has finished this task (its 'R' is in the pipe) and runs
                    // the one sent ahead: nothing of this task's is left to kill.
                    Err(true) => return true,
                    // Not known: killed (the one sent ahead ends with it if it had it).
                    Err(false) => {}
                }
            }
            self.kill(libc::SIGTERM);
            self.worker.kill_at_ns = now_ns + KILL_GRACE_NS;
        }
        true
    }

    /// Timer work: the timeout, the SIGKILL after the grace, and (without an exit watch) a
    /// look at whether the child exited.
    pub(super) fn on_timer(&mut self, now_ns: u64) {
        if self.deadline_ns != 0 && now_ns >= self.deadline_ns {
            self.deadline_ns = 0;
            self.end_with(Code::Timeout as i32, now_ns); // task::TIMEOUT, named by its code: no import circle
        }
        let worker = &mut self.worker;
        if worker.kill_at_ns != 0 && now_ns >= worker.kill_at_ns {
            worker.kill_at_ns = 0;
            self.kill(libc::SIGKILL);
        }
        let worker = &mut self.worker;
        if self.state == State::Running && worker.exit_watch.is_none() && worker.exit.is_none() {
            worker.exit = reap(worker.pid, false);
        }
    }

    /// When the loop should next call `Supervisor::on_timer` (None: no need).
    pub fn next_timer_ns(&self, now_ns: u64) -> Option<u64> {
        let worker = &self.worker;
        let poll = (self.state == State::Running && worker.exit_watch.is_none() && worker.exit.is_none())
            .then_some(now_ns + POLL_EXIT_NS);
        [
            poll,
            (self.deadline_ns != 0).then_some(self.deadline_ns),
            (worker.kill_at_ns != 0).then_some(worker.kill_at_ns),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// True once the task can end: it never started and was cancelled or timed out, its
    /// child went on to the next task, or the child was reaped and its pipe drained
    /// ([`collect_exit`](Self::collect_exit)).
    pub fn is_over(&self) -> bool {
        match self.state {
            State::Waiting => self.end.is_some() || self.failure.is_some(),
            State::Forking => false,
            State::Running => self.worker.exit.is_some() && self.worker.pipe.is_none(),
            State::HandedOn => true,
            State::Ahead => false,
        }
    }

    /// The status for `done`, and the message for `weft_last_error` with it.
    pub fn outcome(&mut self) -> (i32, Vec<u8>, Option<String>) {
        if let Some(end) = self.end {
            // (A task ended while its child went on to the one sent ahead: handed on.)
            return (end, Vec::new(), None);
        }
        if let Some((status, result)) = self.handed.take() {
            return (status, result, None);
        }
        if let Some((code, message)) = self.failure.take() {
            return (code as i32, Vec::new(), Some(message));
        }
        let worker = &mut self.worker;
        match (worker.reader.status(), worker.exit) {
            (Some(status), _) => (status, worker.reader.take_result(), None),
            (None, exit) => {
                (Code::Crashed as i32, Vec::new(), Some(describe(worker.pid, exit.unwrap_or(Exit::Unknown), false)))
            }
        }
    }

    /// Kills and reaps a running child (its loop is being freed).
    pub fn kill_and_reap(&mut self) {
        let worker = &mut self.worker;
        if self.state == State::Running && worker.pid > 0 && worker.exit.is_none() {
            kill(worker.pid, libc::SIGKILL);
            worker.exit = reap(worker.pid, true);
        }
    }

    // ---- reuse ---------------------------------------------------------------------

    /// A reused child that finished this task and may run another: its fork's sequence
    /// number (it may run tasks spawned before it) and its group. None: it may not.
    pub fn ready_for_next(&self) -> Option<(u64, Group)> {
        let ready = self.reusable() && self.worker.reader.is_ready();
        ready.then(|| (self.worker.fork_seq, self.reuse.unwrap_or_default()))
    }

    /// A running reused child, alive and not ending, its pipes open, with no task sent
    /// ahead to it: what both handing on and sending ahead ask first.
    fn reusable(&self) -> bool {
        let worker = &self.worker;
        self.state == State::Running
            && self.end.is_none()
            && self.failure.is_none()
            && worker.exit.is_none()
            && worker.pipe.is_some()
            && worker.control.is_some()
            && worker.next.is_none()
    }

    /// Sends the child (ready: see [`ready_for_next`](Self::ready_for_next)) the task
    /// numbered `seq`: on success this task is over (HandedOn, its outcome kept) and the
    /// child is returned, for the next task's [`take_over`](Self::take_over). None: the
    /// child is gone; it stays this task's, and the next task goes back to the queue.
    pub fn hand_on(&mut self, seq: u64) -> Option<Worker> {
        let control = self.worker.control.as_ref()?;
        sys::send_all(control.as_raw_fd(), &seq.to_le_bytes()).ok()?;
        let status = self.worker.reader.status().expect("a ready child sent its status");
        self.handed = Some((status, self.worker.reader.take_result()));
        self.state = State::HandedOn;
        let mut worker = std::mem::take(&mut self.worker);
        worker.reader.next_task();
        Some(worker)
    }

    /// This task (taken off the waiting queue, or sent ahead) runs in `worker` from now
    /// on. A cancel or timeout that came while it was sent ahead is carried out now.
    pub fn take_over(&mut self, worker: Worker) {
        debug_assert_eq!(self.state, State::Forking);
        self.worker = worker;
        self.state = State::Running;
        self.started_ns = crate::sys::now_ns();
        if let Some(failure) = self.worker.broken.take() {
            self.failure = Some(failure);
        }
        if let Some(status) = self.end.take() {
            self.end_with(status, crate::sys::now_ns());
        }
    }

    // ---- tasks sent ahead ------------------------------------------------------------

    /// A reused child running this task, to which the next task may be sent ahead (it
    /// has none, and is not ending): its fork's sequence number and group.
    pub fn can_send_ahead(&self) -> Option<(u64, Group)> {
        let worker = &self.worker;
        let can = self.reusable()
            && !worker.reader.is_ready()
            && !worker.reader.has_finished()
            // (A number sent to it for the task it runs may be unread yet: then not.)
            && worker.theirs.as_ref().is_some_and(|fd| super::worker::has_read_all(fd.as_raw_fd()));
        can.then(|| (worker.fork_seq, self.reuse.unwrap_or_default()))
    }

    /// Sends the child (see [`can_send_ahead`](Self::can_send_ahead)) the task numbered
    /// `seq`, at the loop's index `next`, to go on to once it has finished this one.
    /// False: the child is gone (nothing was sent).
    pub fn send_ahead(&mut self, seq: u64, next: u32) -> bool {
        let Some(control) = self.worker.control.as_ref() else { return false };
        if sys::send_all(control.as_raw_fd(), &seq.to_le_bytes()).is_err() {
            return false;
        }
        self.worker.next = Some(next);
        self.worker.reader.send_ahead();
        true
    }

    /// When it began to run in its child (see `started_ns`).
    pub fn started_ns(&self) -> u64 {
        self.started_ns
    }

    /// This task was sent ahead to the child of the task at `host`.
    pub fn sent_ahead_to(&mut self, host: u32) {
        self.state = State::Ahead;
        self.host = host;
    }

    /// Sent ahead: the task at whose child it waits.
    pub fn ahead_of(&self) -> Option<u32> {
        (self.state == State::Ahead).then_some(self.host)
    }

    /// Sent ahead, and cancelled or timed out since.
    pub fn is_ahead_and_ending(&self) -> bool {
        self.state == State::Ahead && self.end.is_some()
    }

    /// Cancelled or timed out (its `done` gets that status).
    pub fn is_ending(&self) -> bool {
        self.end.is_some()
    }

    /// Takes back the task sent ahead to this task's child, if the child has not taken
    /// it: Ok(its index): it never runs there. Err(true): the child has it; Err(false):
    /// none was sent, or it cannot be told.
    pub fn take_back_ahead(&mut self) -> std::result::Result<u32, bool> {
        let worker = &mut self.worker;
        let (Some(theirs), Some(next)) = (worker.theirs.as_ref(), worker.next) else { return Err(false) };
        match super::worker::take_back(theirs.as_raw_fd()) {
            Some(true) => {
                worker.reader.take_back();
                worker.next = None;
                Ok(next)
            }
            Some(false) => Err(true),
            None => Err(false),
        }
    }

    /// Forgets the task sent ahead to this task's child (its loop closes): taken back,
    /// or else the child, which runs it for nobody now, is killed.
    pub fn forget_ahead(&mut self) {
        if self.worker.next.is_some() && self.take_back_ahead().is_err() {
            self.worker.next = None;
            self.worker.reader.take_back();
            kill(self.worker.pid, libc::SIGKILL);
        }
    }

    /// The task sent ahead to this task's child that a cancel or timeout took back: for
    /// the queue again.
    pub fn take_given_back(&mut self) -> Option<u32> {
        self.given_back.take()
    }

    /// The task sent ahead to this task's child, which this task, being forgotten, gives
    /// up: for the queue again. Its child never took it when the task is over (it ended
    /// without sending this task's 'R', so it never read the number); when its loop
    /// closes, the child is killed anyway.
    pub fn give_up_ahead(&mut self) -> Option<u32> {
        self.given_back.take().or_else(|| self.worker.next.take())
    }

    /// A task that was sent ahead and taken back: it waits for a slot (the caller puts it
    /// back in the queue, or ends it if it was cancelled).
    pub(super) fn unsend(&mut self) {
        self.state = State::Waiting;
    }

    /// True once the child has finished this task and gone on to the one sent ahead.
    pub fn has_moved_on(&self) -> bool {
        self.worker.reader.has_finished()
    }

    /// The child has gone on to the task sent ahead (see
    /// [`has_moved_on`](Self::has_moved_on)): this task is over (HandedOn, its outcome
    /// kept), and the child is returned with the index of the task it runs now, for that
    /// task's [`take_over`](Self::take_over); and how many of the events read in this
    /// turn were this task's (the rest are the next one's).
    pub fn move_on(&mut self) -> Option<(Worker, u32, usize)> {
        if !self.worker.reader.has_finished() {
            return None;
        }
        let next = self.worker.next.take()?;
        let (status, result, events) = self.worker.reader.take_finished()?;
        self.handed = Some((status, result));
        self.state = State::HandedOn;
        Some((std::mem::take(&mut self.worker), next, events))
    }

    /// True if the task needs the loop's attention now rather than at its next event:
    /// what its child sent was read in its previous task's turn (its status, or its
    /// going on to the next task), or its child has exited.
    pub fn needs_service(&self) -> bool {
        let worker = &self.worker;
        worker.reader.is_ready() || worker.reader.has_finished() || worker.exit.is_some()
    }

    /// A reused child that has finished its task and gets no other: told to exit (its
    /// task ends once it is reaped).
    pub fn release_if_ready(&mut self) {
        if !self.worker.reader.is_ready() {
            return;
        }
        if let Some(control) = self.worker.control.take() {
            let _ = sys::send_all(control.as_raw_fd(), &0u64.to_le_bytes());
        }
    }

    /// Gives up the child's fds (to take out of the poller, then close).
    pub(super) fn take_fds(&mut self) -> [Option<OwnedFd>; 2] {
        self.worker.control = None;
        self.worker.theirs = None;
        [self.worker.pipe.take(), self.worker.exit_watch.take().map(OwnedFd::from)]
    }
}
