//! The safe core, driven from Rust: exactly-once accounting under many threads,
//! cancel races, ordering, and the loop's run modes.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use weft::{Code, Event, Id, Loop, RunMode};

mod common;
use common::{counter, Probe};

#[test]
fn posts_from_many_threads_arrive_once_in_per_thread_order() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 50_000;
    let lp = Arc::new(Loop::<Probe>::new().unwrap());
    let drops = counter();
    let seen = Arc::new(Mutex::new((0..THREADS).map(|_| Vec::with_capacity(PER_THREAD)).collect::<Vec<_>>()));
    // A timer keeps the loop alive until every producer is done.
    let keepalive = lp.timer_every(1000, Probe::new(&drops, |_, _, _| {})).unwrap();
    let producers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (lp, drops, seen) = (lp.clone(), drops.clone(), seen.clone());
            thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let seen = seen.clone();
                    lp.post(Probe::new(&drops, move |_, _, ev| {
                        assert!(matches!(ev, Event::Post));
                        seen.lock().unwrap()[t].push(i);
                    }))
                    .unwrap();
                }
            })
        })
        .collect();
    let runner = {
        let lp = lp.clone();
        thread::spawn(move || lp.run(RunMode::Default).unwrap())
    };
    for p in producers {
        p.join().unwrap();
    }
    lp.cancel(keepalive).unwrap();
    runner.join().unwrap();
    let seen = seen.lock().unwrap();
    for per_thread in seen.iter() {
        assert_eq!(*per_thread, (0..PER_THREAD).collect::<Vec<_>>());
    }
    assert_eq!(drops.load(SeqCst), THREADS * PER_THREAD + 1);
}

#[test]
fn cancelling_posts_races_their_dispatch_exactly_once() {
    let lp = Arc::new(Loop::<Probe>::new().unwrap());
    let drops = counter();
    let ran = counter();
    let ids: Vec<Id> = (0..100_000)
        .map(|_| {
            let ran = ran.clone();
            lp.post(Probe::new(&drops, move |_, _, _| {
                ran.fetch_add(1, SeqCst);
            }))
            .unwrap()
        })
        .collect();
    let canceller = {
        let lp = lp.clone();
        thread::spawn(move || ids.iter().rev().filter(|&&id| lp.cancel(id).is_ok()).count())
    };
    lp.run(RunMode::Default).unwrap();
    let cancelled = canceller.join().unwrap();
    assert_eq!(ran.load(SeqCst) + cancelled, 100_000);
    assert_eq!(drops.load(SeqCst), 100_000);
}

#[test]
fn timers_from_other_threads_fire_once_and_never_early() {
    let lp = Arc::new(Loop::<Probe>::new().unwrap());
    let drops = counter();
    let keepalive = lp.timer_every(5, Probe::new(&drops, |_, _, _| {})).unwrap();
    let runner = {
        let lp = lp.clone();
        thread::spawn(move || lp.run(RunMode::Default).unwrap())
    };
    // Each timer counts its own calls; a cancel that returns Ok may race a call that
    // had already started (the contract: no call starts after it), so a cancelled
    // timer fires at most once, and every other one exactly once.
    let setters: Vec<_> = (0..4)
        .map(|t| {
            let (lp, drops) = (lp.clone(), drops.clone());
            thread::spawn(move || {
                let mut timers = Vec::new();
                for i in 0..2_000u64 {
                    let at = Instant::now();
                    let delay = (i * 7 + t) % 40;
                    let calls = counter();
                    let c = calls.clone();
                    let id = lp
                        .timer_after(
                            delay,
                            Probe::new(&drops, move |_, _, _| {
                                assert!(at.elapsed() >= Duration::from_millis(delay), "fired early");
                                c.fetch_add(1, SeqCst);
                            }),
                        )
                        .unwrap();
                    let cancelled = i % 5 == 0 && lp.cancel(id).is_ok();
                    timers.push((calls, cancelled));
                }
                timers
            })
        })
        .collect();
    let timers: Vec<_> = setters.into_iter().flat_map(|s| s.join().unwrap()).collect();
    thread::sleep(Duration::from_millis(80));
    lp.cancel(keepalive).unwrap();
    runner.join().unwrap();
    assert_eq!(timers.len(), 8_000);
    for (calls, cancelled) in &timers {
        let calls = calls.load(SeqCst);
        if *cancelled {
            assert!(calls <= 1, "a cancelled timer fired {calls} times");
        } else {
            assert_eq!(calls, 1, "a timer that was not cancelled fired {calls} times");
        }
    }
    assert!(timers.iter().any(|(_, c)| *c), "no cancel succeeded");
    assert_eq!(drops.load(SeqCst), 8_001);
}

