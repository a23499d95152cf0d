//! The loop's core: the state only the running thread touches, and one
//! iteration of the loop ([`Core::run_once`], asyncio's `_run_once`).
//!
//! Each field sits in a `RefCell` because callbacks run while the core is
//! in use and re-enter it (`call_soon` from a callback pushes onto `ready`).
//! The rule that keeps those borrows from colliding: no borrow is held while
//! user code runs, and that includes user destructors, which is why removed
//! timers and closed tasks are collected first and dropped afterwards.
//!
//! # Spinning before parking
//! An idle loop may watch its inbox for a short while before it sleeps in
//! the poller: a post that lands meanwhile costs the poster no eventfd
//! write and the loop no wake-up. That only pays when a post is coming
//! soon, so the window adapts ([`Spin`]): a loop spins only if work posted
//! from other threads ended one of its recent idle periods, and only if
//! the last post its own thread made found its target awake (so a reply
//! can come before a park would pay off); then it spins for about twice
//! the time posts have recently taken to arrive, capped by
//! [`EventLoop::set_spin_before_park`](crate::EventLoop::set_spin_before_park).
//! "Arrived" is when the post landed, not when a parked loop noticed it:
//! the poster that wakes the loop stamps the time. Under light traffic
//! the peer is asleep when the request goes out, so the loop parks:
//! spinning for a reply that first waits for a wake-up costs more CPU than
//! it saves. A loop woken only by timers or I/O never spins. While
//! spinning, registered I/O sources are checked with a zero-timeout poll,
//! and a due timer or a stop request ends the spin.
//!
//! A loop with no file descriptor to watch sleeps on a futex
//! (`std::thread::park`) rather than in `epoll_wait`, and is woken with a
//! futex wake rather than an eventfd write: cheaper on both sides, and
//! timers get nanosecond rather than millisecond timeouts.

use super::context::RunContext;
use super::shared::Shared;
use crate::exception::TaskInfo;
use crate::handle;
use crate::readiness::IoSet;
use crate::readiness::WAKER_TOKEN;
use crate::remote::Pop;
use crate::runnable::{Header, Kind, Runnable};
use crate::task::registry::TaskRegistry;
use crate::timers::TimerQueue;
use mio::{Events, Poll};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// At most this many callbacks and tasks posted from other threads join
/// the ready queue per iteration, so that under a flood of posts, timers,
/// I/O and `stop()` still get their turn every iteration. Timers posted
/// from other threads are not counted: they all reach the heap before due
/// timers run, so that they fire in deadline order.
const INBOX_BATCH: usize = 1024;
/// The most objects one drain takes out of the inbox, so that producers
/// posting faster than the loop can sort cannot keep it draining for
/// ever (a bound no burst reaches in practice; beyond it, the rest waits
/// for the next iteration).
const DRAIN_CAP: usize = 1 << 20;
/// Unprompted posts (a producer streaming work) expected sooner than this
/// are cheaper to wait for spinning than by parking and being woken.
const WORTH_SPINNING: Duration = Duration::from_micros(10);
/// A loop that would not spin probes with the full window once in this
/// many idle periods at first (see [`Spin::window`]); each probe that
/// finds nothing doubles the interval, up to [`PROBE_EVERY_MAX`].
const PROBE_EVERY: u32 = 16;
const PROBE_EVERY_MAX: u32 = 4096;
/// A busy loop refreshes the gauges other threads read (`stats()`) once in
/// this many iterations (and always before it sleeps).
const PUBLISH_EVERY: u64 = 32;

