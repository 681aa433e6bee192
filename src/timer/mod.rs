//! Timers: when they are due, and where they wait.
//!
//! A loop keeps its timers in two places:
//!
//! * The owner's timers ([`Table`], [`LazyWheel`]): those scheduled by the thread that
//!   owns the loop (`crate::r#loop` owner.rs), the common case, with no lock. Each is a
//!   record in a table whose memory never moves, found by the index in its id (an 8-byte
//!   hot half and a 32-byte body, in two arrays), and an entry (deadline, index,
//!   generation) in a wheel of the owner's. A cancel by the owner frees the record and
//!   leaves the entry, which is dropped when the wheel meets it (its generation no
//!   longer matches), or by a sweep once such entries outnumber the table's records:
//!   one cache miss (the hot half; the body too when the handler has an end to run),
//!   no list to unlink. A cancel from another thread settles with the owner through
//!   the record's atomic state (`table.rs` writes the protocol down).
//! * Everything else that needs a deadline ([`Wheel`]): timers scheduled by other
//!   threads, tasks' and process tasks' timeouts, in the loop's slab, under its lock.
//!
//! Both wheels count time in ticks of [`TICK_NS`] (65.5 µs), fine enough that the loop
//! can arm its wake-up at the tick after the earliest deadline and fire it a few tens of
//! microseconds late at most (plus the kernel's wake-up), never early: a timer is due
//! at the first tick at or after its deadline.
//!
//! * `wheel.rs`: the hierarchical wheel and its level arithmetic, with O(1) removal.
//! * `lazy.rs`: the owner's wheel, whose cancelled entries stay until met.
//! * `table.rs`: the owner's timer records and the cancel protocol.
//! * `chunks.rs`: where the records live, and handlers packed in two words.
//! * `own.rs`: the owner's side of the table (its wheel, free list and counts).
//! * `fast.rs`: the owner's common case (a one-shot timer whose handler packs) as a
//!   straight line, declining to the general path whatever else comes up.

mod chunks;
mod lazy;
mod own;
mod table;
mod wheel;

pub use chunks::Pack;
pub use lazy::{Entry, LazyWheel};
pub use own::OwnTimers;
pub use table::{Begin, Table};
pub use wheel::Wheel;

/// Levels of a wheel: 7 of 64 slots, 42 bits of ticks (about 9 years).
pub(crate) const LEVELS: usize = 7;
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
/// A wheel's tick: 2^16 ns, 65.5 µs.
pub(crate) const TICK_NS: u64 = 1 << 16;
/// A pass that fires n timers lets the next timer wake-up wait up to n times this (at
/// most a millisecond): a loop busy with timers makes few passes, an idle one wakes on
/// time.
pub(crate) const PACE_NS_PER_TIMER: u64 = 2_000;
/// Nanoseconds per millisecond: delays are given in ms.
pub(crate) const NS_PER_MS: u64 = 1_000_000;
/// The longest delay the wheel takes: 2^35 ms, about 397 days. Keeping delays under half
/// the top level's span keeps every timer within one turn of the top level.
pub(crate) const MAX_DELAY_MS: u64 = (1 << 35) - 1;
const _: () = assert!(MAX_DELAY_MS * NS_PER_MS / TICK_NS < 1 << (LEVELS as u32 * SLOT_BITS - 1));

/// The tick at or after `ns` (counted from `base_ns`): the first tick at which a
/// deadline of `ns` may fire.
fn tick_ceil(base_ns: u64, ns: u64) -> u64 {
    ns.saturating_sub(base_ns).div_ceil(TICK_NS)
}

/// The tick `ns` is in.
fn tick_floor(base_ns: u64, ns: u64) -> u64 {
    ns.saturating_sub(base_ns) / TICK_NS
}

/// The level a timer due at tick `when` belongs to, the wheel being at `elapsed`: the
/// highest 6-bit group in which the two differ.
fn level_for(elapsed: u64, when: u64) -> usize {
    let masked = (elapsed ^ when) | (SLOTS as u64 - 1);
    let significant = 63 - masked.leading_zeros() as usize;
    (significant / SLOT_BITS as usize).min(LEVELS - 1)
}

/// The slot (level * SLOTS + slot) of a timer due at tick `when` > `elapsed`.
fn slot_for(elapsed: u64, when: u64) -> usize {
    let level = level_for(elapsed, when);
    level * SLOTS + ((when >> (level as u32 * SLOT_BITS)) as usize & (SLOTS - 1))
}

/// The first occupied slot at or after `elapsed` and the tick at which the wheel reaches
/// it: (slot, tick); None when no slot is occupied.
fn next_occupied(elapsed: u64, occupied: &[u64; LEVELS]) -> Option<(usize, u64)> {
    for (level, &occupied) in occupied.iter().enumerate() {
        if occupied == 0 {
            continue;
        }
        let shift = level as u32 * SLOT_BITS;
        let slot_range = 1u64 << shift;
        let level_range = slot_range << SLOT_BITS;
        let pos = ((elapsed >> shift) as usize) & (SLOTS - 1);
        let slot = (pos + occupied.rotate_right(pos as u32).trailing_zeros() as usize) % SLOTS;
        let level_start = elapsed & !(level_range - 1);
        let mut tick = level_start + slot as u64 * slot_range;
        if slot < pos {
            tick += level_range;
        }
        return Some((level * SLOTS + slot, tick.max(elapsed)));
    }
    None
}
