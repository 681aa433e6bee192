//! Labels: a name a program gives a registration (`weft_set_label`), for the reports
//! that name it (the watchdog's). Kept in a map beside the registrations, not in them:
//! a registration costs no more for the labels most never get.
//!
//! A label outlives its registration until the next sweep: when the map has grown to
//! twice what it held after the last one, `set` drops the labels of ids no longer
//! live, so the map stays within twice the live labelled registrations (amortised
//! O(1) per label).

use super::{Handler, Loop};
use crate::error::{Error, Result};
use crate::slots::{self, Id, IdKind};
use std::collections::HashMap;
use std::ffi::CString;
use std::sync::Mutex;

/// The fewest labels a sweep waits for.
const SWEEP_AT_LEAST: usize = 64;

#[derive(Default)]
pub(super) struct Labels {
    map: Mutex<(HashMap<Id, CString>, usize)>,
}

impl<H: Handler> Loop<H> {
    /// Names the live registration `id` (a timer, watch, subscription, task, or a post
    /// not yet run), or removes its name (`None`). Any thread.
    pub fn set_label(&self, id: Id, label: Option<CString>) -> Result<()> {
        self.usable()?;
        if !self.is_live(id) {
            return Err(Error::not_found(id));
        }
        let mut guard = self.labels.map.lock().unwrap_or_else(|p| p.into_inner());
        let (map, swept) = &mut *guard;
        match label {
            Some(label) => {
                map.insert(id, label);
            }
            None => {
                map.remove(&id);
            }
        }
        if map.len() >= 2 * (*swept).max(SWEEP_AT_LEAST) {
            map.retain(|&id, _| self.is_live(id));
            *swept = map.len();
        }
        Ok(())
    }

    /// The label of `id`, if it has one. Any thread.
    pub fn label(&self, id: Id) -> Option<CString> {
        let guard = self.labels.map.lock().unwrap_or_else(|p| p.into_inner());
        guard.0.get(&id).cloned()
    }

    /// Whether `id` names a registration of this loop that has not ended (a task whose
    /// cell has not been reused may still count: a label kept a little longer).
    fn is_live(&self, id: Id) -> bool {
        match slots::decode(self.tag, id) {
            None => false,
            Some(IdKind::Post { seq }) => self.inbox.is_pending(seq),
            Some(IdKind::Timer { index, generation }) => self.timers.is_live(index, generation),
            Some(IdKind::Task { index, .. }) => self.table.cell(index).is_some_and(|cell| {
                // SAFETY: the table's cells live as long as the loop.
                let cell = unsafe { cell.as_ref() };
                cell.id() == id
            }),
            Some(IdKind::Slot { .. }) => self.live_index(&self.lock(), id).is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{task, Event, Handler, Loop};
    use crate::slots::Id;
    use std::ffi::CString;

    struct Nop;
    impl Handler for Nop {
        type Work = task::BoxedWork<Self>;
        fn call(&mut self, _: &Loop<Self>, _: Id, _: Event<'_>) {}
    }

    fn held(lp: &Loop<Nop>) -> usize {
        lp.labels.map.lock().unwrap().0.len()
    }

    #[test]
    #[cfg_attr(miri, ignore = "a loop's epoll set, timerfd and eventfds: calls Miri does not emulate")]
    fn labels_of_ended_registrations_are_swept() {
        let lp = Loop::<Nop>::new().unwrap();
        let keep = lp.timer_after(3_600_000, Nop).unwrap();
        lp.set_label(keep, Some(CString::new("kept").unwrap())).unwrap();
        for i in 0..10_000 {
            let id = lp.timer_after(3_600_000, Nop).unwrap();
            lp.set_label(id, Some(CString::new(format!("t{i}")).unwrap())).unwrap();
            lp.cancel(id).unwrap();
            assert!(held(&lp) <= 2 * super::SWEEP_AT_LEAST, "{} labels held after {i}", held(&lp));
        }
        assert_eq!(lp.label(keep).unwrap().to_str().unwrap(), "kept");
        lp.set_label(keep, None).unwrap();
        assert!(lp.label(keep).is_none());
    }
}
