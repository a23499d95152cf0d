//! [`ConcurrentFuture`]: a result a plain thread can block on and a task
//! can await (Python's `concurrent.futures.Future`). Returned by
//! [`run_coroutine_threadsafe`](crate::run_coroutine_threadsafe) and by the
//! executors' `submit`.

use crate::cancellation::Awaited;
use crate::error::{Error, TaskError};
use crate::sync::{Condvar, Mutex};
use crate::waiters::{self, WaitKey, Waiters};
use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

type Hook = Box<dyn FnOnce() + Send + 'static>;
type DoneCallback<T> = Box<dyn FnOnce(&ConcurrentFuture<T>) + Send + 'static>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Pending,
    Running,
    Done,
}

struct State<T> {
    status: Status,
    outcome: Option<Result<T, TaskError>>,
    cancelled: bool,
    waiters: Waiters,
    on_cancel: Option<Hook>,
    callbacks: Vec<DoneCallback<T>>,
}

/// What a completion took out of the state, to be run or dropped after
/// the lock is released.
struct Completion<T> {
    wakers: Vec<std::task::Waker>,
    callbacks: Vec<DoneCallback<T>>,
    hook: Option<Hook>,
}

struct Inner<T> {
    state: Mutex<State<T>>,
    done: Condvar,
    /// The loop that completes this future, if it is one: blocking on it
    /// from that loop's own thread would wait forever, so `result` refuses.
    completed_by_loop: Option<crate::sched::LoopId>,
}

// Safety: the loop id is only compared, never dereferenced.
unsafe impl<T: Send> Send for Inner<T> {}
unsafe impl<T: Send> Sync for Inner<T> {}

