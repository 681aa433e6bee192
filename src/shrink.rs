//! Giving memory back after a burst: the loop's queues and buffers keep the capacity
//! they needed at their busiest unless something shrinks them, so an idle loop that
//! once took a million posts (or held a million timers) would keep tens of MB until it
//! is freed. These helpers shrink a buffer when it is both large (above [`FLOOR`]
//! entries) and mostly unused (the last use filled under a quarter of it), to twice
//! that use. The quarter is the hysteresis: a buffer that grows by doubling is at
//! least half full at its steady size, so steady traffic never reallocates, and a
//! shrink leaves room for twice the use that caused it.

use std::collections::VecDeque;

/// Buffers at or below this many entries are never shrunk.
pub(crate) const FLOOR: usize = 1024;

/// True when a buffer of `capacity` entries whose last use was `used` should shrink.
#[inline]
pub(crate) fn wanted(capacity: usize, used: usize) -> bool {
    capacity > FLOOR && used < capacity / 4
}

/// The capacity a buffer shrinks to after a use of `used` entries.
#[inline]
pub(crate) fn target(used: usize) -> usize {
    FLOOR.max(2 * used)
}

/// Shrinks `v` if its last use was `used` entries (see the module comment).
#[inline]
pub(crate) fn vec<T>(v: &mut Vec<T>, used: usize) {
    if wanted(v.capacity(), used) {
        shrink_vec(v, used);
    }
}

#[cold]
fn shrink_vec<T>(v: &mut Vec<T>, used: usize) {
    v.shrink_to(target(used.max(v.len())));
}

/// Shrinks `q` if its last use was `used` entries (see the module comment).
#[inline]
pub(crate) fn deque<T>(q: &mut VecDeque<T>, used: usize) {
    if wanted(q.capacity(), used) {
        shrink_deque(q, used);
    }
}

#[cold]
fn shrink_deque<T>(q: &mut VecDeque<T>, used: usize) {
    q.shrink_to(target(used.max(q.len())));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinks_only_large_mostly_unused_buffers() {
        let mut v: Vec<u32> = Vec::with_capacity(1 << 20);
        vec(&mut v, 300_000); // over a quarter used: kept
        assert!(v.capacity() >= 1 << 20);
        vec(&mut v, 1000);
        assert!(v.capacity() >= FLOOR && v.capacity() < 4 * FLOOR);
        let cap = v.capacity();
        vec(&mut v, cap / 4); // a quarter used: kept
        assert_eq!(v.capacity(), cap);
        vec(&mut v, 0);
        assert_eq!(v.capacity(), FLOOR);
        vec(&mut v, 0); // at the floor: kept
        assert_eq!(v.capacity(), FLOOR);

        let mut q: VecDeque<u64> = (0..100_000).collect();
        q.clear();
        deque(&mut q, 5000);
        assert!(q.capacity() >= 10_000 && q.capacity() < 40_000);
        // Never below what it holds.
        let mut q: VecDeque<u64> = VecDeque::with_capacity(1 << 16);
        q.extend(0..3000);
        deque(&mut q, 0);
        assert!(q.capacity() >= 3000 && q.len() == 3000);
    }
}
