//! [`EventLoop`]: running and stopping, callbacks and timers, futures and
//! tasks, fd watching, error handling and debug mode.

pub(crate) mod context;
pub(crate) mod core;
pub(crate) mod shared;

use self::core::Core;
use self::shared::Shared;
use crate::error::Error;
use crate::exception::{ExceptionContext, TaskInfo};
use crate::handle::{Handle, TimerHandle};
use crate::reactor::{Interest, Reactor};
use crate::readiness::WAKER_TOKEN;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::hash::{Hash, Hasher};
use std::os::fd::RawFd;
use std::panic::Location;
use std::pin::{Pin, pin};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

/// A loop's exception handler (asyncio: `loop.set_exception_handler`). It
/// runs on the thread that found the problem — the loop's thread for a
/// panicking callback or task, any thread for a task result dropped unread.
pub type ExceptionHandler = Arc<dyn Fn(&EventLoop, &ExceptionContext) + Send + Sync>;

/// A hook around a loop's idle periods (see [`EventLoop::set_idle_hook`]).
///
/// It is called with the idle period itself, `wait`, which it must call
/// exactly once. `wait` spins and then sleeps in the poller until work,
/// a timer, I/O or a signal ends the idle period, and returns whether
/// the sleep was interrupted by a signal (`EINTR`).
pub type IdleHook = Arc<dyn Fn(&mut dyn FnMut() -> bool) + Send + Sync>;

/// The environment variable that switches debug mode on for new loops
/// (`EVLOOP_DEBUG=1`), as `PYTHONASYNCIODEBUG` does for asyncio.
pub const DEBUG_ENV: &str = "EVLOOP_DEBUG";

/// How long an idle loop watches its inbox before sleeping in the poller,
/// by default. See [`EventLoop::set_spin_before_park`].
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// An event loop: a handle to it, cheap to clone and to send.
///
/// Clones are the same loop (`==` compares identity). The loop runs on at
/// most one thread at a time, the one inside [`EventLoop::run_forever`] or
/// [`EventLoop::run_until_complete`]; every method can be called from any
/// thread.
///
/// Dropping the last handle closes the loop (as [`EventLoop::close`]
/// does). Handles captured by the loop's own pending callbacks and tasks
/// count: a loop whose callbacks hold clones of it is kept alive by them,
/// so close it explicitly (`evloop::run` does), capture a
/// [`WeakEventLoop`] ([`EventLoop::downgrade`]), or call
/// [`get_running_loop`](crate::get_running_loop) inside the callback
/// instead of capturing the loop.
///
/// ```
/// use evloop::EventLoop;
/// use std::sync::{Arc, Mutex};
///
/// let lp = EventLoop::new()?;
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// for i in 0..3 {
///     let seen = seen.clone();
///     lp.call_soon(move || seen.lock().unwrap().push(i))?;
/// }
/// let stopper = lp.clone();
/// lp.call_soon(move || stopper.stop())?;
/// lp.run_forever()?;
/// assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2]);
/// lp.close()?;
/// # Ok::<(), evloop::Error>(())
/// ```
#[derive(Clone)]
pub struct EventLoop {
    pub(crate) inner: Arc<LoopInner>,
}

pub(crate) enum Slot {
    /// Not running: the core waits here for the next run.
    Idle(Box<Core>),
    /// A thread has the core.
    Running,
    Closed,
}

pub(crate) struct LoopInner {
    pub(crate) shared: Arc<Shared>,
    slot: Mutex<Slot>,
    pub(crate) reactor: Reactor,
    /// The per-loop state of the modules above the loop (default
    /// executor, signal handlers, children): closed by `close()`.
    pub(crate) services: crate::services::Services,
    /// See [`EventLoop::set_idle_hook`]; read once at the start of a run.
    idle_hook: Mutex<Option<IdleHook>>,
}

impl Drop for EventLoop {
    fn drop(&mut self) {
        // The last handle closes the loop while it can still be handed to
        // the exception handler (which receives `&EventLoop`). A concurrent
        // upgrade of a weak reference can at worst make a later drop do
        // this instead; `close` is idempotent.
        if Arc::strong_count(&self.inner) == 1 && !self.is_closed() {
            let _ = self.close();
        }
    }
}

