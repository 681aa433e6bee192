//! Worker pools: a work-stealing CPU pool and an elastic IO pool.
//!
//! Both run [`Job`]s. A job is run once, or, if the pool shuts down before it starts,
//! abandoned once (so its task can report `Cancelled`): never both, never neither.
//!
//! # CPU pool: work stealing
//!
//! A global `Injector` takes jobs submitted from outside the pool; each worker has a
//! LIFO `Worker` deque for jobs submitted from inside it (nested work) and steals from
//! the others through their `Stealer`s when its own deque and the injector are empty
//! (the find-task loop of crossbeam-deque's documentation). A loop submits through a
//! [`Feeder`] instead: a FIFO deque of its own, pushed under the loop's lock, that the
//! workers steal from (in batches) after the injector. For the sleep protocol below a
//! feeder is one more place a worker looks before it sleeps: a push to it is published,
//! and counted in `events`, exactly as a push to the injector.
//!
//! # Sleeping without lost wake-ups (CPU pool)
//!
//! State: `events` (an atomic counter bumped by every submission), `sleepers` (an
//! atomic count of workers asleep or about to be), and a mutex + condvar.
//!
//! Submitter: push the job; `events += 1` (SeqCst); if no worker is searching and
//! `sleepers > 0` (SeqCst loads), lock the mutex and notify one worker.
//!
//! Worker, when it finds no job: read `events` (= e); look for a job once more; if
//! still none, lock the mutex, `sleepers += 1` (SeqCst), and read `events`: if it is
//! still e, wait on the condvar (which releases the mutex atomically); either way
//! `sleepers -= 1` afterwards, unlock, and look for jobs again.
//!
//! Why no wake-up is lost: take a job pushed after the worker's second look. Its
//! submitter's `events += 1` and the worker's `sleepers += 1` are both SeqCst, and
//! each side then reads the other's variable (a Dekker pair): either the worker sees
//! `events != e` and does not sleep, or the submitter sees `sleepers > 0` and notifies.
//! The notify happens under the mutex, which the worker holds from its `sleepers += 1`
//! until it is inside `wait`, so the notify cannot fall between its check and its wait.
//! A worker that wakes and finds nothing sleeps again; spurious wake-ups cost a look.
//!
//! Searching workers (`searching`: awake, not running a job) spare submitters the
//! wake-up: a searcher is bound to find the job or to go through the sleep check
//! above, which sees the job's `events` bump. A searcher that finds a job stops
//! searching; if it was the last one and jobs are still queued (in the injector or in
//! any deque), it wakes a sleeper, so queued work never waits for a busy worker while
//! another sleeps (one exception: while a loop spawns a burst of jobs, a wake-up that
//! would leave the loop's thread no CPU waits for the burst's end; see
//! `may_wake_another`). A batch steal moves jobs from the injector into the stealer's deque,
//! out of sight of a worker that just looked in the injector; so the stealer bumps
//! `events` as a submitter would, and that worker's sleep check sees it.
//!
//! Wake-ups asked for inside a loop callback are deferred to the callback's end (see
//! [`deferring_wakeups`]): a callback that spawns a thousand tasks wakes once. The loop's
//! own feeders go further: they publish what a callback spawns 64 jobs at a time (see
//! [`Feeder`]), waking a worker midway only if all of them sleep. Before parking, a
//! worker looks for work a bounded number of times (a few microseconds), because jobs
//! come in bursts and a park and wake-up cost two system calls. A worker runs the jobs
//! of its own deque (a batch it stole, or its nested submissions) without searching in
//! between: `searching` changes once per batch, not once per job.
//!
//! # IO pool: elastic FIFO
//!
//! One FIFO queue under a mutex and a condvar. A submission that finds no idle thread
//! starts one, up to the bound; an idle thread that waits longer than the keep-alive
//! exits. Threads are counted under the same mutex, so "no idle thread" is exact.

use crate::error::{Code, Error, Result};
use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use std::cell::Cell;
use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// A unit of work for a pool, shared through an `Arc` (see [`JobRef::from`]).
pub trait Job: Send + Sync {
    fn run(self: Arc<Self>);
    /// The pool shut down before the job started.
    fn abandon(self: Arc<Self>);
}

/// The first field of every object a [`JobRef`] points at: how to run, abandon and
/// release it. Tasks embed it, so a queued task costs one thin pointer and no
/// allocation beyond the task itself.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct JobHeader {
    pub vtable: &'static JobVTable,
}

pub struct JobVTable {
    /// Runs the job and releases the reference.
    pub run: unsafe fn(NonNull<JobHeader>),
    /// Gives the job up (the pool shut down) and releases the reference.
    pub abandon: unsafe fn(NonNull<JobHeader>),
    /// Releases the reference.
    pub release: unsafe fn(NonNull<JobHeader>),
}

/// A queued job: one owned reference, one thin pointer (8 bytes per queue slot).
pub struct JobRef(NonNull<JobHeader>);

// SAFETY: jobs are Send + Sync by construction (see `from_raw`'s contract).
unsafe impl Send for JobRef {}

impl JobRef {
    /// # Safety
    /// `header` starts a live, Send + Sync object, and the new `JobRef` owns one
    /// reference to it, which the vtable's functions release.
    pub unsafe fn from_raw(header: NonNull<JobHeader>) -> JobRef {
        JobRef(header)
    }

    pub fn run(self) {
        let header = std::mem::ManuallyDrop::new(self).0;
        // SAFETY: this reference is consumed by `run`.
        unsafe { (header.as_ref().vtable.run)(header) }
    }