pub(crate) struct Core {
    ready: RefCell<VecDeque<Runnable>>,
    /// Callbacks and tasks taken out of the inbox beyond an iteration's
    /// budget, in arrival order: they join the ready queue first at the
    /// next iteration.
    posted: RefCell<VecDeque<Runnable>>,
    timers: RefCell<TimerQueue>,
    poll: RefCell<Option<Poll>>,
    events: RefCell<Events>,
    pub(crate) tasks: RefCell<TaskRegistry>,
    /// The readiness layer's registrations.
    pub(crate) io: RefCell<IoSet>,
    /// What plain protocols read into (allocated on first use).
    pub(crate) read_buffer: RefCell<Vec<u8>>,
    /// Watchers the last poll found ready, queued after the work posted
    /// from other threads (as asyncio's ready queue holds what was posted
    /// before I/O events are processed).
    io_ready: RefCell<Vec<Runnable>>,
    /// Registrations an I/O poll reported, between lookup and telling
    /// (kept to reuse its allocation).
    io_hits: RefCell<Vec<(std::sync::Arc<crate::readiness::ScheduledIo>, usize)>>,
    /// The queue entry being run in step 5 (for `current_task`).
    running: Cell<Option<Running>>,
    spin: Spin,
    iterations: Cell<u64>,
    parks: Cell<u64>,
    /// The last blocking poll was interrupted by a signal (for the idle hook).
    interrupted: Cell<bool>,
}

/// The header of the entry step 5 is running; only read while that run
/// goes on, so it always points at a live object.
#[derive(Clone, Copy)]
struct Running(NonNull<Header>);

// Safety: set and read only by the thread holding the core, and cleared
// before the core can move to another thread (at the end of step 5, also
// when a run unwinds).
unsafe impl Send for Running {}

/// What `Core::stats` reports (the loop thread's live view).
#[derive(Default)]
pub(crate) struct CoreStats {
    pub(crate) ready: usize,
    pub(crate) timers: usize,
    pub(crate) cancelled_timers: usize,
    pub(crate) tasks: usize,
    pub(crate) io_sources: usize,
    pub(crate) iterations: u64,
}

impl Core {
    pub(crate) fn new(poll: Poll) -> io::Result<Core> {
        let io = IoSet::new(poll.registry().try_clone()?);
        Ok(Core {
            ready: RefCell::new(VecDeque::with_capacity(256)),
            posted: RefCell::new(VecDeque::new()),
            timers: RefCell::new(TimerQueue::default()),
            poll: RefCell::new(Some(poll)),
            events: RefCell::new(Events::with_capacity(1024)),
            tasks: RefCell::new(TaskRegistry::default()),
            io: RefCell::new(io),
            read_buffer: RefCell::new(Vec::new()),
            io_ready: RefCell::new(Vec::new()),
            io_hits: RefCell::new(Vec::new()),
            running: Cell::new(None),
            spin: Spin::default(),
            iterations: Cell::new(0),
            parks: Cell::new(0),
            interrupted: Cell::new(false),
        })
    }

    /// Whether anything is registered with the poller (registrations of
    /// the readiness layer, `add_reader` / `add_writer` watchers).
    fn has_sources(&self, ctx: &RunContext) -> bool {
        !self.io.borrow().is_empty() || ctx.event_loop.inner.reactor.has_watchers()
    }

    /// Appends to the ready queue.
    #[inline]
    pub(crate) fn push(&self, r: Runnable) {
        self.ready.borrow_mut().push_back(r);
    }

    /// Queues a timer callback. A timer that arrives cancelled is kept
    /// aside and dropped at the next [`Core::drop_removed_timers`].
    pub(crate) fn insert_timer(&self, r: Runnable, when: Instant) {
        self.timers.borrow_mut().insert(r, when);
    }

    /// A queued timer was cancelled on the loop's thread (from user code,
    /// so its destructors may run here).
    pub(crate) fn note_timer_cancelled(&self) {
        self.timers.borrow_mut().add_cancelled(1);
        self.drop_removed_timers();
    }

    fn drop_removed_timers(&self) {
        let removed = self.timers.borrow_mut().take_removed();
        drop(removed);
    }

