//! Tasks: futures the loop drives (asyncio's `Task`), their handles, and
//! the task factory hook.

mod local;
mod outcome;
pub(crate) mod raw;
pub(crate) mod registry;
pub(crate) mod state;

use crate::cancellation::{Awaited, CancelMessage};
use crate::error::{Error, TaskError};
use crate::event_loop::shared::Shared;
use crate::event_loop::{BoxFuture, EventLoop, TaskSpec, context};

use crate::handle::CallbackId;
use crate::sched::{self, Schedule};
use crate::waiters::{self, WaitKey};
use raw::TaskHeader;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::panic::Location;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

pub use local::spawn_local;
pub use outcome::{TaskDone, TaskOutcome};

/// A future being driven by a loop (asyncio: `Task`), returned by
/// [`EventLoop::create_task`].
///
/// Awaiting it (`task.await`, or `task.wait().await` to keep the handle)
/// gives the future's output, or [`TaskError::Cancelled`] /
/// [`TaskError::Panicked`]. As in asyncio, a finished task's outcome can
/// be read any number of times without taking it: [`Task::result`] (for
/// `T: Clone`), [`Task::exception`], and `(&task).await`, which any number
/// of tasks may do at once. Dropping the handle detaches the task: it
/// keeps running. If a detached task panics, the panic goes to the loop's
/// exception handler ("Task exception was never retrieved").
///
/// Cancellation follows the await chain as in asyncio: if a task is
/// cancelled (or a [`wait_for`](crate::wait_for) times out) while it is
/// awaiting this task, this task is cancelled too. A handle that is only
/// held, not awaited at that moment, is left alone.
///
/// ```
/// use evloop::EventLoop;
///
/// let lp = EventLoop::new()?;
/// let task = lp.create_task(async { 6 * 7 })?;
/// assert_eq!(lp.run_until_complete(task)?.unwrap(), 42);
/// # Ok::<(), evloop::Error>(())
/// ```
pub struct Task<T> {
    ptr: NonNull<TaskHeader>,
    _output: PhantomData<T>,
}

// Safety: the handle only reads the output (`T: Send`) once the task is
// complete; everything else it touches is thread-safe.
unsafe impl<T: Send> Send for Task<T> {}
unsafe impl<T: Send> Sync for Task<T> {}
impl<T> Unpin for Task<T> {}

impl<T> Task<T> {
    /// The handle of a task just allocated (it owns the `HANDLE` flag).
    pub(crate) fn from_allocation(ptr: NonNull<TaskHeader>) -> Task<T> {
        Task {
            ptr,
            _output: PhantomData,
        }
    }

    fn head(&self) -> &TaskHeader {
        // Safety: the HANDLE flag keeps the task alive.
        unsafe { self.ptr.as_ref() }
    }

    /// Requests cancellation (asyncio: `Task.cancel()`): at its next
    /// scheduling point the task's future is dropped and the task completes
    /// as cancelled. Returns `false` if the task is already done. A task
    /// cancelled before its first step never runs.
    pub fn cancel(&self) -> bool {
        self.cancel_inner(None)
    }

    /// [`Task::cancel`] with a message (asyncio: `Task.cancel(msg)`): the
    /// task ends with `TaskError::Cancelled(Some(message))`, and what it
    /// was awaiting is cancelled with the same message. A later call
    /// replaces the message, as in asyncio.
    ///
    /// ```
    /// use evloop::EventLoop;
    /// use std::time::Duration;
    ///
    /// let lp = EventLoop::new()?;
    /// let task = lp.create_task(evloop::sleep(Duration::from_secs(60)))?;
    /// assert!(task.cancel_with("deadline passed"));
    /// let err = lp.run_until_complete(task)?.unwrap_err();
    /// assert_eq!(err.to_string(), "CancelledError: deadline passed");
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub fn cancel_with(&self, message: impl Into<Arc<str>>) -> bool {
        self.cancel_inner(Some(message.into()))
    }

    fn cancel_inner(&self, message: CancelMessage) -> bool {
        let head = self.head();
        if head.state.load() & state::COMPLETE != 0 {
            return false;
        }
        if message.is_some() {
            crate::sync::lock(&head.meta).cancel_message = message;
        }
        if head.state.request_cancel() {
            raw::wake_by_ref(self.ptr);
            true
        } else {
            false
        }
    }