#[test]
fn every_timer_is_fixed_rate_and_skips_missed_ticks() {
    let lp = Loop::<Probe>::new().unwrap();
    let drops = counter();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let c = calls.clone();
    lp.timer_every(
        10,
        Probe::new(&drops, move |lp, id, _| {
            let mut calls = c.lock().unwrap();
            calls.push(start.elapsed());
            if calls.len() == 3 {
                thread::sleep(Duration::from_millis(55)); // fall five ticks behind
            }
            if calls.len() == 8 {
                lp.cancel(id).unwrap();
                assert_eq!(lp.cancel(id).unwrap_err().code, Code::NotFound);
            }
        }),
    )
    .unwrap();
    lp.run(RunMode::Default).unwrap();
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 8);
    for (n, at) in calls.iter().enumerate().take(3) {
        assert!(*at >= Duration::from_millis(10 * (n as u64 + 1)), "call {n} early: {at:?}");
    }
    // The stall (30..85 ms) covers the ticks due at 40..80 ms: one late call stands for
    // them all, then the timer is back on its grid at 90 ms, with no burst.
    assert!(calls[3] >= Duration::from_millis(85), "{calls:?}");
    assert!(calls[4] >= Duration::from_millis(90), "missed ticks were burst: {calls:?}");
    assert!(calls[5] >= Duration::from_millis(100), "missed ticks were burst: {calls:?}");
    assert_eq!(drops.load(SeqCst), 1);
}