    /// Cancelled timers taken out of the queue, for a caller that must
    /// drop them outside a lock.
    pub(crate) fn take_garbage(&self) -> Vec<Runnable> {
        self.timers.borrow_mut().take_removed()
    }

    /// Counts the timers other threads cancelled since the last look.
    fn absorb_remote_cancels(&self, shared: &Shared) {
        if self.count_remote_cancels(shared) {
            self.drop_removed_timers();
        }
    }

    /// [`Core::absorb_remote_cancels`] leaving what a purge removed for
    /// [`Core::take_garbage`] (a caller holding a lock drops it after
    /// releasing the lock). Whether there was anything to count.
    pub(crate) fn count_remote_cancels(&self, shared: &Shared) -> bool {
        if shared.remote_timer_cancels.load(Ordering::Relaxed) != 0 {
            let n = shared.remote_timer_cancels.swap(0, Ordering::AcqRel);
            self.timers.borrow_mut().add_cancelled(n);
            // The queue may have shrunk (purged): cancellers compare their
            // count with its size, so they see the new size before the
            // loop next looks at their count (both SeqCst: either they see
            // this store, or the loop's check sees their increments).
            shared
                .counters
                .timers
                .store(self.timers.borrow().len(), Ordering::SeqCst);
            shared.purge_wake_sent.store(false, Ordering::Release);
            return true;
        }
        false
    }

    /// Whether timers cancelled on other threads now dominate the queue
    /// (their reports woke, or would wake, a parked loop to purge them).
    fn purge_pending(&self, shared: &Shared) -> bool {
        let remote = shared.remote_timer_cancels.load(Ordering::SeqCst);
        let timers = self.timers.borrow();
        remote > 0 && timers.would_purge_with(remote)
    }

    #[inline(never)]
    fn register_posted_task(&self, r: &Runnable) {
        crate::task::raw::register_in(&self.tasks, crate::task::raw::header_of(r));
    }

    /// Empties the inbox (up to [`DRAIN_CAP`] objects) in arrival order:
    /// timers into the heap, all of them; callbacks and tasks into the
    /// ready queue, at most `budget` of them counting those held back last
    /// time, the rest held back for the next iteration. Runs no user code:
    /// cancelled timers met on the way wait in the timer queue's garbage.
    #[inline(never)]
    pub(crate) fn drain_inbox(&self, shared: &Shared, budget: usize) {
        let mut budget = budget;
        {
            let mut posted = self.posted.borrow_mut();
            if !posted.is_empty() {
                let n = posted.len().min(budget);
                self.ready.borrow_mut().extend(posted.drain(..n));
                budget -= n;
            }
        }
        for _ in 0..DRAIN_CAP {
            // Safety: the holder of the core (the running loop, or `stats`
            // / `all_tasks` holding an idle loop's core under its slot
            // lock) is the inbox's only consumer.
            match unsafe { shared.remote().pop() } {
                Pop::Item(r) => {
                    if let Some(when) = handle::timer_deadline(&r) {
                        self.insert_timer(r, when);
                        continue;
                    }
                    // A task created on another thread: known to the
                    // registry from the moment the loop sees it
                    // (`all_tasks`, `close`).
                    if r.kind() == Kind::Task {
                        self.register_posted_task(&r);
                    }
                    let mut posted = self.posted.borrow_mut();
                    if budget > 0 && posted.is_empty() {
                        budget -= 1;
                        drop(posted);
                        self.push(r);
                    } else {
                        posted.push_back(r);
                    }
                }
                Pop::Empty => return,
                Pop::Busy => {
                    // A producer was preempted mid-push: let it run. The
                    // inbox is not empty, so the next iteration won't sleep.
                    std::thread::yield_now();
                    return;
                }
            }
        }
    }

