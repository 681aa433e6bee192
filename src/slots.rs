//! Registration ids and the slab that holds registrations.
//!
//! An id is a `u64` made of the owning loop's tag, a kind, a generation and an index
//! (the slotmap idea): a stale id (its slot was freed and perhaps reused), a forged one
//! or another loop's one fails the generation or tag check and gives `NotFound`; it can
//! never reach memory that was freed.
//!
//! ```text
//!  63        52 51  50 49          24 23         0
//! ┌────────────┬──────┬──────────────┬────────────┐
//! │ loop tag   │ kind │  generation  │   index    │   slot (00), timer (01), task (11)
//! ├────────────┼──────┼──────────────┴────────────┤
//! │ loop tag   │  10  │         sequence          │   post ids
//! └────────────┴──────┴───────────────────────────┘
//! ```
//!
//! The kind says what the rest means: `00` a registration in the loop's slab (timers,
//! watches, subscriptions, tasks spawned from other threads); `10` a post, numbered in
//! queue order; `11` a task the loop spawned from its own thread, in its task table
//! (see `crate::task::Table`); `01` a timer the loop's owner scheduled, in its timer
//! table (see `crate::timer::Table`). Generations are 26 bits.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Mutex;

pub type Id = u64;

const INDEX_BITS: u32 = 24;
const GEN_BITS: u32 = 26;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
const GEN_MASK: u64 = (1 << GEN_BITS) - 1;
/// Generations of task ids (a task id is checked against its cell's current id).
pub(crate) const TASK_GEN_MASK: u32 = GEN_MASK as u32;
const KIND_SHIFT: u32 = INDEX_BITS + GEN_BITS;
const KIND_MASK: u64 = 0b11 << KIND_SHIFT;
/// The kinds (bits 51..50).
const SLOT: u64 = 0b00 << KIND_SHIFT;
const TIMER: u64 = 0b01 << KIND_SHIFT;
const POST: u64 = 0b10 << KIND_SHIFT;
const TASK: u64 = 0b11 << KIND_SHIFT;
const SEQ_MASK: u64 = (1 << KIND_SHIFT) - 1;
pub(crate) const TAG_SHIFT: u32 = 52;

/// Most registrations one loop holds at once.
pub(crate) const MAX_SLOTS: usize = 1 << INDEX_BITS;

/// Tags of live loops: a bit each, so no two live loops share a tag and one loop's id
/// can never name a registration of another.
static TAGS: Mutex<[u64; 64]> = Mutex::new([0; 64]);

/// Reserves a tag (1..=4095) for a new loop; None when 4095 loops are alive.
pub fn new_tag() -> Option<u16> {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let mut tags = TAGS.lock().unwrap_or_else(|p| p.into_inner());
    // Start after the last tag handed out, so a freed loop's ids stay foreign for as
    // long as possible.
    let start = NEXT.load(Ordering::Relaxed);
    for step in 0..4095u16 {
        let tag = (start + step) % 4095 + 1;
        let (word, bit) = (tag as usize / 64, tag % 64);
        if tags[word] & (1 << bit) == 0 {
            tags[word] |= 1 << bit;
            NEXT.store(tag, Ordering::Relaxed);
            return Some(tag);
        }
    }
    None
}

/// Gives a loop's tag back.
pub fn release_tag(tag: u16) {
    let mut tags = TAGS.lock().unwrap_or_else(|p| p.into_inner());
    tags[tag as usize / 64] &= !(1 << (tag % 64));
}

/// What an id refers to, once the tag has been checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdKind {
    Slot { index: u32, generation: u32 },
    Post { seq: u64 },
    Task { index: u32, generation: u32 },
    Timer { index: u32, generation: u32 },
}

pub fn decode(tag: u16, id: Id) -> Option<IdKind> {
    if id >> TAG_SHIFT != tag as u64 {
        return None;
    }
    let index = (id & INDEX_MASK) as u32;
    let generation = ((id >> INDEX_BITS) & GEN_MASK) as u32;
    match id & KIND_MASK {
        SLOT => Some(IdKind::Slot { index, generation }),
        POST => Some(IdKind::Post { seq: id & SEQ_MASK }),
        TASK => Some(IdKind::Task { index, generation }),
        _ => Some(IdKind::Timer { index, generation }),
    }
}

