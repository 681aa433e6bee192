//! Tasks on the loop and on pools: spawning them (in the slab, or without a lock in the
//! task table when the loop's owner spawns: owner.rs), cancelling a task of the table, and
//! serving the completions that come back (`done`).

use super::owner::{Own, Owned};
use super::{registering, Cell, Core, Event, Handler, Kind, Loop, PoolLookup, SpawnOptions, Submit, Target};
use crate::error::{Code, Error, Result};
use crate::inbox::Record;
use crate::pool::{self, Pool};
use crate::process;
use crate::slots::{self, Id};
use crate::sys;
use crate::task::{self, Back, TaskCell, TaskWork, Where};
use crate::timer;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, MutexGuard};

/// How many entries the owner's handler list grows by at a time (24 KiB of C handlers).
const HANDLERS_STEP: usize = 1024;

impl<H: Handler> Loop<H> {
    // ---- tasks -------------------------------------------------------------------------

    /// Runs `work` where `place` says and calls `done` on the loop thread once, with the
    /// work's status and result (or `Cancelled` / `Timeout`). `work` is dropped once
    /// both the loop and the pool are done with the task (its work may outlive `done`).
    pub fn spawn(&self, place: Where, work: H::Work, done: H, options: SpawnOptions) -> Result<Id> {
        let mut work = Some(work);
        let result = registering(done, |done| self.add_task(place, &mut work, done, options));
        if let Some(work) = work {
            work.refused();
        }
        result
    }

