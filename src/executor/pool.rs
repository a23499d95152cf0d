//! [`ThreadPoolExecutor`]: a work-stealing thread pool on crossbeam-deque.
//!
//! Submissions from outside the pool go to a global `Injector`; a job that
//! submits more jobs pushes them onto its worker's own deque, and idle
//! workers steal from the injector and from each other. Workers start on
//! demand up to `max_workers`, park when idle (see `sleepers`), and exit
//! after `keep_alive` without work.

use super::gate::Gate;
use super::sleepers::{Notify, Park, Sleepers};
use super::{Executor, Job};
use crate::concurrent::ConcurrentFuture;
use crate::error::{Error, TaskError};
use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use std::cell::Cell;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

struct Pool {
    injector: Injector<Job>,
    /// One deque per worker slot, created up front so that stealing needs
    /// no lock; a starting worker takes a free slot's deque.
    deques: Vec<Mutex<Option<Worker<Job>>>>,
    stealers: Vec<Stealer<Job>>,
    sleepers: Sleepers,
    /// Submissions are refused once this closes.
    accepting: Gate,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// `ThreadPoolExecutor` handles alive; the last one shuts the pool down.
    handles: AtomicUsize,
    max_workers: usize,
    name_prefix: String,
    stack_size: Option<usize>,
    keep_alive: Duration,
    next_thread: AtomicUsize,
    /// The bound on jobs accepted and not started, if any.
    max_queued: Option<usize>,
    /// Jobs accepted and not started (counted only under a bound).
    queued: AtomicUsize,
    /// How long an idle worker searches before parking.
    search: SearchWindow,
}

/// The adaptive search window of idle workers (see `Pool::search`).
struct SearchWindow {
    ns: AtomicUsize,
    /// Parks since the window fell to zero; a probe search every
    /// `PROBE` of them.
    since_probe: AtomicUsize,
}

impl SearchWindow {
    const MAX_NS: usize = 50_000;
    const MIN_NS: usize = 2_000;
    const PROBE: usize = 64;

    fn new() -> SearchWindow {
        SearchWindow {
            ns: AtomicUsize::new(Self::MAX_NS / 2),
            since_probe: AtomicUsize::new(0),
        }
    }

    fn window(&self) -> Duration {
        let ns = self.ns.load(Ordering::Relaxed);
        if ns > 0 {
            return Duration::from_nanos(ns as u64);
        }
        if self.since_probe.fetch_add(1, Ordering::Relaxed) + 1 >= Self::PROBE {
            self.since_probe.store(0, Ordering::Relaxed);
            return Duration::from_nanos(Self::MIN_NS as u64);
        }
        Duration::ZERO
    }

    fn record(&self, found: bool) {
        let ns = self.ns.load(Ordering::Relaxed);
        let next = if found {
            (ns * 2).clamp(Self::MIN_NS, Self::MAX_NS)
        } else if ns / 2 < Self::MIN_NS {
            0
        } else {
            ns / 2
        };
        self.ns.store(next, Ordering::Relaxed);
    }
}

thread_local! {
    /// The pool and deque of the worker running on this thread.
    static CURRENT: Cell<(*const Pool, *const Worker<Job>)> =
        const { Cell::new((std::ptr::null(), std::ptr::null())) };
}

/// Builds a [`ThreadPoolExecutor`].
///
/// ```
/// use evloop::ThreadPoolExecutor;
/// use std::time::Duration;
///
/// let pool = ThreadPoolExecutor::builder()
///     .max_workers(4)
///     .thread_name_prefix("hashers")
///     .stack_size(512 * 1024)
///     .keep_alive(Duration::from_secs(5))
///     .build();
/// let name = pool.submit(|| std::thread::current().name().map(String::from))?;
/// assert!(name.result(None).unwrap().unwrap().starts_with("hashers"));
/// assert_eq!(pool.max_workers(), 4);
/// pool.shutdown(true);
/// # Ok::<(), evloop::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ThreadPoolBuilder {
    max_workers: usize,
    name_prefix: String,
    stack_size: Option<usize>,
    keep_alive: Duration,
    max_queued: Option<usize>,
}

