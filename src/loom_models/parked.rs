//! The parked handler of the last fd watch a pass called (`crate::loop::Parked`): a
//! cancel that races the end of the call ends the watch exactly once, right away or by
//! the loop thread's settling, and never leaves the handler parked in a cancelled
//! registration; a lock's holder that takes the handler back reads what the loop
//! thread wrote.

use super::model;
use crate::r#loop::Parked;
use crate::sync::Mutex;
use loom::sync::Arc;
use loom::thread;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

/// A handler that counts its end.
struct Handler(Arc<AtomicUsize>);

impl Drop for Handler {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// The registration, under the core lock: its handler (out while called or parked),
/// whether a cancel marked it, whether it is still in the slab.
struct Entry {
    handler: Option<Handler>,
    cancelled: bool,
    present: bool,
}

struct Shared {
    core: Mutex<Entry>,
    parked: Parked<Handler>,
}

impl Shared {
    /// `Loop::lock`: the lock, and the parked handler back in its registration.
    fn lock(&self) -> crate::sync::MutexGuard<'_, Entry> {
        let mut entry = self.core.lock().unwrap();
        if let Some(handler) = self.parked.take() {
            assert!(entry.present, "a parked handler's registration is in the slab");
            entry.handler = Some(handler);
        }
        entry
    }

    /// The loop thread after the call (`call_parking`).
    fn end_call(&self, handler: Handler) {
        if self.parked.park(handler) {
            let mut entry = self.lock();
            self.parked.settled();
            if entry.present && entry.cancelled && entry.handler.is_some() {
                entry.present = false;
                let handler = entry.handler.take();
                drop(entry);
                drop(handler);
            }
        }
    }

    /// `Loop::cancel` of the watch.
    fn cancel(&self) {
        let mut entry = self.lock();
        assert!(entry.present && !entry.cancelled);
        if entry.handler.is_none() {
            entry.cancelled = true;
            let Some(handler) = self.parked.cancelled_in_call() else { return };
            entry.handler = Some(handler);
        }
        entry.present = false;
        let handler = entry.handler.take();
        drop(entry);
        drop(handler);
    }
}

/// The watch's call is running on the loop thread (this one) while another thread
/// cancels it, and a third takes the lock for something else: once the cancel and the
/// call's end are over, the handler has ended exactly once.
#[test]
fn loom_parked_cancel_races_the_end_of_a_call() {
    model(|| {
        let ends = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(Shared {
            core: Mutex::new(Entry { handler: None, cancelled: false, present: true }),
            parked: Parked::default(),
        });
        let canceller = {
            let shared = shared.clone();
            thread::spawn(move || shared.cancel())
        };
        let other = {
            let shared = shared.clone();
            thread::spawn(move || drop(shared.lock()))
        };
        shared.end_call(Handler(ends.clone()));
        canceller.join().unwrap();
        other.join().unwrap();
        assert_eq!(ends.load(SeqCst), 1, "the cancelled watch ended exactly once, by now");
        let entry = shared.lock();
        assert!(!entry.present && entry.handler.is_none());
    });
}

/// Without a cancel, the handler goes back into its registration at the next lock,
/// whichever thread takes it, and is not ended.
#[test]
fn loom_parked_handler_goes_back_at_the_next_lock() {
    model(|| {
        let ends = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(Shared {
            core: Mutex::new(Entry { handler: None, cancelled: false, present: true }),
            parked: Parked::default(),
        });
        let other = {
            let shared = shared.clone();
            thread::spawn(move || drop(shared.lock()))
        };
        shared.end_call(Handler(ends.clone()));
        other.join().unwrap();
        assert!(shared.lock().handler.is_some());
        assert_eq!(ends.load(SeqCst), 0);
    });
}