    /// `spawn` on a pool (`Where::Io` or `Where::Cpu`) with default options but for the
    /// pool (`pool_handle`, as in [`SpawnOptions`]; None: the default pool): the common
    /// spawn, made without the other options' checks. The loop's owner registers the
    /// task in the task table (see `lend_owned`); anyone else, or a full table, takes
    /// `spawn`'s way.
    #[inline(always)]
    pub fn spawn_on_pool(
        &self,
        place: Where,
        pool_handle: Option<(usize, PoolLookup<'_>)>,
        work: H::Work,
        done: H,
    ) -> Result<Id> {
        let (kind, default_key) = match place {
            Where::Io => (pool::Kind::Io, task::DEFAULT_IO),
            Where::Cpu => (pool::Kind::Cpu, task::DEFAULT_CPU),
            _ => return self.spawn(place, work, done, SpawnOptions { pool_handle, ..Default::default() }),
        };
        let default = || task::default_pool(kind);
        let (key, resolve) = pool_handle.unwrap_or((default_key, &default));
        let (mut work, mut done) = (Some(work), Some(done));
        let owned = match self.usable() {
            Ok(()) => self.as_owner(|own, how| self.lend_owned(own, how, key, kind, resolve, &mut work, &mut done)),
            Err(e) => Some(Err(e)),
        };
        let result = match owned {
            Some(Ok(Some(id))) => Ok(id),
            Some(Err(e)) => Err(e),
            // Another thread owns the loop, or the table is full: the slab takes the
            // task (or refuses it, Busy), under the lock, without a second try as owner.
            None | Some(Ok(None)) => {
                self.queue_task_locked(Target::Cached { key, kind, resolve }, &mut work, &mut done, 0)
            }
        };
        // Refused: the caller keeps its user data (no free_fn).
        if let Some(work) = work {
            work.refused();
        }
        if let Some(done) = done {
            done.refused();
        }
        result
    }

    fn add_task(
        &self,
        place: Where,
        work: &mut Option<H::Work>,
        done: &mut Option<H>,
        options: SpawnOptions,
    ) -> Result<Id> {
        self.usable()?;
        Self::check_delay("timeout_ms", options.timeout_ms)?;
        let timeout_ms = options.timeout_ms;
        let given = options.pool.is_some() || options.pool_handle.is_some();
        let fds_set = options.fds != process::Fds::default();
        if place != Where::Process && (options.reuse_child || options.host_fork.is_some() || fds_set) {
            let what = if options.reuse_child {
                "reuse_child"
            } else if options.host_fork.is_some() {
                "fork_fn"
            } else if options.fds.inherit {
                "inherit_fds"
            } else {
                "keep_fds"
            };
            return Err(Error::invalid(format!("options.{what} is set, but only process tasks fork")));
        }
        match (place, given) {
            (Where::Process, true) => Err(Error::invalid("options.pool is set, but process tasks use no pool")),
            (Where::Process, false) => {
                let plan = process::Plan {
                    max_children: options.max_children,
                    host_fork: options.host_fork,
                    reuse: options.reuse_child,
                    fds: options.fds,
                };
                self.add_process(work, done, timeout_ms, plan)
            }
            (Where::Loop, true) => Err(Error::invalid("options.pool is set, but tasks on the loop use no pool")),
            (Where::Loop, false) => self.queue_task(Target::Loop, work, done, timeout_ms),
            (Where::Io | Where::Cpu, _) => {
                let kind = if place == Where::Io { pool::Kind::Io } else { pool::Kind::Cpu };
                let default = || task::default_pool(kind);
                let target = match (options.pool, options.pool_handle) {
                    (Some(pool), _) => {
                        Self::check_pool(pool, kind)?;
                        Target::Pool(pool)
                    }
                    (None, Some((key, resolve))) => Target::Cached { key, kind, resolve },
                    (None, None) => Target::Cached {
                        key: if kind == pool::Kind::Io { task::DEFAULT_IO } else { task::DEFAULT_CPU },
                        kind,
                        resolve: &default,
                    },
                };
                self.queue_task(target, work, done, timeout_ms)
            }
        }
    }

    fn check_pool(pool: &Pool, wanted: pool::Kind) -> Result<()> {
        if pool.kind() != wanted {
            return Err(Error::invalid(format!(
                "options.pool is a {:?} pool, but the task is for the {:?} pool",
                pool.kind(),
                wanted
            )));
        }
        if pool.is_shut_down() {
            return Err(Error::new(Code::Closed, "options.pool has been freed"));
        }
        Ok(())
    }

    /// The pool cached as `key` in `core`, if it was cached since the last change of
    /// pools (a stale entry is moved to `evicted`, to drop without the lock).
    fn cached_pool(
        core: &mut Core<H>,
        key: usize,
        epoch: u64,
        evicted: &mut Vec<(Arc<Pool>, Option<pool::Feeder>)>,
    ) -> Option<usize> {
        if let Some(at) = core.pools.iter().position(|(k, e, _, _)| *k == key && *e == epoch) {
            return Some(at);
        }
        while let Some(at) = core.pools.iter().position(|(k, e, _, _)| *k == key || *e != epoch) {
            let (_, _, pool, feeder) = core.pools.swap_remove(at);
            evicted.push((pool, feeder));
        }
        None
    }

    /// Registers a task and queues its job where `target` says.
    fn queue_task(
        &self,
        target: Target<'_>,
        work: &mut Option<H::Work>,
        done: &mut Option<H>,
        timeout_ms: u64,
    ) -> Result<Id> {
        if let Target::Cached { key, kind, resolve } = target {
            if timeout_ms == 0 {
                let owned = self.as_owner(|own, how| self.lend_owned(own, how, key, kind, resolve, work, done));
                if let Some(id) = owned.transpose()?.flatten() {
                    return Ok(id);
                }
            }
        }
        self.queue_task_locked(target, work, done, timeout_ms)
    }

    /// `queue_task` under the loop's lock: the task goes to the slab.
    fn queue_task_locked(
        &self,
        target: Target<'_>,
        work: &mut Option<H::Work>,
        done: &mut Option<H>,
        timeout_ms: u64,
    ) -> Result<Id> {
        let mut evicted = Vec::new();
        let mut resolved: Option<Arc<Pool>> = None;
        let mut held: Option<Arc<Pool>> = None;
        let result = loop {
            let mut core = self.lock();
            // A pool named by a key: cached in the loop, so a spawn costs no lookup (and
            // no reference count); found (without the lock) the first time and after any
            // pool was freed (the cache holds a reference: a pool freed meanwhile is
            // still alive here, and a job submitted to it is abandoned, as when the free
            // races a submission anyway).
            let submit = match target {
                Target::Loop => Submit::Loop,
                Target::Pool(pool) => Submit::Pool(pool),
                Target::Cached { key, kind, resolve } => {
                    let epoch = task::pool_epoch();
                    let at = match Self::cached_pool(&mut core, key, epoch, &mut evicted) {
                        Some(at) => at,
                        None => match resolved.take() {
                            Some(pool) => {
                                let feeder = pool.feeder();
                                core.pools.push((key, epoch, pool, feeder));
                                core.pools.len() - 1
                            }
                            None => {
                                drop(core);
                                resolved = Some(resolve()?);
                                continue;
                            }
                        },
                    };
                    let (_, _, pool, feeder) = &core.pools[at];
                    if let Err(e) = Self::check_pool(pool, kind) {
                        break Err(e);
                    }
                    match feeder {
                        // SAFETY: the feeder stays in the cache while the lock is held,
                        // and lend_task feeds it before it releases the lock.
                        Some(feeder) => Submit::Feeder(unsafe { &*(feeder as *const pool::Feeder) }),
                        // Submitted after the lock is released (see lend_task).
                        None => Submit::Pool(held.insert(pool.clone())),
                    }
                }
            };
            break self.lend_task(core, submit, work, done, timeout_ms);
        };
        drop(held);
        drop(resolved);
        drop(evicted); // pools freed meanwhile: dropped without the lock
        result
    }

    /// For the loop's owner, a task without a timeout for a pool: registered in the task
    /// table and queued on the loop's own feeder of a CPU pool (staged inside a
    /// callback), or submitted to an IO pool, with no lock of the loop's (see
    /// owner.rs). None if the table is full: the caller registers it in the slab.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn lend_owned(
        &self,
        own: &mut Own<H>,
        how: Owned,
        key: usize,
        kind: pool::Kind,
        resolve: &dyn Fn() -> Result<Arc<Pool>>,
        work: &mut Option<H::Work>,
        done: &mut Option<H>,
    ) -> Result<Option<Id>> {
        let epoch = task::pool_epoch();
        // Resolving a pool and dropping one run no user code on this thread, so `own`
        // stays the only borrow of the owner's state. The first entry is looked at
        // first: a loop spawns on one pool, as a rule.
        let first = own.pools.first().is_some_and(|&(k, e, _, _)| k == key && e == epoch);
        let found = if first { Some(0) } else { own.pools.iter().position(|&(k, e, _, _)| k == key && e == epoch) };
        let at = match found {
            Some(at) => at,
            None => {
                own.pools.retain(|&(_, e, _, _)| e == epoch);
                let pool = resolve()?;
                Self::check_pool(&pool, kind)?;
                let feeder = pool.staging_feeder();
                own.pools.push((key, epoch, pool, feeder));
                own.pools.len() - 1
            }
        };
        let (_, _, pool, feeder) = &own.pools[at];
        Self::check_pool(pool, kind)?;
        let (id, job) =
            match self.table.lend(&mut own.lender, self.tag, &self.inbox, work.take().expect("not taken yet")) {
                Ok((id, _, job)) => (id, job),
                Err(back) => {
                    // The table is full: the slab takes the task (or refuses it, Busy).
                    *work = Some(back);
                    return Ok(None);
                }
            };
        let index = slots::task_index(id) as usize;
        if index >= own.handlers.len() {
            // In steps: a fresh table grows by one cell a spawn.
            own.handlers.resize_with(index + HANDLERS_STEP, || None);
        }
        own.handlers[index] = done.take();
        self.table_live.store(self.table_live.load(Relaxed) + 1, Relaxed);
        // A pool shutting down meanwhile abandons the job: done(Cancelled).
        match (feeder, how) {
            // Staged: published when the callback returns (or the stage fills).
            (Some(feeder), Owned::Running) => drop(feeder.submit(job)),
            // Outside `run`, no callback's end publishes: staged on the feeder's stage,
            // which the pool's workers take from themselves (pool/stage.rs). (This
            // thread may be inside another loop's callback; that loop's end of callback
            // must not touch this loop's feeder, which the next owner uses.)
            (Some(feeder), Owned::Gate) => drop(feeder.submit_now(job)),
            (None, _) => drop(pool.submit(job)),
        }
        Ok(Some(id))
    }

