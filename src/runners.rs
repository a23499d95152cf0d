//! The helpers asyncio users reach for first: `run`, `spawn`, `sleep`,
//! `wait_for`, `gather`, and `run_coroutine_threadsafe`.

use crate::atomic_waker::AtomicWaker;
use crate::concurrent::ConcurrentFuture;
use crate::error::{Error, TaskError};
use crate::event_loop::{EventLoop, context};
use crate::exception::TaskInfo;
use crate::handle::TimerHandle;
use crate::policy::{get_running_loop, new_event_loop, set_event_loop};
use crate::sync::{AtomicBool, Mutex, Ordering};
use crate::task::Task;
use std::future::{Future, IntoFuture};
use std::panic::{AssertUnwindSafe, Location};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// Runs `fut` to completion on a new loop, then shuts everything down
/// (asyncio: `asyncio.run`): the loop is created through the policy and set
/// as this thread's loop for the duration; afterwards the tasks still
/// pending are cancelled, the default executor is shut down (waiting for
/// its jobs), the thread's loop is unset and the loop is closed.
///
/// Error: [`Error::AnotherLoopRunning`] if a loop already runs on this
/// thread.
///
/// ```
/// let answer = evloop::run(async {
///     evloop::sleep(std::time::Duration::from_millis(1)).await?;
///     Ok::<_, evloop::Error>(42)
/// })??;
/// assert_eq!(answer, 42);
/// # Ok::<(), evloop::Error>(())
/// ```
pub fn run<F: Future>(fut: F) -> Result<F::Output, Error> {
    if crate::sched::any_running() {
        return Err(Error::AnotherLoopRunning);
    }
    let event_loop = new_event_loop()?;
    set_event_loop(Some(event_loop.clone()));

    struct Cleanup(EventLoop);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let lp = &self.0;
            if !lp.is_running() {
                cancel_remaining_tasks(lp);
                let shutdown = lp.shutdown_default_executor(None);
                let _ = lp.run_until_complete(shutdown);
            }
            set_event_loop(None);
            let _ = lp.close();
        }
    }
    let cleanup = Cleanup(event_loop);
    let out = cleanup.0.run_until_complete(fut);
    drop(cleanup);
    out
}

/// Cancels every task of `lp` and runs the loop until they have finished
/// (asyncio.run's `_cancel_all_tasks`). Cancellation drops a task's future
/// at its next step, so a few iterations suffice; the bound guards against
/// tasks that keep creating tasks.
fn cancel_remaining_tasks(lp: &EventLoop) {
    for _ in 0..8 {
        if crate::task::cancel_all(lp) == 0 {
            return;
        }
        lp.stop();
        if lp.run_forever().is_err() {
            return;
        }
    }
}

/// Creates a task on the loop running on this thread (asyncio:
/// `asyncio.create_task`). Error: [`Error::NoRunningLoop`].
#[track_caller]
pub fn spawn<F>(fut: F) -> Result<Task<F::Output>, Error>
where
    F: IntoFuture,
    F::IntoFuture: Send + 'static,
    F::Output: Send + 'static,
{
    let location = Location::caller();
    let fut = fut.into_future();
    // The running loop, borrowed from its context: no handle is cloned
    // (a task spawning the next is the hot path of chained tasks).
    match crate::event_loop::context::with_current(|ctx| {
        crate::task::create(&ctx.event_loop, fut, None, location)
    }) {
        Some(created) => created,
        None => Err(Error::NoRunningLoop),
    }
}

