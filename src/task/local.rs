//! Tasks for futures that are not `Send` (tokio's `spawn_local`; in
//! asyncio every task is one, since a loop never changes threads).
//!
//! A loop's tasks are `Send` because a stopped loop may be run next on
//! another thread. A local task is pinned instead to the thread that
//! created it: its future is polled and dropped there only. If its loop
//! is later run on another thread, the task's next step there does not
//! touch the future: it ends as a panic ("a local task ... another
//! thread"), reported like any task's, and the future is leaked, never
//! dropped off its thread. The same holds for a local task dropped by a
//! `close()` made on another thread.

use super::{Task, raw};
use crate::error::Error;
use crate::event_loop::EventLoop;
use std::future::{Future, IntoFuture};
use std::mem::ManuallyDrop;
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::ThreadId;

/// A future that may only be polled and dropped on the thread `owner`.
struct Pinned<F> {
    future: ManuallyDrop<F>,
    owner: ThreadId,
}

// Safety: the future inside is touched only on `owner`: `poll` refuses to
// poll it elsewhere, and `drop` leaks it elsewhere. Its output is produced
// on `owner` by a poll there; the task keeps it for its `Task` handle,
// which is not `Send` for an output that is not.
unsafe impl<F> Send for Pinned<F> {}

impl<F: Future> Future for Pinned<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if std::thread::current().id() != self.owner {
            panic!(
                "a local task (create_task_local) runs only on the thread that created it, \
                 and its loop now runs on another thread"
            );
        }
        // Safety: structural pinning of `future`, which is never moved
        // out (only dropped in place, by `drop`).
        unsafe { self.map_unchecked_mut(|p| &mut *p.future) }.poll(cx)
    }
}

impl<F> Drop for Pinned<F> {
    fn drop(&mut self) {
        if std::thread::current().id() == self.owner {
            // Safety: dropped once, here, on its own thread.
            unsafe { ManuallyDrop::drop(&mut self.future) }
        }
        // Elsewhere it is leaked: a value that is not `Send` is never
        // dropped off its thread.
    }
}

impl EventLoop {
    /// [`EventLoop::create_task`] for a future that need not be `Send`
    /// (tokio's `spawn_local`; asyncio's normal case): the task runs on
    /// this thread only, so create it on the thread that runs the loop
    /// (inside the loop, or before running it here). Its output need not
    /// be `Send` either (the handle then stays on this thread). The task
    /// factory does not wrap local tasks (it takes `Send` futures). If the
    /// loop is later run on another thread, the task ends as a reported
    /// panic there without its future being touched (see the module
    /// docs). Error: [`Error::Closed`].
    ///
    /// ```
    /// use evloop::EventLoop;
    /// use std::rc::Rc;
    ///
    /// let lp = EventLoop::new()?;
    /// let shared = Rc::new(41); // not Send
    /// let task = lp.create_task_local(async move { *shared + 1 })?;
    /// assert_eq!(lp.run_until_complete(task)?.unwrap(), 42);
    /// # Ok::<(), evloop::Error>(())
    /// ```
    #[track_caller]
    pub fn create_task_local<F>(&self, fut: F) -> Result<Task<F::Output>, Error>
    where
        F: IntoFuture,
        F::IntoFuture: 'static,
        F::Output: 'static,
    {
        create(self, fut.into_future(), Location::caller())
    }
}

/// Creates a local task on the loop running on this thread (tokio's
/// `spawn_local`); see [`EventLoop::create_task_local`]. Error:
/// [`Error::NoRunningLoop`].
#[track_caller]
pub fn spawn_local<F>(fut: F) -> Result<Task<F::Output>, Error>
where
    F: IntoFuture,
    F::IntoFuture: 'static,
    F::Output: 'static,
{
    let location = Location::caller();
    create(
        &crate::policy::get_running_loop()?,
        fut.into_future(),
        location,
    )
}

/// Allocates a local task pinned to this thread and queues its first
/// step.
fn create<F>(
    event_loop: &EventLoop,
    fut: F,
    location: &'static Location<'static>,
) -> Result<Task<F::Output>, Error>
where
    F: Future + 'static,
    F::Output: 'static,
{
    if event_loop.is_closed() {
        return Err(Error::Closed);
    }
    let pinned = Pinned {
        future: ManuallyDrop::new(fut),
        owner: std::thread::current().id(),
    };
    let shared = &event_loop.inner.shared;
    let sched: Arc<dyn crate::sched::Schedule> = shared.clone();
    let (runnable, ptr) = raw::allocate(sched, pinned, None, false, location);
    super::enqueue(shared, runnable, ptr)
}
