//! The thread pool and run_in_executor (issue 3).

mod common;

use common::{Log, capture_tracing, within};
use evloop::{Error, EventLoop, Executor, Job, TaskError, ThreadPoolExecutor};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "condition not reached within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn submit_without_a_loop_and_block_on_the_result() {
    let pool = ThreadPoolExecutor::builder().max_workers(3).build();
    assert_eq!(pool.workers(), 0, "workers start lazily");
    let futs: Vec<_> = (0..10u64)
        .map(|i| pool.submit(move || i * i).unwrap())
        .collect();
    let sum: u64 = futs.iter().map(|f| f.result(None).unwrap()).sum();
    assert_eq!(sum, (0..10u64).map(|i| i * i).sum());
    assert!(pool.workers() <= 3);
    pool.shutdown(true);
    assert_eq!(pool.workers(), 0);
}

#[test]
fn panicking_jobs_are_reported_and_the_pool_survives() {
    let pool = ThreadPoolExecutor::builder().max_workers(2).build();
    let futs: Vec<_> = (0..10_000)
        .map(|i| {
            pool.submit(move || -> u32 { panic!("job {i} failed") })
                .unwrap()
        })
        .collect();
    for (i, f) in futs.iter().enumerate() {
        match f.result(Some(Duration::from_secs(60))) {
            Err(TaskError::Panicked(p)) => {
                assert_eq!(evloop::panic_message(&p), format!("job {i} failed"))
            }
            other => panic!("{other:?}"),
        }
    }
    // Fully working afterwards, with both workers.
    let barrier = Arc::new(Barrier::new(2));
    let both: Vec<_> = (0..2)
        .map(|_| {
            let b = barrier.clone();
            pool.submit(move || b.wait().is_leader()).unwrap()
        })
        .collect();
    let leaders = both
        .iter()
        .filter(|f| f.result(Some(Duration::from_secs(10))).unwrap())
        .count();
    assert_eq!(leaders, 1);
    pool.shutdown(true);
}

#[test]
fn submission_after_shutdown_is_refused_with_asyncios_wording() {
    let pool = ThreadPoolExecutor::new();
    pool.shutdown(false);
    let err = pool.submit(|| 1).unwrap_err();
    assert!(matches!(err, Error::ExecutorShutdown));
    assert_eq!(
        err.to_string(),
        "cannot schedule new futures after shutdown"
    );
    pool.shutdown(true);
}

