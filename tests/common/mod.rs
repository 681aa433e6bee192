//! What the Rust integration tests share: `Probe`, a handler that runs a closure and
//! counts its own drop (the C layer's free_fn), and `counter` for those counts.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use weft::{Event, Handler, Id, Loop};

type Callback = Box<dyn FnMut(&Loop<Probe>, Id, &Event<'_>) + Send>;

/// A handler that runs a closure and counts its own drop (the C layer's free_fn).
pub struct Probe {
    call: Callback,
    drops: Arc<AtomicUsize>,
}

impl Probe {
    pub fn new(drops: &Arc<AtomicUsize>, call: impl FnMut(&Loop<Probe>, Id, &Event<'_>) + Send + 'static) -> Probe {
        Probe { call: Box::new(call), drops: drops.clone() }
    }
}

impl Handler for Probe {
    type Work = weft::task::BoxedWork<Self>;
    fn call(&mut self, lp: &Loop<Self>, id: Id, event: Event<'_>) {
        (self.call)(lp, id, &event)
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
    }
}

/// A drop count, starting at 0.
pub fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}
