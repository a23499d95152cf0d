//! Executing code in thread pools (asyncio's "Executing code in thread or
//! process pools"): the [`Executor`] trait, the work-stealing
//! [`ThreadPoolExecutor`], and the loop's `run_in_executor`.

pub(crate) mod gate;
mod pool;
pub(crate) mod sleepers;

pub use pool::{ThreadPoolBuilder, ThreadPoolExecutor, default_max_workers};

use crate::concurrent::ConcurrentFuture;
use crate::error::{Error, TaskError};
use crate::event_loop::EventLoop;
use crate::future::LoopFuture;
use crate::services::LoopService;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A unit of work for an [`Executor`].
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Something that runs jobs on other threads (Python's
/// `concurrent.futures.Executor`). Implement it to plug a pool of your own
/// into [`EventLoop::run_in_executor`] or
/// [`EventLoop::set_default_executor`].
///
/// ```
/// use evloop::{Error, EventLoop, Executor, Job};
/// use std::sync::Mutex;
/// use std::sync::atomic::{AtomicBool, Ordering};
///
/// /// Runs every job on a fresh thread.
/// #[derive(Default)]
/// struct ThreadPerJob {
///     shut: AtomicBool,
///     threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
/// }
///
/// impl Executor for ThreadPerJob {
///     fn execute(&self, job: Job) -> Result<(), Error> {
///         if self.shut.load(Ordering::SeqCst) {
///             return Err(Error::ExecutorShutdown);
///         }
///         self.threads.lock().unwrap().push(std::thread::spawn(job));
///         Ok(())
///     }
///     fn shutdown(&self, wait: bool) {
///         self.shut.store(true, Ordering::SeqCst);
///         if wait {
///             for t in self.threads.lock().unwrap().drain(..) {
///                 t.join().unwrap();
///             }
///         }
///     }
/// }
///
/// let lp = EventLoop::new()?;
/// let executor = ThreadPerJob::default();
/// let fut = lp.run_in_executor(Some(&executor), || 40 + 2)?;
/// assert_eq!(lp.run_until_complete(fut)?.unwrap(), 42);
/// executor.shutdown(true);
/// # Ok::<(), evloop::Error>(())
/// ```
pub trait Executor: Send + Sync {
    /// Queues `job` to run once. Error: [`Error::ExecutorShutdown`] after
    /// [`Executor::shutdown`].
    fn execute(&self, job: Job) -> Result<(), Error>;

    /// Stops accepting jobs; with `wait`, blocks until every accepted job
    /// has run and the executor's threads have exited.
    fn shutdown(&self, wait: bool);
}

impl dyn Executor {
    /// Runs `f` on the executor; see [`ThreadPoolExecutor::submit`].
    pub fn submit<F, T>(&self, f: F) -> Result<ConcurrentFuture<T>, Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        submit_to(self, f)
    }
}

pub(crate) fn submit_to<E, F, T>(executor: &E, f: F) -> Result<ConcurrentFuture<T>, Error>
where
    E: Executor + ?Sized,
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let fut = ConcurrentFuture::new();
    let guard = FailIfDropped::new(fut.clone(), |fut: ConcurrentFuture<T>, e| {
        fut.complete(Err(e));
    });
    executor.execute(Box::new(move || {
        if let Some(fut) = guard.disarm() {
            pool::run_submitted(&fut, f);
        }
    }))?;
    Ok(fut)
}

/// Completes a job's future with an error if the job is dropped without
/// having run (an executor that cannot start a thread drops what it
/// queued), so that nobody waits for it forever.
struct FailIfDropped<F> {
    fut: Option<F>,
    fail: fn(F, TaskError),
}

impl<F> FailIfDropped<F> {
    fn new(fut: F, fail: fn(F, TaskError)) -> Self {
        FailIfDropped {
            fut: Some(fut),
            fail,
        }
    }

    /// The job runs: hands the future over.
    fn disarm(mut self) -> Option<F> {
        self.fut.take()
    }
}

impl<F> Drop for FailIfDropped<F> {
    fn drop(&mut self) {
        if let Some(fut) = self.fut.take() {
            let error = Error::ThreadSpawn(std::io::Error::other(
                "the executor could not start a worker thread and dropped the job",
            ));
            (self.fail)(fut, TaskError::Exception(Arc::new(error)));
        }
    }
}

/// The loop's default executor, created on first use.
#[derive(Default)]
struct DefaultExecutorSlot {
    inner: Mutex<DefaultExecutor>,
}

#[derive(Default)]
struct DefaultExecutor {
    executor: Option<Arc<dyn Executor>>,
    /// `shutdown_default_executor` (or `close`) was called.
    shut_down: bool,
}

