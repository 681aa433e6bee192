//! The owner's wheel: the same levels and slots as [`super::Wheel`], holding 16-byte
//! [`Entry`]s (deadline, record index, generation) by value. Nothing points back at an
//! entry, so nothing is unlinked: a cancelled timer's entry stays until the wheel meets
//! it (due, or in a [`retain`](LazyWheel::retain) the owner runs once stale entries
//! outnumber live ones), and the record's generation tells it apart from a live one. A
//! cascade moves entries without touching their records.
//!
//! An insert only appends the entry to `incoming` (and keeps the least deadline there):
//! entries are placed in their slots when the wheel next moves ([`poll`], [`retain`]),
//! so a timer the owner cancels before that (a burst of schedules, then of cancels,
//! outside `run`) never costs a placement, and a burst of schedules writes one array.
//! The next deadline counts `incoming` through its least deadline, so nothing waits.
//!
//! [`poll`]: LazyWheel::poll
//! [`retain`]: LazyWheel::retain

use super::{next_occupied, slot_for, tick_ceil, tick_floor, LEVELS, SLOTS, TICK_NS};
use crate::shrink;

/// The slot number of "the expired slot": entries already due.
const EXPIRED: usize = LEVELS * SLOTS;

/// A timer in the owner's wheel: its deadline and the record (index, generation) it
/// stood for when it was put in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub deadline_ns: u64,
    pub index: u32,
    pub generation: u32,
}

pub struct LazyWheel {
    /// LEVELS * SLOTS slots, then the expired slot (arrays: an insert's slot number
    /// needs no bounds check).
    slots: Box<[Vec<Entry>; EXPIRED + 1]>,
    /// A bit per non-empty slot, per level.
    occupied: [u64; LEVELS],
    /// Per slot, a lower bound of its entries' deadlines (u64::MAX: empty).
    slot_min: Box<[u64; EXPIRED]>,
    /// Entries inserted since the wheel last moved, not yet in a slot.
    incoming: Vec<Entry>,
    /// The least deadline in `incoming` (u64::MAX: none).
    incoming_min: u64,
    /// Monotonic ns of tick 0.
    base_ns: u64,
    /// Every slot before this tick has been processed.
    elapsed: u64,
    /// Entries held, stale ones included.
    len: usize,
}

impl LazyWheel {
    pub fn new(base_ns: u64) -> LazyWheel {
        LazyWheel {
            slots: Box::new(std::array::from_fn(|_| Vec::new())),
            occupied: [0; LEVELS],
            slot_min: Box::new([u64::MAX; EXPIRED]),
            incoming: Vec::new(),
            incoming_min: u64::MAX,
            base_ns,
            elapsed: 0,
            len: 0,
        }
    }

    /// Entries held, stale ones included.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds an entry (to `incoming`: see the module comment).
    #[inline]
    pub fn insert(&mut self, entry: Entry) {
        self.incoming.push(entry);
        self.incoming_min = self.incoming_min.min(entry.deadline_ns);
        self.len += 1;
    }

    /// Whether [`insert_in_room`](Self::insert_in_room) may add an entry now.
    #[inline(always)]
    pub fn has_room(&self) -> bool {
        self.incoming.len() < self.incoming.capacity()
    }

    /// [`insert`](Self::insert) where [`has_room`](Self::has_room) said there is room: no
    /// allocation, so no call (the owner's straight line, `fast.rs`).
    #[inline(always)]
    pub fn insert_in_room(&mut self, entry: Entry) {
        let len = self.incoming.len();
        debug_assert!(len < self.incoming.capacity());
        // SAFETY: within the capacity (the caller asked `has_room`, and nothing took
        // entries out since); the element is written before the length covers it.
        unsafe {
            self.incoming.as_mut_ptr().add(len).write(entry);
            self.incoming.set_len(len + 1);
        }
        self.incoming_min = self.incoming_min.min(entry.deadline_ns);
        self.len += 1;
    }

    /// Places the entries of `incoming` in their slots.
    fn place_incoming(&mut self) {
        if self.incoming.is_empty() {
            return;
        }
        let mut incoming = std::mem::take(&mut self.incoming);
        for &entry in &incoming {
            self.place(entry);
        }
        let used = incoming.len();
        incoming.clear();
        shrink::vec(&mut incoming, used);
        self.incoming = incoming;
        self.incoming_min = u64::MAX;
    }

    /// Puts `entry` in its slot (`len` counts it already).
    #[inline]
    fn place(&mut self, entry: Entry) {
        let when = tick_ceil(self.base_ns, entry.deadline_ns);
        let slot = if when <= self.elapsed { EXPIRED } else { slot_for(self.elapsed, when) };
        self.slots[slot].push(entry);
        if slot != EXPIRED {
            self.occupied[slot / SLOTS] |= 1 << (slot % SLOTS);
            self.slot_min[slot] = self.slot_min[slot].min(entry.deadline_ns);
        }
    }

    fn next_expiration(&self) -> Option<(usize, u64)> {
        if !self.slots[EXPIRED].is_empty() {
            return Some((EXPIRED, self.elapsed));
        }
        next_occupied(self.elapsed, &self.occupied)
    }

