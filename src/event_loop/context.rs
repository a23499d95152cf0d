//! What a running loop knows about its run: the [`RunContext`] that
//! `run_forever` builds on its stack and registers with
//! [`crate::sched::enter`] as the loop running on this thread.
//!
//! The context is the loop's implementation of [`Local`], handed to every
//! callback, task and watcher it runs. From the loop's layer upwards it is
//! also how `call_soon` on the loop's own thread finds the ready queue
//! without a lock, and how `get_running_loop()` and `run_until_complete`'s
//! root future are found.

use super::EventLoop;
use super::core::Core;
use super::shared::Shared;
use crate::error::PanicPayload;
use crate::exception::ExceptionContext;
use crate::runnable::Runnable;
use crate::sched::{self, Local};
use crate::task::raw::{self, TaskHeader};
use crate::task::registry::TaskRegistry;
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The future `run_until_complete` drives, borrowed from its stack frame.
pub(crate) type RootPoll<'a> = dyn FnMut(&mut Context<'_>) -> Poll<()> + 'a;

pub(crate) struct RunContext {
    pub(crate) core: *const Core,
    pub(crate) event_loop: EventLoop,
    /// The id of the root task and the future it polls, while
    /// `run_until_complete` is running.
    pub(crate) root: Cell<Option<(u64, *mut RootPoll<'static>)>>,
    /// A panic raised by the root future, re-raised by `run_until_complete`.
    pub(crate) root_panic: Cell<Option<PanicPayload>>,
    /// The root future is a handle of another loop.
    pub(crate) foreign_root: Cell<bool>,
    /// The loop's idle hook, as it was when the run began.
    pub(crate) idle_hook: Option<super::IdleHook>,
}

impl RunContext {
    pub(crate) fn core(&self) -> &Core {
        // Safety: `run_core` keeps the core alive for as long as the
        // context (the context is declared after the core's owner).
        unsafe { &*self.core }
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.event_loop.inner.shared
    }
}

impl Local for RunContext {
    #[inline]
    fn push(&self, r: Runnable) {
        self.core().push(r)
    }

    fn tasks(&self) -> &RefCell<TaskRegistry> {
        &self.core().tasks
    }

    fn free_io(&self, token: mio::Token) -> bool {
        crate::readiness::free_in(&self.core().io, token)
    }

    fn read_buffer(&self) -> &RefCell<Vec<u8>> {
        &self.core().read_buffer
    }

    fn timer_cancelled(&self) {
        self.core().note_timer_cancelled()
    }

    fn report_panic(&self, ctx: ExceptionContext, payload: PanicPayload) {
        self.shared().report_panic(ctx, payload)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Runs `f` with the run context of `shared`'s loop if it runs on this
/// thread; otherwise gives `value` back, so the caller can take the remote
/// path with it. One thread-local read decides.
#[inline]
pub(crate) fn with_run<T, R>(
    shared: &Shared,
    value: T,
    f: impl FnOnce(&RunContext, T) -> R,
) -> Result<R, T> {
    sched::with_local(shared.id(), value, |local, value| {
        // Safety: a loop id is registered only by `run_core`, with a
        // `RunContext` (a `Shared`'s address identifies its loop), so the
        // object behind `local` is one; the cast keeps the hot path free
        // of a dynamic type check.
        let ctx = unsafe { &*(local as *const dyn Local as *const RunContext) };
        f(ctx, value)
    })
}

/// Runs `f` with this thread's running context, if an evloop loop runs
/// here.
pub(crate) fn with_current<R>(f: impl FnOnce(&RunContext) -> R) -> Option<R> {
    sched::with_any(|_, local| local.as_any().downcast_ref::<RunContext>().map(f)).flatten()
}

/// The loop running on this thread.
pub(crate) fn running_loop() -> Option<EventLoop> {
    with_current(|ctx| ctx.event_loop.clone())
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
                    ctx.shared().request_stop();
                    Poll::Ready(())
                }
            }
        }
        _ => Poll::Ready(()),
    });
    outcome.unwrap_or(Poll::Ready(()))
}