#[test]
fn shutdown_with_wait_runs_every_accepted_job_and_joins_workers() {
    let pool = ThreadPoolExecutor::builder().max_workers(2).build();
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..200 {
        let d = done.clone();
        pool.submit(move || {
            std::thread::sleep(Duration::from_micros(200));
            d.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    pool.shutdown(true);
    assert_eq!(done.load(Ordering::SeqCst), 200);
    assert_eq!(pool.workers(), 0);
}

#[test]
fn shutdown_without_wait_still_runs_queued_jobs() {
    // The documented choice: nothing accepted is dropped. The first job is
    // held until shutdown(false) has returned, so a shutdown that waited
    // would never return (and `within` would fail the test).
    within(Duration::from_secs(60), || {
        let pool = ThreadPoolExecutor::builder().max_workers(1).build();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let first = pool.submit(move || gate.recv().unwrap()).unwrap();
        let queued: Vec<_> = (0..50).map(|i| pool.submit(move || i).unwrap()).collect();
        pool.shutdown(false);
        assert!(matches!(pool.submit(|| 0), Err(Error::ExecutorShutdown)));
        release.send(()).unwrap();
        first.result(None).unwrap();
        for (i, f) in queued.iter().enumerate() {
            assert_eq!(f.result(None).unwrap(), i);
        }
        wait_until(Duration::from_secs(10), || pool.workers() == 0);
    });
}

#[test]
fn shutdown_timeout_gives_up() {
    let pool = ThreadPoolExecutor::builder().max_workers(1).build();
    pool.submit(|| std::thread::sleep(Duration::from_millis(300)))
        .unwrap();
    wait_until(Duration::from_secs(5), || pool.workers() == 1);
    let (r, logged) = capture_tracing(|| pool.shutdown_timeout(Duration::from_millis(20)));
    assert!(matches!(r, Err(Error::Timeout)));
    assert!(
        logged.contains("did not finish joining its threads"),
        "{logged}"
    );
    assert!(pool.shutdown_timeout(Duration::from_secs(10)).is_ok());
}

#[test]
fn cancelled_before_it_starts_means_it_never_runs() {
    let pool = ThreadPoolExecutor::builder().max_workers(1).build();
    let gate = Arc::new(Barrier::new(2));
    let g = gate.clone();
    let blocker = pool.submit(move || g.wait()).unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let victim = pool
        .submit(move || r.fetch_add(1, Ordering::SeqCst))
        .unwrap();
    assert!(victim.cancel());
    assert!(victim.cancelled());
    gate.wait();
    blocker.result(None).unwrap();
    pool.shutdown(true);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert!(matches!(victim.result(None), Err(TaskError::Cancelled(_))));
}

#[test]
fn a_running_job_cannot_be_cancelled() {
    let pool = ThreadPoolExecutor::builder().max_workers(1).build();
    let started = Arc::new(Barrier::new(2));
    let finish = Arc::new(Barrier::new(2));
    let (s, f) = (started.clone(), finish.clone());
    let job = pool
        .submit(move || {
            s.wait();
            f.wait();
            5
        })
        .unwrap();
    started.wait();
    assert!(job.running());
    assert!(!job.cancel());
    finish.wait();
    assert_eq!(job.result(None).unwrap(), 5);
    pool.shutdown(true);
}

#[test]
fn idle_workers_retire_after_keep_alive_and_come_back() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(2)
        .keep_alive(Duration::from_millis(30))
        .build();
    let futs: Vec<_> = (0..4).map(|i| pool.submit(move || i).unwrap()).collect();
    for f in &futs {
        f.result(None).unwrap();
    }
    // A worker is certainly alive while it runs this.
    let gate = Arc::new(Barrier::new(2));
    let g = gate.clone();
    let busy = pool.submit(move || g.wait()).unwrap();
    gate.wait();
    assert!(pool.workers() >= 1);
    busy.result(None).unwrap();
    wait_until(Duration::from_secs(10), || pool.workers() == 0);
    assert_eq!(pool.submit(|| 9).unwrap().result(None).unwrap(), 9);
    pool.shutdown(true);
}

#[test]
fn a_submission_wakes_one_idle_worker_not_all() {
    let pool = ThreadPoolExecutor::builder().max_workers(4).build();
    // Start four workers, then let them all go idle.
    let barrier = Arc::new(Barrier::new(4));
    let warm: Vec<_> = (0..4)
        .map(|_| {
            let b = barrier.clone();
            pool.submit(move || {
                b.wait();
            })
            .unwrap()
        })
        .collect();
    for f in &warm {
        f.result(None).unwrap();
    }
    // All four blocked in their condition-variable wait.
    wait_until(Duration::from_secs(10), || pool.sleeping_workers() == 4);
    let wakeups = pool.wakeups();
    let (started, release) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    let (s2, r2) = (started.clone(), release.clone());
    let job = pool
        .submit(move || {
            s2.wait();
            r2.wait();
        })
        .unwrap();
    started.wait();
    // One worker runs the job; the other three stay asleep (or went back
    // to sleep). Under a thundering herd all four would have woken; the
    // wake-up count tells them apart.
    wait_until(Duration::from_secs(10), || pool.sleeping_workers() == 3);
    assert!(
        pool.wakeups() - wakeups <= 1,
        "{} wake-ups for one job",
        pool.wakeups() - wakeups
    );
    release.wait();
    job.result(None).unwrap();
    assert_eq!(pool.workers(), 4);
    pool.shutdown(true);
}

#[test]
fn a_million_jobs_from_four_threads_each_run_exactly_once() {
    const PER_THREAD: usize = 250_000;
    within(Duration::from_secs(300), || {
        let pool = Arc::new(ThreadPoolExecutor::new());
        let slots: Arc<Vec<AtomicU8>> =
            Arc::new((0..4 * PER_THREAD).map(|_| AtomicU8::new(0)).collect());
        let submitters: Vec<_> = (0..4)
            .map(|t| {
                let (pool, slots) = (pool.clone(), slots.clone());
                std::thread::spawn(move || {
                    for i in 0..PER_THREAD {
                        let slots = slots.clone();
                        let job: Job = Box::new(move || {
                            slots[t * PER_THREAD + i].fetch_add(1, Ordering::Relaxed);
                        });
                        pool.execute(job).unwrap();
                    }
                })
            })
            .collect();
        for s in submitters {
            s.join().unwrap();
        }
        pool.shutdown(true);
        let wrong = slots
            .iter()
            .filter(|s| s.load(Ordering::Relaxed) != 1)
            .count();
        assert_eq!(wrong, 0, "{wrong} jobs did not run exactly once");
    });
}

fn tree(pool: ThreadPoolExecutor, depth: u32, leaves: Arc<AtomicUsize>) {
    if depth == 0 {
        leaves.fetch_add(1, Ordering::Relaxed);
        return;
    }
    for _ in 0..2 {
        let (p, l) = (pool.clone(), leaves.clone());
        pool.submit(move || tree(p, depth - 1, l)).unwrap();
    }
}

#[test]
fn a_tree_of_jobs_completes_with_two_workers() {
    within(Duration::from_secs(120), || {
        let pool = ThreadPoolExecutor::builder().max_workers(2).build();
        let leaves = Arc::new(AtomicUsize::new(0));
        let (p, l) = (pool.clone(), leaves.clone());
        pool.submit(move || tree(p, 16, l)).unwrap();
        wait_until(Duration::from_secs(100), || {
            leaves.load(Ordering::Relaxed) == 65_536
        });
        assert!(pool.workers() <= 2);
        pool.shutdown(true);
    });
}

#[test]
fn pool_futures_are_awaitable_from_tasks() {
    let pool = ThreadPoolExecutor::builder().max_workers(2).build();
    let p = pool.clone();
    let out = evloop::run(async move {
        let a = p.submit(|| 20).unwrap();
        let b = p.submit(|| 22).unwrap();
        a.await.unwrap() + b.await.unwrap()
    })
    .unwrap();
    assert_eq!(out, 42);
    pool.shutdown(true);
}

#[test]
fn run_in_executor_on_the_default_pool() {
    let lp = EventLoop::new().unwrap();
    let lp2 = lp.clone();
    let (name, value, panicked) = lp
        .run_until_complete(async move {
            let name = lp2
                .run_in_executor(None, || std::thread::current().name().unwrap().to_string())
                .unwrap()
                .await
                .unwrap();
            let value = lp2.run_in_executor(None, || 6 * 7).unwrap().await.unwrap();
            let panicked = lp2
                .run_in_executor(None, || -> u8 { panic!("in the pool") })
                .unwrap()
                .await;
            (name, value, panicked)
        })
        .unwrap();
    assert!(name.starts_with("evloop-executor-"), "{name}");
    assert_eq!(value, 42);
    match panicked {
        Err(TaskError::Panicked(p)) => assert_eq!(evloop::panic_message(&p), "in the pool"),
        other => panic!("{other:?}"),
    }
    assert_eq!(evloop::default_max_workers(), (num_cpus::get() + 4).min(32));
    lp.close().unwrap();
    assert!(matches!(lp.run_in_executor(None, || 1), Err(Error::Closed)));
}

#[test]
fn cancelling_the_loop_future_before_the_job_starts_means_it_never_runs() {
    let lp = EventLoop::new().unwrap();
    let pool = ThreadPoolExecutor::builder().max_workers(1).build();
    let gate = Arc::new(Barrier::new(2));
    let g = gate.clone();
    let blocker = lp
        .run_in_executor(Some(&pool), move || {
            g.wait();
        })
        .unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let victim = lp
        .run_in_executor(Some(&pool), move || r.fetch_add(1, Ordering::SeqCst))
        .unwrap();
    assert!(victim.cancel());
    gate.wait();
    lp.run_until_complete(blocker).unwrap().unwrap();
    pool.shutdown(true);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert!(matches!(
        lp.run_until_complete(victim).unwrap(),
        Err(TaskError::Cancelled(_))
    ));
}

#[test]
fn run_in_executor_on_a_shut_down_executor_is_an_error() {
    let lp = EventLoop::new().unwrap();
    let pool = ThreadPoolExecutor::new();
    pool.shutdown(true);
    assert!(matches!(
        lp.run_in_executor(Some(&pool), || 1),
        Err(Error::ExecutorShutdown)
    ));
}

/// An executor of the user's own: runs every job on a fresh thread and
/// counts them.
struct ThreadPerJob {
    jobs: AtomicUsize,
    closed: std::sync::atomic::AtomicBool,
}

impl Executor for ThreadPerJob {
    fn execute(&self, job: Job) -> Result<(), Error> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::ExecutorShutdown);
        }
        self.jobs.fetch_add(1, Ordering::SeqCst);
        std::thread::spawn(job);
        Ok(())
    }
    fn shutdown(&self, _wait: bool) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

