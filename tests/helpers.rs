//! run, spawn, sleep, wait_for, gather, run_coroutine_threadsafe, and
//! ecosystem futures on the loop (issue 2, section 6).

mod common;

use common::{DropCounter, Log, within};
use evloop::{Error, EventLoop, TaskError};
use futures::{FutureExt, SinkExt, StreamExt};
use std::time::{Duration, Instant};

#[test]
fn run_returns_the_output_and_closes_the_loop() {
    let (out, lp) = evloop::run(async {
        let lp = evloop::get_running_loop().unwrap();
        // The loop is this thread's current loop while it runs.
        assert_eq!(evloop::get_event_loop().unwrap(), lp);
        (5, lp)
    })
    .unwrap();
    assert_eq!(out, 5);
    assert!(lp.is_closed());
    assert!(matches!(
        evloop::get_event_loop(),
        Err(Error::NoCurrentLoop { .. })
    ));
}

#[test]
fn run_cancels_leftover_tasks_before_closing_like_asyncio_run() {
    let drops = DropCounter::new();
    let log = Log::new();
    let (d, l) = (drops.clone(), log.clone());
    evloop::run(async move {
        let token = d.token();
        let l2 = l.clone();
        evloop::spawn(async move {
            let _t = token;
            evloop::sleep(Duration::from_secs(3600)).await.unwrap();
            l2.push("never");
        })
        .unwrap();
        // Created but not started when main returns.
        let token = d.token();
        evloop::spawn(async move {
            let _t = token;
            l.push("unstarted ran");
        })
        .unwrap();
    })
    .unwrap();
    assert_eq!(drops.dropped(), 2);
    // As asyncio.run: main's completion stops the loop one iteration later,
    // and the task created just before runs its first step in it.
    assert_eq!(log.get(), vec!["unstarted ran"]);
}

#[test]
fn run_inside_a_running_loop_is_an_error() {
    let r = evloop::run(async { evloop::run(async {}) }).unwrap();
    assert!(matches!(r, Err(Error::AnotherLoopRunning)));
}

#[test]
fn spawn_and_sleep_outside_a_loop_are_errors() {
    assert!(matches!(evloop::spawn(async {}), Err(Error::NoRunningLoop)));
    let r = futures::executor::block_on(evloop::sleep(Duration::from_millis(1)));
    assert!(matches!(r, Err(Error::NoRunningLoop)));
    let r = futures::executor::block_on(evloop::sleep(Duration::ZERO));
    assert!(matches!(r, Err(Error::NoRunningLoop)));
    assert_eq!(
        evloop::get_running_loop().unwrap_err().to_string(),
        "no running event loop"
    );
}

#[test]
fn sleep_waits_and_sleep_zero_yields_one_iteration() {
    let log = Log::new();
    let l = log.clone();
    evloop::run(async move {
        let start = Instant::now();
        evloop::sleep(Duration::from_millis(30)).await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(30));
        let lp = evloop::get_running_loop().unwrap();
        lp.call_soon(l.cb("callback")).unwrap();
        l.push("before");
        evloop::sleep(Duration::ZERO).await.unwrap();
        l.push("after");
    })
    .unwrap();
    assert_eq!(log.get(), vec!["before", "callback", "after"]);
}

#[test]
fn dropping_a_sleep_cancels_its_timer() {
    evloop::run(async {
        let lp = evloop::get_running_loop().unwrap();
        let mut s = Box::pin(evloop::sleep(Duration::from_secs(3600)));
        assert!(futures::poll!(&mut s).is_pending());
        assert_eq!(lp.stats().timers, 1);
        drop(s);
        evloop::sleep(Duration::ZERO).await.unwrap();
        assert_eq!(
            lp.stats().cancelled_timers,
            0,
            "purged when it reached the top"
        );
        assert_eq!(lp.stats().timers, 0);
    })
    .unwrap();
}

#[test]
fn wait_for_times_out_and_drops_the_future() {
    let drops = DropCounter::new();
    let d = drops.clone();
    let r = evloop::run(async move {
        let token = d.token();
        let slow = async move {
            let _t = token;
            evloop::sleep(Duration::from_secs(3600)).await.unwrap();
            1
        };
        let start = Instant::now();
        let r = evloop::wait_for(slow, Duration::from_millis(20)).await;
        assert!(start.elapsed() >= Duration::from_millis(20));
        r
    })
    .unwrap();
    assert!(matches!(r, Err(Error::Timeout)));
    assert_eq!(drops.dropped(), 1);
}

