//! Pools and tasks through the safe core: exactly-once runs and completions, nested
//! submissions, wake-ups after idle periods, shutdown, and the IO pool's bound.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use weft::pool::{self, Job, JobRef, Pool};
use weft::task::{BoxedWork, Where};
use weft::{Event, Handler, Id, Loop, RunMode, SpawnOptions};

/// A job that counts its run or its abandonment.
struct Count {
    ran: Arc<AtomicUsize>,
    abandoned: Arc<AtomicUsize>,
    then: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Count {
    /// A job that counts its run (or its abandonment), then calls `then`.
    fn job(ran: Arc<AtomicUsize>, abandoned: Arc<AtomicUsize>, then: Option<Box<dyn FnOnce() + Send>>) -> JobRef {
        Arc::new(Count { ran, abandoned, then: Mutex::new(then) }).into()
    }
}

impl Job for Count {
    fn run(self: Arc<Self>) {
        self.ran.fetch_add(1, SeqCst);
        if let Some(then) = self.then.lock().unwrap().take() {
            then();
        }
    }
    fn abandon(self: Arc<Self>) {
        self.abandoned.fetch_add(1, SeqCst);
    }
}

fn counters() -> (Arc<AtomicUsize>, Arc<AtomicUsize>) {
    (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)))
}

fn cpu_pool(threads: usize) -> Arc<Pool> {
    let mut options = pool::Options::new(pool::Kind::Cpu);
    options.threads = threads;
    Arc::new(Pool::new(options).unwrap())
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn cpu_pool_runs_every_job_once_from_many_submitters_across_idle_periods() {
    let pool = cpu_pool(3);
    let (ran, abandoned) = counters();
    for round in 0..20 {
        let submitters: Vec<_> = (0..4)
            .map(|_| {
                let (pool, ran, abandoned) = (pool.clone(), ran.clone(), abandoned.clone());
                thread::spawn(move || {
                    for _ in 0..2_500 {
                        pool.submit(Count::job(ran.clone(), abandoned.clone(), None)).unwrap();
                    }
                })
            })
            .collect();
        for s in submitters {
            s.join().unwrap();
        }
        // Every job runs although the workers went to sleep between rounds: a lost
        // wake-up would leave this waiting.
        wait_for("the round's jobs", || ran.load(SeqCst) == (round + 1) * 10_000);
        thread::sleep(Duration::from_millis(2));
    }
    pool.shutdown().unwrap();
    assert_eq!(abandoned.load(SeqCst), 0);
}

#[test]
fn nested_jobs_run_on_the_submitting_workers_deque_and_all_complete() {
    let pool = cpu_pool(2);
    let (ran, abandoned) = counters();
    fn fan_out(pool: Arc<Pool>, depth: u32, ran: Arc<AtomicUsize>, abandoned: Arc<AtomicUsize>) {
        let then: Option<Box<dyn FnOnce() + Send>> = (depth > 0).then(|| {
            let (pool, ran, abandoned) = (pool.clone(), ran.clone(), abandoned.clone());
            Box::new(move || {
                for _ in 0..4 {
                    fan_out(pool.clone(), depth - 1, ran.clone(), abandoned.clone());
                }
            }) as Box<dyn FnOnce() + Send>
        });
        pool.submit(Count::job(ran, abandoned, then)).unwrap();
    }
    fan_out(pool.clone(), 7, ran.clone(), abandoned.clone());
    let total: usize = (0..=7).map(|d| 4usize.pow(d)).sum();
    wait_for("the whole tree", || ran.load(SeqCst) == total);
    pool.shutdown().unwrap();
}

#[test]
fn shutdown_abandons_queued_jobs_and_lets_running_ones_finish() {
    let pool = cpu_pool(1);
    let (ran, abandoned) = counters();
    let gate = Arc::new(Barrier::new(2));
    let release = Arc::new(Mutex::new(()));
    let hold = release.lock().unwrap();
    {
        let (gate, release) = (gate.clone(), release.clone());
        let then: Box<dyn FnOnce() + Send> = Box::new(move || {
            gate.wait();
            drop(release.lock().unwrap());
        });
        pool.submit(Count::job(ran.clone(), abandoned.clone(), Some(then))).unwrap();
    }
    gate.wait(); // the one worker is now busy
    for _ in 0..100 {
        pool.submit(Count::job(ran.clone(), abandoned.clone(), None)).unwrap();
    }
    let stopper = {
        let pool = pool.clone();
        thread::spawn(move || pool.shutdown().unwrap())
    };
    thread::sleep(Duration::from_millis(20));
    drop(hold);
    stopper.join().unwrap();
    assert_eq!(ran.load(SeqCst) + abandoned.load(SeqCst), 101);
    assert!(ran.load(SeqCst) >= 1, "the running job finished");
    assert!(abandoned.load(SeqCst) >= 99, "queued jobs were abandoned, not run");
    let late = pool.submit(Count::job(ran.clone(), abandoned.clone(), None));
    assert!(late.is_err());
    assert_eq!(ran.load(SeqCst) + abandoned.load(SeqCst), 102, "a job refused at shutdown is abandoned");
}

#[test]
fn io_pool_grows_to_its_bound_and_no_further_then_retires_idle_threads() {
    let mut options = pool::Options::new(pool::Kind::Io);
    options.threads = 4;
    options.keep_alive = Duration::from_millis(50);
    let names = Arc::new(Mutex::new(HashSet::new()));
    let stops = Arc::new(AtomicUsize::new(0));
    let s = stops.clone();
    options.on_stop = Some(Arc::new(move |_| {
        s.fetch_add(1, SeqCst);
    }));
    let pool = Pool::new(options).unwrap();
    let (ran, abandoned) = counters();
    // Counted at the end of each job: `ran` counts its start, and a job counted there may
    // not have recorded its thread's name yet.
    let finished = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Mutex::new(()));
    let hold = release.lock().unwrap();
    for _ in 0..10 {
        let (names, release, finished) = (names.clone(), release.clone(), finished.clone());
        let then: Box<dyn FnOnce() + Send> = Box::new(move || {
            // Pool threads are plain pthreads: their name is the kernel's.
            let name = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
            names.lock().unwrap().insert(name.trim_end().to_string());
            drop(release.lock().unwrap());
            finished.fetch_add(1, SeqCst);
        });
        pool.submit(Count::job(ran.clone(), abandoned.clone(), Some(then))).unwrap();
    }
    thread::sleep(Duration::from_millis(50));
    drop(hold);
    wait_for("the ten jobs", || finished.load(SeqCst) == 10);
    assert_eq!(ran.load(SeqCst), 10);
    let names = names.lock().unwrap();
    assert_eq!(names.len(), 4, "four threads at most: {names:?}");
    assert!(names.iter().all(|n| n.starts_with("weft-io-")), "{names:?}");
    wait_for("idle threads to retire", || stops.load(SeqCst) == 4);
    pool.shutdown().unwrap();
}

