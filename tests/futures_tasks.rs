//! LoopFuture and Task (issue 2, section 6).

mod common;

use common::{DropCounter, Log, record_exceptions, run_one_iteration, within};
use evloop::{Error, EventLoop, TaskError, TaskSpec};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn future_result_and_state() {
    let lp = EventLoop::new().unwrap();
    let fut = lp.create_future::<String>();
    assert!(!fut.done() && !fut.cancelled());
    assert!(fut.result().is_err());
    fut.set_result("x".into()).unwrap();
    assert!(fut.done() && !fut.cancelled());
    assert_eq!(fut.result().unwrap(), "x");
    let err = fut.set_result("y".into()).unwrap_err();
    assert!(matches!(err, Error::InvalidState(_)));
    assert_eq!(err.to_string(), "invalid state");
    assert!(!fut.cancel());
    assert_eq!(lp.run_until_complete(fut.clone()).unwrap().unwrap(), "x");
    // Taken by the awaiter above.
    assert!(lp.run_until_complete(fut).unwrap().is_err());
}

#[test]
fn future_cancel() {
    let lp = EventLoop::new().unwrap();
    let fut = lp.create_future::<u8>();
    assert!(fut.cancel());
    assert!(!fut.cancel());
    assert!(fut.cancelled() && fut.done());
    assert!(matches!(
        lp.run_until_complete(fut).unwrap(),
        Err(TaskError::Cancelled(_))
    ));
}