    pub fn abandon(self) {
        let header = std::mem::ManuallyDrop::new(self).0;
        // SAFETY: this reference is consumed by `abandon`.
        unsafe { (header.as_ref().vtable.abandon)(header) }
    }
}

impl Drop for JobRef {
    fn drop(&mut self) {
        // SAFETY: this reference is released once, here.
        unsafe { (self.0.as_ref().vtable.release)(self.0) }
    }
}

/// Any `Arc<impl Job>` as a queued job (one small allocation for the header).
#[repr(C)]
struct Boxed<J> {
    header: JobHeader,
    job: Arc<J>,
}

impl<J: Job + 'static> Boxed<J> {
    const VTABLE: JobVTable = JobVTable { run: Self::run, abandon: Self::abandon, release: Self::release };

    unsafe fn take(header: NonNull<JobHeader>) -> Arc<J> {
        // SAFETY: made by `From` below from a Box<Boxed<J>>, whose first field it is.
        unsafe { Box::from_raw(header.as_ptr().cast::<Boxed<J>>()) }.job
    }
    unsafe fn run(header: NonNull<JobHeader>) {
        unsafe { Self::take(header) }.run()
    }
    unsafe fn abandon(header: NonNull<JobHeader>) {
        unsafe { Self::take(header) }.abandon()
    }
    unsafe fn release(header: NonNull<JobHeader>) {
        drop(unsafe { Self::take(header) })
    }
}

impl<J: Job + 'static> From<Arc<J>> for JobRef {
    fn from(job: Arc<J>) -> JobRef {
        let boxed = Box::new(Boxed { header: JobHeader { vtable: &Boxed::<J>::VTABLE }, job });
        // SAFETY: a Boxed<J> starts with its header; J is Send + Sync.
        unsafe { JobRef::from_raw(NonNull::from(Box::leak(boxed)).cast()) }
    }
}

/// Called on each pool thread when it starts and before it exits, with its index.
pub type Hook = Arc<dyn Fn(usize) + Send + Sync>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Cpu,
    Io,
}

#[derive(Clone)]
pub struct Options {
    pub kind: Kind,
    /// CPU: the number of threads (0: one per core). IO: the most threads (0: 64).
    pub threads: usize,
    /// Thread names are this prefix and the thread's index ("weft-cpu-0").
    pub name: String,
    /// 0: the platform default.
    pub stack_size: usize,
    /// IO: how long an idle thread waits for work before it exits (default 10 s).
    pub keep_alive: Duration,
    pub on_start: Option<Hook>,
    pub on_stop: Option<Hook>,
}

impl Options {
    pub fn new(kind: Kind) -> Options {
        Options {
            kind,
            threads: 0,
            name: match kind {
                Kind::Cpu => "weft-cpu".into(),
                Kind::Io => "weft-io".into(),
            },
            stack_size: 0,
            keep_alive: Duration::from_secs(10),
            on_start: None,
            on_stop: None,
        }
    }
}

/// The number of CPUs this process may use (affinity and cgroup quota respected).
/// Asked once: the standard library reads cgroup files for it every time.
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// A pool thread: a plain pthread, not a `std::thread`. A host may end a thread inside
/// a callback with `pthread_exit` (CPython does, to a thread that wants the GIL while
/// the interpreter finalizes), which unwinds the thread's stack with a forced unwind.
/// `std::thread` runs its closure inside `catch_unwind`, which cannot let a forced unwind
/// through and aborts the process ("FATAL: exception not rethrown"). Here nothing on a
/// pool thread's stack catches: the work and hook pointers are `extern "C-unwind"`, and
/// the start routine lets the unwind reach the thread's base, which ends the thread.
/// (A Rust panic on a pool thread, a weft bug, then ends the process.)
struct OsThread {
    id: libc::pthread_t,
    finished: Arc<AtomicBool>,
}

struct Start {
    name: String,
    body: Box<dyn FnOnce() + Send>,
    finished: Arc<AtomicBool>,
}

extern "C-unwind" fn thread_start(arg: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: made by Box::into_raw in OsThread::spawn, handed over once.
    let start = unsafe { Box::from_raw(arg.cast::<Start>()) };
    let Start { name, body, finished } = *start;
    // Linux keeps 15 bytes of a thread name; cut on a character boundary.
    let mut end = name.len().min(15);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    if let Ok(name) = std::ffi::CString::new(&name[..end]) {
        // SAFETY: names the calling thread with a NUL-terminated string.
        unsafe { libc::pthread_setname_np(libc::pthread_self(), name.as_ptr()) };
    }
    body();
    finished.store(true, SeqCst);
    std::ptr::null_mut()
}

impl OsThread {
    fn spawn(name: &str, stack_size: usize, body: impl FnOnce() + Send + 'static) -> std::io::Result<OsThread> {
        let finished = Arc::new(AtomicBool::new(false));
        let start = Box::new(Start { name: name.to_string(), body: Box::new(body), finished: finished.clone() });
        // SAFETY: plain pthread calls; `attr` is initialised before use and destroyed
        // after; on success the new thread owns `start`.
        unsafe {
            let mut attr: libc::pthread_attr_t = std::mem::zeroed();
            libc::pthread_attr_init(&mut attr);
            if stack_size > 0 {
                let page = libc::sysconf(libc::_SC_PAGESIZE).max(4096) as usize;
                let size = stack_size.max(libc::PTHREAD_STACK_MIN).div_ceil(page) * page;
                libc::pthread_attr_setstacksize(&mut attr, size);
            }
            let mut id: libc::pthread_t = 0;
            let arg = Box::into_raw(start);
            // The same ABI; "C-unwind" only lets a forced unwind pass through it.
            let routine: extern "C" fn(*mut libc::c_void) -> *mut libc::c_void =
                std::mem::transmute(thread_start as extern "C-unwind" fn(*mut libc::c_void) -> *mut libc::c_void);
            let rc = libc::pthread_create(&mut id, &attr, routine, arg.cast());
            libc::pthread_attr_destroy(&mut attr);
            if rc != 0 {
                drop(Box::from_raw(arg));
                return Err(std::io::Error::from_raw_os_error(rc));
            }
            Ok(OsThread { id, finished })
        }
    }

