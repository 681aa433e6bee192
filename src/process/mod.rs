//! Process tasks: a work function run in a forked child, its result streamed back
//! through a pipe. Nothing is serialised but the bytes the work writes.
//!
//! # Files
//!
//! * `protocol.rs`: the pipe protocol (the frames, the child's writes, the parent's
//!   `Reader`) and the checks of a pipe's ends.
//! * `fork.rs`: forking a child for a task (weft's fork, or the host's: `HostFork`):
//!   its pipe, the fork, the watch of its exit. Between `fork` and the work the child
//!   makes only async-signal-safe calls.
//! * `worker.rs`: a reused child's side: after a task, it takes the next one's number
//!   from the parent (sent ahead while it ran the last, or waited for), and the
//!   parent's taking back of a number sent ahead.
//! * `child.rs`: the parent's side of one task ([`Child`]): reading its pipe, reaping
//!   its child, its timeout and kill, its outcome, handing a reused child on.
//! * `supervisor.rs`: a loop's children as a whole (`Supervisor`): which run, which
//!   wait under their `max_children` bound, and which task a reused child runs next
//!   (sent to it ahead, while it runs one).
//! * `exit.rs`: reaping, signalling and describing a child's end.
//!
//! The module knows nothing of a loop: the loop keeps each child in its registration,
//! polls the fds a child hands it, calls `done`, and drives children only through the
//! methods here, never their fields. Nothing here takes a lock, registers with a poll
//! set or runs a user callback; only the forked child runs user code (the works).

mod child;
mod exit;
mod fork;
mod protocol;
mod supervisor;
mod worker;

pub use child::{deadline_ns, Child, Group, Worker};
pub use exit::{check_child, describe, kill, reap, Exit};
pub use fork::{fork, fork_task, pipe, set_nonblocking, Fds, Forked, HostFork};
pub use protocol::{check_read_fd, check_write_fd, finish, send_event, send_result, ChildEvent, Reader};
pub use supervisor::Plan;
pub(crate) use supervisor::Supervisor;
pub use worker::fork_worker;