#[test]
fn wait_for_returns_the_value_in_time() {
    let r = evloop::run(async {
        evloop::wait_for(
            async {
                evloop::sleep(Duration::from_millis(1)).await.unwrap();
                "ok"
            },
            Duration::from_secs(5),
        )
        .await
    })
    .unwrap();
    assert_eq!(r.unwrap(), "ok");
    let zero = evloop::run(async {
        evloop::wait_for(async { 1 }, Duration::ZERO).await.unwrap()
            + evloop::wait_for(futures::future::pending::<i32>(), Duration::ZERO)
                .await
                .map_or(10, |_| 0)
    })
    .unwrap();
    assert_eq!(zero, 11);
}

#[test]
fn gather_keeps_input_order_and_runs_concurrently() {
    let finished = Log::new();
    let f = finished.clone();
    let out = evloop::run(async move {
        let futs = (0..5u64).map(|i| {
            let f = f.clone();
            async move {
                evloop::sleep(Duration::from_millis(50 - i * 10))
                    .await
                    .unwrap();
                f.push(i);
                i
            }
        });
        evloop::gather(futs).await
    })
    .unwrap();
    assert_eq!(out, vec![0, 1, 2, 3, 4]);
    // Run concurrently: the shortest sleep finished first.
    assert_eq!(finished.get(), vec![4, 3, 2, 1, 0]);
    let empty: Vec<u8> =
        evloop::run(evloop::gather(Vec::<futures::future::Ready<u8>>::new())).unwrap();
    assert!(empty.is_empty());
}

#[test]
fn gather_of_many_only_polls_woken_children() {
    let out = evloop::run(async {
        let futs = (0..2000u32).map(|i| async move {
            for _ in 0..3 {
                evloop::sleep(Duration::ZERO).await.unwrap();
            }
            i
        });
        evloop::gather(futs).await
    })
    .unwrap();
    assert_eq!(out, (0..2000).collect::<Vec<_>>());
}

#[test]
fn blocking_on_run_coroutine_threadsafe_from_its_own_loop_fails_instead_of_hanging() {
    let lp = EventLoop::new().unwrap();
    let lp2 = lp.clone();
    let got = within(Duration::from_secs(10), move || {
        lp2.run_until_complete({
            let lp = lp2.clone();
            async move {
                let fut = evloop::run_coroutine_threadsafe(async { 5 }, &lp).unwrap();
                // On the loop's own thread, a blocking wait would never end.
                let refused = match fut.result(None) {
                    Err(TaskError::Exception(e)) => e.to_string(),
                    other => panic!("{other:?}"),
                };
                // Awaiting it works, and so does a blocking read once done.
                let again = fut.clone();
                let v = fut.await.unwrap();
                (refused, v, again.done())
            }
        })
        .unwrap()
    });
    assert!(got.0.contains("await it instead"), "{}", got.0);
    assert_eq!((got.1, got.2), (5, true));
    // The future of another loop is a plain blocking wait, even from
    // inside this loop.
    let other = EventLoop::new().unwrap();
    let runner = other.clone();
    let thread = std::thread::spawn(move || runner.run_forever());
    let lp3 = lp.clone();
    let outcome = lp
        .run_until_complete(async move {
            let here = evloop::run_coroutine_threadsafe(async { 1 }, &lp3).unwrap();
            let there = evloop::run_coroutine_threadsafe(async { 2 }, &other).unwrap();
            let r = (
                here.result(None).is_err(),
                there.result(Some(Duration::from_secs(10))).unwrap(),
            );
            other
                .call_soon_threadsafe({
                    let o = other.clone();
                    move || o.stop()
                })
                .unwrap();
            r
        })
        .unwrap();
    assert_eq!(outcome, (true, 2));
    thread.join().unwrap().unwrap();
}