    fn is_finished(&self) -> bool {
        self.finished.load(SeqCst)
    }

    fn join(self) {
        // SAFETY: a thread we started and nobody joined yet.
        unsafe { libc::pthread_join(self.id, std::ptr::null_mut()) };
    }
}

struct Common {
    options: Options,
    shutdown: AtomicBool,
    handles: Mutex<Vec<OsThread>>,
    /// Identifies the pool for "is this thread one of mine".
    serial: u64,
}

/// What a thread knows of pools, in one thread-local (in a shared library, each
/// thread-local access is a call: a spawn makes one).
struct ThreadState {
    /// The pool serial and worker index of the current thread, if it is a pool thread.
    current: Cell<Option<(u64, usize)>>,
    /// The deque of the CPU worker running on this thread (for nested submissions).
    local: Cell<*const Worker<JobRef>>,
    /// How deep this thread is in loop callbacks (see [`deferring_wakeups`]).
    deferring: Cell<usize>,
    /// The CPU pool (an `Arc` turned into a raw pointer, so the thread-local needs no
    /// destructor) this thread submitted to while deferring, to wake when it stops.
    deferred: Cell<*const Cpu>,
    /// The staging feeder holding this thread's staged jobs (see [`Feeder`]).
    staged: Cell<*const Feeder>,
}

thread_local! {
    static THREAD: ThreadState = const {
        ThreadState {
            current: Cell::new(None),
            local: Cell::new(std::ptr::null()),
            deferring: Cell::new(0),
            deferred: Cell::new(std::ptr::null()),
            staged: Cell::new(std::ptr::null()),
        }
    };
}

fn next_serial() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, SeqCst)
}

impl Common {
    fn spawn_thread(self: &Arc<Self>, index: usize, body: impl FnOnce() + Send + 'static) -> Result<()> {
        let name = format!("{}-{index}", self.options.name);
        let common = self.clone();
        let handle = OsThread::spawn(&name, self.options.stack_size, move || {
            THREAD.with(|t| t.current.set(Some((common.serial, index))));
            if let Some(hook) = &common.options.on_start {
                hook(index);
            }
            body();
            if let Some(hook) = &common.options.on_stop {
                hook(index);
            }
        })
        .map_err(|e| Error::io("starting a pool thread", e))?;
        let mut handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        // Retired IO threads are joined here, as their successors start.
        let (done, running): (Vec<_>, Vec<_>) =
            std::mem::take(&mut *handles).into_iter().partition(|h| h.is_finished());
        *handles = running;
        handles.push(handle);
        drop(handles);
        done.into_iter().for_each(OsThread::join);
        Ok(())
    }

    fn on_own_thread(&self) -> Option<usize> {
        THREAD.with(|t| t.current.get()).and_then(|(serial, index)| (serial == self.serial).then_some(index))
    }
}

// ---- CPU pool -------------------------------------------------------------------------

/// How many times an idle CPU worker looks for a job before it parks.
const SPINS: usize = 16;

struct Cpu {
    common: Arc<Common>,
    injector: Injector<JobRef>,
    stealers: Vec<Stealer<JobRef>>,
    /// Each worker's own deque, handed to its thread when the pool starts.
    locals: Mutex<Vec<Option<Worker<JobRef>>>>,
    events: AtomicU64,
    sleepers: AtomicUsize,
    /// Workers awake and looking for a job (not running one, not asleep).
    searching: AtomicUsize,
    /// Staging feeders in the middle of a burst (see [`Feeder`]): their loop threads
    /// are busy submitting, each on a CPU of its own.
    bursts: AtomicUsize,
    /// How many workers wait on `wake` (counted under the mutex, so a waker that holds
    /// it knows whether a notify would reach anyone).
    sleep: Mutex<usize>,
    wake: Condvar,
    started: AtomicBool,
    /// The deques of feeders (see [`Feeder`]), with their ids; `feeders_epoch` changes
    /// with the list, so that workers refresh their copy of it only then.
    feeders: Mutex<Vec<(u64, Stealer<JobRef>)>>,
    feeders_epoch: AtomicU64,
}

/// A worker's copy of its pool's feeder deques.
struct Feeds {
    epoch: u64,
    stealers: Vec<Stealer<JobRef>>,
}

