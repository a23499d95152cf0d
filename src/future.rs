//! [`LoopFuture`]: asyncio's `Future`, a result that some code sets and
//! other code awaits, attached to a loop whose queue runs its callbacks.

use crate::cancellation::{Awaited, CancelMessage};
use crate::error::{Error, SharedError, TaskError};
use crate::event_loop::EventLoop;
use crate::event_loop::shared::Shared;
use crate::handle::CallbackId;
use crate::waiters::{self, WaitKey, Waiters};
use std::fmt;
use std::future::{Future, IntoFuture};
use std::panic::Location;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

type DoneCallback<T> = Box<dyn FnOnce(LoopFuture<T>) + Send + 'static>;

enum Outcome<T> {
    Pending,
    Done(Result<T, TaskError>),
    /// Done, and an awaiter took the result.
    Taken,
}

struct State<T> {
    outcome: Outcome<T>,
    cancelled: bool,
    /// `result()` looked at the outcome (asyncio's `__log_traceback` off).
    retrieved: bool,
    callbacks: Vec<(CallbackId, DoneCallback<T>, &'static Location<'static>)>,
    next_id: u64,
    waiters: Waiters,
    /// The error readers of a panicked outcome share (made at the first
    /// read; see `TaskError::share_cached`).
    panic_error: Option<SharedError>,
}

struct Inner<T> {
    shared: Arc<Shared>,
    state: Mutex<State<T>>,
}

