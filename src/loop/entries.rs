//! The loop's registrations: the slab of entries, and how many it holds, published for
//! [`Loop::alive`](super::Loop::alive) to read without the core lock (`run(Default)`
//! asks before every pass; a lock there was a fifth of the core locks of an fd pass),
//! and how many of each kind, for the loop's statistics (kept as each entry comes and
//! goes: a scan of a million subscriptions under the lock would stall the loop).

use super::{Entry, Handler, Kind};
use crate::slots::{Id, Slab};
use std::sync::atomic::{AtomicUsize, Ordering::Release};
use std::sync::Arc;

/// The registrations: a slab, and how many it holds, published for `alive` to read
/// without the core lock (`run(Default)` asks before every pass). Reads go to the slab
/// (`Deref`); the two calls that change the count are this type's own.
pub(super) struct Entries<H: Handler> {
    slab: Slab<Entry<H>>,
    len: Arc<AtomicUsize>,
    /// How many entries of each kind ([`kind_index`]) the slab holds.
    by_kind: [usize; KINDS],
}

/// The number of [`Kind`]s.
const KINDS: usize = 7;

/// Where `Entries::by_kind` counts a kind.
fn kind_index<H: Handler>(kind: &Kind<H>) -> usize {
    match kind {
        Kind::Timer { .. } => 0,
        Kind::Fd { .. } => 1,
        Kind::Signal { .. } => 2,
        Kind::Subscription { .. } => 3,
        Kind::Task(_) => 4,
        Kind::Process(_) => 5,
        Kind::Reserved => 6,
    }
}

/// How many registrations of each kind a loop's slab holds.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Counts {
    pub timers: usize,
    pub fds: usize,
    pub signals: usize,
    pub subscriptions: usize,
    pub tasks: usize,
    pub processes: usize,
}

impl<H: Handler> std::ops::Deref for Entries<H> {
    type Target = Slab<Entry<H>>;
    fn deref(&self) -> &Slab<Entry<H>> {
        &self.slab
    }
}

impl<H: Handler> std::ops::DerefMut for Entries<H> {
    fn deref_mut(&mut self) -> &mut Slab<Entry<H>> {
        &mut self.slab
    }
}

impl<H: Handler> Entries<H> {
    /// An empty slab of loop `tag`; `len` is where its count is published.
    pub(super) fn new(tag: u16, len: Arc<AtomicUsize>) -> Entries<H> {
        Entries { slab: Slab::new(tag), len, by_kind: [0; KINDS] }
    }

    pub(super) fn insert(&mut self, make: impl FnOnce(u32) -> Entry<H>) -> Option<(Id, u32)> {
        let inserted = self.slab.insert(make);
        self.len.store(self.slab.len(), Release);
        if let Some((_, index)) = inserted {
            self.by_kind[kind_index(&self.slab.at(index).kind)] += 1;
        }
        inserted
    }

    pub(super) fn remove_at(&mut self, index: u32) -> Entry<H> {
        let entry = self.slab.remove_at(index);
        self.len.store(self.slab.len(), Release);
        self.by_kind[kind_index(&entry.kind)] -= 1;
        entry
    }

    /// Gives a reserved entry its kind.
    pub(super) fn set_kind(&mut self, index: u32, kind: Kind<H>) {
        let entry = self.slab.at_mut(index);
        self.by_kind[kind_index(&entry.kind)] -= 1;
        self.by_kind[kind_index(&kind)] += 1;
        entry.kind = kind;
    }

    /// How many entries of each kind there are (a reserved one is of none yet).
    pub(super) fn counts(&self) -> Counts {
        let [timers, fds, signals, subscriptions, tasks, processes, _] = self.by_kind;
        Counts { timers, fds, signals, subscriptions, tasks, processes }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{task, Event, Loop};
    use super::*;

    /// A handler the size of the C layer's (function, user data, free function).
    struct ThreeWords(#[allow(dead_code)] [usize; 2], #[allow(dead_code)] fn());
    impl Handler for ThreeWords {
        type Work = task::BoxedWork<Self>;
        fn call(&mut self, _: &Loop<Self>, _: Id, _: Event<'_>) {}
    }

    #[test]
    fn a_registration_costs_48_bytes() {
        // With the wheel's 12-byte link and 4-byte slot entry, a pending timer costs 64.
        const { assert!(Slab::<Entry<ThreeWords>>::SLOT_BYTES <= 48) };
    }
}
