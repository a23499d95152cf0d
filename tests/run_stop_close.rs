//! Running, stopping and closing a loop (issue 2, section 3).

mod common;

use common::{DropCounter, Log};
use evloop::{Error, EventLoop};
use std::time::Duration;

#[test]
fn stop_inside_callback_finishes_the_iteration() {
    let lp = EventLoop::new().unwrap();
    let log = Log::new();
    let (l, stopper) = (log.clone(), lp.clone());
    lp.call_soon(move || {
        l.push("a");
        stopper.stop();
    })
    .unwrap();
    let (l, lp2) = (log.clone(), lp.clone());
    lp.call_soon(move || {
        l.push("b");
        // Scheduled during the last iteration: must not run in this run.
        lp2.call_soon(l.cb("c")).unwrap();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(log.get(), vec!["a", "b"]);
    // The loop can be run again; the leftover callback runs then.
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(log.get(), vec!["a", "b", "c"]);
}

#[test]
fn stop_before_run_forever_runs_exactly_one_iteration() {
    let lp = EventLoop::new().unwrap();
    let log = Log::new();
    lp.stop();
    let (l, lp2) = (log.clone(), lp.clone());
    lp.call_soon(move || {
        l.push(1);
        lp2.call_soon(l.cb(2)).unwrap();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(log.get(), vec![1]);
    assert_eq!(lp.stats().iterations, 1);
    assert!(!lp.is_running());
}

#[test]
fn running_twice_is_an_error() {
    let lp = EventLoop::new().unwrap();
    let inner = lp.clone();
    let seen = Log::new();
    let s = seen.clone();
    lp.call_soon(move || {
        s.push(format!("{}", inner.run_forever().unwrap_err()));
        s.push(format!(
            "{}",
            inner.run_until_complete(async {}).unwrap_err()
        ));
        assert!(matches!(inner.run_forever(), Err(Error::AlreadyRunning)));
        inner.stop();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(
        seen.get(),
        vec![
            "This event loop is already running",
            "This event loop is already running"
        ]
    );
}

#[test]
fn running_from_another_thread_while_running_is_an_error() {
    let lp = EventLoop::new().unwrap();
    let other = lp.clone();
    let result = lp
        .run_until_complete(async move {
            std::thread::spawn(move || other.run_forever())
                .join()
                .unwrap()
        })
        .unwrap();
    assert!(matches!(result, Err(Error::AlreadyRunning)));
}

#[test]
fn another_loop_running_on_this_thread_is_an_error() {
    let outer = EventLoop::new().unwrap();
    let inner = EventLoop::new().unwrap();
    let err = outer
        .run_until_complete(async move { inner.run_until_complete(async { 1 }) })
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::AnotherLoopRunning));
    assert_eq!(
        err.to_string(),
        "Cannot run the event loop while another loop is running"
    );
}

#[test]
fn run_until_complete_stopped_first() {
    let lp = EventLoop::new().unwrap();
    let stopper = lp.clone();
    lp.call_soon(move || stopper.stop()).unwrap();
    let never = lp.create_future::<u8>();
    let err = lp.run_until_complete(never).unwrap_err();
    assert!(matches!(err, Error::StoppedBeforeComplete));
    assert_eq!(
        err.to_string(),
        "Event loop stopped before Future completed."
    );
    // The loop is usable afterwards.
    assert_eq!(lp.run_until_complete(async { 3 }).unwrap(), 3);
}

#[test]
fn run_until_complete_runs_callbacks_scheduled_at_the_end() {
    // asyncio: the stop happens one iteration after the future completes,
    // so a callback scheduled by the future's last step still runs.
    let lp = EventLoop::new().unwrap();
    let log = Log::new();
    let (l, lp2) = (log.clone(), lp.clone());
    let out = lp
        .run_until_complete(async move {
            let l2 = l.clone();
            let lp3 = lp2.clone();
            lp2.call_soon(move || {
                l2.push("x");
                lp3.call_soon(l2.cb("y")).unwrap();
            })
            .unwrap();
            7
        })
        .unwrap();
    assert_eq!(out, 7);
    assert_eq!(log.get(), vec!["x"]);
    lp.run_until_complete(async {}).unwrap();
    assert_eq!(log.get(), vec!["x", "y"]);
}

#[test]
fn run_until_complete_accepts_non_send_futures() {
    let lp = EventLoop::new().unwrap();
    let rc = std::rc::Rc::new(5);
    let out = lp
        .run_until_complete(async move {
            evloop::sleep(Duration::from_millis(1)).await.unwrap();
            *rc + 1
        })
        .unwrap();
    assert_eq!(out, 6);
}

#[test]
fn panic_in_root_future_propagates_and_leaves_loop_usable() {
    let lp = EventLoop::new().unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        lp.run_until_complete(async { panic!("boom in main") })
    }));
    let payload = r.unwrap_err();
    assert_eq!(evloop::panic_message(&payload), "boom in main");
    assert!(!lp.is_running());
    assert_eq!(lp.run_until_complete(async { 1 }).unwrap(), 1);
    lp.close().unwrap();
}

#[test]
fn close_running_loop_is_an_error_and_close_is_idempotent() {
    let lp = EventLoop::new().unwrap();
    let inner = lp.clone();
    let err = lp.run_until_complete(async move { inner.close() }).unwrap();
    assert!(matches!(err, Err(Error::CloseRunning)));
    assert!(!lp.is_closed());
    lp.close().unwrap();
    lp.close().unwrap();
    assert!(lp.is_closed());
}

#[test]
fn scheduling_on_a_closed_loop_is_an_error_never_a_panic() {
    let lp = EventLoop::new().unwrap();
    lp.close().unwrap();
    assert!(matches!(lp.call_soon(|| ()), Err(Error::Closed)));
    assert!(matches!(lp.call_soon_threadsafe(|| ()), Err(Error::Closed)));
    assert!(matches!(
        lp.call_later(Duration::ZERO, || ()),
        Err(Error::Closed)
    ));
    assert!(matches!(lp.call_at(lp.time(), || ()), Err(Error::Closed)));
    assert!(matches!(lp.create_task(async {}), Err(Error::Closed)));
    assert!(matches!(lp.run_forever(), Err(Error::Closed)));
    assert!(matches!(
        lp.run_until_complete(async {}),
        Err(Error::Closed)
    ));
    assert!(matches!(lp.add_reader(0, || ()), Err(Error::Closed)));
    assert!(!lp.remove_reader(0));
    assert_eq!(
        lp.call_soon(|| ()).unwrap_err().to_string(),
        "Event loop is closed"
    );
    // From another thread too.
    let other = lp.clone();
    let r = std::thread::spawn(move || other.call_soon_threadsafe(|| ()).is_err())
        .join()
        .unwrap();
    assert!(r);
}

#[test]
fn close_drops_pending_callbacks_timers_and_tasks() {
    let lp = EventLoop::new().unwrap();
    let drops = DropCounter::new();
    for i in 0..4 {
        let t = drops.token();
        lp.call_later(Duration::from_secs(60 + i), move || drop(t))
            .unwrap();
    }
    // A task that started and now waits forever, and one that never started.
    let t = drops.token();
    let waiting = lp.create_future::<()>();
    let w = waiting.clone();
    let started = lp
        .create_task(async move {
            let _keep = t;
            let _ = w.await;
        })
        .unwrap();
    lp.run_until_complete(evloop::sleep(Duration::ZERO))
        .unwrap()
        .unwrap();
    for _ in 0..3 {
        let t = drops.token();
        lp.call_soon(move || drop(t)).unwrap();
    }
    let t = drops.token();
    let unstarted = lp
        .create_task(async move {
            let _keep = t;
        })
        .unwrap();
    let t = drops.token();
    let other = lp.clone();
    std::thread::spawn(move || {
        other.call_soon_threadsafe(move || drop(t)).unwrap();
    })
    .join()
    .unwrap();
    assert_eq!(drops.dropped(), 0);
    lp.close().unwrap();
    assert_eq!(drops.dropped(), 3 + 4 + 1 + 1 + 1);
    assert!(started.done() && started.cancelled());
    assert!(unstarted.done() && unstarted.cancelled());
    let s = lp.stats();
    assert_eq!((s.ready, s.timers, s.tasks), (0, 0, 0));
}

#[test]
fn dropping_the_last_handle_closes_the_loop() {
    let drops = DropCounter::new();
    let lp = EventLoop::new().unwrap();
    let t = drops.token();
    lp.call_later(Duration::from_secs(60), move || drop(t))
        .unwrap();
    let t = drops.token();
    let fut = lp.create_future::<()>();
    let task = lp
        .create_task(async move {
            let _keep = t;
            let _ = fut.await;
        })
        .unwrap();
    drop(lp);
    assert_eq!(drops.dropped(), 2);
    assert!(task.done());
}

#[test]
fn loop_created_on_one_thread_runs_on_another_then_a_third() {
    let lp = EventLoop::new().unwrap();
    let log = Log::new();
    for thread in 0..2 {
        let lp2 = lp.clone();
        let l = log.clone();
        std::thread::spawn(move || {
            let name = std::thread::current().id();
            let l2 = l.clone();
            lp2.call_soon(move || l2.push(format!("{thread}:{name:?}")))
                .unwrap();
            lp2.stop();
            lp2.run_forever().unwrap();
            assert!(!lp2.is_running());
        })
        .join()
        .unwrap();
    }
    let got = log.get();
    assert_eq!(got.len(), 2);
    assert!(got[0].starts_with("0:") && got[1].starts_with("1:"));
    assert_ne!(got[0][2..], got[1][2..]);
    lp.close().unwrap();
}

#[test]
fn is_running_reflects_the_run() {
    let lp = EventLoop::new().unwrap();
    assert!(!lp.is_running());
    let inner = lp.clone();
    assert!(
        lp.run_until_complete(async move { inner.is_running() })
            .unwrap()
    );
    assert!(!lp.is_running());
}

#[test]
// Hashing and equality use the loop's identity, which its interior
// mutability never changes.
#[allow(clippy::mutable_key_type)]
fn equality_is_identity() {
    let a = EventLoop::new().unwrap();
    let b = EventLoop::new().unwrap();
    assert_eq!(a, a.clone());
    assert_ne!(a, b);
    let mut set = std::collections::HashSet::new();
    set.insert(a.clone());
    assert!(set.contains(&a) && !set.contains(&b));
}

#[test]
fn closing_with_pending_tasks_reports_each_like_asyncio() {
    // CPython: "Task was destroyed but it is pending!" for every task that
    // goes away unfinished; the handler may look at the closing loop.
    let lp = EventLoop::new().unwrap();
    let seen = Log::new();
    let s = seen.clone();
    lp.set_exception_handler(Some(std::sync::Arc::new(move |lp: &EventLoop, ctx| {
        let name = ctx
            .task
            .as_ref()
            .map(|t| t.name.clone())
            .unwrap_or_default();
        // Looking at the closing loop from its handler neither blocks nor
        // panics.
        let _ = (lp.is_closed(), lp.stats(), lp.all_tasks());
        s.push(format!("{}: {name}", ctx.message));
    })));
    let waiting = lp
        .create_task_named(evloop::sleep(Duration::from_secs(3600)), "waiting")
        .unwrap();
    lp.run_until_complete(evloop::sleep(Duration::ZERO))
        .unwrap()
        .unwrap();
    let finished = lp.create_task_named(async {}, "finished").unwrap();
    lp.run_until_complete(finished).unwrap().unwrap();
    let _unstarted = lp.create_task_named(async {}, "unstarted").unwrap();
    lp.close().unwrap();
    let mut got = seen.get();
    got.sort();
    assert_eq!(
        got,
        [
            "Task was destroyed but it is pending!: unstarted",
            "Task was destroyed but it is pending!: waiting"
        ]
    );
    assert!(waiting.cancelled());
    // evloop::run cancels its leftovers first, so it reports none.
    let quiet = Log::<String>::new();
    let q = quiet.clone();
    evloop::run(async move {
        let lp = evloop::get_running_loop().unwrap();
        lp.set_exception_handler(Some(std::sync::Arc::new(move |_: &EventLoop, ctx| {
            q.push(ctx.message.clone())
        })));
        drop(evloop::spawn(evloop::sleep(Duration::from_secs(3600))).unwrap());
    })
    .unwrap();
    assert!(quiet.get().is_empty(), "{:?}", quiet.get());
}