#[test]
fn topics_keep_each_threads_order_and_drop_nothing() {
    const THREADS: usize = 4;
    const PER_THREAD: u32 = 20_000;
    let lp = Arc::new(Loop::<Probe>::new().unwrap());
    let drops = counter();
    let seen = Arc::new(Mutex::new(vec![Vec::new(); THREADS]));
    let s = seen.clone();
    let all = lp
        .subscribe(
            "job.*",
            Probe::new(&drops, move |_, _, ev| {
                let Event::Topic { topic, payload } = ev else { panic!("not a topic") };
                let thread: usize = topic.to_str().unwrap()[4..].parse().unwrap();
                s.lock().unwrap()[thread].push(u32::from_le_bytes(payload[..4].try_into().unwrap()));
            }),
        )
        .unwrap();
    let exact_count = counter();
    let e = exact_count.clone();
    lp.subscribe(
        "job.0",
        Probe::new(&drops, move |_, _, _| {
            e.fetch_add(1, SeqCst);
        }),
    )
    .unwrap();
    let producers: Vec<_> = (0..THREADS)
        .map(|t| {
            let lp = lp.clone();
            thread::spawn(move || {
                for i in 0..PER_THREAD {
                    lp.emit(&format!("job.{t}"), &i.to_le_bytes()).unwrap();
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    lp.run(RunMode::NoWait).unwrap();
    for per_thread in seen.lock().unwrap().iter() {
        assert_eq!(*per_thread, (0..PER_THREAD).collect::<Vec<_>>());
    }
    assert_eq!(exact_count.load(SeqCst), PER_THREAD as usize);
    lp.cancel(all).unwrap();
    lp.close().unwrap();
    assert_eq!(drops.load(SeqCst), 2);
}

#[test]
fn run_is_refused_when_reentered_or_run_elsewhere() {
    let lp = Arc::new(Loop::<Probe>::new().unwrap());
    let drops = counter();
    let inner = Arc::new(Mutex::new(None));
    let i = inner.clone();
    lp.timer_after(
        0,
        Probe::new(&drops, move |lp, _, _| {
            *i.lock().unwrap() = Some((lp.run(RunMode::NoWait).unwrap_err().code, lp.close().unwrap_err().code));
        }),
    )
    .unwrap();
    lp.run(RunMode::Default).unwrap();
    assert_eq!(*inner.lock().unwrap(), Some((Code::Busy, Code::Busy)));

    let keep = lp.timer_after(10_000, Probe::new(&drops, |_, _, _| {})).unwrap();
    let runner = {
        let lp = lp.clone();
        thread::spawn(move || lp.run(RunMode::Default))
    };
    thread::sleep(Duration::from_millis(50));
    assert_eq!(lp.run(RunMode::Once).unwrap_err().code, Code::Busy);
    lp.stop().unwrap();
    runner.join().unwrap().unwrap();
    lp.cancel(keep).unwrap();
    assert_eq!(drops.load(SeqCst), 2);
}

#[test]
fn close_ends_every_registration_once_and_refuses_new_ones() {
    let lp = Loop::<Probe>::new().unwrap();
    let drops = counter();
    let (r, _w) = std::os::unix::net::UnixStream::pair().unwrap();
    use std::os::fd::AsRawFd;
    lp.timer_after(1000, Probe::new(&drops, |_, _, _| {})).unwrap();
    lp.timer_every(1000, Probe::new(&drops, |_, _, _| {})).unwrap();
    lp.watch_fd(r.as_raw_fd(), 1, Probe::new(&drops, |_, _, _| {})).unwrap();
    lp.watch_signal(libc::SIGUSR2, Probe::new(&drops, |_, _, _| {})).unwrap();
    lp.subscribe("*", Probe::new(&drops, |_, _, _| panic!("never delivered"))).unwrap();
    lp.post(Probe::new(&drops, |_, _, _| panic!("never run"))).unwrap();
    lp.emit("a", b"x").unwrap();
    lp.close().unwrap();
    assert_eq!(drops.load(SeqCst), 6);
    let refused = lp.timer_after(1, Probe::new(&drops, |_, _, _| {})).unwrap_err();
    assert_eq!(refused.code, Code::Closed);
    assert_eq!(drops.load(SeqCst), 7, "a Rust handler that was refused is dropped by the caller");
    assert!(!lp.alive());
}

#[test]
fn a_watch_a_timer_cancels_in_the_pass_that_reports_its_fd_leaves_no_wake_up() {
    // Found by fuzz/api_sequence: the pass took the stale report of the cancelled
    // watch's fd for a file the poller kept after a close, and rebuilt its whole set
    // in the next pass (whose fresh set then woke the host once more for nothing).
    use std::os::fd::AsRawFd;
    let lp = Loop::<Probe>::new().unwrap();
    let drops = counter();
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let writable = 2;
    let watch = lp.watch_fd(a.as_raw_fd(), writable, Probe::new(&drops, |_, _, _| panic!("cancelled"))).unwrap();
    lp.timer_after(0, Probe::new(&drops, move |lp, _, _| lp.cancel(watch).unwrap())).unwrap();
    // A post rings the inbox's bell, which is never drained: a fresh set sees it.
    lp.post(Probe::new(&drops, |_, _, _| {})).unwrap();
    lp.run(RunMode::NoWait).unwrap();
    assert_eq!(drops.load(SeqCst), 3);
    lp.run(RunMode::NoWait).unwrap();
    assert_eq!(lp.timeout_ms().unwrap(), None, "nothing is registered: no wake-up is due");
}

#[test]
fn the_embedding_fd_is_readable_exactly_when_there_is_work() {
    let lp = Loop::<Probe>::new().unwrap();
    let drops = counter();
    let readable = |lp: &Loop<Probe>| {
        let mut pfd = libc::pollfd { fd: lp.fd().unwrap(), events: libc::POLLIN, revents: 0 };
        unsafe { libc::poll(&mut pfd, 1, 0) == 1 }
    };
    assert!(!readable(&lp));
    assert_eq!(lp.timeout_ms().unwrap(), None);
    let fired = counter();
    let f = fired.clone();
    lp.timer_after(
        30,
        Probe::new(&drops, move |_, _, _| {
            f.fetch_add(1, SeqCst);
        }),
    )
    .unwrap();
    let t = lp.timeout_ms().unwrap().unwrap();
    assert!((25..=31).contains(&t), "{t}");
    assert!(!readable(&lp), "nothing is due yet");
    let mut pfd = libc::pollfd { fd: lp.fd().unwrap(), events: libc::POLLIN, revents: 0 };
    let start = Instant::now();
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 1000) }, 1);
    assert!(start.elapsed() >= Duration::from_millis(25));
    lp.run(RunMode::NoWait).unwrap();
    assert_eq!(fired.load(SeqCst), 1);
    assert!(!readable(&lp), "the pass consumed the timer's readiness");
    lp.post(Probe::new(&drops, |_, _, _| {})).unwrap();
    assert!(readable(&lp));
    assert_eq!(lp.timeout_ms().unwrap(), Some(0));
    lp.run(RunMode::NoWait).unwrap();
    assert!(!readable(&lp));
    assert_eq!(drops.load(SeqCst), 2);
}

#[test]
fn signals_reach_every_watcher_of_every_loop_and_the_old_handler_comes_back() {
    extern "C" fn previous(_: libc::c_int) {}
    let previous_addr = previous as extern "C" fn(libc::c_int) as usize;
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = previous_addr;
        assert_eq!(libc::sigaction(libc::SIGWINCH, &action, std::ptr::null_mut()), 0);
    }
    let drops = counter();
    let calls = counter();
    let loops: Vec<Loop<Probe>> = (0..2).map(|_| Loop::new().unwrap()).collect();
    let mut ids = Vec::new();
    for lp in &loops {
        for _ in 0..2 {
            let calls = calls.clone();
            let thread = thread::current().id();
            ids.push(
                lp.watch_signal(
                    libc::SIGWINCH,
                    Probe::new(&drops, move |_, _, ev| {
                        assert!(matches!(ev, Event::Signal { signum } if *signum == libc::SIGWINCH));
                        assert_eq!(thread::current().id(), thread, "runs on the loop thread");
                        calls.fetch_add(1, SeqCst);
                    }),
                )
                .unwrap(),
            );
        }
    }
    assert_eq!(loops[0].watch_signal(libc::SIGKILL, Probe::new(&drops, |_, _, _| {})).unwrap_err().code, Code::Invalid);
    unsafe { libc::raise(libc::SIGWINCH) };
    for lp in &loops {
        lp.run(RunMode::Once).unwrap();
    }
    assert_eq!(calls.load(SeqCst), 4);
    for (lp, id) in loops.iter().flat_map(|lp| [lp, lp]).zip(&ids) {
        lp.cancel(*id).unwrap();
    }
    assert_eq!(drops.load(SeqCst), 5, "four watches and the refused SIGKILL handler");
    let restored = unsafe {
        let mut now: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGWINCH, std::ptr::null(), &mut now);
        now.sa_sigaction
    };
    assert_eq!(restored, previous_addr, "the disposition from before the first watch is back");
}