/// A future attached to a loop (asyncio: `loop.create_future()`).
///
/// Any thread may complete it with [`LoopFuture::set_result`],
/// [`LoopFuture::set_exception`] or [`LoopFuture::cancel`]; every task
/// awaiting it is woken, and its done callbacks are scheduled on its loop
/// with `call_soon`, in registration order, never run inline.
///
/// Clones are the same future. Awaiting it (`fut.await`, through
/// [`FutureAwait`]) yields the result *by value*: the first awaiter to see
/// it takes it; a later awaiter of a clone gets an `InvalidState` error.
/// Awaiting `&fut` (for `T: Clone`, through [`FutureRead`]) reads it
/// instead, so many tasks can await one future as in asyncio, and
/// [`LoopFuture::result`] reads it without waiting. Done callbacks are
/// queued before awaiters are woken, so a callback on the loop always sees
/// the result before an awaiting task takes it (asyncio runs both in
/// registration order; it never has to move a value out).
///
/// An awaiter that goes away before the result arrives (a `wait_for`
/// timeout, a losing `select!` branch) leaves nothing behind in the
/// future. As in asyncio, cancelling a task while it awaits the future
/// cancels the future too.
///
/// ```
/// use evloop::EventLoop;
///
/// let lp = EventLoop::new()?;
/// let fut = lp.create_future::<u32>();
/// let setter = fut.clone();
/// std::thread::spawn(move || setter.set_result(7).unwrap());
/// assert_eq!(lp.run_until_complete(fut)?.unwrap(), 7);
/// # Ok::<(), evloop::Error>(())
/// ```
pub struct LoopFuture<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for LoopFuture<T> {
    fn clone(&self) -> Self {
        LoopFuture {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Send + 'static> LoopFuture<T> {
    pub(crate) fn new(shared: Arc<Shared>) -> LoopFuture<T> {
        LoopFuture {
            inner: Arc::new(Inner {
                shared,
                state: Mutex::new(State {
                    outcome: Outcome::Pending,
                    cancelled: false,
                    retrieved: false,
                    callbacks: Vec::new(),
                    next_id: 0,
                    waiters: Waiters::default(),
                    panic_error: None,
                }),
            }),
        }
    }

    /// Completes the future with `value` (asyncio: `set_result`).
    /// Errors: [`Error::InvalidState`] if it is already done;
    /// [`Error::Closed`] if it was completed but its loop is closed, so its
    /// done callbacks could not be scheduled.
    pub fn set_result(&self, value: T) -> Result<(), Error> {
        self.complete(Ok(value))
    }

    /// Completes the future with an error (asyncio: `set_exception`);
    /// awaiters get [`TaskError::Exception`]. Errors as for `set_result`.
    pub fn set_exception<E>(&self, error: E) -> Result<(), Error>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        self.complete(Err(TaskError::Exception(Arc::new(error))))
    }

    /// Completes the future with a shared error value.
    pub fn set_shared_exception(&self, error: SharedError) -> Result<(), Error> {
        self.complete(Err(TaskError::Exception(error)))
    }

    /// Cancels the future (asyncio: `cancel()`); returns `false` if it was
    /// already done.
    pub fn cancel(&self) -> bool {
        self.cancel_inner(None)
    }

    /// Cancels the future with a message (asyncio: `cancel(msg)`), which
    /// awaiters find in [`TaskError::Cancelled`]; returns `false` if it was
    /// already done.
    ///
    /// ```
    /// use evloop::{EventLoop, TaskError};
    ///
    /// let lp = EventLoop::new()?;
    /// let fut = lp.create_future::<()>();
    /// assert!(fut.cancel_with("shutting down"));
    /// let err = fut.result().unwrap_err();
    /// assert_eq!(err.cancel_message(), Some("shutting down"));
    /// assert_eq!(err.to_string(), "CancelledError: shutting down");
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub fn cancel_with(&self, message: impl Into<Arc<str>>) -> bool {
        self.cancel_inner(Some(message.into()))
    }

    fn cancel_inner(&self, message: CancelMessage) -> bool {
        // `Closed` means it was cancelled but its callbacks were dropped.
        !matches!(
            self.complete(Err(TaskError::Cancelled(message))),
            Err(Error::InvalidState(_))
        )
    }

    /// Completes with any outcome (used by the executor for panics).
    pub(crate) fn complete(&self, outcome: Result<T, TaskError>) -> Result<(), Error> {
        let (callbacks, wakers) = {
            let mut st = crate::sync::lock(&self.inner.state);
            if !matches!(st.outcome, Outcome::Pending) {
                drop(st);
                drop(outcome);
                return Err(Error::InvalidState("invalid state"));
            }
            st.cancelled = matches!(outcome, Err(TaskError::Cancelled(_)));
            st.outcome = Outcome::Done(outcome);
            (std::mem::take(&mut st.callbacks), st.waiters.take_all())
        };
        // Callbacks are queued before awaiters are woken, so that on the
        // loop every done callback runs (and can read the result) before an
        // awaiting task resumes and takes the value.
        let mut result = Ok(());
        for (_, callback, location) in callbacks {
            if let Err(e) = self.schedule_callback(callback, location) {
                result = Err(e);
            }
        }
        waiters::wake_all(wakers);
        result
    }

    fn schedule_callback(
        &self,
        callback: DoneCallback<T>,
        location: &'static Location<'static>,
    ) -> Result<(), Error> {
        let fut = self.clone();
        self.inner
            .shared
            .call_soon(None, location, move || callback(fut))
            .map(drop)
    }

    /// Whether the future is done (asyncio: `done`).
    pub fn done(&self) -> bool {
        !matches!(
            crate::sync::lock(&self.inner.state).outcome,
            Outcome::Pending
        )
    }

    /// Whether the future was cancelled (asyncio: `cancelled`).
    pub fn cancelled(&self) -> bool {
        crate::sync::lock(&self.inner.state).cancelled
    }

    /// Adds a callback to run (on the loop, via `call_soon`) when the
    /// future is done; if it is done already, schedules it now (asyncio:
    /// `add_done_callback`). Callbacks run in the order they were added.
    /// Error: [`Error::Closed`] if the callback had to be scheduled now and
    /// the loop is closed.
    #[track_caller]
    pub fn add_done_callback<F>(&self, callback: F) -> Result<CallbackId, Error>
    where
        F: FnOnce(LoopFuture<T>) + Send + 'static,
    {
        let location = Location::caller();
        let mut st = crate::sync::lock(&self.inner.state);
        let id = CallbackId::new(st.next_id);
        st.next_id += 1;
        if matches!(st.outcome, Outcome::Pending) {
            st.callbacks.push((id, Box::new(callback), location));
            return Ok(id);
        }
        drop(st);
        self.schedule_callback(Box::new(callback), location)?;
        Ok(id)
    }

    /// Removes a callback added with `add_done_callback` that has not been
    /// scheduled yet; returns how many were removed (0 or 1, as asyncio's
    /// count).
    pub fn remove_done_callback(&self, id: CallbackId) -> usize {
        let removed: Vec<_> = {
            let mut st = crate::sync::lock(&self.inner.state);
            let (gone, kept) = std::mem::take(&mut st.callbacks)
                .into_iter()
                .partition(|(cid, _, _)| *cid == id);
            st.callbacks = kept;
            gone
        };
        // The callback's captures are dropped outside the lock.
        removed.len()
    }

    /// The result without taking it (asyncio: `result()`): the value, or
    /// the error the future completed with; an `InvalidState` exception if
    /// it is not done ("Result is not set.") or the value was taken.
    pub fn result(&self) -> Result<T, TaskError>
    where
        T: Clone,
    {
        self.inspect(|outcome, cache| match outcome {
            Outcome::Pending => Err(TaskError::invalid("Result is not set.")),
            Outcome::Taken => Err(TaskError::invalid("the result was already taken")),
            Outcome::Done(Ok(v)) => Ok(v.clone()),
            Outcome::Done(Err(e)) => Err(e.share_cached(cache)),
        })
    }

    /// The error the future completed with, without taking anything
    /// (asyncio: `exception()`): `Ok(None)` if it has a value,
    /// `Ok(Some(error))` if it failed, `Err(Cancelled)` if it was
    /// cancelled, and an `InvalidState` error if it is not done ("Exception
    /// is not set.") or an awaiter took the outcome. Unlike
    /// [`LoopFuture::result`] it needs no `T: Clone`. Either call marks a
    /// failure as retrieved, so it is not reported when the future drops.
    pub fn exception(&self) -> Result<Option<TaskError>, TaskError> {
        self.inspect(|outcome, cache| match outcome {
            Outcome::Pending => Err(TaskError::invalid("Exception is not set.")),
            Outcome::Taken => Err(TaskError::invalid("the result was already taken")),
            Outcome::Done(Ok(_)) => Ok(None),
            Outcome::Done(Err(e @ TaskError::Cancelled(_))) => Err(e.share()),
            Outcome::Done(Err(e)) => Ok(Some(e.share_cached(cache))),
        })
    }

    /// Reads the outcome under the lock, marking a finished one as
    /// retrieved (asyncio clears `__log_traceback` the same way).
    fn inspect<R>(&self, read: impl FnOnce(&Outcome<T>, &mut Option<SharedError>) -> R) -> R {
        let mut st = crate::sync::lock(&self.inner.state);
        if !matches!(st.outcome, Outcome::Pending) {
            st.retrieved = true;
        }
        let st = &mut *st;
        read(&st.outcome, &mut st.panic_error)
    }

    /// The loop the future belongs to, while that loop exists.
    pub fn get_loop(&self) -> Option<EventLoop> {
        self.inner.shared.event_loop()
    }

    /// The identity of the loop the future belongs to.
    pub(crate) fn loop_id(&self) -> crate::sched::LoopId {
        self.inner.shared.id()
    }
}

/// The future of `fut.await`: waits for the result and takes it.
#[must_use = "futures do nothing unless awaited"]
pub struct FutureAwait<T: Send + 'static> {
    fut: LoopFuture<T>,
    key: WaitKey,
    awaited: Awaited,
}