// ---- tasks through a loop -------------------------------------------------------------

/// (status, result) of each done call; -100 and the topic for an event.
type Seen = Arc<Mutex<Vec<(i32, Vec<u8>)>>>;

/// A done handler that records the status and result of its one call.
struct Done {
    seen: Seen,
    drops: Arc<AtomicUsize>,
}

impl Handler for Done {
    type Work = BoxedWork<Done>;
    fn call(&mut self, _: &Loop<Self>, _: Id, event: Event<'_>) {
        match event {
            Event::Done { status, result, .. } => self.seen.lock().unwrap().push((status, result.to_vec())),
            Event::Topic { topic, .. } => self.seen.lock().unwrap().push((-100, topic.to_bytes().to_vec())),
            _ => panic!("unexpected event"),
        }
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
    }
}

#[test]
fn tasks_complete_once_with_their_result_cancelled_or_timed_out() {
    let lp = Loop::<Done>::new().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let drops = Arc::new(AtomicUsize::new(0));
    let owners = Arc::new(AtomicUsize::new(0));
    let done = || Done { seen: seen.clone(), drops: drops.clone() };
    /// Counts when the work's captured data is released.
    struct Owner(Arc<AtomicUsize>);
    impl Drop for Owner {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    // A result, and events delivered before done.
    lp.subscribe("t.*", done()).unwrap();
    let owner = Owner(owners.clone());
    lp.spawn(
        Where::Cpu,
        BoxedWork::new(move |task| {
            let _owner = &owner;
            task.emit("t.progress", b"half").unwrap();
            task.write(b"hello ").unwrap();
            task.write(b"world").unwrap();
            3
        }),
        done(),
        SpawnOptions::default(),
    )
    .unwrap();
    // Timeout: done at the deadline; the work sees the flag and returns later.
    let owner = Owner(owners.clone());
    let slow = lp
        .spawn(
            Where::Io,
            BoxedWork::new(move |task| {
                let _owner = &owner;
                while !task.cancelled() {
                    thread::sleep(Duration::from_millis(1));
                }
                thread::sleep(Duration::from_millis(30));
                // Timed out already: the write may be refused; either way, discarded.
                let _ = task.write(b"discarded");
                0
            }),
            done(),
            SpawnOptions { timeout_ms: 20, ..Default::default() },
        )
        .unwrap();
    let start = Instant::now();
    while seen.lock().unwrap().len() < 3 {
        lp.run(RunMode::Once).unwrap();
    }
    let elapsed = start.elapsed();
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0], (-100, b"t.progress".to_vec()), "the event comes before done: {seen:?}");
        assert!(seen.contains(&(3, b"hello world".to_vec())));
        assert!(seen.contains(&(weft::task::TIMEOUT, Vec::new())));
    }
    assert!(elapsed < Duration::from_millis(500), "timeout reported promptly: {elapsed:?}");
    assert_eq!(lp.cancel(slow).unwrap_err().code, weft::Code::NotFound);
    wait_for("the timed-out work to return and release its data", || owners.load(SeqCst) == 2);
    lp.close().unwrap();
    assert_eq!(drops.load(SeqCst), 3);
}

