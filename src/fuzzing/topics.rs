//! Topic patterns and topics against a reference written from the documented rules: a
//! topic is a non-empty string without '*'; a pattern is a topic (exact), a topic
//! followed by ".*" (every topic that starts with that topic and a '.'), or "*".
//!
//! The input: a byte saying how many of the items are patterns (at most 4), then items
//! separated by 0xff (never a byte of UTF-8): the patterns, then the topics (at most
//! 12). Each is checked three ways: `bus::Pattern` and `bus::check_topic`; the
//! subscriber index, `bus::Index`; and the C ABI, where `weft_subscribe` and `weft_emit`
//! see the bytes up to the first NUL, as C strings, and a pass of the loop delivers
//! each event to the subscriptions the reference says it matches, in emit order.

use super::Input;
use crate::bus::{check_topic, Index, Pattern};
use crate::ffi::{self, weft_id, weft_loop, weft_result};
use std::cell::RefCell;
use std::ffi::{c_char, c_void, CString};

/// A topic, by the rules as documented.
fn reference_topic(topic: &[u8]) -> bool {
    std::str::from_utf8(topic).is_ok() && !topic.is_empty() && !topic.contains(&b'*')
}

/// What a valid pattern accepts.
#[derive(Debug)]
pub(super) enum Reference {
    Every,
    Exact(Vec<u8>),
    /// The topic before ".*".
    Under(Vec<u8>),
}

pub(super) fn reference_pattern(pattern: &[u8]) -> Option<Reference> {
    if pattern == b"*" {
        return Some(Reference::Every);
    }
    if reference_topic(pattern) {
        return Some(Reference::Exact(pattern.to_vec()));
    }
    let under = pattern.strip_suffix(b".*")?;
    reference_topic(under).then(|| Reference::Under(under.to_vec()))
}

pub(super) fn reference_matches(pattern: &Reference, topic: &[u8]) -> bool {
    match pattern {
        Reference::Every => true,
        Reference::Exact(exact) => topic == exact,
        Reference::Under(under) => {
            topic.len() > under.len() && topic[..under.len()] == under[..] && topic[under.len()] == b'.'
        }
    }
}

/// What C sees of a byte string: the bytes before the first NUL.
fn as_c(bytes: &[u8]) -> CString {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    CString::new(&bytes[..end]).expect("no NUL before the end")
}

/// One subscription's log: the indices of the topics it received.
type Log = RefCell<Vec<u32>>;

unsafe extern "C" fn on_event(
    _: *mut weft_loop,
    _: weft_id,
    _: *const c_char,
    payload: *const c_void,
    len: usize,
    user_data: *mut c_void,
) {
    assert_eq!(len, 4);
    // SAFETY: weft passes the 4 bytes emitted below; `user_data` is a live `Log`.
    let index = u32::from_le_bytes(unsafe { *payload.cast::<[u8; 4]>() });
    unsafe { &*user_data.cast::<Log>() }.borrow_mut().push(index);
}

unsafe extern "C" fn count_free(user_data: *mut c_void) {
    // SAFETY: a live `Log`; u32::MAX marks its free.
    unsafe { &*user_data.cast::<Log>() }.borrow_mut().push(u32::MAX);
}

thread_local! {
    /// One loop per thread, kept for every input: a new loop per input would cost more
    /// than the checks. Each input leaves it as it found it (nothing registered).
    static LOOP: *mut weft_loop = ffi::weft_loop_new();
}