    /// One iteration of the loop; see ARCHITECTURE.md, "One iteration".
    pub(crate) fn run_once(&self, ctx: &RunContext) {
        let shared = ctx.shared();

        // 1. How long may the poller block? (Cancelled timers at the top of
        // the queue are dropped first, as asyncio does every iteration.)
        self.absorb_remote_cancels(shared);
        let next_timer = if self.timers.borrow().len() > 0 {
            let next = self.timers.borrow_mut().next_deadline();
            self.drop_removed_timers();
            next
        } else {
            None
        };
        // The clock is read once before the poll (reused as the start of
        // an idle period) and once after it, for the timers.
        let mut now = None;
        let timeout = if !self.ready.borrow().is_empty()
            || !self.posted.borrow().is_empty()
            || shared.stopping.load(Ordering::Relaxed)
        {
            Some(Duration::ZERO)
        } else {
            next_timer.map(|when| when.saturating_duration_since(*now.insert(Instant::now())))
        };

        // 2. Poll for I/O (and sleep, if nothing is ready).
        self.poll_io(ctx, timeout, now);

        // 3. Work posted from other threads, in arrival order, at most a
        // batch of callbacks (checked inline: usually none); then the I/O
        // callbacks.
        // Safety: the running loop is the inbox's only consumer.
        if !unsafe { shared.remote().is_empty() } || !self.posted.borrow().is_empty() {
            self.drain_inbox(shared, INBOX_BATCH);
            self.drop_removed_timers();
        }
        if !self.io_ready.borrow().is_empty() {
            let mut io = self.io_ready.borrow_mut();
            self.ready.borrow_mut().extend(io.drain(..));
        }

        // 4. Timers that are due.
        if self.timers.borrow().len() > 0 {
            let now = Instant::now();
            let mut timers = self.timers.borrow_mut();
            timers.pop_due(now, &mut self.ready.borrow_mut());
            drop(timers);
            self.drop_removed_timers();
        }

        // 5. Run exactly what is ready now; what these schedule runs next time.
        let ntodo = self.ready.borrow().len();
        {
            /// Forgets the running entry when step 5 ends, also if a panic
            /// escapes it (from a foreign waker, say), so that
            /// `current_task` never reads a freed task.
            struct ClearRunning<'a>(&'a Cell<Option<Running>>);
            impl Drop for ClearRunning<'_> {
                fn drop(&mut self) {
                    self.0.set(None);
                }
            }
            let _clear = ClearRunning(&self.running);
            let slow = shared
                .debug
                .load(Ordering::Relaxed)
                .then(|| shared.slow_callback_duration());
            for _ in 0..ntodo {
                let Some(r) = self.ready.borrow_mut().pop_front() else {
                    break;
                };
                self.running.set(Some(Running(r.as_ptr())));
                match slow {
                    None => r.run(ctx),
                    Some(slow) => run_timed(r, ctx, slow),
                }
            }
        }
        let iterations = self.iterations.get() + 1;
        self.iterations.set(iterations);
        // The gauges for other threads: the iteration count at once, the
        // rest every few iterations while busy, and before each sleep
        // (`poll_io`), so that an idle loop's are exact.
        shared
            .counters
            .iterations
            .store(iterations, Ordering::Relaxed);
        if iterations % PUBLISH_EVERY == 0 {
            self.publish(shared);
        }
    }

    /// Step 2: sleep in the poller (after spinning, if that pays), or
    /// check it without blocking if sources are registered. `now`: the
    /// clock as step 1 read it, if it did.
    fn poll_io(&self, ctx: &RunContext, timeout: Option<Duration>, now: Option<Instant>) {
        match &ctx.idle_hook {
            // The hook wraps the spin and the sleep (an embedder releases
            // its lock around both) and learns whether a signal cut the
            // sleep short.
            Some(hook) if timeout != Some(Duration::ZERO) => hook(&mut || {
                self.interrupted.set(false);
                self.wait_or_poll(ctx, timeout, now, true);
                self.interrupted.replace(false)
            }),
            _ => self.wait_or_poll(ctx, timeout, now, false),
        }
    }

    /// `poll_io` itself. `poller_only`: sleep in the poller even without
    /// sources, where a signal interrupts the sleep (std's futex wait
    /// resumes after one).
    fn wait_or_poll(
        &self,
        ctx: &RunContext,
        timeout: Option<Duration>,
        now: Option<Instant>,
        poller_only: bool,
    ) {
        let shared = ctx.shared();
        let has_sources = self.has_sources(ctx);
        if timeout != Some(Duration::ZERO) {
            let idle_since = now.unwrap_or_else(Instant::now);
            let window = self.spin.window(shared.spin());
            let window = timeout.map_or(window, |t| t.min(window));
            if !window.is_zero() {
                match self.spin_for_work(ctx, window) {
                    Spun::Nothing => {}
                    found => {
                        // Only a post counts towards spinning again: I/O
                        // and stop requests are no reason to spin.
                        self.spin
                            .record(idle_since.elapsed(), found == Spun::Posted);
                        // The spin polled the sources if there are any.
                        return;
                    }
                }
            }
            self.publish(shared);
            // With no file descriptor to watch, sleep on a futex: a wake-up
            // is then a futex wake instead of an eventfd write plus a
            // return from `epoll_wait`. The mode is published before
            // PARKED (see `Shared::parked_on_futex`).
            let futex = !has_sources && !poller_only;
            shared.parked_on_futex.store(futex, Ordering::Relaxed);
            // Safety: the running loop is the inbox's only consumer.
            // A source registered from another thread after `has_sources`
            // was read (`add_reader`, which then nudges) is seen here, or
            // its nudge finds the loop PARKED: the pattern `stop()` uses.
            let may_sleep = unsafe {
                shared.remote().park_begin(|| {
                    shared.stopping.load(Ordering::Relaxed)
                        || self.purge_pending(shared)
                        || (futex && self.has_sources(ctx))
                })
            };
            if may_sleep {
                // Published before blocking (a store, no read-modify-write):
                // a post seen after this count rose is sure to find the
                // loop parked.
                self.parks.set(self.parks.get() + 1);
                shared
                    .counters
                    .parks
                    .store(self.parks.get(), Ordering::Relaxed);
                if futex {
                    match timeout {
                        Some(t) => std::thread::park_timeout(t),
                        None => std::thread::park(),
                    }
                } else {
                    self.poll_and_dispatch(ctx, timeout);
                }
                let posted = shared.remote().park_end();
                // The work arrived when the poster woke the loop; the time
                // the loop then took to wake is the kernel's, and spinning
                // would have saved it.
                let arrived = if posted {
                    let woken = Duration::from_nanos(shared.woken_at_ns.load(Ordering::Relaxed));
                    (shared.epoch + woken).saturating_duration_since(idle_since)
                } else {
                    idle_since.elapsed()
                };
                self.spin.record(arrived, posted);
                return;
            }
        }
        // asyncio polls with a zero timeout on every iteration; so does a
        // loop with registered sources (one that has none skips the call).
        if has_sources {
            self.poll_and_dispatch(ctx, Some(Duration::ZERO));
        }
    }

    /// Watches the inbox (and the registered sources, with a zero-timeout
    /// poll) for up to `window`; between checks the core is yielded to any
    /// other runnable thread. Says what ended the spin.
    fn spin_for_work(&self, ctx: &RunContext, window: Duration) -> Spun {
        let shared = ctx.shared();
        let has_sources = self.has_sources(ctx);
        let start = Instant::now();
        loop {
            // Safety: the running loop is the inbox's only consumer.
            if !unsafe { shared.remote().is_empty() } {
                return Spun::Posted;
            }
            if shared.stopping.load(Ordering::Relaxed)
                || (has_sources && self.poll_and_dispatch(ctx, Some(Duration::ZERO)))
            {
                return Spun::Other;
            }
            if start.elapsed() >= window {
                return Spun::Nothing;
            }
            std::thread::yield_now();
        }
    }

    /// Polls for I/O and queues the watchers that fired; returns whether
    /// any did.
    fn poll_and_dispatch(&self, ctx: &RunContext, timeout: Option<Duration>) -> bool {
        let mut events = self.events.borrow_mut();
        {
            let mut poll = self.poll.borrow_mut();
            let Some(poll) = poll.as_mut() else {
                return false;
            };
            if let Err(e) = poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    self.interrupted.set(true);
                } else {
                    crate::util::log_error(format_args!("polling for I/O failed: {e}"));
                }
                return false;
            }
        }
        if events.iter().all(|e| e.token() == WAKER_TOKEN) {
            return false;
        }
        let mut ready = self.io_ready.borrow_mut();
        let before = ready.len();
        ctx.event_loop.inner.reactor.dispatch(&events, &mut ready);
        // Registrations are looked up first and told after, outside the
        // set's borrow: telling wakes futures, and a waker may drop or
        // create a registration.
        let mut hits = self.io_hits.borrow_mut();
        {
            let io = self.io.borrow();
            hits.extend(
                events
                    .iter()
                    .filter(|e| crate::readiness::is_registration(e.token()))
                    .filter_map(|e| io.lookup(e)),
            );
        }
        let tasks_before = self.ready.borrow().len();
        for (io, bits) in hits.drain(..) {
            if let Some(r) = io.set_readiness(bits) {
                ready.push(r);
            }
        }
        // A woken future's task went straight to the ready queue: that is
        // work too (a spinning loop must stop for it).
        ready.len() > before || self.ready.borrow().len() > tasks_before
    }

    /// Refreshes the gauges other threads read through `EventLoop::stats`.
    pub(crate) fn publish(&self, shared: &Shared) {
        let c = &shared.counters;
        let s = self.stats();
        c.iterations.store(s.iterations, Ordering::Relaxed);
        c.ready.store(s.ready, Ordering::Relaxed);
        c.timers.store(s.timers, Ordering::Relaxed);
        c.cancelled_timers
            .store(s.cancelled_timers, Ordering::Relaxed);
        c.tasks.store(s.tasks, Ordering::Relaxed);
        c.io_sources.store(s.io_sources, Ordering::Relaxed);
    }

    /// The task whose step is running, if the entry being run is a task.
    pub(crate) fn current_task(&self) -> Option<TaskInfo> {
        self.running
            .get()
            .and_then(|r| crate::task::raw::info_of(r.0))
    }

    /// Every task of the loop that is not done, tasks posted from other
    /// threads and not yet started included (so the inbox is sorted in
    /// first; the caller holds the core and drops [`Core::take_garbage`]
    /// once it may run user code).
    pub(crate) fn all_tasks(&self, shared: &Shared) -> Vec<TaskInfo> {
        self.drain_inbox(shared, usize::MAX);
        self.tasks_of_loop()
            .into_iter()
            // Safety: each is held by the registry, a queue entry or the
            // run in progress, none of which can go meanwhile (no user
            // code runs here).
            .filter_map(|t| unsafe { crate::task::raw::info_if_pending(t) })
            .collect()
    }

    /// Requests cancellation of every task (the caller drained the inbox
    /// and holds the core); how many were not done.
    pub(crate) fn cancel_all_tasks(&self) -> usize {
        self.tasks_of_loop()
            .into_iter()
            // Safety: as in `all_tasks`; a cancel only queues a wake-up.
            .filter(|t| unsafe { crate::task::raw::cancel(*t) })
            .count()
    }

    /// The loop's tasks: those waiting (the registry's list), those queued
    /// (which a queue entry holds), and the one running, once each.
    fn tasks_of_loop(&self) -> Vec<NonNull<crate::task::raw::TaskHeader>> {
        let mut all: Vec<_> = self.tasks.borrow().iter().map(|t| t.ptr()).collect();
        all.extend(
            self.ready
                .borrow()
                .iter()
                .chain(self.posted.borrow().iter())
                .filter_map(crate::task::raw::task_of),
        );
        if let Some(running) = self.running.get() {
            // Safety: the running entry's header is live during its run.
            if unsafe { running.0.as_ref() }.vtable.kind == Kind::Task {
                all.push(running.0.cast());
            }
        }
        all.sort_unstable();
        all.dedup();
        all
    }

    pub(crate) fn stats(&self) -> CoreStats {
        let timers = self.timers.borrow();
        CoreStats {
            ready: self.ready.borrow().len() + self.posted.borrow().len(),
            timers: timers.len(),
            cancelled_timers: timers.cancelled(),
            tasks: self.tasks.borrow().live(),
            io_sources: self.io.borrow().len(),
            iterations: self.iterations.get(),
        }
    }

    /// Drops every pending callback, timer and task, then the poller.
    pub(crate) fn shutdown(self) {
        let mut ready: Vec<Runnable> = self.ready.borrow_mut().drain(..).collect();
        ready.extend(self.posted.borrow_mut().drain(..));
        ready.append(&mut self.io_ready.borrow_mut());
        let timers = self.timers.borrow_mut().drain();
        let tasks = self.tasks.borrow_mut().drain();
        // Close the transports (their protocols hear `connection_lost`),
        // then the tasks: their futures may own handles to callbacks and
        // timers dropped just after, and sources whose registrations go
        // with the poller.
        let taken = self.io.borrow_mut().take_all();
        // Safety: closing the loop, this thread holds its core.
        let handlers = unsafe { crate::readiness::shut_down_all(taken) };
        for mut handler in handlers {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler.loop_closed()))
                .is_err()
            {
                crate::util::log_error(format_args!("a transport panicked while closing"));
            }
            crate::util::drop_quietly(handler, "an I/O handler");
        }
        for task in tasks {
            task.close();
        }
        drop(ready);
        drop(timers);
        // Tasks closed above may have queued nothing (the loop is closed),
        // but their destructors may have left removed timers behind.
        self.drop_removed_timers();
        self.poll.borrow_mut().take();
    }
}