    /// Whether the task completed by cancellation.
    pub fn cancelled(&self) -> bool {
        self.head().state.load() & state::CANCELLED != 0
    }

    /// Whether the task is complete (value, panic or cancellation).
    pub fn done(&self) -> bool {
        self.head().state.load() & state::COMPLETE != 0
    }

    /// The task's name; `Task-<id>` unless set (asyncio: `get_name`).
    pub fn get_name(&self) -> String {
        self.head().name()
    }

    /// Renames the task (asyncio: `set_name`).
    pub fn set_name(&self, name: impl Into<String>) {
        let name = raw::Name::Given(name.into());
        let previous = std::mem::replace(&mut crate::sync::lock(&self.head().meta).name, name);
        drop(previous);
    }

    /// Adds a callback to run on the task's loop (via `call_soon`) when the
    /// task is done; if it is done already, schedules it now (asyncio:
    /// `Task.add_done_callback`). Callbacks run in the order they were
    /// added, never inline, and are queued before the task's awaiter is
    /// woken. asyncio passes the task itself; its output belongs to this
    /// handle, so the callback gets a [`TaskDone`]: which task, and how it
    /// ended. Any thread may add one.
    ///
    /// Error: [`Error::Closed`] if the callback had to be scheduled now and
    /// the loop is closed.
    ///
    /// ```
    /// use evloop::{EventLoop, TaskOutcome};
    /// use std::sync::mpsc;
    ///
    /// let lp = EventLoop::new()?;
    /// let task = lp.create_task(async { 1 })?;
    /// let (tx, rx) = mpsc::channel();
    /// task.add_done_callback(move |done| tx.send(done.outcome).unwrap())?;
    /// lp.run_until_complete(task)?.unwrap();
    /// assert_eq!(rx.try_recv().unwrap(), TaskOutcome::Returned);
    /// # Ok::<(), evloop::Error>(())
    /// ```
    #[track_caller]
    pub fn add_done_callback<F>(&self, callback: F) -> Result<CallbackId, Error>
    where
        F: FnOnce(TaskDone) + Send + 'static,
    {
        let location = Location::caller();
        let head = self.head();
        let mut meta = crate::sync::lock(&head.meta);
        let id = meta.next_callback_id();
        let Err(outcome) = head.state.mark_listeners() else {
            meta.push_callback(id, Box::new(callback), location);
            return Ok(id);
        };
        drop(meta);
        raw::schedule_done_callback(head, Box::new(callback), location, head.info(), outcome)?;
        Ok(id)
    }

    /// Removes a done callback that has not been scheduled yet; returns how
    /// many were removed (0 or 1; asyncio: `Task.remove_done_callback`).
    pub fn remove_done_callback(&self, id: CallbackId) -> usize {
        let removed = crate::sync::lock(&self.head().meta).remove_callback(id);
        // Its captures are dropped outside the lock.
        usize::from(removed.is_some())
    }

    /// The task's value without taking it (asyncio: `Task.result()`):
    /// the value (cloned), or the error it ended with; an `InvalidState`
    /// exception if it is not done ("Result is not set.") or an owning
    /// `.await` took the value. A panic is reported as an
    /// [`Error::Panicked`] exception carrying its message (the payload
    /// itself stays for `.await`). Marks a failure as retrieved.
    ///
    /// ```
    /// use evloop::EventLoop;
    ///
    /// let lp = EventLoop::new()?;
    /// let task = lp.create_task(async { String::from("hi") })?;
    /// assert!(task.result().is_err()); // not done yet
    /// lp.run_until_complete(&task)?.unwrap();
    /// assert_eq!(task.result().unwrap(), "hi");
    /// assert_eq!(task.result().unwrap(), "hi"); // as often as you like
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub fn result(&self) -> Result<T, TaskError>
    where
        T: Clone,
    {
        self.inspect(|outcome| match outcome {
            None => Err(TaskError::invalid("Result is not set.")),
            Some(None) => Err(TaskError::invalid("the result was already taken")),
            Some(Some(Ok(v))) => Ok(v.clone()),
            Some(Some(Err(e))) => Err(self.share_error(e)),
        })
    }

