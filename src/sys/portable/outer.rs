//! The descriptor an embedding host watches (`weft_loop_fd`): readable whenever a
//! non-blocking pass of the loop has work, due timers included.
//!
//! * **kqueue** (macOS, the BSDs): a kqueue holding the loop's poller, itself a kqueue
//!   whose timer is a filter of its own: the kernel does it all, as epoll does on Linux.
//! * **Elsewhere** (poll(2), and pollers without a timer filter): there is no descriptor
//!   that turns readable by itself, so the host's fd is the loop's inbox bell (bell.rs):
//!   posts, events and task completions ring it, so for them the fd turns readable at
//!   once. For the rest (watched fds, due timers, signals, children) a helper thread
//!   rings it. The thread starts when the host first asks for the fd. While no thread
//!   runs the loop, it waits on the loop's poller (until something is ready or the timer
//!   is due), then rings the bell and parks. A thread entering `run` interrupts and parks
//!   it (the pass drains the bell); leaving `run` lets it watch again. `timeout_ms` looks
//!   at the poller itself (without waiting), so its answer is exact. The thread never
//!   waits on the poller while the loop does (polling allows one waiter at a time), and
//!   it costs a context switch or two per `run`, nothing per pass.

#[cfg(not(weft_kqueue))]
use super::{lock, Events, Waiter};
use std::io;
use std::os::fd::{AsRawFd, RawFd};

#[cfg(weft_kqueue)]
pub struct Outer {
    poller: polling::Poller,
}

#[cfg(weft_kqueue)]
impl Outer {
    pub fn new(inner: &super::Poller, _bell: (RawFd, RawFd)) -> io::Result<Outer> {
        let poller = polling::Poller::new()?;
        // SAFETY: the loop keeps its inner poller until it removes it (replace, drop).
        unsafe { poller.add(inner.as_raw_fd(), polling::Event::readable(0)) }?;
        Ok(Outer { poller })
    }

    pub fn replace(&self, old: &super::Poller, fresh: &super::Poller) -> io::Result<()> {
        // SAFETY: as in `new`.
        unsafe { self.poller.add(fresh.as_raw_fd(), polling::Event::readable(0)) }?;
        // SAFETY: the old poller is still open: the loop drops it after this call.
        let _ = self.poller.delete(unsafe { std::os::fd::BorrowedFd::borrow_raw(old.as_raw_fd()) });
        Ok(())
    }

    #[inline]
    pub fn is_ready(&self) -> bool {
        crate::sys::unix::is_readable(self.poller.as_raw_fd())
    }

    /// The host's fd.
    pub fn host_fd(&self) -> io::Result<RawFd> {
        Ok(self.poller.as_raw_fd())
    }

    #[inline]
    pub fn enter(&self) {}

    #[inline]
    pub fn leave(&self) {}

    #[inline]
    pub fn shut_down(&self) {}
}

/// What the helper thread and the loop's runner share.
#[cfg(not(weft_kqueue))]
struct State {
    /// The loop's poller to watch.
    waiter: Waiter,
    /// A thread runs the loop: nobody else may wait on its poller.
    running: bool,
    /// A thread looks at the poller for `is_ready`.
    looking: bool,
    /// The helper is waiting on the poller now.
    watching: bool,
    /// The helper rang the bell and waits for a pass before it watches again.
    rung: bool,
    /// The loop is closing: the helper ends, and nobody rings the bell again.
    quit: bool,
}

#[cfg(not(weft_kqueue))]
struct Shared {
    state: std::sync::Mutex<State>,
    changed: std::sync::Condvar,
    /// The loop's inbox bell: the host's fd is its read end, and ringing it is what the
    /// helper (or `is_ready`) does when a pass has other work.
    bell_poll: RawFd,
    bell_ring: RawFd,
}

#[cfg(not(weft_kqueue))]
impl Shared {
    fn wait_for<'a>(&self, mut state: std::sync::MutexGuard<'a, State>) -> std::sync::MutexGuard<'a, State> {
        state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        state
    }

    /// Until the helper has stopped waiting on the poller (interrupting its wait).
    fn stop_watching<'a>(&self, mut state: std::sync::MutexGuard<'a, State>) -> std::sync::MutexGuard<'a, State> {
        while state.watching {
            let _ = state.waiter.shared().poller().notify();
            state = self.wait_for(state);
        }
        state
    }
}

