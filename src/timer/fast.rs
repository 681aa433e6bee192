//! The owner's common case as a straight line: a one-shot timer whose handler packs
//! (C's without a `free_fn`), scheduled into a record that needs no new chunk, and
//! cancelled while ARMED with the owner's plain stores (`table.rs`). Nothing here is a
//! protocol of its own: [`schedule_packed`](Table::schedule_packed) writes a record as
//! `schedule` does, and [`cancel_packed`](Table::cancel_packed) frees one through the
//! same `free_matching` as `cancel_owned`. Each answers "not here" (None, false)
//! before it changes anything, and the caller then takes the general path, which
//! settles every other case (a new chunk, a full table, a handler with an end, a timer
//! not ARMED, the budget's look at stale entries, a generation's last use).
//!
//! What the straight line saves is instructions, and the instructions are the cost: a
//! cancel misses the cache on its record, and the fewer instructions a call takes,
//! the more calls the CPU has in flight at once, their misses overlapping.

use super::{generation_of, state, OwnTimers, Pack, Record, Table, ARMED, FREE, GEN_MASK, PACKED};
use crate::sync::atomic::AtomicU32;
use crate::sync::atomic::Ordering::{Relaxed, Release};
use crate::sync::UnsafeCell;
use std::mem::MaybeUninit;

impl<H: Pack> Table<H> {
    /// Schedules a one-shot timer whose handler is `words` (`Pack::pack` of a handler
    /// since forgotten): (index, generation), or None when the general path must
    /// (a new chunk, or the table is full; nothing is changed then). Owner.
    #[inline(always)]
    pub fn schedule_packed(&self, own: &mut OwnTimers, words: [usize; 2]) -> Option<(u32, u32)> {
        if let Some(&index) = own.free.last() {
            own.free.pop();
            let (record, packed, _) = self.chunks.owned_ptrs(index);
            // SAFETY: a FREE record of the owner's: nobody else touches its handler;
            // its state is the owner's to read.
            unsafe {
                let generation = generation_of((*record).state.load(Relaxed));
                (*packed).with_mut(|p| (*p).write(words));
                // Release: a canceller's Acquire claim sees the words (as `schedule`).
                (*record).state.store(state(generation, ARMED) | PACKED, Release);
                own.live += 1;
                return Some((index, generation));
            }
        }
        let index = self.chunks.count.load(Relaxed);
        if index >= own.fresh_end {
            return None;
        }
        let (record, packed, _) = self.chunks.owned_ptrs(index);
        // SAFETY: within a chunk made (`fresh_end`); not yet visible to any other
        // thread (`count`), published by the Release store of `count` (as
        // `schedule_new`). Under loom the body is written too (loom's cells are
        // tracked), as `schedule_new` does.
        unsafe {
            packed.write(UnsafeCell::new(MaybeUninit::new(words)));
            #[cfg(loom)]
            {
                let (_, _, body) = self.chunks.owned_ptrs(index);
                body.write(super::Body {
                    interval_ns: UnsafeCell::new(0),
                    handler: UnsafeCell::new(MaybeUninit::uninit()),
                });
            }
            record.write(Record { state: AtomicU32::new(state(1, ARMED) | PACKED) });
        }
        self.chunks.count.store(index + 1, Release);
        own.live += 1;
        Some((index, 1))
    }

    /// Cancels timer (index, generation) as the owner if it is an ARMED one-shot timer
    /// whose handler is packed (so there is nothing to drop) and the cancel needs no
    /// look at stale entries: true when it ended it; false, with nothing changed, when
    /// the general path ([`cancel_owned`](Table::cancel_owned)) must answer.
    #[inline(always)]
    pub fn cancel_packed(&self, own: &mut OwnTimers, index: u32, generation: u32) -> bool {
        // The last generation retires the record; budget 1 looks at stale entries.
        if index >= self.chunks.count.load(Relaxed) || generation >= GEN_MASK || own.budget <= 1 {
            return false;
        }
        // The free stack's room, so that nothing here calls (to grow it).
        let Some(slot) = own.free.spare_capacity_mut().first_mut() else { return false };
        let record = self.owned(index);
        let armed = state(generation, ARMED) | PACKED;
        if self.free_matching(record, index, armed, !0, state(generation + 1, FREE)).is_none() {
            return false;
        }
        slot.write(index);
        // SAFETY: the element after the stack's last, within its capacity, written.
        unsafe { own.free.set_len(own.free.len() + 1) };
        own.live -= 1;
        own.budget -= 1;
        true
    }
}
