//! The inbox: how other threads hand work to a loop (posts and emitted events today,
//! finished tasks later), with one wake-up per batch rather than one per record.
//!
//! # Records
//!
//! Posts, events and other records travel through [`queue::Records`], a queue of
//! blocks of slots with no lock per record (its protocol is in `src/inbox/queue.rs`):
//! a producer claims a position with one compare-and-swap and publishes its record with
//! the slot's state; the consumer takes records in position order. A record's position
//! is its number (a post's id holds it).
//!
//! # Wake-up protocol
//!
//! State: the queue's tail index (producers' claims) and the consumer's position
//! `head`, `awake` (the consumer is in a pass and will look at the queue again before
//! it sleeps), and `bell` (a [`sys::Bell`] in the loop's poller, edge-triggered, so it
//! also wakes an embedding host: each ring is one edge, consumed by the loop's next
//! wait; the bell is never drained, which [`sys::Bell`] allows when edge-triggered).
//!
//! Producer (any thread):
//!   1. claim a position `seq`: a SeqCst read-modify-write of the tail index; write and
//!      publish the record;
//!   2. read `awake` and `head` (ordered after the claim: see crate::sync::after_rmw);
//!      if the consumer is not awake and `seq == head` (the record is the first after
//!      everything the consumer has taken), ring `bell`.
//!
//! (A task's completion may arrive after its loop was freed, when the bell's fd number
//! may name another file: see [`Inbox::ring`] for how a ring and `close` stay apart.)
//!
//! Consumer (the loop thread):
//!   - when a pass begins (after waiting): `awake = true`;
//!   - to take records: read the published slots from `head` on (under the inbox's
//!     lock, which only cancels contend for), moving `head`; then run them straight
//!     from their slots ([`Inbox::run_records`]). The bell is never drained:
//!     edge-triggered, each ring wakes one wait of the poller and leaves nothing behind
//!     to read;
//!   - before it waits again, and when `run` returns: `awake = false`, a SeqCst fence,
//!     then read the tail index; if a position at or past `head` is claimed, do not wait (or,
//!     leaving `run`, ring `bell` itself, so that an embedding host comes back), and set
//!     `awake` again: it will doze again before it waits. (A consumer that took records
//!     in its last pass first watches the next record's slot a little while, still
//!     awake: a stream's next record is likely a few ns away.)
//!
//! No lost wake-up: take the records whose claims the consumer's last look (`doze`, at
//! position `h`) did not see; the first of them is numbered `h` (the tail was `h`).
//! Its claim and `doze`'s store form a Dekker pair (two stores, two loads), so its
//! producer reads `awake` and `head` as `doze` left them or later: either the consumer
//! is asleep at `h`, and the producer rings, or it has woken since (`awake`, or `head`
//! past `h`), and its next `doze` comes after the claim in the SeqCst order and sees
//! it. Every other record not seen is behind that one. A take waits for a record
//! claimed and not yet published (see `src/inbox/queue.rs`).
//!
//! One wake-up per batch: only the producer of the record at `h` rings a consumer
//! asleep at `h`, however many records arrive before it wakes; while it is in passes,
//! producers never ring. A post is one compare-and-swap and a store; its id is its
//! position (nothing else is allocated for it).
//!
//! Each side of each Dekker pair in this file (this one, and `ringers`/`closed` with
//! `close`) is written store; SeqCst fence; load, and the load is Acquire: the fences,
//! one per side, are what orders the pair (the loom models in `src/loom_models/` check
//! it: remove one and they fail). Where the store is a read-modify-write on a hot path
//! (the claim, a task's give-back), the fence is `after_rmw` (see crate::sync). `givers`
//! needs no fence: see `give_back`.
//!
//! Finished tasks come back through a second, lock-free list (see [`Inbox::give_back`]):
//! the producer's compare-and-swap of `done` onto an empty list is its claim (and the
//! list's emptiness its `seq == head`), and `doze` reads `done` with the tail index,
//! so the same argument holds.

//! # Cancelling a post
//!
//! A post still queued is cancelled by its slot's stamp, under the inbox's lock (see
//! [`queue::Records::cancel`]), and its handler is handed to the canceller, on any
//! thread; the consumer skips the slot. A post the consumer has already taken and not
//! yet run (in the slice being dispatched) is still in its slot: only the loop thread
//! itself (a callback of that pass) can cancel it, the same way, since the consumer
//! reads those slots on that thread. For any other thread such a post counts as
//! started: without that rule the consumer would pay a read-modify-write per post to
//! settle the race.

