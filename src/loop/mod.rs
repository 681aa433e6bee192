//! The event loop: registrations (timers, fd and signal watches, subscriptions), the
//! inbox, and the passes that dispatch them.
//!
//! # Threads
//!
//! Every method takes `&self` and may be called from any thread. Registrations live in
//! `core`, behind a mutex that the loop thread holds only for bookkeeping, never while a
//! callback (or a free function) runs, so callbacks may call back into the loop. A
//! callback's handler is taken out of its entry for the duration of the call; a cancel
//! that arrives meanwhile marks the entry, and the dispatcher drops the handler (running
//! its free function) once the call returns. (A pass that calls one fd watch leaves
//! its handler parked until the next lock of `core` puts it back: parked.rs.) `run`
//! holds the `runner` mutex for its whole duration, which is how a second or
//! re-entrant `run` is detected (`Busy`).
//!
//! One kind of registration lives outside `core`: a task spawned on a pool without a
//! timeout by the loop's owner: the thread running the loop (from a callback), or,
//! while no thread runs it, the thread making the call (owner.rs says how). The owner
//! keeps its state ([`owner::Own`]: the task's `done` handler, the loop's feeders) and
//! its cell sits in the loop's task table ([`task::Table`]), which other threads reach
//! only to cancel a task; so the common spawn, in a callback, before `run` or between
//! two non-blocking passes, takes no lock at all.
//!
//! # What wakes the loop
//!
//! One poller (the inner set, a [`sys::Poller`]) holds the watched fds, a timer wake-up
//! ([`sys::TimerWake`]) armed at the wheel's next deadline, the inbox's bell and the
//! signal bell ([`sys::Bell`]s); the loop waits on it. An outer poller holds only the
//! inner one (from the first time a host asks for it: a member costs the kernel work
//! for every readiness change, see [`sys::Outer`]), and is the fd an embedding host
//! watches: it is readable whenever a non-blocking pass has work. The indirection lets the loop replace the inner set,
//! which it does when a watched fd was closed while another copy of it stayed open
//! (dup, fork): epoll keeps such a file in the set under an fd number that no longer
//! names it, so it can neither be removed nor silenced otherwise. A registration made
//! from another thread wakes a blocked loop through the same set (an earlier deadline
//! re-arms the timer wake-up; a new fd is a new member); a cancel that leaves nothing
//! registered rings the inbox bell so that `run(Default)` can notice and return.
//!
//! # Files
//!
//! * `mod.rs`: the public types ([`Loop`], [`Handler`], [`Event`], [`RunMode`],
//!   [`SpawnOptions`]), the loop's state (`Core` under the lock, `Runner` for the thread
//!   running it), making the loop, the inner set, and `close`.
//! * `entries.rs`: the slab of registrations, whose count `alive` reads without a lock.
//! * `owner.rs`: the loop's owner and its state (`Own`): who may register without the
//!   core lock, and when.
//! * `parked.rs`: the handler of the fd watch a pass called, parked until the core's
//!   next lock (one lock per pass, not two).
//! * `register.rs`: timers, fd and signal watches, subscriptions, posts, and cancel.
//! * `spawn.rs`: tasks on the loop and on pools: spawning them, and serving their
//!   completions (`done`).
//! * `children.rs`: process tasks and adopted children as registrations: their fds in
//!   the inner set, their wheel entries, their `done`. Supervising the children
//!   themselves (forking, reaping, timeouts, kill, `max_children`) is
//!   `crate::process`'s, driven through its methods.
//! * `pass.rs`: running: `run`, its passes, and dispatching a ready registration.
//! * `thread.rs`: a number for the calling thread, which says who owns and who runs
//!   the loop.
//! * `labels.rs`: names programs give registrations, for the reports that name them.
//! * `stats.rs`: watching the loop: its statistics (its counters, queue depths,
//!   registrations) and its watchdog.
//!
//! The files share the state defined here and nothing else: each one changes a
//! registration's state only through the tables of `Core` (the slab, the wheel, the fd,
//! signal and topic indexes) and the other modules' methods; none writes a field of
//! another module's type (a task cell, a child, the inbox, a pool).