#[test]
fn a_million_tasks_with_random_cancels_complete_exactly_once() {
    const TASKS: usize = 1_000_000;
    let lp = Arc::new(Loop::<Done>::new().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let drops = Arc::new(AtomicUsize::new(0));
    let worked = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(Mutex::new(Vec::with_capacity(TASKS)));
    let spawner = {
        let (lp, seen, drops, worked, ids) = (lp.clone(), seen.clone(), drops.clone(), worked.clone(), ids.clone());
        thread::spawn(move || {
            for i in 0..TASKS {
                let worked = worked.clone();
                let place = if i % 2 == 0 { Where::Cpu } else { Where::Io };
                let id = lp
                    .spawn(
                        place,
                        BoxedWork::new(move |_| {
                            worked.fetch_add(1, SeqCst);
                            1
                        }),
                        Done { seen: seen.clone(), drops: drops.clone() },
                        SpawnOptions::default(),
                    )
                    .unwrap();
                if i % 7 == 0 {
                    ids.lock().unwrap().push(id);
                }
            }
        })
    };
    let cancellers: Vec<_> = (0..2)
        .map(|c| {
            let (lp, ids) = (lp.clone(), ids.clone());
            thread::spawn(move || {
                let mut ok = 0;
                for _ in 0..20_000 {
                    let id = ids.lock().unwrap().pop();
                    if let Some(id) = id {
                        ok += lp.cancel(id).is_ok() as usize;
                    } else {
                        thread::sleep(Duration::from_micros(50 + c));
                    }
                }
                ok
            })
        })
        .collect();
    let start = Instant::now();
    while seen.lock().unwrap().len() < TASKS {
        assert!(start.elapsed() < Duration::from_secs(60), "stuck at {}", seen.lock().unwrap().len());
        lp.run(RunMode::NoWait).unwrap();
        thread::yield_now();
    }
    spawner.join().unwrap();
    let cancelled_ok: usize = cancellers.into_iter().map(|c| c.join().unwrap()).sum();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), TASKS);
    let cancelled = seen.iter().filter(|(s, _)| *s == weft::task::CANCELLED).count();
    let finished = seen.iter().filter(|(s, _)| *s == 1).count();
    assert_eq!(cancelled + finished, TASKS);
    assert!(cancelled <= cancelled_ok, "a cancelled done needs a successful cancel");
    assert!(worked.load(SeqCst) >= finished, "every finished task ran its work");
    assert!(worked.load(SeqCst) <= TASKS);
    assert_eq!(drops.load(SeqCst), TASKS);
}
