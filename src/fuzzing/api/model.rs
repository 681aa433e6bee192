//! The model of one loop's registrations: what each call should return, what each
//! callback may see, and the accounting checked at the end.

use super::super::topics::{reference_matches, reference_pattern};
use crate::ffi::{self, weft_id, weft_loop, weft_result, weft_task};
use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

pub(super) const OK: c_int = 0;
pub(super) const NULL: c_int = weft_result::WEFT_ERR_NULL as c_int;
pub(super) const INVALID: c_int = weft_result::WEFT_ERR_INVALID as c_int;
pub(super) const NOT_FOUND: c_int = weft_result::WEFT_ERR_NOT_FOUND as c_int;
pub(super) const BUSY: c_int = weft_result::WEFT_ERR_BUSY as c_int;
const CANCELLED: c_int = weft_result::WEFT_ERR_CANCELLED as c_int;
const TIMEOUT: c_int = weft_result::WEFT_ERR_TIMEOUT as c_int;

/// The portable backend (src/sys/portable) is the one built.
const PORTABLE: bool = cfg!(any(feature = "portable", not(target_os = "linux")));

/// Topics the sequence emits (the last two are refused), as C strings.
pub(super) const TOPICS: [&CStr; 7] = [c"a", c"a.b", c"a.b.c", c"b", c"task.x", c"", c"a.*"];
/// Patterns it subscribes with (the last four are refused).
pub(super) const PATTERNS: [&CStr; 11] =
    [c"*", c"a", c"a.*", c"a.b", c"a.b.*", c"b", c"task.*", c"", c"a*", c".*", c"*.a"];

