//! Process-wide signal handling shared by every loop.
//!
//! Signals are process-wide but watches belong to loops, so weft installs one handler per
//! signal while any watch of that signal exists (in any loop), and restores the previous
//! disposition when the last one goes.
//!
//! The handler is async-signal-safe: it bumps the signal's counter in [`COUNTS`] and rings
//! the bell ([`sys::ring`]) of every loop registered in [`Bells`]. A loop, woken, compares
//! each watched signal's counter with the value it saw last and runs the watches of
//! those that moved.
//! Like POSIX signals themselves, several deliveries between two passes coalesce into one.
//!
//! Unregistering a bell must not let a handler that already read the fd write to it after
//! it is closed (or reused): the handler counts itself in `in_handler` around its reads
//! and writes, and [`unregister_bell`] waits for that count to reach zero after clearing
//! the slot. A Dekker pair, each side store; SeqCst fence; load: either the handler sees
//! the cleared slot, or the unregistering thread sees the handler's count (the loom
//! model `loom_signal_bells` checks it).

use crate::error::{Error, Result};
use crate::sync::atomic::{fence, AtomicI32, AtomicUsize, Ordering::Acquire};
use crate::sys;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Mutex;

/// Signals are numbered 1..NSIG.
pub(crate) const NSIG: usize = 65;
const MAX_BELLS: usize = 1024;

static COUNTS: [AtomicU64; NSIG] = [const { AtomicU64::new(0) }; NSIG];
#[cfg(not(loom))]
static BELLS: Bells<MAX_BELLS> = Bells::new();
#[cfg(loom)]
loom::lazy_static! {
    static ref BELLS: Bells<MAX_BELLS> = Bells::new();
}

/// The bells of the loops that watch signals (their fds, -1 for a free slot), and the
/// handlers running: see the module comment.
pub(crate) struct Bells<const N: usize> {
    slots: [AtomicI32; N],
    in_handler: AtomicUsize,
}

impl<const N: usize> Bells<N> {
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Bells { slots: [const { AtomicI32::new(-1) }; N], in_handler: AtomicUsize::new(0) }
    }

    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Bells { slots: std::array::from_fn(|_| AtomicI32::new(-1)), in_handler: AtomicUsize::new(0) }
    }

    /// The handler's side: `ring` each registered bell. Async-signal-safe.
    pub(crate) fn ring_all(&self, ring: impl Fn(RawFd)) {
        self.in_handler.fetch_add(1, SeqCst);
        fence(SeqCst); // the Dekker pair with `unregister`
        for bell in self.slots.iter() {
            let fd = bell.load(Acquire);
            if fd >= 0 {
                ring(fd);
            }
        }
        self.in_handler.fetch_sub(1, SeqCst);
    }

    /// Takes a free slot for bell `fd`.
    pub(crate) fn register(&self, fd: RawFd) -> Option<usize> {
        self.slots.iter().position(|bell| bell.compare_exchange(-1, fd, SeqCst, SeqCst).is_ok())
    }

    /// Frees `slot`; on return no handler will ring its fd.
    pub(crate) fn unregister(&self, slot: usize) {
        self.slots[slot].store(-1, SeqCst);
        fence(SeqCst); // the Dekker pair with `ring_all`
        while self.in_handler.load(Acquire) > 0 {
            crate::sync::yield_now();
        }
    }

    /// In a forked child: no bell may ring.
    fn forget(&self) {
        for bell in self.slots.iter() {
            bell.store(-1, SeqCst);
        }
    }
}

struct Disposition {
    watchers: usize,
    previous: libc::sigaction,
}

static DISPOSITIONS: Mutex<Vec<Option<Disposition>>> = Mutex::new(Vec::new());

/// A copy of each saved previous disposition that a forked child can read without the
/// mutex (which another thread may have held at the fork): `SAVED_SET[n]` says whether
/// `SAVED[n]` holds signal n's. Written under `DISPOSITIONS`, read only in a child.
struct Saved(std::cell::UnsafeCell<[libc::sigaction; NSIG]>);
// SAFETY: written only under DISPOSITIONS; read only by the fork child hook, in a
// process where no other thread exists any more.
unsafe impl Sync for Saved {}
static SAVED: Saved = Saved(std::cell::UnsafeCell::new(unsafe { std::mem::zeroed() }));
static SAVED_SET: [std::sync::atomic::AtomicBool; NSIG] = [const { std::sync::atomic::AtomicBool::new(false) }; NSIG];

