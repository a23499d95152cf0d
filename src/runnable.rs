//! The one thing a loop's queues hold: a pointer to a heap object that starts
//! with a [`Header`].
//!
//! Callbacks (`call_soon`, timers), tasks and fd watchers are different
//! allocations with different reference protocols, but they all begin with
//! the same header: a vtable that knows how to run the object or give it up,
//! and an intrusive link so that the remote inbox can chain it without
//! allocating a node per post. A [`Runnable`] owns exactly one "queue
//! reference" to such an object; running it or dropping it releases that
//! reference.

use crate::sched::Local;
use crate::sync::AtomicPtr;
use std::ptr::NonNull;

/// What kind of object a header belongs to; the loop looks at it only to
/// route callbacks that carry a deadline into the timer queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Callback,
    Task,
    Watcher,
    /// A registration of the readiness layer, queued to run its handler.
    Io,
    #[cfg(loom)]
    Test,
}

/// Per-type operations on a queued object.
pub(crate) struct Vtable {
    pub(crate) kind: Kind,
    /// Runs the object on the loop thread and releases the queue reference;
    /// the running loop is passed in.
    pub(crate) run: unsafe fn(NonNull<Header>, &dyn Local),
    /// Releases the queue reference without running the object (the loop is
    /// closing, or the object was cancelled).
    pub(crate) discard: unsafe fn(NonNull<Header>),
}

/// The common prefix of every queued object (`#[repr(C)]` first field).
#[repr(C)]
pub(crate) struct Header {
    pub(crate) vtable: &'static Vtable,
    /// Link used only while the object sits in a remote inbox. An object is
    /// in at most one queue at a time, so one link suffices.
    pub(crate) next: AtomicPtr<Header>,
}

impl Header {
    pub(crate) fn new(vtable: &'static Vtable) -> Header {
        Header {
            vtable,
            next: AtomicPtr::new(std::ptr::null_mut()),
        }
    }
}

/// One queue reference to a queued object.
pub(crate) struct Runnable {
    ptr: NonNull<Header>,
}

// Safety: every object behind a header is `Send` (callbacks and futures are
// required to be `Send`; watchers box a `Send` closure), and the queue
// reference is only used by the thread that owns the queue.
unsafe impl Send for Runnable {}

impl Runnable {
    /// Takes over a queue reference.
    ///
    /// # Safety
    /// `ptr` must point to a live object whose header vtable matches it, and
    /// the caller must own one queue reference, which passes to the result.
    pub(crate) unsafe fn from_raw(ptr: NonNull<Header>) -> Runnable {
        Runnable { ptr }
    }

    /// Gives up ownership of the queue reference without releasing it.
    pub(crate) fn into_raw(self) -> NonNull<Header> {
        let ptr = self.ptr;
        std::mem::forget(self);
        ptr
    }

    pub(crate) fn kind(&self) -> Kind {
        // Safety: the object is alive while we hold a reference.
        unsafe { self.ptr.as_ref().vtable.kind }
    }

    pub(crate) fn as_ptr(&self) -> NonNull<Header> {
        self.ptr
    }

    /// Runs the object on the thread that runs its loop, `local`.
    pub(crate) fn run(self, local: &dyn Local) {
        let ptr = self.into_raw();
        // Safety: we owned the queue reference; `run` consumes it.
        unsafe { (ptr.as_ref().vtable.run)(ptr, local) }
    }
}

impl Drop for Runnable {
    fn drop(&mut self) {
        // Safety: we own the queue reference; `discard` consumes it.
        unsafe { (self.ptr.as_ref().vtable.discard)(self.ptr) }
    }
}

impl std::fmt::Debug for Runnable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runnable")
            .field("kind", &self.kind())
            .field("ptr", &self.ptr)
            .finish()
    }
}