/// What a callback does when it runs, chosen when its registration is made.
#[derive(Clone, Copy, Debug)]
pub(super) enum Action {
    Nothing,
    CancelSelf,
    /// Cancels the registration with this number (modulo their count).
    Cancel(usize),
    Emit(usize),
    Post,
    /// weft_loop_run and weft_loop_free from inside a callback: both refused.
    Reenter,
    Spawn(c_int),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Kind {
    Post,
    /// A one-shot timer; true when its delay was 0 (it fires in the next pass).
    After(bool),
    Every,
    Watch {
        fd: c_int,
        interest: u32,
    },
    Signal,
    Sub(usize),
    Task {
        timeout: bool,
    },
    /// A registration of the other loop.
    Foreign,
}

/// A registration's user data: the part of it other threads touch (a task's work runs
/// on a pool thread, and its free_fn may too).
pub(super) struct Probe {
    pub index: usize,
    pub frees: AtomicU32,
    pub works: AtomicU32,
    /// A task's work: the status it returns, the bytes it writes, the topic it emits.
    pub status: c_int,
    pub result: Vec<u8>,
    pub emit: Option<usize>,
}

/// The loop thread's view of one registration.
pub(super) struct Reg {
    pub kind: Kind,
    /// 0: the registration call failed (its free_fn must never run).
    pub id: weft_id,
    pub action: Action,
    /// Live as far as the model knows: registered, not cancelled, not finished.
    pub live: bool,
    pub cancelled: bool,
    /// Made before the current run began and live then (the run must serve it).
    pub before_run: bool,
    /// Its callback is running now.
    pub running: bool,
    pub calls: u32,
    pub calls_this_run: u32,
    /// A subscription's events: the sequence numbers of the driver's events it got.
    pub events: Vec<u32>,
    /// A task's `done`: its status.
    pub status: Option<c_int>,
}

/// An event the sequence emitted.
pub(super) struct Emitted {
    pub topic: usize,
    /// Emitted outside a run, with no pass limit since: the next run delivers it.
    pub due: bool,
}

pub(super) struct Model {
    pub lp: *mut weft_loop,
    /// The other loop, for foreign ids.
    pub other: *mut weft_loop,
    /// A socket pair to watch (its fd numbers, and the pair, closed with the model),
    /// and the bytes in flight towards each end.
    pub fds: [c_int; 2],
    _sockets: (OwnedFd, OwnedFd),
    pub unread: [usize; 2],
    pub shut: bool,
    /// Boxed: each one's address is a registration's user data.
    #[allow(clippy::vec_box)]
    pub probes: Vec<Box<Probe>>,
    pub regs: Vec<Reg>,
    pub emitted: Vec<Emitted>,
    pub pass_limit: u32,
    pub in_run: bool,
    /// Callback actions left.
    pub actions: u32,
    /// A callback of the current run queued something (served by a later pass).
    pub queued_in_run: bool,
    /// Something may be queued in the inbox (the loop can be alive with nothing live).
    pub queued: bool,
    /// A task may send a record after its `done` (cancel, timeout): `queued` stays.
    pub stray_records: bool,
    /// The loop's fd may be readable, and its timeout 0, with nothing to do until its
    /// next pass: a wake-up the header allows (a cancel since the last pass, which may
    /// leave an early deadline or ring the bell; a stop, which rings it).
    pub early_wake: bool,
    /// A pool thread ran a task: its completion's ring may come late, after the pass
    /// that delivered it, so the fd's readiness is not certain any more.
    pub pool_tasks: bool,
    /// weft_loop_fd was called: in the portable backend, a helper thread now waits on
    /// the loop's poller between runs, and the notification that interrupts it can make
    /// the next pass's look at the poller come back empty once (polling's poll(2)
    /// backend), so a ready fd may wait a pass more.
    pub fd_helper: bool,
}

thread_local! {
    pub(super) static MODEL: RefCell<Option<Model>> = const { RefCell::new(None) };
}

/// Runs `f` on this thread's model. Never held across a call that runs callbacks.
pub(super) fn with_model<T>(f: impl FnOnce(&mut Model) -> T) -> T {
    MODEL.with(|m| f(m.borrow_mut().as_mut().expect("a model while the sequence runs")))
}

/// The result of the last call that returns an id.
pub(super) fn expect_id(id: weft_id, want: c_int, call: &str) {
    if want == OK {
        assert_ne!(id, 0, "{call} failed: {}", last_error());
    } else {
        assert_eq!(id, 0, "{call} succeeded; wanted {want}");
        assert_eq!(ffi::weft_last_error_code(), want, "{call}: {}", last_error());
    }
}

pub(super) fn last_error() -> String {
    let mut buf = [0u8; 256];
    ffi::weft_last_error(buf.as_mut_ptr().cast(), buf.len());
    CStr::from_bytes_until_nul(&buf).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

fn probe<'a>(user_data: *mut c_void) -> &'a Probe {
    // SAFETY: every user_data weft gets here is a Probe the model keeps alive until
    // its free_fn has run.
    unsafe { &*user_data.cast::<Probe>() }
}

pub(super) unsafe extern "C" fn on_free(user_data: *mut c_void) {
    let frees = probe(user_data).frees.fetch_add(1, SeqCst);
    assert_eq!(frees, 0, "a free_fn ran twice");
}

pub(super) unsafe extern "C" fn on_call(_: *mut weft_loop, id: weft_id, user_data: *mut c_void) {
    let index = probe(user_data).index;
    with_model(|m| m.called(index, id));
}

pub(super) unsafe extern "C" fn on_fd(_: *mut weft_loop, id: weft_id, fd: c_int, events: u32, user_data: *mut c_void) {
    let index = probe(user_data).index;
    with_model(|m| {
        let Kind::Watch { fd: watched, interest } = m.regs[index].kind else { panic!("an fd callback for {index}") };
        assert_eq!(fd, watched);
        let allowed = interest | ffi::WEFT_HANGUP | ffi::WEFT_ERROR;
        assert!(events != 0 && events & !allowed == 0, "events {events:#x} for interest {interest:#x}");
        assert!(m.regs[index].calls_this_run == 0, "an fd watch called twice in one pass");
        m.called(index, id);
    });
}

pub(super) unsafe extern "C" fn on_signal(_: *mut weft_loop, _: weft_id, signum: c_int, _: *mut c_void) {
    panic!("no signal is raised, yet a signal watch ran for {signum}");
}

pub(super) unsafe extern "C" fn on_event(
    _: *mut weft_loop,
    id: weft_id,
    topic: *const c_char,
    payload: *const c_void,
    len: usize,
    user_data: *mut c_void,
) {
    let index = probe(user_data).index;
    // SAFETY: weft passes a NUL-terminated topic and `len` bytes of payload.
    let topic = unsafe { CStr::from_ptr(topic) }.to_bytes().to_vec();
    let payload = unsafe { std::slice::from_raw_parts(payload.cast::<u8>(), len) }.to_vec();
    with_model(|m| {
        let Kind::Sub(pattern) = m.regs[index].kind else { panic!("an event callback for {index}") };
        let reference = reference_pattern(PATTERNS[pattern].to_bytes()).expect("a valid pattern");
        assert!(reference_matches(&reference, &topic), "{topic:?} delivered to {:?}", PATTERNS[pattern]);
        assert_eq!(payload.len(), 5);
        let number = u32::from_le_bytes([payload[1], payload[2], payload[3], payload[4]]);
        if payload[0] == b'D' {
            assert_eq!(TOPICS[m.emitted[number as usize].topic].to_bytes(), topic);
            let events = &mut m.regs[index].events;
            assert!(events.last().is_none_or(|&last| last < number), "event {number} after {events:?}");
            events.push(number);
        } else {
            // A task's event comes before its done, unless the task was cancelled or
            // timed out (its work goes on after its done).
            let task = &m.regs[number as usize];
            assert!(task.status.is_none() || task.cancelled || task.kind == (Kind::Task { timeout: true }));
        }
        m.called(index, id);
    });
}

pub(super) unsafe extern "C" fn on_done(
    _: *mut weft_loop,
    id: weft_id,
    status: c_int,
    result: *const u8,
    len: usize,
    user_data: *mut c_void,
) {
    let probe = probe(user_data);
    let result = if len == 0 { Vec::new() } else { unsafe { std::slice::from_raw_parts(result, len) }.to_vec() };
    with_model(|m| {
        let reg = &mut m.regs[probe.index];
        assert_eq!(reg.status, None, "done ran twice");
        let Kind::Task { timeout } = reg.kind else { panic!("done for {:?}", reg.kind) };
        let expected = if reg.cancelled {
            status == CANCELLED || (timeout && status == TIMEOUT)
        } else {
            status == probe.status || (timeout && status == TIMEOUT)
        };
        assert!(expected, "done got {status} (work returns {}, cancelled {})", probe.status, reg.cancelled);
        if status == probe.status {
            assert_eq!(probe.works.load(SeqCst), 1, "done before the work ran");
            assert_eq!(result, probe.result, "the task's result");
        } else {
            assert!(result.is_empty(), "a result with status {status}");
        }
        reg.status = Some(status);
        if status != probe.status {
            m.stray_records = true;
        }
        m.called(probe.index, id);
    });
}

pub(super) unsafe extern "C-unwind" fn work(task: *mut weft_task, user_data: *mut c_void) -> c_int {
    let probe = probe(user_data);
    assert_eq!(probe.works.fetch_add(1, SeqCst), 0, "a work ran twice");
    assert_eq!(ffi::weft_task_write(task, probe.result.as_ptr().cast(), probe.result.len()), OK);
    if let Some(topic) = probe.emit {
        let mut payload = [b'T', 0, 0, 0, 0];
        payload[1..].copy_from_slice(&(probe.index as u32).to_le_bytes());
        let rc = ffi::weft_task_emit(task, TOPICS[topic].as_ptr(), payload.as_ptr().cast(), payload.len());
        assert_eq!(rc, if topic < 5 { OK } else { INVALID });
    }
    let _ = ffi::weft_task_cancelled(task);
    probe.status
}

impl Model {
    pub(super) fn new(lp: *mut weft_loop, sockets: (OwnedFd, OwnedFd)) -> Model {
        Model {
            lp,
            other: std::ptr::null_mut(),
            fds: [sockets.0.as_raw_fd(), sockets.1.as_raw_fd()],
            _sockets: sockets,
            unread: [0; 2],
            shut: false,
            probes: Vec::new(),
            regs: Vec::new(),
            emitted: Vec::new(),
            pass_limit: 0,
            in_run: false,
            actions: 256,
            queued_in_run: false,
            queued: false,
            stray_records: false,
            early_wake: false,
            pool_tasks: false,
            fd_helper: false,
        }
    }

    /// A new record: its user data, to pass to the registration call.
    pub(super) fn probe(&mut self, kind: Kind, action: Action) -> *mut c_void {
        self.probe_task(kind, action, 0, Vec::new(), None)
    }

    pub(super) fn probe_task(
        &mut self,
        kind: Kind,
        action: Action,
        status: c_int,
        result: Vec<u8>,
        emit: Option<usize>,
    ) -> *mut c_void {
        let index = self.regs.len();
        let probe = Box::new(Probe { index, frees: AtomicU32::new(0), works: AtomicU32::new(0), status, result, emit });
        let user_data = &*probe as *const Probe as *mut c_void;
        self.probes.push(probe);
        self.regs.push(Reg {
            kind,
            id: 0,
            action,
            live: false,
            cancelled: false,
            before_run: false,
            running: false,
            calls: 0,
            calls_this_run: 0,
            events: Vec::new(),
            status: None,
        });
        user_data
    }

    /// The last record's registration call returned `id`.
    pub(super) fn registered(&mut self, id: weft_id) {
        let in_run = self.in_run;
        let reg = self.regs.last_mut().expect("a record");
        reg.id = id;
        reg.live = id != 0;
        if id != 0 && matches!(reg.kind, Kind::Post | Kind::Task { .. }) {
            self.queued = true;
            self.queued_in_run |= in_run;
        }
    }

    /// A callback of registration `index` runs.
    fn called(&mut self, index: usize, id: weft_id) {
        let reg = &mut self.regs[index];
        assert_eq!(id, reg.id, "a callback got another registration's id");
        assert_eq!(self.probes[index].frees.load(SeqCst), 0, "a callback after its free_fn");
        assert!(self.in_run, "a callback outside weft_loop_run");
        let task = matches!(reg.kind, Kind::Task { .. });
        assert!(!reg.cancelled || task, "{:?} called after weft_cancel returned WEFT_OK", reg.kind);
        assert!(reg.live, "{:?} called when it is over", reg.kind);
        reg.calls += 1;
        reg.calls_this_run += 1;
        if matches!(reg.kind, Kind::Post | Kind::After(_) | Kind::Task { .. }) {
            reg.live = false;
        }
        reg.running = true;
        let action = reg.action;
        self.act(index, action);
        self.regs[index].running = false;
    }

    /// What a callback does (at most `actions` times a sequence: callbacks that emit
    /// to subscriptions that emit would grow without end).
    fn act(&mut self, index: usize, action: Action) {
        if self.actions == 0 {
            return;
        }
        self.actions -= 1;
        match action {
            Action::Nothing => {}
            Action::CancelSelf => self.cancel(self.regs[index].id),
            Action::Cancel(other) => self.cancel(self.regs[other % self.regs.len()].id),
            Action::Emit(topic) => self.emit(topic),
            Action::Post => {
                let user_data = self.probe(Kind::Post, Action::Nothing);
                let id = ffi::weft_post(self.lp, Some(on_call), user_data, Some(on_free));
                expect_id(id, OK, "weft_post from a callback");
                self.registered(id);
            }
            Action::Reenter => {
                assert_eq!(ffi::weft_loop_run(self.lp, ffi::WEFT_RUN_NOWAIT), BUSY);
                ffi::weft_loop_free(self.lp);
                assert_eq!(ffi::weft_last_error_code(), BUSY, "weft_loop_free from a callback");
            }
            Action::Spawn(place) => {
                let user_data = self.probe_task(Kind::Task { timeout: false }, Action::Nothing, 3, vec![1, 2], None);
                let id = ffi::weft_spawn(
                    self.lp,
                    place,
                    Some(work),
                    Some(on_done),
                    user_data,
                    Some(on_free),
                    std::ptr::null(),
                );
                expect_id(id, OK, "weft_spawn from a callback");
                self.registered(id);
                self.pool_tasks |= place != ffi::WEFT_ON_LOOP;
            }
        }
    }

    /// Emits topic number `topic` from this thread.
    pub(super) fn emit(&mut self, topic: usize) {
        let number = self.emitted.len() as u32;
        let mut payload = [b'D', 0, 0, 0, 0];
        payload[1..].copy_from_slice(&number.to_le_bytes());
        let rc = ffi::weft_emit(self.lp, TOPICS[topic].as_ptr(), payload.as_ptr().cast(), payload.len());
        let valid = topic < 5;
        assert_eq!(rc, if valid { OK } else { INVALID }, "weft_emit({:?})", TOPICS[topic]);
        if valid {
            self.emitted.push(Emitted { topic, due: !self.in_run && self.pass_limit == 0 });
            self.queued = true;
            self.queued_in_run |= self.in_run;
        }
    }

    /// weft_cancel(loop, id), its result checked against the model where it is certain.
    pub(super) fn cancel(&mut self, id: weft_id) {
        let rc = ffi::weft_cancel(self.lp, id);
        assert!(rc == OK || rc == NOT_FOUND, "weft_cancel: {rc}: {}", last_error());
        let Some(index) = self.regs.iter().position(|r| r.id == id && id != 0 && r.kind != Kind::Foreign) else {
            assert_eq!(rc, NOT_FOUND, "weft_cancel of an id the loop never gave: {id:#x}");
            return;
        };
        let in_run = self.in_run;
        let reg = &mut self.regs[index];
        let certain = match reg.kind {
            // A one-shot callback cancelling itself; a task whose completion the pass
            // may have taken already.
            Kind::Post | Kind::After(_) => !reg.running,
            Kind::Task { .. } => !in_run || reg.cancelled || reg.status.is_some(),
            _ => true,
        };
        let live = reg.live && !reg.cancelled;
        if certain {
            assert_eq!(rc, if live { OK } else { NOT_FOUND }, "weft_cancel of {:?} (live {live})", reg.kind);
        }
        if rc != OK {
            return;
        }
        reg.cancelled = true;
        self.early_wake = true;
        match reg.kind {
            Kind::Task { .. } => self.stray_records = true,
            Kind::Post => self.queued = true, // a cancelled post may stay queued until a pass
            _ => {}
        }
        let reg = &mut self.regs[index];
        if !matches!(reg.kind, Kind::Task { .. }) {
            reg.live = false;
            // Not running: its free_fn runs now, on this thread.
            if !reg.running && !in_run {
                assert_eq!(self.probes[index].frees.load(SeqCst), 1, "free_fn after weft_cancel");
            }
        }
    }

    /// A run begins: what it must serve.
    pub(super) fn begin_run(&mut self) {
        self.in_run = true;
        // The pass's wait takes what rang before it; a cancel in a callback may ring again.
        self.early_wake = false;
        self.queued_in_run = false;
        for reg in &mut self.regs {
            reg.calls_this_run = 0;
            reg.before_run = reg.live && !reg.cancelled;
        }
    }

    /// A run of one pass ended: what was due before it must have happened.
    pub(super) fn end_run(&mut self) {
        self.in_run = false;
        // A completion that comes while the pass begins may ring after the pass's wait.
        self.early_wake |= self.regs.iter().any(|r| matches!(r.kind, Kind::Task { .. }) && (r.before_run || r.live));
        let full = self.pass_limit == 0;
        for (index, reg) in self.regs.iter().enumerate() {
            let served = reg.before_run && !reg.cancelled;
            match reg.kind {
                Kind::Post if served && full => assert_eq!(reg.calls, 1, "post {index} did not run in the pass"),
                Kind::After(true) if served => assert_eq!(reg.calls, 1, "timer {index} (0 ms) did not fire"),
                Kind::Watch { fd, interest } if served => {
                    let end = (fd == self.fds[1]) as usize;
                    let readable = self.unread[end] > 0 || end == 0 && self.shut;
                    let writable = end == 0 || !self.shut;
                    let ready = interest & ffi::WEFT_READABLE != 0 && readable
                        || interest & ffi::WEFT_WRITABLE != 0 && writable;
                    if ready && !(PORTABLE && self.fd_helper) {
                        assert_eq!(reg.calls_this_run, 1, "a ready fd watch ({index}) did not run in the pass");
                    }
                }
                Kind::Sub(pattern) if served && full => {
                    let reference = reference_pattern(PATTERNS[pattern].to_bytes()).expect("a valid pattern");
                    let missed = (self.emitted.iter().enumerate()).find(|(n, e)| {
                        e.due
                            && reference_matches(&reference, TOPICS[e.topic].to_bytes())
                            && !reg.events.contains(&(*n as u32))
                    });
                    assert!(
                        missed.is_none(),
                        "subscription {index} missed event {missed:?}",
                        missed = missed.map(|m| m.0)
                    );
                }
                _ => {}
            }
        }
        self.emitted.iter_mut().for_each(|e| e.due = false);
        if full {
            // What was queued before the pass was served; its callbacks may have queued more.
            self.queued = self.queued_in_run;
        }
    }

    /// Anything live, as far as the model knows.
    pub(super) fn anything_live(&self) -> bool {
        self.regs.iter().any(|r| r.kind != Kind::Foreign && r.live)
    }

    /// Checks weft_loop_alive and weft_loop_timeout_ms where the model knows the answer.
    pub(super) fn check_idle(&self) {
        let alive = ffi::weft_loop_alive(self.lp);
        let live = self.anything_live();
        if live {
            assert_eq!(alive, 1, "weft_loop_alive with live registrations");
        } else if !self.queued && !self.stray_records {
            assert_eq!(alive, 0, "weft_loop_alive with nothing registered or queued");
        }
        let timeout = ffi::weft_loop_timeout_ms(self.lp);
        let due_now = self.regs.iter().any(|r| r.live && !r.cancelled && r.kind == Kind::After(true));
        if due_now {
            assert_eq!(timeout, 0, "weft_loop_timeout_ms with a timer due now");
        }
        let timers = self.regs.iter().any(|r| r.live && matches!(r.kind, Kind::After(_) | Kind::Every));
        let watches = self.regs.iter().any(|r| r.live && matches!(r.kind, Kind::Watch { .. }));
        if !timers && !watches && !self.early_wake && !self.pool_tasks && !self.queued && !self.stray_records && !live {
            assert_eq!(timeout, -1, "weft_loop_timeout_ms with nothing scheduled");
        }
    }
}
