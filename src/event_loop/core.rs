//! The loop's core: the state only the running thread touches, and one
//! iteration of the loop ([`Core::run_once`], asyncio's `_run_once`).
//!
//! Each field sits in a `RefCell` because callbacks run while the core is
//! in use and re-enter it (`call_soon` from a callback pushes onto `ready`).
//! The rule that keeps those borrows from colliding: no borrow is held while
//! user code runs, and that includes user destructors, which is why removed
//! timers and closed tasks are collected first and dropped afterwards.

use super::LoopInner;
use super::shared::Shared;
use crate::exception::TaskInfo;
use crate::handle;
use crate::reactor::WAKER_TOKEN;
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

/// While work is ready, the poller is still consulted at least this often
/// (in iterations) when file descriptors are watched, so I/O never starves.
const MAX_ITERATIONS_WITHOUT_POLL: u32 = 16;
/// An iteration that ran this many callbacks polls next time regardless:
/// one `epoll_wait` is cheap next to that much work.
const BUSY_ITERATION: usize = 64;

pub(crate) struct Core {
    ready: RefCell<VecDeque<Runnable>>,
    timers: RefCell<TimerQueue>,
    poll: RefCell<Option<Poll>>,
    events: RefCell<Events>,
    pub(crate) tasks: RefCell<TaskRegistry>,
    /// The queue entry being run in step 5 (for `current_task`).
    running: Cell<Option<Running>>,
    since_poll: Cell<u32>,
    last_ntodo: Cell<usize>,
    iterations: Cell<u64>,
}

/// The header of the entry step 5 is running; only read while that run
/// goes on, so it always points at a live object.
#[derive(Clone, Copy)]
struct Running(NonNull<Header>);

// Safety: set and read only by the thread holding the core, and cleared
// before the core can move to another thread (at the end of step 5).
unsafe impl Send for Running {}

/// What `Core::stats` reports (the loop thread's live view).
#[derive(Default)]
pub(crate) struct CoreStats {
    pub(crate) ready: usize,
    pub(crate) timers: usize,
    pub(crate) cancelled_timers: usize,
    pub(crate) tasks: usize,
    pub(crate) iterations: u64,
}

impl Core {
    pub(crate) fn new(poll: Poll, epoch: Instant) -> Core {
        Core {
            ready: RefCell::new(VecDeque::with_capacity(256)),
            timers: RefCell::new(TimerQueue::new(epoch)),
            poll: RefCell::new(Some(poll)),
            events: RefCell::new(Events::with_capacity(1024)),
            tasks: RefCell::new(TaskRegistry::default()),
            running: Cell::new(None),
            since_poll: Cell::new(0),
            last_ntodo: Cell::new(0),
            iterations: Cell::new(0),
        }
    }

    /// Appends to the ready queue.
    #[inline]
    pub(crate) fn push(&self, r: Runnable) {
        self.ready.borrow_mut().push_back(r);
    }

    /// Queues a timer callback.
    pub(crate) fn insert_timer(&self, r: Runnable, when: Instant) {
        self.timers.borrow_mut().insert(r, when);
        self.drop_removed_timers();
    }

    pub(crate) fn note_timer_cancelled(&self) {
        self.timers.borrow_mut().note_cancelled();
        self.drop_removed_timers();
    }

    fn drop_removed_timers(&self) {
        let removed = self.timers.borrow_mut().take_removed();
        drop(removed);
    }

    /// Files an object that arrived through the inbox.
    #[inline]
    fn route(&self, r: Runnable) {
        match handle::timer_deadline(&r) {
            Some(when) => self.insert_timer(r, when),
            None => {
                // A task created on another thread: known to the registry
                // from the moment the loop sees it (`all_tasks`, `close`).
                if r.kind() == Kind::Task {
                    self.register_posted_task(&r);
                }
                self.push(r)
            }
        }
    }

    #[inline(never)]
    fn register_posted_task(&self, r: &Runnable) {
        crate::task::register_in(self, crate::task::header_of(r));
    }