impl Default for ThreadPoolBuilder {
    fn default() -> Self {
        ThreadPoolBuilder {
            max_workers: default_max_workers(),
            name_prefix: "evloop-executor".to_string(),
            stack_size: None,
            keep_alive: Duration::from_secs(10),
            max_queued: None,
        }
    }
}

/// asyncio's default pool size: `min(32, cpu_count + 4)`.
pub fn default_max_workers() -> usize {
    (num_cpus::get() + 4).min(32)
}

impl ThreadPoolBuilder {
    /// The most worker threads the pool runs at once (at least 1; default
    /// `min(32, cpus + 4)`).
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = n.max(1);
        self
    }

    /// Worker threads are named `<prefix>-<n>` (default `evloop-executor`).
    pub fn thread_name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.name_prefix = prefix.into();
        self
    }

    /// Stack size of worker threads (default: the platform's).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// How long an idle worker waits for work before it exits (default
    /// 10 s).
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// Bounds the jobs accepted but not yet started (default: unbounded,
    /// as Python's pool). A submission beyond the bound is refused with
    /// [`Error::QueueFull`] and not run, so a service can shed load or
    /// retry instead of queueing without limit. Counting costs two atomic
    /// operations per job, paid only when a bound is set.
    pub fn max_queued(mut self, n: usize) -> Self {
        self.max_queued = Some(n);
        self
    }

    /// Creates the pool. No thread starts until the first submission.
    pub fn build(self) -> ThreadPoolExecutor {
        let n = self.max_workers;
        let deques: Vec<Worker<Job>> = (0..n).map(|_| Worker::new_fifo()).collect();
        let stealers = deques.iter().map(Worker::stealer).collect();
        ThreadPoolExecutor {
            pool: Arc::new(Pool {
                injector: Injector::new(),
                deques: deques.into_iter().map(|d| Mutex::new(Some(d))).collect(),
                stealers,
                sleepers: Sleepers::new(),
                accepting: Gate::new(),
                threads: Mutex::new(Vec::new()),
                handles: AtomicUsize::new(1),
                max_workers: n,
                name_prefix: self.name_prefix,
                stack_size: self.stack_size,
                keep_alive: self.keep_alive,
                next_thread: AtomicUsize::new(0),
                max_queued: self.max_queued,
                queued: AtomicUsize::new(0),
                search: SearchWindow::new(),
            }),
        }
    }
}

/// A pool of worker threads for blocking and CPU-bound work (Python's
/// `concurrent.futures.ThreadPoolExecutor`), usable with or without a loop.
///
/// ```
/// use evloop::ThreadPoolExecutor;
///
/// let pool = ThreadPoolExecutor::builder().max_workers(2).build();
/// let fut = pool.submit(|| (1..=10u64).product::<u64>())?;
/// assert_eq!(fut.result(None).unwrap(), 3_628_800);
/// pool.shutdown(true);
/// # Ok::<(), evloop::Error>(())
/// ```
pub struct ThreadPoolExecutor {
    pool: Arc<Pool>,
}

impl Clone for ThreadPoolExecutor {
    fn clone(&self) -> Self {
        self.pool.handles.fetch_add(1, Ordering::Relaxed);
        ThreadPoolExecutor {
            pool: self.pool.clone(),
        }
    }
}

impl Drop for ThreadPoolExecutor {
    fn drop(&mut self) {
        if self.pool.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Like Python's executor when it is garbage-collected: queued
            // jobs still run, then the workers exit; nobody waits.
            self.pool.shutdown(false, None);
        }
    }
}

impl Default for ThreadPoolExecutor {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ThreadPoolExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPoolExecutor")
            .field("max_workers", &self.pool.max_workers)
            .field("workers", &self.pool.sleepers.live())
            .field("idle", &self.pool.sleepers.idle())
            .finish()
    }
}