/// A FIFO deque that feeds a CPU pool, for a submitter that serialises its own
/// submissions (a loop feeds each CPU pool it spawns on under its lock): a push is a
/// plain store, where the pool's shared injector costs two atomic read-modify-writes
/// and a slot twice the size. The pool's workers steal from it as from each other's
/// deques (oldest first, in batches). Dropping the feeder moves what it still holds to
/// the injector and detaches it.
///
/// # Staging
///
/// A staging feeder (the loop's own, used only by the thread running the loop) keeps the
/// jobs submitted inside a loop callback to itself, [`STAGE`] at a time (more when the
/// workers keep running out: see `limit`), and publishes them together: when it holds
/// that many, when the callback returns, when the loop's `run` returns, and before the
/// loop thread blocks (see [`flush_deferred_wakeups`]). Workers then take them from the
/// deque in batches, instead of taking each as it is pushed: a worker that keeps pace
/// with a loop spawning in a burst would otherwise move the deque's indices between the
/// two threads' caches once per job (on a 2-CPU VM, a spawn went from 30 ns to 200).
/// Each publication counts as one submission for the sleep protocol (one `events`
/// bump); one that the burst fills (not its end) wakes a worker only if all of them
/// sleep, so an awake worker runs the burst's jobs while the loop submits the next
/// ones, and no worker is woken every few dozen jobs only to run out and park again.
pub struct Feeder {
    id: u64,
    deque: Worker<JobRef>,
    cpu: Arc<Cpu>,
    /// None: not a staging feeder.
    staged: Option<std::cell::RefCell<Vec<JobRef>>>,
    /// A midway publication did not wake anyone: the final one must.
    owes_wake: std::cell::Cell<bool>,
    /// How many jobs to stage before a midway publication: [`STAGE`], doubled (up to
    /// [`STAGE_MAX`]) each time a midway publication finds every worker asleep (they
    /// run the jobs faster than the callback spawns them, and a worker woken for a
    /// few dozen jobs would run out and park again at once), reset at the end.
    limit: std::cell::Cell<usize>,
    /// This feeder counts in its pool's `bursts`: it published midway in the current
    /// callback.
    bursting: std::cell::Cell<bool>,
}

/// The most jobs a staging feeder holds back (see `Feeder::limit`).
const STAGE_MAX: usize = 1024;

/// How many jobs a staging feeder holds back inside a callback (see [`Feeder`]).
const STAGE: usize = 64;

impl Feeder {
    /// Queues `job` as [`Pool::submit`] does (or stages it: see the type's comment).
    pub fn submit(&self, job: JobRef) -> Result<()> {
        if let Some(staged) = &self.staged {
            let this = self as *const Feeder;
            // One thread-local access (a function call in a shared library): whether
            // this thread defers, and if so, this feeder registered for the flush.
            let previous = THREAD.with(|t| (t.deferring.get() > 0).then(|| t.staged.replace(this)));
            if let Some(previous) = previous {
                let full = {
                    let mut staged = staged.borrow_mut();
                    staged.push(job);
                    staged.len() >= self.limit.get()
                };
                if !previous.is_null() && previous != this {
                    // SAFETY: a staging feeder clears its own entry when dropped, so
                    // a registered one is alive.
                    unsafe { &*previous }.publish(false);
                }
                if full {
                    self.publish(true);
                }
                return Ok(());
            }
        }
        self.cpu.submit_to(job, Some(&self.deque))
    }

    /// Makes the staged jobs visible to the workers: one submission for the sleep
    /// protocol. `midway`: the burst goes on (wake a worker only if all of them sleep).
    fn publish(&self, midway: bool) {
        let Some(staged) = &self.staged else { return };
        let mut staged = staged.borrow_mut();
        if !midway {
            self.limit.set(STAGE);
            self.end_burst();
        } else if !self.bursting.replace(true) {
            self.cpu.bursts.fetch_add(1, SeqCst);
        }
        if staged.is_empty() {
            if !midway && self.owes_wake.replace(false) {
                self.cpu.wake_if_needed();
            }
            return;
        }
        let cpu = &self.cpu;
        if cpu.start().is_err() {
            staged.drain(..).for_each(JobRef::abandon);
            return;
        }
        for job in staged.drain(..) {
            self.deque.push(job);
        }
        drop(staged);
        cpu.events.fetch_add(1, SeqCst);
        if cpu.common.shutdown.load(SeqCst) {
            // As in submit_to: shutdown may have drained the feeders before the push.
            cpu.abandon_queued();
            cpu.wake_all();
            return;
        }
        if !midway {
            self.owes_wake.set(false);
            cpu.wake_if_needed();
        } else if cpu.searching.load(SeqCst) == 0 && cpu.sleepers.load(SeqCst) >= cpu.stealers.len() {
            self.limit.set((self.limit.get() * 2).min(STAGE_MAX));
            cpu.wake_one();
        } else {
            self.owes_wake.set(true);
        }
    }

    fn end_burst(&self) {
        if self.bursting.replace(false) {
            self.cpu.bursts.fetch_sub(1, SeqCst);
        }
    }
}

/// Publishes the jobs of the staging feeder this thread registered, if any.
pub fn publish_staged() {
    let feeder = THREAD.with(|t| t.staged.replace(std::ptr::null()));
    if !feeder.is_null() {
        // SAFETY: as in `Feeder::submit`.
        unsafe { &*feeder }.publish(false);
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        let this = self as *const Feeder;
        THREAD.with(|t| {
            if t.staged.get() == this {
                t.staged.set(std::ptr::null());
            }
        });
        if let Some(staged) = &self.staged {
            for job in staged.borrow_mut().drain(..) {
                self.deque.push(job);
            }
        }
        self.end_burst();
        let cpu = &self.cpu;
        let moved = !self.deque.is_empty();
        while let Some(job) = self.deque.pop() {
            cpu.injector.push(job);
        }
        {
            let mut feeders = cpu.feeders.lock().unwrap_or_else(|p| p.into_inner());
            feeders.retain(|(id, _)| *id != self.id);
            cpu.feeders_epoch.fetch_add(1, SeqCst);
        }
        if moved {
            cpu.events.fetch_add(1, SeqCst);
            if cpu.common.shutdown.load(SeqCst) {
                cpu.abandon_queued();
                cpu.wake_all();
            } else {
                cpu.wake_if_needed();
            }
        }
    }
}