#[test]
fn run_coroutine_threadsafe_result_cancel_and_panic() {
    within(Duration::from_secs(30), || {
        let lp = EventLoop::new().unwrap();
        let runner = lp.clone();
        let thread = std::thread::spawn(move || runner.run_forever().unwrap());
        let cf = evloop::run_coroutine_threadsafe(
            async {
                evloop::sleep(Duration::from_millis(5)).await.unwrap();
                std::thread::current().name().map(str::to_string)
            },
            &lp,
        )
        .unwrap();
        assert!(cf.result(Some(Duration::from_secs(10))).is_ok());

        let slow = evloop::run_coroutine_threadsafe(evloop::sleep(Duration::from_secs(3600)), &lp)
            .unwrap();
        assert!(matches!(
            slow.result(Some(Duration::from_millis(10))),
            Err(TaskError::Timeout)
        ));
        assert!(slow.cancel());
        assert!(slow.cancelled());
        assert!(matches!(slow.result(None), Err(TaskError::Cancelled(_))));

        let bad = evloop::run_coroutine_threadsafe(async { panic!("remote boom") }, &lp).unwrap();
        match bad.result(Some(Duration::from_secs(10))) {
            Err(TaskError::Panicked(p)) => assert_eq!(evloop::panic_message(&p), "remote boom"),
            other => panic!("{other:?}"),
        }
        // The cancellation reaches the loop: no task is left.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while lp.stats().tasks != 0 {
            assert!(std::time::Instant::now() < deadline, "{:?}", lp.stats());
            std::thread::yield_now();
        }
        lp.stop();
        thread.join().unwrap();
        lp.close().unwrap();
        assert!(matches!(
            evloop::run_coroutine_threadsafe(async {}, &lp),
            Err(Error::Closed)
        ));
    });
}

#[test]
fn concurrent_future_is_awaitable_from_a_task() {
    let lp = EventLoop::new().unwrap();
    let other = EventLoop::new().unwrap();
    let runner = other.clone();
    let thread = std::thread::spawn(move || runner.run_forever().unwrap());
    let cf = evloop::run_coroutine_threadsafe(async { 8 }, &other).unwrap();
    assert_eq!(lp.run_until_complete(cf).unwrap().unwrap(), 8);
    other.stop();
    thread.join().unwrap();
}

#[test]
fn ecosystem_futures_run_unchanged() {
    let out = evloop::run(async {
        // A futures mpsc channel fed from a plain thread.
        let (mut tx, mut rx) = futures::channel::mpsc::channel::<u32>(4);
        std::thread::spawn(move || {
            futures::executor::block_on(async move {
                for i in 0..10 {
                    tx.send(i).await.unwrap();
                }
            })
        });
        let mut sum = 0;
        while let Some(v) = rx.next().await {
            sum += v;
        }
        // Combinators.
        let joined = futures::future::join(
            async { 1 },
            evloop::sleep(Duration::from_millis(1)).map(|r| r.map(|()| 2)),
        );
        let (a, b) = joined.await;
        // A tokio sync primitive (runtime-agnostic) between two tasks.
        let (otx, orx) = tokio::sync::oneshot::channel();
        evloop::spawn(async move { otx.send(40).unwrap() }).unwrap();
        sum + a + b.unwrap() + orx.await.unwrap() - 40
    })
    .unwrap();
    assert_eq!(out, 45 + 3);
}

