//! Regression tests for the hardening issue: asyncio rules the loop broke,
//! leaks and races found in review. Each failed (or hung) before its fix.

mod common;

use common::{DropCounter, Log, record_exceptions, run_one_iteration, within};
use evloop::{ConcurrentFuture, Error, EventLoop, TaskError, ThreadPoolExecutor};
use std::future::{Future, IntoFuture};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// A future that is never ready and wakes itself at every poll.
struct YieldForever;

impl Future for YieldForever {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

// ----- asyncio rules -----------------------------------------------------------------

#[test]
fn call_at_orders_deadlines_in_the_past_by_their_real_time() {
    let lp = EventLoop::new().unwrap();
    let log = Log::new();
    let now = lp.time();
    lp.call_at(now - Duration::from_secs(1), log.cb("-1s"))
        .unwrap();
    lp.call_at(now - Duration::from_secs(5), log.cb("-5s"))
        .unwrap();
    lp.call_at(now - Duration::from_secs(3), log.cb("-3s"))
        .unwrap();
    run_one_iteration(&lp);
    run_one_iteration(&lp);
    assert_eq!(log.get(), ["-5s", "-3s", "-1s"]);
}

#[test]
fn a_ready_reader_runs_on_every_iteration_while_callbacks_keep_the_loop_busy() {
    within(Duration::from_secs(20), || {
        let lp = EventLoop::new().unwrap();
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        std::io::Write::write_all(&mut &b, b"x").unwrap();
        let log = Log::new();
        let l = log.clone();
        // The reader never consumes the byte: level-triggered, it is due
        // on every iteration, as asyncio polls on every iteration.
        lp.add_reader(a.as_raw_fd(), move || l.push("r".to_string()))
            .unwrap();
        fn chain(lp: EventLoop, log: Log<String>, i: usize) {
            log.push(format!("c{i}"));
            if i == 4 {
                lp.stop();
                return;
            }
            let lp2 = lp.clone();
            lp.call_soon(move || chain(lp2, log, i + 1)).unwrap();
        }
        let (lp2, l2) = (lp.clone(), log.clone());
        lp.call_soon(move || chain(lp2, l2, 0)).unwrap();
        lp.run_forever().unwrap();
        assert_eq!(
            log.get(),
            ["c0", "r", "c1", "r", "c2", "r", "c3", "r", "c4", "r"]
        );
        lp.remove_reader(a.as_raw_fd());
    });
}

#[test]
fn gather_polls_a_self_waking_child_once_per_iteration() {
    // Before: the child was re-polled inside one poll of the gather, so a
    // child that yields forever froze the loop (timers included).
    within(Duration::from_secs(20), || {
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let l = log.clone();
        let out = lp
            .run_until_complete(async move {
                let lp = evloop::get_running_loop().unwrap();
                lp.call_soon(move || l.push("callback")).unwrap();
                let g = evloop::gather(vec![YieldForever, YieldForever]);
                evloop::wait_for(g, Duration::from_millis(20)).await
            })
            .unwrap();
        assert!(matches!(out, Err(Error::Timeout)));
        assert_eq!(log.get(), ["callback"]);
    });
}

#[test]
fn wait_for_and_the_root_future_yield_to_the_loop_too() {
    within(Duration::from_secs(20), || {
        let lp = EventLoop::new().unwrap();
        let r = lp.run_until_complete(evloop::wait_for(YieldForever, Duration::from_millis(10)));
        assert!(matches!(r, Ok(Err(Error::Timeout))));
        let stopper = lp.clone();
        lp.call_later(Duration::from_millis(10), move || stopper.stop())
            .unwrap();
        let r = lp.run_until_complete(YieldForever);
        assert!(matches!(r, Err(Error::StoppedBeforeComplete)));
    });
}

#[test]
fn cancel_with_a_message_reaches_awaiters_and_what_the_task_awaits() {
    let lp = EventLoop::new().unwrap();
    let fut = lp.create_future::<u8>();
    let inner = fut.clone();
    let task = lp.create_task(async move { inner.await }).unwrap();
    // Let the task start waiting on the future.
    run_one_iteration(&lp);
    assert!(task.cancel_with("shutting down"));
    let err = lp.run_until_complete(task).unwrap().unwrap_err();
    assert_eq!(err.cancel_message(), Some("shutting down"));
    assert_eq!(err.to_string(), "CancelledError: shutting down");
    // asyncio: Task.cancel(msg) cancels _fut_waiter with the same msg.
    assert!(fut.cancelled());
    let err = fut.exception().unwrap_err();
    assert_eq!(err.cancel_message(), Some("shutting down"));
    // Without a message: asyncio's bare CancelledError.
    let plain = lp.create_future::<u8>();
    plain.cancel();
    assert_eq!(plain.result().unwrap_err().to_string(), "CancelledError");
    assert_eq!(plain.result().unwrap_err().cancel_message(), None);
}

#[test]
fn a_task_outcome_can_be_read_many_times_and_by_many_awaiters() {
    let lp = EventLoop::new().unwrap();
    let task = Arc::new(
        lp.create_task(async {
            evloop::sleep(Duration::from_millis(1)).await.unwrap();
            String::from("shared")
        })
        .unwrap(),
    );
    assert!(matches!(task.result(), Err(TaskError::Exception(_))));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let t = task.clone();
            lp.create_task(async move { (&*t).await.unwrap() }).unwrap()
        })
        .collect();
    for r in readers {
        assert_eq!(lp.run_until_complete(r).unwrap().unwrap(), "shared");
    }
    assert_eq!(task.result().unwrap(), "shared");
    assert_eq!(task.result().unwrap(), "shared");
    assert!(matches!(task.exception(), Ok(None)));
    assert_eq!(lp.run_until_complete(&*task).unwrap().unwrap(), "shared");

    // A panic read by reference: its message, and no "never retrieved"
    // report once it was read.
    let errors = record_exceptions(&lp);
    let boom = lp.create_task(async { panic!("boom") }).unwrap();
    let _ = lp.run_until_complete(&boom).unwrap();
    match boom.exception() {
        Ok(Some(TaskError::Exception(e))) => assert_eq!(e.to_string(), "panicked: boom"),
        other => panic!("{other:?}"),
    }
    drop(boom);
    run_one_iteration(&lp);
    assert!(errors.get().is_empty(), "{:?}", errors.get());
}

