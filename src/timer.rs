//! The timer wheel: a hierarchical timing wheel with 1 ms ticks, six levels of 64 slots
//! (the design of Tokio's driver, written for weft). Insert and cancel are O(1); expiring
//! costs O(1) per timer plus at most one move per level it descends.
//!
//! Level `l` has slots of 64^l ticks, so level 0 covers the next 64 ms, level 1 the next
//! 4 s, level 2 the next 4.5 min, ... level 5 about 2.2 years. A timer lives in the level
//! of the highest 6-bit group in which its tick differs from `elapsed`; when the wheel
//! reaches a higher-level slot, its timers move down ("cascade").
//!
//! The wheel does not own timers: they are entries of the loop's slab, and each carries a
//! [`Link`] (its deadline and its list neighbours) that the wheel reaches through
//! [`Links`]. A timer's list is computed, not stored: timers due at or before `elapsed`
//! are on the expired list, the others in the slot `level_for` gives, which stays the
//! same until the wheel reaches that slot and moves them (so 16 bytes of link suffice). A timer never fires early: its tick is its deadline rounded up to
//! the next millisecond, and a tick is processed only once the clock has passed it.

pub(crate) const LEVELS: usize = 6;
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
const NIL: u32 = u32::MAX;
/// `prev` of a timer that is on no list (new, due, or removed).
const UNLINKED: u32 = u32::MAX - 1;
/// The level number that stands for "the expired list": timers already due.
const EXPIRED: u8 = LEVELS as u8;
pub(crate) const TICK_NS: u64 = 1_000_000;
/// The longest delay the wheel takes: 2^35 ms, about 397 days. Keeping delays under half
/// the top level's span keeps every timer within one turn of the top level.
pub(crate) const MAX_DELAY_MS: u64 = (1 << 35) - 1;

/// A timer's place in the wheel; stored inside the timer's registration.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    pub deadline_ns: u64,
    prev: u32,
    next: u32,
}

impl Link {
    pub fn new(deadline_ns: u64) -> Link {
        Link { deadline_ns, prev: UNLINKED, next: NIL }
    }

    /// True while the timer is in the wheel (not yet handed out as due).
    pub fn is_linked(&self) -> bool {
        self.prev != UNLINKED
    }
}

/// Access to the links of the timers the wheel holds, by slab index.
pub trait Links {
    fn link(&mut self, index: u32) -> &mut Link;
}

#[derive(Clone, Copy)]
struct List {
    head: u32,
}

struct Level {
    occupied: u64,
    slots: [List; SLOTS],
}

pub struct Wheel {
    /// Monotonic ns of tick 0.
    base_ns: u64,
    /// Every slot before this tick has been processed.
    elapsed: u64,
    levels: Box<[Level; LEVELS]>,
    expired: List,
    len: usize,
}