/// The future of `run_until_complete`'s driver task: polls the root
/// future (see [`poll_root`]).
struct RootPoller {
    id: u64,
}

impl Future for RootPoller {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        poll_root(self.id, cx)
    }
}

/// `run_until_complete`'s driver: a task of evloop's own that polls the
/// caller's future, which need not even be `Send` (so no task factory
/// wraps it). It takes a `Task-<n>` number only if someone asks its name,
/// and a closing loop destroys it without a report: driving a future
/// creates no task the user can see (asyncio creates none for a future).
pub(crate) struct RootTask(NonNull<TaskHeader>);

impl RootTask {
    /// Allocates the driver of root `id` and queues its first step
    /// through the inbox, behind whatever was scheduled before.
    #[track_caller]
    pub(crate) fn spawn(shared: &Arc<Shared>, id: u64) -> Result<RootTask, crate::Error> {
        let sched: Arc<dyn crate::sched::Schedule> = shared.clone();
        let (runnable, ptr) =
            raw::allocate(sched, RootPoller { id }, None, true, Location::caller());
        let task = RootTask(ptr);
        match shared.schedule(runnable) {
            Ok(()) => Ok(task),
            Err(runnable) => {
                drop(runnable);
                Err(crate::Error::Closed)
            }
        }
    }

    /// The root future is gone (the loop stopped before it finished): the
    /// driver ends without a trace.
    pub(crate) fn dismiss(&self, core: &Core) {
        // Safety: we hold the handle; the caller holds the loop's core.
        unsafe { raw::dismiss(self.0, &core.tasks) }
    }
}

impl Drop for RootTask {
    fn drop(&mut self) {
        // Safety: the driver's handle is ours.
        unsafe { raw::drop_handle(self.0) }
    }
}

crate::sync::thread_local_cell! {
    /// Address and size of `run_until_complete`'s root future while it is
    /// being polled on this thread, so that a handle can tell that it *is*
    /// the root (see [`root_is_foreign`]).
    static ROOT_FUTURE: Cell<(usize, usize)> = Cell::new((0, 0));
}

/// Polls the root future, at `at` (address, size), with that marked;
/// returns the poll's result and whether the root turned out to be a
/// handle of another loop.
pub(crate) fn with_root_future<R>(at: (usize, usize), poll: impl FnOnce() -> R) -> (R, bool) {
    struct Unmark((usize, usize));
    impl Drop for Unmark {
        fn drop(&mut self) {
            let previous = self.0;
            ROOT_FUTURE.with(|r| r.set(previous));
        }
    }
    let r = {
        let _unmark = Unmark(ROOT_FUTURE.with(|r| r.replace(at)));
        poll()
    };
    let foreign = with_current(|ctx| ctx.foreign_root.replace(false)).unwrap_or(false);
    (r, foreign)
}

/// Called by a loop-bound handle (`Task`, `LoopFuture`, and their
/// by-reference readers) at the start of its poll: `true` if the handle at
/// `at` (address, size) is `run_until_complete`'s root future itself and
/// belongs to a loop other than the one running, which asyncio refuses
/// ("The future belongs to a different loop than the one specified as the
/// loop argument"). The handle then returns `Pending` without waiting, and
/// `run_until_complete` returns [`Error::ForeignFuture`](crate::Error).
/// Awaiting a handle of another loop from inside a future is allowed.
#[inline]
pub(crate) fn root_is_foreign(at: (usize, usize), owner: crate::sched::LoopId) -> bool {
    if ROOT_FUTURE.with(|r| r.get()) != at {
        return false;
    }
    with_current(|ctx| {
        let foreign = ctx.shared().id() != owner;
        if foreign {
            ctx.foreign_root.set(true);
        }
        foreign
    })
    .unwrap_or(false)
}