impl DefaultExecutorSlot {
    fn get_or_create(&self) -> Result<Arc<dyn Executor>, Error> {
        let mut slot = crate::sync::lock(&self.inner);
        if slot.shut_down {
            return Err(Error::DefaultExecutorShutdown);
        }
        Ok(slot
            .executor
            .get_or_insert_with(|| Arc::new(ThreadPoolExecutor::new()))
            .clone())
    }

    fn set(&self, executor: Arc<dyn Executor>) {
        let previous = crate::sync::lock(&self.inner).executor.replace(executor);
        drop(previous);
    }

    fn take_for_shutdown(&self) -> Option<Arc<dyn Executor>> {
        let mut slot = crate::sync::lock(&self.inner);
        slot.shut_down = true;
        slot.executor.take()
    }
}

impl LoopService for DefaultExecutorSlot {
    /// `close()` shuts the default executor down without waiting.
    fn close(&self) {
        if let Some(executor) = self.take_for_shutdown() {
            executor.shutdown(false);
        }
    }
}

impl EventLoop {
    /// The loop's default-executor slot. Error: [`Error::Closed`].
    fn default_executor(&self) -> Result<Arc<DefaultExecutorSlot>, Error> {
        self.inner
            .services
            .get_or_insert_with(DefaultExecutorSlot::default)
    }

    /// Runs `f` in `executor` (the loop's default executor if `None`) and
    /// returns a future of this loop for its result (asyncio:
    /// `loop.run_in_executor`). The result comes back through the loop's
    /// cross-thread path; a panic in `f` becomes [`TaskError::Panicked`].
    /// Cancelling the future before a worker picks the job up means `f`
    /// never runs.
    ///
    /// The default executor is a [`ThreadPoolExecutor`] of asyncio's size,
    /// `min(32, cpus + 4)`, created on first use. Errors: [`Error::Closed`];
    /// [`Error::DefaultExecutorShutdown`] after `shutdown_default_executor`
    /// (asyncio: "Executor shutdown has been called");
    /// [`Error::ExecutorShutdown`] after the given executor was shut down;
    /// [`Error::ThreadSpawn`] if the pool could not start a thread.
    pub fn run_in_executor<F, T>(
        &self,
        executor: Option<&dyn Executor>,
        f: F,
    ) -> Result<LoopFuture<T>, Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let fut = self.create_future::<T>();
        let guard = FailIfDropped::new(fut.clone(), |fut: LoopFuture<T>, e| {
            let _ = fut.complete(Err(e));
        });
        let job: Job = Box::new(move || {
            let Some(job_fut) = guard.disarm() else {
                return;
            };
            if job_fut.done() {
                return; // cancelled before it started
            }
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(f));
            // Fails only if the future was cancelled meanwhile, or its
            // loop closed; the result then has nobody to go to.
            let _ = job_fut.complete(outcome.map_err(TaskError::Panicked));
        });
        match executor {
            Some(executor) => executor.execute(job)?,
            None => self.default_executor()?.get_or_create()?.execute(job)?,
        }
        Ok(fut)
    }

    /// Replaces the default executor used by `run_in_executor(None, ..)`
    /// (asyncio: `loop.set_default_executor`). On a closed loop it is
    /// not kept (nothing would use it).
    pub fn set_default_executor(&self, executor: Arc<dyn Executor>) {
        if let Ok(slot) = self.default_executor() {
            slot.set(executor);
        }
    }

    /// Shuts the default executor down and waits for its jobs and threads
    /// (asyncio: `loop.shutdown_default_executor(timeout)`); await it on
    /// the loop. Afterwards `run_in_executor(None, ..)` fails. If `timeout`
    /// passes first, a warning is logged through `tracing` and the result
    /// is [`Error::Timeout`] (the executor finishes in the background).
    pub fn shutdown_default_executor(
        &self,
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'static {
        // A closed loop shut its default executor down already.
        let executor = self
            .default_executor()
            .ok()
            .and_then(|slot| slot.take_for_shutdown());
        let event_loop = self.clone();
        async move {
            let Some(executor) = executor else {
                return Ok(());
            };
            let joined = event_loop.create_future::<()>();
            let done = joined.clone();
            let spawned = std::thread::Builder::new()
                .name("evloop-executor-shutdown".into())
                .spawn(move || {
                    executor.shutdown(true);
                    let _ = done.set_result(());
                });
            if let Err(e) = spawned {
                return Err(Error::Io(e));
            }
            let waited = match timeout {
                Some(t) => crate::runners::wait_for(joined, t).await,
                None => Ok(joined.await),
            };
            match waited {
                Ok(_) => Ok(()),
                Err(Error::Timeout) => {
                    tracing::warn!(
                        target: "evloop",
                        "The executor did not finish joining its threads within {:?}.",
                        timeout.unwrap_or_default()
                    );
                    Err(Error::Timeout)
                }
                Err(e) => Err(e),
            }
        }
    }
}