    /// The monotonic time (ns) at which a pass has work here (a tick boundary): never
    /// later than the next live deadline; earlier when that entry is stale.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        // An incoming entry is due at the tick at or after its deadline (or at once).
        let incoming = (self.incoming_min != u64::MAX).then(|| tick_ceil(self.base_ns, self.incoming_min));
        let placed = self.next_expiration().map(|(slot, tick)| {
            if slot == EXPIRED {
                tick
            } else {
                tick.max(tick_ceil(self.base_ns, self.slot_min[slot]))
            }
        });
        let tick = match (placed, incoming) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(self.base_ns + tick * TICK_NS)
    }

    /// Moves every entry due at `now_ns` into `due`, cascading as it goes. Stale entries
    /// come out too: the caller tells them apart.
    pub fn poll(&mut self, now_ns: u64, due: &mut Vec<Entry>) {
        let now = tick_floor(self.base_ns, now_ns);
        self.place_incoming();
        while let Some((slot, tick)) = self.next_expiration() {
            if tick > now {
                break;
            }
            self.elapsed = tick;
            let mut taken = std::mem::take(&mut self.slots[slot]);
            if slot != EXPIRED {
                self.occupied[slot / SLOTS] &= !(1 << (slot % SLOTS));
                self.slot_min[slot] = u64::MAX;
            }
            if slot < SLOTS || slot == EXPIRED {
                self.len -= taken.len();
                due.extend_from_slice(&taken);
            } else {
                for &entry in &taken {
                    self.place(entry);
                }
            }
            // Keep the slot's allocation for the entries that land in it next, unless a
            // burst made it large (see `crate::shrink`).
            taken.clear();
            shrink::vec(&mut taken, 0);
            if self.slots[slot].is_empty() {
                self.slots[slot] = taken;
            }
        }
        self.elapsed = self.elapsed.max(now);
    }

    /// Keeps only the entries `keep` approves of; gives back the memory of the rest.
    /// `ahead` is shown each entry a few entries before `keep` is (to prefetch what
    /// `keep` will read).
    pub fn retain(&mut self, ahead: impl Fn(&Entry), mut keep: impl FnMut(&Entry) -> bool) {
        const AHEAD: usize = 8;
        self.place_incoming();
        self.len = 0;
        for (slot, entries) in self.slots.iter_mut().enumerate() {
            let mut kept = 0;
            for at in 0..entries.len() {
                if let Some(later) = entries.get(at + AHEAD) {
                    ahead(later);
                }
                let entry = entries[at];
                if keep(&entry) {
                    entries[kept] = entry;
                    kept += 1;
                }
            }
            entries.truncate(kept);
            shrink::vec(entries, kept);
            self.len += kept;
            if slot != EXPIRED {
                self.slot_min[slot] = entries.iter().map(|e| e.deadline_ns).min().unwrap_or(u64::MAX);
                if entries.is_empty() {
                    self.occupied[slot / SLOTS] &= !(1 << (slot % SLOTS));
                }
            }
        }
    }

    /// Drops every entry (all stale): O(occupied slots), not O(entries).
    pub fn clear(&mut self) {
        for level in 0..LEVELS {
            let mut occupied = std::mem::take(&mut self.occupied[level]);
            while occupied != 0 {
                let slot = level * SLOTS + occupied.trailing_zeros() as usize;
                occupied &= occupied - 1;
                self.slots[slot].clear();
                shrink::vec(&mut self.slots[slot], 0);
                self.slot_min[slot] = u64::MAX;
            }
        }
        self.slots[EXPIRED].clear();
        shrink::vec(&mut self.slots[EXPIRED], 0);
        self.incoming.clear();
        shrink::vec(&mut self.incoming, 0);
        self.incoming_min = u64::MAX;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(deadline_ns: u64, index: u32) -> Entry {
        Entry { deadline_ns, index, generation: 1 }
    }

    #[test]
    fn entries_come_out_in_time_never_early_at_most_a_tick_late() {
        let mut wheel = LazyWheel::new(5);
        let mut state = 0x2545F4914F6CDD1Du64;
        let count = if cfg!(miri) { 500 } else { 20_000 };
        let span = 3600 * 1_000_000_000u64;
        for i in 0..count {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            wheel.insert(entry(5 + state % span, i));
        }
        let mut due = Vec::new();
        let mut fired = 0;
        let mut now = 5;
        while let Some(next) = wheel.next_deadline_ns() {
            assert!(next >= now.min(next));
            now = next.max(now);
            wheel.poll(now, &mut due);
            for e in due.drain(..) {
                assert!(e.deadline_ns <= now, "early: {} > {now}", e.deadline_ns);
                assert!(now < e.deadline_ns + TICK_NS, "late: {} vs {now}", e.deadline_ns);
                fired += 1;
            }
        }
        assert_eq!(fired, count);
        assert!(wheel.is_empty());
    }

    #[test]
    fn retain_drops_entries_and_the_next_deadline_follows() {
        let mut wheel = LazyWheel::new(0);
        for i in 0..100u32 {
            wheel.insert(entry((i as u64 + 1) * 10_000_000, i));
        }
        wheel.retain(|_| {}, |e| e.index >= 50);
        assert_eq!(wheel.len(), 50);
        let next = wheel.next_deadline_ns().unwrap();
        assert!((510_000_000..510_000_000 + TICK_NS).contains(&next), "{next}");
        wheel.clear();
        assert_eq!(wheel.next_deadline_ns(), None);
        assert!(wheel.is_empty());
    }
}