/// Runs `r`, logging it through `tracing::warn!` if it takes longer than
/// `slow` (debug mode; asyncio: "Executing <Handle> took 0.123 seconds").
fn run_timed(r: Runnable, ctx: &RunContext, slow: Duration) {
    let what = describe(&r);
    let start = Instant::now();
    r.run(ctx);
    let took = start.elapsed();
    if took >= slow {
        tracing::warn!(target: "evloop", "Executing {what} took {:.3} seconds", took.as_secs_f64());
    }
}

fn describe(r: &Runnable) -> String {
    match r.kind() {
        Kind::Callback => match handle::location_of(r) {
            Some(loc) => format!("<Handle scheduled at {loc}>"),
            None => "<Handle>".to_string(),
        },
        Kind::Task => crate::task::raw::describe(r),
        Kind::Watcher => crate::reactor::describe(r),
        Kind::Io => "<I/O handler>".to_string(),
        #[cfg(loom)]
        Kind::Test => "<test>".to_string(),
    }
}

/// What ended a spin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spun {
    /// Work posted from another thread.
    Posted,
    /// I/O, or a stop request.
    Other,
    /// The window passed.
    Nothing,
}

/// What ended recent idle periods of one kind.
#[derive(Default)]
struct History {
    /// Bit i: the i-th most recent such idle period ended with work posted
    /// from another thread.
    posted: Cell<u16>,
    /// How long such posts have recently taken to arrive, in ns: drops at
    /// once to a quicker sample, rises gradually.
    latency_ns: Cell<u64>,
}

