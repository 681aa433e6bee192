//! The handles C holds: the opaque `weft_loop`, `weft_task` and `weft_pool`, and
//! `weft_id`. They sit below the other files, since the callback types and every
//! exported function name them.

/// A registration id. 0 is never a valid id: calls that return an id return 0 on error.
/// Ids are checked, never trusted: a stale, cancelled, forged or foreign id gives
/// `WEFT_ERR_NOT_FOUND`.
pub type weft_id = u64;

/// An event loop. Opaque; made by `weft_loop_new`, freed by `weft_loop_free`.
pub struct weft_loop {
    _private: [u8; 0],
}

/// A task, as its work function sees it. Valid only during the work call, and only
/// on the thread running it.
pub struct weft_task {
    _private: [u8; 0],
}

/// A worker pool. Opaque; made by `weft_pool_new`, freed by `weft_pool_free`.
pub struct weft_pool {
    _private: [u8; 0],
}