#[test]
fn a_custom_default_executor_is_used_and_shut_down() {
    let lp = EventLoop::new().unwrap();
    let mine = Arc::new(ThreadPerJob {
        jobs: AtomicUsize::new(0),
        closed: Default::default(),
    });
    lp.set_default_executor(mine.clone());
    let lp2 = lp.clone();
    let out = lp
        .run_until_complete(async move {
            let v = lp2.run_in_executor(None, || 3).unwrap().await.unwrap();
            lp2.shutdown_default_executor(None).await.unwrap();
            let after = lp2.run_in_executor(None, || 4).err();
            (v, after)
        })
        .unwrap();
    assert_eq!(out.0, 3);
    // asyncio: RuntimeError('Executor shutdown has been called').
    let refused = out.1.unwrap();
    assert!(matches!(refused, Error::DefaultExecutorShutdown));
    assert_eq!(refused.to_string(), "Executor shutdown has been called");
    assert_eq!(mine.jobs.load(Ordering::SeqCst), 1);
    assert!(mine.closed.load(Ordering::SeqCst));
    // Submitting through the trait object works like the pool's submit.
    let other: Arc<dyn Executor> = Arc::new(ThreadPerJob {
        jobs: AtomicUsize::new(0),
        closed: Default::default(),
    });
    assert_eq!(other.submit(|| "x").unwrap().result(None).unwrap(), "x");
}

