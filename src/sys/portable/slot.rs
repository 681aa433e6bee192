//! The waiter of a loop's current inner poller ([`WaitSlot`]), read once per pass and
//! replaced, rarely, when the loop replaces a polluted set.
//!
//! A read takes no lock and clones no `Arc` (a lock, an unlock, a reference count up
//! and down: four locked instructions a pass before this): the [`Events`] a thread
//! waits with keep the waiter they last waited with through the slot, and the slot's
//! generation then. A wait compares that generation with the slot's (an Acquire load)
//! and only when they differ takes the lock and a clone into the events.
//!
//! Both ends are the loop's: `load` in a pass, before its wait, and `store` when a pass
//! replaces a polluted set (`Loop::replace_inner_set`), on the thread running the loop.
//! So a wait never overlaps a store, and no other thread reads the slot (the helper of
//! `outer.rs` keeps a waiter of its own): the generation is not a lock-free protocol
//! between threads (no loom model), and its Release/Acquire pair only keeps a thread
//! that runs the loop after another from reading a stale generation with a stale waiter.
//! `store` replaces the waiter, then advances the generation, both under the lock; a
//! wait that reads a generation takes, if it has none of it, the waiter under the lock:
//! that generation's or a newer one. Events that kept an old waiter keep its poller
//! open until their next wait through the slot, or until they are dropped.

use super::{lock, Events, Waiter};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use std::sync::Mutex;

/// The waiter of a loop's current inner poller.
pub struct WaitSlot {
    waiter: Mutex<Waiter>,
    /// How many times `waiter` was replaced.
    generation: AtomicU64,
}

/// A read of a [`WaitSlot`]: what a wait through the slot goes through.
pub struct SlotWaiter<'a>(&'a WaitSlot);

impl WaitSlot {
    pub fn new(waiter: Waiter) -> WaitSlot {
        WaitSlot { waiter: Mutex::new(waiter), generation: AtomicU64::new(0) }
    }

    #[inline]
    pub fn load(&self) -> SlotWaiter<'_> {
        SlotWaiter(self)
    }

    pub fn store(&self, waiter: Waiter) {
        let mut current = lock(&self.waiter);
        *current = waiter;
        // Under the lock: stores do not cross, and each advances the generation by one.
        self.generation.store(self.generation.load(Relaxed) + 1, Release);
    }
}

impl SlotWaiter<'_> {
    /// [`Waiter::wait`] with the slot's current waiter.
    #[inline]
    pub fn wait(self, events: &mut Events, block: bool) -> io::Result<()> {
        let generation = self.0.generation.load(Acquire);
        let waiter = match events.slot_waiter.take() {
            Some((seen, waiter)) if seen == generation => waiter,
            // A first wait, or the slot was replaced since: (at least) the waiter of
            // `generation`, under the lock.
            _ => lock(&self.0.waiter).clone(),
        };
        let result = waiter.wait(events, block);
        events.slot_waiter = Some((generation, waiter));
        result
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ring, Bell, Poller, READABLE};
    use super::*;
    use std::os::fd::AsRawFd;

    /// Waits through the slot use the waiter stored last: a bell added to the new
    /// poller alone is reported once the slot holds it, and no longer once it holds the
    /// old one again.
    #[test]
    #[cfg_attr(miri, ignore = "poll(2), epoll and pipes are not emulated")]
    fn a_wait_follows_the_waiter_stored_last() {
        let (old, new) = (Poller::new().unwrap(), Poller::new().unwrap());
        let bell = Bell::new().unwrap();
        new.add(bell.as_raw_fd(), READABLE, 7).unwrap();
        ring(bell.ring_fd());
        let slot = WaitSlot::new(old.waiter());
        let mut events = Events::with_capacity(8);
        let keys = |slot: &WaitSlot, events: &mut Events| {
            slot.load().wait(events, false).unwrap();
            events.iter().map(|e| e.key()).collect::<Vec<u64>>()
        };
        assert_eq!(keys(&slot, &mut events), [0u64; 0]);
        assert_eq!(keys(&slot, &mut events), [0u64; 0]); // the kept waiter
        slot.store(new.waiter());
        assert_eq!(keys(&slot, &mut events), [7]);
        slot.store(old.waiter());
        assert_eq!(keys(&slot, &mut events), [0u64; 0]);
        drop(bell);
    }

    /// The loop's events leave a bell they report rung until `drain_bells` (bell.rs):
    /// every wait reports it until then, none after; other events drain it at once.
    #[test]
    #[cfg_attr(miri, ignore = "poll(2), epoll and eventfds are not emulated")]
    fn deferring_events_leave_a_bell_rung_until_drained() {
        use crate::sys::EDGE;
        let poller = Poller::new().unwrap();
        let bell = Bell::new().unwrap();
        poller.add(bell.as_raw_fd(), READABLE | EDGE, 7).unwrap();
        let slot = WaitSlot::new(poller.waiter());
        let keys = |events: &mut Events| {
            slot.load().wait(events, false).unwrap();
            events.iter().map(|e| e.key()).collect::<Vec<u64>>()
        };
        let mut deferring = Events::with_capacity(8).deferring_bells();
        ring(bell.ring_fd());
        assert_eq!(keys(&mut deferring), [7]);
        assert_eq!(keys(&mut deferring), [7]);
        deferring.drain_bells();
        assert_eq!(keys(&mut deferring), [0u64; 0]);
        let mut plain = Events::with_capacity(8);
        ring(bell.ring_fd());
        assert_eq!(keys(&mut plain), [7]);
        assert_eq!(keys(&mut plain), [0u64; 0]);
    }
}
