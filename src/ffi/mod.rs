//! The C ABI. The only module with `extern "C"` functions, raw pointers and
//! `catch_unwind`; everything here converts arguments, calls the safe core and converts
//! the result. `include/weft.h` is generated from these items by cbindgen, so their doc
//! comments are the user documentation.
//!
//! One file per concept, declared below in the order of the header: cbindgen reads this
//! file's items, then the modules in the order they are declared (`sort_by = "None"`).
//! The version numbers stay here, where build.rs and the Makefile read `WEFT_ABI_VERSION`.
//!
//! What the files may not touch: the core's state except through its API, and each
//! other's private items. They import downward only, never in a circle: `args`,
//! `handle` and this file's version numbers at the bottom; `error` on those; `guard`
//! and `handler` on `error`; `loop` and `pool` on them; `watch`, `topic` and `task` on
//! `loop` (`task` on `pool` too); `child` on `task`. This file imports none of them: it
//! only re-exports their public items.

#![allow(non_camel_case_types)]
// C passes pointers by contract (documented per function in weft.h); every one is
// checked for NULL before use, as in rustls-ffi.
#![allow(clippy::not_unsafe_ptr_arg_deref, clippy::type_complexity)]

// Each declaration is a group of its own, so that rustfmt keeps this order.
// The weft_result codes, this thread's last error, weft_strerror, the version calls.
mod error;
// The panic boundary every exported function runs inside.
mod guard;
// Checks of pointer, string, byte-buffer and options-struct arguments.
mod args;
// The opaque handles (weft_loop, weft_task, weft_pool) and weft_id.
mod handle;
// The callback types; CHandler and CWork, which own a caller's function, user data and free_fn.
mod handler;
// Loops, posts, timers and weft_cancel.
mod r#loop;
// fd and signal watches.
mod watch;
// weft_subscribe and weft_emit.
mod topic;
// Pools, and weft_shutdown of the default ones.
mod pool;
// Task timings: weft_task_get_timing, and the wrapping weft_spawn does for them.
mod timing;
// weft_spawn, and what a work function calls on its weft_task.
mod task;
// Children the host forks by itself: weft_adopt_child, weft_child_task, weft_child_exit.
mod child;
// The slow-callback watchdog: weft_loop_set_watchdog and its report, and labels.
mod watchdog;
// Loop and pool statistics: weft_loop_get_stats, weft_pool_get_stats.
mod stats;

pub use child::*;
pub use error::*;
pub use handle::*;
pub use handler::*;
pub use pool::*;
pub use r#loop::*;
pub use stats::*;
pub use task::*;
pub use timing::*;
pub use topic::*;
pub use watch::*;
pub use watchdog::*;

/// The major version of this library.
pub const WEFT_VERSION_MAJOR: u32 = 0;
/// The minor version of this library.
pub const WEFT_VERSION_MINOR: u32 = 1;
/// The patch version of this library.
pub const WEFT_VERSION_PATCH: u32 = 0;
/// The ABI version: bumped on any change that breaks binary compatibility.
pub const WEFT_ABI_VERSION: u32 = 1;
