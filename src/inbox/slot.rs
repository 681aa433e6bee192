//! A slot of the inbox's record queue (see `src/inbox/queue.rs`): 32 bytes, two to a
//! cache line. Its stamp holds the position of the record it holds and the record's
//! kind; the record itself is a post's handler (three words for a C callback) or another
//! record in 24 bytes ([`Other`]), untagged: the stamp's kind says which.

use super::Record;
use crate::sync::atomic::AtomicU64;
use crate::sync::UnsafeCell;
use std::mem::{ManuallyDrop, MaybeUninit};

/// A stamp's low bits: what the slot holds.
pub(super) const KIND_BITS: u32 = 2;
pub(super) const KIND_MASK: u64 = (1 << KIND_BITS) - 1;
/// Published: a post (which a cancel may take back).
pub(super) const POST: u64 = 1;
/// Published: another record.
pub(super) const OTHER: u64 = 2;
/// A post taken back by a cancel: the consumer skips it.
pub(super) const CANCELLED: u64 = 3;

/// The stamp of a slot that holds the record for `position`, of `kind`.
#[inline(always)]
pub(super) fn stamp(position: u64, kind: u64) -> u64 {
    position << KIND_BITS | kind
}

/// A record other than a post, as a slot holds it: 24 bytes, so that a slot (a
/// handler of three words, or this, and the stamp) is 32 bytes, two to a cache line.
pub(super) enum Other {
    /// The topic, a NUL, then the payload: the topic's length is where the first NUL
    /// is (a topic has none: it comes from a C string, and delivery reads it as one).
    Emit(Box<[u8]>),
    Done {
        id: u64,
        status: i32,
    },
    Job(crate::pool::JobRef),
}

/// A slot's record: which of the two it is, the slot's stamp says (POST or OTHER), so
/// it needs no tag of its own.
pub(super) union Payload<H> {
    pub(super) post: ManuallyDrop<H>,
    pub(super) other: ManuallyDrop<Other>,
}

impl<H> Payload<H> {
    /// The record, split into what the slot holds and its kind.
    #[inline(always)]
    pub(super) fn of(record: Record<H>) -> (Payload<H>, u64) {
        let other = match record {
            Record::Post { handler } => return (Payload { post: ManuallyDrop::new(handler) }, POST),
            Record::Emit { bytes, topic_len } => {
                debug_assert_eq!(bytes.iter().position(|&b| b == 0), Some(topic_len));
                Other::Emit(bytes)
            }
            Record::Done { id, status } => Other::Done { id, status },
            Record::Job(job) => Other::Job(job),
        };
        (Payload { other: ManuallyDrop::new(other) }, OTHER)
    }

    /// The record back, by the kind it was stored with (POST or OTHER).
    ///
    /// # Safety
    /// `kind` is what [`Payload::of`] returned with this payload.
    #[inline(always)]
    pub(super) unsafe fn into_record(self, kind: u64) -> Record<H> {
        if kind != OTHER {
            // SAFETY: stored as a post.
            return Record::Post { handler: ManuallyDrop::into_inner(unsafe { self.post }) };
        }
        // SAFETY: stored as another record.
        match ManuallyDrop::into_inner(unsafe { self.other }) {
            Other::Emit(bytes) => {
                let topic_len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
                Record::Emit { bytes, topic_len }
            }
            Other::Done { id, status } => Record::Done { id, status },
            Other::Job(job) => Record::Job(job),
        }
    }
}

pub(super) struct Slot<H> {
    pub(super) record: UnsafeCell<MaybeUninit<Payload<H>>>,
    /// `stamp(position, kind)` once the record for `position` is published.
    pub(super) stamp: AtomicU64,
}

#[cfg(all(test, not(loom)))]
mod tests {
    /// A handler of three words (a C callback, its user data and its free function)
    /// and the stamp: two slots to a cache line.
    #[test]
    fn a_slot_is_32_bytes() {
        assert_eq!(std::mem::size_of::<super::Other>(), 24);
        assert_eq!(std::mem::size_of::<super::Slot<[usize; 3]>>(), 32);
    }
}