impl Cpu {
    fn feeder(self: &Arc<Self>, staging: bool) -> Feeder {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let deque = Worker::new_fifo();
        let id = NEXT.fetch_add(1, SeqCst);
        let mut feeders = self.feeders.lock().unwrap_or_else(|p| p.into_inner());
        feeders.push((id, deque.stealer()));
        self.feeders_epoch.fetch_add(1, SeqCst);
        drop(feeders);
        let staged = staging.then(|| std::cell::RefCell::new(Vec::with_capacity(STAGE)));
        let (owes_wake, limit, bursting) =
            (std::cell::Cell::new(false), std::cell::Cell::new(STAGE), std::cell::Cell::new(false));
        Feeder { id, deque, cpu: self.clone(), staged, owes_wake, limit, bursting }
    }

    /// Brings a worker's copy of the feeder list up to date.
    fn refresh(&self, feeds: &mut Feeds) {
        let epoch = self.feeders_epoch.load(SeqCst);
        if epoch != feeds.epoch {
            let feeders = self.feeders.lock().unwrap_or_else(|p| p.into_inner());
            feeds.stealers = feeders.iter().map(|(_, s)| s.clone()).collect();
            feeds.epoch = self.feeders_epoch.load(SeqCst);
        }
    }

    fn find_job(&self, local: &Worker<JobRef>, feeds: &mut Feeds) -> Option<JobRef> {
        local.pop().or_else(|| {
            self.refresh(feeds);
            let job = std::iter::repeat_with(|| {
                self.injector
                    .steal_batch_and_pop(local)
                    .or_else(|| feeds.stealers.iter().map(|s| s.steal_batch_and_pop(local)).collect())
                    .or_else(|| self.stealers.iter().map(|s| s.steal()).collect())
            })
            .find(|s| !s.is_retry())
            .and_then(|s| s.success());
            if job.is_some() && !local.is_empty() {
                // A batch steal moved jobs into this deque, where a worker that looked
                // in the injector a moment ago did not see them: count it as a
                // submission, so that worker does not go to sleep (module comment).
                self.events.fetch_add(1, SeqCst);
            }
            job
        })
    }

    fn work(self: &Arc<Self>, local: Worker<JobRef>) {
        THREAD.with(|t| t.local.set(&local));
        let mut feeds = Feeds { epoch: u64::MAX, stealers: Vec::new() };
        self.searching.fetch_add(1, SeqCst);
        loop {
            let found = match self.find_job_spinning(&local, &mut feeds) {
                Some(job) => Some(job),
                None if self.common.shutdown.load(SeqCst) => break,
                None => {
                    let seen = self.events.load(SeqCst);
                    match self.find_job(&local, &mut feeds) {
                        Some(job) => Some(job),
                        None => {
                            self.sleep_unless(seen);
                            None
                        }
                    }
                }
            };
            if let Some(job) = found {
                if !self.run_found(job, &feeds, &local) {
                    // The work forked and the child came back here: touch nothing.
                    std::mem::forget(local);
                    return;
                }
            }
        }
        self.searching.fetch_sub(1, SeqCst);
        THREAD.with(|t| t.local.set(std::ptr::null()));
        // Jobs left in this worker's deque at shutdown are abandoned, not lost.
        while let Some(job) = local.pop() {
            job.abandon();
        }
    }

    /// The sleep check of the module comment: sleeps unless a job was submitted since
    /// `events` read `seen` (or the pool is shutting down).
    fn sleep_unless(&self, seen: u64) {
        let mut guard = self.sleep.lock().unwrap_or_else(|p| p.into_inner());
        self.sleepers.fetch_add(1, SeqCst);
        self.searching.fetch_sub(1, SeqCst);
        if self.events.load(SeqCst) == seen && !self.common.shutdown.load(SeqCst) {
            *guard += 1;
            guard = self.wake.wait(guard).unwrap_or_else(|p| p.into_inner());
            *guard -= 1;
        }
        self.searching.fetch_add(1, SeqCst);
        self.sleepers.fetch_sub(1, SeqCst);
        drop(guard);
    }

    /// Looks for a job a few times, briefly, before the caller goes to sleep: jobs
    /// often come in bursts, and a wake-up costs two system calls. Bounded: an idle
    /// worker spins for a few microseconds at most, then parks.
    fn find_job_spinning(&self, local: &Worker<JobRef>, feeds: &mut Feeds) -> Option<JobRef> {
        for _ in 0..SPINS {
            if let Some(job) = self.find_job(local, feeds) {
                return Some(job);
            }
            for _ in 0..16 {
                std::hint::spin_loop();
            }
        }
        None
    }

