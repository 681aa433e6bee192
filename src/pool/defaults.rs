//! The default pools: one CPU and one IO pool per process, made on first use and
//! joined by [`shutdown`]; and the pool epoch, which tells a loop when a pool it cached
//! may be gone.

use super::{Kind, Options, Pool};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

/// The default pools, made on first use and joined by [`shutdown`].
static DEFAULTS: Mutex<[Option<Arc<Pool>>; 2]> = Mutex::new([None, None]);

/// The default pool of `kind`, made on first use.
pub fn default_pool(kind: Kind) -> crate::Result<Arc<Pool>> {
    let mut pools = DEFAULTS.lock().unwrap_or_else(|p| p.into_inner());
    let slot = &mut pools[(kind == Kind::Io) as usize];
    if let Some(pool) = slot {
        return Ok(pool.clone());
    }
    let pool = Arc::new(Pool::new(Options::new(kind))?);
    *slot = Some(pool.clone());
    Ok(pool)
}

/// The default pool of `kind` if it has been made (none is made here).
pub(super) fn existing(kind: Kind) -> Option<Arc<Pool>> {
    DEFAULTS.lock().unwrap_or_else(|p| p.into_inner())[(kind == Kind::Io) as usize].clone()
}

/// Bumped whenever a pool is freed or the default pools are shut down: a loop's cached
/// pool is used only while the epoch it was cached at is still the current one.
static POOL_EPOCH: AtomicU64 = AtomicU64::new(0);

/// Call before a pool is unregistered (or its address can be reused).
pub fn pools_changed() {
    POOL_EPOCH.fetch_add(1, SeqCst);
}

/// The current pool epoch: a cached pool is used only while it is the one it was cached at.
pub fn pool_epoch() -> u64 {
    POOL_EPOCH.load(SeqCst)
}

/// Keys of the default pools in a loop's pool cache (pool handles' addresses are the
/// keys of the others).
pub(crate) const DEFAULT_CPU: usize = 1;
pub(crate) const DEFAULT_IO: usize = 2;

/// Drains and joins the default pools (queued tasks complete as cancelled).
pub fn shutdown() -> crate::Result<()> {
    crate::fork::check()?;
    let mut defaults = DEFAULTS.lock().unwrap_or_else(|p| p.into_inner());
    if defaults.iter().flatten().any(|pool| pool.on_own_thread()) {
        return Err(crate::Error::new(
            crate::Code::Busy,
            "called from a thread of a default pool, which cannot join itself",
        ));
    }
    let pools = std::mem::take(&mut *defaults);
    pools_changed();
    drop(defaults);
    for pool in pools.into_iter().flatten() {
        pool.shutdown()?;
    }
    Ok(())
}