/// The task whose step is running on this thread's loop, or `None` in a
/// plain callback (asyncio: `asyncio.current_task()`). Inside
/// `run_until_complete`'s future it is the task the loop drives that
/// future with, as in asyncio. Error: [`Error::NoRunningLoop`].
///
/// ```
/// use evloop::EventLoop;
///
/// let lp = EventLoop::new()?;
/// let task = lp.create_task_named(async { evloop::current_task().unwrap().unwrap().name }, "me")?;
/// assert_eq!(lp.run_until_complete(task)?.unwrap(), "me");
/// assert!(evloop::current_task().is_err()); // no loop runs here now
/// # Ok::<(), evloop::Error>(())
/// ```
pub fn current_task() -> Result<Option<TaskInfo>, Error> {
    context::with_current(|ctx| {
        // Safety: the core lives as long as the context.
        unsafe { &*ctx.core }.current_task()
    })
    .ok_or(Error::NoRunningLoop)
}

/// The tasks of the loop running on this thread that are not done
/// (asyncio: `asyncio.all_tasks()`); see [`EventLoop::all_tasks`]. Error:
/// [`Error::NoRunningLoop`].
pub fn all_tasks() -> Result<Vec<TaskInfo>, Error> {
    get_running_loop()?.all_tasks()
}

/// What a [`Sleep`] shares with its timer callback: the timer fires on the
/// loop thread while the sleep may be polled anywhere. The poller registers
/// its waker, then looks at `fired`; the timer sets `fired`, then wakes the
/// registered waker. Either the poller sees `fired`, or its waker was in
/// place when the timer woke it (`loom-tests/runners.rs`).
pub(crate) struct SleepState {
    fired: AtomicBool,
    waker: AtomicWaker,
}

impl SleepState {
    pub(crate) fn new() -> SleepState {
        SleepState {
            fired: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        }
    }

    /// The timer fired.
    pub(crate) fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        self.waker.wake();
    }

    pub(crate) fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// Whether the timer fired; if not, `waker` is woken when it does.
    pub(crate) fn poll_fired(&self, waker: &Waker) -> bool {
        if self.fired() {
            return true;
        }
        self.waker.register(waker);
        self.fired()
    }
}

/// When a [`Sleep`] completes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum When {
    /// This long after its first poll (`sleep`).
    After(Duration),
    /// At this deadline (`sleep_until`).
    At(Instant),
}

/// The future returned by [`sleep`].
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    when: When,
    yielded: bool,
    timer: Option<(TimerHandle, Arc<SleepState>)>,
}

/// Completes after `delay` (asyncio: `asyncio.sleep`), measured from the
/// first poll, on the loop running the awaiting task. `sleep(ZERO)` yields
/// once, letting the loop run one iteration. Error:
/// [`Error::NoRunningLoop`] when polled outside a running loop.
pub fn sleep(delay: Duration) -> Sleep {
    Sleep {
        when: When::After(delay),
        yielded: false,
        timer: None,
    }
}

/// Completes at `deadline` on the loop's clock ([`EventLoop::time`]), at
/// the next iteration if it has passed (tokio's `sleep_until`; asyncio
/// spells it `sleep(when - loop.time())`). Unlike [`sleep`] it reads no
/// clock: the timer is set for `deadline` at the first poll. Error:
/// [`Error::NoRunningLoop`] when polled outside a running loop.
///
/// ```
/// use std::time::Duration;
///
/// let lp = evloop::EventLoop::new()?;
/// let deadline = lp.time() + Duration::from_millis(5);
/// lp.run_until_complete(evloop::sleep_until(deadline))??;
/// assert!(lp.time() >= deadline);
/// # Ok::<(), evloop::Error>(())
/// ```
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        when: When::At(deadline),
        yielded: false,
        timer: None,
    }
}