    /// A searching worker found `job`: it stops searching (and if it was the last
    /// searcher and more work is queued anywhere, wakes a sleeper to look for it: see
    /// the module comment), runs the job, then the jobs in its own deque, and searches
    /// again. Running the jobs of its own deque is not searching: the two counter
    /// updates (shared by all workers) are paid once per batch, not once per job. Once
    /// the pool is shutting down, it abandons the jobs instead. Returns false in a
    /// child forked by the work.
    fn run_found(&self, job: JobRef, feeds: &Feeds, local: &Worker<JobRef>) -> bool {
        // Stop searching first, then look: a submitter that saw this worker still
        // searching (and so did not wake anyone) pushed its job before this decrement,
        // so the look below sees it. Jobs may wait in the injector or in any worker's
        // deque (a batch steal fills the stealer's own; nested submissions the
        // submitter's).
        if self.searching.fetch_sub(1, SeqCst) == 1
            && self.may_wake_another()
            && (!self.injector.is_empty()
                || self.stealers.iter().any(|s| !s.is_empty())
                || feeds.stealers.iter().any(|s| !s.is_empty()))
        {
            self.wake_one();
        }
        let mut next = Some(job);
        while let Some(job) = next {
            if self.common.shutdown.load(SeqCst) {
                job.abandon(); // queued when the pool began to shut down: not started
            } else {
                job.run();
                if crate::fork::is_child() {
                    return false;
                }
            }
            next = local.pop();
        }
        self.searching.fetch_add(1, SeqCst);
        true
    }

    /// Whether a worker that found a job may wake a sleeper to look for more (see
    /// `run_found`). Not while a loop is in a burst of spawns if the sleeper would then
    /// take a CPU from that loop's thread: with as many workers as CPUs, the loop is
    /// what limits the burst, and a worker woken beside it would be placed on the
    /// loop's CPU (the scheduler puts a woken thread back where it last ran) and share
    /// it, while the burst's jobs need no second worker. The burst's end wakes the
    /// sleepers as usual (a final publication is an ordinary submission).
    fn may_wake_another(&self) -> bool {
        let sleepers = self.sleepers.load(SeqCst);
        if sleepers == 0 {
            return false;
        }
        let bursts = self.bursts.load(SeqCst);
        // Awake after the wake-up, plus one CPU per loop thread in a burst.
        bursts == 0 || self.stealers.len().saturating_sub(sleepers) + 1 + bursts <= cores()
    }

    /// Wakes one worker waiting on the condvar, if any: `sleepers` also counts workers
    /// about to sleep that will not (they saw a new `events`), and a notify (a system
    /// call) for nobody is worth avoiding.
    fn wake_one(&self) {
        let waiting = self.sleep.lock().unwrap_or_else(|p| p.into_inner());
        if *waiting > 0 {
            self.wake.notify_one();
        }
    }

    fn start(self: &Arc<Self>) -> Result<()> {
        if self.started.load(SeqCst) || self.started.swap(true, SeqCst) {
            return Ok(());
        }
        let locals: Vec<_> =
            self.locals.lock().unwrap_or_else(|p| p.into_inner()).iter_mut().map(|l| l.take()).collect();
        let mut started = 0;
        let mut failure = None;
        for (index, local) in locals.into_iter().enumerate() {
            let local = local.expect("each deque is handed out once");
            let cpu = self.clone();
            match self.common.spawn_thread(index, move || cpu.work(local)) {
                Ok(()) => started += 1,
                Err(e) => failure = Some(e),
            }
        }
        match failure {
            // Not one thread: nothing would ever run a job. Fail every submission.
            Some(e) if started == 0 => {
                self.common.shutdown.store(true, SeqCst);
                Err(e)
            }
            _ => Ok(()), // fewer threads than asked for still run every job
        }
    }

    fn submit(self: &Arc<Self>, job: JobRef) -> Result<()> {
        self.submit_to(job, None)
    }

    /// Queues `job` on this thread's own deque (a worker's nested submission), on
    /// `feeder`, or on the injector.
    fn submit_to(self: &Arc<Self>, job: JobRef, feeder: Option<&Worker<JobRef>>) -> Result<()> {
        if let Err(e) = self.start() {
            job.abandon();
            return Err(e);
        }
        let (local, deferred) = THREAD.with(|t| {
            let local = t.local.get();
            let own = !local.is_null() && t.current.get().is_some_and(|(serial, _)| serial == self.common.serial);
            (if own { local } else { std::ptr::null() }, defer_wake(t, self))
        });
        if !local.is_null() {
            // SAFETY: `local` is the deque owned by this very thread's `work` frame,
            // which outlives this call (it is set and cleared by `work`).
            unsafe { &*local }.push(job);
        } else if let Some(feeder) = feeder {
            feeder.push(job);
        } else {
            self.injector.push(job);
        }
        if !deferred {
            self.events.fetch_add(1, SeqCst);
        }
        if self.common.shutdown.load(SeqCst) {
            // Shutdown began meanwhile and may have drained the injector before the
            // push: give up what is left there (each job goes to exactly one taker).
            self.abandon_queued();
            self.wake_all();
            return Err(Error::new(Code::Closed, "the pool is shutting down"));
        }
        if !deferred {
            self.wake_if_needed();
        }
        Ok(())
    }