// ----- no user code under an internal lock ----------------------------------------------

#[test]
fn a_destructor_run_by_stats_or_all_tasks_on_an_idle_loop_may_use_the_loop() {
    // Before: stats() and all_tasks() dropped cancelled timers under the
    // loop's slot lock, so a destructor that called either deadlocked.
    for via_all_tasks in [false, true] {
        within(Duration::from_secs(20), move || {
            let lp = EventLoop::new().unwrap();
            struct UsesLoop(EventLoop, mpsc::Sender<usize>, bool);
            impl Drop for UsesLoop {
                fn drop(&mut self) {
                    let n = if self.2 {
                        self.0.all_tasks().map_or(usize::MAX, |t| t.len())
                    } else {
                        self.0.stats().timers
                    };
                    let _ = self.1.send(n);
                }
            }
            let (tx, rx) = mpsc::channel();
            let poster = lp.clone();
            let weak = lp.downgrade();
            std::thread::spawn(move || {
                let guard = UsesLoop(weak.upgrade().unwrap(), tx, via_all_tasks);
                let t = poster
                    .call_later(Duration::from_secs(60), move || drop(guard))
                    .unwrap();
                t.cancel(); // cancelled from another thread, still in the inbox
            })
            .join()
            .unwrap();
            // Files the timer and drops it.
            if via_all_tasks {
                assert!(lp.all_tasks().unwrap().is_empty());
            } else {
                assert_eq!(lp.stats().timers, 0);
            }
            assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 0);
            assert_eq!(lp.stats().timers, 0);
        });
    }
}

/// A waker that counts its live clones.
struct CountingWake;

impl Wake for CountingWake {
    fn wake(self: Arc<Self>) {}
}

#[test]
fn awaiters_that_go_away_leave_no_waker_behind() {
    let lp = EventLoop::new().unwrap();
    let counter = Arc::new(CountingWake);
    let waker = Waker::from(counter.clone());
    let mut cx = Context::from_waker(&waker);
    let base = Arc::strong_count(&counter);
    let fut = lp.create_future::<u8>();
    let cf = ConcurrentFuture::<u8>::new();
    let task = lp.create_task(std::future::pending::<u8>()).unwrap();
    for _ in 0..100 {
        // As a `wait_for` timeout or a losing `select!` branch does.
        let mut read = Box::pin((&fut).into_future());
        assert!(read.as_mut().poll(&mut cx).is_pending());
        drop(read);
        let mut clone = Box::pin(fut.clone().into_future());
        assert!(clone.as_mut().poll(&mut cx).is_pending());
        drop(clone);
        let mut c = Box::pin(cf.clone().into_future());
        assert!(c.as_mut().poll(&mut cx).is_pending());
        drop(c);
        let mut t = Box::pin((&task).into_future());
        assert!(t.as_mut().poll(&mut cx).is_pending());
        drop(t);
    }
    assert_eq!(
        Arc::strong_count(&counter),
        base,
        "abandoned wakers were kept"
    );
    task.cancel();
}

