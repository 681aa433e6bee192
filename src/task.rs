//! Tasks: work run on the loop, on the IO pool or on the CPU pool, with one completion
//! (`done`) on the loop thread.
//!
//! A task is a registration of its loop (its `done` handler lives in the loop's slab)
//! plus a [`Job`] in a pool that runs its work function. Both sides hold the same
//! [`TaskCell`] (its state, its work and its user data, in one allocation); the job
//! reports back through the loop's inbox (a `Done` record), so completions arrive in
//! batches with one wake-up each. The work (and with it the user data) is dropped when
//! both sides are done with the cell.
//!
//! States: Queued → Running → Finished, or Queued → Cancelled (the work never runs).
//! Cancel of a queued task wins the Queued → Cancelled race and queues the `Cancelled`
//! completion itself; cancel of a running task only raises the flag work can poll, and
//! the loop reports `Cancelled` when the work's completion arrives. A timeout reports
//! `Timeout` at the deadline without waiting for the work, which sees the flag raised.
//!
//! A task that never returns keeps its pool thread forever: weft cannot stop a thread.
//! Its `done` still runs once (on cancel or timeout, if one is set), and its user data
//! is released when (if) the work returns.

use crate::inbox::{Inbox, Record};
use crate::pool::{self, JobHeader, JobRef, JobVTable, Pool};
use crate::slots::Id;
use std::cell::{RefCell, UnsafeCell};
use std::mem::ManuallyDrop;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Acquire, Ordering::Release, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

/// Where a task's work runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Where {
    Loop,
    Io,
    Cpu,
    Process,
}

/// A task's completion status: what work returned (>= 0), or a negative `weft_result`.
pub const CANCELLED: i32 = crate::error::Code::Cancelled as i32;
pub const TIMEOUT: i32 = crate::error::Code::Timeout as i32;

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const FINISHED: u8 = 2;
const ABANDONED: u8 = 3;

/// A task's work, as the spawner supplies it. Dropping it is the end of the task's user
/// data (the C layer runs `free_fn` then), which happens once both the loop and the
/// pool are done with the task.
pub trait TaskWork<H>: Send + Sync + Sized {
    /// Runs the work (at most once per task); returns its status (>= 0 by convention).
    fn run(&self, task: &mut Task<H>) -> i32;

    /// The spawn was refused: the caller keeps what the work refers to.
    fn refused(self) {}
}

/// A Rust closure as a task's work.
pub struct BoxedWork<H>(Mutex<Option<WorkFn<H>>>);

/// A Rust closure run once as a task's work.
type WorkFn<H> = Box<dyn FnOnce(&mut Task<H>) -> i32 + Send>;

impl<H> BoxedWork<H> {
    pub fn new(work: impl FnOnce(&mut Task<H>) -> i32 + Send + 'static) -> BoxedWork<H> {
        BoxedWork(Mutex::new(Some(Box::new(work))))
    }
}

impl<H> TaskWork<H> for BoxedWork<H> {
    fn run(&self, task: &mut Task<H>) -> i32 {
        let work = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        work.map_or(0, |work| work(task))
    }
}

/// A task, shared by its loop entry and its queued job: one allocation per task, with
/// its own reference count (one for each side), so that a queued task costs its 56-byte
/// cell, a thin pointer in the pool's queue and its loop slot, and nothing else.
#[repr(C)]
pub struct TaskCell<H, W> {
    /// First field: the pool reaches the task through it (see [`JobRef`]).
    header: JobHeader,
    refs: AtomicU32,
    stage: AtomicU8,
    cancelled: AtomicBool,
    /// The sides still holding the work: the loop (until `done` has run) and the pool
    /// (until the work has returned, or been given up before it started). The last one
    /// to let go drops the work, which ends its user data: on the loop thread after
    /// `done`, or on the work's thread when the work outlives `done`.
    holders: AtomicU8,
    id: Id,
    inbox: Arc<Inbox<H>>,
    work: UnsafeCell<ManuallyDrop<W>>,
}

impl<H: Send + 'static, W: TaskWork<H> + 'static> TaskCell<H, W> {
    const VTABLE: JobVTable = JobVTable { run: Self::run_job, abandon: Self::abandon_job, release: Self::release_job };

