//! Pool threads: plain pthreads started and joined for a pool ([`Common`], the part of
//! a pool both flavours share), and [`ThreadState`], what a thread knows of pools.

use super::cpu::Cpu;
use super::feeder::Feeder;
use super::job::JobRef;
use super::Options;
use crate::error::{Error, Result};
use crossbeam_deque::Worker;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

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
        crate::sys::name_this_thread(&name);
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
                let least = libc::sysconf(libc::_SC_THREAD_STACK_MIN).max(16384) as usize;
                let size = stack_size.max(least).div_ceil(page) * page;
                libc::pthread_attr_setstacksize(&mut attr, size);
            }
            let mut id: libc::pthread_t = std::mem::zeroed();
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

/// What both flavours of pool share: their options, the shutdown flag and their threads.
pub(super) struct Common {
    /// Read-only once the pool is made.
    pub(super) options: Options,
    /// Set once, by `Pool::shutdown` (or by a CPU pool that could start no thread).
    pub(super) shutdown: AtomicBool,
    handles: Mutex<Vec<OsThread>>,
    /// Identifies the pool for "is this thread one of mine".
    pub(super) serial: u64,
    /// Threads started and threads that ended, for statistics.
    pub(super) started: AtomicU64,
    pub(super) retired: AtomicU64,
}

/// What a thread knows of pools, in one thread-local (in a shared library, each
/// thread-local access is a call: a spawn makes one). Each field is kept by the file
/// named beside it; the others only read it.
pub(super) struct ThreadState {
    /// The pool serial and worker index of the current thread, if it is a pool thread
    /// (this file).
    pub(super) current: Cell<Option<(u64, usize)>>,
    /// The deque of the CPU worker running on this thread, for nested submissions
    /// (cpu.rs).
    pub(super) local: Cell<*const Worker<JobRef>>,
    /// How deep this thread is in loop callbacks (deferred.rs: see
    /// [`deferring_wakeups`](super::deferring_wakeups)).
    pub(super) deferring: Cell<usize>,
    /// The CPU pool (an `Arc` turned into a raw pointer, so the thread-local needs no
    /// destructor) this thread submitted to while deferring, to wake when it stops
    /// (deferred.rs).
    pub(super) deferred: Cell<*const Cpu>,
    /// The staging feeder holding this thread's staged jobs (feeder.rs: see [`Feeder`]).
    pub(super) staged: Cell<*const Feeder>,
}

thread_local! {
    pub(super) static THREAD: ThreadState = const {
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
    pub(super) fn new(options: Options) -> Arc<Common> {
        Arc::new(Common {
            options,
            shutdown: AtomicBool::new(false),
            handles: Mutex::new(Vec::new()),
            serial: next_serial(),
            started: AtomicU64::new(0),
            retired: AtomicU64::new(0),
        })
    }

    /// Starts thread `index` of the pool, running `body` between the pool's hooks.
    pub(super) fn spawn_thread(self: &Arc<Self>, index: usize, body: impl FnOnce() + Send + 'static) -> Result<()> {
        let name = format!("{}-{index}", self.options.name);
        let common = self.clone();
        let handle = OsThread::spawn(&name, self.options.stack_size, move || {
            THREAD.with(|t| t.current.set(Some((common.serial, index))));
            common.started.fetch_add(1, SeqCst);
            if let Some(hook) = &common.options.on_start {
                hook(index);
            }
            body();
            if let Some(hook) = &common.options.on_stop {
                hook(index);
            }
            common.retired.fetch_add(1, SeqCst);
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

    /// Joins every thread of the pool (at shutdown, once they have been told).
    pub(super) fn join_threads(&self) {
        let handles = std::mem::take(&mut *self.handles.lock().unwrap_or_else(|p| p.into_inner()));
        for handle in handles {
            handle.join();
        }
    }

    /// This thread's index, if it is one of the pool's threads.
    pub(super) fn on_own_thread(&self) -> Option<usize> {
        THREAD.with(|t| t.current.get()).and_then(|(serial, index)| (serial == self.serial).then_some(index))
    }
}
