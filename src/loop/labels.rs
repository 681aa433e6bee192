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