// ----- cancellation scope ------------------------------------------------------------------

#[test]
fn a_task_only_held_after_a_timed_out_wait_is_not_cancelled_with_its_holder() {
    let lp = EventLoop::new().unwrap();
    let lp2 = lp.clone();
    let (tx, rx) = mpsc::channel();
    let holder = lp
        .create_task(async move {
            let mut worker = lp2
                .create_task(evloop::sleep(Duration::from_secs(3600)))
                .unwrap();
            // Awaited in a `select` that the timer wins, then only held.
            let r = futures::future::select(
                worker.wait(),
                Box::pin(evloop::sleep(Duration::from_millis(1))),
            )
            .await;
            assert!(matches!(r, futures::future::Either::Right(_)));
            drop(r);
            tx.send(()).unwrap();
            let _keep = worker;
            evloop::sleep(Duration::from_secs(3600)).await.unwrap();
        })
        .unwrap();
    while rx.try_recv().is_err() {
        run_one_iteration(&lp);
    }
    let tasks_before = lp.all_tasks().unwrap().len();
    assert_eq!(tasks_before, 2, "the holder and the worker");
    holder.cancel();
    assert!(lp.run_until_complete(holder).unwrap().is_err());
    // The worker was dropped with its holder (detached), not cancelled.
    let left = lp.all_tasks().unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
}

#[test]
fn wait_for_cancels_what_it_awaited_unless_it_is_shielded() {
    let lp = EventLoop::new().unwrap();
    let lp2 = lp.clone();
    let (shielded, exposed) = lp
        .run_until_complete(async move {
            let mut a = lp2
                .create_task(evloop::sleep(Duration::from_secs(3600)))
                .unwrap();
            let mut b = lp2
                .create_task(evloop::sleep(Duration::from_secs(3600)))
                .unwrap();
            let r = evloop::wait_for(evloop::shield(a.wait()), Duration::from_millis(1)).await;
            assert!(matches!(r, Err(Error::Timeout)));
            let r = evloop::wait_for(b.wait(), Duration::from_millis(1)).await;
            assert!(matches!(r, Err(Error::Timeout)));
            evloop::sleep(Duration::ZERO).await.unwrap();
            let out = (a.done(), b.cancelled());
            a.cancel();
            out
        })
        .unwrap();
    // asyncio: wait_for cancels the awaitable on timeout; shield() keeps it.
    assert_eq!((shielded, exposed), (false, true));
}

#[test]
fn cancelling_a_task_cancels_gather_children_that_were_not_polled_lately() {
    let lp = EventLoop::new().unwrap();
    let lp2 = lp.clone();
    let slow = lp
        .create_task(evloop::sleep(Duration::from_secs(3600)))
        .unwrap();
    let slow = Arc::new(std::sync::Mutex::new(Some(slow)));
    let s = slow.clone();
    let outer = lp
        .create_task(async move {
            let child = s.lock().unwrap().take().unwrap();
            let ticker = async {
                // Wakes the gather again and again; `child` is not re-polled.
                for _ in 0..3 {
                    evloop::sleep(Duration::ZERO).await.unwrap();
                }
                std::future::pending::<Result<(), TaskError>>().await
            };
            let (a, b) = futures::future::join(evloop::gather(vec![child]), ticker).await;
            let _ = (a, b, lp2);
        })
        .unwrap();
    for _ in 0..10 {
        run_one_iteration(&lp);
    }
    outer.cancel();
    assert!(lp.run_until_complete(outer).unwrap().is_err());
    // The child task, awaited through the gather, was cancelled with it.
    run_one_iteration(&lp);
    assert!(lp.all_tasks().unwrap().is_empty());
}

// ----- panics escaping a run ------------------------------------------------------------

struct PanickingWake;

impl Wake for PanickingWake {
    fn wake(self: Arc<Self>) {
        panic!("a foreign waker panicked");
    }
}

