//! Fork detection. A forked child inherits weft's memory but not its threads, and any
//! lock another thread held at the fork stays held forever in the child. So once a
//! process that used weft forks, the child refuses every stateful call with
//! `WEFT_ERR_FORKED` instead of touching inherited state.

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

static FORKED: AtomicBool = AtomicBool::new(false);

extern "C" fn in_child() {
    FORKED.store(true, Ordering::SeqCst);
    crate::signal::forget_in_child();
}

/// Installs the pthread_atfork child hook (once per process).
pub fn install() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        // SAFETY: registers a hook that only stores to an atomic (async-signal-safe).
        unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
    });
}

/// True in a child forked after weft was first used.
pub fn is_child() -> bool {
    FORKED.load(Ordering::Relaxed)
}

/// Err(Forked) in a forked child.
pub fn check() -> Result<()> {
    if is_child() {
        Err(Error::forked())
    } else {
        Ok(())
    }
}