/// In a forked child: weft's loops are the parent's, so no bell may ring and every
/// watched signal gets back the disposition it had before weft. Async-signal-safe
/// (atomics and sigaction only), as the fork child hook must be.
pub fn forget_in_child() {
    BELLS.forget();
    for (signum, saved) in SAVED_SET.iter().enumerate().skip(1) {
        if saved.load(SeqCst) {
            // SAFETY: the entry was written before the fork and is read-only now.
            unsafe { libc::sigaction(signum as libc::c_int, &(*SAVED.0.get())[signum], std::ptr::null_mut()) };
        }
    }
}

extern "C" fn on_signal(signum: libc::c_int) {
    // errno is thread-local; saving and restoring it keeps the interrupted code's.
    let errno = sys::errno();
    if let Some(count) = COUNTS.get(signum as usize) {
        count.fetch_add(1, SeqCst);
    }
    BELLS.ring_all(sys::ring);
    sys::set_errno(errno);
}

/// The number of times `signum` has been caught so far.
pub fn count(signum: i32) -> u64 {
    COUNTS[signum as usize].load(SeqCst)
}

/// Checks that weft may watch `signum`.
pub fn check(signum: i32) -> Result<()> {
    let forbidden = [libc::SIGKILL, libc::SIGSTOP, libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL];
    if signum <= 0 || signum as usize >= NSIG || forbidden.contains(&signum) {
        return Err(Error::invalid(format!(
            "signum {signum} cannot be watched (valid: 1..{}, not SIGKILL, SIGSTOP or a fault signal)",
            NSIG - 1
        )));
    }
    // The C library keeps the signals between the classic ones and SIGRTMIN (glibc:
    // 32 and 33) for its own threads.
    let rtmin = sys::first_realtime_signal();
    if (32..rtmin).contains(&signum) {
        return Err(Error::invalid(format!(
            "signum {signum} is reserved by the C library (real-time signals start at SIGRTMIN, {rtmin})"
        )));
    }
    Ok(())
}

/// Adds a watcher of `signum`; the first one installs weft's handler.
pub fn add_watcher(signum: i32) -> Result<()> {
    check(signum)?;
    let mut table = DISPOSITIONS.lock().unwrap_or_else(|p| p.into_inner());
    if table.len() < NSIG {
        table.resize_with(NSIG, || None);
    }
    if let Some(d) = &mut table[signum as usize] {
        d.watchers += 1;
        return Ok(());
    }
    // SAFETY: sigaction with a valid handler and zeroed mask; `previous` receives the old one.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigfillset(&mut action.sa_mask);
        let mut previous: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signum, &action, &mut previous) != 0 {
            let err = std::io::Error::last_os_error();
            return Err(Error::invalid(format!("signum {signum} cannot be watched: sigaction: {err}")));
        }
        table[signum as usize] = Some(Disposition { watchers: 1, previous });
        (*SAVED.0.get())[signum as usize] = previous;
        SAVED_SET[signum as usize].store(true, SeqCst);
    }
    Ok(())
}

/// Removes a watcher of `signum`; the last one restores the previous disposition.
pub fn remove_watcher(signum: i32) {
    let mut table = DISPOSITIONS.lock().unwrap_or_else(|p| p.into_inner());
    let Some(Some(d)) = table.get_mut(signum as usize) else { return };
    d.watchers -= 1;
    if d.watchers == 0 {
        // SAFETY: restores the action saved when the first watcher was added.
        unsafe { libc::sigaction(signum, &d.previous, std::ptr::null_mut()) };
        SAVED_SET[signum as usize].store(false, SeqCst);
        table[signum as usize] = None;
    }
}

/// Registers a loop's signal bell (its fd) with the handler; returns its slot.
pub fn register_bell(fd: RawFd) -> Result<usize> {
    BELLS.register(fd).ok_or_else(|| {
        Error::new(crate::error::Code::Busy, format!("more than {MAX_BELLS} loops watch signals at once"))
    })
}

/// Unregisters a bell; on return no signal handler will write to its fd.
pub fn unregister_bell(slot: usize) {
    BELLS.unregister(slot);
}
