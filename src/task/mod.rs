//! Tasks: futures the loop drives (asyncio's `Task`), their handles, and
//! the task factory hook.

mod raw;
pub(crate) mod registry;
pub(crate) mod state;

use crate::error::{Error, TaskError};
use crate::event_loop::{EventLoop, context};
use crate::exception::TaskInfo;
use crate::future::CallbackId;
use raw::TaskHeader;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::Location;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

pub(crate) use raw::{describe, header_of, info_of, register_in};

/// A future being driven by a loop (asyncio: `Task`), returned by
/// [`EventLoop::create_task`].
///
/// Awaiting it gives the future's output, or [`TaskError::Cancelled`] /
/// [`TaskError::Panicked`]. Dropping the handle detaches the task: it keeps
/// running. If a detached task panics, the panic goes to the loop's
/// exception handler ("Task exception was never retrieved").
///
/// Cancellation follows the await chain as in asyncio: if the task that
/// is awaiting this one is cancelled (or a [`wait_for`](crate::wait_for)
/// around it times out), this task is cancelled too.
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
    /// The last poll of this handle returned `Pending`: something awaits
    /// it (see `cancellation`).
    awaited: bool,
    _output: PhantomData<T>,
}

// Safety: the handle only reads the output (`T: Send`) once the task is
// complete; everything else it touches is thread-safe.
unsafe impl<T: Send> Send for Task<T> {}
unsafe impl<T: Send> Sync for Task<T> {}
impl<T> Unpin for Task<T> {}

impl<T> Task<T> {
    fn head(&self) -> &TaskHeader {
        // Safety: the HANDLE flag keeps the task alive.
        unsafe { self.ptr.as_ref() }
    }

    /// Requests cancellation (asyncio: `Task.cancel()`): at its next
    /// scheduling point the task's future is dropped and the task completes
    /// as cancelled. Returns `false` if the task is already done. A task
    /// cancelled before its first step never runs.
    pub fn cancel(&self) -> bool {
        if self.head().state.request_cancel() {
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
        crate::util::lock(&self.head().meta).name = Some(name.into());
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
        let mut meta = crate::util::lock(&head.meta);
        let id = meta.next_callback_id();
        let Err(outcome) = head.state.mark_done_callbacks() else {
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
        crate::util::lock(&self.head().meta).remove_callback(id)
    }

    /// A process-unique id.
    pub fn id(&self) -> u64 {
        self.head().id
    }

    /// The loop the task belongs to, while that loop exists.
    pub fn get_loop(&self) -> Option<EventLoop> {
        self.head().shared.event_loop()
    }
}

/// How a task ended, as its done callbacks are told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskOutcome {
    /// The future returned its output.
    Returned,
    /// The future panicked; awaiting the task gives [`TaskError::Panicked`].
    Panicked,
    /// The task was cancelled (or closed with its loop).
    Cancelled,
}

/// What a task's done callback receives (see [`Task::add_done_callback`]).
#[derive(Clone, Debug)]
pub struct TaskDone {
    /// Which task: id, name, where it was created.
    pub info: TaskInfo,
    /// How it ended.
    pub outcome: TaskOutcome,
}

impl TaskDone {
    /// Whether the task was cancelled (asyncio: `task.cancelled()`).
    pub fn cancelled(&self) -> bool {
        self.outcome == TaskOutcome::Cancelled
    }
}

impl<T> Future for Task<T> {
    type Output = Result<T, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let head = self.head();
        if head.state.load() & state::COMPLETE == 0 {
            head.awaiter.register(cx.waker());
            if head.state.load() & state::COMPLETE == 0 {
                self.awaited = true;
                return Poll::Pending;
            }
        }
        self.awaited = false;
        // Safety: complete with the handle alive: the output is ours, of
        // type `T`.
        match unsafe { raw::read_output::<T>(self.ptr) } {
            Some(result) => Poll::Ready(result),
            None => Poll::Ready(Err(TaskError::Exception(Arc::new(Error::InvalidState(
                "the task's result was already taken",
            ))))),
        }
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        // The task awaiting this one is being cancelled: so is this one,
        // as in asyncio. Otherwise dropping the handle detaches the task.
        if self.awaited && crate::cancellation::propagating() {
            self.cancel();
        }
        match self.head().state.drop_handle_if_incomplete() {
            Ok(free) => {
                if free {
                    // Safety: no reference and no handle remain.
                    unsafe { raw::dealloc(self.ptr) };
                }
            }
            Err(()) => {
                // Complete: the output is ours to drop.
                // Safety: as in `poll`.
                if let Some(payload) = unsafe { raw::drop_output(self.ptr) } {
                    raw::report_unretrieved(self.head(), payload);
                }
                if self.head().state.drop_handle() {
                    // Safety: as above.
                    unsafe { raw::dealloc(self.ptr) };
                }
            }
        }
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

/// A boxed, type-erased future as a task factory sees it.
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What a [`TaskFactory`] receives and returns: the future a task will run
/// and the name it was asked to have. The factory may wrap the future (to
/// instrument it, say) and rename the task; the future it returns must
/// drive the one it was given to completion.
///
/// ```
/// use evloop::{EventLoop, TaskSpec};
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// let lp = EventLoop::new()?;
/// let finished = Arc::new(AtomicUsize::new(0));
/// let f = finished.clone();
/// lp.set_task_factory(Some(Arc::new(move |_lp, spec: TaskSpec| {
///     let f = f.clone();
///     let inner = spec.future;
///     TaskSpec {
///         future: Box::pin(async move {
///             inner.await;
///             f.fetch_add(1, Ordering::SeqCst);
///         }),
///         name: Some(format!("counted-{}", spec.name.unwrap_or_default())),
///     }
/// })));
/// let task = lp.create_task_named(async { 7 }, "seven")?;
/// assert_eq!(task.get_name(), "counted-seven");
/// assert_eq!(lp.run_until_complete(task)?.unwrap(), 7);
/// assert_eq!(finished.load(Ordering::SeqCst), 1);
/// # Ok::<(), evloop::Error>(())
/// ```
pub struct TaskSpec {
    /// The task's future. Its output is delivered to the task's handle
    /// when it completes.
    pub future: BoxFuture,
    /// The name passed to `create_task_named`, if any.
    pub name: Option<String>,
}

impl fmt::Debug for TaskSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskSpec")
            .field("name", &self.name)
            .finish()
    }
}

