//! The locked wheel: a hierarchical timing wheel (the design of Tokio's driver, written
//! for weft) for the deadlines of the loop's slab: timers scheduled by other threads,
//! tasks' and process tasks' timeouts. Insert and cancel are O(1); expiring costs O(1)
//! per timer plus at most one move per level it descends.
//!
//! Level `l` has slots of 64^l ticks (see `super`), so level 0 covers the next 4 ms,
//! level 1 the next 268 ms, level 2 the next 17 s, ... A timer lives in the level of the
//! highest 6-bit group in which its tick differs from `elapsed`; when the wheel reaches
//! a higher-level slot, its timers move down ("cascade").
//!
//! Timers are entries of the loop's slab; the wheel keeps, by slab index, a 12-byte
//! [`Link`] for each: its deadline and its position in its slot. A slot is a vector of
//! slab indices, so cancelling swaps the last index into the hole (O(1)), and expiring a
//! slot walks a contiguous array instead of chasing list pointers through a million
//! scattered timers. A timer's slot is computed from its deadline, not stored: timers
//! due at or before `elapsed` are in the expired slot, the others in the slot
//! `level_for` gives, which stays the same until the wheel reaches that slot and moves
//! them.

use super::{next_occupied, slot_for, tick_ceil, tick_floor, LEVELS, SLOTS, TICK_NS};
use crate::shrink;

/// The slot number of "the expired slot": timers already due.
const EXPIRED: usize = LEVELS * SLOTS;
/// `pos` of a timer that is in no slot (new, due, or removed).
const UNLINKED: u32 = u32::MAX;

/// A timer's deadline (two u32 halves, to keep the link at 12 bytes) and its position in
/// its slot.
#[derive(Clone, Copy, Debug)]
struct Link {
    deadline: [u32; 2],
    pos: u32,
}

impl Link {
    fn deadline_ns(&self) -> u64 {
        (self.deadline[0] as u64) << 32 | self.deadline[1] as u64
    }
}

const FREE_LINK: Link = Link { deadline: [0, 0], pos: UNLINKED };

pub struct Wheel {
    /// By slab index; entries of indices that are not timers are unused.
    links: Vec<Link>,
    /// LEVELS * SLOTS slots, then the expired slot.
    slots: Vec<Vec<u32>>,
    /// A bit per non-empty slot, per level.
    occupied: [u64; LEVELS],
    /// Per slot, a lower bound of its timers' deadlines (u64::MAX: none known). Exact
    /// after inserts; a cancel can leave it early, which only costs a wake-up at a time
    /// when the slot (whose start is never later than the bound) is processed anyway.
    slot_min: Vec<u64>,
    /// Monotonic ns of tick 0.
    base_ns: u64,
    /// Every slot before this tick has been processed.
    elapsed: u64,
    len: usize,
}