    /// Registers a task and lends its cell where `submit` says: to a CPU pool's feeder
    /// under the lock (the feeder's pushes need it, and take no lock of their own), to
    /// a pool (an IO pool's submission takes its mutex and may start a thread) or to
    /// this loop's inbox after the lock is released.
    fn lend_task(
        &self,
        mut core: MutexGuard<'_, Core<H>>,
        submit: Submit<'_>,
        work: &mut Option<H::Work>,
        done: &mut Option<H>,
        timeout_ms: u64,
    ) -> Result<Id> {
        let (id, job) = {
            // Reserved first: the cell needs the id.
            let (id, index) = self.register(&mut core, done, Kind::Reserved)?;
            let work = work.take().expect("not taken yet");
            let (side, job) = TaskCell::lend(&mut core.cells, id, &self.inbox, work, timeout_ms > 0);
            core.entries.set_kind(index, Kind::Task(side));
            if timeout_ms > 0 {
                core.wheel.insert(index, sys::now_ns() + timeout_ms * timer::NS_PER_MS);
                self.rearm(&mut core);
            }
            (id, job)
        };
        // A pool shutting down meanwhile abandons the job: done(Cancelled).
        match submit {
            // On the feeder's stage (one submitter at a time: this lock's holder),
            // which the pool's workers take from (pool/stage.rs).
            Submit::Feeder(feeder) => {
                drop(feeder.submit_now(job));
                drop(core);
            }
            Submit::Pool(pool) => {
                drop(core);
                drop(pool.submit(job));
            }
            Submit::Loop => {
                drop(core);
                self.inbox.push(Record::Job(job));
            }
        }
        Ok(id)
    }

