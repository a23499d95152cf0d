//! [`LoopCell`]: state that only the thread holding a loop's core may
//! touch, reachable from handles that any thread may hold.
//!
//! Transports are such state: their socket, buffers and protocol belong to
//! the loop, while `Transport` handles are `Send + Sync` and may be used
//! anywhere. A cell checks, on every access, that the calling thread holds
//! the loop's core — it runs the loop, or it is closing it — and refuses
//! otherwise (the caller then routes the operation to the loop). It also
//! refuses re-entrant access: the code inside never calls user code, so
//! re-entry would be a bug in evloop, and refusing it is cheaper than the
//! undefined behaviour of two mutable borrows.

use crate::sched::{self, LoopId};
use std::cell::{Cell, UnsafeCell};

pub(crate) struct LoopCell<T> {
    owner: LoopId,
    borrowed: Cell<bool>,
    value: UnsafeCell<T>,
}

// Safety: the value is only reached by the thread holding the owner's
// core (checked on every access), one access at a time (`borrowed`, which
// only that thread touches); moving the cell between threads moves a `T:
// Send`.
unsafe impl<T: Send> Send for LoopCell<T> {}
unsafe impl<T: Send> Sync for LoopCell<T> {}

impl<T> LoopCell<T> {
    pub(crate) fn new(owner: LoopId, value: T) -> LoopCell<T> {
        LoopCell {
            owner,
            borrowed: Cell::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Whether the calling thread may access the cell.
    pub(crate) fn accessible(&self) -> bool {
        sched::holds_core(self.owner)
    }

    /// Runs `f` on the value if the calling thread holds the loop's core
    /// and no access is in progress; `None` otherwise. `f` must not run
    /// user code.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        if !self.accessible() || self.borrowed.replace(true) {
            return None;
        }
        struct Release<'a>(&'a Cell<bool>);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.set(false);
            }
        }
        let _release = Release(&self.borrowed);
        // Safety: this thread holds the owner's core, and `borrowed` (set
        // above, by this thread only) excludes any other access.
        Some(f(unsafe { &mut *self.value.get() }))
    }
}
