//! weft: an embeddable async runtime with a stable C ABI.
//!
//! The safe core is one module per concept — [`r#loop`], [`timer`], [`watch`],
//! [`signal`], [`bus`], [`inbox`], [`pool`], [`task`], [`process`] — and [`ffi`] is the C ABI on top
//! of it, the only place
//! with `extern "C"` functions, raw pointers and `catch_unwind`. `include/weft.h` is
//! generated from [`ffi`] by cbindgen.

pub(crate) mod barrier;
pub mod bus;
pub mod error;
pub mod ffi;
pub mod fork;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod gate;
pub mod inbox;
/// Loom models of the lock-free protocols (`make loom`).
#[cfg(all(test, loom))]
mod loom_models;
pub mod r#loop;
pub mod metrics;
pub mod pool;
pub mod process;
pub(crate) mod shrink;
pub mod signal;
pub mod slots;
pub(crate) mod sync;
mod sys;
pub mod task;
pub mod timer;
pub mod watch;
pub mod watchdog;

pub use error::{Code, Error, Result};
pub use r#loop::{Event, Handler, Loop, RunMode, SpawnOptions};
pub use slots::Id;