/// A handle that does not keep its loop alive (see
/// [`EventLoop::downgrade`]).
#[derive(Clone, Debug)]
pub struct WeakEventLoop {
    inner: std::sync::Weak<LoopInner>,
}

impl WeakEventLoop {
    /// The loop, if some [`EventLoop`] handle still keeps it.
    pub fn upgrade(&self) -> Option<EventLoop> {
        self.inner.upgrade().map(|inner| EventLoop { inner })
    }
}

impl Drop for LoopInner {
    fn drop(&mut self) {
        let slot = self.slot.get_mut().unwrap_or_else(|p| p.into_inner());
        let core = match std::mem::replace(slot, Slot::Closed) {
            Slot::Idle(core) => Some(core),
            _ => None,
        };
        shutdown(self, core);
    }
}

/// Everything `close()` does once it owns the core.
fn shutdown(inner: &LoopInner, core: Option<Box<Core>>) {
    inner.shared.close_inbox();
    // Services first (signal actions unregistered, children handed to
    // reapers, the default executor shut down): they may deregister
    // sources that the core's shutdown would otherwise close under them.
    inner.services.close();
    inner.reactor.close();
    if let Some(core) = core {
        // Transports closed with the loop reach their state through this.
        let _held = crate::sched::hold_for_close(inner.shared.id());
        core.shutdown();
    }
    // The poller went with the core; its eventfd waker goes now too, not
    // with the last handle that refers to the loop.
    inner.shared.release_waker();
}

/// Counts and gauges of a loop, from [`EventLoop::stats`].
///
/// ```
/// use evloop::EventLoop;
/// use std::time::Duration;
///
/// let lp = EventLoop::new()?;
/// lp.call_soon(|| ())?;
/// let timer = lp.call_later(Duration::from_secs(60), || ())?;
/// let stats = lp.stats();
/// assert_eq!((stats.ready, stats.timers, stats.iterations), (1, 1, 0));
/// timer.cancel();
/// lp.stop();
/// lp.run_forever()?;
/// let stats = lp.stats();
/// assert_eq!((stats.ready, stats.iterations), (0, 1));
/// # Ok::<(), evloop::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Callbacks (and woken tasks) waiting in the ready queue.
    pub ready: usize,
    /// Timers in the timer queue, cancelled ones not yet purged included.
    pub timers: usize,
    /// Cancelled timers still in the timer queue (the number the purge rule
    /// uses). Cancellations made on other threads count once the loop has
    /// seen them: at its next iteration, or at once while it is idle.
    pub cancelled_timers: usize,
    /// Tasks that are not done, as [`EventLoop::all_tasks`] counts them.
    pub tasks: usize,
    /// File descriptors being watched (`add_reader` / `add_writer`).
    pub watched_fds: usize,
    /// I/O sources registered with the loop's readiness layer (sockets of
    /// transports and servers, sockets waited on by `sock_*` calls).
    pub io_sources: usize,
    /// Times another thread woke the loop from its sleep: an eventfd write
    /// (a loop with registered file descriptors sleeps in `epoll_wait`),
    /// or a futex wake (one with none sleeps on a futex, which is cheaper
    /// for both sides).
    pub wakeups: u64,
    /// Times the loop blocked in the poller, having nothing to do.
    pub parks: u64,
    /// Iterations run so far.
    pub iterations: u64,
}