impl Future for Sleep {
    type Output = Result<(), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.when == When::After(Duration::ZERO) {
            if self.yielded {
                return Poll::Ready(Ok(()));
            }
            if !crate::sched::any_running() {
                return Poll::Ready(Err(Error::NoRunningLoop));
            }
            self.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        match &self.timer {
            Some((_, state)) => {
                if state.poll_fired(cx.waker()) {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                }
            }
            None => {
                let when = match self.when {
                    When::After(delay) => crate::event_loop::deadline_after(delay),
                    When::At(deadline) => deadline,
                };
                let state = Arc::new(SleepState::new());
                state.poll_fired(cx.waker());
                let fire = state.clone();
                // Straight to the running loop's queue: no `EventLoop`
                // handle is cloned (this runs once per timed wait, hyper's
                // per-request timeout included).
                let timer = crate::event_loop::context::with_current(|ctx| {
                    ctx.event_loop
                        .inner
                        .shared
                        .call_soon(Some(when), Location::caller(), move || fire.fire())
                        .map(TimerHandle::new)
                })
                .unwrap_or(Err(Error::NoRunningLoop));
                match timer {
                    Ok(timer) => {
                        self.timer = Some((timer, state));
                        Poll::Pending
                    }
                    Err(e) => Poll::Ready(Err(e)),
                }
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some((timer, state)) = &self.timer {
            if !state.fired() {
                timer.cancel();
            }
        }
    }
}

/// The future returned by [`wait_for`].
#[must_use = "futures do nothing unless awaited"]
pub struct WaitFor<F: Future> {
    /// `None` once the timeout dropped it.
    fut: Option<F>,
    sleep: Sleep,
}

/// Awaits `fut` for at most `timeout` (asyncio: `asyncio.wait_for(aw,
/// timeout)`, same argument order). On timeout `fut` is dropped at once and
/// the result is [`Error::Timeout`]; as in asyncio, what `fut` was
/// awaiting is cancelled with it (a [`Task`], a `LoopFuture`, a
/// `ConcurrentFuture`). A zero timeout still gives `fut` one poll, so a
/// future that is ready at once returns its value (as in Python 3.12+).
pub fn wait_for<F: IntoFuture>(fut: F, timeout: Duration) -> WaitFor<F::IntoFuture> {
    WaitFor {
        fut: Some(fut.into_future()),
        sleep: sleep(timeout),
    }
}

impl<F: Future> Future for WaitFor<F> {
    type Output = Result<F::Output, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Safety: `fut` is structurally pinned (only ever dropped in place,
        // never moved out); `sleep` is `Unpin` and not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let mut fut = unsafe { Pin::new_unchecked(&mut this.fut) };
        let Some(inner) = fut.as_mut().as_pin_mut() else {
            return Poll::Ready(Err(Error::Timeout));
        };
        if let Poll::Ready(v) = inner.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        let timed_out = this.sleep.when == When::After(Duration::ZERO)
            || match Pin::new(&mut this.sleep).poll(cx) {
                Poll::Ready(Ok(())) => true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => false,
            };
        if !timed_out {
            return Poll::Pending;
        }
        crate::cancellation::propagate(None, || fut.set(None));
        Poll::Ready(Err(Error::Timeout))
    }
}

/// The future returned by [`shield`].
#[must_use = "futures do nothing unless awaited"]
pub struct Shield<F> {
    /// Dropped by hand, with cancellation suppressed.
    fut: std::mem::ManuallyDrop<F>,
}

/// Awaits `fut` without letting a cancellation through (asyncio:
/// `asyncio.shield`): if the task awaiting the shield is cancelled, or a
/// `wait_for` around it times out, what `fut` awaits — a [`Task`], a
/// `LoopFuture`, a `ConcurrentFuture` — is not cancelled and carries on.
/// (A Rust future only makes progress while polled: to keep a computation
/// running past the wait, make it a task and shield the task.)
///
/// ```
/// use evloop::EventLoop;
/// use std::time::Duration;
///
/// let lp = EventLoop::new()?;
/// let out = lp.run_until_complete(async {
///     let mut save = evloop::spawn(async {
///         evloop::sleep(Duration::from_millis(10)).await.unwrap();
///         "saved"
///     })
///     .unwrap();
///     let r = evloop::wait_for(evloop::shield(save.wait()), Duration::from_millis(1)).await;
///     assert!(r.is_err()); // timed out, but the save goes on
///     save.await.unwrap()
/// })?;
/// assert_eq!(out, "saved");
/// # Ok::<(), evloop::Error>(())
/// ```
pub fn shield<F: IntoFuture>(fut: F) -> Shield<F::IntoFuture> {
    Shield {
        fut: std::mem::ManuallyDrop::new(fut.into_future()),
    }
}

impl<F: Future> Future for Shield<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // Safety: `fut` is structurally pinned: never moved out, dropped
        // in place.
        unsafe { self.map_unchecked_mut(|s| &mut *s.fut) }.poll(cx)
    }
}

