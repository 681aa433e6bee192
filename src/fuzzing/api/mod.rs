//! A sequence of C ABI calls on one loop, chosen by the input, checked against a model
//! (`model.rs`). One op a byte or a few, at most 64 ops; then, when the first byte asks,
//! the loop is drained until every task's `done` ran; then it is freed, and every
//! `free_fn` must have run exactly once (a task's may run on a pool thread: it is waited
//! for). Only the loop's own thread runs the loop, so the model knows which callbacks
//! a pass runs; tasks run on the default pools, never in forked children. With
//! `WEFT_FUZZ_TRACE` set, each op is printed (to read a failing input).

mod model;

use super::Input;
use crate::ffi::{self, weft_loop, weft_spawn_options};
use model::*;
use std::ffi::{c_int, c_void};
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

/// How long a task's `done` or `free_fn` may take before the sequence calls it lost.
const PATIENCE: Duration = Duration::from_secs(20);

/// Runs the calls the bytes choose; panics when weft breaks a promise of the header.
pub fn api_sequence(data: &[u8]) {
    let mut input = Input::new(data);
    let drain = input.u8() & 1 != 0;
    let lp = ffi::weft_loop_new();
    assert!(!lp.is_null(), "weft_loop_new: {}", last_error());
    let sockets = crate::sys::socketpair().expect("a socket pair");
    MODEL.with(|m| *m.borrow_mut() = Some(Model::new(lp, sockets)));
    let trace = std::env::var_os("WEFT_FUZZ_TRACE").is_some();
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        let op = input.u8() % 18;
        if trace {
            eprintln!("op {op} ({})", with_model(|m| m.regs.len()));
        }
        match op {
            0 => run(lp, ffi::WEFT_RUN_NOWAIT, false),
            1 => {
                // Stopped before it runs, the loop makes one pass and returns (none when
                // nothing is registered: then the stop's ring waits for the next pass).
                assert_eq!(ffi::weft_loop_stop(lp), 0);
                let idle = ffi::weft_loop_alive(lp) == 0;
                run(lp, ffi::WEFT_RUN_DEFAULT, idle);
            }
            op => with_model(|m| step(m, op, &mut input)),
        }
    }
    if drain {
        let deadline = Instant::now() + PATIENCE;
        while with_model(|m| m.regs.iter().any(|r| r.live && matches!(r.kind, Kind::Task { .. }))) {
            assert!(Instant::now() < deadline, "a task's done did not run within {PATIENCE:?}");
            with_model(|m| m.fd_helper = true);
            let mut pfd = libc::pollfd { fd: ffi::weft_loop_fd(lp), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, 5) };
            run(lp, ffi::WEFT_RUN_NOWAIT, false);
        }
    }
    let model = MODEL.with(|m| m.borrow_mut().take()).expect("the model");
    ffi::weft_loop_free(lp);
    ffi::weft_loop_free(model.other);
    finish(model, drain);
}

/// One pass of the loop, with the model told before and after (`no_pass`: the run
/// returns without one).
fn run(lp: *mut weft_loop, mode: c_int, no_pass: bool) {
    with_model(|m| m.begin_run());
    assert_eq!(ffi::weft_loop_run(lp, mode), 0, "weft_loop_run: {}", last_error());
    with_model(|m| {
        m.end_run();
        m.early_wake |= no_pass;
        m.check_idle();
    });
}

/// After the loops are freed: every free_fn ran once (waiting for pool threads), none
/// of a failed registration; with a drain, every task's done ran.
fn finish(model: Model, drained: bool) {
    let deadline = Instant::now() + PATIENCE;
    for (reg, probe) in model.regs.iter().zip(&model.probes) {
        let want = (reg.id != 0) as u32;
        while probe.frees.load(SeqCst) < want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(50));
        }
        let frees = probe.frees.load(SeqCst);
        if frees != want {
            let what = format!("{:?} (id {:#x}): free_fn ran {frees} times, not {want}", reg.kind, reg.id);
            std::mem::forget(model); // a pool thread may still hold a probe
            panic!("{what}");
        }
        if drained && reg.id != 0 && matches!(reg.kind, Kind::Task { .. }) {
            assert!(reg.status.is_some(), "a task's done did not run before the loop was freed");
        }
    }
}

