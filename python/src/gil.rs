//! `GilCell`: state that only threads holding the GIL touch.
//!
//! The front-end's classes are shared between Python threads, so PyO3
//! wants them `Sync`. Their mutable state is only ever read or written by
//! a thread that holds the GIL (every method is called from Python; the
//! loop's callbacks run on the loop's thread, which holds the GIL for its
//! whole run and gives it up only inside the idle hook, where it touches
//! none of this state). The GIL therefore serialises every access, and a
//! `GilCell` asks for the `Python` token as proof.
//!
//! The accessors never hand out a reference that outlives a call: a
//! closure runs on the value and must not call into Python (Python code
//! could re-enter and access the same cell), and `get` / `set` / `take` /
//! `replace` move values in and out.

use pyo3::Python;
use std::cell::UnsafeCell;

/// A value guarded by the GIL (see the module docs).
pub(crate) struct GilCell<T>(UnsafeCell<T>);

// Safety: every access takes a `Python` token, i.e. happens on a thread
// holding the GIL, which serialises them; values move between threads
// only together with the GIL, so `T: Send` suffices.
unsafe impl<T: Send> Sync for GilCell<T> {}

impl<T> GilCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        GilCell(UnsafeCell::new(value))
    }

    /// Runs `f` on the value. `f` must not call into Python.
    #[inline]
    pub(crate) fn with<R>(&self, _py: Python<'_>, f: impl FnOnce(&mut T) -> R) -> R {
        // Safety: the GIL is held (token), and `f` does not call Python,
        // so no other access to this cell can happen while `f` runs.
        f(unsafe { &mut *self.0.get() })
    }

    /// Replaces the value, returning the old one (dropped by the caller,
    /// outside any access).
    #[inline]
    pub(crate) fn replace(&self, py: Python<'_>, value: T) -> T {
        self.with(py, |v| std::mem::replace(v, value))
    }

    /// Sets the value; the old one is dropped after the access ends.
    #[inline]
    pub(crate) fn set(&self, py: Python<'_>, value: T) {
        drop(self.replace(py, value));
    }

    /// The value, through exclusive access (no GIL needed: `&mut self`
    /// proves no other access exists).
    #[inline]
    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.0.get_mut()
    }

    /// A shared view for `__traverse__`, where the interpreter holds the
    /// GIL but PyO3 gives no token.
    ///
    /// # Safety
    /// The GIL must be held and no `with` access may be in progress (true
    /// during garbage collection, which runs no code of this crate).
    #[inline]
    pub(crate) unsafe fn peek(&self) -> &T {
        unsafe { &*self.0.get() }
    }
}

impl<T: Copy> GilCell<T> {
    /// Copies the value out.
    #[inline]
    pub(crate) fn get(&self, py: Python<'_>) -> T {
        self.with(py, |v| *v)
    }
}

impl<T: Default> GilCell<T> {
    /// Takes the value, leaving the default.
    #[inline]
    pub(crate) fn take(&self, py: Python<'_>) -> T {
        self.replace(py, T::default())
    }
}
