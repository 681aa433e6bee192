//! The watchdog's view of the loop thread (`crate::watchdog::Current`): when `peek`
//! names a callback, every field it returns is that callback's, however the loop
//! thread's `enter` and `leave` interleave with the read.

use super::model;
use crate::watchdog::Current;
use loom::sync::Arc;
use loom::thread;

/// The loop thread (this one) runs callback 1 (id 10, started at 100) and callback 2
/// (id 20, at 200) while the watchdog thread peeks. A peek that mixes the two
/// (callback 1's number with callback 2's id) is what the fences rule out.
#[test]
fn loom_watchdog_reads_one_callback() {
    model(|| {
        let current = Arc::new(Current::default());
        let reader = {
            let current = current.clone();
            thread::spawn(move || {
                if let Some(r) = current.peek() {
                    match r.seq {
                        1 => assert_eq!((r.id, r.kind, r.start_ns), (10, 1, 100), "{r:?}"),
                        3 => assert_eq!((r.id, r.kind, r.start_ns), (20, 2, 200), "{r:?}"),
                        other => panic!("peek named callback {other}"),
                    }
                }
            })
        };
        let a = current.enter(10, 1, 100, 5);
        current.leave(a);
        let b = current.enter(20, 2, 200, 5);
        current.leave(b);
        reader.join().unwrap();
    });
}