/// Decodes an action for a callback.
fn action(input: &mut Input) -> Action {
    match input.u8() % 10 {
        0 => Action::CancelSelf,
        1 => Action::Cancel(input.u8() as usize),
        2 => Action::Emit(input.u8() as usize % TOPICS.len()),
        3 => Action::Post,
        4 => Action::Reenter,
        5 => Action::Spawn([ffi::WEFT_ON_LOOP, ffi::WEFT_ON_CPU][input.u8() as usize % 2]),
        _ => Action::Nothing,
    }
}

/// One op that runs no callback of the loop (the model stays borrowed).
fn step(m: &mut Model, op: u8, input: &mut Input) {
    let lp = m.lp;
    match op {
        2 => {
            let user_data = m.probe(Kind::Post, action(input));
            let id = ffi::weft_post(lp, Some(on_call), user_data, Some(on_free));
            expect_id(id, OK, "weft_post");
            m.registered(id);
        }
        3 => {
            let (delay, valid) =
                [(0, true), (1, true), (60_000, true), ((1 << 35) - 1, true), (1 << 35, false), (u64::MAX, false)]
                    [input.u8() as usize % 6];
            let user_data = m.probe(Kind::After(delay == 0), action(input));
            let id = ffi::weft_timer_after(lp, delay, Some(on_call), user_data, Some(on_free));
            expect_id(id, if valid { OK } else { INVALID }, "weft_timer_after");
            m.registered(id);
        }
        4 => {
            let (interval, valid) = [(1, true), (60_000, true), (0, false), (1 << 35, false)][input.u8() as usize % 4];
            let user_data = m.probe(Kind::Every, action(input));
            let id = ffi::weft_timer_every(lp, interval, Some(on_call), user_data, Some(on_free));
            expect_id(id, if valid { OK } else { INVALID }, "weft_timer_every");
            m.registered(id);
        }
        5 => {
            let pattern = input.u8() as usize % PATTERNS.len();
            let user_data = m.probe(Kind::Sub(pattern), action(input));
            let id = ffi::weft_subscribe(lp, PATTERNS[pattern].as_ptr(), Some(on_event), user_data, Some(on_free));
            expect_id(id, if pattern < 7 { OK } else { INVALID }, "weft_subscribe");
            m.registered(id);
        }
        6 => m.emit(input.u8() as usize % TOPICS.len()),
        7 => watch(m, input),
        8 => {
            let reg = input.u8() as usize;
            let interest = (input.u8() as u32 % 4) | if input.u8() & 7 == 0 { 0x40 } else { 0 };
            let Some(index) = (!m.regs.is_empty()).then(|| reg % m.regs.len()) else { return };
            let rc = ffi::weft_watch_fd_modify(lp, m.regs[index].id, interest);
            let r = &mut m.regs[index];
            let want = match r.kind {
                _ if interest > 3 => INVALID,
                Kind::Foreign => NOT_FOUND,
                _ if !r.live => NOT_FOUND,
                Kind::Watch { .. } => OK,
                _ => INVALID,
            };
            // A post's or a task's id may be NOT_FOUND as well: not a live watch either.
            let either = want == INVALID && interest <= 3 && matches!(r.kind, Kind::Post | Kind::Task { .. });
            assert!(rc == want || either && rc == NOT_FOUND, "weft_watch_fd_modify of {:?}: {}", r.kind, last_error());
            if let (OK, Kind::Watch { fd, .. }) = (rc, r.kind) {
                r.kind = Kind::Watch { fd, interest };
            }
        }
        9 => spawn(m, input),
        10 => {
            let id = match input.u8() % 5 {
                0 => 0,
                1 => input.u64(),
                2 => m.regs.get(input.u8() as usize % m.regs.len().max(1)).map_or(0, |r| r.id) ^ 1 << (input.u8() % 64),
                _ => m.regs.get(input.u8() as usize % m.regs.len().max(1)).map_or(0, |r| r.id),
            };
            m.cancel(id);
        }
        11 => {
            m.pass_limit = [0, 0, 1, 3][input.u8() as usize % 4];
            assert_eq!(ffi::weft_loop_set_pass_limit(lp, m.pass_limit), OK);
            if m.pass_limit > 0 {
                m.emitted.iter_mut().for_each(|e| e.due = false);
                m.queued = true;
            }
        }
        12 => bad_calls(m, input),
        13 => sockets(m, input),
        14 => m.check_idle(),
        15 => foreign(m, input),
        _ => {
            let signum =
                [libc::SIGUSR2, libc::SIGWINCH, 0, libc::SIGKILL, libc::SIGSEGV, 33, 65][input.u8() as usize % 7];
            let user_data = m.probe(Kind::Signal, Action::Nothing);
            let id = ffi::weft_watch_signal(lp, signum, Some(on_signal), user_data, Some(on_free));
            let valid = signum == libc::SIGUSR2 || signum == libc::SIGWINCH;
            expect_id(id, if valid { OK } else { INVALID }, "weft_watch_signal");
            m.registered(id);
        }
    }
}

