//! Topics: `weft_subscribe` and `weft_emit`.

use super::args::{bytes_arg, c_str};
use super::guard::guard;
use super::handle::{weft_id, weft_loop};
use super::handler::{weft_event_cb, weft_free_fn, CHandler};
use super::r#loop::the_loop;
use std::ffi::{c_char, c_int, c_void};

/// Subscribes to events emitted on this loop whose topic matches `pattern`: an exact
/// topic ("log.ready"), a prefix ending in ".*" ("job.*" matches "job.done" and
/// "job.a.b", not "job"), or "*" for every topic. `cb` runs on the loop thread for each
/// matching event, in emit order for the events of one emitting thread; none is dropped
/// or merged. A subscription may cancel itself, subscribe and emit from its callback.
/// The pattern is copied. Any thread.
/// Returns the subscription's id, or 0: `WEFT_ERR_INVALID` (empty or malformed pattern,
/// not UTF-8), `WEFT_ERR_NULL`, `WEFT_ERR_CLOSED`.
#[no_mangle]
pub extern "C" fn weft_subscribe(
    lp: *mut weft_loop,
    pattern: *const c_char,
    cb: weft_event_cb,
    user_data: *mut c_void,
    free_fn: weft_free_fn,
) -> weft_id {
    guard("weft_subscribe", || {
        let lp = the_loop(lp)?;
        let pattern = c_str(pattern, "pattern")?;
        lp.subscribe(pattern, CHandler::new(cb, user_data, free_fn)?)
    })
}

/// Emits an event: copies `topic` and the `len` bytes at `payload` (NULL is fine when
/// `len` is 0) and queues them for the loop, which calls every matching subscriber in
/// its next pass. Subscribers that exist when the event is delivered see it. Never
/// waits for the loop. Any thread, including the loop's own callbacks.
/// Returns `WEFT_OK`; `WEFT_ERR_INVALID` (empty topic, a topic with '*', not UTF-8, a
/// length above PTRDIFF_MAX), `WEFT_ERR_NULL` (loop, topic, or payload with len > 0),
/// `WEFT_ERR_CLOSED`.
#[no_mangle]
pub extern "C" fn weft_emit(lp: *mut weft_loop, topic: *const c_char, payload: *const c_void, len: usize) -> c_int {
    guard("weft_emit", || {
        let lp = the_loop(lp)?;
        let topic = c_str(topic, "topic")?;
        lp.emit(topic, bytes_arg(payload, len, "payload")?).map(|()| 0)
    })
}
