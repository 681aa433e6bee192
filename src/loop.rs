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
//! its free function) once the call returns. `run` holds the `runner` mutex for its whole
//! duration, which is how a second or re-entrant `run` is detected (`Busy`).
//!
//! One kind of registration lives outside `core`: a task that the loop's own thread
//! spawns (from a callback) on a CPU pool without a timeout. The thread running the
//! loop owns its state ([`Own`]: the task's `done` handler, the loop's feeders) and its
//! cell sits in the loop's task table ([`task::Table`]), which other threads reach
//! only to cancel a task; so the common spawn in a callback takes no lock at all.
//!
//! # What wakes the loop
//!
//! One epoll set (the inner set) holds the watched fds, a timerfd armed at the wheel's
//! next deadline, the inbox's eventfd and the signal eventfd; the loop waits on it. An
//! outer epoll set holds only the inner one, and is the fd an embedding host watches: it
//! is readable whenever a non-blocking pass has work. The indirection lets the loop
//! replace the inner set, which it does when a watched fd was closed while another copy
//! of it stayed open (dup, fork): epoll keeps such a file in the set under an fd number
//! that no longer names it, so it can neither be removed nor silenced otherwise. A registration
//! made from another thread wakes a blocked loop through the same set (an earlier
//! deadline re-arms the timerfd; a new fd is a new member); a cancel that leaves nothing
//! registered rings the inbox bell so that `run(Default)` can notice and return.

use crate::bus::{self, Pattern};
use crate::error::{Code, Error, Result};
use crate::fork;
use crate::inbox::{Cancel, Inbox, Record};
use crate::pool::{self, Pool};
use crate::process;
use crate::signal;
use crate::slots::{self, Generational, Id, IdKind, Slab};
use crate::sys::{self, Epoll, EpollEvent, EventFd, TimerFd};
use crate::task::{self, Back, TaskCell, TaskRef, TaskWork, Where};
use crate::timer::{self, Wheel};
use crate::watch::{self, FdTable};
use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};

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
    entries: Slab<Entry<H>>,
    /// The inner epoll set; see the module comment.
    epoll: Epoll,
    /// The inner set holds a file no watch wants and no call can remove.
    polluted: bool,
    wheel: Wheel,
    /// The deadline the timerfd is armed for.
    armed_ns: Option<u64>,
    fds: FdTable,
    subscriptions: bus::Index,
    /// Signal watches by signal number, and the count last seen for each.
    signal_watchers: Vec<Vec<u32>>,
    signal_seen: Vec<u64>,
    signal_bell_slot: Option<usize>,
    /// Process tasks waiting for a slot (FIFO), and how many of them run.
    waiting: std::collections::VecDeque<u32>,
    running_children: usize,
    /// The epoll members of process tasks (pipes and pidfds), by key.
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
    events: Vec<EpollEvent>,
    ready: Vec<(RawFd, u32)>,
    ids: Vec<(Id, u32)>,
    batch: std::collections::VecDeque<Record<H>>,
    indices: Vec<u32>,
    /// Epoll keys of process tasks ready in this pass.
    procs: Vec<u64>,
    /// Task cells given back and not yet served (oldest first), in groups that may be
    /// served once the inbox's records before a sequence number have been dispatched:
    /// (that number, how many cells).
    done: std::collections::VecDeque<Cell<H>>,
    groups: std::collections::VecDeque<(u64, usize)>,
    /// How many cells have been taken back since the loop was made.
    returned: u64,
    /// Scratch: completions to deliver, cells to recycle.
    deliver: Vec<(Id, H, Cell<H>)>,
    spare: Vec<Cell<H>>,
}

// SAFETY: the task cells a runner holds are its loop's alone (taken back from pools).
unsafe impl<H: Handler> Send for Runner<H> {}

const KEY_INBOX: u64 = 0;
const KEY_TIMER: u64 = 1;
const KEY_SIGNAL: u64 = 2;
const KEY_FD: u64 = 1 << 32;
/// A process task's pipe and its pidfd: the key's low 32 bits are its slab index.
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
    inbox: Arc<Inbox<H>>,
    /// The host-facing set; holds the inner set.
    outer: Epoll,
    /// The inner set's fd, for waiting without the core lock (replaced on this thread).
    inner_fd: AtomicI32,
    timer_fd: TimerFd,
    signal_bell: EventFd,
    runner: Aligned<Mutex<Runner<H>>>,
    stop: AtomicBool,
    /// True while `run` runs: a cancel that leaves nothing registered must wake it.
    running: AtomicBool,
    /// The thread running the loop (see [`thread_number`]), 0 when none.
    runner_thread: AtomicU64,
    closed: AtomicBool,
    /// Tasks spawned from the loop's own thread (see [`task::Table`]), and the loop
    /// owner's side of them.
    table: task::Table<H, H::Work>,
    own: OwnCell<H>,
    /// How many tasks of the table are live: written by the owner, read by `alive`.
    table_live: AtomicUsize,
}

/// What only the loop's owner touches: the thread running the loop (inside `run`, so
/// from its callbacks too) or the one closing it (holding the runner, so no one runs
/// it). A spawn on the loop's thread registers its task here, with no lock: its cell
/// in the task table, its `done` handler in `handlers` at the cell's index, its job in
/// the loop's own feeder of the pool.
struct Own<H: Handler> {
    lender: task::Lender<H, H::Work>,
    handlers: Vec<Option<H>>,
    /// Pools spawned on from the loop's thread, by key (as `Core::pools`), with the
    /// (staging) feeder of a CPU pool; checked against the pool epoch.
    pools: Vec<CachedPool<Box<pool::Feeder>>>,
}

struct OwnCell<H: Handler>(std::cell::UnsafeCell<Own<H>>);

// SAFETY: `Own` is touched only by the loop's owner, one thread at a time (see
// `Loop::own`), and everything in it may move between threads.
unsafe impl<H: Handler> Sync for OwnCell<H> {}
unsafe impl<H: Handler> Send for OwnCell<H> {}