impl ThreadPoolExecutor {
    /// A pool with the default settings (see [`ThreadPoolBuilder`]).
    pub fn new() -> ThreadPoolExecutor {
        ThreadPoolBuilder::default().build()
    }

    /// Configures a pool.
    pub fn builder() -> ThreadPoolBuilder {
        ThreadPoolBuilder::default()
    }

    /// Runs `f` on a worker and returns its eventual result, which a thread
    /// can block on and a task can await. A panic in `f` is returned as
    /// [`TaskError::Panicked`]; the worker survives. If the returned future
    /// is cancelled before a worker picks the job up, `f` never runs.
    /// Error: [`Error::ExecutorShutdown`].
    pub fn submit<F, T>(&self, f: F) -> Result<ConcurrentFuture<T>, Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        super::submit_to(self, f)
    }

    /// Stops accepting jobs (asyncio wording for the refusal: "cannot
    /// schedule new futures after shutdown"). Jobs already accepted still
    /// run. With `wait`, blocks until they have all run and every worker
    /// has exited and been joined. Idempotent.
    pub fn shutdown(&self, wait: bool) {
        self.pool.shutdown(wait, None);
    }

    /// [`ThreadPoolExecutor::shutdown`] with `wait`, giving up after
    /// `timeout` with [`Error::Timeout`] (the workers go on and exit once
    /// the queue is empty).
    pub fn shutdown_timeout(&self, timeout: Duration) -> Result<(), Error> {
        if self.pool.shutdown(true, Some(timeout)) {
            Ok(())
        } else {
            Err(Error::Timeout)
        }
    }

    /// The pool's size limit.
    pub fn max_workers(&self) -> usize {
        self.pool.max_workers
    }

    /// Worker threads currently alive.
    pub fn workers(&self) -> usize {
        self.pool.sleepers.live()
    }

    /// Workers currently parked (or about to park) waiting for work.
    pub fn idle_workers(&self) -> usize {
        self.pool.sleepers.idle()
    }

    /// Workers blocked waiting to be handed work (a subset of
    /// [`idle_workers`](ThreadPoolExecutor::idle_workers): those past
    /// their last look at the queues).
    pub fn sleeping_workers(&self) -> usize {
        self.pool.sleepers.sleeping()
    }

    /// Jobs accepted and not yet started; counted only when the pool was
    /// built with [`ThreadPoolBuilder::max_queued`] (`None` otherwise).
    pub fn queued(&self) -> Option<usize> {
        self.pool.queued()
    }

    /// How many times a parked worker has woken up (for a job, for
    /// shutdown, or at the end of its keep-alive). A submission wakes at
    /// most one parked worker, so this grows by at most one per job.
    pub fn wakeups(&self) -> usize {
        self.pool.sleepers.wakeups()
    }
}

impl Executor for ThreadPoolExecutor {
    fn execute(&self, job: Job) -> Result<(), Error> {
        self.pool.execute(job)
    }

    fn shutdown(&self, wait: bool) {
        ThreadPoolExecutor::shutdown(self, wait)
    }
}

/// What [`Pool::search`] did.
enum Search {
    /// Another worker searches (or searching does not pay now).
    Skipped,
    /// Searched, and work turned up.
    Found,
    /// Searched in vain.
    Nothing,
}