impl<T: Send + 'static> IntoFuture for LoopFuture<T> {
    type Output = Result<T, TaskError>;
    type IntoFuture = FutureAwait<T>;

    fn into_future(self) -> FutureAwait<T> {
        FutureAwait {
            fut: self,
            key: WaitKey::default(),
            awaited: Awaited::default(),
        }
    }
}

impl<T: Send + 'static> Future for FutureAwait<T> {
    type Output = Result<T, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if crate::event_loop::context::root_is_foreign(at(this), this.fut.loop_id()) {
            return Poll::Pending;
        }
        let polled = waiters::poll_wait(
            || crate::sync::lock(&this.fut.inner.state),
            &mut this.key,
            cx,
            |st: &mut State<T>| match std::mem::replace(&mut st.outcome, Outcome::Taken) {
                Outcome::Pending => {
                    st.outcome = Outcome::Pending;
                    None
                }
                Outcome::Done(r) => Some(r),
                Outcome::Taken => Some(Err(TaskError::invalid("the result was already taken"))),
            },
            |st| &mut st.waiters,
        );
        match polled {
            Poll::Pending => this.awaited.pending(),
            Poll::Ready(_) => this.awaited.ready(),
        }
        polled
    }
}

impl<T: Send + 'static> Drop for FutureAwait<T> {
    fn drop(&mut self) {
        let fut = &self.fut;
        waiters::forget(
            || crate::sync::lock(&fut.inner.state),
            &mut self.key,
            |st| &mut st.waiters,
        );
        if let Some(message) = self.awaited.cancellation() {
            fut.cancel_inner(message);
        }
    }
}

