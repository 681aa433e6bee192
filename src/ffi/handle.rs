//! The handles C holds: the opaque `weft_loop`, `weft_task` and `weft_pool`, and
//! `weft_id`. They sit below the other files, since the callback types and every
//! exported function name them.

/// A registration id. 0 is never a valid id: calls that return an id return 0 on error.
/// Ids are checked, never trusted: a stale, cancelled, forged or foreign id gives
/// `WEFT_ERR_NOT_FOUND`. Every id weft returns is at least 2^52 (`WEFT_ID_MIN`): values
/// below it are never weft's, so a binding or host may use them for ids of its own.
pub type weft_id = u64;

/// The smallest id weft returns: a loop's tag, from 1 up, fills the id's top 12 bits.
pub const WEFT_ID_MIN: weft_id = 0x0010_0000_0000_0000;
const _: () = assert!(WEFT_ID_MIN == 1 << crate::slots::TAG_SHIFT);

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