mod children;
mod entries;
mod labels;
mod owner;
mod parked;
mod pass;
mod register;
mod spawn;
mod stats;
mod thread;

use crate::bus::{self, Pattern};
use crate::error::{Code, Error, Result};
use crate::fork;
use crate::inbox::Inbox;
use crate::metrics::Metrics;
use crate::pool::{self, Pool};
use crate::process;
use crate::signal;
use crate::slots::{self, Generational, Id};
use crate::sys::{self, Bell, Events, Outer, Poller, TimerWake, WaitSlot};
use crate::task::{self, TaskCell, TaskRef, TaskWork};
use crate::timer::{self, Wheel};
use crate::watch::{self, fd_key, FdTable};
use crate::watchdog::Watchdog;
use entries::Entries;
use owner::Owner;
pub(crate) use parked::Parked;
pub use stats::Stats;
use std::ffi::CStr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use thread::thread_number;

/// What a registration's handler is told when it is called.
#[derive(Debug)]
pub enum Event<'a> {
    Timer,
    Post,
    Fd {
        fd: RawFd,
        events: u32,
    },
    Signal {
        signum: i32,
    },
    /// `topic` is NUL-terminated; `payload` is the copy made by `emit`.
    Topic {
        topic: &'a CStr,
        payload: &'a [u8],
    },
    /// A task finished: `status` is what its work returned (>= 0), or `Cancelled` /
    /// `Timeout` (as negative codes); `result` is what it wrote. `message` says more
    /// when a process task ended `Crashed` (the signal, the exit code).
    Done {
        status: i32,
        result: &'a [u8],
        message: Option<&'a str>,
    },
}

/// The callback of a registration and the data it owns. Dropping the handler is the
/// registration's end (the C layer runs `free_fn` in `Drop`), so it happens exactly once:
/// after the last call, on cancel, or when the loop is closed.
pub trait Handler: Send + Sized + 'static {
    /// What a task spawned with this kind of handler runs (see [`task::TaskWork`]).
    type Work: TaskWork<Self> + 'static;

    fn call(&mut self, lp: &Loop<Self>, id: Id, event: Event<'_>);

    /// The registration was refused: the caller keeps what the handler refers to, so
    /// its end must not run (the C layer does not call `free_fn`).
    fn refused(self) {}

    /// This handler as two words, when its drop does nothing (C's callback and user
    /// data, without a `free_fn`): a one-shot timer then keeps it in 16 bytes, and the
    /// owner's cancel forgets it unread (crate::timer::Pack).
    fn pack(&self) -> Option<[usize; 2]> {
        None
    }

    /// The handler [`pack`](Handler::pack) gave `words` for. Safety: `words` came from
    /// `pack` of a handler that was then forgotten; once.
    #[allow(clippy::missing_safety_doc)]
    unsafe fn unpack(words: [usize; 2]) -> Self {
        let _ = words;
        unreachable!("a handler that does not pack was unpacked")
    }
}