    /// The error the task ended with, without taking anything (asyncio:
    /// `Task.exception()`): `Ok(None)` if it returned a value,
    /// `Ok(Some(error))` if it panicked or failed, `Err(Cancelled)` if it
    /// was cancelled, an `InvalidState` error if it is not done
    /// ("Exception is not set.") or the outcome was taken. Needs no
    /// `T: Clone`; marks a failure as retrieved.
    pub fn exception(&self) -> Result<Option<TaskError>, TaskError> {
        self.inspect(|outcome| match outcome {
            None => Err(TaskError::invalid("Exception is not set.")),
            Some(None) => Err(TaskError::invalid("the result was already taken")),
            Some(Some(Ok(_))) => Ok(None),
            Some(Some(Err(e @ TaskError::Cancelled(_)))) => Err(e.share()),
            Some(Some(Err(e))) => Ok(Some(self.share_error(e))),
        })
    }

    /// The error a reader of the outcome gets: the same object at every
    /// read, as asyncio's `exception()`.
    fn share_error(&self, e: &TaskError) -> TaskError {
        e.share_cached(&mut crate::sync::lock(&self.head().meta).panic_error)
    }

    /// `None`: not done; `Some(None)`: taken; `Some(Some(outcome))`.
    fn inspect<R>(&self, read: impl FnOnce(Option<Option<&Result<T, TaskError>>>) -> R) -> R {
        if !self.done() {
            return read(None);
        }
        // Safety: complete, `T` is the output type, and the reference lives
        // only for this borrow of the handle.
        read(Some(unsafe { raw::output_ref::<T>(self.ptr) }))
    }

    /// A process-unique id.
    pub fn id(&self) -> u64 {
        self.head().id
    }

    /// The loop the task belongs to, while that loop exists.
    pub fn get_loop(&self) -> Option<EventLoop> {
        let sched: &(dyn std::any::Any + Send + Sync) = self.head().sched.as_any();
        sched.downcast_ref::<Shared>()?.event_loop()
    }

    /// The identity of the task's loop.
    pub(crate) fn loop_id(&self) -> sched::LoopId {
        self.head().sched.id()
    }
}

impl<T> Task<T> {
    /// Awaits the task without giving up the handle (asyncio: `await
    /// task`, for a task you keep): the output is taken, as by
    /// `task.await`. Use it in `select!`, or under `wait_for` with
    /// [`shield`](crate::shield), where the task must outlive the wait.
    /// Cancelling the task that awaits it cancels this task too (and so
    /// does a `wait_for` timeout, as in asyncio), but a wait that merely
    /// ends (a losing `select!` branch) does not.
    ///
    /// ```
    /// use evloop::EventLoop;
    /// use std::time::Duration;
    ///
    /// let lp = EventLoop::new()?;
    /// let out = lp.run_until_complete(async {
    ///     let mut slow = evloop::spawn(async {
    ///         evloop::sleep(Duration::from_millis(20)).await.unwrap();
    ///         "late"
    ///     })
    ///     .unwrap();
    ///     // Too early: the wait times out; shielded, the task goes on.
    ///     let first =
    ///         evloop::wait_for(evloop::shield(slow.wait()), Duration::from_millis(1)).await;
    ///     assert!(first.is_err());
    ///     slow.wait().await.unwrap()
    /// })?;
    /// assert_eq!(out, "late");
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub fn wait(&mut self) -> TaskAwaitMut<'_, T> {
        TaskAwaitMut {
            task: self,
            awaited: Awaited::default(),
        }
    }

    /// The owning poll shared by `task.await` and `task.wait()`.
    fn poll_take(
        &mut self,
        awaited: &mut Awaited,
        at: (usize, usize),
        cx: &mut Context<'_>,
    ) -> Poll<Result<T, TaskError>> {
        if context::root_is_foreign(at, self.loop_id()) {
            return Poll::Pending;
        }
        let head = self.head();
        if head.state.load() & state::COMPLETE == 0 {
            head.awaiter.register(cx.waker());
            if head.state.load() & state::COMPLETE == 0 {
                awaited.pending();
                return Poll::Pending;
            }
        }
        awaited.ready();
        // Safety: complete with the handle alive: the output is ours, of
        // type `T`.
        match unsafe { raw::read_output::<T>(self.ptr) } {
            Some(result) => Poll::Ready(result),
            None => Poll::Ready(Err(TaskError::invalid(
                "the task's result was already taken",
            ))),
        }
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        // Dropping the handle detaches the task.
        // Safety: the handle owns the `HANDLE` flag.
        unsafe { raw::drop_handle(self.ptr) }
    }
}

/// The future of `task.await`: owns the task, waits for it and takes its
/// output.
#[must_use = "futures do nothing unless awaited"]
pub struct TaskAwait<T> {
    task: Task<T>,
    awaited: Awaited,
}