    /// A new task: the loop's side of it, and the job to queue.
    pub fn create(id: Id, inbox: Arc<Inbox<H>>, work: W) -> (LoopSide<H, W>, JobRef) {
        let cell = Box::new(TaskCell {
            header: JobHeader { vtable: &Self::VTABLE },
            refs: AtomicU32::new(2),
            stage: AtomicU8::new(QUEUED),
            cancelled: AtomicBool::new(false),
            holders: AtomicU8::new(2),
            id,
            inbox,
            work: UnsafeCell::new(ManuallyDrop::new(work)),
        });
        let cell = NonNull::from(Box::leak(cell));
        // SAFETY: the cell starts with its header, holds two references (one each),
        // and is Send + Sync (see below).
        (LoopSide(cell), unsafe { JobRef::from_raw(cell.cast()) })
    }

    unsafe fn run_job(header: NonNull<JobHeader>) {
        let cell = header.cast::<Self>();
        // SAFETY: the job's reference keeps the cell alive until `unref`.
        let this = unsafe { cell.as_ref() };
        if this.stage.compare_exchange(QUEUED, RUNNING, SeqCst, SeqCst).is_ok() {
            let mut task = Task::in_memory(&this.cancelled, &this.inbox);
            // SAFETY: the pool side holds the work until `release` below.
            let status = unsafe { &*this.work.get() }.run(&mut task);
            if crate::fork::is_child() {
                // The work forked and the child returned here: the task belongs to the
                // parent; touch nothing (no second free_fn, no inherited lock).
                std::mem::forget(task);
                return;
            }
            this.stage.store(FINISHED, SeqCst);
            let result = task.into_result();
            // Let go first: if `done` is still to come, the loop drops the work after it.
            this.release();
            this.inbox.push(Record::Done { id: this.id, status, result });
        } // else cancelled before it started: the canceller reported it
        unsafe { Self::unref(cell) }
    }

    unsafe fn abandon_job(header: NonNull<JobHeader>) {
        let cell = header.cast::<Self>();
        // SAFETY: as in run_job.
        let this = unsafe { cell.as_ref() };
        if this.stage.compare_exchange(QUEUED, ABANDONED, SeqCst, SeqCst).is_ok() {
            this.cancelled.store(true, SeqCst);
            this.release();
            this.inbox.push(Record::Done { id: this.id, status: CANCELLED, result: Vec::new() });
        }
        unsafe { Self::unref(cell) }
    }

    unsafe fn release_job(header: NonNull<JobHeader>) {
        unsafe { Self::unref(header.cast::<Self>()) }
    }
}

impl<H, W> TaskCell<H, W> {
    /// Raises the cancel flag; true if the task had not started, so it never will (and
    /// the pool's hold on the work is released now).
    pub fn cancel(&self) -> bool {
        self.cancelled.store(true, SeqCst);
        let abandoned = self.stage.compare_exchange(QUEUED, ABANDONED, SeqCst, SeqCst).is_ok();
        if abandoned {
            self.release();
        }
        abandoned
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(SeqCst)
    }

    /// One side lets go of the work; the last one drops it.
    fn release(&self) {
        if self.holders.fetch_sub(1, SeqCst) == 1 {
            // SAFETY: both sides have let go: nobody can reach the work any more.
            unsafe { ManuallyDrop::drop(&mut *self.work.get()) }
        }
    }

    /// Drops one reference; the last one frees the cell.
    ///
    /// # Safety
    /// The caller owns a reference to the live cell and does not use it afterwards.
    unsafe fn unref(cell: NonNull<Self>) {
        if unsafe { cell.as_ref() }.refs.fetch_sub(1, Release) == 1 {
            fence(Acquire);
            // SAFETY: the last reference: made by Box::leak in `create`.
            drop(unsafe { Box::from_raw(cell.as_ptr()) });
        }
    }
}

// SAFETY: the cell is shared by the loop and a pool thread: `work` is shared as `&W`
// (W: Sync) while both hold it and dropped once, by the side whose release takes
// `holders` to zero; the cell itself is freed by the last reference.
unsafe impl<H: Send, W: Send + Sync> Send for TaskCell<H, W> {}
unsafe impl<H: Send, W: Send + Sync> Sync for TaskCell<H, W> {}

impl<H, W> Drop for TaskCell<H, W> {
    fn drop(&mut self) {
        if *self.holders.get_mut() > 0 {
            // A side that never let go (it cannot happen, but nothing must leak).
            // SAFETY: `&mut self`: no one else can reach the work.
            unsafe { ManuallyDrop::drop(self.work.get_mut()) }
        }
    }
}

/// The loop's hold on a task: one reference to its cell, and the loop's side of the
/// work, both let go when the loop entry ends.
pub struct LoopSide<H, W>(NonNull<TaskCell<H, W>>);