    /// Moves everything in the inbox to the ready queue (or the timers), in
    /// arrival order.
    #[inline(never)]
    pub(crate) fn drain_inbox(&self, shared: &Shared) {
        loop {
            // Safety: the holder of the core (the running loop, or `stats`
            // / `all_tasks` holding an idle loop's core under its slot
            // lock) is the inbox's only consumer.
            match unsafe { shared.remote.pop() } {
                Pop::Item(r) => self.route(r),
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

    /// One iteration of the loop; see DESIGN.md, "One iteration".
    pub(crate) fn run_once(&self, inner: &LoopInner) {
        let shared = &*inner.shared;

        // 1. How long may the poller block? (Cancelled timers at the top of
        // the queue are dropped first, as asyncio does every iteration.)
        let next_timer = if self.timers.borrow().len() > 0 {
            let next = self.timers.borrow_mut().next_deadline();
            self.drop_removed_timers();
            next
        } else {
            None
        };
        let timeout = if !self.ready.borrow().is_empty() || shared.stopping.load(Ordering::Relaxed)
        {
            Some(Duration::ZERO)
        } else {
            next_timer.map(|when| when.saturating_duration_since(Instant::now()))
        };

        // 2. Poll for I/O (and sleep, if nothing is ready).
        self.poll_io(inner, timeout);

        // 3. Work posted from other threads (checked inline: usually none).
        // Safety: the running loop is the inbox's only consumer.
        if !unsafe { shared.remote.is_empty() } {
            self.drain_inbox(shared);
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
        if shared.debug.load(Ordering::Relaxed) {
            let slow = shared.slow_callback_duration();
            for _ in 0..ntodo {
                let Some(r) = self.ready.borrow_mut().pop_front() else {
                    break;
                };
                self.running.set(Some(Running(r.as_ptr())));
                run_timed(r, slow);
            }
        } else {
            for _ in 0..ntodo {
                let Some(r) = self.ready.borrow_mut().pop_front() else {
                    break;
                };
                self.running.set(Some(Running(r.as_ptr())));
                r.run();
            }
        }
        self.running.set(None);
        self.last_ntodo.set(ntodo);
        self.iterations.set(self.iterations.get() + 1);
        self.publish(shared);
    }

    /// Step 2: sleep in the poller, or just check it, or skip it.
    fn poll_io(&self, inner: &LoopInner, timeout: Option<Duration>) {
        let shared = &*inner.shared;
        let mut timeout = timeout;
        if timeout != Some(Duration::ZERO) {
            if self.spin_for_work(shared, timeout) {
                timeout = Some(Duration::ZERO);
            } else {
                // Safety: the running loop is the inbox's only consumer.
                let may_sleep = unsafe {
                    shared
                        .remote
                        .park_begin(|| shared.stopping.load(Ordering::Relaxed))
                };
                if may_sleep {
                    self.poll_and_dispatch(inner, timeout);
                    shared.remote.park_end();
                    return;
                }
                timeout = Some(Duration::ZERO);
            }
        }
        debug_assert_eq!(timeout, Some(Duration::ZERO));
        if inner.reactor.has_watchers()
            && (self.since_poll.get() >= MAX_ITERATIONS_WITHOUT_POLL
                || self.last_ntodo.get() >= BUSY_ITERATION)
        {
            self.poll_and_dispatch(inner, timeout);
        } else {
            self.since_poll.set(self.since_poll.get() + 1);
        }
    }

    /// Before blocking, watch the inbox for up to the loop's spin time: a
    /// reply that arrives within it costs no eventfd write and no wake-up
    /// latency. Each check is followed by `sched_yield`, so a spinning loop
    /// hands its core to any other runnable thread (the pool worker that
    /// is computing its answer, say) and only burns it when the core would
    /// otherwise be idle. Returns whether work arrived.
    fn spin_for_work(&self, shared: &Shared, timeout: Option<Duration>) -> bool {
        let spin = shared.spin();
        if spin.is_zero() {
            return false;
        }
        let spin = timeout.map_or(spin, |t| t.min(spin));
        let start = Instant::now();
        loop {
            // Safety: the running loop is the inbox's only consumer.
            if !unsafe { shared.remote.is_empty() } || shared.stopping.load(Ordering::Relaxed) {
                return true;
            }
            if start.elapsed() >= spin {
                return false;
            }
            std::thread::yield_now();
        }
    }

    fn poll_and_dispatch(&self, inner: &LoopInner, timeout: Option<Duration>) {
        self.since_poll.set(0);
        let mut events = self.events.borrow_mut();
        {
            let mut poll = self.poll.borrow_mut();
            let Some(poll) = poll.as_mut() else { return };
            if let Err(e) = poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(target: "evloop", "polling for I/O failed: {e}");
                }
                return;
            }
        }
        if events.iter().all(|e| e.token() == WAKER_TOKEN) {
            return;
        }
        let mut woken = Vec::new();
        inner.reactor.dispatch(&events, &mut woken);
        drop(events);
        let mut ready = self.ready.borrow_mut();
        ready.extend(woken);
    }

    /// Refreshes the gauges other threads read through `EventLoop::stats`.
    fn publish(&self, shared: &Shared) {
        let c = &shared.counters;
        let s = self.stats();
        c.iterations.store(s.iterations, Ordering::Relaxed);
        c.ready.store(s.ready, Ordering::Relaxed);
        c.timers.store(s.timers, Ordering::Relaxed);
        c.cancelled_timers
            .store(s.cancelled_timers, Ordering::Relaxed);
        c.tasks.store(s.tasks, Ordering::Relaxed);
    }

    /// The task whose step is running, if the entry being run is a task.
    pub(crate) fn current_task(&self) -> Option<TaskInfo> {
        self.running.get().and_then(|r| crate::task::info_of(r.0))
    }

    /// Every task of the loop that is not done, tasks posted from other
    /// threads and not yet started included (so the inbox is sorted in
    /// first; the caller holds the core).
    pub(crate) fn all_tasks(&self, shared: &Shared) -> Vec<TaskInfo> {
        self.drain_inbox(shared);
        self.tasks
            .borrow()
            .iter()
            .filter_map(|t| t.info_if_pending())
            .collect()
    }

    pub(crate) fn stats(&self) -> CoreStats {
        let timers = self.timers.borrow();
        CoreStats {
            ready: self.ready.borrow().len(),
            timers: timers.len(),
            cancelled_timers: timers.cancelled(),
            tasks: self.tasks.borrow().len(),
            iterations: self.iterations.get(),
        }
    }

    /// Drops every pending callback, timer and task, then the poller.
    pub(crate) fn shutdown(self) {
        let ready: Vec<Runnable> = self.ready.borrow_mut().drain(..).collect();
        let timers = self.timers.borrow_mut().drain();
        let tasks = self.tasks.borrow_mut().drain();
        // Close the tasks first: their futures may own handles to callbacks
        // and timers dropped just after.
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
fn run_timed(r: Runnable, slow: Duration) {
    let what = describe(&r);
    let start = Instant::now();
    r.run();
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
        Kind::Task => crate::task::describe(r),
        Kind::Watcher => crate::reactor::describe(r),
        #[cfg(loom)]
        Kind::Test => "<test>".to_string(),
    }
}