/// The id of the owner's timer in record `index` of its loop's timer table.
pub fn timer_id(tag: u16, index: u32, generation: u32) -> Id {
    (tag as u64) << TAG_SHIFT | TIMER | ((generation & TASK_GEN_MASK) as u64) << INDEX_BITS | index as u64
}

/// True when `id` (of any loop) is of an owner's timer.
#[inline]
pub fn is_timer(id: Id) -> bool {
    id & KIND_MASK == TIMER
}

/// True when `id` is of an owner's timer of the loop tagged `tag` (one compare).
#[inline]
pub fn is_timer_of(tag: u16, id: Id) -> bool {
    id >> KIND_SHIFT == ((tag as u64) << TAG_SHIFT | TIMER) >> KIND_SHIFT
}

/// The record index and generation of an owner's timer's id.
#[inline]
pub fn timer_parts(id: Id) -> (u32, u32) {
    ((id & INDEX_MASK) as u32, ((id >> INDEX_BITS) & GEN_MASK) as u32)
}

pub fn post_id(tag: u16, seq: u64) -> Id {
    (tag as u64) << TAG_SHIFT | POST | (seq & SEQ_MASK)
}

/// A task id without its loop's tag (so it matches no id): what a task table cell
/// holds between tasks. Give it the tag with [`tagged`].
pub fn untagged_task_id(index: u32, generation: u32) -> Id {
    TASK | ((generation & TASK_GEN_MASK) as u64) << INDEX_BITS | index as u64
}

pub fn tagged(tag: u16, untagged: Id) -> Id {
    (tag as u64) << TAG_SHIFT | untagged
}

/// The untagged id of the next task after `id`'s in the same cell; None once the
/// generations are used up: the cell is then retired, never reused, so that an id
/// 2^26 tasks old cannot name a new task.
pub fn next_task_id(id: Id) -> Option<Id> {
    let generation = ((id >> INDEX_BITS) as u32 & TASK_GEN_MASK) + 1;
    (generation <= TASK_GEN_MASK).then(|| untagged_task_id((id & INDEX_MASK) as u32, generation))
}

/// True for the id of a task in a loop's task table (tagged or not).
pub fn is_task_id(id: Id) -> bool {
    id & KIND_MASK == TASK
}

/// The index in a task id.
pub fn task_index(id: Id) -> u32 {
    (id & INDEX_MASK) as u32
}

/// The generation in a task id.
pub fn task_generation(id: Id) -> u32 {
    (id >> INDEX_BITS) as u32 & TASK_GEN_MASK
}

fn slot_id(tag: u16, index: u32, generation: u32) -> Id {
    (tag as u64) << TAG_SHIFT | SLOT | (generation as u64) << INDEX_BITS | index as u64
}

/// A value that carries its own slot generation, so that a live slot costs no more than
/// its value (the generation sits in the value's padding).
pub trait Generational {
    fn generation(&self) -> u32;
}

enum Slot<T> {
    Free { next_free: u32, generation: u32 },
    Live(T),
}

impl<T: Generational> Slot<T> {
    fn generation(&self) -> u32 {
        match self {
            Slot::Free { generation, .. } => *generation,
            Slot::Live(value) => value.generation(),
        }
    }
}

/// A slab of `T` addressed by generation-checked ids.
pub struct Slab<T> {
    tag: u16,
    slots: Vec<Slot<T>>,
    free_head: u32,
    len: usize,
    /// The generation of slots pushed anew: above every generation ever issued at an
    /// index that [`Slab::compact`] cut off, so an id of a slot cut off never names a
    /// slot pushed again at its index.
    tail_generation: u32,
    /// Removes since the last compaction attempt (which costs a walk of the slots).
    removes: usize,
}

const NIL: u32 = u32::MAX;