impl Pool {
    fn execute(self: &Arc<Self>, job: Job) -> Result<(), Error> {
        let Some(pass) = self.accepting.enter() else {
            return Err(Error::ExecutorShutdown);
        };
        if let Some(max) = self.max_queued {
            if self.queued.fetch_add(1, Ordering::Relaxed) >= max {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                return Err(Error::QueueFull);
            }
        }
        let me = Arc::as_ptr(self);
        let (pool, local) = CURRENT.with(|c| c.get());
        if pool == me {
            // Safety: the deque belongs to the worker running this thread,
            // which outlives the job that is submitting.
            unsafe { (*local).push(job) };
        } else {
            self.injector.push(job);
        }
        let notified = self.sleepers.notify(self.max_workers);
        drop(pass);
        // A loop submitting this expects the result back: if a worker was
        // awake to take it, that may be soon enough to wait for spinning.
        crate::sched::note_request(notified != Notify::Done);
        let spawn = notified == Notify::Spawn;
        if spawn {
            if let Err(e) = self.spawn_worker() {
                if self.sleepers.live() == 0 {
                    // Nobody will ever run what is queued: fail it rather
                    // than strand it. Jobs of `submit` and `run_in_executor`
                    // complete their futures with an error when dropped
                    // unrun; this submission gets the OS error. The next
                    // submission tries to start a worker again.
                    self.abandon_queued();
                    return Err(Error::ThreadSpawn(e));
                }
            }
        }
        Ok(())
    }