#[test]
fn shutdown_default_executor_times_out_with_a_warning() {
    let lp = EventLoop::new().unwrap();
    let lp2 = lp.clone();
    let (r, logged) = capture_tracing(|| {
        lp.run_until_complete(async move {
            let _slow = lp2
                .run_in_executor(None, || std::thread::sleep(Duration::from_millis(400)))
                .unwrap();
            evloop::sleep(Duration::from_millis(20)).await.unwrap();
            lp2.shutdown_default_executor(Some(Duration::from_millis(30)))
                .await
        })
        .unwrap()
    });
    assert!(matches!(r, Err(Error::Timeout)));
    assert!(
        logged.contains("did not finish joining its threads"),
        "{logged}"
    );
}

#[test]
fn close_shuts_the_default_executor_down_without_waiting() {
    within(Duration::from_secs(60), || {
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let l = log.clone();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let fut = lp
            .run_in_executor(None, move || {
                gate.recv().unwrap();
                l.push("job finished");
            })
            .unwrap();
        // Returns while the job is still blocked: close() does not wait.
        lp.close().unwrap();
        assert!(matches!(lp.run_in_executor(None, || 1), Err(Error::Closed)));
        release.send(()).unwrap();
        // The job still runs; its result has no loop to go to.
        wait_until(Duration::from_secs(10), || log.len() == 1);
        assert!(!fut.cancelled());
    });
}

#[test]
fn a_bounded_queue_refuses_jobs_beyond_its_bound_and_loses_none_it_took() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(1)
        .max_queued(2)
        .build();
    assert_eq!(pool.queued(), Some(0));
    assert_eq!(
        ThreadPoolExecutor::new().queued(),
        None,
        "unbounded pools do not count"
    );
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let blocker = pool
        .submit(move || {
            started_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            "blocker"
        })
        .unwrap();
    started_rx.recv().unwrap();
    let b = pool.submit(|| "b").unwrap();
    let c = pool.submit(|| "c").unwrap();
    assert_eq!(pool.queued(), Some(2));
    let refused = pool.submit(|| "d").unwrap_err();
    assert!(matches!(refused, Error::QueueFull));
    assert_eq!(refused.to_string(), "the executor's queue is full");
    // The loop's run_in_executor reports it the same way.
    let lp = EventLoop::new().unwrap();
    assert!(matches!(
        lp.run_in_executor(Some(&pool), || "e"),
        Err(Error::QueueFull)
    ));
    release_tx.send(()).unwrap();
    let got: Vec<_> = [blocker, b, c]
        .into_iter()
        .map(|f| f.result(Some(Duration::from_secs(10))).unwrap())
        .collect();
    assert_eq!(got, ["blocker", "b", "c"]);
    assert_eq!(pool.queued(), Some(0));
    // Room again.
    assert_eq!(pool.submit(|| "f").unwrap().result(None).unwrap(), "f");
    pool.shutdown(true);
}