    /// Cancels a task of the task table, from any thread (as a task in the slab: see
    /// `cancel`). The table's `ends` lock keeps the loop from ending the task between
    /// the id check and the cancel flag.
    pub(super) fn cancel_owned(&self, id: Id, index: u32) -> Result<()> {
        let Some(unstarted) = self.table.cancel(id, index) else { return Err(Error::not_found(id)) };
        if unstarted {
            self.inbox.push(Record::Done { id, status: task::CANCELLED });
        }
        Ok(())
    }

    /// The `Cancelled` completion a cancel queued for a task of the table that had not
    /// started: delivered unless the task has ended meanwhile (its cell came back and
    /// was served first). True if `done` ran. Loop thread.
    pub(super) fn deliver_unstarted(&self, id: Id) -> bool {
        let index = slots::task_index(id);
        let Some(cell) = self.table.cell(index) else { return false };
        // SAFETY: the table's cells live as long as the loop; only this thread ends tasks.
        let c = unsafe { cell.as_ref() };
        if c.id() != id || !c.is_lent() {
            return false;
        }
        let mut handler = {
            // SAFETY: on the loop's thread; the borrow ends before the call below.
            let own = unsafe { self.own() };
            let Some(handler) = own.handlers[index as usize].take() else { return false };
            let ends = self.table.hold_ends();
            // SAFETY: its task is live.
            unsafe { task::Table::end(cell, &ends) };
            handler
        };
        self.table_live.store(self.table_live.load(Relaxed) - 1, Relaxed);
        pool::deferring_wakeups(|| {
            handler.call(self, id, Event::Done { status: task::CANCELLED, result: &[], message: None })
        });
        drop(handler);
        // After done (as a slab task's TaskRef is dropped after its call): the work
        // of an abandoned task (free_fn) ends here.
        c.end_lent();
        true
    }

