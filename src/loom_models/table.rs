//! The task table's id publication against cancels (see `crate::task::Table`): a cancel
//! from another thread, by id, lands on that task or on nothing, never on the next task
//! of the same cell, and never reads a cell before it is published.

use super::model;
use crate::inbox::Inbox;
use crate::slots;
use crate::task::{Back, Lender, Table, Task, TaskCell, TaskWork};
use loom::sync::Arc as LoomArc;
use loom::thread;
use std::collections::VecDeque;
use std::sync::Arc;

struct Work;

impl TaskWork<u32> for Work {
    fn run(&self, _: &mut Task<u32>) -> i32 {
        0
    }
}

const TAG: u16 = 3;

/// The owner spawns task A in the table's first cell, serves its completion (ending it)
/// and spawns task B, which gets the same cell; another thread cancels A meanwhile.
#[test]
fn loom_table_cancel_by_id() {
    model(|| {
        let inbox = Arc::new(Inbox::<u32>::new().expect("an eventfd"));
        let table = LoomArc::new(Table::<u32, Work>::default());
        let a = slots::tagged(TAG, slots::untagged_task_id(0, 1));
        let canceller = {
            let table = table.clone();
            thread::spawn(move || table.cancel(a, slots::task_index(a)))
        };
        let mut lender = Lender::default();
        let (id, cell, job) = table.lend(&mut lender, TAG, &inbox, Work).ok().expect("room");
        assert_eq!(id, a);
        job.run();
        let mut back = VecDeque::new();
        assert_eq!(inbox.take_done::<TaskCell<u32, Work>>(&mut back), 1);
        assert_eq!(back[0], cell);
        // SAFETY: on the owner's thread, for a cell just taken back.
        assert!(matches!(unsafe { TaskCell::take_back(cell) }, Back::Deliver(id) if id == a));
        {
            let ends = table.hold_ends();
            // SAFETY: task A is live.
            unsafe { Table::end(cell, &ends) };
        }
        // SAFETY: back, its registration ended; released and kept once.
        let cancelled_a = unsafe { TaskCell::outcome(cell) }.0 == crate::task::CANCELLED;
        unsafe { TaskCell::release(cell) };
        unsafe { lender.keep(cell) };
        let (b, cell_b, job_b) = table.lend(&mut lender, TAG, &inbox, Work).ok().expect("room");
        assert_eq!(cell_b, cell, "B reuses A's cell");
        assert_ne!(b, a);
        let result = canceller.join().unwrap();
        // SAFETY: the table's cells live as long as the table.
        assert!(!unsafe { cell_b.as_ref() }.is_cancelled(), "a cancel of A landed on B");
        // A cancel that matched A raised A's flag before A ended (`unstarted` false: A
        // ran on this thread, or true: A never ran, and then A reported Cancelled).
        if result.is_some() {
            assert!(cancelled_a || result == Some(false));
        }
        job_b.abandon();
        let mut back = VecDeque::new();
        inbox.take_done::<TaskCell<u32, Work>>(&mut back);
        unsafe { TaskCell::release(cell_b) };
        drop(inbox.close());
    });
}
