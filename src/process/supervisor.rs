//! A loop's process tasks as a whole: which wait for a slot under their `max_children`
//! bound (first come, first forked), how many children run, and which waiting task a
//! reused child runs next. The loop holds it under its lock and drives it through these
//! methods; a [`Child`]'s fields are the child module's, set here only through it.
//!
//! # Reused children
//!
//! A task spawned with reuse may run in a child forked for an earlier task, and its own
//! child may run later ones, one at a time, as a process pool's workers do. The child
//! runs the work of a later task from its copy-on-write memory, so it may run only tasks
//! that existed at its fork: every task still sees everything its spawner did before
//! `spawn` returned. The rule, kept here:
//!
//! * Every process task gets a sequence number when it is spawned; a reused child
//!   remembers the next number at its fork (`fork_seq`): it may run tasks numbered below.
//! * At its fork it is given the waiting tasks of its group as (number, work) pairs, in
//!   number order (the [`snapshot`](Supervisor::snapshot)): a task still waiting later
//!   was waiting then, and its work is in the child's copy.
//! * When it has finished a task and says it is ready ('R'), it gets the first waiting
//!   task, if that task is of its group, numbered below its `fork_seq`, not past its
//!   deadline, and its bound allows (the child leaving its task frees the slot the next
//!   one takes). Otherwise it is told to exit and the slot frees when it is reaped; the
//!   waiting task then gets a fresh child. FIFO order holds either way.
//! * Sent ahead: while reused children run tasks, the first waiting task is taken off
//!   the queue and its number sent at once to the child that has run its task the
//!   longest of those that may run it (by the same rule) ([`next_ahead`]
//!   (Supervisor::next_ahead)), so that child goes on to it the moment it has sent the
//!   last one's status, without waiting for a pass of the loop. One task at a time is
//!   sent ahead, and before any other task starts (a child that is ready and has none
//!   sent ahead, or a fresh fork), the one sent ahead is taken back to the head of the
//!   queue if its child has not taken it: so tasks still start in FIFO order, and one
//!   never waits behind a long task while another child is free. The task counts under its bound once its 'R' says the child went on to
//!   it (it takes the slot of the one before it). A cancel or timeout takes it back if the child has not read
//!   the number yet (see `worker`); a task taken back, or whose child ended before
//!   it read the number, goes back to the head of the queue
//!   ([`requeue`](Supervisor::requeue)). The snapshot of a child forked meanwhile
//!   holds the tasks sent ahead, too, as they may wait again.
//!
//! The trade-off: a task's side effects in its child (globals, caches) are seen by the
//! later tasks that run in the same child.

use super::child::{Child, Group};
use std::collections::VecDeque;
use std::os::fd::OwnedFd;

/// A loop's children as a whole: the process tasks waiting for a slot (first come, first
/// forked; by the loop's index of their registration) and how many of its children
/// run. Only children forked by weft count; adopted ones run outside every bound.
#[derive(Default)]
pub(crate) struct Supervisor {
    waiting: VecDeque<u32>,
    /// The tasks sent ahead to a reused child, not started yet.
    ahead: Vec<u32>,
    running: usize,
    /// The sequence number of the next process task spawned.
    next_seq: u64,
}

impl Supervisor {
    /// A process task spawned as registration `index`: its child, and whether the
    /// spawning thread forks it now (a slot is free and nobody waits before it; the
    /// child is Forking then). Otherwise it waits, and forks on the loop thread when a
    /// slot frees ([`start_next`](Self::start_next)).
    pub fn admit(&mut self, index: u32, plan: Plan, deadline_ns: u64) -> (Child, bool) {
        let fork_now = self.waiting.is_empty() && self.running < plan.max_children;
        let mut child = Child::spawned(self.next_seq, plan, deadline_ns);
        self.next_seq += 1;
        if fork_now {
            child.start_counted();
            self.running += 1;
        } else {
            self.waiting.push_back(index);
        }
        (child, fork_now)
    }

