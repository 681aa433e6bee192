//! The owner gate (`crate::gate`): what one holder wrote to the guarded state, the
//! next holder sees, whether it took the gate with `try_take` (a spawn outside `run`)
//! or waited for it with `take` (`run` starting on another thread); and a holder's
//! `take` refuses rather than waits for itself.

use super::model;
use crate::gate::Gate;
use crate::sync::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

/// Two callers that try the gate (threads 1 and 2) race a `run` that waits for it
/// (thread 3); each adds to the guarded state under the gate. loom reports a data
/// race on the state if a hand-over is not ordered.
#[test]
fn loom_gate_hands_over_the_state() {
    model(|| {
        let shared = Arc::new((Gate::default(), UnsafeCell::new(0u32)));
        let tries: Vec<_> = (1..=2u64)
            .map(|me| {
                let shared = shared.clone();
                thread::spawn(move || {
                    let (gate, state) = &*shared;
                    if let Some(_held) = gate.try_take(me) {
                        state.with_mut(|n| unsafe { *n += 1 })
                    }
                })
            })
            .collect();
        let (gate, state) = &*shared;
        {
            let _held = gate.take(3).expect("not held by this thread");
            assert!(gate.take(3).is_err(), "a holder's take must refuse");
            state.with_mut(|n| unsafe { *n += 1 });
        }
        for t in tries {
            t.join().unwrap();
        }
        let n = state.with(|n| unsafe { *n });
        assert!((1..=3).contains(&n));
    });
}
