//! The part of a loop that callbacks, tasks and futures keep a reference to:
//! the remote inbox, the flags other threads may set, the handler
//! configuration and the counters. It deliberately does not own the loop's
//! core (ready queue, timers, poller, task registry), so a task holding
//! `Arc<Shared>` never keeps its own loop's core alive: dropping the last
//! `EventLoop` closes the loop even while tasks and handles are still
//! referenced elsewhere. It is the loop's implementation of
//! [`Schedule`], the interface tasks and timers keep.

use super::TaskFactory;
use super::{EventLoop, ExceptionHandler, LoopInner, context};
use crate::error::{Error, PanicPayload};
use crate::exception::{ExceptionContext, default_exception_handler};
use crate::handle::{self, Handle};
use crate::remote::{Inbox, Remote};
use crate::runnable::Runnable;
use crate::sched::{LoopId, Schedule};
use std::any::Any;
use std::panic::{AssertUnwindSafe, Location};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

/// Below this many timers the purge rule never applies (asyncio's
/// `_MIN_SCHEDULED_TIMER_HANDLES`), so remote cancellations never wake the
/// loop for it.
const MIN_PURGE_WAKE: usize = 100;

/// Counters other threads can read while the loop runs; the loop refreshes
/// the gauges once per iteration.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) wakeups: AtomicU64,
    pub(crate) parks: AtomicU64,
    pub(crate) iterations: AtomicU64,
    pub(crate) ready: AtomicUsize,
    pub(crate) timers: AtomicUsize,
    pub(crate) cancelled_timers: AtomicUsize,
    pub(crate) tasks: AtomicUsize,
    pub(crate) io_sources: AtomicUsize,
}

pub(crate) struct Shared {
    pub(crate) inbox: Inbox,
    waker: mio::Waker,
    pub(crate) stopping: AtomicBool,
    pub(crate) running: AtomicBool,
    pub(crate) debug: AtomicBool,
    slow_callback_ns: AtomicU64,
    spin_ns: AtomicU64,
    exception_handler: RwLock<Option<ExceptionHandler>>,
    task_factory: RwLock<Option<TaskFactory>>,
    /// Whether `task_factory` is set, so that `create_task` without a
    /// factory takes no lock.
    has_task_factory: AtomicBool,
    pub(crate) inner: Weak<LoopInner>,
    /// Timers in the heap cancelled from other threads since the loop last
    /// looked (see `timers`).
    pub(crate) remote_timer_cancels: AtomicUsize,
    /// A canceller woke the loop to purge; cleared when the loop absorbs
    /// the count.
    pub(crate) purge_wake_sent: AtomicBool,
    /// When the last eventfd write was made, in ns since `epoch`: how long
    /// after going idle a parked loop's work really arrived, its own
    /// wake-up latency aside (for the spin policy; written only on the
    /// slow path that makes a system call anyway).
    pub(crate) woken_at_ns: AtomicU64,
    pub(crate) epoch: Instant,
    /// The loop sleeps on a futex (`std::thread::park`) rather than in
    /// `epoll_wait`: it had no file descriptor to watch. Stored before the
    /// loop announces PARKED, so a producer that must wake it reads the
    /// current value (see `Remote`: the producer's push reads from the
    /// loop's read-modify-write of the inbox head).
    pub(crate) parked_on_futex: AtomicBool,
    /// The thread running the loop, to unpark it.
    pub(crate) thread: std::sync::Mutex<Option<std::thread::Thread>>,
    pub(crate) counters: Counters,
}

impl Shared {
    pub(crate) fn new(waker: mio::Waker, inner: Weak<LoopInner>, debug: bool) -> Shared {
        Shared {
            inbox: Inbox::new(),
            waker,
            stopping: AtomicBool::new(false),
            running: AtomicBool::new(false),
            debug: AtomicBool::new(debug),
            slow_callback_ns: AtomicU64::new(100_000_000),
            spin_ns: AtomicU64::new(super::DEFAULT_SPIN.as_nanos() as u64),
            exception_handler: RwLock::new(None),
            task_factory: RwLock::new(None),
            has_task_factory: AtomicBool::new(false),
            inner,
            remote_timer_cancels: AtomicUsize::new(0),
            purge_wake_sent: AtomicBool::new(false),
            woken_at_ns: AtomicU64::new(0),
            epoch: Instant::now(),
            parked_on_futex: AtomicBool::new(false),
            thread: std::sync::Mutex::new(None),
            counters: Counters::default(),
        }
    }