#[test]
fn a_fast_producer_never_leaves_the_loop_asleep_with_posts_queued() {
    // The only timer is an hour away: every wake-up must come from the inbox's bell.
    let lp = Arc::new(Loop::<Probe>::new().unwrap());
    let drops = counter();
    let ran = counter();
    let keepalive = lp.timer_after(3_600_000, Probe::new(&drops, |_, _, _| {})).unwrap();
    let runner = {
        let lp = lp.clone();
        thread::spawn(move || lp.run(RunMode::Default).unwrap())
    };
    let start = Instant::now();
    for round in 0..20 {
        for _ in 0..50_000 {
            let ran = ran.clone();
            lp.post(Probe::new(&drops, move |_, _, _| {
                ran.fetch_add(1, SeqCst);
            }))
            .unwrap();
        }
        // Wait (bounded) for the loop to catch up before the next burst.
        let target = (round + 1) * 50_000;
        while ran.load(SeqCst) < target && start.elapsed() < Duration::from_secs(20) {
            thread::yield_now();
        }
        assert_eq!(ran.load(SeqCst), target, "the loop slept with posts queued (round {round})");
    }
    lp.cancel(keepalive).unwrap();
    runner.join().unwrap();
    assert_eq!(drops.load(SeqCst), 1_000_001);
}

#[test]
fn a_timer_added_after_a_cancelled_timers_deadline_passed_still_fires() {
    let lp = Arc::new(Loop::<Probe>::new().unwrap());
    let drops = counter();
    let fired = counter();
    let early = lp.timer_after(20, Probe::new(&drops, |_, _, _| {})).unwrap();
    lp.cancel(early).unwrap();
    thread::sleep(Duration::from_millis(30)); // the timerfd fires for the cancelled timer
    lp.run(RunMode::NoWait).unwrap();
    let f = fired.clone();
    lp.timer_after(
        10,
        Probe::new(&drops, move |_, _, _| {
            f.fetch_add(1, SeqCst);
        }),
    )
    .unwrap();
    let watchdog = {
        let lp = lp.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_secs(2));
            lp.stop().unwrap();
        })
    };
    lp.run(RunMode::Once).unwrap();
    assert_eq!(fired.load(SeqCst), 1, "the loop slept through the new timer");
    watchdog.join().unwrap();
    assert_eq!(drops.load(SeqCst), 2);
}