static ROOT_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl EventLoop {
    /// Creates a loop (asyncio: `new_event_loop()` under the default
    /// policy). Debug mode starts on if `EVLOOP_DEBUG` is set to a
    /// non-empty value other than `0`.
    pub fn new() -> Result<EventLoop, Error> {
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKER_TOKEN)?;
        let registry = poll.registry().try_clone()?;
        let core = Core::new(poll)?;
        let debug = std::env::var_os(DEBUG_ENV).is_some_and(|v| !v.is_empty() && v != "0");
        let inner = Arc::new_cyclic(|weak| {
            let shared = Arc::new(Shared::new(waker, weak.clone(), debug));
            LoopInner {
                shared,
                slot: Mutex::new(Slot::Idle(Box::new(core))),
                reactor: Reactor::new(registry),
                services: Default::default(),
                idle_hook: Mutex::new(None),
            }
        });
        Ok(EventLoop { inner })
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    // ----- running and stopping -------------------------------------------------

    /// Takes the core for a run, with asyncio's checks in asyncio's order.
    fn begin_run(&self) -> Result<Box<Core>, Error> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        if crate::sched::runs_here(self.shared().id()) {
            return Err(Error::AlreadyRunning);
        }
        let mut slot = crate::sync::lock(&self.inner.slot);
        match std::mem::replace(&mut *slot, Slot::Running) {
            Slot::Idle(core) => {
                if crate::sched::any_running() {
                    *slot = Slot::Idle(core);
                    return Err(Error::AnotherLoopRunning);
                }
                self.shared().running.store(true, Ordering::Release);
                Ok(core)
            }
            Slot::Running => Err(Error::AlreadyRunning),
            Slot::Closed => {
                *slot = Slot::Closed;
                Err(Error::Closed)
            }
        }
    }

    /// Runs iterations until `stop()`; returns the panic of the root future
    /// of `run_until_complete`, if it panicked.
    fn run_core(
        &self,
        core: Box<Core>,
        root: Option<(u64, *mut context::RootPoll<'static>)>,
    ) -> Option<crate::error::PanicPayload> {
        struct Restore<'a> {
            event_loop: &'a EventLoop,
            core: Option<Box<Core>>,
        }
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                let shared = self.event_loop.shared();
                shared.stopping.store(false, Ordering::Relaxed);
                shared.running.store(false, Ordering::Release);
                let core = self.core.take().expect("core present until restore");
                *crate::sync::lock(&self.event_loop.inner.slot) = Slot::Idle(core);
            }
        }

        let restore = Restore {
            event_loop: self,
            core: Some(core),
        };
        let core: &Core = restore.core.as_deref().expect("core present");
        let ctx = context::RunContext {
            core,
            event_loop: self.clone(),
            root: std::cell::Cell::new(root),
            root_panic: std::cell::Cell::new(None),
            foreign_root: std::cell::Cell::new(false),
            idle_hook: crate::sync::lock(&self.inner.idle_hook).clone(),
        };
        *crate::sync::lock(&self.shared().thread) = Some(std::thread::current());
        // Safety: `ctx` and the core outlive `_entered` (declared after them,
        // dropped before them), which is dropped on this thread.
        let _entered = unsafe { crate::sched::enter(self.shared().id(), &ctx) };
        loop {
            core.run_once(&ctx);
            if self.shared().stopping.load(Ordering::Relaxed) {
                break;
            }
        }
        core.publish(self.shared());
        ctx.root_panic.take()
    }

    /// Runs the loop until [`EventLoop::stop`] is called (asyncio:
    /// `loop.run_forever()`).
    ///
    /// `stop()` called before this makes the run do exactly one iteration.
    /// Errors: [`Error::Closed`], [`Error::AlreadyRunning`] (this loop runs
    /// on some thread), [`Error::AnotherLoopRunning`] (another loop runs on
    /// this thread).
    pub fn run_forever(&self) -> Result<(), Error> {
        let core = self.begin_run()?;
        if let Some(panic) = self.run_core(core, None) {
            std::panic::resume_unwind(panic);
        }
        Ok(())
    }

    /// Runs the loop until `fut` completes and returns its output (asyncio:
    /// `loop.run_until_complete(fut)`).
    ///
    /// `fut` is polled on the calling thread, as a task of this loop, so it
    /// need not be `Send`; anything awaitable works, `&task` and `&future`
    /// included. If the loop is stopped first the result is
    /// [`Error::StoppedBeforeComplete`]. A [`Task`](crate::Task) or [`LoopFuture`](crate::LoopFuture) of
    /// another loop is refused with [`Error::ForeignFuture`], as asyncio
    /// does (awaiting one from inside a task is fine). A panic in `fut`
    /// propagates to the caller once the loop has been put back in order.
    pub fn run_until_complete<F: IntoFuture>(&self, fut: F) -> Result<F::Output, Error> {
        let fut = fut.into_future();
        let core = self.begin_run()?;
        let root_id = ROOT_IDS.fetch_add(1, Ordering::Relaxed);
        // Queued through the inbox (the loop is not entered yet), so it runs
        // after whatever was scheduled before this call.
        let root_task = match context::RootTask::spawn(&self.inner.shared, root_id) {
            Ok(t) => t,
            Err(e) => {
                *crate::sync::lock(&self.inner.slot) = Slot::Idle(core);
                self.shared().running.store(false, Ordering::Release);
                return Err(e);
            }
        };
        let mut fut = pin!(fut);
        let mut output = None;
        let mut foreign = false;
        let panic = {
            let mut poll_fn = |cx: &mut std::task::Context<'_>| {
                // Lets a loop-bound handle polled as the root itself (not
                // from inside another future) check its loop.
                let at = (
                    &*fut as *const F::IntoFuture as usize,
                    size_of::<F::IntoFuture>(),
                );
                let polled = context::with_root_future(at, || fut.as_mut().poll(cx));
                match polled {
                    (Poll::Ready(v), _) => {
                        output = Some(v);
                        Poll::Ready(())
                    }
                    (Poll::Pending, true) => {
                        foreign = true;
                        Poll::Ready(())
                    }
                    (Poll::Pending, false) => Poll::Pending,
                }
            };
            let ptr: *mut context::RootPoll<'_> = &mut poll_fn;
            // Safety: the pointer is only used while `run_core` runs, during
            // which `poll_fn` is alive; the context forgets it on return.
            let ptr: *mut context::RootPoll<'static> = unsafe { std::mem::transmute(ptr) };
            self.run_core(core, Some((root_id, ptr)))
        };
        if let Some(panic) = panic {
            std::panic::resume_unwind(panic);
        }
        match output {
            Some(v) => Ok(v),
            None if foreign => Err(Error::ForeignFuture),
            None => {
                // The future is dropped with this frame: its driver goes
                // now, quietly (a loop that another thread started again
                // meanwhile closes it quietly instead).
                self.with_idle_core(|core| root_task.dismiss(core));
                Err(Error::StoppedBeforeComplete)
            }
        }
    }

    /// Stops the loop (asyncio: `loop.stop()`); callable from any thread.
    ///
    /// From a callback, the rest of the current iteration still runs, then
    /// `run_forever` returns. Called while the loop is not running, it makes
    /// the next run do one iteration.
    pub fn stop(&self) {
        self.shared().request_stop();
    }

    /// Stops the loop at the end of the next iteration (how
    /// `run_until_complete` ends, as asyncio's done callback does).
    pub(crate) fn stop_soon(&self) {
        let shared = self.inner.shared.clone();
        let _ = self.call_soon_threadsafe(move || shared.request_stop());
    }

    /// Whether the loop is running on some thread.
    pub fn is_running(&self) -> bool {
        self.shared().running.load(Ordering::Acquire)
    }

    /// Whether [`EventLoop::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.shared().is_closed()
    }

    /// Closes the loop (asyncio: `loop.close()`): drops every pending
    /// callback, timer and task (running their destructors), deregisters
    /// every watched fd, closes the poller and its eventfd (the loop's own
    /// file descriptors are all released here, not when the last handle
    /// goes), and shuts the default executor down without waiting.
    /// Posts from other threads afterwards get [`Error::Closed`].
    /// Idempotent. Error: [`Error::CloseRunning`].
    pub fn close(&self) -> Result<(), Error> {
        let core = {
            let mut slot = crate::sync::lock(&self.inner.slot);
            match std::mem::replace(&mut *slot, Slot::Closed) {
                Slot::Idle(core) => core,
                Slot::Running => {
                    *slot = Slot::Running;
                    return Err(Error::CloseRunning);
                }
                Slot::Closed => return Ok(()),
            }
        };
        shutdown(&self.inner, Some(core));
        Ok(())
    }

    // ----- callbacks and timers ---------------------------------------------------

    /// Schedules `f` to run on the next iteration (asyncio:
    /// `loop.call_soon`). Callbacks run in the order they were scheduled.
    ///
    /// From the loop's own thread this is a push onto its ready queue; from
    /// any other thread it is [`EventLoop::call_soon_threadsafe`], reported
    /// through `tracing` in debug mode (asyncio raises there; evloop is
    /// merely slower, never unsafe). Error: [`Error::Closed`].
    #[track_caller]
    pub fn call_soon<F>(&self, f: F) -> Result<Handle, Error>
    where
        F: FnOnce() + Send + 'static,
    {
        let location = Location::caller();
        let shared = self.shared();
        if shared.debug.load(Ordering::Relaxed)
            && self.is_running()
            && !crate::sched::runs_here(shared.id())
        {
            tracing::warn!(
                target: "evloop",
                "call_soon() called from thread '{}', not the thread running the loop, at {location}; \
                 it took the thread-safe path (use call_soon_threadsafe)",
                crate::util::thread_name()
            );
        }
        self.inner.shared.call_soon(None, location, f)
    }

    /// Schedules `f` from any thread and wakes the loop if it sleeps
    /// (asyncio: `loop.call_soon_threadsafe`). Error: [`Error::Closed`].
    #[track_caller]
    pub fn call_soon_threadsafe<F>(&self, f: F) -> Result<Handle, Error>
    where
        F: FnOnce() + Send + 'static,
    {
        self.inner.shared.call_soon(None, Location::caller(), f)
    }

    /// The loop's clock (asyncio: `loop.time()`), the monotonic clock that
    /// `call_at` deadlines are measured on.
    pub fn time(&self) -> Instant {
        Instant::now()
    }

    /// Schedules `f` to run after `delay` (asyncio: `loop.call_later`).
    /// Error: [`Error::Closed`].
    #[track_caller]
    pub fn call_later<F>(&self, delay: Duration, f: F) -> Result<TimerHandle, Error>
    where
        F: FnOnce() + Send + 'static,
    {
        self.call_at(deadline_after(delay), f)
    }

    /// Schedules `f` to run at `when` on the loop's clock (asyncio:
    /// `loop.call_at`). Timers run in deadline order, equal deadlines in
    /// the order they were scheduled. Error: [`Error::Closed`].
    #[track_caller]
    pub fn call_at<F>(&self, when: Instant, f: F) -> Result<TimerHandle, Error>
    where
        F: FnOnce() + Send + 'static,
    {
        self.inner
            .shared
            .call_soon(Some(when), Location::caller(), f)
            .map(TimerHandle::new)
    }

    /// Registers an I/O source with this loop's readiness layer, for the
    /// source's life. Loop thread only ([`Error::WrongThread`] elsewhere).
    pub(crate) fn register_source(
        &self,
        fd: RawFd,
    ) -> Result<crate::readiness::Registration, Error> {
        let sched: Arc<dyn crate::sched::Schedule> = self.inner.shared.clone();
        self.with_io_set(|io| io.register(fd, sched))
    }

    /// The registration of a socket the loop does not own, kept for the
    /// next `sock_*` wait on it (see `IoSet::borrow_socket`). Loop thread
    /// only ([`Error::WrongThread`] elsewhere).
    pub(crate) fn borrow_socket(
        &self,
        fd: RawFd,
        cookie: u64,
    ) -> Result<Arc<crate::readiness::ScheduledIo>, Error> {
        self.with_io_set(|io| io.borrow_socket(fd, cookie))
    }

    /// Runs `f` on the readiness layer's set, on the loop's thread:
    /// [`Error::Closed`] on a closed loop, [`Error::WrongThread`] elsewhere.
    fn with_io_set<R>(
        &self,
        f: impl FnOnce(&mut crate::readiness::IoSet) -> std::io::Result<R>,
    ) -> Result<R, Error> {
        context::with_run(&self.inner.shared, f, |ctx, f| {
            f(&mut ctx.core().io.borrow_mut())
        })
        .map_err(|_| {
            if self.is_closed() {
                Error::Closed
            } else {
                Error::WrongThread
            }
        })?
        .map_err(Error::Io)
    }

    /// A handle that does not keep the loop alive: for callbacks and tasks
    /// of the loop itself, which would otherwise keep their own loop from
    /// closing when its last outside handle is dropped.
    pub fn downgrade(&self) -> WeakEventLoop {
        WeakEventLoop {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// Runs `f` on the core while the loop is idle (not running, not
    /// closed), under the slot lock. `f` must run no user code; what it
    /// leaves in the core's garbage is dropped after the lock is released.
    pub(crate) fn with_idle_core<R>(&self, f: impl FnOnce(&Core) -> R) -> Option<R> {
        let (r, garbage) = match &*crate::sync::lock(&self.inner.slot) {
            Slot::Idle(core) => {
                let r = f(core);
                (Some(r), core.take_garbage())
            }
            _ => (None, Vec::new()),
        };
        drop(garbage);
        r
    }

    // ----- diagnostics ------------------------------------------------------------

    /// Counts and gauges: ready callbacks, timers, cancelled timers, tasks,
    /// watched fds, I/O sources, wake-ups, parks, iterations. Exact on the
    /// loop's thread or while the loop is idle (work already posted to it
    /// included); from another thread while it runs, the iteration count
    /// is current and the gauges are as of the loop's last sleep or at
    /// most a few dozen iterations old.
    pub fn stats(&self) -> Stats {
        let shared = self.shared();
        let c = &shared.counters;
        let mut stats = Stats {
            wakeups: c.wakeups.load(Ordering::Relaxed),
            parks: c.parks.load(Ordering::Relaxed),
            watched_fds: self.inner.reactor.len(),
            ..Stats::default()
        };
        let live = context::with_run(shared, (), |ctx, ()| ctx.core().stats())
            .ok()
            .or_else(|| {
                if self.is_closed() {
                    // Nothing is pending any more.
                    return Some(self::core::CoreStats::default());
                }
                // Work posted to an idle loop waits in the inbox; holding
                // the idle core makes us its only consumer, so sort it in
                // (as the next run would) and count it.
                self.with_idle_core(|core| {
                    core.drain_inbox(shared, usize::MAX);
                    // Cancellations from other threads count now, as the
                    // next run would count them (a purge they call for is
                    // applied; the timers it removes drop after the lock).
                    core.count_remote_cancels(shared);
                    core.stats()
                })
            });
        match live {
            Some(s) => {
                stats.io_sources = s.io_sources;
                stats.ready = s.ready;
                stats.timers = s.timers;
                stats.cancelled_timers = s.cancelled_timers;
                stats.tasks = s.tasks;
                stats.iterations = s.iterations;
            }
            None => {
                stats.ready = c.ready.load(Ordering::Relaxed);
                stats.timers = c.timers.load(Ordering::Relaxed);
                stats.cancelled_timers = c.cancelled_timers.load(Ordering::Relaxed);
                stats.tasks = c.tasks.load(Ordering::Relaxed);
                stats.io_sources = c.io_sources.load(Ordering::Relaxed);
                stats.iterations = c.iterations.load(Ordering::Relaxed);
            }
        }
        stats
    }
}

// ----- error handling and debug mode -----------------------------------------------

impl EventLoop {
    /// Sets the handler that receives errors nobody else will see
    /// (asyncio: `loop.set_exception_handler`); `None` restores the default
    /// handler, which logs through `tracing::error!`.
    pub fn set_exception_handler(&self, handler: Option<ExceptionHandler>) {
        self.shared().set_exception_handler(handler);
    }

    /// The handler set with [`EventLoop::set_exception_handler`], if any.
    pub fn get_exception_handler(&self) -> Option<ExceptionHandler> {
        self.shared().exception_handler()
    }

    /// Passes `context` to the exception handler (asyncio:
    /// `loop.call_exception_handler`). A panicking handler is reported
    /// through the default handler; it never unwinds into the caller.
    pub fn call_exception_handler(&self, context: ExceptionContext) {
        self.shared().call_exception_handler(context);
    }

    /// The default handler's behaviour, for custom handlers that want to
    /// fall back to it (asyncio: `loop.default_exception_handler`).
    pub fn default_exception_handler(&self, context: &ExceptionContext) {
        crate::exception::default_exception_handler(context);
    }

    /// Switches debug mode (asyncio: `loop.set_debug`): slow callbacks are
    /// logged with the place they were scheduled from, and `call_soon` from
    /// a foreign thread is reported.
    pub fn set_debug(&self, enabled: bool) {
        self.shared().debug.store(enabled, Ordering::Relaxed);
    }

    /// Whether debug mode is on (asyncio: `loop.get_debug`).
    pub fn get_debug(&self) -> bool {
        self.shared().debug.load(Ordering::Relaxed)
    }

    /// In debug mode, callbacks that run at least this long are logged
    /// (asyncio: `loop.slow_callback_duration`, default 100 ms).
    pub fn slow_callback_duration(&self) -> Duration {
        self.shared().slow_callback_duration()
    }

    /// Sets [`EventLoop::slow_callback_duration`].
    pub fn set_slow_callback_duration(&self, duration: Duration) {
        self.shared().set_slow_callback_duration(duration);
    }

    /// How long the loop, with nothing to do, keeps checking its inbox
    /// before it sleeps in the poller (default [`DEFAULT_SPIN`]; zero turns
    /// spinning off). A post that lands within the spin is picked up
    /// without an eventfd write or a wake-up, which is what makes
    /// cross-thread request/response between loops fast; the cost is that
    /// much CPU each time the loop goes idle.
    pub fn set_spin_before_park(&self, spin: Duration) {
        self.shared().set_spin(spin);
    }

    /// Wraps each idle period of this loop's runs in `hook`, or removes the
    /// hook (`None`). Takes effect at the start of the next run.
    ///
    /// An idle period is the loop's spin before parking and its sleep in
    /// the poller; the hook receives it as a closure to call once (see
    /// [`IdleHook`]), and may do things before and after, on the loop's
    /// thread: an embedding runtime releases a global lock while the loop
    /// waits (Python's GIL), and learns from the closure's result that a
    /// signal interrupted the sleep, to run its own signal handlers. A
    /// loop with a hook always sleeps in the poller, which a signal
    /// interrupts, never on a futex (std's futex wait resumes after
    /// `EINTR`). Polls that do not block are not wrapped. The hook must
    /// not run the loop.
    ///
    /// ```
    /// use evloop::EventLoop;
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::time::Duration;
    ///
    /// let lp = EventLoop::new()?;
    /// let idle = Arc::new(AtomicUsize::new(0));
    /// let seen = idle.clone();
    /// lp.set_idle_hook(Some(Arc::new(move |wait: &mut dyn FnMut() -> bool| {
    ///     seen.fetch_add(1, Ordering::Relaxed);
    ///     wait();
    /// })));
    /// let stopper = lp.clone();
    /// lp.call_later(Duration::from_millis(5), move || stopper.stop())?;
    /// lp.run_forever()?;
    /// assert!(idle.load(Ordering::Relaxed) >= 1);
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub fn set_idle_hook(&self, hook: Option<IdleHook>) {
        let old = std::mem::replace(&mut *crate::sync::lock(&self.inner.idle_hook), hook);
        drop(old);
    }

    /// The spin set by [`EventLoop::set_spin_before_park`].
    pub fn spin_before_park(&self) -> Duration {
        self.shared().spin()
    }

    // ----- futures and tasks -------------------------------------------------------

    /// The tasks of this loop that are not done (asyncio:
    /// `asyncio.all_tasks(loop)`), in no particular order; tasks created
    /// from other threads that have not taken their first step yet are
    /// included. Works on the loop's own thread and on a loop that is not
    /// running; a closed loop has none.
    ///
    /// Error: [`Error::InvalidState`] from another thread while the loop
    /// runs (its task list belongs to the running thread; ask from a
    /// callback there, e.g. with `run_coroutine_threadsafe`).
    ///
    /// ```
    /// use evloop::EventLoop;
    /// use std::time::Duration;
    ///
    /// let lp = EventLoop::new()?;
    /// let sleeper = lp.create_task_named(evloop::sleep(Duration::from_secs(60)), "sleeper")?;
    /// let names: Vec<String> = lp.all_tasks()?.into_iter().map(|t| t.name).collect();
    /// assert_eq!(names, ["sleeper"]);
    /// sleeper.cancel();
    /// assert!(lp.run_until_complete(sleeper)?.is_err());
    /// assert!(lp.all_tasks()?.is_empty());
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub fn all_tasks(&self) -> Result<Vec<TaskInfo>, Error> {
        let shared = self.shared();
        if let Ok(tasks) = context::with_run(shared, (), |ctx, ()| ctx.core().all_tasks(shared)) {
            return Ok(tasks);
        }
        if self.is_closed() {
            return Ok(Vec::new());
        }
        self.with_idle_core(|core| core.all_tasks(shared))
            .ok_or(Error::InvalidState(
                "all_tasks() cannot look into a loop running on another thread",
            ))
    }

    /// Sets the factory `create_task` uses (asyncio:
    /// `loop.set_task_factory`); `None` restores the default.
    pub fn set_task_factory(&self, factory: Option<TaskFactory>) {
        self.shared().set_task_factory(factory);
    }

    /// The factory set with [`EventLoop::set_task_factory`], if any.
    pub fn get_task_factory(&self) -> Option<TaskFactory> {
        self.shared().task_factory()
    }

    // ----- watching file descriptors -----------------------------------------------

    /// Calls `callback` on the loop whenever `fd` is readable (asyncio:
    /// `loop.add_reader`), level-triggered: as long as data remains, the
    /// callback is called again on each iteration. Replaces the reader
    /// already registered for `fd`, if any.
    ///
    /// The caller keeps ownership of `fd` and must remove the reader before
    /// closing it. Errors: [`Error::Closed`], [`Error::InvalidFd`] for a
    /// negative fd, [`Error::Io`] for a descriptor the poller refuses
    /// (`EBADF` for a closed one, `EPERM` for a regular file).
    pub fn add_reader<F>(&self, fd: RawFd, callback: F) -> Result<(), Error>
    where
        F: FnMut() + Send + 'static,
    {
        self.add_watcher(fd, Interest::Read, Box::new(callback))
    }

    /// Stops watching `fd` for reading (asyncio: `loop.remove_reader`);
    /// returns whether a reader was registered. A reader already queued for
    /// this iteration does not run.
    pub fn remove_reader(&self, fd: RawFd) -> bool {
        self.inner.reactor.remove(fd, Interest::Read)
    }

    /// Calls `callback` on the loop whenever `fd` is writable (asyncio:
    /// `loop.add_writer`); see [`EventLoop::add_reader`].
    pub fn add_writer<F>(&self, fd: RawFd, callback: F) -> Result<(), Error>
    where
        F: FnMut() + Send + 'static,
    {
        self.add_watcher(fd, Interest::Write, Box::new(callback))
    }

    /// Stops watching `fd` for writing (asyncio: `loop.remove_writer`);
    /// returns whether a writer was registered.
    pub fn remove_writer(&self, fd: RawFd) -> bool {
        self.inner.reactor.remove(fd, Interest::Write)
    }

    fn add_watcher(
        &self,
        fd: RawFd,
        interest: Interest,
        callback: Box<dyn FnMut() + Send>,
    ) -> Result<(), Error> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        self.inner.reactor.add(fd, interest, callback)?;
        // A loop sleeping on a futex (it had nothing to watch) must go and
        // sleep in the poller instead.
        self.shared().nudge();
        Ok(())
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

impl PartialEq for EventLoop {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for EventLoop {}

impl Hash for EventLoop {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.inner) as usize).hash(state);
    }
}

impl fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLoop")
            .field("running", &self.is_running())
            .field("closed", &self.is_closed())
            .field("debug", &self.get_debug())
            .finish()
    }
}

/// The deadline `delay` from now on the loop's clock; a delay too long for
/// the clock is a century, which no loop outlives.
pub(crate) fn deadline_after(delay: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(delay)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}