#[test]
fn future_exception() {
    let lp = EventLoop::new().unwrap();
    let fut = lp.create_future::<u8>();
    fut.set_exception(std::io::Error::other("disk on fire"))
        .unwrap();
    match lp.run_until_complete(fut).unwrap() {
        Err(TaskError::Exception(e)) => assert_eq!(e.to_string(), "disk on fire"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn future_exception_reads_the_error_without_taking_it() {
    // A type that is not Clone, so `result()` is not available.
    struct Opaque;
    let lp = EventLoop::new().unwrap();
    let errors = record_exceptions(&lp);
    let pending = lp.create_future::<Opaque>();
    match pending.exception() {
        Err(TaskError::Exception(e)) => assert_eq!(e.to_string(), "Exception is not set."),
        other => panic!("{other:?}"),
    }
    pending.set_result(Opaque).unwrap();
    assert!(matches!(pending.exception(), Ok(None)));
    let cancelled = lp.create_future::<Opaque>();
    cancelled.cancel();
    assert!(matches!(
        cancelled.exception(),
        Err(TaskError::Cancelled(_))
    ));
    let failed = lp.create_future::<Opaque>();
    failed
        .set_exception(std::io::Error::other("disk on fire"))
        .unwrap();
    match failed.exception() {
        Ok(Some(TaskError::Exception(e))) => assert_eq!(e.to_string(), "disk on fire"),
        other => panic!("{other:?}"),
    }
    // Read through exception(): not reported as never retrieved.
    drop(failed);
    run_one_iteration(&lp);
    assert!(errors.get().is_empty(), "{:?}", errors.get());
}

#[test]
fn done_callbacks_are_scheduled_in_order_never_inline() {
    let lp = EventLoop::new().unwrap();
    let log = Log::new();
    let fut = lp.create_future::<u32>();
    for i in 0..3 {
        let l = log.clone();
        fut.add_done_callback(move |f| l.push(format!("cb{i}={}", f.result().unwrap())))
            .unwrap();
    }
    let removed = fut.add_done_callback(|_| panic!("removed")).unwrap();
    assert_eq!(fut.remove_done_callback(removed), 1);
    assert_eq!(fut.remove_done_callback(removed), 0);
    fut.set_result(5).unwrap();
    log.push("after set_result".into());
    run_one_iteration(&lp);
    assert_eq!(
        log.get(),
        vec!["after set_result", "cb0=5", "cb1=5", "cb2=5"]
    );
    // Added after completion: scheduled at once, still not inline.
    let l = log.clone();
    fut.add_done_callback(move |_| l.push("late".into()))
        .unwrap();
    assert_eq!(log.len(), 4);
    run_one_iteration(&lp);
    assert_eq!(log.get().last().unwrap(), "late");
}

#[test]
fn completing_a_future_from_another_thread_wakes_its_awaiter() {
    let lp = EventLoop::new().unwrap();
    let fut = lp.create_future::<u64>();
    let setter = fut.clone();
    let waiter = lp.create_task(fut).unwrap();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        setter.set_result(99).unwrap();
    });
    let got = within(Duration::from_secs(10), move || {
        lp.run_until_complete(waiter).unwrap()
    });
    assert_eq!(got.unwrap().unwrap(), 99);
}

#[test]
fn future_done_callback_after_close_is_an_error() {
    let lp = EventLoop::new().unwrap();
    let fut = lp.create_future::<u8>();
    fut.add_done_callback(|_| ()).unwrap();
    lp.close().unwrap();
    // The result is set; the callback cannot be scheduled.
    assert!(matches!(fut.set_result(1), Err(Error::Closed)));
    assert!(fut.done());
    assert!(matches!(fut.add_done_callback(|_| ()), Err(Error::Closed)));
}

#[test]
fn task_first_step_runs_on_the_next_iteration() {
    let lp = EventLoop::new().unwrap();
    let log = Log::new();
    let (lp2, l) = (lp.clone(), log.clone());
    lp.run_until_complete(async move {
        let l2 = l.clone();
        let task = lp2.create_task(async move { l2.push("task") }).unwrap();
        lp2.call_soon(l.cb("cb")).unwrap();
        l.push("creator");
        task.await.unwrap();
    })
    .unwrap();
    assert_eq!(log.get(), vec!["creator", "task", "cb"]);
}

#[test]
fn task_result_name_and_state() {
    let lp = EventLoop::new().unwrap();
    let task = lp.create_task(async { 41 + 1 }).unwrap();
    assert!(task.get_name().starts_with("Task-"));
    task.set_name("answer");
    assert_eq!(task.get_name(), "answer");
    assert!(!task.done());
    assert_eq!(task.get_loop().unwrap(), lp);
    let named = lp.create_task_named(async {}, "named").unwrap();
    assert_eq!(named.get_name(), "named");
    let out = lp.run_until_complete(async { task.await }).unwrap();
    assert_eq!(out.unwrap(), 42);
}

#[test]
fn cancelled_task_drops_its_future_at_the_next_step() {
    let lp = EventLoop::new().unwrap();
    let drops = DropCounter::new();
    let log = Log::new();
    let token = drops.token();
    let l = log.clone();
    let task = lp
        .create_task(async move {
            let _token = token;
            l.push("started");
            evloop::sleep(Duration::from_secs(3600)).await.unwrap();
            l.push("never");
        })
        .unwrap();
    let (lp2, d) = (lp.clone(), drops.clone());
    let outcome = lp
        .run_until_complete(async move {
            evloop::sleep(Duration::ZERO).await.unwrap();
            assert_eq!(d.dropped(), 0);
            assert!(task.cancel());
            assert!(
                task.cancel(),
                "a second request while pending is still true"
            );
            let r = task.await;
            let _ = lp2;
            r
        })
        .unwrap();
    assert!(matches!(outcome, Err(TaskError::Cancelled(_))));
    assert_eq!(drops.dropped(), 1);
    assert_eq!(log.get(), vec!["started"]);
}

#[test]
fn task_cancelled_before_its_first_step_never_runs() {
    let lp = EventLoop::new().unwrap();
    let inner_log = Log::new();
    let il = inner_log.clone();
    let victim = lp.create_task(async move { il.push(1) }).unwrap();
    assert!(victim.cancel());
    let r = lp.run_until_complete(victim).unwrap();
    assert!(matches!(r, Err(TaskError::Cancelled(_))));
    assert!(inner_log.get().is_empty());
}

#[test]
fn cancel_a_done_task_returns_false() {
    let lp = EventLoop::new().unwrap();
    let task = lp.create_task(async { 1 }).unwrap();
    let lp2 = lp.clone();
    lp.run_until_complete(async move {
        while !task.done() {
            evloop::sleep(Duration::ZERO).await.unwrap();
        }
        assert!(!task.cancel());
        assert!(!task.cancelled());
        let _ = lp2;
    })
    .unwrap();
}

#[test]
fn panicking_task_result_is_panicked() {
    let lp = EventLoop::new().unwrap();
    let errors = record_exceptions(&lp);
    let task = lp.create_task(async { panic!("task broke") }).unwrap();
    match lp.run_until_complete(task).unwrap() {
        Err(TaskError::Panicked(p)) => assert_eq!(evloop::panic_message(&p), "task broke"),
        other => panic!("{other:?}"),
    }
    // Retrieved through the handle: nothing reported.
    assert!(errors.get().is_empty());
}

#[test]
fn unretrieved_task_panic_reaches_the_exception_handler() {
    let lp = EventLoop::new().unwrap();
    let errors = record_exceptions(&lp);
    // Handle dropped before the task runs.
    drop(lp.create_task(async { panic!("nobody listens") }).unwrap());
    // Handle dropped after the task finished.
    let finished = lp.create_task(async { panic!("too late") }).unwrap();
    lp.run_until_complete(evloop::sleep(Duration::from_millis(5)))
        .unwrap()
        .unwrap();
    assert_eq!(errors.len(), 1);
    assert!(finished.done());
    drop(finished);
    let e = errors.get();
    assert_eq!(e.len(), 2);
    assert_eq!(e[0].0, "Task exception was never retrieved");
    assert_eq!(e[0].1.as_deref(), Some("nobody listens"));
    assert_eq!(e[1].1.as_deref(), Some("too late"));
}

#[test]
fn waking_from_the_loop_thread_and_from_other_threads() {
    let lp = EventLoop::new().unwrap();
    // A channel from another thread (remote wake) and a local future (local wake).
    let (tx, rx) = futures::channel::oneshot::channel::<u32>();
    let local = lp.create_future::<u32>();
    let local2 = local.clone();
    let lp2 = lp.clone();
    let task = lp
        .create_task(async move {
            lp2.call_soon(move || local2.set_result(1).unwrap())
                .unwrap();
            let a = local.await.unwrap();
            let b = rx.await.unwrap();
            a + b
        })
        .unwrap();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(10));
        tx.send(2).unwrap();
    });
    let out = within(Duration::from_secs(10), move || {
        lp.run_until_complete(task).unwrap()
    });
    assert_eq!(out.unwrap(), 3);
}

