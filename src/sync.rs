//! The one place that decides whether evloop's concurrency primitives are
//! `std`'s or loom's.
//!
//! The lock-free protocols that `loom-tests/` model-check take their
//! atomics, locks, cells and thread-locals from here, so the code that runs
//! in production is the code the models run under `RUSTFLAGS="--cfg
//! loom"`. `ARCHITECTURE.md` ("Invariants and where loom checks them")
//! lists which protocols are modelled and which are not. Code outside the
//! models still uses `std` directly: process-wide statics (id counters, the
//! global policy, the thread-locals of the pool and the block pool), since
//! loom's types cannot live in a `static`; plain mutex-guarded state
//! (`reactor`'s fd table, `LoopFuture`, a task's metadata); and
//! `event_loop/shared.rs`'s counters and its stop and purge-wake flags
//! (statistics, and whether to send a wake-up through `remote::Remote`,
//! whose protocol is modelled).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering, fence};

#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

/// Gives the processor to another thread (loom: lets the model schedule
/// another thread, so spin-waits terminate under the model checker).
#[cfg(loom)]
pub(crate) use loom::thread::yield_now;
#[cfg(not(loom))]
pub(crate) use std::thread::yield_now;

/// A busy-wait hint (loom: a yield, so that the thread being waited for
/// gets to run in the model).
#[cfg(loom)]
pub(crate) use loom::hint::spin_loop;
#[cfg(not(loom))]
pub(crate) use std::hint::spin_loop;

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

/// Declares a thread-local: `std`'s (with a `const` initialiser) in
/// production, loom's under the model checker, so that code keyed on "which
/// loop runs on this thread" can be modelled like any other.
#[cfg(not(loom))]
macro_rules! thread_local_cell {
    ($(#[$m:meta])* static $name:ident: $t:ty = $init:expr;) => {
        std::thread_local!($(#[$m])* static $name: $t = const { $init });
    };
}
#[cfg(loom)]
macro_rules! thread_local_cell {
    ($(#[$m:meta])* static $name:ident: $t:ty = $init:expr;) => {
        loom::thread_local!($(#[$m])* static $name: $t = $init);
    };
}
pub(crate) use thread_local_cell;

/// A lock whose guard [`lock`] hands out, poisoning ignored.
pub(crate) trait Lock {
    /// The guard type.
    type Guard<'a>
    where
        Self: 'a;
    /// Locks, ignoring poisoning.
    fn lock_unpoisoned(&self) -> Self::Guard<'_>;
}

impl<T> Lock for std::sync::Mutex<T> {
    type Guard<'a>
        = std::sync::MutexGuard<'a, T>
    where
        T: 'a;
    fn lock_unpoisoned(&self) -> Self::Guard<'_> {
        self.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(loom)]
impl<T> Lock for loom::sync::Mutex<T> {
    type Guard<'a>
        = loom::sync::MutexGuard<'a, T>
    where
        T: 'a;
    fn lock_unpoisoned(&self) -> Self::Guard<'_> {
        self.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Locks a mutex (`std`'s or loom's), ignoring poisoning.
///
/// Ignoring poison is sound here because of the rule every lock in evloop
/// keeps: no user code — callbacks, destructors of user values, foreign
/// wakers, handlers — runs while an internal lock is held. So a panic can
/// never unwind out of a critical section with its state half-updated;
/// values that may run user code on drop are moved out and dropped after
/// the guard.
pub(crate) fn lock<L: Lock + ?Sized>(m: &L) -> L::Guard<'_> {
    m.lock_unpoisoned()
}

/// Read-locks an `RwLock`, ignoring poisoning (see [`lock`]).
pub(crate) fn read<T>(l: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Write-locks an `RwLock`, ignoring poisoning (see [`lock`]).
pub(crate) fn write<T>(l: &std::sync::RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}