fn watch(m: &mut Model, input: &mut Input) {
    let (fd, valid) = match input.u8() % 6 {
        0 | 1 => (m.fds[0], true),
        2 => (m.fds[1], true),
        3 => (-1, false),
        4 => (1 << 20, false),
        _ => {
            m.fd_helper = true;
            (ffi::weft_loop_fd(m.lp), false)
        }
    };
    let interest = input.u8() as u32 % 4;
    let bad_bits = input.u8() & 7 == 0;
    let user_data = m.probe(Kind::Watch { fd, interest }, action(input));
    let interest = interest | if bad_bits { 0x100 } else { 0 };
    let id = ffi::weft_watch_fd(m.lp, fd, interest, Some(on_fd), user_data, Some(on_free));
    expect_id(id, if valid && !bad_bits { OK } else { INVALID }, "weft_watch_fd");
    m.registered(id);
}

fn spawn(m: &mut Model, input: &mut Input) {
    let (place, place_ok) = [
        (ffi::WEFT_ON_LOOP, true),
        (ffi::WEFT_ON_IO, true),
        (ffi::WEFT_ON_CPU, true),
        (ffi::WEFT_ON_CPU, true),
        (7, false),
        (-1, false),
    ][input.u8() as usize % 6];
    let mut options = weft_spawn_options {
        size: std::mem::size_of::<weft_spawn_options>(),
        timeout_ms: 0,
        pool: std::ptr::null_mut(),
        max_children: 0,
        fork_fn: None,
        fork_data: std::ptr::null_mut(),
        reuse_child: false,
        keep_fds: std::ptr::null(),
        keep_fds_len: 0,
        inherit_fds: false,
        flags: (input.u8() & 1) as u64,
    };
    let choice = input.u8() % 6;
    match choice {
        2 => options.timeout_ms = 1,
        3 => options.size = 1,
        4 => options.size = 1 << 17,
        5 => options.timeout_ms = 1 << 35,
        _ => {}
    }
    let options_ok = choice < 3;
    let status = input.u8() as c_int;
    let len = input.u8() as usize % 24;
    let result = input.bytes(len).to_vec();
    let emit = [None, Some(1), Some(4), Some(6)][input.u8() as usize % 4];
    let user_data = m.probe_task(Kind::Task { timeout: choice == 2 }, Action::Nothing, status, result, emit);
    let options_ptr = if choice == 0 { std::ptr::null() } else { &options as *const weft_spawn_options };
    let id = ffi::weft_spawn(m.lp, place, Some(work), Some(on_done), user_data, Some(on_free), options_ptr);
    expect_id(id, if place_ok && options_ok { OK } else { INVALID }, "weft_spawn");
    m.registered(id);
    if id != 0 {
        m.stray_records |= choice == 2;
        m.pool_tasks |= place != ffi::WEFT_ON_LOOP;
    }
}