impl<T> IntoFuture for Task<T> {
    type Output = Result<T, TaskError>;
    type IntoFuture = TaskAwait<T>;

    fn into_future(self) -> TaskAwait<T> {
        TaskAwait {
            task: self,
            awaited: Awaited::default(),
        }
    }
}

impl<T> Future for TaskAwait<T> {
    type Output = Result<T, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let at = crate::future::at(this);
        this.task.poll_take(&mut this.awaited, at, cx)
    }
}

impl<T> Drop for TaskAwait<T> {
    fn drop(&mut self) {
        // The task awaiting this one is being cancelled: so is this one,
        // as in asyncio.
        if let Some(message) = self.awaited.cancellation() {
            self.task.cancel_inner(message);
        }
    }
}

impl<T> fmt::Debug for TaskAwait<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskAwait")
            .field("task", &self.task)
            .finish()
    }
}

/// The future of [`Task::wait`]: waits for the task and takes its output,
/// leaving the handle with its owner.
#[must_use = "futures do nothing unless awaited"]
pub struct TaskAwaitMut<'a, T> {
    task: &'a mut Task<T>,
    awaited: Awaited,
}

impl<T> Future for TaskAwaitMut<'_, T> {
    type Output = Result<T, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let at = crate::future::at(this);
        this.task.poll_take(&mut this.awaited, at, cx)
    }
}

impl<T> Drop for TaskAwaitMut<'_, T> {
    fn drop(&mut self) {
        if let Some(message) = self.awaited.cancellation() {
            self.task.cancel_inner(message);
        }
    }
}

impl<T> fmt::Debug for TaskAwaitMut<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskAwaitMut")
            .field("task", &*self.task)
            .finish()
    }
}

/// The future of `(&task).await`: waits for the task and reads its
/// outcome without taking it (see [`Task::result`]).
#[must_use = "futures do nothing unless awaited"]
pub struct TaskRead<'a, T: Clone> {
    task: &'a Task<T>,
    key: WaitKey,
    awaited: Awaited,
}

/// Awaiting a *reference* to a task reads its outcome without taking it,
/// so several tasks can await one task, as in asyncio (`T: Clone`).
///
/// ```
/// use evloop::EventLoop;
///
/// let lp = EventLoop::new()?;
/// let shared = std::sync::Arc::new(lp.create_task(async { 21 * 2 })?);
/// let readers: Vec<_> = (0..3)
///     .map(|_| {
///         let t = shared.clone();
///         lp.create_task(async move { (&*t).await.unwrap() }).unwrap()
///     })
///     .collect();
/// for r in readers {
///     assert_eq!(lp.run_until_complete(r)?.unwrap(), 42);
/// }
/// # Ok::<(), evloop::Error>(())
/// ```
impl<'a, T: Clone> IntoFuture for &'a Task<T> {
    type Output = Result<T, TaskError>;
    type IntoFuture = TaskRead<'a, T>;

    fn into_future(self) -> TaskRead<'a, T> {
        TaskRead {
            task: self,
            key: WaitKey::default(),
            awaited: Awaited::default(),
        }
    }
}

impl<T: Clone> Future for TaskRead<'_, T> {
    type Output = Result<T, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if context::root_is_foreign(crate::future::at(this), this.task.loop_id()) {
            return Poll::Pending;
        }
        let head = this.task.head();
        let polled = if head.state.load() & state::COMPLETE != 0 {
            Poll::Ready(())
        } else {
            waiters::poll_wait(
                || crate::sync::lock(&head.meta),
                &mut this.key,
                cx,
                // Registering marks the task as listened to, under the same
                // lock the completer takes to wake the listeners.
                |_meta: &mut raw::Meta| head.state.mark_listeners().err().map(drop),
                |meta| &mut meta.listeners().waiters,
            )
        };
        match polled {
            Poll::Pending => {
                this.awaited.pending();
                Poll::Pending
            }
            Poll::Ready(()) => {
                this.awaited.ready();
                Poll::Ready(this.task.result())
            }
        }
    }
}

impl<T: Clone> Drop for TaskRead<'_, T> {
    fn drop(&mut self) {
        let head = self.task.head();
        waiters::forget(
            || crate::sync::lock(&head.meta),
            &mut self.key,
            |meta: &mut raw::Meta| &mut meta.listeners().waiters,
        );
        if let Some(message) = self.awaited.cancellation() {
            self.task.cancel_inner(message);
        }
    }
}

