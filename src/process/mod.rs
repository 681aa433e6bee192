//! Process tasks: a work function run in a forked child, its result streamed back
//! through a pipe. Nothing is serialised but the bytes the work writes.
//!
//! # Files
//!
//! * `protocol.rs`: the pipe protocol (the frames, the child's writes, the parent's
//!   `Reader`) and the checks of a pipe's ends.
//! * `fork.rs`: forking a child for a task: its pipe, the fork, the watch of its
//!   exit. Between `fork` and the work the child makes only async-signal-safe calls.
//! * `supervisor.rs`: the parent's side: each [`Child`] (reading its pipe, reaping it,
//!   its timeout and kill, its outcome) and a loop's `Supervisor` (which children
//!   run, which wait under their `max_children` bound).
//!
//! The module knows nothing of a loop: the loop keeps each child in its registration,
//! polls the fds a child hands it, calls `done`, and drives children only through the
//! methods here, never their fields. Nothing here takes a lock, registers with a poll
//! set or runs a user callback; only the forked child runs user code (the work).

mod fork;
mod protocol;
mod supervisor;

pub use fork::{fork, fork_task, pipe, set_nonblocking, Forked};
pub use protocol::{check_read_fd, check_write_fd, finish, send_event, send_result, ChildEvent, Reader};
pub(crate) use supervisor::Supervisor;
pub use supervisor::{check_child, deadline_ns, describe, kill, reap, Child, Exit};
