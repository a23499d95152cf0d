//! The two interfaces through which the loop's primitives (callbacks,
//! timers, tasks, watchers) talk to the loop that owns them, and the
//! thread-local that says which loop, if any, runs on this thread.
//!
//! Primitives know nothing of `EventLoop`: the loop's core implements
//! these traits and hands them down.
//!
//! - [`Local`] is the running loop as seen from its own thread. The loop
//!   passes it to every queued object it runs ([`crate::runnable::Vtable`]),
//!   the way tokio passes its scheduler into a task's poll.
//! - [`Schedule`] is the loop as seen from anywhere, kept by objects that
//!   outlive a single run (tasks, timers): it queues an object from any
//!   thread and reaches the exception handler.
//!
//! User-facing calls on a primitive (`Handle::cancel`, a task's waker) are
//! not called by the loop, so nothing can pass them the context; they ask
//! [`with_local`] whether their owner runs on this thread, which is one
//! thread-local read.

use crate::error::{Error, PanicPayload};
use crate::exception::ExceptionContext;
use crate::runnable::Runnable;
use crate::task::registry::TaskRegistry;
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::Location;
use std::ptr::NonNull;

/// Identity of a loop: the address of its shared part. Compared, never
/// dereferenced by primitives.
pub(crate) type LoopId = *const ();

/// The running loop, on its own thread.
pub(crate) trait Local {
    /// Appends to the ready queue (runs on the next iteration).
    fn push(&self, r: Runnable);
    /// The loop's list of unfinished tasks.
    fn tasks(&self) -> &RefCell<TaskRegistry>;
    /// Frees the readiness-layer slot of `token` (a registration dropped
    /// on the loop's thread); `false` if the slot table is busy (the loop
    /// is dispatching events), in which case the caller posts it.
    fn free_io(&self, token: mio::Token) -> bool;
    /// The one buffer the loop reads into for plain protocols (no
    /// allocation per read).
    fn read_buffer(&self) -> &RefCell<Vec<u8>>;
    /// A timer of this loop was cancelled on the loop's thread while
    /// queued (for the purge rule).
    fn timer_cancelled(&self);
    /// Reports a panic nobody else will see to the exception handler.
    fn report_panic(&self, ctx: ExceptionContext, payload: PanicPayload);
    /// For the owner layer's own downcasts.
    fn as_any(&self) -> &dyn Any;
}

/// A loop as seen from any thread, by objects that belong to it.
pub(crate) trait Schedule: Send + Sync + 'static {
    /// The loop's identity (see [`with_local`]).
    fn id(&self) -> LoopId;
    /// Queues `r`: onto the ready queue on the loop's own thread, through
    /// the inbox elsewhere. Gives `r` back if the loop is closed.
    fn schedule(&self, r: Runnable) -> Result<(), Runnable>;
    /// `call_soon` of a boxed callback (done callbacks).
    fn call_soon(
        &self,
        location: &'static Location<'static>,
        f: Box<dyn FnOnce() + Send>,
    ) -> Result<(), Error>;
    /// Hands `ctx` to the loop's exception handler.
    fn call_exception_handler(&self, ctx: ExceptionContext);
    /// A timer of this loop was cancelled on another thread while queued:
    /// lets the loop's purge rule see it (and wakes the loop if the
    /// cancelled timers now dominate its queue).
    fn timer_cancelled_remotely(&self);
    /// For the owner layer's own downcasts.
    fn as_any(&self) -> &(dyn Any + Send + Sync);
}

#[derive(Clone, Copy)]
struct Current {
    id: LoopId,
    local: NonNull<dyn Local>,
}

crate::sync::thread_local_cell! {
    static CURRENT: Cell<Option<Current>> = Cell::new(None);
}

/// Clears the thread-local when a run ends, also when it unwinds.
pub(crate) struct Entered {
    previous: Option<Current>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let previous = self.previous;
        CURRENT.with(|c| c.set(previous));
    }
}