    fn abandon_queued(&self) {
        loop {
            match self.injector.steal() {
                Steal::Success(job) => job.abandon(),
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
        let feeders = self.feeders.lock().unwrap_or_else(|p| p.into_inner());
        for (_, stealer) in feeders.iter() {
            loop {
                match stealer.steal() {
                    Steal::Success(job) => job.abandon(),
                    Steal::Retry => continue,
                    Steal::Empty => break,
                }
            }
        }
    }

    /// A searching worker will find queued jobs; wake a sleeper only when none is.
    fn wake_if_needed(&self) {
        if self.searching.load(SeqCst) == 0 && self.sleepers.load(SeqCst) > 0 {
            self.wake_one();
        }
    }

    fn wake_all(&self) {
        let _guard = self.sleep.lock().unwrap_or_else(|p| p.into_inner());
        self.wake.notify_all();
    }
}

// ---- deferred wake-ups ----------------------------------------------------------------

/// Runs `f` (a loop callback) with CPU-pool wake-ups deferred to its end: a callback
/// that spawns many tasks wakes a sleeping worker once, not once per task (a wake-up
/// costs a system call on each side). Correct because the job and its `events` bump
/// are published at once: a worker about to sleep still sees them; only the wake-up
/// of an already sleeping worker waits until the callback returns.
pub fn deferring_wakeups<R>(f: impl FnOnce() -> R) -> R {
    struct Depth;
    impl Drop for Depth {
        fn drop(&mut self) {
            let depth = THREAD.with(|t| {
                t.deferring.set(t.deferring.get() - 1);
                t.deferring.get()
            });
            if depth == 0 {
                flush_deferred_wakeups();
            }
        }
    }
    THREAD.with(|t| t.deferring.set(t.deferring.get() + 1));
    let _depth = Depth;
    f()
}

/// Sends the wake-up this thread deferred, if any: called before the loop thread
/// blocks, so that a loop run from inside another loop's callback (or any wait inside a
/// callback) cannot sleep on work whose worker was never woken.
pub fn flush_deferred_wakeups() {
    if crate::fork::is_child() {
        // A host forked inside a callback: the staged jobs and the wake-up are the
        // parent's; touch nothing (no pool thread may start here).
        THREAD.with(|t| {
            t.staged.set(std::ptr::null());
            t.deferred.set(std::ptr::null());
        });
        return;
    }
    publish_staged();
    let cpu = THREAD.with(|t| t.deferred.replace(std::ptr::null()));
    if !cpu.is_null() {
        // SAFETY: made by Arc::into_raw in `defer_wake`, taken back once.
        let cpu = unsafe { Arc::from_raw(cpu) };
        // The submissions it stands for did not bump `events`: one bump for them all.
        cpu.events.fetch_add(1, SeqCst);
        cpu.wake_if_needed();
    }
}

/// Records a wake-up of `cpu` for later if this thread is deferring them (one pool; a
/// second one in the same callback is woken at once). A deferred submission also
/// leaves its `events` bump to the flush: a worker that checks `events` before the
/// flush may sleep, and the flush's bump and wake-up then find it (the sleep protocol's
/// Dekker pair holds between the flush and the sleeper).
fn defer_wake(t: &ThreadState, cpu: &Arc<Cpu>) -> bool {
    if t.deferring.get() == 0 {
        return false;
    }
    let current = t.deferred.get();
    if current.is_null() {
        t.deferred.set(Arc::into_raw(cpu.clone()));
        true
    } else {
        std::ptr::eq(current, Arc::as_ptr(cpu))
    }
}

// ---- IO pool --------------------------------------------------------------------------

struct IoQueue {
    jobs: VecDeque<JobRef>,
    threads: usize,
    /// Threads waiting for work that nobody has woken yet.
    idle: usize,
    /// Wake-ups sent and not yet taken by a waiting thread.
    permits: usize,
    next_index: usize,
}

struct Io {
    common: Arc<Common>,
    queue: Mutex<IoQueue>,
    ready: Condvar,
    bound: usize,
}

impl Io {
    fn lock(&self) -> MutexGuard<'_, IoQueue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pop(&self, queue: &mut IoQueue) -> Option<JobRef> {
        queue.jobs.pop_front()
    }

    fn work(self: &Arc<Self>) {
        let mut queue = self.lock();
        loop {
            if let Some(job) = self.pop(&mut queue) {
                drop(queue);
                job.run();
                if crate::fork::is_child() {
                    std::mem::forget(self.clone()); // touch nothing inherited
                    return;
                }
                queue = self.lock();
                continue;
            }
            if self.common.shutdown.load(SeqCst) {
                break;
            }
            // Wait for a permit (a submitter's wake-up) or the keep-alive.
            queue.idle += 1;
            let deadline = std::time::Instant::now() + self.common.options.keep_alive;
            let woken = loop {
                if queue.permits > 0 {
                    queue.permits -= 1;
                    break true;
                }
                if self.common.shutdown.load(SeqCst) {
                    break false;
                }
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break false;
                }
                queue = self.ready.wait_timeout(queue, left).unwrap_or_else(|p| p.into_inner()).0;
            };
            if !woken {
                queue.idle -= 1;
                if queue.jobs.is_empty() {
                    break;
                }
            }
        }
        queue.threads -= 1;
    }

