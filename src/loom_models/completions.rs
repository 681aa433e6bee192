//! The completion stack (see `Inbox::give_back`): cells pushed by pool threads, taken
//! by the loop with one swap, and closed with the CLOSED marker when the loop is freed,
//! while `givers` keeps a giver that still reads the inbox from outliving it.

use super::{model, rang};
use crate::inbox::{Inbox, Link};
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::sync::Arc as LoomArc;
use loom::thread;
use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::Arc;

/// A cell: only its first word, the link, matters to the stack.
fn cell() -> NonNull<Link> {
    NonNull::from(Box::leak(Box::new(MaybeUninit::<Link>::uninit()))).cast()
}

fn free(cell: NonNull<Link>) {
    // SAFETY: made by `cell`, freed once (the models count it).
    drop(unsafe { Box::from_raw(cell.as_ptr().cast::<MaybeUninit<Link>>()) });
}

/// A pool thread gives a cell back while the loop passes and dozes: the loop is rung
/// if it sleeps with the cell on the list.
#[test]
fn loom_completions_wakeup() {
    model(|| {
        let inbox = Arc::new(Inbox::<u32>::new().expect("an eventfd"));
        let givers: Vec<_> = (0..2)
            .map(|_| {
                let inbox = inbox.clone();
                let cell = cell().as_ptr() as usize;
                thread::spawn(move || assert!(inbox.give_back(NonNull::new(cell as *mut Link).unwrap())))
            })
            .collect();
        let mut cells: VecDeque<NonNull<Link>> = VecDeque::new();
        let pass = |cells: &mut VecDeque<NonNull<Link>>| loop {
            inbox.wake_up();
            inbox.take_done(cells);
            if inbox.doze(true) || rang(inbox.bell_fd()) {
                continue;
            }
            break;
        };
        pass(&mut cells);
        for g in givers {
            g.join().unwrap();
        }
        if cells.len() < 2 {
            assert!(rang(inbox.bell_fd()), "a cell came back to a sleeping loop and nobody rang");
            pass(&mut cells);
        }
        assert_eq!(cells.len(), 2);
        cells.into_iter().for_each(free);
        drop(inbox.close());
    });
}

/// The loop is freed while pool threads give cells back: each cell is freed exactly
/// once (by `close_done`, or by its giver, which finds the list CLOSED), and the
/// inbox's last reference goes only after every giver is done with it (`givers`, and
/// the straggler count).
#[test]
fn loom_completions_close() {
    model(|| {
        let inbox = Arc::new(Inbox::<u32>::new().expect("an eventfd"));
        let freed = LoomArc::new(AtomicUsize::new(0));
        let givers: Vec<_> = (0..2)
            .map(|_| {
                let inbox = inbox.clone();
                let freed = freed.clone();
                let cell = cell().as_ptr() as usize;
                thread::spawn(move || {
                    let cell = NonNull::new(cell as *mut Link).unwrap();
                    let inbox = Arc::as_ptr(&inbox);
                    // SAFETY: the inbox lives while this cell is lent (straggler count).
                    if !unsafe { &*inbox }.give_back(cell) {
                        free(cell);
                        freed.fetch_add(1, SeqCst);
                        // SAFETY: close_done counted this cell.
                        unsafe { Inbox::straggler_gone(inbox) };
                    }
                })
            })
            .collect();
        let mut cells = VecDeque::new();
        inbox.take_done::<Link>(&mut cells);
        let lent = 2 - cells.len();
        cells.into_iter().for_each(free);
        drop(inbox.close());
        let keep = Arc::into_raw(inbox.clone());
        let freed_here = LoomArc::new(AtomicUsize::new(0));
        // SAFETY: `keep` is handed over.
        unsafe {
            inbox.close_done(lent, keep, |cell: NonNull<Link>| {
                free(cell);
                freed_here.fetch_add(1, SeqCst);
            })
        };
        for g in givers {
            g.join().unwrap();
        }
        assert_eq!(freed.load(SeqCst) + freed_here.load(SeqCst), lent, "a cell freed twice or never");
        assert_eq!(Arc::strong_count(&inbox), 1, "the straggler reference was not let go");
    });
}