/// Marks `local` as the loop `id` running on this thread until the guard
/// drops.
///
/// # Safety
/// `local` must outlive the guard, and the guard must be dropped on this
/// thread.
pub(crate) unsafe fn enter(id: LoopId, local: &dyn Local) -> Entered {
    // Safety (of the transmute): only the lifetime is erased; the caller
    // promises `local` outlives the guard, which removes it again.
    let local: NonNull<dyn Local + 'static> = unsafe {
        std::mem::transmute::<NonNull<dyn Local + '_>, NonNull<dyn Local + 'static>>(NonNull::from(
            local,
        ))
    };
    let previous = CURRENT.with(|c| c.replace(Some(Current { id, local })));
    Entered { previous }
}

/// Whether the loop `id` runs on this thread.
#[inline]
pub(crate) fn runs_here(id: LoopId) -> bool {
    CURRENT.with(|c| c.get().is_some_and(|cur| cur.id == id))
}

/// Whether any loop runs on this thread.
#[inline]
pub(crate) fn any_running() -> bool {
    CURRENT.with(|c| c.get().is_some())
}

/// Runs `f` with loop `id`'s local interface if that loop runs on this
/// thread; otherwise gives `value` back for the remote path. One
/// thread-local read decides.
#[inline]
pub(crate) fn with_local<T, R>(
    id: LoopId,
    value: T,
    f: impl FnOnce(&dyn Local, T) -> R,
) -> Result<R, T> {
    match CURRENT.with(|c| c.get()) {
        // Safety: a registered pointer is alive until its guard drops,
        // which happens on this thread after every use below.
        Some(cur) if cur.id == id => Ok(f(unsafe { cur.local.as_ref() }, value)),
        _ => Err(value),
    }
}

/// Runs `f` with whatever loop runs on this thread.
#[inline]
pub(crate) fn with_any<R>(f: impl FnOnce(LoopId, &dyn Local) -> R) -> Option<R> {
    CURRENT
        .with(|c| c.get())
        // Safety: as in `with_local`.
        .map(|cur| f(cur.id, unsafe { cur.local.as_ref() }))
}

crate::sync::thread_local_cell! {
    /// How the last request made from this thread since its loop last went
    /// idle was received: `None` if it made none, `Some(true)` if whoever
    /// serves it (another loop, a pool worker) was asleep and had to be
    /// woken, `Some(false)` if it was awake. A loop decides from this
    /// whether a reply may come before sleeping would pay off.
    static LAST_REQUEST_WOKE: Cell<Option<bool>> = Cell::new(None);
}

/// Records how a request made from this thread was received: a post to a
/// loop, a job handed to a pool (`woke`: its server had to be woken).
#[inline]
pub(crate) fn note_request(woke: bool) {
    LAST_REQUEST_WOKE.with(|c| c.set(Some(woke)));
}

/// Takes what [`note_request`] recorded (the loop going idle).
#[inline]
pub(crate) fn take_last_request() -> Option<bool> {
    LAST_REQUEST_WOKE.with(|c| c.take())
}

crate::sync::thread_local_cell! {
    /// The loop whose core this thread holds while closing it (not
    /// running it).
    static CLOSING: Cell<Option<usize>> = Cell::new(None);
}

/// Marks this thread as holding loop `id`'s core while it closes the
/// loop, until the guard drops (see [`holds_core`]).
pub(crate) fn hold_for_close(id: LoopId) -> HeldForClose {
    let previous = CLOSING.with(|c| c.replace(Some(id as usize)));
    HeldForClose { previous }
}

/// See [`hold_for_close`].
pub(crate) struct HeldForClose {
    previous: Option<usize>,
}

impl Drop for HeldForClose {
    fn drop(&mut self) {
        let previous = self.previous;
        CLOSING.with(|c| c.set(previous));
    }
}

/// Whether this thread holds loop `id`'s core: it runs the loop, or it is
/// closing it.
#[inline]
pub(crate) fn holds_core(id: LoopId) -> bool {
    runs_here(id) || CLOSING.with(|c| c.get() == Some(id as usize))
}