impl Wheel {
    pub fn new(base_ns: u64) -> Wheel {
        let level = || Level { occupied: 0, slots: [List { head: NIL }; SLOTS] };
        Wheel {
            base_ns,
            elapsed: 0,
            levels: Box::new([level(), level(), level(), level(), level(), level()]),
            expired: List { head: NIL },
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The tick at or after `ns`: the first tick at which a deadline of `ns` may fire.
    fn tick_ceil(&self, ns: u64) -> u64 {
        ns.saturating_sub(self.base_ns).div_ceil(TICK_NS)
    }

    fn tick_floor(&self, ns: u64) -> u64 {
        ns.saturating_sub(self.base_ns) / TICK_NS
    }

    /// The level a timer due at tick `when` belongs to.
    fn level_for(&self, when: u64) -> usize {
        let masked = (self.elapsed ^ when) | (SLOTS as u64 - 1);
        let significant = 63 - masked.leading_zeros() as usize;
        (significant / SLOT_BITS as usize).min(LEVELS - 1)
    }

    fn list(&mut self, level: u8, slot: usize) -> &mut List {
        if level == EXPIRED {
            &mut self.expired
        } else {
            &mut self.levels[level as usize].slots[slot]
        }
    }

    /// The list a timer due at tick `when` is on: (level, slot).
    fn place(&self, when: u64) -> (u8, usize) {
        let level = if when <= self.elapsed { EXPIRED } else { self.level_for(when) as u8 };
        (level, Self::slot_of(when, level))
    }

    fn slot_of(when: u64, level: u8) -> usize {
        if level == EXPIRED {
            0
        } else {
            ((when >> (level as u32 * SLOT_BITS)) as usize) & (SLOTS - 1)
        }
    }

    /// Links the timer at `index` (whose link holds its deadline).
    pub fn insert(&mut self, links: &mut impl Links, index: u32) {
        let (level, slot) = self.place(self.tick_ceil(links.link(index).deadline_ns));
        let list = self.list(level, slot);
        let old_head = list.head;
        list.head = index;
        if level != EXPIRED {
            self.levels[level as usize].occupied |= 1 << slot;
        }
        if old_head != NIL {
            links.link(old_head).prev = index;
        }
        let link = links.link(index);
        link.prev = NIL;
        link.next = old_head;
        self.len += 1;
    }

    /// Unlinks the timer at `index`.
    pub fn remove(&mut self, links: &mut impl Links, index: u32) {
        let Link { deadline_ns, prev, next } = *links.link(index);
        let (level, slot) = self.place(self.tick_ceil(deadline_ns));
        if prev != NIL {
            links.link(prev).next = next;
        } else {
            self.list(level, slot).head = next;
            if next == NIL && level != EXPIRED {
                self.levels[level as usize].occupied &= !(1 << slot);
            }
        }
        if next != NIL {
            links.link(next).prev = prev;
        }
        links.link(index).prev = UNLINKED;
        self.len -= 1;
    }

    /// The next tick at which the wheel has work (a due timer or a cascade), if any.
    fn next_expiration(&self) -> Option<(u8, usize, u64)> {
        if self.expired.head != NIL {
            return Some((EXPIRED, 0, self.elapsed));
        }
        for (level, lv) in self.levels.iter().enumerate() {
            if lv.occupied == 0 {
                continue;
            }
            let shift = level as u32 * SLOT_BITS;
            let slot_range = 1u64 << shift;
            let level_range = slot_range << SLOT_BITS;
            let pos = ((self.elapsed >> shift) as usize) & (SLOTS - 1);
            let slot = (pos + lv.occupied.rotate_right(pos as u32).trailing_zeros() as usize)
                % SLOTS;
            let level_start = self.elapsed & !(level_range - 1);
            let mut deadline = level_start + slot as u64 * slot_range;
            if slot < pos {
                deadline += level_range;
            }
            return Some((level as u8, slot, deadline.max(self.elapsed)));
        }
        None
    }

    /// The monotonic time (ns) at which [`Wheel::poll`] next has something to do.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        self.next_expiration().map(|(_, _, tick)| self.base_ns + tick * TICK_NS)
    }

    /// Moves every timer due at `now_ns` into `due` (unlinked), cascading as it goes.
    pub fn poll(&mut self, links: &mut impl Links, now_ns: u64, due: &mut Vec<u32>) {
        let now = self.tick_floor(now_ns);
        while let Some((level, slot, tick)) = self.next_expiration() {
            if tick > now {
                break;
            }
            self.elapsed = tick;
            let list = self.list(level, slot);
            let mut index = std::mem::replace(&mut list.head, NIL);
            if level != EXPIRED {
                self.levels[level as usize].occupied &= !(1 << slot);
            }
            while index != NIL {
                let link = links.link(index);
                let next = link.next;
                link.prev = UNLINKED;
                self.len -= 1;
                if level == 0 || level == EXPIRED {
                    due.push(index);
                } else {
                    self.insert(links, index);
                }
                index = next;
            }
        }
        self.elapsed = self.elapsed.max(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Timers(Vec<Link>);
    impl Links for Timers {
        fn link(&mut self, index: u32) -> &mut Link {
            &mut self.0[index as usize]
        }
    }

    fn run_until(wheel: &mut Wheel, timers: &mut Timers, end_ns: u64, step_ns: u64) -> Vec<(u32, u64)> {
        let mut fired = Vec::new();
        let mut due = Vec::new();
        let mut now = 0;
        while now <= end_ns {
            wheel.poll(timers, now, &mut due);
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
        let mut wheel = Wheel::new(0);
        let mut state = 0x2545F4914F6CDD1Du64;
        let mut timers = Timers(Vec::new());
        for i in 0..20_000u32 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // up to ~5 hours, with sub-ms deadlines
            let deadline = state % (5 * 3600 * 1_000_000_000);
            timers.0.push(Link::new(deadline));
            wheel.insert(&mut timers, i);
        }
        assert_eq!(wheel.len(), 20_000);
        let fired = run_until(&mut wheel, &mut timers, 5 * 3600 * 1_000_000_000 + TICK_NS, 250_000);
        assert_eq!(fired.len(), 20_000);
        assert_eq!(wheel.len(), 0);
        for (i, at) in fired {
            let deadline = timers.0[i as usize].deadline_ns;
            assert!(at >= deadline, "timer {i} fired early: {at} < {deadline}");
            assert!(at < deadline + TICK_NS + 250_000, "timer {i} late: {at} vs {deadline}");
        }
        assert_eq!(wheel.next_deadline_ns(), None);
    }

    #[test]
    fn removed_timers_never_fire_and_past_deadlines_fire_at_once() {
        let mut wheel = Wheel::new(0);
        let mut timers = Timers((0..300).map(|i| Link::new(i * 7_000_000)).collect());
        for i in 0..300 {
            wheel.insert(&mut timers, i);
        }
        for i in (0..300).step_by(2) {
            wheel.remove(&mut timers, i);
        }
        let fired = run_until(&mut wheel, &mut timers, 2_200 * TICK_NS, TICK_NS);
        assert_eq!(fired.len(), 150);
        assert!(fired.iter().all(|(i, _)| i % 2 == 1));

        // A deadline behind `elapsed` goes to the expired list and is due immediately.
        timers.0[0] = Link::new(5 * TICK_NS);
        wheel.insert(&mut timers, 0);
        assert_eq!(wheel.next_deadline_ns(), Some(2_200 * TICK_NS));
        let mut due = Vec::new();
        wheel.poll(&mut timers, 2_200 * TICK_NS, &mut due);
        assert_eq!(due, vec![0]);
    }

    #[test]
    fn random_inserts_and_removes_while_time_advances_match_a_model() {
        let mut wheel = Wheel::new(7);
        let mut timers = Timers(Vec::new());
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
        for round in 0..200_000u32 {
            match rand(10) {
                0..=4 => {
                    let index = timers.0.len() as u32;
                    let delay = [rand(100), rand(100_000), rand(10_000_000)][rand(3) as usize];
                    timers.0.push(Link::new(now + delay * 1000));
                    wheel.insert(&mut timers, index);
                    live.insert(index);
                }
                5..=6 if !live.is_empty() => {
                    let pick = *live.iter().nth(rand(live.len() as u64) as usize).unwrap();
                    wheel.remove(&mut timers, pick);
                    live.remove(&pick);
                }
                _ => {
                    now += rand(3_000_000);
                    wheel.poll(&mut timers, now, &mut due);
                    for i in due.drain(..) {
                        assert!(live.remove(&i), "round {round}: timer {i} fired twice or after removal");
                        assert!(timers.0[i as usize].deadline_ns <= now);
                    }
                    assert!(live.iter().all(|&i| timers.0[i as usize].deadline_ns + TICK_NS > now));
                }
            }
            assert_eq!(wheel.len(), live.len());
        }
    }

    #[test]
    fn far_deadlines_cascade_across_the_top_level_boundary() {
        // elapsed just below 2^36 ticks, deadlines on both sides of it
        let base = 0;
        let mut wheel = Wheel::new(base);
        let mut due = Vec::new();
        let mut timers = Timers(Vec::new());
        let start = ((1u64 << 36) - 3) * TICK_NS;
        wheel.poll(&mut timers, start, &mut due);
        for (i, delay) in [1u64, 5, 70, 5000, 1 << 20, MAX_DELAY_MS].iter().enumerate() {
            timers.0.push(Link::new(start + delay * TICK_NS));
            wheel.insert(&mut timers, i as u32);
        }
        let mut fired = Vec::new();
        let mut now = start;
        while fired.len() < 6 {
            let next = wheel.next_deadline_ns().expect("timers pending");
            assert!(next >= now.min(next));
            now = next.max(now);
            wheel.poll(&mut timers, now, &mut due);
            for &i in &due {
                assert!(now >= timers.0[i as usize].deadline_ns);
                assert!(now < timers.0[i as usize].deadline_ns + TICK_NS);
                fired.push(i);
            }
            due.clear();
        }
        assert_eq!(fired, vec![0, 1, 2, 3, 4, 5]);
    }
}