#[test]
fn cancellation_follows_the_await_chain_like_asyncio() {
    // Mirrors CPython: cancelling a task cancels what it awaits (a future,
    // a task, a gather's children, a thread-pool future), wait_for's
    // timeout cancels the awaited task, and a task merely held is left
    // alone.
    let lp = EventLoop::new().unwrap();
    let lp2 = lp.clone();
    let got = lp
        .run_until_complete(async move {
            let tick = || evloop::sleep(Duration::ZERO);
            let fut = lp2.create_future::<()>();
            let waiter = lp2.create_task(fut.clone()).unwrap();
            tick().await.unwrap();
            waiter.cancel();
            tick().await.unwrap();
            let future_cancelled = fut.cancelled();

            let inner = lp2
                .create_task(evloop::sleep(Duration::from_secs(10)))
                .unwrap();
            let mut inner = Some(inner);
            let probe = lp2.create_future::<bool>();
            let p = probe.clone();
            let outer = lp2
                .create_task(async move {
                    let inner = inner.take().unwrap();
                    // Watch the inner task from its own done callback.
                    inner
                        .add_done_callback(move |d| {
                            let _ = p.set_result(d.cancelled());
                        })
                        .unwrap();
                    inner.await
                })
                .unwrap();
            tick().await.unwrap();
            outer.cancel();
            assert!(matches!(outer.await, Err(TaskError::Cancelled(_))));
            let inner_cancelled = probe.await.unwrap();

            let slow = lp2
                .create_task(evloop::sleep(Duration::from_secs(10)))
                .unwrap();
            let probe = lp2.create_future::<bool>();
            let p = probe.clone();
            slow.add_done_callback(move |d| {
                let _ = p.set_result(d.cancelled());
            })
            .unwrap();
            let timed_out = evloop::wait_for(slow, Duration::from_millis(5)).await;
            assert!(matches!(timed_out, Err(Error::Timeout)));
            let wait_for_cancelled = probe.await.unwrap();

            let release = lp2.create_future::<()>();
            let r = release.clone();
            let held = lp2.create_task(async move { r.await }).unwrap();
            let holder = lp2
                .create_task(async move {
                    let _held = held; // held, never awaited
                    evloop::sleep(Duration::from_secs(10)).await
                })
                .unwrap();
            tick().await.unwrap();
            holder.cancel();
            tick().await.unwrap();
            let tasks_left = evloop::all_tasks().unwrap().len(); // `held` + this one
            release.set_result(()).unwrap();

            let a = lp2.create_future::<()>();
            let b = lp2.create_future::<()>();
            let (a2, b2) = (a.clone(), b.clone());
            let gathering = lp2
                .create_task(async move { evloop::gather([a2, b2]).await })
                .unwrap();
            tick().await.unwrap();
            gathering.cancel();
            tick().await.unwrap();
            let gather_children = (a.cancelled(), b.cancelled());

            let pool = evloop::ThreadPoolExecutor::builder().max_workers(1).build();
            let gate = std::sync::Arc::new(std::sync::Barrier::new(2));
            let g = gate.clone();
            let busy = pool.submit(move || g.wait()).unwrap();
            let queued = pool.submit(|| 1).unwrap();
            let pool_waiter = lp2.create_task(queued.clone()).unwrap();
            tick().await.unwrap();
            pool_waiter.cancel();
            tick().await.unwrap();
            let pool_future_cancelled = queued.cancelled();
            gate.wait();
            busy.result(None).unwrap();
            pool.shutdown(true);

            (
                future_cancelled,
                inner_cancelled,
                wait_for_cancelled,
                tasks_left,
                gather_children,
                pool_future_cancelled,
            )
        })
        .unwrap();
    assert_eq!(got, (true, true, true, 2, (true, true), true));
}

#[test]
fn cancellation_reaches_an_awaited_task_on_another_loop() {
    // A task on loop A awaits a task of loop B (running on another
    // thread); cancelling the outer task cancels the inner one through B's
    // cross-thread path.
    let b = EventLoop::new().unwrap();
    let runner = b.clone();
    let thread = std::thread::spawn(move || runner.run_forever());
    let inner = b
        .create_task(evloop::sleep(Duration::from_secs(3600)))
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    inner
        .add_done_callback(move |d| tx.send(d.outcome).unwrap())
        .unwrap();
    let a = EventLoop::new().unwrap();
    let outer = a.create_task(inner).unwrap();
    let res = a
        .run_until_complete(async move {
            evloop::sleep(Duration::from_millis(5)).await.unwrap();
            outer.cancel();
            outer.await
        })
        .unwrap();
    assert!(matches!(res, Err(TaskError::Cancelled(_))));
    let outcome = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(outcome, evloop::TaskOutcome::Cancelled);
    b.call_soon_threadsafe({
        let b = b.clone();
        move || b.stop()
    })
    .unwrap();
    thread.join().unwrap().unwrap();
}

#[test]
fn sleep_until_completes_at_its_deadline_and_a_dropped_one_cancels_its_timer() {
    within(Duration::from_secs(30), || {
        let lp = EventLoop::new().unwrap();
        let lp2 = lp.clone();
        lp.run_until_complete(async move {
            // A deadline ahead: not before it.
            let deadline = lp2.time() + Duration::from_millis(20);
            evloop::sleep_until(deadline).await.unwrap();
            assert!(lp2.time() >= deadline);
            // A deadline already passed: done after one iteration.
            let before = lp2.stats().iterations;
            evloop::sleep_until(deadline - Duration::from_millis(30))
                .await
                .unwrap();
            assert!(lp2.stats().iterations > before);
            // Given up before its deadline: its timer is cancelled.
            let far = lp2.time() + Duration::from_secs(3600);
            let gave_up = evloop::wait_for(evloop::sleep_until(far), Duration::ZERO).await;
            assert!(matches!(gave_up, Err(Error::Timeout)), "{gave_up:?}");
            let stats = lp2.stats();
            assert_eq!((stats.timers, stats.cancelled_timers), (1, 1));
        })
        .unwrap();
        // Outside a running loop it fails at once.
        let out = futures::executor::block_on(evloop::sleep_until(lp.time()));
        assert!(matches!(out, Err(Error::NoRunningLoop)), "{out:?}");
    });
}
