//! The work of a task: [`TaskWork`], what the spawner supplies, and [`Task`], the handle
//! a work function gets (its cancel flag, its result, its events), on a pool thread or
//! in a process task's child.

use crate::inbox::Inbox;
use crate::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::os::fd::RawFd;
use std::sync::Mutex;

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

/// What a work function sees: its cancel flag, and where its result and events go: to
/// its loop (a task on a thread), or down a pipe to the parent (a process task's child).
pub struct Task<'a, H> {
    sink: Sink<'a, H>,
}

enum Sink<'a, H> {
    Memory {
        /// The task's cancel flag (in its cell).
        cancelled: &'a AtomicBool,
        inbox: &'a Inbox<H>,
        result: Vec<u8>,
    },
    /// In a process task's child: frames on `fd` (see [`crate::process`]).
    Pipe { fd: RawFd, parent: libc::pid_t },
}

impl<'a, H> Task<'a, H> {
    pub(super) fn in_memory(cancelled: &'a AtomicBool, inbox: &'a Inbox<H>) -> Task<'a, H> {
        Task { sink: Sink::Memory { cancelled, inbox, result: Vec::new() } }
    }

    pub(super) fn into_result(self) -> Vec<u8> {
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
        // A child learns of a cancel by being killed, or sees its parent gone.
        Task { sink: Sink::Pipe { fd, parent: unsafe { libc::getppid() } } }
    }
}

impl<H> Task<'_, H> {
    /// True once the task was cancelled or timed out; in a process task's child, once
    /// the parent has gone.
    pub fn cancelled(&self) -> bool {
        match self.sink {
            // SAFETY: getppid cannot fail.
            Sink::Pipe { parent, .. } => (unsafe { libc::getppid() }) != parent,
            Sink::Memory { cancelled, .. } => cancelled.load(SeqCst),
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