#[test]
fn freeing_a_loop_whose_free_fns_cancel_their_siblings_ends_each_once() {
    // More registrations than close() ends per chunk, each free function cancelling a
    // registration of a later chunk.
    let lp = Arc::new(Loop::<Probe>::new().unwrap());
    let drops = counter();
    let victims: Arc<Mutex<Vec<Id>>> = Arc::new(Mutex::new(Vec::new()));
    struct Canceller {
        lp: Arc<Loop<Probe>>,
        victims: Arc<Mutex<Vec<Id>>>,
        k: usize,
        drops: Arc<AtomicUsize>,
    }
    impl Drop for Canceller {
        fn drop(&mut self) {
            let victim = self.victims.lock().unwrap()[2999 - self.k];
            let _ = self.lp.cancel(victim); // Ok or NotFound: never a panic
            self.drops.fetch_add(1, SeqCst);
        }
    }
    // The cancellers take the first slots (the first chunk close() ends); their
    // victims are timers in the last slots (later chunks).
    for k in 0..500 {
        let c = Canceller { lp: lp.clone(), victims: victims.clone(), k, drops: drops.clone() };
        lp.subscribe(
            "x",
            Probe::new(&drops, move |_, _, _| {
                let _ = &c;
            }),
        )
        .unwrap();
    }
    for _ in 0..3000 {
        let id = lp.timer_after(60_000, Probe::new(&drops, |_, _, _| {})).unwrap();
        victims.lock().unwrap().push(id);
    }
    lp.close().unwrap();
    assert_eq!(drops.load(SeqCst), 3000 + 500 + 500);
}

#[test]
fn a_loop_run_inside_another_loops_callback_gets_its_task_done() {
    let outer = Loop::<Probe>::new().unwrap();
    let drops = counter();
    let done = counter();
    let d = done.clone();
    let drops2 = drops.clone();
    outer
        .post(Probe::new(&drops, move |_, _, _| {
            let inner = Loop::<Probe>::new().unwrap();
            let d = d.clone();
            inner
                .post(Probe::new(&drops2, move |lp, _, _| {
                    let d = d.clone();
                    lp.spawn(
                        weft::task::Where::Cpu,
                        weft::task::BoxedWork::new(|_| 1),
                        Probe::new(&counter(), move |_, _, _| {
                            d.fetch_add(1, SeqCst);
                        }),
                        weft::SpawnOptions::default(),
                    )
                    .unwrap();
                }))
                .unwrap();
            // The spawn's wake-up is deferred inside this callback and the inner one:
            // the inner loop must send it before it waits for the task.
            inner.run(RunMode::Default).unwrap();
        }))
        .unwrap();
    outer.run(RunMode::Default).unwrap();
    assert_eq!(done.load(SeqCst), 1);
}

#[test]
fn a_post_id_that_names_another_record_is_not_found_even_on_the_loop_thread() {
    let lp = Loop::<Probe>::new().unwrap();
    let drops = counter();
    let result = Arc::new(Mutex::new(None));
    let r = result.clone();
    let first = Arc::new(Mutex::new(0));
    let f = first.clone();
    let id = lp
        .post(Probe::new(&drops, move |lp, _, _| {
            // The next record in this batch is an emit, not a post.
            let forged = *f.lock().unwrap() + 1;
            *r.lock().unwrap() = Some(lp.cancel(forged).unwrap_err().code);
        }))
        .unwrap();
    *first.lock().unwrap() = id;
    lp.emit("a", b"x").unwrap();
    lp.run(RunMode::NoWait).unwrap();
    assert_eq!(*result.lock().unwrap(), Some(Code::NotFound));
}

#[test]
fn a_forked_child_gets_back_the_signal_dispositions_weft_replaced() {
    let lp = Loop::<Probe>::new().unwrap();
    let drops = counter();
    let id = lp.watch_signal(libc::SIGUSR1, Probe::new(&drops, |_, _, _| {})).unwrap();
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let mut now: libc::sigaction = unsafe { std::mem::zeroed() };
        unsafe { libc::sigaction(libc::SIGUSR1, std::ptr::null(), &mut now) };
        unsafe { libc::_exit(if now.sa_sigaction == libc::SIG_DFL { 0 } else { 1 }) };
    }
    let mut status = 0;
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "the child kept weft's handler");
    lp.cancel(id).unwrap();
}