    /// The identity that handles and the thread-local context compare.
    #[inline]
    pub(crate) fn id(&self) -> LoopId {
        self as *const Shared as *const ()
    }

    /// The user-facing handle, while one exists.
    pub(crate) fn event_loop(&self) -> Option<EventLoop> {
        self.inner.upgrade().map(|inner| EventLoop { inner })
    }

    /// Schedules `r` to run on this loop: onto the ready queue when called
    /// on the loop's own thread, through the inbox otherwise. Gives `r` back
    /// if the loop is closed.
    #[inline]
    pub(crate) fn schedule(&self, r: Runnable) -> Result<(), Runnable> {
        match context::with_run(self, r, |ctx, r| ctx.core().push(r)) {
            Ok(()) => Ok(()),
            Err(r) => self.post(r),
        }
    }

    /// The remote path: push to the inbox, wake the loop if it sleeps.
    pub(crate) fn post(&self, r: Runnable) -> Result<(), Runnable> {
        let woke = self.inbox.post(r)?;
        if woke {
            self.wake();
        }
        // Whether the target was awake tells this thread's own loop, if it
        // has one, whether a reply may come before it could sleep.
        crate::sched::note_request(woke);
        Ok(())
    }

    /// The loop's queue and wake-up state (the loop is its consumer).
    #[inline]
    pub(crate) fn remote(&self) -> &Remote {
        self.inbox.remote()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.inbox.is_closed()
    }

    /// Sets `stopping` so that a sleeping loop sees it.
    pub(crate) fn request_stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        if !crate::sched::runs_here(self.id()) && self.remote().signal() {
            self.wake();
        }
    }

    /// Wakes the sleeping loop (the caller claimed the wake-up).
    pub(crate) fn wake(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.woken_at_ns.store(now, Ordering::Relaxed);
        self.counters.wakeups.fetch_add(1, Ordering::Relaxed);
        if self.parked_on_futex.load(Ordering::Acquire) {
            let thread = crate::sync::lock(&self.thread).clone();
            if let Some(thread) = thread {
                thread.unpark();
                return;
            }
        }
        if let Err(e) = self.waker.wake() {
            crate::util::log_error(format_args!("failed to wake the event loop: {e}"));
        }
    }

    /// Wakes the loop if it sleeps, so it looks at its state again (a file
    /// descriptor was registered while it slept on a futex, say).
    pub(crate) fn nudge(&self) {
        if !crate::sched::runs_here(self.id()) && self.remote().signal() {
            self.wake();
        }
    }

    /// Marks the loop closed and drops everything still in the inbox.
    pub(crate) fn close_inbox(&self) {
        self.inbox.close();
    }

    /// Schedules a callback (a timer if `when` is set): on the loop's own
    /// thread straight into its queues, from anywhere else through the
    /// inbox. The one path behind `call_soon`, `call_soon_threadsafe`,
    /// `call_later`, `call_at` and done callbacks of futures.
    #[inline]
    pub(crate) fn call_soon<F>(
        self: &Arc<Self>,
        when: Option<Instant>,
        location: &'static Location<'static>,
        f: F,
    ) -> Result<Handle, Error>
    where
        F: FnOnce() + Send + 'static,
    {
        let timer = when.map(|when| (when, self.clone() as Arc<dyn Schedule>));
        self.schedule_callback(timer, location, f)
    }

    /// The one path behind every `call_*`: on the loop's own thread straight
    /// into its queues, from anywhere else through the inbox.
    #[inline]
    fn schedule_callback<F>(
        &self,
        timer: Option<(Instant, Arc<dyn Schedule>)>,
        location: &'static Location<'static>,
        f: F,
    ) -> Result<Handle, Error>
    where
        F: FnOnce() + Send + 'static,
    {
        let local = context::with_run(self, (timer, f), |ctx, (timer, f)| {
            let when = timer.as_ref().map(|(when, _)| *when);
            let (r, h) = handle::new_callback(self.id(), false, timer, location, f);
            match when {
                Some(when) => ctx.core().insert_timer(r, when),
                None => ctx.core().push(r),
            }
            h
        });
        let (timer, f) = match local {
            Ok(h) => return Ok(h),
            Err(args) => args,
        };
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let (r, h) = handle::new_callback(self.id(), true, timer, location, f);
        match self.post(r) {
            Ok(()) => Ok(h),
            Err(r) => {
                drop(r);
                Err(Error::Closed)
            }
        }
    }

    pub(crate) fn slow_callback_duration(&self) -> Duration {
        Duration::from_nanos(self.slow_callback_ns.load(Ordering::Relaxed))
    }

    pub(crate) fn set_slow_callback_duration(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.slow_callback_ns.store(ns, Ordering::Relaxed);
    }

    pub(crate) fn spin(&self) -> Duration {
        Duration::from_nanos(self.spin_ns.load(Ordering::Relaxed))
    }

    pub(crate) fn set_spin(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.spin_ns.store(ns, Ordering::Relaxed);
    }

    pub(crate) fn task_factory(&self) -> Option<TaskFactory> {
        if !self.has_task_factory.load(Ordering::Acquire) {
            return None;
        }
        crate::sync::read(&self.task_factory).clone()
    }

    pub(crate) fn set_task_factory(&self, factory: Option<TaskFactory>) {
        let mut slot = crate::sync::write(&self.task_factory);
        self.has_task_factory
            .store(factory.is_some(), Ordering::Release);
        let previous = std::mem::replace(&mut *slot, factory);
        drop(slot);
        drop(previous);
    }

    pub(crate) fn exception_handler(&self) -> Option<ExceptionHandler> {
        crate::sync::read(&self.exception_handler).clone()
    }

    pub(crate) fn set_exception_handler(&self, handler: Option<ExceptionHandler>) {
        let previous =
            std::mem::replace(&mut *crate::sync::write(&self.exception_handler), handler);
        // The old handler's captures are dropped outside the lock.
        drop(previous);
    }

    /// Hands `ctx` to the exception handler (the default one when none is
    /// set or the loop is gone). A panicking handler is itself reported
    /// through the default handler, as asyncio does.
    pub(crate) fn call_exception_handler(&self, ctx: ExceptionContext) {
        self.call_exception_handler_with(ctx, self.event_loop().as_ref());
    }

    /// [`Shared::call_exception_handler`] with the loop handle at hand
    /// (while the last handle is being dropped, it cannot be upgraded).
    pub(crate) fn call_exception_handler_with(
        &self,
        ctx: ExceptionContext,
        event_loop: Option<&EventLoop>,
    ) {
        let handler = self.exception_handler();
        match (handler, event_loop) {
            (Some(handler), Some(event_loop)) => {
                let outcome =
                    std::panic::catch_unwind(AssertUnwindSafe(|| handler(event_loop, &ctx)));
                if let Err(payload) = outcome {
                    default_exception_handler(
                        &ExceptionContext::new("Unhandled error in exception handler")
                            .with_panic(payload),
                    );
                    default_exception_handler(&ctx);
                }
            }
            _ => default_exception_handler(&ctx),
        }
    }

    /// Reports a panic whose payload nobody will read.
    pub(crate) fn report_panic(&self, ctx: ExceptionContext, payload: PanicPayload) {
        self.call_exception_handler(ctx.with_panic(payload));
    }
}

