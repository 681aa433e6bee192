//! fd watches: readiness bits and the table of watchers per descriptor.
//!
//! A poller accepts one registration per descriptor, but weft lets any number of watches
//! share one: the table keeps the watchers of each fd, registers the union of their
//! interests (level-triggered), and the loop hands each watcher the part of a readiness
//! report it asked for, plus `HANGUP` and `ERROR`, which are always reported.
//!
//! The key a poller reports an fd under leads to its watchers: for an fd with one
//! watcher (the common case) it is that watch's id, which names its registration
//! directly (no lookup in the table, and a stale report fails the id's generation
//! check); for a shared fd it is [`SHARED_KEY`] with the fd's number, looked up here
//! ([`fd_key`]).

use crate::error::{Error, Result};
use crate::slots::Id;
use crate::sys;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::os::fd::RawFd;

// The readiness bits of the C API are the seam's (`crate::sys`): a report is handed on
// as the poller gives it.
pub(crate) const READABLE: u32 = sys::READABLE;
pub(crate) const WRITABLE: u32 = sys::WRITABLE;
pub(crate) const HANGUP: u32 = sys::HANGUP;
pub(crate) const ERROR: u32 = sys::ERROR;

/// The key of a watched fd shared by several watches, with the fd in the low 32 bits.
/// (The loop's own keys are below it; ids, whose top 12 bits are a loop's tag, above.)
pub(crate) const SHARED_KEY: u64 = 1 << 32;

/// The key the poller is to report a watched `fd` under: its watch's id when it has one
/// watcher, else [`SHARED_KEY`] with the fd.
pub(crate) fn fd_key(fds: &FdTable, fd: RawFd) -> u64 {
    match fds.watchers(fd) {
        [(id, _)] => *id,
        _ => SHARED_KEY | fd as u32 as u64,
    }
}

/// True for a key that is a watch's id (see [`fd_key`]).
pub(crate) fn is_watch_key(key: u64) -> bool {
    key >> crate::slots::TAG_SHIFT != 0
}

/// Checks an interest set given by a caller.
pub fn check_interest(interest: u32) -> Result<()> {
    if interest & !(READABLE | WRITABLE) != 0 {
        return Err(Error::invalid(format!(
            "interest {interest:#x} has bits other than WEFT_READABLE (1) and WEFT_WRITABLE (2)"
        )));
    }
    Ok(())
}

/// Checks that `fd` is an open descriptor.
pub fn check_fd(fd: RawFd) -> Result<()> {
    if fd < 0 {
        return Err(Error::invalid(format!("fd {fd} is not a valid descriptor")));
    }
    if !sys::fd_is_open(fd) {
        return Err(Error::invalid(format!("fd {fd} is not open")));
    }
    Ok(())
}

/// The poller interest for a watch `interest`: a reader also hears of a socket's peer
/// shutting down its writing half.
pub fn to_poller(interest: u32) -> u32 {
    let mut events = 0;
    if interest & READABLE != 0 {
        events |= sys::READABLE | sys::HANGUP;
    }
    if interest & WRITABLE != 0 {
        events |= sys::WRITABLE;
    }
    events
}

/// What one watcher with `interest` is told of a readiness report `events` (weft bits);
/// 0 means it is not told at all.
pub fn events_for(interest: u32, events: u32) -> u32 {
    events & (interest | HANGUP | ERROR)
}

/// The watchers (ids, with their interests) of each watched fd.
#[derive(Default)]
pub struct FdTable {
    fds: HashMap<RawFd, Vec<(Id, u32)>, BuildHasherDefault<FdHasher>>,
}

/// Hashes an fd with one multiplication. The table is looked up for every readiness
/// report, and std's default hasher (SipHash, built against hash flooding) cost about
/// as much as the rest of the dispatch of a report; fds are small numbers the kernel
/// hands out, not input an attacker picks.
#[derive(Default)]
struct FdHasher(u64);

impl Hasher for FdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_i32(&mut self, fd: i32) {
        // Fibonacci hashing: the high bits, which hashbrown uses, depend on every bit.
        self.0 = (fd as u32 as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl FdTable {
    pub fn watchers(&self, fd: RawFd) -> &[(Id, u32)] {
        self.fds.get(&fd).map_or(&[], |v| v)
    }

    /// The poller interest the fd needs for its current watchers (None: no watchers).
    fn union(&self, fd: RawFd) -> Option<u32> {
        self.fds.get(&fd).map(|w| to_poller(w.iter().fold(0, |acc, &(_, i)| acc | i)))
    }

    /// Every watched fd with the poller interest it needs.
    pub fn interests(&self) -> impl Iterator<Item = (RawFd, u32)> + '_ {
        self.fds.keys().map(|&fd| (fd, self.union(fd).unwrap_or(0)))
    }

    /// Adds or updates a watcher; returns the poller interest to register.
    pub fn set(&mut self, fd: RawFd, id: Id, interest: u32) -> u32 {
        let watchers = self.fds.entry(fd).or_default();
        match watchers.iter_mut().find(|(i, _)| *i == id) {
            Some(w) => w.1 = interest,
            None => watchers.push((id, interest)),
        }
        self.union(fd).unwrap_or(0)
    }

    /// Removes a watcher; returns the poller interest still needed (None: remove the fd).
    pub fn remove(&mut self, fd: RawFd, id: Id) -> Option<u32> {
        let watchers = self.fds.get_mut(&fd)?;
        watchers.retain(|&(i, _)| i != id);
        if watchers.is_empty() {
            self.fds.remove(&fd);
        }
        self.union(fd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_fds_register_the_union_and_filter_reports() {
        let mut table = FdTable::default();
        assert_eq!(table.set(5, 1, READABLE), to_poller(READABLE));
        assert_eq!(table.set(5, 2, WRITABLE), to_poller(READABLE | WRITABLE));
        assert_eq!(table.watchers(5).len(), 2);
        assert_eq!(fd_key(&table, 5), SHARED_KEY | 5);
        assert_eq!(fd_key(&table, 6), SHARED_KEY | 6);
        assert_eq!(table.remove(5, 1), Some(to_poller(WRITABLE)));
        assert_eq!(fd_key(&table, 5), 2);
        table.set(5, 1, READABLE);
        assert_eq!(table.remove(5, 1), Some(to_poller(WRITABLE)));
        assert_eq!(table.remove(5, 2), None);
        assert_eq!(events_for(WRITABLE, READABLE), 0);
        assert_eq!(events_for(WRITABLE, READABLE | WRITABLE | HANGUP), WRITABLE | HANGUP);
        assert!(check_interest(4).is_err() && check_interest(3).is_ok());
        assert!(check_fd(-1).is_err());
    }
}