impl<F> Drop for Shield<F> {
    fn drop(&mut self) {
        // The inner future's drop is what must not propagate a
        // cancellation.
        // Safety: `fut` is dropped exactly once, here, in place (it may be
        // pinned); `ManuallyDrop` keeps the drop glue from doing it again.
        crate::cancellation::suppress(|| unsafe { std::mem::ManuallyDrop::drop(&mut self.fut) });
    }
}

/// Which children of a [`Gather`] were woken.
///
/// A child's flag is set by its waker (the first wake since the child was
/// last polled pushes its index) and cleared by the gather just before it
/// polls the child; a wake that lands after the clear pushes the index
/// again, so it is never lost. Both sides use acquire-release
/// read-modify-writes on the flag (`loom-tests/runners.rs`).
pub(crate) struct GatherWake {
    woken: Mutex<Vec<usize>>,
    flags: Vec<AtomicBool>,
    parent: AtomicWaker,
}

impl GatherWake {
    pub(crate) fn new(n: usize) -> GatherWake {
        GatherWake {
            woken: Mutex::new((0..n).collect()),
            flags: (0..n).map(|_| AtomicBool::new(true)).collect(),
            parent: AtomicWaker::new(),
        }
    }

    /// Child `i` was woken (any thread).
    pub(crate) fn wake_child(&self, i: usize) {
        if !self.flags[i].swap(true, Ordering::AcqRel) {
            crate::sync::lock(&self.woken).push(i);
            self.parent.wake();
        }
    }

    /// The children woken since the last call, each to be polled once;
    /// their flags are cleared, so wakes from now on are seen again.
    pub(crate) fn take_woken(&self) -> Vec<usize> {
        let woken = std::mem::take(&mut *crate::sync::lock(&self.woken));
        for &i in &woken {
            self.flags[i].swap(false, Ordering::AcqRel);
        }
        woken
    }

    /// Whether a child was woken since the last `take_woken`.
    pub(crate) fn any_woken(&self) -> bool {
        !crate::sync::lock(&self.woken).is_empty()
    }

    pub(crate) fn register_parent(&self, waker: &Waker) {
        self.parent.register(waker);
    }
}

struct ChildWaker {
    index: usize,
    shared: Arc<GatherWake>,
}

impl Wake for ChildWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.shared.wake_child(self.index);
    }
}

/// The future returned by [`gather`].
#[must_use = "futures do nothing unless awaited"]
pub struct Gather<F: Future> {
    children: Vec<Option<Pin<Box<F>>>>,
    outputs: Vec<Option<F::Output>>,
    wakers: Vec<Waker>,
    shared: Arc<GatherWake>,
    remaining: usize,
}

impl<F: Future> Unpin for Gather<F> {}

/// Runs `futs` concurrently and returns their outputs in input order
/// (asyncio: `asyncio.gather`). Each poll polls only the children that
/// were woken, each at most once: a child that wakes itself (a yield, a
/// `sleep(ZERO)`) is polled again on the loop's next iteration, so a busy
/// child never keeps the loop from its other work. For fallible children,
/// gather `Result`s and inspect them. Cancelling the task that awaits the
/// gather cancels every child that is waiting, as in asyncio.
pub fn gather<I>(futs: I) -> Gather<<I::Item as IntoFuture>::IntoFuture>
where
    I: IntoIterator,
    I::Item: IntoFuture,
{
    let children: Vec<_> = futs
        .into_iter()
        .map(|f| Some(Box::pin(f.into_future())))
        .collect();
    let n = children.len();
    let shared = Arc::new(GatherWake::new(n));
    let wakers = (0..n)
        .map(|index| {
            Waker::from(Arc::new(ChildWaker {
                index,
                shared: shared.clone(),
            }))
        })
        .collect();
    Gather {
        outputs: (0..n).map(|_| None).collect(),
        children,
        wakers,
        shared,
        remaining: n,
    }
}

