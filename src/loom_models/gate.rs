//! The owner gate (`crate::gate`): what one holder wrote to the guarded state, the
//! next holder sees, whether it entered a call (`enter`: a spawn outside `run`, on a
//! free gate or on one it keeps) or waited for the gate (`take`: `run` starting on
//! another thread, taking it away from a thread that keeps it); a holder's `take`
//! refuses rather than waits for itself, and a call nested in a call is refused.

use super::model;
use crate::gate::Gate;
use crate::sync::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

/// Two callers that enter calls (threads 1 and 2) race a `run` that waits for the gate
/// (thread 3); each adds to the guarded state under the gate. loom reports a data
/// race on the state if a hand-over is not ordered.
#[test]
fn loom_gate_hands_over_the_state() {
    model(|| {
        let shared = Arc::new((Gate::new(false), UnsafeCell::new(0u32)));
        let tries: Vec<_> = (1..=2u64)
            .map(|me| {
                let shared = shared.clone();
                thread::spawn(move || {
                    let (gate, state) = &*shared;
                    if let Some(_held) = gate.enter(me) {
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

/// A thread that keeps the gate (thread 1: a first call takes it, two more enter on
/// the kept gate, a nested one is refused) races a `run` on thread 2 that takes it
/// away. Every call touches the state; loom reports a data race if a call on the kept
/// gate can overlap the taker's use (the Dekker pair of `busy` and `word` without its
/// barrier) or is not ordered before it.
#[test]
fn loom_gate_kept_between_calls_is_taken_away() {
    model(|| {
        let shared = Arc::new((Gate::new(true), UnsafeCell::new(0u32)));
        let caller = {
            let shared = shared.clone();
            thread::spawn(move || {
                let (gate, state) = &*shared;
                let mut entered = 0;
                for _ in 0..3 {
                    if let Some(_held) = gate.enter(1) {
                        assert!(gate.enter(1).is_none(), "a nested call must be refused");
                        state.with_mut(|n| unsafe { *n += 1 });
                        entered += 1;
                    }
                }
                entered
            })
        };
        let (gate, state) = &*shared;
        {
            let _held = gate.take(2).expect("not held by this thread");
            state.with_mut(|n| unsafe { *n += 10 });
        }
        let entered = caller.join().unwrap();
        let n = state.with(|n| unsafe { *n });
        assert_eq!(n, 10 + entered);
        // The gate is free again: the caller's thread takes it as any other.
        let _held = gate.enter(1).expect("a free gate");
    });
}