impl<T: Generational> Slab<T> {
    pub fn new(tag: u16) -> Slab<T> {
        Slab { tag, slots: Vec::new(), free_head: NIL, len: 0, tail_generation: 1, removes: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores the value `make(generation)` builds; None when the slab is full.
    pub fn insert(&mut self, make: impl FnOnce(u32) -> T) -> Option<(Id, u32)> {
        let index = if self.free_head != NIL {
            let index = self.free_head;
            let Slot::Free { next_free, generation } = self.slots[index as usize] else {
                unreachable!("free list points at a live slot")
            };
            self.free_head = next_free;
            self.slots[index as usize] = Slot::Live(make(generation));
            index
        } else {
            if self.slots.len() >= MAX_SLOTS {
                return None;
            }
            self.slots.push(Slot::Live(make(self.tail_generation)));
            (self.slots.len() - 1) as u32
        };
        self.len += 1;
        Some((self.id_of(index), index))
    }

    /// The id of the live slot at `index`.
    pub fn id_of(&self, index: u32) -> Id {
        match &self.slots[index as usize] {
            Slot::Live(value) => slot_id(self.tag, index, value.generation()),
            Slot::Free { .. } => 0,
        }
    }

    /// The slot index `id` names, if it is live.
    pub fn index(&self, id: Id) -> Option<u32> {
        let Some(IdKind::Slot { index, generation }) = decode(self.tag, id) else {
            return None;
        };
        match self.slots.get(index as usize) {
            Some(slot @ Slot::Live(_)) if slot.generation() == generation => Some(index),
            _ => None,
        }
    }

    pub fn get(&self, id: Id) -> Option<&T> {
        self.index(id).map(|i| self.at(i))
    }

    pub fn get_mut(&mut self, id: Id) -> Option<&mut T> {
        self.index(id).map(|i| self.at_mut(i))
    }

    /// The live value at `index` (an index from this slab).
    pub fn at(&self, index: u32) -> &T {
        match &self.slots[index as usize] {
            Slot::Live(value) => value,
            Slot::Free { .. } => panic!("slot {index} is free"),
        }
    }

    pub fn at_mut(&mut self, index: u32) -> &mut T {
        match &mut self.slots[index as usize] {
            Slot::Live(value) => value,
            Slot::Free { .. } => panic!("slot {index} is free"),
        }
    }

    /// Frees the slot at `index` and returns its value; its id goes stale.
    pub fn remove_at(&mut self, index: u32) -> T {
        let slot = &self.slots[index as usize];
        assert!(matches!(slot, Slot::Live(_)), "slot {index} is free");
        let next = (slot.generation() + 1) & GEN_MASK as u32;
        // A slot whose generation would wrap is retired, never reused: otherwise an id
        // 2^26 reuses old could name a new registration.
        let retire = next == 0;
        let free = Slot::Free { next_free: if retire { NIL } else { self.free_head }, generation: next.max(1) };
        let Slot::Live(value) = std::mem::replace(&mut self.slots[index as usize], free) else { unreachable!() };
        if !retire {
            self.free_head = index;
        }
        self.len -= 1;
        self.removes += 1;
        // After a burst, give the free slots at the end back: when under a quarter of
        // the slots are live and the last one is free (not retired), at most once per
        // sixteenth of them removed (so the walk costs O(1) per remove).
        if crate::shrink::wanted(self.slots.len(), self.len)
            && self.removes >= self.slots.len() / 16
            && matches!(self.slots.last(), Some(Slot::Free { generation, .. }) if *generation != 1)
        {
            self.compact();
        }
        value
    }

    /// The number of slots (live or free): every index of the slab is below it.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Cuts off the free slots at the end (not retired ones: their generations are used
    /// up), shrinks the memory to fit, and rebuilds the free list lowest index first, so
    /// that new registrations fill the front and the end can be cut off next time.
    #[cold]
    fn compact(&mut self) {
        self.removes = 0;
        // A free slot of generation 1 is a retired one (see `remove_at`): a slot is first
        // live with a generation of at least 1, and freeing it adds one unless that wraps.
        while let Some(&Slot::Free { generation, .. }) = self.slots.last() {
            if generation == 1 {
                break;
            }
            self.tail_generation = self.tail_generation.max(generation);
            self.slots.pop();
        }
        crate::shrink::vec(&mut self.slots, self.len);
        self.free_head = NIL;
        for index in (0..self.slots.len()).rev() {
            if let Slot::Free { next_free, generation } = &mut self.slots[index] {
                // A retired slot (its generation wrapped) stays out of the list.
                if *generation != 1 {
                    *next_free = self.free_head;
                    self.free_head = index as u32;
                }
            }
        }
    }

    /// True if the slot at `index` holds a live value.
    pub fn is_live(&self, index: u32) -> bool {
        matches!(self.slots.get(index as usize), Some(Slot::Live(_)))
    }

    /// The indices of every live slot.
    pub fn live_indices(&self) -> Vec<u32> {
        (0..self.slots.len() as u32).filter(|&i| matches!(self.slots[i as usize], Slot::Live(_))).collect()
    }

    /// Bytes the slab spends per slot.
    pub const SLOT_BYTES: usize = std::mem::size_of::<Slot<T>>();
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Generational for (u32, u8) {
        fn generation(&self) -> u32 {
            self.0
        }
    }

    #[test]
    fn stale_foreign_and_forged_ids_are_rejected() {
        let mut a = Slab::new(1);
        let b: Slab<(u32, u8)> = Slab::new(2);
        let (id, index) = a.insert(|g| (g, 7u8)).unwrap();
        assert_eq!(a.get(id).map(|v| v.1), Some(7));
        assert_eq!(b.get(id), None, "another loop's id");
        assert_eq!(a.get(id ^ 1 << 30), None, "a forged generation");
        assert_eq!(a.get(0), None);
        assert_eq!(a.remove_at(index).1, 7);
        assert_eq!(a.get(id), None, "stale after removal");
        let (again, same) = a.insert(|g| (g, 8)).unwrap();
        assert_eq!(same, index, "the slot is reused");
        assert_ne!(again, id, "with a new generation");
        assert_eq!(a.get(id), None);
        assert_eq!(a.get(again).map(|v| v.1), Some(8));
        assert_eq!(decode(1, post_id(1, 5)), Some(IdKind::Post { seq: 5 }));
        assert_eq!(decode(2, post_id(1, 5)), None);
        let task = tagged(1, untagged_task_id(9, 3));
        assert_eq!(decode(1, task), Some(IdKind::Task { index: 9, generation: 3 }));
        assert_eq!(decode(2, task), None);
        assert_eq!(decode(1, untagged_task_id(9, 3)), None, "an untagged id names nothing");
        assert_eq!(decode(1, tagged(1, next_task_id(task).unwrap())), Some(IdKind::Task { index: 9, generation: 4 }));
        assert_eq!(next_task_id(untagged_task_id(9, TASK_GEN_MASK)), None, "retired");
        assert!(is_task_id(task) && !is_task_id(post_id(1, 5)) && !is_task_id(id));
        assert_eq!(decode(1, timer_id(1, 5, 7)), Some(IdKind::Timer { index: 5, generation: 7 }));
        assert_eq!(decode(2, timer_id(1, 5, 7)), None);
        assert!(!is_task_id(timer_id(1, 5, 7)));
        assert!(matches!(decode(1, id | 1 << 50), Some(IdKind::Timer { .. })), "a slot id with its kind changed");
    }

    #[test]
    fn a_slab_gives_back_its_free_end_and_old_ids_stay_stale() {
        // Miri runs this ~1000 times slower: fewer slots, still far above shrink's floor.
        let n = if cfg!(miri) { 5_000 } else { 100_000 };
        let mut slab: Slab<(u32, u8)> = Slab::new(1);
        let made: Vec<(Id, u32)> = (0..n).map(|_| slab.insert(|g| (g, 0)).unwrap()).collect();
        let keep = made[10];
        for &(id, index) in &made {
            if id != keep.0 {
                slab.remove_at(index);
            }
        }
        assert_eq!(slab.len(), 1);
        assert!(slab.slot_count() <= 11, "the free end is cut off: {} slots", slab.slot_count());
        assert!(slab.slots.capacity() <= 2 * crate::shrink::FLOOR);
        assert_eq!(slab.get(keep.0).map(|v| v.1), Some(0));
        // Slots pushed again, at indices cut off, never take an old id's generation.
        let again: Vec<(Id, u32)> = (0..n).map(|_| slab.insert(|g| (g, 1)).unwrap()).collect();
        for &(id, index) in &made {
            if id != keep.0 {
                assert_eq!(slab.get(id), None, "stale id at {index} names a new slot");
            }
        }
        // The free list fills the front first.
        assert_eq!(again[0].1, 0);
        assert!(again.iter().all(|&(id, _)| slab.get(id).map(|v| v.1) == Some(1)));
    }
}