// SAFETY: as for the cell itself.
unsafe impl<H: Send, W: Send + Sync> Send for LoopSide<H, W> {}
unsafe impl<H: Send, W: Send + Sync> Sync for LoopSide<H, W> {}

impl<H, W> std::ops::Deref for LoopSide<H, W> {
    type Target = TaskCell<H, W>;
    fn deref(&self) -> &TaskCell<H, W> {
        // SAFETY: this side's reference keeps the cell alive.
        unsafe { self.0.as_ref() }
    }
}

impl<H, W> Drop for LoopSide<H, W> {
    fn drop(&mut self) {
        self.release();
        // SAFETY: this side's reference, released once.
        unsafe { TaskCell::unref(self.0) }
    }
}

/// What a work function sees: its cancel flag, and where its result and events go: to
/// its loop (a task on a thread), or down a pipe to the parent (a process task's child).
pub struct Task<'a, H> {
    cancelled: &'a AtomicBool,
    sink: Sink<'a, H>,
}

enum Sink<'a, H> {
    Memory { inbox: &'a Inbox<H>, result: Vec<u8> },
    /// In a process task's child: frames on `fd` (see [`crate::process`]).
    Pipe { fd: RawFd, parent: libc::pid_t },
}

/// A child's cancel flag: a child learns of a cancel by being killed.
static NEVER: AtomicBool = AtomicBool::new(false);

impl<'a, H> Task<'a, H> {
    fn in_memory(cancelled: &'a AtomicBool, inbox: &'a Inbox<H>) -> Task<'a, H> {
        Task { cancelled, sink: Sink::Memory { inbox, result: Vec::new() } }
    }

    fn into_result(self) -> Vec<u8> {
        match self.sink {
            Sink::Memory { result, .. } => result,
            Sink::Pipe { .. } => Vec::new(),
        }
    }
}

impl<H> Task<'static, H> {
    /// The task of a forked child that reports to its parent through `fd`. Makes no
    /// allocation and no call that is not async-signal-safe.
    pub fn in_child(fd: RawFd) -> Task<'static, H> {
        // SAFETY: getppid cannot fail.
        Task { cancelled: &NEVER, sink: Sink::Pipe { fd, parent: unsafe { libc::getppid() } } }
    }
}

impl<H> Task<'_, H> {
    /// True once the task was cancelled or timed out; in a process task's child, once
    /// the parent has gone.
    pub fn cancelled(&self) -> bool {
        match self.sink {
            // SAFETY: getppid cannot fail.
            Sink::Pipe { parent, .. } => (unsafe { libc::getppid() }) != parent,
            Sink::Memory { .. } => self.cancelled.load(SeqCst),
        }
    }

    pub fn write(&mut self, bytes: &[u8]) -> crate::Result<()> {
        match &mut self.sink {
            Sink::Memory { result, .. } => {
                result.extend_from_slice(bytes);
                Ok(())
            }
            Sink::Pipe { fd, .. } => crate::process::send_result(*fd, bytes)
                .map_err(|e| crate::Error::io("writing the result to the parent's pipe", e)),
        }
    }

    /// Emits an event to the task's loop; it reaches subscribers before `done`.
    pub fn emit(&self, topic: &str, payload: &[u8]) -> crate::Result<()> {
        match &self.sink {
            Sink::Memory { inbox, .. } => {
                crate::fork::check()?;
                crate::bus::check_topic(topic)?;
                inbox.emit(topic, payload);
                Ok(())
            }
            Sink::Pipe { fd, .. } => crate::process::send_event(*fd, topic, payload),
        }
    }

    /// True for a process task's child.
    pub fn is_child(&self) -> bool {
        matches!(self.sink, Sink::Pipe { .. })
    }

    /// In a process task's child: sends `status` as the work's status and ends the
    /// child. Err for a task on a thread (it cannot end the process).
    pub fn child_exit(&self, status: i32) -> crate::Result<std::convert::Infallible> {
        match self.sink {
            Sink::Pipe { fd, .. } => crate::process::finish(fd, status),
            Sink::Memory { .. } => Err(crate::Error::invalid(
                "task is not a process task's (it runs on a thread: return from work instead)",
            )),
        }
    }
}

/// The default pools, made on first use and joined by [`shutdown`].
static DEFAULTS: Mutex<[Option<Arc<Pool>>; 2]> = Mutex::new([None, None]);