/// A number for the calling thread, unique in the process (never 0).
fn thread_number() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static NUMBER: u64 = NEXT.fetch_add(1, SeqCst);
    }
    NUMBER.with(|n| *n)
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
        let timer_fd = TimerFd::new().map_err(io_error("timerfd_create"))?;
        let signal_bell = EventFd::new().map_err(io_error("eventfd"))?;
        let inbox = Inbox::new().map_err(io_error("eventfd"))?;
        let epoll = Self::inner_set(&inbox, &timer_fd, &signal_bell, &FdTable::default(), &[])?;
        let outer = Epoll::new().map_err(io_error("epoll_create1"))?;
        outer.add(epoll.as_raw_fd(), sys::EPOLLIN, 0).map_err(io_error("epoll_ctl"))?;
        let tag = std::mem::ManuallyDrop::new(tag).0;
        let epoll_fd = epoll.as_raw_fd();
        Ok(Loop {
            tag,
            core: Aligned(Mutex::new(Core {
                entries: Slab::new(tag),
                epoll,
                polluted: false,
                wheel: Wheel::new(sys::now_ns()),
                armed_ns: None,
                fds: FdTable::default(),
                subscriptions: bus::Index::default(),
                signal_watchers: (0..signal::NSIG).map(|_| Vec::new()).collect(),
                signal_seen: vec![0; signal::NSIG],
                signal_bell_slot: None,
                waiting: Default::default(),
                running_children: 0,
                proc_fds: Vec::new(),
                cells: Default::default(),
                pools: Vec::new(),
            })),
            inbox: Arc::new(inbox),
            inner_fd: AtomicI32::new(epoll_fd),
            outer,
            timer_fd,
            signal_bell,
            runner: Aligned(Mutex::new(Runner {
                events: Vec::with_capacity(256),
                ready: Vec::new(),
                ids: Vec::new(),
                batch: Default::default(),
                indices: Vec::new(),
                procs: Vec::new(),
                done: Default::default(),
                groups: Default::default(),
                returned: 0,
                deliver: Vec::new(),
                spare: Vec::new(),
            })),
            stop: AtomicBool::new(false),
            running: AtomicBool::new(false),
            runner_thread: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            table: Default::default(),
            own: OwnCell(std::cell::UnsafeCell::new(Own {
                lender: Default::default(),
                handlers: Vec::new(),
                pools: Vec::new(),
            })),
            table_live: AtomicUsize::new(0),
        })
    }

    /// A new inner epoll set with the loop's own fds and every watched fd.
    fn inner_set(
        inbox: &Inbox<H>,
        timer_fd: &TimerFd,
        signal_bell: &EventFd,
        fds: &FdTable,
        proc_fds: &[(RawFd, u64)],
    ) -> Result<Epoll> {
        let epoll = Epoll::new().map_err(io_error("epoll_create1"))?;
        // The inbox bell is edge-triggered: a ring is one event, and the loop never
        // drains it (one system call less per wake-up; see `crate::inbox`).
        for (fd, events, key) in [
            (inbox.bell_fd(), sys::EPOLLIN | sys::EPOLLET, KEY_INBOX),
            (timer_fd.as_raw_fd(), sys::EPOLLIN, KEY_TIMER),
            (signal_bell.as_raw_fd(), sys::EPOLLIN, KEY_SIGNAL),
        ] {
            epoll.add(fd, events, key).map_err(io_error("epoll_ctl"))?;
        }
        for (fd, events) in fds.interests() {
            // A watched fd closed by its owner cannot be added; its watches stay quiet.
            let _ = epoll.add(fd, events, KEY_FD | fd as u32 as u64);
        }
        for &(fd, key) in proc_fds {
            epoll.add(fd, sys::EPOLLIN, key).map_err(io_error("epoll_ctl"))?;
        }
        Ok(epoll)
    }

    /// Replaces a polluted inner set (see the module comment). Loop thread only.
    fn replace_inner_set(&self, core: &mut Core<H>) {
        let Ok(fresh) = Self::inner_set(&self.inbox, &self.timer_fd, &self.signal_bell, &core.fds, &core.proc_fds)
        else {
            return; // out of fds: keep the old set and try again next pass
        };
        if self.outer.add(fresh.as_raw_fd(), sys::EPOLLIN, 0).is_err() {
            return;
        }
        let _ = self.outer.remove(core.epoll.as_raw_fd());
        self.inner_fd.store(fresh.as_raw_fd(), SeqCst);
        core.epoll = fresh;
        core.polluted = false;
    }

    /// The owner's state.
    ///
    /// # Safety
    /// On the thread running the loop ([`on_loop_thread`](Self::on_loop_thread)) or
    /// closing it, with no other borrow of it alive: none is kept across a callback.
    #[allow(clippy::mut_from_ref)]
    unsafe fn own(&self) -> &mut Own<H> {
        // SAFETY: the caller's promise.
        unsafe { &mut *self.own.0.get() }
    }

    fn lock(&self) -> MutexGuard<'_, Core<H>> {
        self.core.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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

    // ---- timers -------------------------------------------------------------------

    fn check_delay(name: &str, ms: u64) -> Result<()> {
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
            self.add_timer(interval_ms, interval_ms * timer::TICK_NS, handler)
        })
    }

    fn add_timer(&self, delay_ms: u64, interval_ns: u64, handler: &mut Option<H>) -> Result<Id> {
        self.usable()?;
        // A delay of 0 is due at once (the next pass); a deadline of 0 says so.
        let deadline_ns = if delay_ms == 0 { 0 } else { sys::now_ns() + delay_ms * timer::TICK_NS };
        let mut core = self.lock();
        let (id, index) = self.register(&mut core, handler, Kind::Timer { interval_ns })?;
        core.wheel.insert(index, deadline_ns);
        if core.armed_ns.is_none_or(|armed| deadline_ns < armed) {
            self.rearm(&mut core);
        }
        Ok(id)
    }

    /// Takes the entry at `index` out of the wheel, if it is there. The last one out
    /// disarms the timerfd, so that an embedding host's fd goes quiet.
    fn unlink_timer(&self, core: &mut Core<H>, index: u32) {
        if core.wheel.is_linked(index) {
            core.wheel.remove(index);
            if core.wheel.is_empty() {
                self.rearm(core);
            }
        }
    }

    /// Keeps the timerfd armed at the wheel's next deadline.
    fn rearm(&self, core: &mut Core<H>) {
        let next = core.wheel.next_deadline_ns();
        if next != core.armed_ns {
            self.timer_fd.arm(next);
            core.armed_ns = next;
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
        let mut core = self.lock();
        let (id, index) = self.register(&mut core, handler, Kind::Fd { fd, interest })?;
        let events = core.fds.set(fd, index, interest);
        if let Err(e) = core.epoll.set(fd, events, KEY_FD | fd as u32 as u64) {
            if core.fds.remove(fd, index).is_none() {
                let _ = core.epoll.remove(fd);
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
        let mut core = self.lock();
        let index = self.live_index(&core, id)?;
        let Kind::Fd { fd, interest: current } = &mut core.entries.at_mut(index).kind else {
            return Err(Error::invalid(format!("id {id:#x} is not an fd watch")));
        };
        *current = interest;
        let fd = *fd;
        let events = core.fds.set(fd, index, interest);
        core.epoll
            .set(fd, events, KEY_FD | fd as u32 as u64)
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
            core.signal_bell_slot = Some(signal::register_bell(self.signal_bell.as_raw_fd())?);
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
    pub fn post(&self, handler: H) -> Result<Id> {
        registering(handler, |handler| {
            self.usable()?;
            let handler = handler.take().expect("not taken yet");
            Ok(slots::post_id(self.tag, self.inbox.post(handler)))
        })
    }

    // ---- tasks -------------------------------------------------------------------------

    /// Runs `work` where `place` says and calls `done` on the loop thread once, with the
    /// work's status and result (or `Cancelled` / `Timeout`). `work` is dropped once
    /// both the loop and the pool are done with the task (its work may outlive `done`).
    pub fn spawn(&self, place: Where, work: H::Work, done: H, options: SpawnOptions) -> Result<Id> {
        let mut work = Some(work);
        let result = registering(done, |done| self.add_task(place, &mut work, done, options));
        if let Some(work) = work {
            work.refused();
        }
        result
    }

    fn add_task(
        &self,
        place: Where,
        work: &mut Option<H::Work>,
        done: &mut Option<H>,
        options: SpawnOptions,
    ) -> Result<Id> {
        self.usable()?;
        Self::check_delay("timeout_ms", options.timeout_ms)?;
        let timeout_ms = options.timeout_ms;
        let given = options.pool.is_some() || options.pool_handle.is_some();
        match (place, given) {
            (Where::Process, true) => Err(Error::invalid("options.pool is set, but process tasks use no pool")),
            (Where::Process, false) => self.add_process(work, done, timeout_ms, options.max_children),
            (Where::Loop, true) => Err(Error::invalid("options.pool is set, but tasks on the loop use no pool")),
            (Where::Loop, false) => self.queue_task(Target::Loop, work, done, timeout_ms),
            (Where::Io | Where::Cpu, _) => {
                let kind = if place == Where::Io { pool::Kind::Io } else { pool::Kind::Cpu };
                let default = || task::default_pool(kind);
                let target = match (options.pool, options.pool_handle) {
                    (Some(pool), _) => {
                        Self::check_pool(pool, kind)?;
                        Target::Pool(pool)
                    }
                    (None, Some((key, resolve))) => Target::Cached { key, kind, resolve },
                    (None, None) => Target::Cached {
                        key: if kind == pool::Kind::Io { task::DEFAULT_IO } else { task::DEFAULT_CPU },
                        kind,
                        resolve: &default,
                    },
                };
                self.queue_task(target, work, done, timeout_ms)
            }
        }
    }

    fn check_pool(pool: &Pool, wanted: pool::Kind) -> Result<()> {
        if pool.kind() != wanted {
            return Err(Error::invalid(format!(
                "options.pool is a {:?} pool, but the task is for the {:?} pool",
                pool.kind(),
                wanted
            )));
        }
        if pool.is_shut_down() {
            return Err(Error::new(Code::Closed, "options.pool has been freed"));
        }
        Ok(())
    }

    /// The pool cached as `key` in `core`, if it was cached since the last change of
    /// pools (a stale entry is moved to `evicted`, to drop without the lock).
    fn cached_pool(
        core: &mut Core<H>,
        key: usize,
        epoch: u64,
        evicted: &mut Vec<(Arc<Pool>, Option<pool::Feeder>)>,
    ) -> Option<usize> {
        if let Some(at) = core.pools.iter().position(|(k, e, _, _)| *k == key && *e == epoch) {
            return Some(at);
        }
        while let Some(at) = core.pools.iter().position(|(k, e, _, _)| *k == key || *e != epoch) {
            let (_, _, pool, feeder) = core.pools.swap_remove(at);
            evicted.push((pool, feeder));
        }
        None
    }

    /// Registers a task and queues its job where `target` says.
    fn queue_task(
        &self,
        target: Target<'_>,
        work: &mut Option<H::Work>,
        done: &mut Option<H>,
        timeout_ms: u64,
    ) -> Result<Id> {
        if let Target::Cached { key, kind, resolve } = target {
            if timeout_ms == 0 && self.on_loop_thread() {
                if let Some(id) = self.lend_owned(key, kind, resolve, work, done)? {
                    return Ok(id);
                }
            }
        }
        let mut evicted = Vec::new();
        let mut resolved: Option<Arc<Pool>> = None;
        let mut held: Option<Arc<Pool>> = None;
        let result = loop {
            let mut core = self.lock();
            // A pool named by a key: cached in the loop, so a spawn costs no lookup (and
            // no reference count); found (without the lock) the first time and after any
            // pool was freed (the cache holds a reference: a pool freed meanwhile is
            // still alive here, and a job submitted to it is abandoned, as when the free
            // races a submission anyway).
            let submit = match target {
                Target::Loop => Submit::Loop,
                Target::Pool(pool) => Submit::Pool(pool),
                Target::Cached { key, kind, resolve } => {
                    let epoch = task::pool_epoch();
                    let at = match Self::cached_pool(&mut core, key, epoch, &mut evicted) {
                        Some(at) => at,
                        None => match resolved.take() {
                            Some(pool) => {
                                let feeder = pool.feeder();
                                core.pools.push((key, epoch, pool, feeder));
                                core.pools.len() - 1
                            }
                            None => {
                                drop(core);
                                resolved = Some(resolve()?);
                                continue;
                            }
                        },
                    };
                    let (_, _, pool, feeder) = &core.pools[at];
                    if let Err(e) = Self::check_pool(pool, kind) {
                        break Err(e);
                    }
                    match feeder {
                        // SAFETY: the feeder stays in the cache while the lock is held,
                        // and lend_task feeds it before it releases the lock.
                        Some(feeder) => Submit::Feeder(unsafe { &*(feeder as *const pool::Feeder) }),
                        // Submitted after the lock is released (see lend_task).
                        None => Submit::Pool(held.insert(pool.clone())),
                    }
                }
            };
            break self.lend_task(core, submit, work, done, timeout_ms);
        };
        drop(held);
        drop(resolved);
        drop(evicted); // pools freed meanwhile: dropped without the lock
        result
    }

    /// On the loop's thread, a task without a timeout for a CPU pool: registered in the
    /// task table and queued on the loop's own feeder, with no lock (see [`Own`]). None
    /// for another pool (an IO pool has no feeder): the caller registers it in the slab.
    fn lend_owned(
        &self,
        key: usize,
        kind: pool::Kind,
        resolve: &dyn Fn() -> Result<Arc<Pool>>,
        work: &mut Option<H::Work>,
        done: &mut Option<H>,
    ) -> Result<Option<Id>> {
        let epoch = task::pool_epoch();
        // SAFETY: on the loop's thread (the caller checked); this borrow ends before
        // any callback can run (resolving a pool and dropping one run no user code on
        // this thread).
        let own = unsafe { self.own() };
        let at = match own.pools.iter().position(|&(k, e, _, _)| k == key && e == epoch) {
            Some(at) => at,
            None => {
                own.pools.retain(|&(_, e, _, _)| e == epoch);
                let pool = resolve()?;
                Self::check_pool(&pool, kind)?;
                let feeder = pool.staging_feeder();
                own.pools.push((key, epoch, pool, feeder));
                own.pools.len() - 1
            }
        };
        let (_, _, pool, feeder) = &own.pools[at];
        Self::check_pool(pool, kind)?;
        let Some(feeder) = feeder else { return Ok(None) };
        let (id, job) =
            match self.table.lend(&mut own.lender, self.tag, &self.inbox, work.take().expect("not taken yet")) {
                Ok((id, _, job)) => (id, job),
                Err(back) => {
                    // The table is full: the slab takes the task (or refuses it, Busy).
                    *work = Some(back);
                    return Ok(None);
                }
            };
        let index = slots::task_index(id) as usize;
        if index >= own.handlers.len() {
            own.handlers.resize_with(index + 1, || None);
        }
        own.handlers[index] = done.take();
        self.table_live.store(self.table_live.load(Relaxed) + 1, Relaxed);
        // A pool shutting down meanwhile abandons the job: done(Cancelled).
        drop(feeder.submit(job));
        Ok(Some(id))
    }

    /// Registers a task and lends its cell where `submit` says: to a CPU pool's feeder
    /// under the lock (the feeder's pushes need it, and take no lock of their own), to
    /// a pool (an IO pool's submission takes its mutex and may start a thread) or to
    /// this loop's inbox after the lock is released.
    fn lend_task(
        &self,
        mut core: MutexGuard<'_, Core<H>>,
        submit: Submit<'_>,
        work: &mut Option<H::Work>,
        done: &mut Option<H>,
        timeout_ms: u64,
    ) -> Result<Id> {
        let (id, job) = {
            // Registered with a placeholder kind first: the cell needs the id.
            let (id, index) = self.register(&mut core, done, Kind::Timer { interval_ns: 0 })?;
            let work = work.take().expect("not taken yet");
            let (side, job) = TaskCell::lend(&mut core.cells, id, &self.inbox, work, timeout_ms > 0);
            core.entries.at_mut(index).kind = Kind::Task(side);
            if timeout_ms > 0 {
                core.wheel.insert(index, sys::now_ns() + timeout_ms * timer::TICK_NS);
                self.rearm(&mut core);
            }
            (id, job)
        };
        // A pool shutting down meanwhile abandons the job: done(Cancelled).
        match submit {
            Submit::Feeder(feeder) => {
                drop(feeder.submit(job));
                drop(core);
            }
            Submit::Pool(pool) => {
                drop(core);
                drop(pool.submit(job));
            }
            Submit::Loop => {
                drop(core);
                self.inbox.push(Record::Job(job));
            }
        }
        Ok(id)
    }

    // ---- process tasks -------------------------------------------------------------
    //
    // See `crate::process` for the child's side and the pipe protocol. A process task is
    // a registration whose child the loop supervises: its pipe and pidfd are members of
    // the inner set (keys KEY_PROC_PIPE / KEY_PROC_EXIT with its slab index), and its
    // wheel entry serves its timeout, the SIGKILL after the grace period and, without a
    // pidfd, the polling of its exit. `done` runs once the child is reaped and its pipe
    // drained, so a finished task leaves no zombie and no fd.

    fn add_process(
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
            // Registered with a placeholder kind first: a refused registration must
            // hand the work back untouched.
            let (id, index) = self.register(&mut core, done, Kind::Timer { interval_ns: 0 })?;
            let mut child = process::Child::new(max_children, deadline_ns);
            // The snapshot is taken now if a slot is free and nobody waits before this
            // task; otherwise when a slot frees, on the loop thread.
            let fork_now = core.waiting.is_empty() && core.running_children < max_children;
            if fork_now {
                child.state = process::State::Forking;
                child.counted = true;
                core.running_children += 1;
            } else {
                core.waiting.push_back(index);
            }
            core.entries.at_mut(index).kind = Kind::Process(Box::new(ProcTask { child, work: work.take() }));
            self.schedule_child(&mut core, index);
            (id, index, fork_now)
        };
        if fork_now {
            if let Err(e) = self.fork_child(index) {
                // Nothing started: the registration is undone and the work handed back.
                let mut core = self.lock();
                core.running_children -= 1;
                self.unlink_timer(&mut core, index);
                let entry = core.entries.remove_at(index);
                drop(core);
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
        let (read, write) = process::pipe()?;
        let write_fd = write.as_raw_fd();
        let read_fd = read.as_raw_fd();
        // SAFETY: the child closes the read end and runs the work through `Task`, whose
        // pipe calls allocate nothing, then `finish` ends it with _exit. `work` points into
        // the task's box, which stays in the slab while it is Forking (nothing removes a
        // Forking task), and in the child it is the copy made by fork.
        let forked = unsafe {
            process::fork(move || {
                libc::close(read_fd);
                let mut task = task::Task::<'static, H>::in_child(write_fd);
                let status = (*work).run(&mut task);
                process::finish(write_fd, status)
            })
        };
        drop(write);
        let pid = forked?;
        let pidfd = process::pidfd_open(pid);
        let mut core = self.lock();
        let core = &mut *core;
        let child = Self::child_at(core, index);
        child.pid = pid;
        child.state = process::State::Running;
        child.pipe = Some(read);
        child.pidfd = pidfd;
        if let Some(status) = child.end {
            // Cancelled while it was being forked.
            child.end = None;
            child.end_with(status, sys::now_ns());
        }
        Self::watch_child_fds(core, index);
        self.schedule_child(core, index);
        Ok(())
    }

    /// Puts a process task's next timer event in the wheel (or takes it out).
    fn schedule_child(&self, core: &mut Core<H>, index: u32) {
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

    /// The child of the process task at `index`.
    fn child_at(core: &mut Core<H>, index: u32) -> &mut process::Child {
        let Kind::Process(task) = &mut core.entries.at_mut(index).kind else { unreachable!("a process task") };
        &mut task.child
    }

    /// Puts the pipe and pidfd of the process task at `index` in the inner set.
    fn watch_child_fds(core: &mut Core<H>, index: u32) {
        let child = Self::child_at(core, index);
        let fds = [(child.pipe.as_ref(), KEY_PROC_PIPE), (child.pidfd.as_ref(), KEY_PROC_EXIT)];
        let fds = fds.map(|(fd, key)| fd.map(|fd| (fd.as_raw_fd(), key | index as u64)));
        for (fd, key) in fds.into_iter().flatten() {
            // Cannot fail for a fresh fd but for lack of memory; then the timer polls.
            if core.epoll.add(fd, sys::EPOLLIN, key).is_ok() {
                core.proc_fds.push((fd, key));
            }
        }
    }

    /// Takes a process task's fd out of the inner set, then closes it (in that order: a
    /// sibling child may hold a copy, and epoll keeps reporting a file closed while in
    /// the set).
    fn unwatch_child_fd(core: &mut Core<H>, fd: Option<OwnedFd>) {
        if let Some(fd) = fd {
            let _ = core.epoll.remove(fd.as_raw_fd());
            core.proc_fds.retain(|&(f, _)| f != fd.as_raw_fd());
        }
    }

    /// Serves the process task at `index`: reads its pipe, reaps its child, runs its
    /// timer work; delivers the events it sent and, once it is over, calls `done`.
    /// Loop thread. Returns the number of callbacks run.
    fn serve_process(&self, index: u32, key: u64, ids: &mut Vec<(Id, u32)>) -> usize {
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
            let child = Self::child_at(core, index);
            match key {
                KEY_PROC_PIPE => {
                    if child.read(PIPE_BUDGET, &mut events) {
                        let pipe = child.pipe.take();
                        Self::unwatch_child_fd(core, pipe);
                    }
                }
                KEY_PROC_EXIT => child.exit = child.exit.or_else(|| process::reap(child.pid, false)),
                _ => {
                    let expired =
                        child.state == process::State::Waiting && child.deadline_ns != 0 && now >= child.deadline_ns;
                    child.on_timer(now);
                    if expired {
                        core.waiting.retain(|&i| i != index);
                    }
                }
            }
            let child = Self::child_at(core, index);
            if child.exit.is_some() {
                // The child is gone: what it wrote is all in the pipe now.
                child.read(usize::MAX, &mut events);
                let (pipe, pidfd) = (child.pipe.take(), child.pidfd.take());
                Self::unwatch_child_fd(core, pipe);
                Self::unwatch_child_fd(core, pidfd);
            }
            if Self::child_at(core, index).is_over() && core.entries.at(index).handler.is_some() {
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
        core.waiting.retain(|&i| i != index);
        let child = Self::child_at(core, index);
        let counted = child.counted;
        let (pipe, pidfd) = (child.pipe.take(), child.pidfd.take());
        Self::unwatch_child_fd(core, pipe);
        Self::unwatch_child_fd(core, pidfd);
        if counted {
            core.running_children -= 1;
        }
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
                let Some(&index) = core.waiting.front() else { return };
                let Kind::Process(task) = &core.entries.at(index).kind else { unreachable!("a process task") };
                if core.running_children >= task.child.max_children {
                    return;
                }
                core.waiting.pop_front();
                core.running_children += 1;
                let child = Self::child_at(&mut core, index);
                child.state = process::State::Forking;
                child.counted = true;
                index
            };
            if let Err(e) = self.fork_child(index) {
                // The task ends with the error; `done` runs in the next pass.
                let mut core = self.lock();
                let child = Self::child_at(&mut core, index);
                child.state = process::State::Waiting;
                child.failure = Some((e.code, e.message));
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
            let (id, index) = self.register(&mut core, done, Kind::Timer { interval_ns: 0 })?;
            process::set_nonblocking(pipe_read_fd);
            let mut child = process::Child::new(0, process::deadline_ns(timeout_ms));
            child.state = process::State::Running;
            child.pid = pid;
            // SAFETY: the caller hands the descriptor over (checked open above).
            child.pipe = Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(pipe_read_fd) });
            child.pidfd = process::pidfd_open(pid);
            let core = &mut *core;
            core.entries.at_mut(index).kind = Kind::Process(Box::new(ProcTask { child, work: None }));
            Self::watch_child_fds(core, index);
            self.schedule_child(core, index);
            Ok(id)
        })
    }

    // ---- cancel ------------------------------------------------------------------------

    fn live_index(&self, core: &Core<H>, id: Id) -> Result<u32> {
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
                    Cancel::Marked => Ok(()),
                    Cancel::NotFound => Err(Error::not_found(id)),
                };
            }
            Some(IdKind::Slot { .. }) => {}
            Some(IdKind::Task { index, .. }) => return self.cancel_owned(id, index),
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
                self.inbox.push(Record::Done { id, status: task::CANCELLED, result: Vec::new() });
            }
            return Ok(());
        }
        let has_handler = core.entries.at(index).handler.is_some();
        if let Kind::Process(task) = &mut core.entries.at_mut(index).kind {
            // As for a task: cancel asks, the loop reports. A running child is killed
            // (SIGTERM, SIGKILL after the grace period) and `done` runs once it is
            // reaped; one not yet forked never will be.
            if !has_handler || !task.child.end_with(task::CANCELLED, sys::now_ns()) {
                return Err(Error::not_found(id));
            }
            if task.child.state == process::State::Waiting {
                core.waiting.retain(|&i| i != index);
                // `done` on the loop thread, in its next pass.
                self.inbox.push(Record::Done { id, status: task::CANCELLED, result: Vec::new() });
            } else {
                self.schedule_child(&mut core, index);
            }
            return Ok(());
        }
        self.unregister(&mut core, index);
        let entry = core.entries.at_mut(index);
        if entry.handler.is_none() {
            entry.cancelled = true;
            return Ok(());
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

    /// Cancels a task of the task table, from any thread (as a task in the slab: see
    /// `cancel`). The table's `ends` lock keeps the loop from ending the task between
    /// the id check and the cancel flag.
    fn cancel_owned(&self, id: Id, index: u32) -> Result<()> {
        let Some(cell) = self.table.cell(index) else { return Err(Error::not_found(id)) };
        let unstarted = {
            let _ends = self.table.hold_ends();
            // SAFETY: the table's cells live as long as the loop.
            let cell = unsafe { cell.as_ref() };
            if cell.id() != id || cell.is_cancelled() {
                return Err(Error::not_found(id));
            }
            cell.cancel()
        };
        if unstarted {
            self.inbox.push(Record::Done { id, status: task::CANCELLED, result: Vec::new() });
        }
        Ok(())
    }

    /// The `Cancelled` completion a cancel queued for a task of the table that had not
    /// started: delivered unless the task has ended meanwhile (its cell came back and
    /// was served first). True if `done` ran. Loop thread.
    fn deliver_unstarted(&self, id: Id) -> bool {
        let index = slots::task_index(id);
        let Some(cell) = self.table.cell(index) else { return false };
        // SAFETY: the table's cells live as long as the loop; only this thread ends tasks.
        let c = unsafe { cell.as_ref() };
        if c.id() != id || !c.is_lent() {
            return false;
        }
        let mut handler = {
            // SAFETY: on the loop's thread; the borrow ends before the call below.
            let own = unsafe { self.own() };
            let Some(handler) = own.handlers[index as usize].take() else { return false };
            let ends = self.table.hold_ends();
            // SAFETY: its task is live.
            unsafe { task::Table::end(cell, &ends) };
            handler
        };
        self.table_live.store(self.table_live.load(Relaxed) - 1, Relaxed);
        pool::deferring_wakeups(|| {
            handler.call(self, id, Event::Done { status: task::CANCELLED, result: &[], message: None })
        });
        drop(handler);
        // After done (as a slab task's TaskRef is dropped after its call): the work
        // of an abandoned task (free_fn) ends here.
        c.end_lent();
        true
    }

    /// Removes the registration at `index` from the wheel and the tables (not the slab).
    fn unregister(&self, core: &mut Core<H>, index: u32) {
        let core = &mut *core;
        match &core.entries.at(index).kind {
            Kind::Timer { .. } => {
                self.unlink_timer(core, index);
            }
            Kind::Task(task) => {
                task.cancel();
                self.unlink_timer(core, index);
            }
            &Kind::Fd { fd, .. } => {
                let result = match core.fds.remove(fd, index) {
                    Some(events) => core.epoll.set(fd, events, KEY_FD | fd as u32 as u64),
                    None => core.epoll.remove(fd),
                };
                // EBADF: the fd number was closed. If another copy of the file is open,
                // epoll still holds it, unreachable by number: replace the set.
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
                core.waiting.retain(|&i| i != index);
                let child = Self::child_at(core, index);
                child.kill_and_reap();
                let counted = std::mem::take(&mut child.counted);
                let (pipe, pidfd) = (child.pipe.take(), child.pidfd.take());
                if counted {
                    core.running_children -= 1;
                }
                Self::unwatch_child_fd(core, pipe);
                Self::unwatch_child_fd(core, pidfd);
            }
        }
    }

    // ---- running -----------------------------------------------------------------------

    /// Runs the loop on the calling thread; see [`RunMode`]. Busy if it is already running.
    pub fn run(&self, mode: RunMode) -> Result<()> {
        self.usable()?;
        let mut runner = self.runner.0.try_lock().map_err(|_| {
            Error::new(Code::Busy, "the loop is already running (re-entered from a callback, or on another thread)")
        })?;
        self.running.store(true, SeqCst);
        self.runner_thread.store(thread_number(), SeqCst);
        let result = self.run_passes(&mut runner, mode);
        // No thread-local may point at this loop's staging feeders once another thread
        // can own the loop (a nested run returns inside another loop's callback).
        pool::publish_staged();
        self.runner_thread.store(0, SeqCst);
        self.running.store(false, SeqCst);
        // Records that producers did not ring for (the loop was awake), and completions
        // a pass limit left for later, must make the loop's fd readable now: an
        // embedding host waits on it.
        if self.inbox.doze() || !runner.done.is_empty() {
            self.inbox.wake();
        }
        // As in libuv, a stop is used up by the run it ends, or by the next run.
        self.stop.store(false, SeqCst);
        result
    }

    fn run_passes(&self, runner: &mut Runner<H>, mode: RunMode) -> Result<()> {
        loop {
            if mode == RunMode::Default && !self.alive() {
                return Ok(());
            }
            let stopping = self.stop.load(SeqCst);
            let ran = self.pass(runner, mode != RunMode::NoWait && !stopping)?;
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

    /// True on the thread running the loop right now.
    fn on_loop_thread(&self) -> bool {
        self.runner_thread.load(SeqCst) == thread_number()
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
        self.inbox.has_records() || self.table_live.load(Relaxed) > 0 || !self.lock().entries.is_empty()
    }

    /// The fd an embedding host watches: readable when `run(NoWait)` has work.
    pub fn fd(&self) -> Result<RawFd> {
        fork::check()?;
        Ok(self.outer.as_raw_fd())
    }

    /// Milliseconds until the next timer (rounded up), 0 when work is ready now, None
    /// when nothing is scheduled.
    pub fn timeout_ms(&self) -> Result<Option<u64>> {
        fork::check()?;
        if self.inbox.has_records() || sys::is_readable(self.outer.as_raw_fd()) {
            return Ok(Some(0));
        }
        let Some(next) = self.lock().wheel.next_deadline_ns() else { return Ok(None) };
        Ok(Some(next.saturating_sub(sys::now_ns()).div_ceil(timer::TICK_NS)))
    }

    /// One pass; returns how many callbacks it ran.
    fn pass(&self, runner: &mut Runner<H>, block: bool) -> Result<usize> {
        let mut ran = 0;
        let Runner { events, ready, ids, batch, indices, procs, done, groups, returned, deliver, spare } = runner;
        // Wake-ups deferred by callbacks must not wait for this thread to wake.
        if block {
            pool::flush_deferred_wakeups();
        }
        // The inbox protocol: doze, and do not wait if records came in meanwhile.
        let queued = self.inbox.doze() || !done.is_empty();
        let block = block && !queued;
        sys::epoll_wait(self.inner_fd.load(SeqCst), events, if block { -1 } else { 0 })
            .map_err(io_error("epoll_wait"))?;
        self.inbox.wake_up();
        let (mut inbox_rang, mut timer_rang, mut signal_rang) = (false, false, false);
        ready.clear();
        procs.clear();
        for ev in events.iter() {
            let (key, bits) = (ev.u64, ev.events);
            match key {
                KEY_INBOX => inbox_rang = true,
                KEY_TIMER => {
                    self.timer_fd.drain();
                    timer_rang = true;
                }
                KEY_SIGNAL => {
                    self.signal_bell.drain();
                    signal_rang = true;
                }
                KEY_FD..KEY_PROC_PIPE => ready.push(((key & 0xffff_ffff) as u32 as RawFd, watch::from_epoll(bits))),
                _ => procs.push(key),
            }
        }

        // Timers due now.
        {
            let mut core = self.lock();
            let core = &mut *core;
            if core.polluted {
                self.replace_inner_set(core);
            }
            indices.clear();
            ids.clear();
            // With no timers and no expiry to account for, skip the clock read. (After
            // an expiry, rearm must run even with no timers left: `armed_ns` has to stop
            // naming a deadline the timerfd has already passed.)
            if !core.wheel.is_empty() || timer_rang {
                core.wheel.poll(sys::now_ns(), indices);
                ids.extend(indices.iter().map(|&i| (core.entries.id_of(i), 0)));
                self.rearm(core);
            }
        }
        for &(id, _) in ids.iter() {
            ran += self.dispatch(id, Event::Timer) as usize;
        }

        // Ready fds: each watcher gets the part of the report it asked for.
        for &(fd, bits) in ready.iter() {
            ids.clear();
            {
                let mut core = self.lock();
                if core.fds.watchers(fd).is_empty() {
                    // Reported, yet watched by no one: a closed fd's file that epoll
                    // kept (see the module comment).
                    core.polluted = true;
                }
                for &(index, interest) in core.fds.watchers(fd) {
                    let events = watch::events_for(interest, bits);
                    if events != 0 {
                        ids.push((core.entries.id_of(index), events));
                    }
                }
            }
            for &(id, events) in ids.iter() {
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
            // Cells first, then records: a task's events are queued before its cell is
            // given back, so they are before the end of the take below, and its `done`
            // waits until they have been dispatched (at once, unless a pass limit split
            // the records).
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
                    (core.cells.lent() + lent - (*returned + taken as u64), core.wheel.next_deadline_ns())
                };
                if out > 0 && next_timer.is_none_or(|at| at > sys::now_ns() + YIELD_TIMER_GAP_NS) {
                    std::thread::yield_now();
                    taken += self.inbox.take_done(done);
                }
            }
            *returned += taken as u64;
            let (dispatched, end) = self.inbox.take(batch);
            if taken > 0 {
                groups.push_back((end, taken));
            }
            for record in batch.drain(..) {
                match record {
                    Record::Post { seq, mut handler } => {
                        if self.inbox.start_post(seq) {
                            let id = slots::post_id(self.tag, seq);
                            pool::deferring_wakeups(|| handler.call(self, id, Event::Post));
                            ran += 1;
                        }
                        drop(handler);
                    }
                    Record::Emit { bytes, topic_len } => {
                        self.deliver(&bytes, topic_len, ids);
                        ran += 1;
                    }
                    Record::Cancelled => {}
                    Record::Done { id, .. } if slots::is_task_id(id) => {
                        ran += self.deliver_unstarted(id) as usize;
                    }
                    Record::Done { id, status, result } => {
                        ran += self.dispatch(id, Event::Done { status, result: &result, message: None }) as usize;
                    }
                    Record::Job(job) => pool::deferring_wakeups(|| job.run()),
                }
            }
            let mut ready = 0;
            for &(end, n) in groups.iter() {
                if end > dispatched {
                    break;
                }
                ready += n;
            }
            let ready = match self.inbox.limit() {
                0 => ready,
                limit => ready.min(limit),
            };
            if ready > 0 {
                let mut left = ready;
                while left > 0 {
                    let group = groups.front_mut().expect("counted above");
                    let n = group.1.min(left);
                    group.1 -= n;
                    left -= n;
                    if group.1 == 0 {
                        groups.pop_front();
                    }
                }
                ran += self.serve_cells(done, ready, deliver, spare);
            }
        }
        Ok(ran)
    }

    /// Serves the first `n` cells of `done`: delivers their tasks' completions (one
    /// lock per chunk of cells, then `done` for each, without it) and recycles the cells.
    /// Returns how many `done` callbacks ran.
    ///
    /// A task whose cell is served here has finished: from the moment its entry leaves
    /// the slab below, a cancel finds nothing, even from the `done` of a task served
    /// before it in the same batch.
    fn serve_cells(
        &self,
        done: &mut std::collections::VecDeque<Cell<H>>,
        n: usize,
        deliver: &mut Vec<(Id, H, Cell<H>)>,
        spare: &mut Vec<Cell<H>>,
    ) -> usize {
        // In chunks, so that each cell is still in the cache when it is touched again;
        // one lock per chunk keeps the previous chunk's cells and takes this one's.
        const CHUNK: usize = 64;
        let (mut ran, mut left) = (0, n);
        loop {
            let k = left.min(CHUNK);
            {
                // Each lock only when the chunk needs it: the core's for cells of tasks in
                // the slab, the table's `ends` for tasks of the table (a chunk of tasks
                // spawned on the loop's thread takes no other).
                let mut core: Option<MutexGuard<'_, Core<H>>> = None;
                let mut ends = None;
                // SAFETY: on the loop's thread; the borrow ends before the callbacks.
                let own = unsafe { self.own() };
                let mut ended = 0;
                for cell in spare.drain(..) {
                    // SAFETY: released cells, the loop's alone.
                    if slots::is_task_id(unsafe { cell.as_ref() }.id()) {
                        unsafe { own.lender.keep(cell) };
                    } else {
                        core.get_or_insert_with(|| self.lock()).cells.keep([cell]);
                    }
                }
                if k == 0 {
                    break;
                }
                for cell in done.drain(..k) {
                    // SAFETY: on the loop's thread, for a cell just taken back.
                    match unsafe { TaskCell::take_back(cell) } {
                        Back::Recycle => spare.push(cell),
                        Back::Deliver(id) if slots::is_task_id(id) => {
                            let ends = ends.get_or_insert_with(|| self.table.hold_ends());
                            // SAFETY: a live task's cell (its id is the live one).
                            unsafe { task::Table::end(cell, ends) };
                            let handler = own.handlers[slots::task_index(id) as usize].take();
                            deliver.push((id, handler.expect("a live task has its handler"), cell));
                            ended += 1;
                        }
                        Back::Deliver(id) => {
                            let core = &mut **core.get_or_insert_with(|| self.lock());
                            let index = core.entries.index(id).filter(|&i| {
                                let entry = core.entries.at(i);
                                entry.handler.is_some() && matches!(&entry.kind, Kind::Task(t) if t.is(cell))
                            });
                            // A live task keeps its entry until its cell is delivered.
                            let Some(index) = index else {
                                debug_assert!(false, "a delivered cell without its entry");
                                continue;
                            };
                            // SAFETY: as above.
                            if unsafe { cell.as_ref() }.timed() {
                                self.unlink_timer(core, index);
                            }
                            let entry = core.entries.remove_at(index);
                            if let Kind::Task(side) = entry.kind {
                                side.into_cell();
                            }
                            deliver.push((id, entry.handler.expect("checked above"), cell));
                        }
                    }
                }
                if ended > 0 {
                    self.table_live.store(self.table_live.load(Relaxed) - ended, Relaxed);
                }
            }
            left -= k;
            ran += deliver.len();
            pool::deferring_wakeups(|| {
                for (id, mut handler, cell) in deliver.drain(..) {
                    // SAFETY: take_back said to deliver it; once.
                    let (status, result) = unsafe { TaskCell::outcome(cell) };
                    handler.call(self, id, Event::Done { status, result: &result, message: None });
                    drop(handler);
                    spare.push(cell);
                }
            });
            // The works' ends (free_fn) run without the lock; the cells are kept next.
            for cell in spare.iter() {
                // SAFETY: back, its registration ended: recycled once.
                unsafe { TaskCell::release(*cell) };
            }
        }
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

    fn deliver(&self, bytes: &[u8], topic_len: usize, ids: &mut Vec<(Id, u32)>) {
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
        pool::deferring_wakeups(|| handler.call(self, id, event));
        if let Some(task) = task_entry {
            // Dropped without the lock: a task's entry may end its user data (free_fn).
            drop(handler);
            drop(task);
            return true;
        }
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
        self.closed.store(true, SeqCst);
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
            // SAFETY: closing (the runner is held: nobody runs the loop).
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A handler the size of the C layer's (function, user data, free function).
    struct ThreeWords(#[allow(dead_code)] [usize; 2], #[allow(dead_code)] fn());
    impl Handler for ThreeWords {
        type Work = task::BoxedWork<Self>;
        fn call(&mut self, _: &Loop<Self>, _: Id, _: Event<'_>) {}
    }

    #[test]
    fn a_registration_costs_48_bytes() {
        // With the wheel's 12-byte link and 4-byte slot entry, a pending timer costs 64.
        const { assert!(Slab::<Entry<ThreeWords>>::SLOT_BYTES <= 48) };
    }
}
