//! Pools: `weft_pool_new` and `weft_pool_free` with their options, the registry of live
//! pools that turns a freed pool into an error, and `weft_shutdown` of the default pools.

use super::args::{c_str, non_null, read_options};
use super::guard::guard;
use super::handle::weft_pool;
use super::handler::Shared;
use crate::error::{Code, Error, Result};
use crate::pool::{self, Pool};
use crate::task;
use std::ffi::{c_char, c_int, c_void};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A pool's kind: one of the `WEFT_POOL_*` values.
pub type weft_pool_kind = c_int;
/// A work-stealing pool with a fixed number of threads, for computation.
pub const WEFT_POOL_CPU: weft_pool_kind = 0;
/// An elastic FIFO pool that grows up to a bound and retires idle threads, for
/// blocking calls.
pub const WEFT_POOL_IO: weft_pool_kind = 1;

/// A pool thread hook: called on the thread itself, with its index in the pool.
pub type weft_thread_hook = Option<unsafe extern "C-unwind" fn(index: u32, user_data: *mut c_void)>;

/// Options of `weft_pool_new`. Zero-initialise, set `size = sizeof(weft_pool_options)`,
/// then the fields you need: a later version may add fields at the end, and `size`
/// tells it which ones your program knows.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct weft_pool_options {
    /// sizeof(weft_pool_options) as your program sees it.
    pub size: usize,
    /// `WEFT_POOL_CPU` or `WEFT_POOL_IO`.
    pub kind: weft_pool_kind,
    /// CPU: the number of threads (0: one per core). IO: the most threads (0: 64).
    pub threads: u32,
    /// Thread name prefix (threads are named "<name>-<index>", as seen in /proc and in
    /// debuggers; Linux keeps 15 bytes). NULL: "weft-cpu" or "weft-io". Copied.
    pub name: *const c_char,
    /// Stack size of each thread in bytes (0: the platform default; at most 1 GiB).
    pub stack_size: usize,
    /// IO: milliseconds an idle thread waits for work before it exits (0: 10000).
    pub keep_alive_ms: u32,
    /// Called on each thread when it starts, before it runs any work. May be NULL.
    pub on_thread_start: weft_thread_hook,
    /// Called on each thread before it exits. May be NULL.
    pub on_thread_stop: weft_thread_hook,
    /// Passed to both hooks.
    pub hook_data: *mut c_void,
}

/// Live pools by address, so a freed pool is refused instead of dereferenced. (A few
/// pools at most: a vector is the cheapest set.)
static POOLS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

pub(super) fn the_pool(ptr: *mut weft_pool, name: &str) -> Result<Arc<Pool>> {
    non_null(ptr, name)?;
    let pools = POOLS.lock().unwrap_or_else(|p| p.into_inner());
    if !pools.contains(&(ptr as usize)) {
        return Err(Error::invalid(format!("{name} {ptr:p} is not a live pool (freed already?)")));
    }
    // SAFETY: registered by weft_pool_new and not yet freed (we hold the registry lock,
    // which weft_pool_free takes before it frees).
    Ok(unsafe { &*ptr.cast::<Arc<Pool>>() }.clone())
}

/// Makes a pool. Its threads start when the first task is submitted. Any thread.
/// Returns NULL on error: `WEFT_ERR_NULL` (options), `WEFT_ERR_INVALID` (a bad size or
/// kind, more than 4096 threads, a stack above 1 GiB, a name that is empty or not
/// UTF-8), `WEFT_ERR_FORKED`.
#[no_mangle]
pub extern "C" fn weft_pool_new(options: *const weft_pool_options) -> *mut weft_pool {
    guard("weft_pool_new", || {
        let minimum = std::mem::offset_of!(weft_pool_options, hook_data) + std::mem::size_of::<*mut c_void>();
        let o = read_options(options, "weft_pool_options", minimum)?
            .ok_or_else(|| Error::new(Code::Null, "options is NULL"))?;
        let kind = match o.kind {
            WEFT_POOL_CPU => pool::Kind::Cpu,
            WEFT_POOL_IO => pool::Kind::Io,
            other => return Err(Error::invalid(format!("kind {other} is not a WEFT_POOL_* value"))),
        };
        let mut opts = pool::Options::new(kind);
        opts.threads = o.threads as usize;
        if !o.name.is_null() {
            opts.name = c_str(o.name, "options.name")?.to_string();
        }
        opts.stack_size = o.stack_size;
        if o.keep_alive_ms > 0 {
            opts.keep_alive = Duration::from_millis(o.keep_alive_ms as u64);
        }
        let data = Arc::new(Shared(o.hook_data));
        let hook = |f: weft_thread_hook| -> Option<pool::Hook> {
            let f = f?;
            let data = data.clone();
            // SAFETY: the caller's hook, called with its data on the pool thread.
            Some(Arc::new(move |index: usize| unsafe { f(index as u32, data.0) }))
        };
        opts.on_start = hook(o.on_thread_start);
        opts.on_stop = hook(o.on_thread_stop);
        let pool = Box::into_raw(Box::new(Arc::new(Pool::new(opts)?)));
        POOLS.lock().unwrap_or_else(|p| p.into_inner()).push(pool as usize);
        Ok(pool.cast())
    })
}

/// Frees a pool: tasks queued and not started complete with `WEFT_ERR_CANCELLED` (their
/// `done` runs on their loop, if the loop is alive), running ones finish, then every
/// thread is joined (so this waits for running work). NULL is a no-op. Any thread but
/// the pool's own: from one of them it is refused (`WEFT_ERR_BUSY` in
/// `weft_last_error`), as it would wait for itself. A pool already freed is refused
/// (`WEFT_ERR_INVALID`).
#[no_mangle]
pub extern "C" fn weft_pool_free(pool: *mut weft_pool) {
    guard("weft_pool_free", || {
        if pool.is_null() {
            return Ok(());
        }
        crate::fork::check()?;
        let shared = the_pool(pool, "pool")?;
        shared.shutdown()?;
        let mut pools = POOLS.lock().unwrap_or_else(|p| p.into_inner());
        task::pools_changed(); // before the handle's address can be reused
        if let Some(at) = pools.iter().position(|&p| p == pool as usize) {
            pools.swap_remove(at);
            if pools.is_empty() {
                *pools = Vec::new(); // hold no memory while no pool exists
            }
            // SAFETY: made by Box::into_raw in weft_pool_new; now unregistered.
            drop(unsafe { Box::from_raw(pool.cast::<Arc<Pool>>()) });
        }
        Ok(())
    })
}

/// Drains and joins the default pools: tasks queued on them complete with
/// `WEFT_ERR_CANCELLED`, running ones finish. After every loop is freed and this has
/// returned, weft holds no thread and no fd. Later spawns start the pools again. For
/// atexit handlers and hosts that unload the library. Not from a pool thread.
#[no_mangle]
pub extern "C" fn weft_shutdown() {
    guard("weft_shutdown", task::shutdown)
}