mod block;
mod prefetch;
mod queue;
mod region;
mod slot;

use crate::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicUsize, Ordering::Acquire, Ordering::Relaxed, Ordering::SeqCst,
};
use crate::sync::{after_rmw, Life, Mutex, MutexGuard, LOAD_AFTER_RMW};
use crate::sys::{self, Bell};
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::ptr::NonNull;
use std::sync::Arc;

/// How a consumer that took records in its last pass watches the next record's slot
/// before it dozes (none under loom, whose models need no spin): [`DOZE_SPINS`] looks a
/// pause apart (about 1 us: a stream's next record is usually nanoseconds away), then
/// [`DOZE_YIELDS`] looks each after giving up the CPU (see [`Inbox::doze`]).
const DOZE_SPINS: u32 = if cfg!(loom) { 0 } else { 32 };
const DOZE_YIELDS: u32 = if cfg!(loom) { 0 } else { 16 };

/// The first word of a task cell given back to its loop: the completion list is a
/// stack of cells linked through it (see [`Inbox::give_back`]).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Link {
    next: *mut Link,
}

/// The completion list's head once the loop is gone.
const CLOSED: *mut Link = std::ptr::dangling_mut::<Link>();

pub enum Record<H> {
    /// A post: its id is made of its position in the queue.
    Post { handler: H },
    /// `bytes` holds the topic, a NUL, then the payload.
    Emit { bytes: Box<[u8]>, topic_len: usize },
    /// A task's work finished (or was abandoned) with no result: its completion.
    Done { id: u64, status: i32 },
    /// Work to run on the loop thread (tasks spawned with `Where::Loop`).
    Job(crate::pool::JobRef),
}

/// What cancelling a post did.
pub enum Cancel<H> {
    /// It had not started: here is its handler, to drop.
    Removed(H),
    /// It has started or finished (or never existed).
    NotFound,
}

/// What the inbox's lock guards: the consumer's takes and the cancels (never a post).
struct Queue {
    /// The bell; None once the inbox is closed.
    bell: Option<Bell>,
}

/// Keeps a field on a cache line of its own.
#[repr(align(64))]
struct Line<T>(T);

pub struct Inbox<H> {
    records: queue::Records<H>,
    queue: Line<Mutex<Queue>>,
    /// The consumer is in a pass and will look at the queue before it sleeps.
    awake: Line<AtomicBool>,
    /// Set when the loop is freed: later records are dropped, not queued.
    closed: AtomicBool,
    /// See [`Inbox::set_limit`].
    limit: AtomicUsize,
    /// Producers inside [`Inbox::ring`].
    ringers: AtomicUsize,
    /// Task cells given back (a stack, newest first), or CLOSED.
    done: Line<AtomicPtr<Link>>,
    /// After `close_done`: the cells still lent out, plus one while `close_done` runs.
    stragglers: AtomicUsize,
    /// Producers in `give_back` that push onto an empty list: they still read `awake`
    /// (and may ring) after their cell is handed over, when nothing else keeps the
    /// inbox alive, so `close_done` waits for them.
    givers: AtomicUsize,
    /// The memory of the loop's task cells (see [`Inbox::own_chunk`]).
    chunks: Mutex<Vec<(NonNull<u8>, std::alloc::Layout)>>,
    /// The bell's fd number to ring: rung by producers (after they release the queue
    /// lock) and by the loop itself; never drained (it is edge-triggered in the loop's
    /// poller). The queue owns (and `close` closes) the bell.
    bell: RawFd,
    /// The bell's fd number to poll (the same one where the bell is one descriptor).
    bell_poll: RawFd,
    /// The loom models' checks that nothing uses the inbox after the straggler
    /// protocol lets it go, or rings the bell after `close` (see `crate::sync::Life`).
    life: Life,
    bell_life: Life,
}

// SAFETY: the chunks are plain memory, freed once, by the inbox's drop.
unsafe impl<H: Send> Send for Inbox<H> {}
unsafe impl<H: Send> Sync for Inbox<H> {}