impl<T: Send + 'static> fmt::Debug for FutureAwait<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FutureAwait")
            .field("fut", &self.fut)
            .finish()
    }
}

/// The future of `(&fut).await`: reads the result without taking it.
#[must_use = "futures do nothing unless awaited"]
pub struct FutureRead<'a, T: Clone + Send + 'static> {
    fut: &'a LoopFuture<T>,
    key: WaitKey,
    awaited: Awaited,
}

/// Awaiting a *reference* reads the result without taking it, so any
/// number of tasks can await the same future and each gets the value, as
/// in asyncio (`T: Clone`):
///
/// ```
/// use evloop::EventLoop;
///
/// let lp = EventLoop::new()?;
/// let fut = lp.create_future::<String>();
/// let readers: Vec<_> = (0..3)
///     .map(|_| {
///         let f = fut.clone();
///         lp.create_task(async move { (&f).await.unwrap() }).unwrap()
///     })
///     .collect();
/// fut.set_result("shared".to_string())?;
/// for r in readers {
///     assert_eq!(lp.run_until_complete(r)?.unwrap(), "shared");
/// }
/// # Ok::<(), evloop::Error>(())
/// ```
impl<'a, T: Clone + Send + 'static> IntoFuture for &'a LoopFuture<T> {
    type Output = Result<T, TaskError>;
    type IntoFuture = FutureRead<'a, T>;

    fn into_future(self) -> FutureRead<'a, T> {
        FutureRead {
            fut: self,
            key: WaitKey::default(),
            awaited: Awaited::default(),
        }
    }
}

impl<T: Clone + Send + 'static> Future for FutureRead<'_, T> {
    type Output = Result<T, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if crate::event_loop::context::root_is_foreign(at(this), this.fut.loop_id()) {
            return Poll::Pending;
        }
        let polled = waiters::poll_wait(
            || crate::sync::lock(&this.fut.inner.state),
            &mut this.key,
            cx,
            |st: &mut State<T>| (!matches!(st.outcome, Outcome::Pending)).then_some(()),
            |st| &mut st.waiters,
        );
        match polled {
            Poll::Pending => {
                this.awaited.pending();
                Poll::Pending
            }
            Poll::Ready(()) => {
                this.awaited.ready();
                Poll::Ready(this.fut.result())
            }
        }
    }
}

impl<T: Clone + Send + 'static> Drop for FutureRead<'_, T> {
    fn drop(&mut self) {
        waiters::forget(
            || crate::sync::lock(&self.fut.inner.state),
            &mut self.key,
            |st| &mut st.waiters,
        );
        if let Some(message) = self.awaited.cancellation() {
            self.fut.cancel_inner(message);
        }
    }
}

impl<T: Clone + Send + 'static> fmt::Debug for FutureRead<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FutureRead").field("fut", self.fut).finish()
    }
}

/// Where a handle lives, for `run_until_complete`'s foreign-loop check.
pub(crate) fn at<H>(handle: &H) -> (usize, usize) {
    (handle as *const H as usize, std::mem::size_of::<H>())
}

impl<T> Drop for Inner<T> {
    /// asyncio logs "Future exception was never retrieved" when a future
    /// that failed is garbage-collected unread; the same happens here when
    /// the last clone goes (a panicking `run_in_executor` job whose future
    /// nobody awaited is reported rather than lost).
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if st.retrieved {
            return;
        }
        let outcome = std::mem::replace(&mut st.outcome, Outcome::Taken);
        let ctx = crate::exception::ExceptionContext::new("Future exception was never retrieved");
        match outcome {
            Outcome::Done(Err(TaskError::Panicked(payload))) => {
                self.shared.report_panic(ctx, payload);
            }
            Outcome::Done(Err(TaskError::Exception(error))) => {
                self.shared.call_exception_handler(ctx.with_error(error));
            }
            other => crate::util::drop_quietly(other, "a future's result"),
        }
    }
}

impl<T> fmt::Debug for LoopFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = crate::sync::lock(&self.inner.state);
        let state = match st.outcome {
            Outcome::Pending => "pending",
            _ if st.cancelled => "cancelled",
            _ => "finished",
        };
        f.debug_struct("LoopFuture").field("state", &state).finish()
    }
}

impl EventLoop {
    /// Creates a future attached to this loop (asyncio:
    /// `loop.create_future()`).
    pub fn create_future<T: Send + 'static>(&self) -> LoopFuture<T> {
        LoopFuture::new(self.inner.shared.clone())
    }
}