    /// The first waiting task, if its bound lets it start now: its index, its child
    /// (found by `child_at`) made Forking and counted. None: nothing can start.
    pub fn start_next<'a>(&mut self, child_at: impl FnOnce(u32) -> &'a mut Child) -> Option<u32> {
        let &index = self.waiting.front()?;
        let child = child_at(index);
        if self.running >= child.max_children() {
            return None;
        }
        self.waiting.pop_front();
        self.running += 1;
        child.start_counted();
        Some(index)
    }

    /// Timer work of the child at `index`: its timeout, the SIGKILL after the grace,
    /// and (without an exit watch) a look at whether it exited. A task whose timeout expires
    /// while it waits leaves the queue.
    pub fn on_timer(&mut self, index: u32, child: &mut Child, now_ns: u64) {
        let expired = child.is_waiting() && child.is_past_deadline(now_ns);
        child.on_timer(now_ns);
        if expired {
            self.waiting.retain(|&i| i != index);
        }
    }

    /// The waiting task at `index` was cancelled: it leaves the queue.
    pub fn dequeue(&mut self, index: u32) {
        self.waiting.retain(|&i| i != index);
    }

    /// Stops supervising the child at `index` (its task ended, or its loop closes): out
    /// of the queue, its slot freed, its pipe and exit watch handed back (to take out of
    /// the poller, then close).
    pub fn forget(&mut self, index: u32, child: &mut Child) -> [Option<OwnedFd>; 2] {
        self.waiting.retain(|&i| i != index);
        self.ahead.retain(|&i| i != index);
        if child.uncount() {
            self.running -= 1;
        }
        child.take_fds()
    }

    /// How many of the loop's process tasks run in a child now, and how many wait.
    pub fn counts(&self) -> (usize, usize) {
        (self.running, self.waiting.len())
    }

    /// The sequence number a child forked now gets: it may run the tasks spawned before.
    pub fn fork_seq(&self) -> u64 {
        self.next_seq
    }

    /// What a reused child of `group` forked now must know of the waiting tasks: their
    /// numbers and works (`work_of`), in number order.
    pub fn snapshot<W>(&self, group: Group, mut at: impl FnMut(u32) -> (Option<Group>, u64, W)) -> Vec<(u64, W)> {
        let mut tasks = Vec::new();
        // The tasks sent ahead too: taken back, they wait again.
        for &index in self.waiting.iter().chain(&self.ahead) {
            let (reuse, seq, work) = at(index);
            if reuse == Some(group) {
                tasks.push((seq, work));
            }
        }
        tasks.sort_unstable_by_key(|&(seq, _)| seq);
        tasks
    }

    /// A reused child forked at `fork_seq` for `group` is ready: the first waiting task,
    /// if the child may run it (see the module comment), taken off the queue and counted
    /// (the caller hands the child on: [`Child::hand_on`]). `child_at` finds a task's child.
    pub fn next_for<'a>(
        &mut self,
        fork_seq: u64,
        group: Group,
        now_ns: u64,
        child_at: impl FnOnce(u32) -> &'a mut Child,
    ) -> Option<(u32, u64)> {
        let (index, seq, child) = self.first_for(fork_seq, group, now_ns, child_at)?;
        self.waiting.pop_front();
        self.running += 1;
        child.start_counted();
        Some((index, seq))
    }

    /// A reused child forked at `fork_seq` for `group` runs the task at `host`: the first
    /// waiting task, if the child may run it next (as [`next_for`](Self::next_for)),
    /// taken off the queue and sent ahead (the caller sends it its number:
    /// [`Child::send_ahead`], or puts it back: [`requeue`](Self::requeue)). It is counted
    /// when the child goes on to it ([`start_ahead`](Self::start_ahead)).
    pub fn next_ahead<'a>(
        &mut self,
        fork_seq: u64,
        group: Group,
        now_ns: u64,
        host: u32,
        child_at: impl FnOnce(u32) -> &'a mut Child,
    ) -> Option<(u32, u64)> {
        let (index, seq, child) = self.first_for(fork_seq, group, now_ns, child_at)?;
        self.waiting.pop_front();
        self.ahead.push(index);
        child.sent_ahead_to(host);
        Some((index, seq))
    }

    /// The first waiting task, if a reused child forked at `fork_seq` for `group` may run
    /// it next: its index, its number and its child.
    fn first_for<'a>(
        &self,
        fork_seq: u64,
        group: Group,
        now_ns: u64,
        child_at: impl FnOnce(u32) -> &'a mut Child,
    ) -> Option<(u32, u64, &'a mut Child)> {
        let &index = self.waiting.front()?;
        let child = child_at(index);
        let (reuse, seq) = child.place();
        // `running` counts the child's current task, which leaves as this one starts.
        if reuse != Some(group)
            || seq >= fork_seq
            || child.is_past_deadline(now_ns)
            || self.running > child.max_children()
        {
            return None;
        }
        Some((index, seq, child))
    }

    /// The child has gone on to the task at `index` it was sent ahead: counted from now
    /// on (the task before it leaves its slot as it ends).
    pub fn start_ahead(&mut self, index: u32, child: &mut Child) {
        self.ahead.retain(|&i| i != index);
        self.running += 1;
        child.start_counted();
    }

    /// The task sent ahead to a reused child, if one is (at most one at a time).
    pub fn ahead(&self) -> Option<u32> {
        self.ahead.first().copied()
    }

    /// True if a task of bound `max_children` could take a free slot now.
    pub fn has_slot(&self, max_children: usize) -> bool {
        self.running < max_children
    }

    /// A task sent ahead was taken back to end it (cancelled or timed out): it is no
    /// longer sent ahead, and waits for nothing.
    pub fn taken_back(&mut self, index: u32, child: &mut Child) {
        self.ahead.retain(|&i| i != index);
        child.unsend();
    }

    /// A task sent ahead that the child never took: it waits at the head again.
    pub fn requeue(&mut self, index: u32, child: &mut Child) {
        self.ahead.retain(|&i| i != index);
        child.unsend();
        self.waiting.push_front(index);
    }

    /// The task `next_for` took could not be handed the child (it died): it waits at
    /// the head again.
    pub fn give_back(&mut self, index: u32, child: &mut Child) {
        self.running -= 1;
        child.uncount();
        child.back_to_waiting();
        self.waiting.push_front(index);
    }
}