    fn submit(self: &Arc<Self>, job: JobRef) -> Result<()> {
        let mut queue = self.lock();
        // Checked under the lock that shutdown takes to drain the queue.
        if self.common.shutdown.load(SeqCst) {
            drop(queue);
            job.abandon();
            return Err(Error::new(Code::Closed, "the pool is shutting down"));
        }
        queue.jobs.push_back(job);
        if queue.idle > 0 {
            // One permit per waiting thread woken: no redundant wake-ups.
            queue.idle -= 1;
            queue.permits += 1;
            drop(queue);
            self.ready.notify_one();
            return Ok(());
        }
        // No thread is waiting: start one, up to the bound. (Waiting for a busy thread
        // instead could deadlock tasks that wait for each other.)
        if queue.threads < self.bound {
            queue.threads += 1;
            let index = queue.next_index;
            queue.next_index += 1;
            drop(queue);
            let io = self.clone();
            if let Err(e) = self.common.spawn_thread(index, move || io.work()) {
                let mut queue = self.lock();
                queue.threads -= 1;
                if queue.threads == 0 {
                    // No thread will ever take these: give them up.
                    let jobs = std::mem::take(&mut queue.jobs);
                    drop(queue);
                    jobs.into_iter().for_each(|job| job.abandon());
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn wake_all(&self) {
        let _queue = self.lock();
        self.ready.notify_all();
    }
}

// ---- the pool -------------------------------------------------------------------------

enum Flavor {
    Cpu(Arc<Cpu>),
    Io(Arc<Io>),
}

/// A pool of threads that run jobs. Threads start lazily, on the first submission.
pub struct Pool {
    flavor: Flavor,
    common: Arc<Common>,
}

impl Pool {
    pub fn new(mut options: Options) -> Result<Pool> {
        crate::fork::check()?;
        crate::fork::install();
        if options.stack_size > 1 << 30 {
            return Err(Error::invalid(format!("stack_size {} is above the limit of 1 GiB", options.stack_size)));
        }
        if options.name.is_empty() || options.name.contains('\0') {
            return Err(Error::invalid(format!("name {:?} must be non-empty, without NUL", options.name)));
        }
        let limit = 4096;
        if options.threads > limit {
            return Err(Error::invalid(format!("threads {} is above the limit of {limit}", options.threads)));
        }
        if options.threads == 0 {
            options.threads = match options.kind {
                Kind::Cpu => cores(),
                Kind::Io => 64,
            };
        }
        let common = Arc::new(Common {
            options,
            shutdown: AtomicBool::new(false),
            handles: Mutex::new(Vec::new()),
            serial: next_serial(),
        });
        let threads = common.options.threads;
        let flavor = match common.options.kind {
            Kind::Cpu => {
                let locals: Vec<_> = (0..threads).map(|_| Worker::new_lifo()).collect();
                Flavor::Cpu(Arc::new(Cpu {
                    common: common.clone(),
                    injector: Injector::new(),
                    stealers: locals.iter().map(|w| w.stealer()).collect(),
                    locals: Mutex::new(locals.into_iter().map(Some).collect()),
                    events: AtomicU64::new(0),
                    sleepers: AtomicUsize::new(0),
                    searching: AtomicUsize::new(0),
                    bursts: AtomicUsize::new(0),
                    sleep: Mutex::new(0),
                    wake: Condvar::new(),
                    started: AtomicBool::new(false),
                    feeders: Mutex::new(Vec::new()),
                    feeders_epoch: AtomicU64::new(0),
                }))
            }
            Kind::Io => Flavor::Io(Arc::new(Io {
                common: common.clone(),
                queue: Mutex::new(IoQueue { jobs: VecDeque::new(), threads: 0, idle: 0, permits: 0, next_index: 0 }),
                ready: Condvar::new(),
                bound: threads,
            })),
        };
        Ok(Pool { flavor, common })
    }

    pub fn kind(&self) -> Kind {
        self.common.options.kind
    }

    /// Queues `job`; Closed once the pool is shutting down (the job is abandoned).
    pub fn submit(&self, job: JobRef) -> Result<()> {
        if self.common.shutdown.load(SeqCst) {
            job.abandon();
            return Err(Error::new(Code::Closed, "the pool is shutting down"));
        }
        match &self.flavor {
            Flavor::Cpu(cpu) => cpu.submit(job),
            Flavor::Io(io) => io.submit(job),
        }
    }

    /// A feeder for this pool (CPU pools only): see [`Feeder`].
    pub fn feeder(&self) -> Option<Feeder> {
        match &self.flavor {
            Flavor::Cpu(cpu) => Some(cpu.feeder(false)),
            Flavor::Io(_) => None,
        }
    }

    /// A staging feeder (see [`Feeder`]), boxed: the thread using it keeps its
    /// address while it holds staged jobs. For one thread's use only (a loop's own).
    pub fn staging_feeder(&self) -> Option<Box<Feeder>> {
        match &self.flavor {
            Flavor::Cpu(cpu) => Some(Box::new(cpu.feeder(true))),
            Flavor::Io(_) => None,
        }
    }

    /// True once `shutdown` has begun.
    pub fn is_shut_down(&self) -> bool {
        self.common.shutdown.load(SeqCst)
    }

    /// True on one of this pool's threads.
    pub fn on_own_thread(&self) -> bool {
        self.common.on_own_thread().is_some()
    }

    /// Stops the pool: jobs that have not started are abandoned, running ones finish,
    /// and every thread is joined. Busy when called from one of the pool's threads.
    pub fn shutdown(&self) -> Result<()> {
        if self.on_own_thread() {
            return Err(Error::new(Code::Busy, "a pool cannot be freed from one of its own threads"));
        }
        self.common.shutdown.store(true, SeqCst);
        // Abandon what is queued, then wake everyone so they see the shutdown.
        match &self.flavor {
            Flavor::Cpu(cpu) => {
                cpu.abandon_queued();
                cpu.wake_all();
            }
            Flavor::Io(io) => {
                let jobs = std::mem::take(&mut io.lock().jobs);
                for job in jobs {
                    job.abandon();
                }
                io.wake_all();
            }
        }
        let handles = std::mem::take(&mut *self.common.handles.lock().unwrap_or_else(|p| p.into_inner()));
        for handle in handles {
            handle.join();
        }
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if !crate::fork::is_child() {
            let _ = self.shutdown();
        }
    }
}