impl History {
    fn latency(&self) -> Duration {
        Duration::from_nanos(self.latency_ns.get())
    }

    fn record(&self, arrived: Duration, posted: bool) {
        self.posted
            .set((self.posted.get() << 1) | u16::from(posted));
        if posted {
            let sample = u64::try_from(arrived.as_nanos()).unwrap_or(u64::MAX);
            let old = self.latency_ns.get();
            let new = if sample <= old || old == 0 {
                sample
            } else {
                old + (sample - old) / 4
            };
            self.latency_ns.set(new);
        }
    }
}

/// The adaptive spin-before-park policy (see the module docs). Loop
/// thread only.
#[derive(Default)]
struct Spin {
    /// Idle periods that follow a request this loop's thread made (a post
    /// to another loop, a job for the pool): replies.
    replies: History,
    /// Idle periods that follow none: unprompted work, such as a stream of
    /// posts from a producer thread.
    unprompted: History,
    /// Which history the current idle period belongs to.
    after_request: Cell<bool>,
    /// Idle periods since the last probe.
    since_probe: Cell<u32>,
    /// The current probe interval (0: not yet set, i.e. `PROBE_EVERY`).
    probe_every: Cell<u32>,
    /// The last idle period was a probe.
    probing: Cell<bool>,
}