impl Wheel {
    pub fn new(base_ns: u64) -> Wheel {
        Wheel {
            links: Vec::new(),
            slots: (0..=EXPIRED).map(|_| Vec::new()).collect(),
            occupied: [0; LEVELS],
            slot_min: vec![u64::MAX; EXPIRED],
            base_ns,
            elapsed: 0,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The deadline of the timer at `index`.
    pub fn deadline_ns(&self, index: u32) -> u64 {
        self.links[index as usize].deadline_ns()
    }

    /// True while the timer at `index` is in the wheel (not handed out as due).
    pub fn is_linked(&self, index: u32) -> bool {
        self.links.get(index as usize).is_some_and(|l| l.pos != UNLINKED)
    }

    /// The slot (level * SLOTS + slot, or EXPIRED) of a timer with this deadline.
    fn place(&self, deadline_ns: u64) -> usize {
        let when = tick_ceil(self.base_ns, deadline_ns);
        if when <= self.elapsed {
            return EXPIRED;
        }
        slot_for(self.elapsed, when)
    }

    /// Adds the timer at slab index `index`, due at `deadline_ns`.
    pub fn insert(&mut self, index: u32, deadline_ns: u64) {
        if self.links.len() <= index as usize {
            // Vec grows its capacity geometrically; only the part in use is touched.
            self.links.resize(index as usize + 1, FREE_LINK);
        }
        self.links[index as usize].deadline = [(deadline_ns >> 32) as u32, deadline_ns as u32];
        self.link(index);
    }

    /// Puts the timer at `index` into the slot its deadline belongs to.
    fn link(&mut self, index: u32) {
        let slot = self.place(self.links[index as usize].deadline_ns());
        let vec = &mut self.slots[slot];
        self.links[index as usize].pos = vec.len() as u32;
        vec.push(index);
        if slot != EXPIRED {
            self.occupied[slot / SLOTS] |= 1 << (slot % SLOTS);
            let deadline = self.links[index as usize].deadline_ns();
            self.slot_min[slot] = self.slot_min[slot].min(deadline);
        }
        self.len += 1;
    }

    /// Removes the timer at `index` (which must be linked).
    pub fn remove(&mut self, index: u32) {
        let link = self.links[index as usize];
        let slot = self.place(link.deadline_ns());
        let vec = &mut self.slots[slot];
        let last = vec.pop().expect("a linked timer's slot is not empty");
        if last != index {
            vec[link.pos as usize] = last;
            self.links[last as usize].pos = link.pos;
        }
        if vec.is_empty() && slot != EXPIRED {
            self.occupied[slot / SLOTS] &= !(1 << (slot % SLOTS));
            self.slot_min[slot] = u64::MAX;
        }
        // A slot emptied by cancels gives its memory back as it goes (see `crate::shrink`).
        let used = vec.len();
        shrink::vec(vec, used);
        self.links[index as usize].pos = UNLINKED;
        self.len -= 1;
    }

    /// The next tick at which the wheel has work (a due timer or a cascade), if any:
    /// (slot, tick).
    fn next_expiration(&self) -> Option<(usize, u64)> {
        if !self.slots[EXPIRED].is_empty() {
            return Some((EXPIRED, self.elapsed));
        }
        next_occupied(self.elapsed, &self.occupied)
    }

    /// Gives back the links of indices at or above `slots` (the slab's slot count: no
    /// timer is there) and, after a burst, the memory of links no longer used.
    pub fn trim(&mut self, slots: usize) {
        if self.links.len() > slots {
            self.links.truncate(slots);
        }
        let used = self.links.len();
        shrink::vec(&mut self.links, used);
    }

    /// The monotonic time (ns) at which the next timer is due (at a tick boundary): a
    /// pass at that time runs it. Never later than the real next deadline; earlier only
    /// after a cancel, until the next `poll`.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        let (slot, tick) = self.next_expiration()?;
        let tick = if slot < SLOTS || slot == EXPIRED {
            tick
        } else {
            // A slot of a higher level: its timers are due no earlier than its minimum.
            tick.max(tick_ceil(self.base_ns, self.slot_min[slot]))
        };
        Some(self.base_ns + tick * TICK_NS)
    }

    /// Moves every timer due at `now_ns` into `due` (unlinked), cascading as it goes.
    pub fn poll(&mut self, now_ns: u64, due: &mut Vec<u32>) {
        let now = tick_floor(self.base_ns, now_ns);
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
            self.len -= taken.len();
            for &index in &taken {
                self.links[index as usize].pos = UNLINKED;
            }
            if slot < SLOTS || slot == EXPIRED {
                due.extend_from_slice(&taken);
            } else {
                for &index in &taken {
                    self.link(index);
                }
            }
            // Keep the slot's allocation for the timers that will land in it next,
            // unless a burst made it large: the slot is next reached a turn of its level
            // later (see `crate::shrink`).
            taken.clear();
            shrink::vec(&mut taken, 0);
            if self.slots[slot].is_empty() {
                self.slots[slot] = taken;
            }
        }
        self.elapsed = self.elapsed.max(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timer::MAX_DELAY_MS;

    fn run_until(wheel: &mut Wheel, end_ns: u64, step_ns: u64) -> Vec<(u32, u64)> {
        let mut fired = Vec::new();
        let mut due = Vec::new();
        let mut now = 0;
        while now <= end_ns {
            wheel.poll(now, &mut due);
            for &i in &due {
                fired.push((i, now));
            }
            due.clear();
            now += step_ns;
        }
        fired
    }

    #[test]
    fn timers_fire_in_order_never_early_and_at_most_a_tick_late() {
        // Under Miri (~1000 times slower): fewer timers and a coarser clock, over the
        // same five hours, so every level of the wheel still cascades.
        let (count, step_ns) = if cfg!(miri) { (1_000, 1_000_000_000) } else { (20_000, 250_000) };
        let mut wheel = Wheel::new(0);
        let mut state = 0x2545F4914F6CDD1Du64;
        for i in 0..count {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // up to ~5 hours, with sub-ms deadlines
            let deadline = state % (5 * 3600 * 1_000_000_000);
            wheel.insert(i, deadline);
        }
        assert_eq!(wheel.len(), count as usize);
        let fired = run_until(&mut wheel, 5 * 3600 * 1_000_000_000 + TICK_NS, step_ns);
        assert_eq!(fired.len(), count as usize);
        assert_eq!(wheel.len(), 0);
        for (i, at) in fired {
            let deadline = wheel.deadline_ns(i);
            assert!(at >= deadline, "timer {i} fired early: {at} < {deadline}");
            assert!(at < deadline + TICK_NS + step_ns, "timer {i} late: {at} vs {deadline}");
        }
        assert_eq!(wheel.next_deadline_ns(), None);
    }

    #[test]
    fn removed_timers_never_fire_and_past_deadlines_fire_at_once() {
        const MS: u64 = 1 << 20;
        let mut wheel = Wheel::new(0);
        for i in 0..300 {
            wheel.insert(i, i as u64 * 7_000_000);
        }
        for i in (0..300).step_by(2) {
            wheel.remove(i);
        }
        let fired = run_until(&mut wheel, 2_200 * MS, TICK_NS);
        assert_eq!(fired.len(), 150);
        assert!(fired.iter().all(|(i, _)| i % 2 == 1));

        // A deadline behind `elapsed` goes to the expired list and is due immediately.
        wheel.insert(0, 5 * MS);
        assert_eq!(wheel.next_deadline_ns(), Some(2_200 * MS));
        let mut due = Vec::new();
        wheel.poll(2_200 * MS, &mut due);
        assert_eq!(due, vec![0]);
    }

    #[test]
    fn random_inserts_and_removes_while_time_advances_match_a_model() {
        let mut wheel = Wheel::new(7);
        let mut next_index = 0u32;
        let mut live = std::collections::BTreeSet::new();
        let mut state = 88172645463325252u64;
        let mut rand = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let mut now = 7;
        let mut due = Vec::new();
        // Under Miri (~1000 times slower), fewer rounds of the same mix.
        let rounds = if cfg!(miri) { 1_000 } else { 200_000u32 };
        for round in 0..rounds {
            match rand(10) {
                0..=4 => {
                    let index = next_index;
                    next_index += 1;
                    let delay = [rand(100), rand(100_000), rand(10_000_000)][rand(3) as usize];
                    wheel.insert(index, now + delay * 1000);
                    live.insert(index);
                }
                5..=6 if !live.is_empty() => {
                    let pick = *live.iter().nth(rand(live.len() as u64) as usize).unwrap();
                    wheel.remove(pick);
                    live.remove(&pick);
                }
                _ => {
                    now += rand(3_000_000);
                    wheel.poll(now, &mut due);
                    for i in due.drain(..) {
                        assert!(live.remove(&i), "round {round}: timer {i} fired twice or after removal");
                        assert!(wheel.deadline_ns(i) <= now);
                    }
                    assert!(live.iter().all(|&i| wheel.deadline_ns(i) + TICK_NS > now));
                }
            }
            assert_eq!(wheel.len(), live.len());
        }
    }

    #[test]
    fn the_next_deadline_is_the_earliest_timer_not_a_cascade_point() {
        let mut wheel = Wheel::new(0);
        for (i, ms) in [100u64, 5_000, 5_500, 60_000].iter().enumerate() {
            wheel.insert(i as u32, ms * TICK_NS + 300);
        }
        assert_eq!(wheel.next_deadline_ns(), Some(101 * TICK_NS));
        wheel.remove(0);
        assert_eq!(wheel.next_deadline_ns(), Some(5_001 * TICK_NS));
        // 5000 and 5500 share a slot: cancelling 5000 leaves an early bound, and a
        // poll at it finds nothing due but makes the next deadline exact.
        wheel.remove(1);
        let mut due = Vec::new();
        wheel.poll(wheel.next_deadline_ns().unwrap(), &mut due);
        assert!(due.is_empty());
        assert_eq!(wheel.next_deadline_ns(), Some(5_501 * TICK_NS));
        wheel.poll(5_501 * TICK_NS, &mut due);
        assert_eq!(due, vec![2]);
        assert_eq!(wheel.next_deadline_ns(), Some(60_001 * TICK_NS));
    }

    #[test]
    fn far_deadlines_cascade_across_the_top_level_boundary() {
        // elapsed just below 2^36 ticks, deadlines on both sides of it
        let base = 0;
        let mut wheel = Wheel::new(base);
        let mut due = Vec::new();
        let start = ((1u64 << (LEVELS * 6)) - 3) * TICK_NS;
        wheel.poll(start, &mut due);
        for (i, delay) in [1u64, 5, 70, 5000, 1 << 20, MAX_DELAY_MS].iter().enumerate() {
            wheel.insert(i as u32, start + delay * TICK_NS);
        }
        let mut fired = Vec::new();
        let mut now = start;
        while fired.len() < 6 {
            let next = wheel.next_deadline_ns().expect("timers pending");
            assert!(next >= now.min(next));
            now = next.max(now);
            wheel.poll(now, &mut due);
            for &i in &due {
                assert!(now >= wheel.deadline_ns(i));
                assert!(now < wheel.deadline_ns(i) + TICK_NS);
                fired.push(i);
            }
            due.clear();
        }
        assert_eq!(fired, vec![0, 1, 2, 3, 4, 5]);
    }
}