/// A loop's task factory (asyncio: `loop.set_task_factory`): called by
/// `create_task` with the loop and the task to build.
pub type TaskFactory = Arc<dyn Fn(&EventLoop, TaskSpec) -> TaskSpec + Send + Sync>;

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
            Poll::Ready(()) => match crate::util::lock(&self.output).take() {
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
    create_with(event_loop, fut, name, location, factory)
}

fn create_with<F>(
    event_loop: &EventLoop,
    fut: F,
    name: Option<String>,
    location: &'static Location<'static>,
    factory: Option<TaskFactory>,
) -> Result<Task<F::Output>, Error>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let shared = &event_loop.inner.shared;
    if event_loop.is_closed() {
        return Err(Error::Closed);
    }
    let (runnable, ptr) = match factory {
        None => raw::allocate(shared.clone(), fut, name, location),
        Some(factory) => {
            let output = Arc::new(Mutex::new(None));
            let slot = output.clone();
            let spec = factory(
                event_loop,
                TaskSpec {
                    future: Box::pin(async move {
                        let v = fut.await;
                        *crate::util::lock(&slot) = Some(v);
                    }),
                    name,
                },
            );
            let fut = Factored {
                inner: spec.future,
                output,
            };
            raw::allocate(shared.clone(), fut, spec.name, location)
        }
    };
    let task = Task {
        ptr,
        awaited: false,
        _output: PhantomData,
    };
    if context::runs_here(shared.id()) {
        // Known to the registry from birth, so that `close()` and `run()`'s
        // shutdown see tasks that have not started yet.
        raw::register(ptr);
    }
    match shared.schedule(runnable) {
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
        .with_idle_core(|core| core.tasks.borrow().iter().filter(|t| t.cancel()).count())
        .unwrap_or(0)
}

/// The task that polls `run_until_complete`'s future (see
/// `context::poll_root`).
struct RootPoller {
    id: u64,
}

impl Future for RootPoller {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        context::poll_root(self.id, cx)
    }
}

impl Drop for RootPoller {
    fn drop(&mut self) {
        // Dropped before the root future finished (its task was cancelled
        // or the loop is closing): end the run rather than wait forever.
        context::abandon_root(self.id);
    }
}

/// The root task is evloop's own driver of a future that is not even
/// `Send`, so the task factory does not wrap it.
#[track_caller]
pub(crate) fn spawn_root(event_loop: &EventLoop, id: u64) -> Result<Task<()>, Error> {
    create_with(
        event_loop,
        RootPoller { id },
        None,
        Location::caller(),
        None,
    )
}