impl Schedule for Shared {
    fn id(&self) -> LoopId {
        Shared::id(self)
    }

    #[inline]
    fn schedule(&self, r: Runnable) -> Result<(), Runnable> {
        Shared::schedule(self, r)
    }

    fn call_soon(
        &self,
        location: &'static Location<'static>,
        f: Box<dyn FnOnce() + Send>,
    ) -> Result<(), Error> {
        self.schedule_callback(None, location, f).map(drop)
    }

    fn call_exception_handler(&self, ctx: ExceptionContext) {
        Shared::call_exception_handler(self, ctx)
    }

    fn timer_cancelled_remotely(&self) {
        let n = self.remote_timer_cancels.fetch_add(1, Ordering::SeqCst) + 1;
        let timers = self.counters.timers.load(Ordering::SeqCst);
        // Wake the loop once when the cancellations it has not seen yet
        // come to dominate its timer queue, so that it purges them even if
        // its next deadline is far away. "Once" is a flag the loop clears
        // when it absorbs the count, not the moment of crossing: a count
        // compared with a size that a purge just shrank must still wake.
        // A loop about to park checks the count itself
        // (`Core::purge_pending`); SeqCst on the count and the size makes
        // sure one side sees the other.
        if timers > MIN_PURGE_WAKE
            && n * 2 > timers
            && !self.purge_wake_sent.load(Ordering::Relaxed)
            && !self.purge_wake_sent.swap(true, Ordering::AcqRel)
            && self.remote().signal()
        {
            self.wake();
        }
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }
}