impl<T: Clone> fmt::Debug for TaskRead<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskRead")
            .field("task", &self.task.id())
            .finish()
    }
}

impl<T> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("id", &self.id())
            .field("name", &self.get_name())
            .field("done", &self.done())
            .field("cancelled", &self.cancelled())
            .finish()
    }
}

impl EventLoop {
    /// Wraps `fut` in a task and schedules its first step for the next
    /// iteration (asyncio: `loop.create_task`). Anything awaitable works (a
    /// `LoopFuture` too, as with asyncio's `ensure_future`). With a task
    /// factory set, the factory builds the task. Error: [`Error::Closed`].
    #[track_caller]
    pub fn create_task<F>(&self, fut: F) -> Result<Task<F::Output>, Error>
    where
        F: IntoFuture,
        F::IntoFuture: Send + 'static,
        F::Output: Send + 'static,
    {
        create(self, fut.into_future(), None, Location::caller())
    }

    /// [`EventLoop::create_task`] with a name (asyncio's `name=` argument).
    #[track_caller]
    pub fn create_task_named<F>(
        &self,
        fut: F,
        name: impl Into<String>,
    ) -> Result<Task<F::Output>, Error>
    where
        F: IntoFuture,
        F::IntoFuture: Send + 'static,
        F::Output: Send + 'static,
    {
        create(
            self,
            fut.into_future(),
            Some(name.into()),
            Location::caller(),
        )
    }
}

/// The future a task runs when a factory built it: the factory's future,
/// with the user future's output passed through a side slot.
struct Factored<T> {
    inner: BoxFuture,
    output: Arc<Mutex<Option<T>>>,
}

impl<T> Future for Factored<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.inner.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => match crate::sync::lock(&*self.output).take() {
                Some(v) => Poll::Ready(v),
                None => {
                    panic!("the task factory's future completed without running the task's future")
                }
            },
        }
    }
}

/// `create_task`: allocate, then queue the first step.
pub(crate) fn create<F>(
    event_loop: &EventLoop,
    fut: F,
    name: Option<String>,
    location: &'static Location<'static>,
) -> Result<Task<F::Output>, Error>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let factory = event_loop.inner.shared.task_factory();
    let shared = &event_loop.inner.shared;
    if event_loop.is_closed() {
        return Err(Error::Closed);
    }
    let sched: Arc<dyn Schedule> = shared.clone();
    let (runnable, ptr) = match factory {
        None => raw::allocate(sched, fut, name, false, location),
        Some(factory) => {
            let output = Arc::new(Mutex::new(None));
            let slot = output.clone();
            let spec = factory(
                event_loop,
                TaskSpec {
                    future: Box::pin(async move {
                        let v = fut.await;
                        *crate::sync::lock(&*slot) = Some(v);
                    }),
                    name,
                },
            );
            let fut = Factored {
                inner: spec.future,
                output,
            };
            raw::allocate(sched, fut, spec.name, false, location)
        }
    };
    enqueue(shared, runnable, ptr)
}

/// Registers a task just allocated (on the loop's thread) and queues its
/// first step; its handle, unless the loop is closed.
fn enqueue<T>(
    shared: &Arc<crate::event_loop::shared::Shared>,
    runnable: crate::runnable::Runnable,
    ptr: NonNull<TaskHeader>,
) -> Result<Task<T>, Error> {
    let task = Task::from_allocation(ptr);
    // On the loop's thread: known to the registry from birth, so that
    // `close()` and `run()`'s shutdown see tasks that have not started
    // yet, and queued at once (one look at the thread-local for both).
    let queued = sched::with_local(shared.id(), runnable, |local, runnable| {
        raw::register_in(local.tasks(), ptr);
        local.push(runnable);
    });
    match queued.or_else(|runnable| shared.schedule(runnable)) {
        Ok(()) => Ok(task),
        Err(runnable) => {
            drop(runnable);
            Err(Error::Closed)
        }
    }
}

/// Requests cancellation of every task of an idle loop; returns how many
/// were not done.
pub(crate) fn cancel_all(event_loop: &EventLoop) -> usize {
    event_loop
        .with_idle_core(|core| {
            core.drain_inbox(&event_loop.inner.shared, usize::MAX);
            core.cancel_all_tasks()
        })
        .unwrap_or(0)
}