impl<F: Future> Future for Gather<F> {
    type Output = Vec<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.shared.register_parent(cx.waker());
        for i in this.shared.take_woken() {
            let Some(child) = this.children[i].as_mut() else {
                continue;
            };
            let mut child_cx = Context::from_waker(&this.wakers[i]);
            if let Poll::Ready(v) = child.as_mut().poll(&mut child_cx) {
                this.outputs[i] = Some(v);
                this.children[i] = None;
                this.remaining -= 1;
            }
        }
        if this.remaining == 0 {
            let outputs = std::mem::take(&mut this.outputs);
            return Poll::Ready(
                outputs
                    .into_iter()
                    .map(|o| o.expect("every child finished"))
                    .collect(),
            );
        }
        if this.shared.any_woken() {
            // A child woke while being polled (or another was woken by it):
            // poll it on the next iteration, not in this one.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

/// Drives `fut` inside a task and completes a [`ConcurrentFuture`] with
/// its outcome; dropping it unfinished (cancellation) cancels the
/// concurrent future.
struct Forward<F: Future> {
    fut: Pin<Box<F>>,
    result: Option<ConcurrentFuture<F::Output>>,
}

impl<F: Future> Future for Forward<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| self.fut.as_mut().poll(cx)));
        let outcome = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(v)) => Ok(v),
            Err(payload) => Err(TaskError::Panicked(payload)),
        };
        if let Some(result) = self.result.take() {
            result.complete(outcome);
        }
        Poll::Ready(())
    }
}

impl<F: Future> Drop for Forward<F> {
    fn drop(&mut self) {
        if let Some(result) = self.result.take() {
            result.complete(Err(TaskError::Cancelled(None)));
        }
    }
}

/// Submits `fut` to `event_loop` from any thread and returns a future a
/// plain thread can block on (asyncio: `asyncio.run_coroutine_threadsafe`).
/// Cancelling the returned future cancels the task on the loop. Error:
/// [`Error::Closed`].
///
/// ```
/// use evloop::EventLoop;
/// use std::time::Duration;
///
/// let lp = EventLoop::new()?;
/// let runner = lp.clone();
/// let thread = std::thread::spawn(move || runner.run_forever());
/// let answer = evloop::run_coroutine_threadsafe(async { 21 * 2 }, &lp)?;
/// assert_eq!(answer.result(Some(Duration::from_secs(5))).unwrap(), 42);
/// lp.call_soon_threadsafe({ let lp = lp.clone(); move || lp.stop() })?;
/// thread.join().unwrap()?;
/// lp.close()?;
/// # Ok::<(), evloop::Error>(())
/// ```
#[track_caller]
pub fn run_coroutine_threadsafe<F>(
    fut: F,
    event_loop: &EventLoop,
) -> Result<ConcurrentFuture<F::Output>, Error>
where
    F: IntoFuture,
    F::IntoFuture: Send + 'static,
    F::Output: Send + 'static,
{
    let location = Location::caller();
    let result = ConcurrentFuture::completed_by(event_loop.inner.shared.id());
    let forward = Forward {
        fut: Box::pin(fut.into_future()),
        result: Some(result.clone()),
    };
    let task = crate::task::create(event_loop, forward, None, location)?;
    result.set_cancel_hook(move || {
        task.cancel();
    });
    Ok(result)
}