/// Runs a registration with the handler in an Option it may take; a handler still there
/// afterwards was refused.
fn registering<H: Handler>(handler: H, f: impl FnOnce(&mut Option<H>) -> Result<Id>) -> Result<Id> {
    let mut slot = Some(handler);
    let result = f(&mut slot);
    if let Some(handler) = slot {
        handler.refused();
    }
    result
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunMode {
    /// Run until stopped or nothing is registered.
    Default,
    /// Wait for something to be ready, then make one pass.
    Once,
    /// Make one pass over what is ready now, without waiting.
    NoWait,
}

enum Kind<H: Handler> {
    /// Its deadline is in the wheel; 0 is a one-shot timer.
    Timer {
        interval_ns: u64,
    },
    Fd {
        fd: RawFd,
        interest: u32,
    },
    Signal {
        signum: i32,
    },
    /// Boxed to keep every registration at 48 bytes.
    Subscription {
        pattern: Box<Pattern>,
    },
    /// A task in flight (the cell the loop lent for it); in the wheel too with a timeout.
    Task(TaskRef<H, H::Work>),
    /// A process task or an adopted child; in the wheel for its timeout and kill.
    Process(Box<ProcTask<H::Work>>),
    /// A slot taken before what it will hold exists: a task's cell needs the id, and a
    /// refused registration must leave the caller's work (or fd) untouched. It gets its
    /// kind before the lock is released, so no pass, cancel or close ever sees it.
    Reserved,
}

/// A process task: its child, and its work (None for an adopted child), which ends its
/// user data when dropped.
struct ProcTask<W> {
    child: process::Child,
    work: Option<W>,
}

/// Where `queue_task` queues a task.
#[derive(Clone, Copy)]
enum Target<'a> {
    Loop,
    Pool(&'a Pool),
    Cached { key: usize, kind: pool::Kind, resolve: &'a dyn Fn() -> Result<Arc<Pool>> },
}

/// How `lend_task` hands a task's job over.
enum Submit<'a> {
    Loop,
    /// Under the loop's lock, which serialises the feeder's pushes.
    Feeder(&'a pool::Feeder),
    /// After the lock is released (an IO pool's submission may start a thread).
    Pool(&'a Pool),
}

/// Finds the pool a handle names (see [`SpawnOptions::pool_handle`]).
pub type PoolLookup<'a> = &'a dyn Fn() -> Result<Arc<Pool>>;

/// A pool spawned on lately: its key, the pool epoch when cached, the pool, and for a
/// CPU pool the loop's feeder of it (`F`).
type CachedPool<F> = (usize, u64, Arc<Pool>, Option<F>);

/// How a task is spawned.
#[derive(Clone, Default)]
pub struct SpawnOptions<'a> {
    /// 0: no timeout.
    pub timeout_ms: u64,
    /// The pool for `Where::Io` / `Where::Cpu` instead of the default one.
    pub pool: Option<&'a Pool>,
    /// The same, named by a handle (the C API's pool pointer): its address, and how to
    /// find the pool. The loop keeps the pools it spawned on lately by handle, so a
    /// spawn finds them without a lookup (see [`task::pools_changed`]).
    pub pool_handle: Option<(usize, PoolLookup<'a>)>,
    /// `Where::Process`: start only while fewer of the loop's process tasks run (0: one
    /// per core).
    pub max_children: usize,
    /// `Where::Process`: the child may run later such tasks, and the task may run in a
    /// child that ran earlier ones (see `crate::process::Supervisor`).
    pub reuse_child: bool,
    /// `Where::Process`: the host's fork instead of weft's.
    pub host_fork: Option<process::HostFork>,
    /// `Where::Process`: which of this process's fds the child keeps (default: none
    /// above stderr but its own pipes).
    pub fds: process::Fds,
}

impl<H: Handler> Kind<H> {
    /// Whether this kind of registration is called with `event`: a late record for an
    /// id whose slot now holds another kind is dropped, never handed to a callback of
    /// another signature.
    fn accepts(&self, event: &Event<'_>) -> bool {
        matches!(
            (self, event),
            (Kind::Timer { .. }, Event::Timer)
                | (Kind::Task(_), Event::Timer | Event::Done { .. })
                | (Kind::Process(_), Event::Timer | Event::Done { .. })
                | (Kind::Fd { .. }, Event::Fd { .. })
                | (Kind::Signal { .. }, Event::Signal { .. })
                | (Kind::Subscription { .. }, Event::Topic { .. })
        )
    }
}

struct Entry<H: Handler> {
    /// None while the handler is being called.
    handler: Option<H>,
    generation: u32,
    /// Cancelled during its call: the dispatcher ends it when the call returns.
    cancelled: bool,
    kind: Kind<H>,
}

impl<H: Handler> Generational for Entry<H> {
    fn generation(&self) -> u32 {
        self.generation
    }
}

struct Core<H: Handler> {
    entries: Entries<H>,
    /// The inner set; see the module comment.
    poller: Poller,
    /// The inner set holds a file no watch wants and no call can remove.
    polluted: bool,
    /// Keys the inner set stopped reporting fds under during this pass (the fd was
    /// taken out, or re-keyed): a report under one of them from the pass's wait is
    /// stale, not a sign of a polluted set.
    unwatched: Vec<u64>,
    wheel: Wheel,
    /// The deadline the timer wake-up is armed for (also in `Loop::armed_hint`).
    armed_ns: Option<u64>,
    fds: FdTable,
    subscriptions: bus::Index,
    /// Signal watches by signal number, and the count last seen for each.
    signal_watchers: Vec<Vec<u32>>,
    signal_seen: Vec<u64>,
    signal_bell_slot: Option<usize>,
    /// Process tasks waiting for a slot, and how many of them run.
    children: process::Supervisor,
    /// The inner set's members for process tasks (pipes and child watches), by key.
    proc_fds: Vec<(RawFd, u64)>,
    /// Task cells: spares, and how many have been lent.
    cells: task::Cells<H, H::Work>,
    /// Pools spawned on lately: (key, the pool epoch when cached, pool, and for a CPU
    /// pool the loop's feeder of it); keys are pool handles' addresses or
    /// `task::DEFAULT_CPU` / `DEFAULT_IO`.
    pools: Vec<CachedPool<pool::Feeder>>,
}

/// A task cell back from its pool, waiting in the runner to be served.
type Cell<H> = std::ptr::NonNull<TaskCell<H, <H as Handler>::Work>>;

/// Scratch space of the thread running the loop.
struct Runner<H: Handler> {
    events: Events,
    ids: Vec<(Id, u32)>,
    indices: Vec<u32>,
    /// The owner's timers due in this pass.
    due: Vec<timer::Entry>,
    /// Keys of process tasks ready in this pass.
    procs: Vec<u64>,
    /// The watches to call for this pass's ready fds: (id, fd, events).
    watchers: Vec<(Id, RawFd, u32)>,
    /// Task cells given back and not yet served (oldest first), in groups that may be
    /// served once the inbox's records before a sequence number have been dispatched:
    /// (that number, how many cells).
    done: std::collections::VecDeque<Cell<H>>,
    groups: std::collections::VecDeque<(u64, usize)>,
    /// The inbox's records before this sequence number have been dispatched.
    dispatched: u64,
    /// How many cells have been taken back since the loop was made.
    returned: u64,
    /// Scratch: completions to deliver, cells to recycle.
    deliver: Vec<(Id, H, Cell<H>)>,
    spare: Vec<Cell<H>>,
    /// A buffer above may hold more than `shrink::FLOOR` entries' room (as of the last
    /// pass that looked): the next pass looks again.
    oversized: bool,
}

// SAFETY: the task cells a runner holds are its loop's alone (taken back from pools).
unsafe impl<H: Handler> Send for Runner<H> {}

const KEY_INBOX: u64 = 0;
const KEY_TIMER: u64 = 1;
const KEY_SIGNAL: u64 = 2;
/// A watched fd shared by several watches: the low 32 bits are the fd. An fd with one
/// watch is reported under that watch's id, above every `KEY_*` (see `crate::watch`).
const KEY_FD: u64 = watch::SHARED_KEY;
/// A process task's pipe and its child watch: the key's low 32 bits are its slab index.
const KEY_PROC_PIPE: u64 = 2 << 32;
const KEY_PROC_EXIT: u64 = 3 << 32;
/// A loop woken by finished tasks alone yields before serving them (see `pass`) unless a
/// timer is due within this much: a few scheduler time slices.
const YIELD_TIMER_GAP_NS: u64 = 5_000_000;
/// How much of a child's output one pass reads (then other work gets its turn).
const PIPE_BUDGET: usize = 4 << 20;

/// Keeps a field on cache lines of its own.
#[repr(align(64))]
struct Aligned<T>(T);

pub struct Loop<H: Handler> {
    tag: u16,
    /// On lines of its own (as is `runner`): the loop thread locks and updates it in
    /// every pass, and the fields that other threads read for every post (`tag`,
    /// `inbox`, `closed`) must not share a line with it (when a change of Core's size
    /// happened to put them together, cross_thread_post lost about a tenth).
    core: Aligned<Mutex<Core<H>>>,
    /// The handler of the last fd watch a pass called, until the core's next lock
    /// (parked.rs): (its id, its slab index, the handler).
    parked: Parked<(Id, u32, H)>,
    inbox: Arc<Inbox<H>>,
    /// How many registrations the core's slab holds (see [`Entries`]).
    registrations: Arc<AtomicUsize>,
    /// The host-facing fd; holds the inner set.
    outer: Outer,
    /// The inner set's waiter, for waiting without the core lock (replaced on this thread).
    inner: WaitSlot,
    timer: TimerWake,
    signal_bell: Bell,
    runner: Aligned<Mutex<Runner<H>>>,
    stop: AtomicBool,
    /// Completions a pass limit held back when `run` last returned (they are in the
    /// runner, not the inbox): a pass has work.
    held_back: AtomicBool,
    /// True while `run` runs: a cancel that leaves nothing registered must wake it.
    running: AtomicBool,
    /// The thread running the loop (see [`thread_number`]), 0 when none.
    runner_thread: AtomicU64,
    closed: AtomicBool,
    /// Tasks spawned by the loop's owner (see [`task::Table`]), and the owner's side of
    /// them (owner.rs).
    table: task::Table<H, H::Work>,
    owner: Owner<H>,
    /// How many tasks of the table are live: written by the owner, read by `alive`.
    table_live: AtomicUsize,
    /// The owner's timers (register.rs): their records, which any thread may cancel.
    timers: timer::Table<H>,
    /// How many of them are live (written by the owner), and how many of those other
    /// threads cancelled and the owner has not yet met: `alive` tells from the two.
    timers_live: AtomicUsize,
    timers_foreign: AtomicUsize,
    /// When the owner's wheel next has work (u64::MAX: never), published by the owner
    /// for `rearm` and `timeout_ms`, which take the earlier of it and the core wheel's.
    own_next: AtomicU64,
    /// The earlier of the wheels' next deadlines when the wake-up was last armed
    /// (u64::MAX: none), for the owner to read without the lock.
    armed_hint: AtomicU64,
    /// The timer wake-up is armed no earlier than this (register.rs: pacing).
    pace_ns: AtomicU64,
    /// The slow-callback watchdog (off until set; see `crate::watchdog`).
    watchdog: Watchdog,
    /// The loop thread's counters, for `stats` (see `crate::metrics`).
    metrics: Metrics,
    /// Registrations' names (labels.rs).
    labels: labels::Labels,
}

/// Releases a reserved tag unless the loop was made after all.
struct TagGuard(u16);

impl Drop for TagGuard {
    fn drop(&mut self) {
        slots::release_tag(self.0);
    }
}

impl<H: Handler> Drop for Loop<H> {
    fn drop(&mut self) {
        if fork::is_child() {
            return; // another thread may have held the locks below at the fork
        }
        let _ = self.close(); // signal watches must leave the handler's list
        slots::release_tag(self.tag);
    }
}

fn io_error(what: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::io(what, e)
}

impl<H: Handler> Loop<H> {
    pub fn new() -> Result<Loop<H>> {
        fork::check()?;
        fork::install();
        let tag = slots::new_tag()
            .ok_or_else(|| Error::new(Code::Busy, "4095 loops are alive, the most weft can tell apart"))?;
        let tag = TagGuard(tag);
        let timer = TimerWake::new().map_err(io_error(sys::call::TIMER))?;
        let signal_bell = Bell::new().map_err(io_error(sys::call::BELL))?;
        let inbox = Inbox::new().map_err(io_error(sys::call::BELL))?;
        let poller = Self::inner_set(&inbox, &timer, &signal_bell, &FdTable::default(), &[])?;
        let outer =
            Outer::new(&poller, (inbox.bell_fd(), inbox.bell_ring_fd())).map_err(io_error(sys::call::POLLER_ADD))?;
        let tag = std::mem::ManuallyDrop::new(tag).0;
        let inner = WaitSlot::new(poller.waiter());
        let registrations = Arc::new(AtomicUsize::new(0));
        Ok(Loop {
            tag,
            core: Aligned(Mutex::new(Core {
                entries: Entries::new(tag, registrations.clone()),
                poller,
                polluted: false,
                unwatched: Vec::new(),
                wheel: Wheel::new(sys::now_ns()),
                armed_ns: None,
                fds: FdTable::default(),
                subscriptions: bus::Index::default(),
                signal_watchers: (0..signal::NSIG).map(|_| Vec::new()).collect(),
                signal_seen: vec![0; signal::NSIG],
                signal_bell_slot: None,
                children: Default::default(),
                proc_fds: Vec::new(),
                cells: Default::default(),
                pools: Vec::new(),
            })),
            parked: Parked::default(),
            inbox: Arc::new(inbox),
            registrations,
            inner,
            outer,
            timer,
            signal_bell,
            runner: Aligned(Mutex::new(Runner {
                events: Events::with_capacity(256).deferring_bells(),
                ids: Vec::new(),
                indices: Vec::new(),
                due: Vec::new(),
                procs: Vec::new(),
                watchers: Vec::new(),
                done: Default::default(),
                groups: Default::default(),
                dispatched: 0,
                returned: 0,
                deliver: Vec::new(),
                spare: Vec::new(),
                oversized: false,
            })),
            stop: AtomicBool::new(false),
            held_back: AtomicBool::new(false),
            running: AtomicBool::new(false),
            runner_thread: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            table: Default::default(),
            owner: Default::default(),
            table_live: AtomicUsize::new(0),
            timers: Default::default(),
            timers_live: AtomicUsize::new(0),
            timers_foreign: AtomicUsize::new(0),
            own_next: AtomicU64::new(u64::MAX),
            armed_hint: AtomicU64::new(u64::MAX),
            pace_ns: AtomicU64::new(0),
            watchdog: Watchdog::default(),
            metrics: Metrics::default(),
            labels: labels::Labels::default(),
        })
    }

    /// A new inner set with the loop's own fds and every watched fd.
    fn inner_set(
        inbox: &Inbox<H>,
        timer: &TimerWake,
        signal_bell: &Bell,
        fds: &FdTable,
        proc_fds: &[(RawFd, u64)],
    ) -> Result<Poller> {
        let poller = Poller::new().map_err(io_error(sys::call::POLLER))?;
        // The inbox bell is edge-triggered: a ring is one event, and the loop never
        // drains it (one system call less per wake-up; see `crate::inbox`).
        for (fd, interest, key) in [
            (inbox.bell_fd(), sys::READABLE | sys::EDGE, KEY_INBOX),
            (signal_bell.as_raw_fd(), sys::READABLE, KEY_SIGNAL),
        ] {
            poller.add(fd, interest, key).map_err(io_error(sys::call::POLLER_ADD))?;
        }
        poller.add_timer(timer, KEY_TIMER).map_err(io_error(sys::call::POLLER_ADD))?;
        for (fd, interest) in fds.interests() {
            // A watched fd closed by its owner cannot be added; its watches stay quiet.
            let _ = poller.add(fd, interest, fd_key(fds, fd));
        }
        for &(fd, key) in proc_fds {
            poller.add(fd, sys::READABLE, key).map_err(io_error(sys::call::POLLER_ADD))?;
        }
        Ok(poller)
    }

    /// Replaces a polluted inner set (see the module comment). Loop thread only.
    fn replace_inner_set(&self, core: &mut Core<H>) {
        let Ok(fresh) = Self::inner_set(&self.inbox, &self.timer, &self.signal_bell, &core.fds, &core.proc_fds) else {
            return; // out of fds: keep the old set and try again next pass
        };
        if self.outer.replace(&core.poller, &fresh).is_err() {
            return;
        }
        self.inner.store(fresh.waiter());
        core.poller = fresh;
        core.polluted = false;
    }

    /// Err when the loop may not be used: in a forked child, or once it is closing.
    fn usable(&self) -> Result<()> {
        fork::check()?;
        if self.closed.load(SeqCst) {
            return Err(Error::new(Code::Closed, "the loop is being freed"));
        }
        Ok(())
    }

    /// Stores a registration, taking its handler.
    fn register(&self, core: &mut Core<H>, handler: &mut Option<H>, kind: Kind<H>) -> Result<(Id, u32)> {
        core.entries
            .insert(|generation| Entry { handler: handler.take(), generation, cancelled: false, kind })
            .ok_or_else(|| {
                Error::new(Code::Busy, format!("the loop holds {} registrations, its maximum", slots::MAX_SLOTS))
            })
    }

    /// True on the thread running the loop right now.
    #[inline]
    fn on_loop_thread(&self) -> bool {
        self.runner_thread.load(SeqCst) == thread_number()
    }

    /// Ends every registration and drops every queued record, running their free
    /// functions on this thread. Refused while the loop is running. After `close`,
    /// registrations fail with `Closed`.
    pub fn close(&self) -> Result<()> {
        let mut runner = self.runner.0.try_lock().map_err(|_| {
            Error::new(
                Code::Busy,
                "the loop is running (called from one of its callbacks, or while another thread runs it); \
                 stop it and free it after weft_loop_run returns",
            )
        })?;
        if fork::is_child() {
            // Touch nothing inherited; the parent's loop still owns it all.
            return Ok(());
        }
        if self.watchdog.is_own_thread() {
            return Err(Error::new(Code::Busy, "called from the loop's watchdog callback, which close would wait for"));
        }
        let _gate = self.hold_gate()?;
        self.closed.store(true, SeqCst);
        // Its reports name the loop: the thread must be gone before anything else is.
        self.watchdog.off();
        // The host's fd helper (portable backend) must be gone before the bells close.
        self.outer.shut_down();
        // End registrations a chunk at a time: free functions run without the lock, and
        // memory does not double while a million timers are dropped.
        let live = self.lock().entries.live_indices();
        for chunk in live.chunks(1024) {
            let entries: Vec<Entry<H>> = {
                let mut core = self.lock();
                // A free_fn of an earlier chunk may have cancelled one of these.
                let live: Vec<u32> = chunk.iter().copied().filter(|&i| core.entries.is_live(i)).collect();
                for &index in &live {
                    self.unregister(&mut core, index);
                }
                live.iter().map(|&index| core.entries.remove_at(index)).collect()
            };
            drop(entries);
        }
        // Tasks of the table end as tasks in the slab do above: their cancel flag is
        // raised, and their cells are recycled when they come back.
        {
            // SAFETY: closing (the runner and the gate are held: nobody owns the loop).
            let own = unsafe { self.own() };
            let live: Vec<(u32, H)> = (own.handlers.iter_mut().enumerate())
                .filter_map(|(index, handler)| handler.take().map(|handler| (index as u32, handler)))
                .collect();
            let cells: Vec<_> = live.iter().filter_map(|&(index, _)| self.table.cell(index)).collect();
            {
                let ends = self.table.hold_ends();
                for &cell in &cells {
                    // SAFETY: live tasks' cells (a live handler, so a live task).
                    unsafe {
                        cell.as_ref().cancel();
                        task::Table::end(cell, &ends);
                    }
                }
            }
            for cell in cells {
                // SAFETY: as above.
                unsafe { cell.as_ref() }.end_lent();
            }
            self.table_live.store(0, Relaxed);
            drop(live);
            // The owner's timers: their handlers are dropped below, without the borrow.
            let timers = self.timers.end_all(&mut own.timers);
            self.timers_live.store(0, Relaxed);
            self.timers_foreign.store(0, Relaxed);
            self.own_next.store(u64::MAX, SeqCst);
            drop(timers);
            // The loop's feeders: their jobs move to their pools' injectors.
            let pools = std::mem::take(&mut own.pools);
            drop(pools);
        }
        // Queued jobs of tasks on the loop give their cells back as they are dropped.
        drop(self.inbox.close());
        if !self.inbox.done_closed() {
            // Cells taken back and not served: their entries are gone, they are ours.
            for cell in runner.done.drain(..) {
                // SAFETY: taken back, never served; freed once.
                unsafe { TaskCell::release(cell) };
            }
            runner.groups.clear();
            // SAFETY: closing, as above.
            let lent = self.lock().cells.lent() + unsafe { self.own() }.lender.lent() - runner.returned;
            let keep = Arc::into_raw(self.inbox.clone());
            // SAFETY: `keep` is handed over; cells on the list are back and their entries
            // gone: ours to free.
            unsafe { self.inbox.close_done(lent as usize, keep, |cell: Cell<H>| TaskCell::release(cell)) };
        }
        Ok(())
    }
}