/// How a process task is to start: its bound, its fork, whether its child is reused,
/// which fds its child keeps.
#[derive(Clone, Default)]
pub struct Plan {
    pub max_children: usize,
    pub host_fork: Option<super::HostFork>,
    pub reuse: bool,
    pub fds: super::Fds,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(max_children: usize, reuse: bool) -> Plan {
        Plan { max_children, host_fork: None, reuse, fds: Default::default() }
    }

    /// Tasks 0..n of a loop as a slab would hold them: by index.
    fn admit_all(sup: &mut Supervisor, plans: &[Plan]) -> (Vec<Child>, Vec<bool>) {
        plans.iter().enumerate().map(|(i, p)| sup.admit(i as u32, p.clone(), 0)).unzip()
    }

    #[test]
    fn the_first_waiting_task_of_the_group_spawned_before_the_fork_is_next() {
        let mut sup = Supervisor::default();
        // 0 forks at once; 1..4 wait (bound 1).
        let (mut children, fork_now) = admit_all(&mut sup, &vec![plan(1, true); 4]);
        assert_eq!(fork_now, [true, false, false, false]);
        // A child forked for 0 at seq 1 may run nothing: every waiting task came after.
        assert!(sup.next_for(1, (0, 0), 0, |i| &mut children[i as usize]).is_none());
        // A child forked after all four may run 1, then (after 1 leaves its slot) 2.
        let fork_seq = sup.fork_seq();
        let snapshot = sup.snapshot((0, 0), |i| (children[i as usize].place().0, children[i as usize].place().1, i));
        assert_eq!(snapshot, [(1, 1), (2, 2), (3, 3)]);
        assert_eq!(sup.next_for(fork_seq, (0, 0), 0, |i| &mut children[i as usize]), Some((1, 1)));
        // Bound 1: while 0 still holds its slot, 1 counts too (0 leaves as 1 takes over).
        sup.forget(0, &mut children[0]);
        assert_eq!(sup.running, 1);
        assert_eq!(sup.next_for(fork_seq, (0, 0), 0, |i| &mut children[i as usize]), Some((2, 2)));
        sup.forget(1, &mut children[1]);
        assert_eq!(sup.next_for(fork_seq, (0, 0), 0, |i| &mut children[i as usize]), Some((3, 3)));
        sup.forget(2, &mut children[2]);
        assert_eq!(sup.next_for(fork_seq, (0, 0), 0, |i| &mut children[i as usize]), None, "none waits");
        // A fresh child's task over the bound does not take a slot another holds.
        let (child, fork_now) = sup.admit(4, plan(1, true), 0);
        children.push(child);
        assert!(!fork_now);
        assert_eq!(sup.start_next(|i| &mut children[i as usize]), None);
        sup.forget(3, &mut children[3]);
        assert_eq!(sup.start_next(|i| &mut children[i as usize]), Some(4));
    }