/// Checks the patterns and topics the bytes hold; panics on a difference.
pub fn topics(data: &[u8]) {
    let mut input = Input::new(data);
    let patterns = (input.u8() % 5) as usize;
    let items: Vec<&[u8]> = input.rest().split(|&b| b == 0xff).take(patterns + 12).collect();
    let (patterns, topics) = items.split_at(patterns.min(items.len()));

    let mut index = Index::default();
    let mut parsed = Vec::new();
    for (i, pattern) in patterns.iter().enumerate() {
        let want = reference_pattern(pattern);
        let got = std::str::from_utf8(pattern).ok().and_then(|p| Pattern::parse(p).ok());
        assert_eq!(got.is_some(), want.is_some(), "pattern {pattern:?}: parsed {got:?}, reference {want:?}");
        if let (Some(got), Some(want)) = (got, want) {
            index.add(&got, i as u32);
            parsed.push((i as u32, got, want));
        }
    }
    for topic in topics {
        let valid = reference_topic(topic);
        let text = std::str::from_utf8(topic).ok();
        assert_eq!(text.is_some_and(|t| check_topic(t).is_ok()), valid, "topic {topic:?}");
        let Some(text) = text.filter(|_| valid) else { continue };
        let mut want = Vec::new();
        for (i, pattern, reference) in &parsed {
            let matches = reference_matches(reference, topic);
            assert_eq!(pattern.matches(text), matches, "pattern {pattern:?}, topic {text:?}");
            if matches {
                want.push(*i);
            }
        }
        let mut got = Vec::new();
        index.lookup(text, &mut got);
        got.sort_unstable();
        assert_eq!(got, want, "the index's subscribers of {text:?}");
    }
    LOOP.with(|&lp| through_the_abi(lp, patterns, topics));
}

/// Subscribes the patterns and emits the topics through the C ABI, runs one pass, and
/// checks who got what; then cancels every subscription.
fn through_the_abi(lp: *mut weft_loop, patterns: &[&[u8]], topics: &[&[u8]]) {
    assert!(!lp.is_null(), "weft_loop_new failed");
    let patterns: Vec<CString> = patterns.iter().map(|p| as_c(p)).collect();
    let topics: Vec<CString> = topics.iter().map(|t| as_c(t)).collect();
    let logs: Vec<Box<Log>> = patterns.iter().map(|_| Box::default()).collect();
    let mut subs = Vec::new();
    for (pattern, log) in patterns.iter().zip(&logs) {
        let user_data = &**log as *const Log as *mut c_void;
        let id = ffi::weft_subscribe(lp, pattern.as_ptr(), Some(on_event), user_data, Some(count_free));
        let valid = reference_pattern(pattern.as_bytes()).is_some();
        assert_eq!(id != 0, valid, "weft_subscribe({pattern:?})");
        if !valid {
            assert_eq!(ffi::weft_last_error_code(), weft_result::WEFT_ERR_INVALID as i32);
        }
        subs.push(id);
    }
    for (i, topic) in topics.iter().enumerate() {
        let payload = (i as u32).to_le_bytes();
        let rc = ffi::weft_emit(lp, topic.as_ptr(), payload.as_ptr().cast(), payload.len());
        let want = if reference_topic(topic.as_bytes()) { 0 } else { weft_result::WEFT_ERR_INVALID as i32 };
        assert_eq!(rc, want, "weft_emit({topic:?})");
    }
    assert_eq!(ffi::weft_loop_run(lp, ffi::WEFT_RUN_NOWAIT), 0);
    for ((pattern, log), &id) in patterns.iter().zip(&logs).zip(&subs) {
        let want: Vec<u32> = match reference_pattern(pattern.as_bytes()) {
            Some(reference) => (topics.iter().enumerate())
                .filter(|(_, t)| reference_topic(t.as_bytes()) && reference_matches(&reference, t.as_bytes()))
                .map(|(i, _)| i as u32)
                .collect(),
            None => Vec::new(),
        };
        assert_eq!(*log.borrow(), want, "what the subscription to {pattern:?} received");
        if id != 0 {
            assert_eq!(ffi::weft_cancel(lp, id), 0);
            assert_eq!(log.borrow().last(), Some(&u32::MAX), "free_fn ran on cancel");
            assert_eq!(ffi::weft_cancel(lp, id), weft_result::WEFT_ERR_NOT_FOUND as i32);
        }
    }
    for log in &logs {
        assert!(log.borrow().iter().filter(|&&i| i == u32::MAX).count() <= 1, "a free_fn ran twice");
    }
    assert_eq!(ffi::weft_loop_alive(lp), 0, "the loop is idle after the pass and the cancels");
}