impl<H> Drop for Inbox<H> {
    fn drop(&mut self) {
        for (chunk, layout) in self.chunks.get_mut().unwrap_or_else(|p| p.into_inner()).drain(..) {
            // SAFETY: allocated with this layout, handed over by `own_chunk`; every cell
            // in it has been released (the inbox outlives every lent cell).
            unsafe { std::alloc::dealloc(chunk.as_ptr(), layout) };
        }
    }
}

impl<H> Inbox<H> {
    /// Takes ownership of a chunk of task cells, allocated with `layout`: the inbox
    /// lives as long as any cell is lent out (see [`Inbox::close_done`]), so the chunk
    /// is freed with it.
    pub fn own_chunk(&self, chunk: NonNull<u8>, layout: std::alloc::Layout) {
        self.chunks.lock().unwrap_or_else(|p| p.into_inner()).push((chunk, layout));
    }

    pub fn new() -> std::io::Result<Inbox<H>> {
        let bell = Bell::new()?;
        Ok(Inbox {
            bell: bell.ring_fd(),
            bell_poll: bell.as_raw_fd(),
            records: queue::Records::new(),
            queue: Line(Mutex::new(Queue { bell: Some(bell) })),
            awake: Line(AtomicBool::new(false)),
            closed: AtomicBool::new(false),
            limit: AtomicUsize::new(0),
            ringers: AtomicUsize::new(0),
            done: Line(AtomicPtr::new(std::ptr::null_mut())),
            stragglers: AtomicUsize::new(0),
            givers: AtomicUsize::new(0),
            chunks: Mutex::new(Vec::new()),
            life: Life::default(),
            bell_life: Life::default(),
        })
    }

    /// The bell's fd, for the loop's poller.
    pub fn bell_fd(&self) -> RawFd {
        self.bell_poll
    }

