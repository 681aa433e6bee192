//! fd watches, driven from Rust: a pass leaves the handler of the watch it called
//! parked until the core's next lock (src/loop/parked.rs); every way a watch can end
//! meanwhile ends it exactly once, and never calls it again.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::thread;
use weft::{Id, Loop, RunMode};

mod common;
use common::{counter, Probe};

/// A socket that stays readable (a byte is waiting and nobody reads it), and its peer.
fn readable() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    std::io::Write::write_all(&mut &b, b"x").unwrap();
    (a, b)
}

/// Watches `a` for readability with a handler that counts its calls in `calls`.
fn counting_watch(lp: &Loop<Probe>, a: &UnixStream, drops: &Arc<AtomicUsize>, calls: &Arc<AtomicUsize>) -> Id {
    let seen = calls.clone();
    lp.watch_fd(a.as_raw_fd(), 1, Probe::new(drops, move |_, _, _| _ = seen.fetch_add(1, SeqCst))).unwrap()
}

#[test]
fn a_watch_cancelled_between_passes_ends_at_the_cancel() {
    let lp = Loop::<Probe>::new().unwrap();
    let (drops, calls) = (counter(), counter());
    let (a, _b) = readable();
    let watch = counting_watch(&lp, &a, &drops, &calls);
    lp.run(RunMode::NoWait).unwrap();
    assert_eq!(calls.load(SeqCst), 1);
    // Its handler is parked now: a cancel from this thread ends it before returning.
    lp.cancel(watch).unwrap();
    assert_eq!(drops.load(SeqCst), 1);
    lp.run(RunMode::NoWait).unwrap();
    assert_eq!((calls.load(SeqCst), drops.load(SeqCst)), (1, 1));
    assert!(lp.cancel(watch).is_err());

    // The same from another thread.
    let watch = counting_watch(&lp, &a, &drops, &calls);
    lp.run(RunMode::NoWait).unwrap();
    let lp = Arc::new(lp);
    let other = lp.clone();
    thread::spawn(move || other.cancel(watch).unwrap()).join().unwrap();
    assert_eq!((calls.load(SeqCst), drops.load(SeqCst)), (2, 2));
    lp.run(RunMode::NoWait).unwrap();
    assert_eq!(calls.load(SeqCst), 2);
}

#[test]
fn a_watch_cancelled_by_a_later_callback_of_its_pass_ends_once() {
    let lp = Loop::<Probe>::new().unwrap();
    let (drops, calls) = (counter(), counter());
    let (a, _b) = readable();
    let watch = counting_watch(&lp, &a, &drops, &calls);
    // Posts run after the pass's fd callbacks: this one finds the watch's handler parked.
    let ended = drops.clone();
    lp.post(Probe::new(&drops, move |lp, _, _| {
        lp.cancel(watch).unwrap();
        assert_eq!(ended.load(SeqCst), 1, "the watch ends at the cancel");
    }))
    .unwrap();
    lp.run(RunMode::NoWait).unwrap();
    assert_eq!((calls.load(SeqCst), drops.load(SeqCst)), (1, 2));
    lp.run(RunMode::NoWait).unwrap();
    assert_eq!(calls.load(SeqCst), 1);
}

#[test]
fn a_watch_that_cancels_itself_ends_after_its_call() {
    let lp = Loop::<Probe>::new().unwrap();
    let drops = counter();
    let (a, _b) = readable();
    let ended = drops.clone();
    lp.watch_fd(
        a.as_raw_fd(),
        1,
        Probe::new(&drops, move |lp, id, _| {
            lp.cancel(id).unwrap();
            assert_eq!(ended.load(SeqCst), 0, "not while it runs");
            assert!(lp.cancel(id).is_err());
        }),
    )
    .unwrap();
    lp.run(RunMode::Default).unwrap();
    assert_eq!(drops.load(SeqCst), 1);
}

#[test]
fn cancels_from_another_thread_racing_the_calls_end_each_watch_once() {
    const WATCHES: usize = 500;
    let lp = Arc::new(Loop::<Probe>::new().unwrap());
    let drops = counter();
    let keepalive = lp.timer_every(60_000, Probe::new(&drops, |_, _, _| {})).unwrap();
    let runner = {
        let lp = lp.clone();
        thread::spawn(move || lp.run(RunMode::Default).unwrap())
    };
    let (a, _b) = readable();
    for _ in 0..WATCHES {
        let calls = counter();
        let watch = counting_watch(&lp, &a, &drops, &calls);
        while calls.load(SeqCst) == 0 {
            std::hint::spin_loop();
        }
        lp.cancel(watch).unwrap();
        // A call that began before the cancel returned may still be running (and count
        // after this), but no call begins after it.
        let at_cancel = calls.load(SeqCst);
        // Two more passes of the loop (each calls the next watch, or nothing).
        let pass = counter();
        let (tick, done) = (pass.clone(), drops.clone());
        lp.post(Probe::new(&done, move |_, _, _| _ = tick.fetch_add(1, SeqCst))).unwrap();
        while pass.load(SeqCst) == 0 {
            std::hint::spin_loop();
        }
        assert!(calls.load(SeqCst) <= at_cancel + 1, "a cancelled watch was called again");
    }
    lp.cancel(keepalive).unwrap();
    runner.join().unwrap();
    // Every watch, every post and the keepalive: once each.
    assert_eq!(drops.load(SeqCst), 2 * WATCHES + 1);
}