#[test]
fn tasks_created_from_another_thread_run_on_the_loop() {
    let lp = EventLoop::new().unwrap();
    let loop_thread = std::thread::current().id();
    let lp2 = lp.clone();
    let task = std::thread::spawn(move || {
        lp2.create_task(async { std::thread::current().id() })
            .unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(lp.run_until_complete(task).unwrap().unwrap(), loop_thread);
}

#[test]
fn many_tasks_all_complete_and_leave_the_registry() {
    let lp = EventLoop::new().unwrap();
    let lp2 = lp.clone();
    let sum = lp
        .run_until_complete(async move {
            let tasks: Vec<_> = (0..10_000u64)
                .map(|i| {
                    lp2.create_task(async move {
                        evloop::sleep(Duration::ZERO).await.unwrap();
                        i
                    })
                    .unwrap()
                })
                .collect();
            let mut sum = 0;
            for t in tasks {
                sum += t.await.unwrap();
            }
            sum
        })
        .unwrap();
    assert_eq!(sum, (0..10_000u64).sum());
    assert_eq!(lp.stats().tasks, 0, "finished tasks leave the registry");
}

#[test]
fn task_factory_wraps_every_task() {
    let lp = EventLoop::new().unwrap();
    let log = Log::new();
    let l = log.clone();
    let factory: evloop::TaskFactory = Arc::new(move |_lp, spec: TaskSpec| {
        let l = l.clone();
        let name = spec.name.clone().unwrap_or_else(|| "anon".into());
        let inner = spec.future;
        TaskSpec {
            name: Some(format!("factory-{name}")),
            future: Box::pin(async move {
                l.push(format!("start {name}"));
                inner.await;
                l.push(format!("end {name}"));
            }),
        }
    });
    lp.set_task_factory(Some(factory));
    assert!(lp.get_task_factory().is_some());
    let task = lp.create_task_named(async { 5 }, "t").unwrap();
    assert_eq!(task.get_name(), "factory-t");
    assert_eq!(lp.run_until_complete(task).unwrap().unwrap(), 5);
    assert!(log.get().contains(&"start t".to_string()));
    assert!(log.get().contains(&"end t".to_string()));
    lp.set_task_factory(None);
    assert!(lp.get_task_factory().is_none());
    let plain = lp.create_task_named(async { 6 }, "p").unwrap();
    assert_eq!(plain.get_name(), "p");
    assert_eq!(lp.run_until_complete(plain).unwrap().unwrap(), 6);
}

#[test]
fn task_factory_that_drops_the_future_yields_a_clear_panic() {
    let lp = EventLoop::new().unwrap();
    lp.set_task_factory(Some(Arc::new(|_lp, spec: TaskSpec| TaskSpec {
        future: Box::pin(async {}),
        name: spec.name,
    })));
    let task = lp.create_task(async { 1 }).unwrap();
    match lp.run_until_complete(task).unwrap() {
        Err(TaskError::Panicked(p)) => {
            assert!(evloop::panic_message(&p).contains("task factory"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn awaiting_a_task_from_another_loop() {
    let a = EventLoop::new().unwrap();
    let b = EventLoop::new().unwrap();
    let runner = a.clone();
    let thread = std::thread::spawn(move || runner.run_forever().unwrap());
    let task = a
        .create_task(async {
            std::thread::sleep(Duration::from_millis(10));
            "from a"
        })
        .unwrap();
    // Awaited from inside a future of loop b: fine, across threads.
    let out = b
        .run_until_complete(async move {
            let out = task.await;
            evloop::sleep(Duration::ZERO).await.unwrap();
            out
        })
        .unwrap()
        .unwrap();
    assert_eq!(out, "from a");
    a.stop();
    thread.join().unwrap();
}

#[test]
fn run_until_complete_refuses_a_task_or_future_of_another_loop() {
    // asyncio: ValueError('The future belongs to a different loop than the
    // one specified as the loop argument'), at once, even while the other
    // loop is idle (it would otherwise wait forever).
    within(Duration::from_secs(10), || {
        let a = EventLoop::new().unwrap();
        let b = EventLoop::new().unwrap();
        let task = a.create_task(async { 1 }).unwrap();
        let err = b.run_until_complete(&task).unwrap_err();
        assert!(matches!(err, Error::ForeignFuture), "{err:?}");
        assert_eq!(
            err.to_string(),
            "The future belongs to a different loop than the one specified as the loop argument"
        );
        let err = b.run_until_complete(task).unwrap_err();
        assert!(matches!(err, Error::ForeignFuture));
        let fut = a.create_future::<u8>();
        assert!(matches!(
            b.run_until_complete(fut.clone()),
            Err(Error::ForeignFuture)
        ));
        assert!(matches!(
            b.run_until_complete(&fut),
            Err(Error::ForeignFuture)
        ));
        // The refusal costs nothing: both loops still work, and the future
        // was not cancelled or consumed.
        assert!(!fut.done());
        fut.set_result(3).unwrap();
        assert_eq!(a.run_until_complete(fut).unwrap().unwrap(), 3);
        assert_eq!(b.run_until_complete(async { 5 }).unwrap(), 5);
    });
}

#[test]
fn stopping_the_loop_ends_run_until_complete() {
    // asyncio: RuntimeError('Event loop stopped before Future completed.'),
    // and the future's task is cancelled (here, at its next step).
    let lp = EventLoop::new().unwrap();
    let stopper = lp.clone();
    let r = within(Duration::from_secs(10), move || {
        lp.call_soon(move || stopper.stop()).unwrap();
        let r = lp.run_until_complete(evloop::sleep(Duration::from_secs(3600)));
        // The abandoned driver task is gone after the next iteration.
        run_one_iteration(&lp);
        assert!(lp.all_tasks().unwrap().is_empty());
        r
    });
    assert!(matches!(r, Err(Error::StoppedBeforeComplete)));
    assert_eq!(
        r.unwrap_err().to_string(),
        "Event loop stopped before Future completed."
    );
}

#[test]
fn done_callbacks_see_the_result_before_an_awaiter_takes_it() {
    let lp = EventLoop::new().unwrap();
    let log = Log::new();
    let fut = lp.create_future::<String>();
    let (f, l) = (fut.clone(), log.clone());
    let awaiter = lp
        .create_task(async move {
            let v = f.await.unwrap();
            l.push(format!("awaited {v}"));
        })
        .unwrap();
    run_one_iteration(&lp);
    let l = log.clone();
    fut.add_done_callback(move |f| l.push(format!("callback {}", f.result().unwrap())))
        .unwrap();
    fut.set_result("v".into()).unwrap();
    lp.run_until_complete(awaiter).unwrap().unwrap();
    assert_eq!(log.get(), vec!["callback v", "awaited v"]);
}

#[test]
fn a_failed_future_dropped_unread_is_reported() {
    let lp = EventLoop::new().unwrap();
    let errors = record_exceptions(&lp);
    let fut = lp.create_future::<u8>();
    fut.set_exception(std::io::Error::other("lost")).unwrap();
    drop(fut);
    // Read through result(): not reported. Awaited: not reported.
    let read = lp.create_future::<u8>();
    read.set_exception(std::io::Error::other("read")).unwrap();
    assert!(read.result().is_err());
    drop(read);
    let awaited = lp.create_future::<u8>();
    awaited
        .set_exception(std::io::Error::other("awaited"))
        .unwrap();
    assert!(lp.run_until_complete(awaited).unwrap().is_err());
    // Cancelled or successful futures are never reported.
    lp.create_future::<u8>().cancel();
    lp.create_future::<u8>().set_result(1).unwrap();
    // A panicking executor job whose future nobody awaits.
    let job = lp
        .run_in_executor(None, || -> u8 { panic!("job nobody awaited") })
        .unwrap();
    let lp2 = lp.clone();
    lp.run_until_complete(async move {
        while !job.done() {
            evloop::sleep(Duration::from_millis(1)).await.unwrap();
        }
        drop(job);
        let _ = lp2;
    })
    .unwrap();
    // The worker may still hold the future's last clone when the task
    // drops its own: the report then comes from the worker's drop, posted
    // to the loop.
    common::net::run_until(&lp, Duration::from_secs(30), || errors.len() >= 2);
    let e = errors.get();
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e.iter()
            .all(|(m, _)| m == "Future exception was never retrieved")
    );
    assert_eq!(e[1].1.as_deref(), Some("job nobody awaited"));
}

#[test]
fn task_done_callbacks_run_in_order_before_the_awaiter_resumes() {
    let lp = EventLoop::new().unwrap();
    let log = Log::new();
    let gate = lp.create_future::<u8>();
    let g = gate.clone();
    let task = lp
        .create_task_named(
            async move {
                g.await.unwrap();
                7
            },
            "worker",
        )
        .unwrap();
    for i in 0..3 {
        let l = log.clone();
        task.add_done_callback(move |done| {
            assert_eq!(done.info.name, "worker");
            l.push(format!("cb{i} {:?}", done.outcome));
        })
        .unwrap();
    }
    let removed = task.add_done_callback(|_| panic!("removed")).unwrap();
    assert_eq!(task.remove_done_callback(removed), 1);
    assert_eq!(task.remove_done_callback(removed), 0);
    let l = log.clone();
    let awaiter = lp
        .create_task(async move {
            let v = task.await.unwrap();
            l.push(format!("awaiter got {v}"));
        })
        .unwrap();
    // Both tasks start and block: the worker on the gate, the awaiter on
    // the worker.
    run_one_iteration(&lp);
    let l = log.clone();
    gate.add_done_callback(move |_| l.push("gate opened".into()))
        .unwrap();
    gate.set_result(1).unwrap();
    lp.run_until_complete(awaiter).unwrap().unwrap();
    assert_eq!(
        log.get(),
        vec![
            "gate opened",
            "cb0 Returned",
            "cb1 Returned",
            "cb2 Returned",
            "awaiter got 7"
        ]
    );
}

#[test]
fn task_done_callback_added_late_is_scheduled_not_inline() {
    let lp = EventLoop::new().unwrap();
    let log = Log::new();
    let mut task = lp.create_task(async { 1 }).unwrap();
    assert_eq!(lp.run_until_complete(task.wait()).unwrap().unwrap(), 1);
    let l = log.clone();
    let id = task
        .add_done_callback(move |done| l.push(done.outcome))
        .unwrap();
    assert_eq!(log.len(), 0, "never inline");
    assert_eq!(task.remove_done_callback(id), 0, "already scheduled");
    run_one_iteration(&lp);
    assert_eq!(log.get(), vec![evloop::TaskOutcome::Returned]);
    // Scheduling on a closed loop is refused, as any call_soon.
    lp.close().unwrap();
    assert!(matches!(task.add_done_callback(|_| {}), Err(Error::Closed)));
}

#[test]
fn task_done_callbacks_see_cancellation_and_panics() {
    let lp = EventLoop::new().unwrap();
    let errors = record_exceptions(&lp);
    let log = Log::new();
    let cancelled = lp
        .create_task(evloop::sleep(Duration::from_secs(3600)))
        .unwrap();
    let l = log.clone();
    cancelled
        .add_done_callback(move |d| l.push((d.outcome, d.cancelled())))
        .unwrap();
    assert!(cancelled.cancel());
    let panicking = lp.create_task(async { panic!("boom") }).unwrap();
    let l = log.clone();
    panicking
        .add_done_callback(move |d| l.push((d.outcome, d.cancelled())))
        .unwrap();
    // The handle is dropped: the panic is still reported as never
    // retrieved, and the callback still runs.
    drop(panicking);
    let l = log.clone();
    lp.run_until_complete(async move {
        while l.len() < 2 {
            evloop::sleep(Duration::ZERO).await.unwrap();
        }
    })
    .unwrap();
    let mut got = log.get();
    got.sort_by_key(|(o, _)| *o as u8);
    assert_eq!(
        got,
        vec![
            (evloop::TaskOutcome::Panicked, false),
            (evloop::TaskOutcome::Cancelled, true)
        ]
    );
    assert!(cancelled.cancelled());
    let e = errors.get();
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, "Task exception was never retrieved");
}

#[test]
fn task_done_callbacks_added_from_other_threads_run_exactly_once() {
    // Threads add callbacks while the task completes: each callback is
    // either taken by the completion or scheduled by its adder, never
    // both and never neither.
    for _ in 0..50 {
        let lp = EventLoop::new().unwrap();
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let task = Arc::new(lp.create_task(async { 0u8 }).unwrap());
        let adders: Vec<_> = (0..4)
            .map(|_| {
                let (t, c) = (task.clone(), count.clone());
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        let c = c.clone();
                        t.add_done_callback(move |_| {
                            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        run_one_iteration(&lp);
        for a in adders {
            a.join().unwrap();
        }
        run_one_iteration(&lp);
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 400);
        assert!(task.done());
        lp.close().unwrap();
    }
}

#[test]
fn current_task_names_the_running_task_and_none_in_callbacks() {
    assert!(matches!(evloop::current_task(), Err(Error::NoRunningLoop)));
    let lp = EventLoop::new().unwrap();
    let log = Log::new();
    let l = log.clone();
    let task = lp
        .create_task_named(
            async move {
                let me = evloop::current_task().unwrap().unwrap();
                l.push(format!("task {}", me.name));
                // Still the same task after a suspension.
                evloop::sleep(Duration::ZERO).await.unwrap();
                let again = evloop::current_task().unwrap().unwrap();
                assert_eq!(again.id, me.id);
                me.id
            },
            "worker",
        )
        .unwrap();
    let id = task.id();
    let l = log.clone();
    lp.call_soon(move || l.push(format!("callback {:?}", evloop::current_task().unwrap())))
        .unwrap();
    // run_until_complete drives its future with a task of its own.
    let root = lp
        .run_until_complete(async move {
            let got = task.await.unwrap();
            assert_eq!(got, id);
            evloop::current_task().unwrap().unwrap()
        })
        .unwrap();
    assert!(root.name.starts_with("Task-"), "{}", root.name);
    assert_ne!(root.id, id);
    assert_eq!(log.get(), vec!["task worker", "callback None"]);
}

#[test]
fn all_tasks_lists_pending_tasks_from_every_thread() {
    let lp = EventLoop::new().unwrap();
    assert!(lp.all_tasks().unwrap().is_empty());
    let gate = lp.create_future::<()>();
    let g = gate.clone();
    let waiting = lp
        .create_task_named(
            async move {
                g.await.unwrap();
            },
            "waiting",
        )
        .unwrap();
    // Created on another thread while the loop is idle: not started yet,
    // still listed.
    let lp2 = lp.clone();
    let remote = std::thread::spawn(move || lp2.create_task_named(async { 1 }, "remote").unwrap())
        .join()
        .unwrap();
    let mut names: Vec<_> = lp
        .all_tasks()
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    names.sort();
    assert_eq!(names, ["remote", "waiting"]);
    assert_eq!(lp.stats().tasks, 2);

    // From inside the loop: the current task is listed, finished ones are
    // not; from another thread while it runs, a clear error.
    let lp3 = lp.clone();
    let (inside, outside) = lp
        .run_until_complete(async move {
            assert_eq!(remote.await.unwrap(), 1);
            let me = evloop::current_task().unwrap().unwrap();
            let mut inside: Vec<_> = evloop::all_tasks()
                .unwrap()
                .into_iter()
                .map(|t| {
                    if t.id == me.id {
                        "me".to_string()
                    } else {
                        t.name
                    }
                })
                .collect();
            inside.sort();
            let outside = std::thread::spawn(move || lp3.all_tasks().map(|v| v.len()))
                .join()
                .unwrap();
            (inside, outside)
        })
        .unwrap();
    assert_eq!(inside, ["me", "waiting"]);
    assert!(
        matches!(outside, Err(Error::InvalidState(_))),
        "{outside:?}"
    );
    gate.set_result(()).unwrap();
    lp.run_until_complete(waiting).unwrap().unwrap();
    assert!(lp.all_tasks().unwrap().is_empty());
    assert_eq!(lp.stats().tasks, 0);
    lp.close().unwrap();
    assert!(lp.all_tasks().unwrap().is_empty());
}

#[test]
fn run_cancels_tasks_posted_from_other_threads_that_never_started() {
    // Cancelled by `run` (its future dropped while the loop still runs),
    // not merely dropped when the loop closes.
    struct SeesLoop(Log<bool>);
    impl Drop for SeesLoop {
        fn drop(&mut self) {
            self.0.push(evloop::get_running_loop().is_ok());
        }
    }
    let log = Log::new();
    let l = log.clone();
    let out = evloop::run(async move {
        let lp = evloop::get_running_loop().unwrap();
        std::thread::spawn(move || {
            let guard = SeesLoop(l);
            lp.create_task(async move {
                let _guard = guard;
                evloop::sleep(Duration::from_secs(3600)).await.unwrap();
            })
            .unwrap()
        })
        .join()
        .unwrap();
        "done"
    })
    .unwrap();
    assert_eq!(out, "done");
    assert_eq!(log.get(), vec![true]);
}

#[test]
fn many_tasks_await_one_future_by_reference_like_asyncio() {
    let lp = EventLoop::new().unwrap();
    let fut = lp.create_future::<Vec<u32>>();
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let f = fut.clone();
            lp.create_task(async move { (&f).await.map(|v| v.iter().sum::<u32>()) })
                .unwrap()
        })
        .collect();
    let failed = lp.create_future::<u8>();
    let f = failed.clone();
    let failed_reader = lp
        .create_task(async move { (&f).await.map(u32::from) })
        .unwrap();
    run_one_iteration(&lp);
    fut.set_result(vec![1, 2, 3]).unwrap();
    failed
        .set_exception(std::io::Error::other("shared failure"))
        .unwrap();
    for r in readers {
        assert_eq!(lp.run_until_complete(r).unwrap().unwrap().unwrap(), 6);
    }
    match lp.run_until_complete(failed_reader).unwrap().unwrap() {
        Err(TaskError::Exception(e)) => assert_eq!(e.to_string(), "shared failure"),
        other => panic!("{other:?}"),
    }
    // Still there for result() and for a final by-value await.
    assert_eq!(fut.result().unwrap(), [1, 2, 3]);
    assert_eq!(lp.run_until_complete(fut).unwrap().unwrap(), [1, 2, 3]);
}

/// asyncio's `exception()` returns the same exception object at every
/// read; so do a panicked task's and a panicked executor future's.
#[test]
fn reading_a_panic_twice_gives_the_same_error_object() {
    within(Duration::from_secs(20), || {
        let lp = EventLoop::new().unwrap();
        let task = lp.create_task(async { panic!("once") }).unwrap();
        lp.run_until_complete(&task).unwrap().unwrap_err();
        let shared = |e: TaskError| match e {
            TaskError::Exception(e) => e,
            other => panic!("{other:?}"),
        };
        let a = shared(task.exception().unwrap().unwrap());
        let b = shared(task.exception().unwrap().unwrap());
        let c = shared(task.result().unwrap_err());
        assert!(Arc::ptr_eq(&a, &b) && Arc::ptr_eq(&a, &c));
        assert_eq!(a.to_string(), "panicked: once");

        let fut = lp
            .run_in_executor(None, || -> u8 { panic!("in a worker") })
            .unwrap();
        lp.run_until_complete(&fut).unwrap().unwrap_err();
        let a = shared(fut.exception().unwrap().unwrap());
        let b = shared(fut.exception().unwrap().unwrap());
        let c = shared(fut.result().unwrap_err());
        assert!(Arc::ptr_eq(&a, &b) && Arc::ptr_eq(&a, &c));
        lp.close().unwrap();
    });
}