#[test]
fn a_panic_escaping_a_run_leaves_the_loop_consistent_and_leaks_nothing() {
    let lp = EventLoop::new().unwrap();
    let handler_gone = DropCounter::new();
    let token = handler_gone.token();
    lp.set_exception_handler(Some(Arc::new(move |_, _| {
        let _ = &token;
    })));
    let mut task = lp
        .create_task(async {
            evloop::sleep(Duration::ZERO).await.unwrap();
            7
        })
        .unwrap();
    // A foreign executor awaits the task with a waker that panics.
    let waker = Waker::from(Arc::new(PanickingWake));
    let mut wait = Box::pin(task.wait());
    assert!(
        wait.as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
    );
    drop(wait);
    let lp2 = lp.clone();
    let escaped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lp2.run_forever()));
    assert!(escaped.is_err(), "the waker's panic unwinds out of the run");
    assert!(!lp.is_running());
    assert!(evloop::current_task().is_err());
    // The loop runs again, and the task's value is there.
    run_one_iteration(&lp);
    assert!(task.done());
    assert_eq!(task.result().unwrap(), 7);
    drop(task);
    // Nothing holds the loop's shared state any more: the handler goes.
    lp.close().unwrap();
    drop((lp, lp2));
    assert_eq!(handler_gone.dropped(), 1);
}

// ----- executor ------------------------------------------------------------------------

#[test]
fn cancel_and_a_worker_starting_the_job_never_both_win() {
    let pool = ThreadPoolExecutor::builder().max_workers(2).build();
    for _ in 0..2_000 {
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let fut = pool
            .submit(move || r.store(true, Ordering::SeqCst))
            .unwrap();
        let cancelled = fut.cancel();
        // Wait for the job either way.
        let done = pool.submit(|| ()).unwrap();
        done.result(Some(Duration::from_secs(10))).unwrap();
        pool.submit(|| ())
            .unwrap()
            .result(Some(Duration::from_secs(10)))
            .unwrap();
        if cancelled {
            assert!(fut.cancelled());
            assert!(
                !ran.load(Ordering::SeqCst),
                "cancel() returned true but the job ran"
            );
        }
    }
    pool.shutdown(true);
}

#[test]
fn a_pool_that_cannot_start_a_thread_fails_its_jobs_instead_of_stranding_them() {
    within(Duration::from_secs(20), || {
        // A stack the OS cannot give: every spawn fails.
        let pool = ThreadPoolExecutor::builder()
            .max_workers(2)
            .stack_size(1 << 44)
            .build();
        let err = pool.submit(|| 1).unwrap_err();
        assert!(matches!(err, Error::ThreadSpawn(_)), "{err:?}");
        assert!(err.to_string().starts_with("can't start new thread"));
        assert_eq!(pool.workers(), 0);
        // Through a loop: run_in_executor reports it too, and nothing hangs.
        let lp = EventLoop::new().unwrap();
        let err = lp.run_in_executor(Some(&pool), || 2).unwrap_err();
        assert!(matches!(err, Error::ThreadSpawn(_)));
        pool.shutdown(true);
    });
}

// ----- callbacks and handles --------------------------------------------------------------

#[test]
fn a_callback_cancelled_from_another_thread_drops_its_captures_when_the_loop_reaches_it() {
    let lp = EventLoop::new().unwrap();
    let drops = DropCounter::new();
    let token = drops.token();
    let handle = lp.call_soon(move || drop(token)).unwrap();
    let handle = std::thread::spawn(move || {
        handle.cancel();
        handle
    })
    .join()
    .unwrap();
    run_one_iteration(&lp);
    // The handle is still alive; the captures are not.
    assert!(handle.cancelled());
    assert_eq!(drops.dropped(), 1);
}

#[test]
fn a_callback_that_captures_its_own_handle_is_freed_when_cancelled_elsewhere() {
    // The closure holds its own handle: a cycle, which only dropping the
    // closure on cancellation breaks.
    let lp = EventLoop::new().unwrap();
    let drops = DropCounter::new();
    let slot: Arc<std::sync::Mutex<Option<evloop::Handle>>> = Default::default();
    let (s, token) = (slot.clone(), drops.token());
    let handle = lp
        .call_soon(move || {
            let _ = (&s, &token);
        })
        .unwrap();
    *slot.lock().unwrap() = Some(handle);
    std::thread::spawn(move || slot.lock().unwrap().as_ref().unwrap().cancel())
        .join()
        .unwrap();
    run_one_iteration(&lp);
    assert_eq!(drops.dropped(), 1);
}