pub fn default_pool(kind: pool::Kind) -> crate::Result<Arc<Pool>> {
    let mut pools = DEFAULTS.lock().unwrap_or_else(|p| p.into_inner());
    let slot = &mut pools[(kind == pool::Kind::Io) as usize];
    if let Some(pool) = slot {
        return Ok(pool.clone());
    }
    let pool = Arc::new(Pool::new(pool::Options::new(kind))?);
    *slot = Some(pool.clone());
    Ok(pool)
}

/// Bumped whenever a pool is freed or the default pools are shut down: a thread's
/// cached pool (see [`with_pool`]) is used only while the epoch it was cached at is
/// still the current one.
static POOL_EPOCH: AtomicU64 = AtomicU64::new(0);

/// Call before a pool is unregistered (or its address can be reused).
pub fn pools_changed() {
    POOL_EPOCH.fetch_add(1, SeqCst);
}

/// How many pools a thread keeps at hand.
const POOL_CACHE: usize = 4;

thread_local! {
    /// Pools this thread spawned on lately: (key, epoch when cached, pool).
    static POOLS: RefCell<Vec<(usize, u64, Arc<Pool>)>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with the pool known as `key` (a pool handle's address, or [`DEFAULT_CPU`] /
/// [`DEFAULT_IO`]). `resolve` finds it the first time on this thread, and again after
/// any pool was freed; in between, a spawn costs no lock and no reference count.
///
/// A pool freed by another thread right after the check is still alive here (the cache
/// holds a reference): a job submitted to it is abandoned, as when the free races a
/// submission anyway.
pub fn with_pool<R>(
    key: usize,
    resolve: impl FnOnce() -> crate::Result<Arc<Pool>>,
    f: impl FnOnce(&Pool) -> crate::Result<R>,
) -> crate::Result<R> {
    let epoch = POOL_EPOCH.load(SeqCst);
    let mut f = Some(f);
    // A hit runs `f` inside the (shared) borrow: no reference count is touched.
    let hit = POOLS.with(|cache| {
        let cache = cache.try_borrow().ok()?;
        let (_, _, pool) = cache.iter().find(|(k, e, _)| *k == key && *e == epoch)?;
        Some((f.take().expect("called once"))(pool))
    });
    if let Some(result) = hit {
        return result;
    }
    let pool = resolve()?;
    POOLS.with(|cache| {
        if let Ok(mut cache) = cache.try_borrow_mut() {
            cache.retain(|(k, e, _)| *k != key && *e == epoch);
            if cache.len() == POOL_CACHE {
                cache.remove(0);
            }
            cache.push((key, epoch, pool.clone()));
        }
    });
    (f.take().expect("called once"))(&pool)
}

/// [`with_pool`] keys of the default pools.
pub(crate) const DEFAULT_CPU: usize = 1;
pub(crate) const DEFAULT_IO: usize = 2;

/// Drains and joins the default pools (queued tasks complete as cancelled).
pub fn shutdown() -> crate::Result<()> {
    crate::fork::check()?;
    let mut defaults = DEFAULTS.lock().unwrap_or_else(|p| p.into_inner());
    if defaults.iter().flatten().any(|pool| pool.on_own_thread()) {
        return Err(crate::Error::new(
            crate::Code::Busy,
            "called from a thread of a default pool, which cannot join itself",
        ));
    }
    let pools = std::mem::take(&mut *defaults);
    pools_changed();
    drop(defaults);
    for pool in pools.into_iter().flatten() {
        pool.shutdown()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn io_pool() -> Arc<Pool> {
        Arc::new(Pool::new(pool::Options::new(pool::Kind::Io)).unwrap())
    }

    #[test]
    fn a_cached_pool_is_forgotten_when_any_pool_goes() {
        let (a, b) = (io_pool(), io_pool());
        let resolved = Cell::new(0);
        let lookup = |expect: &Arc<Pool>, with: &Arc<Pool>| {
            with_pool(
                0x1000,
                || {
                    resolved.set(resolved.get() + 1);
                    Ok(with.clone())
                },
                |pool| Ok(std::ptr::eq(pool, &**expect)),
            )
            .unwrap()
        };
        assert!(lookup(&a, &a));
        assert!(lookup(&a, &b), "a hit: the key's pool is reused, resolve is not called");
        assert_eq!(resolved.get(), 1);
        // The same key (a freed handle's address reused) names another pool now.
        pools_changed();
        assert!(lookup(&b, &b));
        assert_eq!(resolved.get(), 2);
        // A failed lookup caches nothing and hands the error back.
        pools_changed();
        let err = with_pool(0x1000, || Err(crate::Error::invalid("gone")), |_| Ok(())).unwrap_err();
        assert_eq!(err.code, crate::Code::Invalid);
    }
}