    /// The bell's fd to ring.
    pub fn bell_ring_fd(&self) -> RawFd {
        self.bell
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a record (a post, an event, a task's completion or loop-side work);
    /// returns its number (0 when the inbox is closed: the record is dropped, nobody is
    /// left to deliver it to).
    #[inline]
    pub fn push(&self, record: Record<H>) -> u64 {
        self.queue(|records| records.push(record))
    }

    /// Queues a record with `push` (which holds it: dropped unqueued when the inbox is
    /// closed), then rings if the consumer dozes (the protocol above).
    #[inline(always)]
    fn queue(&self, push: impl FnOnce(&queue::Records<H>) -> u64) -> u64 {
        if self.closed.load(Acquire) {
            drop(push);
            return 0;
        }
        let seq = push(&self.records);
        // The Dekker pair with `doze`: the claim (a SeqCst read-modify-write), then
        // `awake` and `head` read (see crate::sync::after_rmw).
        after_rmw();
        if !self.awake.0.load(LOAD_AFTER_RMW) && seq == self.records.head_after_fence() {
            self.ring();
        }
        seq
    }

    /// Rings the bell unless the inbox is closed (its fd then may name another file).
    /// `ringers` and `closed` form a Dekker pair with `close`, which waits until no
    /// ringer is inside before it closes the fd: so the ring costs no lock.
    fn ring(&self) {
        self.ringers.fetch_add(1, SeqCst);
        fence(SeqCst); // the Dekker pair with `close`
        if !self.closed.load(Acquire) {
            self.bell_life.touch();
            sys::ring(self.bell);
        }
        self.ringers.fetch_sub(1, SeqCst);
    }

    /// Queues a post; returns its sequence number.
    #[inline(always)]
    pub fn post(&self, handler: H) -> u64 {
        self.queue(|records| records.push_post(handler))
    }

    pub fn emit(&self, topic: &str, payload: &[u8]) {
        let mut bytes = Vec::with_capacity(topic.len() + 1 + payload.len());
        bytes.extend_from_slice(topic.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(payload);
        let record = Record::Emit { bytes: bytes.into_boxed_slice(), topic_len: topic.len() };
        self.push(record);
    }

    /// Wakes the loop without a record (stop, or a change it must notice).
    /// Only while the loop is alive (its own calls), never after `close`.
    pub fn wake(&self) {
        sys::ring(self.bell);
    }

    /// True when posts, events or other records (not completions) are queued (or
    /// claimed, about to be published).
    pub fn has_queued(&self) -> bool {
        self.records.has_records()
    }

    /// True when records are queued that the consumer has not taken.
    /// Whether the post numbered `seq` has not run yet (see
    /// [`queue::Records::is_pending`]).
    pub fn is_pending(&self, seq: u64) -> bool {
        self.records.is_pending(seq)
    }

    /// How many records wait to run (see [`queue::Records::queued`]).
    pub fn queued(&self) -> u64 {
        self.records.queued()
    }

    pub fn has_records(&self) -> bool {
        let done = self.done.0.load(Acquire);
        self.records.has_records() || !(done.is_null() || done == CLOSED)
    }

    /// Pushes a task cell (starting with its [`Link`]) onto the completion list, and
    /// rings the bell when the list was empty and the consumer dozes (the protocol
    /// above). False if the loop has closed the list: the caller keeps the cell.
    ///
    /// A push onto a non-empty list touches nothing of the inbox after its exchange
    /// (the cell it hands over is what keeps the inbox alive). A push onto an empty one
    /// still reads `awake` and may ring: it first counts itself in `givers`, then looks
    /// at the head again; `close_done` closes the list and then waits for `givers` to
    /// drop to zero. Either the giver's exchange finds the list closed (and it keeps its
    /// cell), or the exchange came first: then `close_done`'s swap reads it (a
    /// read-modify-write reads the latest value, and acquires it), so it sees the count
    /// the giver raised before, and waits until the giver is done with the inbox.
    pub fn give_back(&self, cell: NonNull<Link>) -> bool {
        let mut pinned = false;
        let mut head = self.done.0.load(Acquire);
        loop {
            if head == CLOSED {
                if pinned {
                    self.givers.fetch_sub(1, SeqCst);
                }
                return false;
            }
            if head.is_null() && !pinned {
                self.givers.fetch_add(1, SeqCst);
                pinned = true;
                head = self.done.0.load(Acquire);
                continue;
            }
            // SAFETY: the cell is the caller's until the exchange publishes it.
            unsafe { cell.as_ptr().write(Link { next: head }) };
            match self.done.0.compare_exchange_weak(head, cell.as_ptr(), SeqCst, Acquire) {
                Ok(_) => break,
                Err(now) => head = now,
            }
        }
        // Onto an empty list: the Dekker pair with `doze`, as in `push`; the
        // store is the exchange, a SeqCst RMW (see crate::sync::after_rmw: no fence per
        // task outside loom).
        if head.is_null()
            && !{
                after_rmw();
                self.life.touch();
                self.awake.0.load(LOAD_AFTER_RMW)
            }
        {
            self.ring();
        }
        if pinned {
            self.givers.fetch_sub(1, SeqCst);
        }
        true
    }

    /// Takes the cells given back, oldest first, into `cells`; returns how many.
    pub fn take_done<T>(&self, cells: &mut VecDeque<NonNull<T>>) -> usize {
        if self.done.0.load(Relaxed).is_null() {
            return 0;
        }
        let list = self.done.0.swap(std::ptr::null_mut(), SeqCst);
        let at = cells.len();
        let mut link = list;
        while !link.is_null() {
            // SAFETY: a cell on the list is the consumer's now; its first word links it.
            let next = unsafe { (*link).next };
            cells.push_back(NonNull::new(link.cast()).expect("non-null"));
            link = next;
        }
        cells.make_contiguous()[at..].reverse();
        cells.len() - at
    }

    /// Closes the completion list (the loop is being freed): hands every cell on it to
    /// `free`. `lent` cells are still with pools: they will find the list closed and
    /// free themselves, and the last one calls [`Inbox::straggler_gone`], which drops
    /// `keep`, a reference to this inbox (from `Arc::into_raw`) that keeps it alive
    /// until then. With nothing lent, `keep` is dropped here.
    ///
    /// # Safety
    /// `keep` is a reference to this inbox from `Arc::into_raw`, handed over: it must
    /// not be used again by the caller.
    pub unsafe fn close_done<T>(&self, lent: usize, keep: *const Inbox<H>, mut free: impl FnMut(NonNull<T>)) {
        debug_assert!(std::ptr::eq(keep, self));
        // Counted before the list closes: a straggler can only decrement after.
        self.stragglers.store(lent + 1, SeqCst);
        let mut link = self.done.0.swap(CLOSED, SeqCst);
        // A giver that pushed onto an empty list before the swap may still read the
        // inbox: wait for it (see `give_back`).
        while self.givers.load(Acquire) != 0 {
            crate::sync::yield_now();
        }
        let mut freed = 0;
        while !link.is_null() {
            // SAFETY: as in take_done.
            let next = unsafe { (*link).next };
            free(NonNull::new(link.cast()).expect("non-null"));
            freed += 1;
            link = next;
        }
        // SAFETY: `keep` is the reference close_done was given.
        unsafe { Self::stragglers_gone(keep, freed + 1) }
    }

    /// A pool freed a cell of this closed inbox.
    ///
    /// # Safety
    /// `inbox` is a closed inbox whose `close_done` counted the cell.
    pub unsafe fn straggler_gone(inbox: *const Inbox<H>) {
        unsafe { Self::stragglers_gone(inbox, 1) }
    }

    unsafe fn stragglers_gone(inbox: *const Inbox<H>, n: usize) {
        // SAFETY: alive until the count reaches zero, which happens once.
        if unsafe { &*inbox }.stragglers.fetch_sub(n, SeqCst) == n {
            unsafe { &*inbox }.life.end();
            drop(unsafe { Arc::from_raw(inbox) });
        }
    }

    /// The consumer begins a pass: producers need not ring until it dozes.
    pub fn wake_up(&self) {
        // Relaxed: a producer that reads `true` skips its ring only when the consumer's
        // next `doze` (store, fence, load) will see its claim (see the protocol). Stored
        // only when it changes (only the consumer writes it, so the load reads its own
        // last store): a pass after a doze that found records (`awake` stayed true)
        // then leaves the line in the producers' caches, which read it on every post.
        if !self.awake.0.load(Relaxed) {
            self.awake.0.store(true, Relaxed);
        }
    }

    /// The consumer is about to wait (or to leave `run`); true if records are queued,
    /// in which case it must not wait for the bell (see the protocol).
    /// `to_wait` says it would wait for the bell (not a `run(NoWait)` pass, nor `run`
    /// returning): only then is a short watch of the tail worth it.
    pub fn doze(&self, to_wait: bool) -> bool {
        // SAFETY: the consumer (the loop's thread).
        let took = unsafe { self.records.took_since_doze() };
        if took && to_wait {
            // Records came in since the last doze: a stream, whose next record is
            // likely a few ns away. Watch for it a little while still awake (so
            // producers do not ring) before telling producers to ring: a consumer that
            // has just caught up would otherwise sleep, and its producer pay a ring
            // (a system call, and the consumer's wake-up) every few hundred records.
            //
            // First a few pauses, then yields: a producer that shares this CPU (the
            // scheduler puts a woken loop beside its waker when the other CPUs are
            // busy) cannot post while the loop spins. Spinning there cost a ring per
            // record or so: the loop woke, took the one record, spun, slept; the
            // producer posted one more and rang (about 15 us a record, seen with
            // `perf sched timehist` on a loaded 2-CPU VM). A yield lets that producer
            // run on, and fill a batch; with a CPU to itself, a yield returns at once.
            //
            // It watches the next record's slot, not the tail index (see
            // `queue::Records::head_published`): the producer keeps the tail's line.
            for look in 0..DOZE_SPINS + DOZE_YIELDS {
                // SAFETY: the consumer (the loop's thread).
                if unsafe { self.records.head_published() } {
                    return true;
                }
                if look < DOZE_SPINS {
                    std::hint::spin_loop();
                } else {
                    crate::sync::yield_now();
                }
            }
        }
        // A plain store: the fence orders the pair (one locked instruction, not two).
        self.awake.0.store(false, Relaxed);
        fence(SeqCst); // the Dekker pair with the producers (see crate::sync)
        let queued = self.records.has_records();
        // Only a doze that took records since the last one has blocks or a region to
        // give back (records taken or queued since are met by a later doze): a pass
        // with no records (fd_pingpong's every pass) skips its lock and its loops.
        if !queued && took {
            // SAFETY: the consumer (the loop's thread).
            unsafe { self.records.idle() };
        }
        let done = self.done.0.load(Acquire);
        let queued = queued || !(done.is_null() || done == CLOSED);
        if queued {
            // It will not wait, and dozes again before it does: producers need not
            // ring meanwhile (a consumer that has taken up to the tail would otherwise
            // have the next record's producer ring in every pass).
            self.awake.0.store(true, Relaxed);
        }
        queued
    }

    /// At most this many records per `take` (0: all of them).
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Relaxed);
    }

    /// The limit [`Inbox::set_limit`] set.
    pub fn limit(&self) -> usize {
        self.limit.load(Relaxed)
    }

    /// Takes the queued records: all of them, or the first `max` (the loop's pass
    /// limit, less what the pass has run already; the rest stay queued, so the consumer
    /// does not sleep on them and an embedding host's fd stays readable). The consumer
    /// then runs them with [`Inbox::run_records`], straight from the queue's slots.
    ///
    /// Returns how many it took, the number of the first record not taken, and the
    /// number after the last record queued now: once the consumer has run what it took,
    /// every record numbered below the first has been dispatched.
    pub fn take(&self, max: usize) -> (usize, u64, u64) {
        self.take_until(max, u64::MAX)
    }

    /// [`Inbox::take`], and none numbered at or past `until`: to dispatch what one take
    /// would have taken in slices (`until` is the end the first slice returned).
    pub fn take_until(&self, max: usize, until: u64) -> (usize, u64, u64) {
        // The bell is edge-triggered in the loop's poller (see `Loop::inner_set`): it
        // need not be drained, which saves the consumer a read per wake-up.
        let queue = self.lock();
        // SAFETY: the consumer, under the lock.
        let (taken, end) = unsafe { self.records.take(max, until) };
        drop(queue);
        (taken, self.records.head(), end)
    }

    /// The next record taken and not yet run, with its number (the consumer's thread
    /// alone, the loop's); None when every record taken has been handed out.
    #[inline]
    pub fn next_record(&self) -> Option<(u64, Record<H>)> {
        // SAFETY: the loop's thread, the only consumer (see `Loop::run`'s runner lock).
        unsafe { self.records.next() }
    }

    /// Hands the records taken and not yet run to `f`, in order, with their numbers,
    /// while it returns true (the consumer's thread alone, the loop's): what
    /// [`Inbox::next_record`] does in a loop, with the queue's cursors in registers.
    #[inline(always)]
    pub fn run_records(&self, f: impl FnMut(u64, Record<H>) -> bool) {
        // SAFETY: the loop's thread, the only consumer (see `Loop::run`'s runner lock).
        unsafe { self.records.run(f) }
    }

    /// True once [`Inbox::close_done`] has run.
    pub fn done_closed(&self) -> bool {
        self.done.0.load(SeqCst) == CLOSED
    }

    /// Cancels post `seq` if it has not started. `on_consumer` says the caller is the
    /// consumer's own thread (the only one that may cancel a post already taken).
    pub fn cancel_post(&self, seq: u64, on_consumer: bool) -> Cancel<H> {
        let queue = self.lock();
        // SAFETY: under the lock; `on_consumer` as the caller says.
        let record = unsafe { self.records.cancel(seq, on_consumer) };
        drop(queue);
        match record {
            Some(Record::Post { handler }) => Cancel::Removed(handler),
            Some(_) => unreachable!("only a post's slot is cancelled"),
            None => Cancel::NotFound,
        }
    }

    /// Closes the inbox and empties it (the loop is being freed). A producer that saw
    /// the inbox open may still publish a record after this: the queue's drop drops it,
    /// when the last straggler lets the inbox go.
    pub fn close(&self) -> VecDeque<Record<H>> {
        let mut queue = self.lock();
        self.closed.store(true, SeqCst);
        // SAFETY: the consumer (the loop being freed), under the lock.
        unsafe { self.records.take(usize::MAX, u64::MAX) };
        let records: VecDeque<_> = std::iter::from_fn(|| self.next_record()).map(|(_, record)| record).collect();
        let bell = queue.bell.take();
        drop(queue);
        fence(SeqCst); // the Dekker pair with `ring`
                       // A producer that saw the inbox open may still be ringing: wait for it.
        while self.ringers.load(Acquire) != 0 {
            crate::sync::yield_now();
        }
        self.bell_life.end();
        drop(bell); // closed now: nobody rings it any more
        records
    }
}
