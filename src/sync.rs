//! The one place that decides whether the lock-free protocols use `std`'s
//! primitives or loom's.
//!
//! Every module that holds a lock-free protocol (the remote inbox and its
//! wake-up state, a task's state word, a callback handle's reference bits,
//! the atomic waker, the executor's parking) imports its atomics and cells
//! from here, so the code that runs in production is the code `loom-tests/`
//! model-checks under `RUSTFLAGS="--cfg loom"`. Code outside those protocols
//! (statistics counters, statics) uses `std` directly, because loom's types
//! cannot live in statics or outside a model.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex};

#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex};

/// An `UnsafeCell` with loom's closure-based access API, so that loom can
/// check that no two threads touch the contents at once.
#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// An `UnsafeCell` with loom's closure-based access API; in production the
/// closures compile down to plain pointer accesses.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    #[inline]
    pub(crate) const fn new(value: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// Locks a mutex, ignoring poisoning: every mutex in this crate guards state
/// whose invariants hold between statements, and a panic in user code never
/// runs while one is held.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg(loom)]
pub(crate) use loom::sync::MutexGuard;
#[cfg(not(loom))]
pub(crate) use std::sync::MutexGuard;