    #[test]
    fn a_task_sent_ahead_leaves_the_queue_stays_in_snapshots_and_may_come_back() {
        let mut sup = Supervisor::default();
        let (mut children, fork_now) = admit_all(&mut sup, &vec![plan(1, true); 4]);
        assert_eq!(fork_now, [true, false, false, false]);
        sup.forget(0, &mut children[0]);
        assert_eq!(sup.start_next(|i| &mut children[i as usize]), Some(1));
        let fork_seq = sup.fork_seq();
        // 1's child runs; 2 is sent ahead to it: off the queue, not counted yet.
        assert_eq!(sup.next_ahead(fork_seq, (0, 0), 0, 1, |i| &mut children[i as usize]), Some((2, 2)));
        assert_eq!(children[2].ahead_of(), Some(1));
        assert_eq!(sup.running, 1);
        assert_eq!(sup.waiting, [3]);
        // A child forked now knows of 2 as well: taken back, 2 may wait again.
        let snapshot = sup.snapshot((0, 0), |i| (children[i as usize].place().0, children[i as usize].place().1, i));
        assert_eq!(snapshot, [(2, 2), (3, 3)]);
        // Taken back: at the head again.
        sup.requeue(2, &mut children[2]);
        assert!(children[2].is_waiting());
        assert_eq!(sup.waiting, [2, 3]);
        // Sent again, and the child goes on to it: counted (1 leaves as it ends).
        assert_eq!(sup.next_ahead(fork_seq, (0, 0), 0, 1, |i| &mut children[i as usize]), Some((2, 2)));
        sup.start_ahead(2, &mut children[2]);
        assert_eq!(sup.running, 2);
        sup.forget(1, &mut children[1]);
        assert_eq!(sup.running, 1);
        assert!(sup.ahead.is_empty());
    }

    #[test]
    fn other_groups_tasks_without_reuse_and_expired_ones_are_not_next() {
        let mut sup = Supervisor::default();
        let mut children = Vec::new();
        children.push(sup.admit(0, plan(1, true), 0).0);
        children.push(sup.admit(1, plan(1, false), 0).0);
        let fork_seq = sup.fork_seq();
        assert_eq!(sup.next_for(fork_seq, (0, 0), 0, |i| &mut children[i as usize]), None, "1 has no reuse");
        sup.dequeue(1);
        children.push(sup.admit(2, plan(1, true), 5).0);
        let fork_seq = sup.fork_seq();
        assert_eq!(sup.next_for(fork_seq, (7, 7), 0, |i| &mut children[i as usize]), None, "another group");
        assert_eq!(sup.next_for(fork_seq, (0, 0), 5, |i| &mut children[i as usize]), None, "past its deadline");
        assert_eq!(sup.next_for(fork_seq, (0, 0), 4, |i| &mut children[i as usize]), Some((2, 2)));
        // Given back (the child died): it waits at the head again, and its slot is free.
        sup.give_back(2, &mut children[2]);
        assert!(children[2].is_waiting());
        sup.forget(0, &mut children[0]);
        assert_eq!(sup.start_next(|i| &mut children[i as usize]), Some(2));
    }
}