/// The other loop: made on first use, with a timer whose id this loop must refuse.
fn foreign(m: &mut Model, input: &mut Input) {
    if m.other.is_null() {
        m.other = ffi::weft_loop_new();
        assert!(!m.other.is_null());
    }
    let user_data = m.probe(Kind::Foreign, Action::Nothing);
    let id = ffi::weft_timer_after(m.other, 60_000, Some(on_call), user_data, Some(on_free));
    expect_id(id, OK, "weft_timer_after on the other loop");
    m.registered(id);
    m.regs.last_mut().expect("the record").live = false; // not this loop's
    assert_eq!(ffi::weft_cancel(m.lp, id), NOT_FOUND, "another loop's id");
    if let Some(own) = m.regs.get(input.u8() as usize % m.regs.len()).filter(|r| r.kind != Kind::Foreign) {
        assert_eq!(ffi::weft_cancel(m.other, own.id), NOT_FOUND, "this loop's id on the other loop");
    }
}

/// The socket pair: bytes towards either end, reading an end dry, a hang-up.
fn sockets(m: &mut Model, input: &mut Input) {
    let op = input.u8() % 5;
    let end = (op % 2) as usize;
    match op {
        0 | 1 if !m.shut || end == 1 => {
            // Bytes written at the other end arrive at `end`.
            let n = 1 + input.u8() as usize % 8;
            // SAFETY: writes n bytes from a valid buffer.
            let wrote = unsafe { libc::write(m.fds[1 - end], [7u8; 8].as_ptr().cast(), n) };
            assert_eq!(wrote, n as isize);
            m.unread[end] += n;
        }
        2 | 3 => {
            let mut buf = [0u8; 256];
            while m.unread[end] > 0 {
                // SAFETY: reads into a valid buffer.
                let n = unsafe { libc::read(m.fds[end], buf.as_mut_ptr().cast(), buf.len()) };
                assert!(n > 0);
                m.unread[end] -= n as usize;
            }
        }
        4 => {
            // SAFETY: shuts down our own socket's writing side.
            unsafe { libc::shutdown(m.fds[1], libc::SHUT_WR) };
            m.shut = true;
        }
        _ => {}
    }
}

