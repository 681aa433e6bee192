//! The owner's side of its timer table (`table.rs`): its wheel, the head of its free
//! records, and its counts. Only the loop's owner touches it (`crate::r#loop` owner.rs).

/// The owner's side of the table: its free records, its wheel, and how many timers it
/// holds.
pub struct OwnTimers {
    pub wheel: super::LazyWheel,
    /// The free records' indices (the last freed is reused first, while it is likely
    /// still in the cache).
    pub(super) free: Vec<u32>,
    /// Timers scheduled and not yet ended by the owner (cancelled by another thread
    /// and not yet met included).
    pub(super) live: usize,
    /// Owner's cancels left before it looks at its wheel's stale entries (those of
    /// timers it cancelled before they came out): at most `live`, so that the cancel
    /// that ends the last timer looks too. A cancel counts it down and nothing more.
    pub(super) budget: usize,
    /// Records of timers other threads cancelled that the owner has reclaimed since it
    /// last looked ([`take_reclaimed`](Self::take_reclaimed)).
    pub(super) reclaimed: usize,
    /// The index after the last record of the chunks made so far: a record never used
    /// below it needs no new chunk (`fast.rs`). 0 until the first chunk.
    pub(super) fresh_end: u32,
}

impl OwnTimers {
    pub fn new(base_ns: u64) -> OwnTimers {
        OwnTimers {
            wheel: super::LazyWheel::new(base_ns),
            free: Vec::new(),
            live: 0,
            budget: 0,
            reclaimed: 0,
            fresh_end: 0,
        }
    }

    /// How many records of timers other threads cancelled were reclaimed since the last
    /// call (when a cancelled timer's entry came out of the wheel, or stale entries were
    /// dropped).
    #[inline]
    pub fn take_reclaimed(&mut self) -> usize {
        if self.reclaimed == 0 {
            return 0; // the common case, without a store
        }
        std::mem::take(&mut self.reclaimed)
    }

    #[inline]
    pub fn live(&self) -> usize {
        self.live
    }
}
