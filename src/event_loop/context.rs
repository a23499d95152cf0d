//! The thread-local record of the loop running on this thread.
//!
//! While `run_forever` runs, a thread-local points at its [`RunContext`].
//! That pointer is how `call_soon` on the loop's own thread finds the ready
//! queue without a lock, how a handle knows it may release its share with a
//! plain store, and how `get_running_loop()` answers.

use super::EventLoop;
use super::core::Core;
use super::shared::Shared;
use crate::error::PanicPayload;
use crate::exception::ExceptionContext;
use crate::handle::HandleInfo;
use crate::runnable::Runnable;
use std::cell::Cell;
use std::ptr;
use std::task::{Context, Poll};

/// The future `run_until_complete` drives, borrowed from its stack frame.
pub(crate) type RootPoll<'a> = dyn FnMut(&mut Context<'_>) -> Poll<()> + 'a;

pub(crate) struct RunContext {
    pub(crate) shared: *const Shared,
    pub(crate) core: *const Core,
    pub(crate) event_loop: EventLoop,
    /// The id of the root task and the future it polls, while
    /// `run_until_complete` is running.
    pub(crate) root: Cell<Option<(u64, *mut RootPoll<'static>)>>,
    /// A panic raised by the root future, re-raised by `run_until_complete`.
    pub(crate) root_panic: Cell<Option<PanicPayload>>,
}

thread_local! {
    static CURRENT: Cell<*const RunContext> = const { Cell::new(ptr::null()) };
}

/// Clears the thread-local when the run ends, also when it unwinds.
pub(crate) struct Entered(());

impl Drop for Entered {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(ptr::null()));
    }
}

/// Marks `ctx` as the loop running on this thread until the guard drops.
///
/// # Safety
/// `ctx` (and the core it points to) must outlive the guard.
pub(crate) unsafe fn enter(ctx: &RunContext) -> Entered {
    CURRENT.with(|c| c.set(ctx));
    Entered(())
}

#[inline]
fn current() -> *const RunContext {
    CURRENT.with(|c| c.get())
}

/// Whether the loop identified by `owner` is running on this thread.
#[inline]
pub(crate) fn runs_here(owner: *const ()) -> bool {
    let ctx = current();
    // Safety: a non-null pointer is the live context of this thread's run.
    !ctx.is_null() && unsafe { (*ctx).shared as *const () == owner }
}

/// Whether any loop runs on this thread.
pub(crate) fn any_running() -> bool {
    !current().is_null()
}

/// Runs `f` with the core of `shared` and `value` if that loop runs on
/// this thread; otherwise gives `value` back, so the caller can take the
/// remote path with it. One thread-local read decides.
#[inline]
pub(crate) fn with_core<T, R>(
    shared: &Shared,
    value: T,
    f: impl FnOnce(&Core, T) -> R,
) -> Result<R, T> {
    let ctx = current();
    // Safety: see `runs_here`; the core lives as long as the context.
    unsafe {
        if !ctx.is_null() && ptr::eq((*ctx).shared, shared) {
            Ok(f(&*(*ctx).core, value))
        } else {
            Err(value)
        }
    }
}

/// Runs `f` with this thread's running context, if any.
pub(crate) fn with_current<R>(f: impl FnOnce(&RunContext) -> R) -> Option<R> {
    let ctx = current();
    // Safety: see `runs_here`.
    if ctx.is_null() {
        None
    } else {
        Some(f(unsafe { &*ctx }))
    }
}

/// The loop running on this thread.
pub(crate) fn running_loop() -> Option<EventLoop> {
    with_current(|ctx| ctx.event_loop.clone())
}

/// Queues `r` on this thread's running loop (loop thread only: tasks
/// re-queue themselves here).
pub(crate) fn push_ready(r: Runnable) {
    let ctx = current();
    assert!(!ctx.is_null(), "push_ready outside the loop thread");
    // Safety: see `runs_here`.
    unsafe { (*(*ctx).core).push(r) }
}

/// A timer of the running loop was cancelled on its thread.
pub(crate) fn note_timer_cancelled() {
    with_current(|ctx| {
        // Safety: see `with_core`.
        unsafe { (*ctx.core).note_timer_cancelled() }
    });
}

/// Reports a panicking callback to the running loop's exception handler.
pub(crate) fn report_callback_panic(info: HandleInfo, payload: PanicPayload) {
    let message = format!("Exception in callback {info}");
    let ctx = ExceptionContext::new(message).with_handle(info);
    match with_current(|run| run.event_loop.clone()) {
        Some(event_loop) => event_loop.inner.shared.report_panic(ctx, payload),
        None => crate::exception::default_exception_handler(&ctx.with_panic(payload)),
    }
}

/// Polls the root future of `run_until_complete` if `id` is the current
/// root. Returns `Ready` when the root is done, gone, or panicked.
pub(crate) fn poll_root(id: u64, cx: &mut Context<'_>) -> Poll<()> {
    let outcome = with_current(|ctx| match ctx.root.get() {
        Some((root_id, fut)) if root_id == id => {
            // Safety: `run_until_complete` keeps the future alive and clears
            // `root` before its frame ends; we are on its thread.
            let polled =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { (*fut)(cx) }));
            match polled {
                Ok(Poll::Pending) => Poll::Pending,
                Ok(Poll::Ready(())) => {
                    ctx.root.set(None);
                    ctx.event_loop.stop_soon();
                    Poll::Ready(())
                }
                Err(payload) => {
                    ctx.root.set(None);
                    ctx.root_panic.set(Some(payload));
                    ctx.event_loop.inner.shared.request_stop();
                    Poll::Ready(())
                }
            }
        }
        _ => Poll::Ready(()),
    });
    outcome.unwrap_or(Poll::Ready(()))
}

/// The root task went away without finishing the root future: stop the
/// run, so `run_until_complete` reports `StoppedBeforeComplete`.
pub(crate) fn abandon_root(id: u64) {
    with_current(|ctx| {
        if matches!(ctx.root.get(), Some((root_id, _)) if root_id == id) {
            ctx.root.set(None);
            ctx.event_loop.inner.shared.request_stop();
        }
    });
}