    /// Drops every job in the global queue (no worker is alive to run
    /// them).
    fn abandon_queued(&self) {
        let mut dropped = 0;
        loop {
            match self.injector.steal() {
                Steal::Success(job) => {
                    dropped += 1;
                    crate::util::drop_quietly(job, "an abandoned executor job");
                }
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
        if self.max_queued.is_some() {
            self.queued.fetch_sub(dropped, Ordering::Relaxed);
        }
    }

    fn spawn_worker(self: &Arc<Self>) -> std::io::Result<()> {
        let n = self.next_thread.fetch_add(1, Ordering::Relaxed);
        let mut builder = std::thread::Builder::new().name(format!("{}-{n}", self.name_prefix));
        if let Some(size) = self.stack_size {
            builder = builder.stack_size(size);
        }
        let pool = self.clone();
        match builder.spawn(move || pool.work()) {
            Ok(handle) => {
                let finished = {
                    let mut threads = crate::sync::lock(&self.threads);
                    let (finished, running) = std::mem::take(&mut *threads)
                        .into_iter()
                        .partition::<Vec<_>, _>(|t| t.is_finished());
                    *threads = running;
                    threads.push(handle);
                    finished
                };
                drop(finished);
                Ok(())
            }
            Err(e) => {
                crate::util::log_error(format_args!("could not start an executor thread: {e}"));
                // `notify` counted it as live; it never will be.
                self.sleepers.exit();
                Err(e)
            }
        }
    }

    /// Takes a free deque slot (one exists: live workers never exceed the
    /// number of slots).
    fn take_deque(&self) -> (usize, Worker<Job>) {
        loop {
            for (i, slot) in self.deques.iter().enumerate() {
                if let Some(d) = crate::sync::lock(slot).take() {
                    return (i, d);
                }
            }
            // A retiring worker is returning its slot.
            std::thread::yield_now();
        }
    }

    fn find_job(&self, local: &Worker<Job>, me: usize) -> Option<Job> {
        if let Some(job) = local.pop() {
            return Some(job);
        }
        loop {
            let mut retry = false;
            match self.injector.steal_batch_and_pop(local) {
                Steal::Success(job) => return Some(job),
                Steal::Retry => retry = true,
                Steal::Empty => {}
            }
            let n = self.stealers.len();
            for k in 1..n {
                match self.stealers[(me + k) % n].steal_batch_and_pop(local) {
                    Steal::Success(job) => return Some(job),
                    Steal::Retry => retry = true,
                    Steal::Empty => {}
                }
            }
            if !retry {
                return None;
            }
        }
    }

    fn has_work(&self) -> bool {
        !self.injector.is_empty() || self.stealers.iter().any(|s| !s.is_empty())
    }

    fn work(self: Arc<Self>) {
        let (slot, local) = self.take_deque();
        CURRENT.with(|c| c.set((Arc::as_ptr(&self), &local)));
        // Set when this worker was the pool's searcher: submitters that saw
        // it searching woke nobody, so the first job it takes afterwards
        // (however it finds it) comes with a look at what is left, and a
        // sibling is woken for that (the job taken may run for long).
        let mut searched = false;
        let exit = loop {
            while let Some(job) = self.find_job(&local, slot) {
                if std::mem::take(&mut searched) && self.has_work() {
                    self.wake_sibling();
                }
                self.run_job(job);
            }
            match self.search() {
                Search::Found => {
                    searched = true;
                    continue;
                }
                Search::Nothing => searched = true,
                Search::Skipped => {}
            }
            match self.sleepers.park(|| self.has_work(), self.keep_alive) {
                Park::Work => continue,
                Park::Shutdown => {
                    while let Some(job) = self.find_job(&local, slot) {
                        self.run_job(job);
                    }
                    break true;
                }
                Park::Retire => break false,
            }
        };
        CURRENT.with(|c| c.set((std::ptr::null(), std::ptr::null())));
        debug_assert!(local.is_empty());
        *crate::sync::lock(&self.deques[slot]) = Some(local);
        if exit {
            self.sleepers.exit();
        }
    }

    /// Out of work: as the pool's one searcher (if no other worker is),
    /// watch the queues for a short while before parking, yielding the
    /// core between looks; a stream of short jobs is then served without
    /// a futex wake and a context switch per job, and submitters wake no
    /// one meanwhile. The window adapts: it grows while searches find
    /// work and shrinks to nothing while they don't, with a probe now and
    /// then. Says whether it searched, and whether work turned up.
    fn search(&self) -> Search {
        let window = self.search.window();
        if window.is_zero() || !self.sleepers.try_search() {
            return Search::Skipped;
        }
        let start = std::time::Instant::now();
        let found = loop {
            if self.has_work() {
                break true;
            }
            if start.elapsed() >= window {
                break false;
            }
            std::thread::yield_now();
        };
        self.sleepers.end_search();
        self.search.record(found);
        if found {
            Search::Found
        } else {
            Search::Nothing
        }
    }

    /// Wakes (or starts) one more worker for queued work.
    fn wake_sibling(self: &Arc<Self>) {
        if self.sleepers.notify(self.max_workers) == Notify::Spawn {
            // This worker is alive: a failure to start another (logged)
            // leaves the work to it, nothing is stranded.
            let _ = self.spawn_worker();
        }
    }

    fn run_job(&self, job: Job) {
        if self.max_queued.is_some() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
        }
        run_job(job);
    }

    /// Jobs accepted and not started, if the pool counts them.
    fn queued(&self) -> Option<usize> {
        self.max_queued.map(|_| self.queued.load(Ordering::Relaxed))
    }

    /// Returns whether every worker exited in time.
    fn shutdown(&self, wait: bool, timeout: Option<Duration>) -> bool {
        // Let submissions that passed the gate land in a queue first.
        self.accepting.close();
        self.sleepers.shutdown();
        if !wait {
            return true;
        }
        let on_worker = std::ptr::eq(CURRENT.with(|c| c.get().0), self);
        let remaining = usize::from(on_worker);
        if !self.sleepers.wait_live_at_most(remaining, timeout) {
            tracing::warn!(
                target: "evloop",
                "the executor did not finish joining its threads within {:?}",
                timeout.unwrap_or_default()
            );
            return false;
        }
        let me = std::thread::current().id();
        let threads: Vec<_> = std::mem::take(&mut *crate::sync::lock(&self.threads));
        for t in threads {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
        true
    }
}

fn run_job(job: Job) {
    if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(job)) {
        // `submit` catches panics itself; this is a raw `execute` job.
        crate::util::log_error(format_args!(
            "an executor job panicked: {}",
            crate::error::panic_message(&payload)
        ));
    }
}

/// Completes `fut` with the outcome of `f`, unless it was cancelled before
/// the job started.
pub(crate) fn run_submitted<F, T>(fut: &ConcurrentFuture<T>, f: F)
where
    F: FnOnce() -> T,
{
    if !fut.set_running_or_notify_cancel() {
        return;
    }
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(TaskError::Panicked);
    fut.complete(outcome);
}