impl Spin {
    /// How long to spin before parking, given the configured cap.
    ///
    /// Spinning pays only when the post that ends the idle period arrives
    /// sooner than a park and a wake-up cost. The first hint is what
    /// became of the last request this loop's thread made since it was
    /// last idle (a post to a loop, a job for the pool) whose reply it may
    /// be waiting for:
    /// - its server was awake: the reply can come at once, so spin for
    ///   about twice the time replies have recently taken (if that is
    ///   within the cap at all);
    /// - its server had to be woken: the reply waits for that wake-up too,
    ///   so park, as under light traffic — but now and then spin the full
    ///   cap: that is how two loops that start exchanging posts quickly
    ///   find each other awake (probes that find nobody grow rarer);
    /// - it made none: spin only if unprompted posts have lately been
    ///   arriving within [`WORTH_SPINNING`] (a producer streaming posts),
    ///   for about twice that.
    fn window(&self, cap: Duration) -> Duration {
        let last_request = crate::sched::take_last_request();
        self.after_request.set(last_request.is_some());
        if cap.is_zero() {
            return Duration::ZERO;
        }
        match last_request {
            Some(false) => {
                let latency = self.replies.latency();
                if self.replies.posted.get() == 0 || latency > cap {
                    return Duration::ZERO;
                }
                // The server is awake: probing found (or need not find) it.
                self.probing.set(false);
                self.probe_every.set(PROBE_EVERY);
                cap.min(latency * 2 + Duration::from_micros(1))
            }
            Some(true) => {
                let every = match self.probe_every.get() {
                    0 => PROBE_EVERY,
                    n => n,
                };
                if self.probing.replace(false) {
                    // The last probe did not leave the server awake: light
                    // traffic, probe less often.
                    self.probe_every.set((every * 2).min(PROBE_EVERY_MAX));
                }
                let since = self.since_probe.get() + 1;
                if since >= every {
                    self.since_probe.set(0);
                    self.probing.set(true);
                    cap
                } else {
                    self.since_probe.set(since);
                    Duration::ZERO
                }
            }
            None => {
                let latency = self.unprompted.latency();
                if self.unprompted.posted.get() == 0 || latency > WORTH_SPINNING {
                    return Duration::ZERO;
                }
                cap.min(latency * 2 + Duration::from_micros(1))
            }
        }
    }

    /// An idle period ended: by work from another thread (`posted`) that
    /// arrived `arrived` after the loop went idle, or otherwise.
    fn record(&self, arrived: Duration, posted: bool) {
        if self.after_request.get() {
            self.replies.record(arrived, posted);
        } else {
            self.unprompted.record(arrived, posted);
        }
    }
}
