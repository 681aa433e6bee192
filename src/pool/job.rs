//! Jobs: what a pool runs. A queued job is one thin pointer to an object that starts
//! with a [`JobHeader`], whose vtable runs, abandons or releases it; tasks embed the
//! header in their cell, and any `Arc<impl Job>` is boxed behind one.

use std::ptr::NonNull;
use std::sync::Arc;

/// A unit of work for a pool, shared through an `Arc` (see [`JobRef::from`]).
pub trait Job: Send + Sync {
    fn run(self: Arc<Self>);
    /// The pool shut down before the job started.
    fn abandon(self: Arc<Self>);
}

/// The first field of every object a [`JobRef`] points at: how to run, abandon and
/// release it. Tasks embed it, so a queued task costs one thin pointer and no
/// allocation beyond the task itself.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct JobHeader {
    pub vtable: &'static JobVTable,
}

pub struct JobVTable {
    /// Runs the job and releases the reference.
    pub run: unsafe fn(NonNull<JobHeader>),
    /// Gives the job up (the pool shut down) and releases the reference.
    pub abandon: unsafe fn(NonNull<JobHeader>),
    /// Releases the reference.
    pub release: unsafe fn(NonNull<JobHeader>),
}

/// A queued job: one owned reference, one thin pointer (8 bytes per queue slot).
pub struct JobRef(NonNull<JobHeader>);

// SAFETY: jobs are Send + Sync by construction (see `from_raw`'s contract).
unsafe impl Send for JobRef {}

impl JobRef {
    /// # Safety
    /// `header` starts a live, Send + Sync object, and the new `JobRef` owns one
    /// reference to it, which the vtable's functions release.
    pub unsafe fn from_raw(header: NonNull<JobHeader>) -> JobRef {
        JobRef(header)
    }

    pub fn run(self) {
        let header = std::mem::ManuallyDrop::new(self).0;
        // SAFETY: this reference is consumed by `run`.
        unsafe { (header.as_ref().vtable.run)(header) }
    }

    pub fn abandon(self) {
        let header = std::mem::ManuallyDrop::new(self).0;
        // SAFETY: this reference is consumed by `abandon`.
        unsafe { (header.as_ref().vtable.abandon)(header) }
    }
}

impl Drop for JobRef {
    fn drop(&mut self) {
        // SAFETY: this reference is released once, here.
        unsafe { (self.0.as_ref().vtable.release)(self.0) }
    }
}

/// Any `Arc<impl Job>` as a queued job (one small allocation for the header).
#[repr(C)]
struct Boxed<J> {
    header: JobHeader,
    job: Arc<J>,
}

impl<J: Job + 'static> Boxed<J> {
    const VTABLE: JobVTable = JobVTable { run: Self::run, abandon: Self::abandon, release: Self::release };

    unsafe fn take(header: NonNull<JobHeader>) -> Arc<J> {
        // SAFETY: made by `From` below from a Box<Boxed<J>>, whose first field it is.
        unsafe { Box::from_raw(header.as_ptr().cast::<Boxed<J>>()) }.job
    }
    unsafe fn run(header: NonNull<JobHeader>) {
        unsafe { Self::take(header) }.run()
    }
    unsafe fn abandon(header: NonNull<JobHeader>) {
        unsafe { Self::take(header) }.abandon()
    }
    unsafe fn release(header: NonNull<JobHeader>) {
        drop(unsafe { Self::take(header) })
    }
}

impl<J: Job + 'static> From<Arc<J>> for JobRef {
    fn from(job: Arc<J>) -> JobRef {
        let boxed = Box::new(Boxed { header: JobHeader { vtable: &Boxed::<J>::VTABLE }, job });
        // SAFETY: a Boxed<J> starts with its header; J is Send + Sync.
        unsafe { JobRef::from_raw(NonNull::from(Box::leak(boxed)).cast()) }
    }
}