/// The eventual result of work running elsewhere: on a loop
/// (`run_coroutine_threadsafe`) or in a thread pool (`Executor::submit`).
///
/// Clones are the same future. [`ConcurrentFuture::result`] and `.await`
/// (through [`ConcurrentAwait`]) take the result; after that, others see an `InvalidState` error. A task
/// awaiting it that is cancelled cancels it too (asyncio's `wrap_future`
/// does the same), so a queued pool job never starts.
///
/// ```
/// use evloop::{ConcurrentFuture, TaskError};
/// use std::time::Duration;
///
/// // A plain thread completes it, another blocks on it.
/// let fut = ConcurrentFuture::new();
/// let setter = fut.clone();
/// std::thread::spawn(move || setter.set_result("ready"));
/// assert_eq!(fut.result(Some(Duration::from_secs(10))).unwrap(), "ready");
///
/// // A timeout leaves the future pending; cancel() ends it.
/// let slow = ConcurrentFuture::<u8>::new();
/// assert!(matches!(slow.result(Some(Duration::from_millis(1))), Err(TaskError::Timeout)));
/// assert!(slow.cancel());
/// assert!(matches!(slow.result(None), Err(TaskError::Cancelled(None))));
/// ```
pub struct ConcurrentFuture<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for ConcurrentFuture<T> {
    fn clone(&self) -> Self {
        ConcurrentFuture {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Default for ConcurrentFuture<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> ConcurrentFuture<T> {
    /// A pending future, to be completed with [`ConcurrentFuture::set_result`]
    /// (for code that builds its own executors).
    pub fn new() -> ConcurrentFuture<T> {
        Self::with_owner(None)
    }

    /// A pending future that the loop identified by `owner` completes.
    pub(crate) fn completed_by(owner: crate::sched::LoopId) -> ConcurrentFuture<T> {
        Self::with_owner(Some(owner))
    }

    fn with_owner(completed_by_loop: Option<crate::sched::LoopId>) -> ConcurrentFuture<T> {
        ConcurrentFuture {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    status: Status::Pending,
                    outcome: None,
                    cancelled: false,
                    waiters: Waiters::default(),
                    on_cancel: None,
                    callbacks: Vec::new(),
                }),
                done: Condvar::new(),
                completed_by_loop,
            }),
        }
    }

    fn lock(&self) -> crate::sync::MutexGuard<'_, State<T>> {
        crate::sync::lock(&self.inner.state)
    }

    /// Runs `hook` if the future is cancelled while pending (how
    /// cancellation reaches the loop task or the queued job behind it).
    pub(crate) fn set_cancel_hook(&self, hook: impl FnOnce() + Send + 'static) {
        let mut st = self.lock();
        if st.cancelled {
            drop(st);
            hook();
        } else if st.status != Status::Done {
            let previous = st.on_cancel.replace(Box::new(hook));
            drop(st);
            drop(previous);
        }
    }

    /// Marks the work as started, unless the future was cancelled: returns
    /// `false` then, and the work must not run (Python's
    /// `set_running_or_notify_cancel`).
    pub fn set_running_or_notify_cancel(&self) -> bool {
        let hook = {
            let mut st = self.lock();
            if st.cancelled {
                return false;
            }
            if st.status != Status::Pending {
                return true;
            }
            st.status = Status::Running;
            st.on_cancel.take()
        };
        // The cancel hook's captures are dropped outside the lock.
        drop(hook);
        true
    }

    /// Completes the future with `value`; returns `false` if it was already
    /// done (cancelled, say).
    pub fn set_result(&self, value: T) -> bool {
        self.complete(Ok(value))
    }

    /// Completes the future with any outcome; `false` if already done.
    pub fn complete(&self, outcome: Result<T, TaskError>) -> bool {
        let mut st = self.lock();
        if st.status == Status::Done {
            drop(st);
            drop(outcome);
            return false;
        }
        let done = Self::finish(&mut st, outcome);
        drop(st);
        self.deliver(done);
        true
    }

    /// The one transition to `Done` (caller holds the lock).
    fn finish(st: &mut State<T>, outcome: Result<T, TaskError>) -> Completion<T> {
        st.cancelled = matches!(outcome, Err(TaskError::Cancelled(_)));
        st.status = Status::Done;
        st.outcome = Some(outcome);
        Completion {
            wakers: st.waiters.take_all(),
            callbacks: std::mem::take(&mut st.callbacks),
            hook: st.on_cancel.take(),
        }
    }

    /// Tells everyone about a completion (the lock is released): blocked
    /// threads, awaiting tasks, then done callbacks.
    fn deliver(&self, done: Completion<T>) {
        self.inner.done.notify_all();
        waiters::wake_all(done.wakers);
        drop(done.hook);
        self.run_callbacks(done.callbacks);
    }

    fn run_callbacks(&self, callbacks: Vec<DoneCallback<T>>) {
        for cb in callbacks {
            if let Err(payload) =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(self)))
            {
                crate::util::log_error(format_args!(
                    "exception calling callback for a concurrent future: {}",
                    crate::error::panic_message(&payload)
                ));
            }
        }
    }

    /// Cancels the future if it has not started (or, for a loop task, has
    /// not finished): returns `false` if it is running or done. Checking
    /// and completing are one transition under one lock, as in
    /// `concurrent.futures`, so a worker can never start a job whose
    /// future this call reported cancelled.
    pub fn cancel(&self) -> bool {
        let mut st = self.lock();
        match st.status {
            Status::Done => return st.cancelled,
            Status::Running => return false,
            Status::Pending => {}
        }
        let mut done = Self::finish(&mut st, Err(TaskError::Cancelled(None)));
        drop(st);
        // Cancellation reaches the loop task or the queued job behind it.
        if let Some(hook) = done.hook.take() {
            hook();
        }
        self.deliver(done);
        true
    }

    /// Whether the future completed by cancellation.
    pub fn cancelled(&self) -> bool {
        self.lock().cancelled
    }

    /// Whether the work is running (started, not done).
    pub fn running(&self) -> bool {
        self.lock().status == Status::Running
    }

    /// Whether the future is done.
    pub fn done(&self) -> bool {
        self.lock().status == Status::Done
    }

    /// Blocks the calling thread until the result is ready and takes it
    /// (Python: `Future.result(timeout)`). `None` waits forever.
    /// [`TaskError::Timeout`] if the timeout passes first (the work goes
    /// on; call again to keep waiting).
    ///
    /// Blocking on the future of `run_coroutine_threadsafe` from inside a
    /// callback or task of the loop that runs it would wait for itself
    /// (CPython hangs there); it fails at once with an `InvalidState`
    /// error instead: await the future.
    pub fn result(&self, timeout: Option<Duration>) -> Result<T, TaskError> {
        let deadline = timeout.map(|t| Instant::now().checked_add(t));
        let mut st = self.lock();
        if st.status != Status::Done
            && self
                .inner
                .completed_by_loop
                .is_some_and(crate::sched::runs_here)
        {
            return Err(TaskError::Exception(Arc::new(Error::InvalidState(
                "result() would block the loop that must complete the future; await it instead",
            ))));
        }
        while st.status != Status::Done {
            st = match deadline {
                None | Some(None) => self
                    .inner
                    .done
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                Some(Some(deadline)) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(TaskError::Timeout);
                    }
                    self.inner
                        .done
                        .wait_timeout(st, deadline - now)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
            };
        }
        take(&mut st)
    }

    /// Runs `callback` (on the completing thread, or now if done) when the
    /// future completes (Python: `add_done_callback`).
    pub fn add_done_callback(&self, callback: impl FnOnce(&ConcurrentFuture<T>) + Send + 'static) {
        let mut st = self.lock();
        if st.status != Status::Done {
            st.callbacks.push(Box::new(callback));
            return;
        }
        drop(st);
        self.run_callbacks(vec![Box::new(callback)]);
    }
}