    /// Serves the first `n` cells of `done`: delivers their tasks' completions (one
    /// lock per chunk of cells, then `done` for each, without it) and recycles the cells.
    /// Returns how many `done` callbacks ran.
    ///
    /// A task whose cell is served here has finished: from the moment its entry leaves
    /// the slab below, a cancel finds nothing, even from the `done` of a task served
    /// before it in the same batch.
    pub(super) fn serve_cells(
        &self,
        done: &mut std::collections::VecDeque<Cell<H>>,
        n: usize,
        deliver: &mut Vec<(Id, H, Cell<H>)>,
        spare: &mut Vec<Cell<H>>,
    ) -> usize {
        // In chunks, so that each cell is still in the cache when it is touched again;
        // one lock per chunk keeps the previous chunk's cells and takes this one's.
        const CHUNK: usize = 64;
        let (mut ran, mut left) = (0, n);
        loop {
            let k = left.min(CHUNK);
            {
                // Each lock only when the chunk needs it: the core's for cells of tasks in
                // the slab, the table's `ends` for tasks of the table (a chunk of tasks
                // spawned on the loop's thread takes no other).
                let mut core: Option<MutexGuard<'_, Core<H>>> = None;
                let mut ends = None;
                // SAFETY: on the loop's thread; the borrow ends before the callbacks.
                let own = unsafe { self.own() };
                let mut ended = 0;
                for cell in spare.drain(..) {
                    // SAFETY: released cells, the loop's alone.
                    if slots::is_task_id(unsafe { cell.as_ref() }.id()) {
                        unsafe { own.lender.keep(cell) };
                    } else {
                        core.get_or_insert_with(|| self.lock()).cells.keep([cell]);
                    }
                }
                if k == 0 {
                    break;
                }
                for cell in done.drain(..k) {
                    // SAFETY: on the loop's thread, for a cell just taken back.
                    match unsafe { TaskCell::take_back(cell) } {
                        Back::Recycle => spare.push(cell),
                        Back::Deliver(id) if slots::is_task_id(id) => {
                            let ends = ends.get_or_insert_with(|| self.table.hold_ends());
                            // SAFETY: a live task's cell (its id is the live one).
                            unsafe { task::Table::end(cell, ends) };
                            let handler = own.handlers[slots::task_index(id) as usize].take();
                            deliver.push((id, handler.expect("a live task has its handler"), cell));
                            ended += 1;
                        }
                        Back::Deliver(id) => {
                            let core = &mut **core.get_or_insert_with(|| self.lock());
                            let index = core.entries.index(id).filter(|&i| {
                                let entry = core.entries.at(i);
                                entry.handler.is_some() && matches!(&entry.kind, Kind::Task(t) if t.is(cell))
                            });
                            // A live task keeps its entry until its cell is delivered.
                            let Some(index) = index else {
                                debug_assert!(false, "a delivered cell without its entry");
                                continue;
                            };
                            // SAFETY: as above.
                            if unsafe { cell.as_ref() }.timed() {
                                self.unlink_timer(core, index);
                            }
                            let entry = core.entries.remove_at(index);
                            if let Kind::Task(side) = entry.kind {
                                side.into_cell();
                            }
                            deliver.push((id, entry.handler.expect("checked above"), cell));
                        }
                    }
                }
                if ended > 0 {
                    self.table_live.store(self.table_live.load(Relaxed) - ended, Relaxed);
                }
            }
            left -= k;
            ran += deliver.len();
            pool::deferring_wakeups(|| {
                for (id, mut handler, cell) in deliver.drain(..) {
                    // SAFETY: take_back said to deliver it; once.
                    let (status, result) = unsafe { TaskCell::outcome(cell) };
                    handler.call(self, id, Event::Done { status, result: &result, message: None });
                    drop(handler);
                    spare.push(cell);
                }
            });
            // The works' ends (free_fn) run without the lock; the cells are kept next.
            for cell in spare.iter() {
                // SAFETY: back, its registration ended: recycled once.
                unsafe { TaskCell::release(*cell) };
            }
        }
        ran
    }
}