/// Bad input: each call must fail with its documented code, and run no free_fn.
fn bad_calls(m: &mut Model, input: &mut Input) {
    let lp = m.lp;
    let null = std::ptr::null_mut::<weft_loop>();
    let data = m.probe(Kind::Post, Action::Nothing);
    let payload = [1u8; 4];
    match input.u8() % 12 {
        0 => {
            assert_eq!(ffi::weft_loop_run(null, ffi::WEFT_RUN_NOWAIT), NULL);
            assert_eq!(ffi::weft_loop_run(lp, [3, -1, 99][input.u8() as usize % 3]), INVALID);
        }
        1 => {
            expect_id(ffi::weft_post(null, Some(on_call), data, Some(on_free)), NULL, "weft_post(NULL)");
            expect_id(ffi::weft_post(lp, None, data, Some(on_free)), NULL, "weft_post(cb NULL)");
            expect_id(ffi::weft_timer_after(null, 0, Some(on_call), data, Some(on_free)), NULL, "weft_timer_after");
            expect_id(ffi::weft_timer_every(lp, 5, None, data, Some(on_free)), NULL, "weft_timer_every");
        }
        2 => {
            assert_eq!(ffi::weft_cancel(null, 1), NULL);
            assert_eq!(ffi::weft_watch_fd_modify(null, 1, 0), NULL);
            assert_eq!(ffi::weft_watch_fd_modify(lp, 0, 0), NOT_FOUND);
        }
        3 => {
            assert_eq!(ffi::weft_emit(null, c"a".as_ptr(), payload.as_ptr().cast(), 4), NULL);
            assert_eq!(ffi::weft_emit(lp, std::ptr::null(), payload.as_ptr().cast(), 4), NULL);
            assert_eq!(ffi::weft_emit(lp, c"a".as_ptr(), std::ptr::null(), 3), NULL);
            assert_eq!(ffi::weft_emit(lp, c"a".as_ptr(), payload.as_ptr().cast(), usize::MAX), INVALID);
        }
        4 => {
            let (pattern, cb) = (c"a".as_ptr(), Some(on_event as unsafe extern "C" fn(_, _, _, _, _, _)));
            expect_id(ffi::weft_subscribe(lp, std::ptr::null(), cb, data, Some(on_free)), NULL, "subscribe");
            expect_id(ffi::weft_subscribe(lp, pattern, None, data, Some(on_free)), NULL, "subscribe(cb NULL)");
            expect_id(ffi::weft_subscribe(null, pattern, cb, data, Some(on_free)), NULL, "subscribe(NULL)");
        }
        5 => {
            expect_id(ffi::weft_watch_fd(lp, m.fds[0], 1, None, data, Some(on_free)), NULL, "watch_fd(cb NULL)");
            expect_id(ffi::weft_watch_fd(null, m.fds[0], 1, Some(on_fd), data, Some(on_free)), NULL, "watch_fd");
        }
        6 => {
            let id = ffi::weft_spawn(lp, ffi::WEFT_ON_CPU, None, Some(on_done), data, Some(on_free), std::ptr::null());
            expect_id(id, NULL, "weft_spawn(work NULL)");
            let id = ffi::weft_spawn(null, ffi::WEFT_ON_CPU, Some(work), None, data, None, std::ptr::null());
            expect_id(id, NULL, "weft_spawn(NULL)");
        }
        7 => {
            let null_task = std::ptr::null_mut();
            assert_eq!(ffi::weft_task_write(null_task, payload.as_ptr().cast(), 4), NULL);
            assert!(!ffi::weft_task_cancelled(null_task));
            assert_eq!(ffi::weft_task_emit(null_task, c"a".as_ptr(), std::ptr::null(), 0), NULL);
        }
        8 => {
            assert_eq!(ffi::weft_loop_stop(null), NULL);
            assert_eq!(ffi::weft_loop_fd(null), NULL);
            assert_eq!(ffi::weft_loop_alive(null), NULL);
            assert_eq!(ffi::weft_loop_timeout_ms(null), -1);
            assert_eq!(ffi::weft_loop_set_pass_limit(null, 1), NULL);
            ffi::weft_loop_free(null);
        }
        9 => {
            // The last error, into a buffer of any size: never past its end.
            let n = input.u8() as usize % 40;
            let mut buf = [0x55u8; 48];
            let full = ffi::weft_last_error(std::ptr::null_mut(), 0);
            assert_eq!(ffi::weft_last_error(buf.as_mut_ptr().cast(), n), full);
            if n > 0 {
                assert_eq!(buf[full.min(n - 1)], 0);
            }
            assert!(buf[n..].iter().all(|&b| b == 0x55), "weft_last_error wrote past len {n}");
        }
        10 => {
            assert!(!ffi::weft_strerror(input.u32() as c_int).is_null());
            assert!(!ffi::weft_version().is_null());
        }
        _ => {
            let id = [0, u64::MAX, input.u64()][input.u8() as usize % 3];
            let rc = ffi::weft_watch_fd_modify(lp, id, 1);
            match m.regs.iter().find(|r| r.id == id && r.kind != Kind::Foreign) {
                Some(r) if r.live && matches!(r.kind, Kind::Watch { .. }) => assert_eq!(rc, OK),
                Some(r) if r.live => assert!(rc == INVALID || rc == NOT_FOUND),
                _ => assert_eq!(rc, NOT_FOUND),
            }
        }
    }
    let _: *mut c_void = data;
}