fn take<T>(st: &mut State<T>) -> Result<T, TaskError> {
    match st.outcome.take() {
        Some(outcome) => outcome,
        None => Err(TaskError::invalid("the result was already taken")),
    }
}

/// The future of `fut.await` on a [`ConcurrentFuture`]: waits for the
/// result and takes it.
#[must_use = "futures do nothing unless awaited"]
pub struct ConcurrentAwait<T> {
    fut: ConcurrentFuture<T>,
    key: WaitKey,
    awaited: Awaited,
}

impl<T> IntoFuture for ConcurrentFuture<T> {
    type Output = Result<T, TaskError>;
    type IntoFuture = ConcurrentAwait<T>;

    fn into_future(self) -> ConcurrentAwait<T> {
        ConcurrentAwait {
            fut: self,
            key: WaitKey::default(),
            awaited: Awaited::default(),
        }
    }
}

impl<T> Future for ConcurrentAwait<T> {
    type Output = Result<T, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let polled = waiters::poll_wait(
            || crate::sync::lock(&this.fut.inner.state),
            &mut this.key,
            cx,
            |st: &mut State<T>| (st.status == Status::Done).then(|| take(st)),
            |st| &mut st.waiters,
        );
        match polled {
            Poll::Pending => this.awaited.pending(),
            Poll::Ready(_) => this.awaited.ready(),
        }
        polled
    }
}

impl<T> Drop for ConcurrentAwait<T> {
    fn drop(&mut self) {
        let fut = &self.fut;
        waiters::forget(
            || crate::sync::lock(&fut.inner.state),
            &mut self.key,
            |st| &mut st.waiters,
        );
        // The task awaiting this is being cancelled: so is the work
        // (asyncio's `wrap_future` cancels the concurrent future).
        if self.awaited.cancellation().is_some() {
            fut.cancel();
        }
    }
}

impl<T> fmt::Debug for ConcurrentAwait<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrentAwait")
            .field("fut", &self.fut)
            .finish()
    }
}

impl<T> fmt::Debug for ConcurrentFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.lock();
        f.debug_struct("ConcurrentFuture")
            .field("status", &st.status)
            .field("cancelled", &st.cancelled)
            .field(
                "taken",
                &(st.status == Status::Done && st.outcome.is_none()),
            )
            .finish()
    }
}