#[test]
fn a_flood_of_posts_does_not_delay_timers_beyond_one_batch() {
    // Before: the loop drained the whole inbox in one iteration, so under
    // a flood from other threads timers and stop() waited behind it.
    let lp = EventLoop::new().unwrap();
    let order = Arc::new(AtomicUsize::new(0));
    let timer_at = Arc::new(AtomicUsize::new(usize::MAX));
    let (o, t) = (order.clone(), timer_at.clone());
    let poster = lp.clone();
    let lp2 = lp.clone();
    lp.call_soon(move || {
        // While this callback runs, 20,000 posts land in the inbox.
        let o2 = o.clone();
        std::thread::spawn(move || {
            for _ in 0..20_000 {
                let o = o2.clone();
                poster
                    .call_soon_threadsafe(move || {
                        o.fetch_add(1, Ordering::SeqCst);
                    })
                    .unwrap();
            }
        })
        .join()
        .unwrap();
        lp2.call_at(lp2.time(), move || {
            t.store(o.load(Ordering::SeqCst), Ordering::SeqCst)
        })
        .unwrap();
    })
    .unwrap();
    run_one_iteration(&lp); // the callback above
    run_one_iteration(&lp); // one batch of posts, then the due timer
    let at = timer_at.load(Ordering::SeqCst);
    assert!(at <= 1024, "the timer ran after {at} posts");
    while order.load(Ordering::SeqCst) < 20_000 {
        run_one_iteration(&lp);
    }
}

#[test]
fn stop_takes_effect_within_a_batch_under_a_flood_of_posts() {
    // Before: stop() waited until the whole inbox was drained.
    within(Duration::from_secs(30), || {
        let lp = EventLoop::new().unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let poster = lp.clone();
        let r = ran.clone();
        std::thread::spawn(move || {
            for _ in 0..20_000 {
                let r = r.clone();
                poster
                    .call_soon_threadsafe(move || {
                        r.fetch_add(1, Ordering::SeqCst);
                    })
                    .unwrap();
            }
            poster.stop();
        })
        .join()
        .unwrap();
        lp.run_forever().unwrap();
        let n = ran.load(Ordering::SeqCst);
        assert!(n <= 2 * 1024, "stop() waited for {n} posts");
        // Nothing accepted is lost: the rest run on the next runs.
        while ran.load(Ordering::SeqCst) < 20_000 {
            run_one_iteration(&lp);
        }
    });
}

// ----- closing and dropping -------------------------------------------------------------

#[test]
fn dropping_the_last_handle_reports_pending_tasks_to_the_custom_handler() {
    let lp = EventLoop::new().unwrap();
    let errors = record_exceptions(&lp);
    let _task = lp
        .create_task(evloop::sleep(Duration::from_secs(3600)))
        .unwrap();
    run_one_iteration(&lp);
    drop(lp);
    let got = errors.get();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, "Task was destroyed but it is pending!");
}

#[test]
fn a_loop_whose_callbacks_hold_weak_handles_closes_when_dropped() {
    let lp = EventLoop::new().unwrap();
    let drops = DropCounter::new();
    let token = drops.token();
    let weak = lp.downgrade();
    lp.call_later(Duration::from_secs(3600), move || {
        let _ = (&token, weak.upgrade());
    })
    .unwrap();
    let weak = lp.downgrade();
    drop(lp);
    assert_eq!(drops.dropped(), 1, "the pending callback was dropped");
    assert!(weak.upgrade().is_none());
}

#[test]
fn many_threads_cancel_timers_while_the_loop_runs() {
    within(Duration::from_secs(60), || {
        let lp = EventLoop::new().unwrap();
        let runner = lp.clone();
        let thread = std::thread::spawn(move || runner.run_forever().unwrap());
        let drops = DropCounter::new();
        let start = Arc::new(Barrier::new(4));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (lp, drops, start) = (lp.clone(), drops.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    for _ in 0..5_000 {
                        let token = drops.token();
                        let t = lp
                            .call_later(Duration::from_secs(3600), move || drop(token))
                            .unwrap();
                        t.cancel();
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        // asyncio's rule leaves fewer than 100 cancelled timers in place
        // (they go at their deadline); everything else is purged.
        let deadline = Instant::now() + Duration::from_secs(30);
        while drops.dropped() < 20_000 - 100 {
            assert!(Instant::now() < deadline, "{} dropped", drops.dropped());
            std::thread::yield_now();
        }
        lp.stop();
        thread.join().unwrap();
    });
}