#[cfg(not(weft_kqueue))]
pub struct Outer {
    shared: std::sync::Arc<Shared>,
    helper: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[cfg(not(weft_kqueue))]
impl Outer {
    /// `bell`: the loop's inbox bell (poll end, ring end), a member of `inner`: producers
    /// ring it, which makes the host's fd readable at once; the helper rings it for the
    /// rest.
    pub fn new(inner: &super::Poller, bell: (RawFd, RawFd)) -> io::Result<Outer> {
        let state =
            State { waiter: inner.waiter(), running: false, looking: false, watching: false, rung: false, quit: false };
        let (bell_poll, bell_ring) = bell;
        let shared = Shared { state: std::sync::Mutex::new(state), changed: Default::default(), bell_poll, bell_ring };
        Ok(Outer { shared: std::sync::Arc::new(shared), helper: std::sync::Mutex::new(None) })
    }

    pub fn replace(&self, _old: &super::Poller, fresh: &super::Poller) -> io::Result<()> {
        let mut state = lock(&self.shared.state);
        let old = std::mem::replace(&mut state.waiter, fresh.waiter());
        if state.watching {
            let _ = old.shared().poller().notify();
        }
        Ok(())
    }

    /// True when a pass would find work now besides the inbox and the completions held
    /// back (which the caller looks at): a look at the poller, without waiting, unless a
    /// thread runs the loop (then: whether the helper had rung). If there is work, the
    /// bell is rung so that the host's fd says so too. The look drains the bell: the
    /// caller rings it again if records are queued (`Loop::timeout_ms`).
    pub fn is_ready(&self) -> bool {
        let shared = &*self.shared;
        let mut state = lock(&shared.state);
        while state.looking {
            state = shared.wait_for(state);
        }
        if state.running || state.quit {
            return state.rung;
        }
        state.looking = true;
        state = shared.stop_watching(state);
        let waiter = state.waiter.clone();
        drop(state);
        let found = waiter.has_work();
        let mut state = lock(&shared.state);
        state.rung = found;
        if found {
            super::ring(shared.bell_ring);
        }
        state.looking = false;
        drop(state);
        shared.changed.notify_all();
        found
    }

    /// The host's fd; the first call starts the helper thread.
    pub fn host_fd(&self) -> io::Result<RawFd> {
        let mut helper = lock(&self.helper);
        if helper.is_none() && !lock(&self.shared.state).quit {
            let shared = self.shared.clone();
            *helper = Some(std::thread::Builder::new().name("weft-embed".into()).spawn(move || watch(&shared))?);
        }
        Ok(self.shared.bell_poll)
    }

    /// A thread starts running the loop: the helper stops watching, a look in progress
    /// ends first (the pass drains the bell, so the host's fd turns quiet unless work
    /// comes in).
    pub fn enter(&self) {
        let shared = &*self.shared;
        let mut state = lock(&shared.state);
        while state.looking {
            state = shared.wait_for(state);
        }
        state.running = true;
        // Once the helper has stopped: a ring it makes while stopping is one this pass
        // drains, so it must not stay marked as pending (the helper would park for good).
        let mut state = shared.stop_watching(state);
        state.rung = false;
    }

    /// The thread leaves the loop: the helper may watch again.
    pub fn leave(&self) {
        lock(&self.shared.state).running = false;
        self.shared.changed.notify_all();
    }

    /// The loop is closing (before its bell is closed): the helper ends and is joined.
    pub fn shut_down(&self) {
        {
            let mut state = lock(&self.shared.state);
            state.quit = true;
            let _ = state.waiter.shared().poller().notify();
        }
        self.shared.changed.notify_all();
        if let Some(helper) = lock(&self.helper).take() {
            let _ = helper.join();
        }
    }
}

#[cfg(not(weft_kqueue))]
impl Drop for Outer {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// The helper thread: watches the loop's poller while nobody runs the loop or looks at
/// it, and rings the bell when a pass has work.
#[cfg(not(weft_kqueue))]
fn watch(shared: &Shared) {
    // Its waits are stopped by notifies, which a look could use up.
    let mut events = Events::with_capacity(16).never_looking_first();
    loop {
        let waiter = {
            let mut state = lock(&shared.state);
            while !state.quit && (state.running || state.looking || state.rung) {
                state = shared.wait_for(state);
            }
            if state.quit {
                return;
            }
            state.watching = true;
            state.waiter.clone()
        };
        let found = waiter.wait(&mut events, true).is_ok_and(|()| events.len() > 0);
        let mut state = lock(&shared.state);
        state.watching = false;
        if found && !state.quit {
            // Even when a thread is entering the loop now: what this wait drained (the
            // bell), the pass must still be told of.
            state.rung = true;
            super::ring(shared.bell_ring);
        }
        drop(state);
        shared.changed.notify_all();
    }
}

#[cfg(weft_kqueue)]
impl AsRawFd for Outer {
    fn as_raw_fd(&self) -> RawFd {
        self.poller.as_raw_fd()
    }
}

#[cfg(not(weft_kqueue))]
impl AsRawFd for Outer {
    fn as_raw_fd(&self) -> RawFd {
        self.shared.bell_poll
    }
}
