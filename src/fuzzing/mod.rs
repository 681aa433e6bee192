//! What the fuzz targets drive (`fuzz/`, cargo-fuzz and libFuzzer), and what
//! `tests/fuzz_corpus.rs` replays their committed corpus through on stable Rust. Not
//! part of weft's API: each function takes arbitrary bytes, drives the real code with
//! them, and panics when one of weft's promises does not hold.
//!
//! * [`frames`]: the parent's reader of the child→parent pipe protocol, fed in the
//!   splits the bytes choose, against a whole-stream reference decoder and a bound on
//!   what it buffers.
//! * [`topics`]: topic patterns and topics (parsing, matching, the subscriber index,
//!   and `weft_subscribe`/`weft_emit`/delivery through the C ABI) against a reference
//!   matcher written from the documented rules.
//! * [`api`]: a sequence of C ABI calls on a loop, bad input included, checked against a
//!   model: every `free_fn` runs exactly once, every `done` at most once (exactly once
//!   when the loop is drained), no callback after a successful cancel, and cancel's
//!   result wherever the model can know it.

mod api;
mod frames;
mod topics;

pub use api::api_sequence;
pub use frames::frames;
pub use topics::topics;

/// The fuzzer's bytes, read front to back; a read past the end gives zeros, so every
/// input is a valid program.
pub(crate) struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub(crate) fn u8(&mut self) -> u8 {
        let (&first, rest) = self.data.split_first().unwrap_or((&0, &[]));
        self.data = rest;
        first
    }

    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub(crate) fn u64(&mut self) -> u64 {
        (self.u32() as u64) | (self.u32() as u64) << 32
    }

    /// Up to `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// The rest.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.data.len())
    }
}
