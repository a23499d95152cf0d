//! The smaller public methods, each through the public API.

mod common;

use common::{Log, capture_tracing, within};
use evloop::{ConcurrentFuture, EventLoop, ExceptionContext, TaskError, ThreadPoolExecutor};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn concurrent_future_done_callbacks_and_states() {
    let f = ConcurrentFuture::<u8>::new();
    let log = Log::new();
    let l = log.clone();
    f.add_done_callback(move |f| l.push(format!("done, cancelled={}", f.cancelled())));
    assert!(!f.done() && !f.running());
    assert!(f.set_running_or_notify_cancel());
    assert!(f.running());
    assert!(!f.cancel(), "running: cannot cancel");
    assert!(f.set_result(3));
    assert!(!f.set_result(4), "already done");
    assert_eq!(log.get(), vec!["done, cancelled=false"]);
    // Added after completion: runs at once.
    let l = log.clone();
    f.add_done_callback(move |_| l.push("late".into()));
    assert_eq!(log.len(), 2);
    assert_eq!(f.result(None).unwrap(), 3);
    assert!(f.result(None).is_err(), "taken");
    // Cancelled before it started: the work must not start.
    let g = ConcurrentFuture::<u8>::default();
    assert!(g.cancel());
    assert!(!g.set_running_or_notify_cancel());
    assert!(g.cancelled() && g.done());
    // A panicking done callback is logged, not propagated.
    let h = ConcurrentFuture::<u8>::new();
    h.add_done_callback(|_| panic!("callback broke"));
    let (_, logged) = capture_tracing(|| assert!(h.complete(Err(TaskError::Cancelled(None)))));
    assert!(logged.contains("callback broke"), "{logged}");
}

#[test]
fn task_error_helpers() {
    let lp = EventLoop::new().unwrap();
    let t = lp.create_task(async { panic!("p") }).unwrap();
    let err: TaskError = lp.run_until_complete(t).unwrap().unwrap_err();
    assert!(err.is_panic() && !err.is_cancelled());
    assert_eq!(err.to_string(), "panicked: p");
    let payload = err.into_panic().unwrap();
    assert_eq!(evloop::panic_message(&payload), "p");
    assert!(TaskError::Cancelled(None).is_cancelled());
    assert!(TaskError::Cancelled(None).into_panic().is_none());
    assert_eq!(format!("{:?}", TaskError::Timeout), "Timeout");
}

#[test]
fn future_get_loop_and_shared_exception() {
    let lp = EventLoop::new().unwrap();
    let fut = lp.create_future::<u8>();
    assert_eq!(fut.get_loop().unwrap(), lp);
    let shared: evloop::SharedError = Arc::new(std::io::Error::other("shared"));
    fut.set_shared_exception(shared.clone()).unwrap();
    match fut.result() {
        Err(TaskError::Exception(e)) => assert!(Arc::ptr_eq(&e, &shared)),
        other => panic!("{other:?}"),
    }
    assert!(format!("{fut:?}").contains("finished"));
}

#[test]
fn task_ids_are_unique_and_debug_shows_the_name() {
    let lp = EventLoop::new().unwrap();
    let a = lp.create_task(async {}).unwrap();
    let b = lp.create_task_named(async {}, "bee").unwrap();
    assert_ne!(a.id(), b.id());
    assert!(a.get_name().starts_with("Task-"), "{}", a.get_name());
    assert!(format!("{b:?}").contains("bee"));
}

#[test]
fn timer_handle_as_handle_and_debug() {
    let lp = EventLoop::new().unwrap();
    let t = lp.call_later(Duration::from_secs(5), || ()).unwrap();
    let h = t.as_handle();
    h.cancel();
    assert!(t.cancelled());
    assert!(format!("{t:?}").contains("cancelled: true"));
    assert_eq!(h.scheduled_at().file(), file!());
}

#[test]
fn default_exception_handler_method_and_context_builders() {
    let lp = EventLoop::new().unwrap();
    let ctx = ExceptionContext::new("built")
        .with_panic(Box::new("boxed panic"))
        .with_error(Arc::new(std::io::Error::other("io")));
    assert_eq!(ctx.panic_message(), Some("boxed panic"));
    let text = ctx.to_string();
    assert!(text.contains("built") && text.contains("boxed panic") && text.contains("io"));
    let (_, logged) = capture_tracing(|| lp.default_exception_handler(&ctx));
    assert!(
        logged.contains("ERROR") && logged.contains("built"),
        "{logged}"
    );
    let (_, logged) = capture_tracing(|| evloop::default_exception_handler(&ctx));
    assert!(logged.contains("built"), "{logged}");
}

#[test]
fn spin_before_park_is_configurable() {
    let lp = EventLoop::new().unwrap();
    assert_eq!(lp.spin_before_park(), evloop::DEFAULT_SPIN);
    lp.set_spin_before_park(Duration::ZERO);
    assert_eq!(lp.spin_before_park(), Duration::ZERO);
    // With spinning off the loop still wakes for posts: a parked loop
    // runs a post, and is woken by an eventfd write to do so.
    within(Duration::from_secs(30), move || {
        let lp2 = lp.clone();
        let thread = std::thread::spawn(move || lp2.run_forever().unwrap());
        while lp.stats().parks == 0 {
            std::thread::yield_now();
        }
        let (tx, rx) = std::sync::mpsc::channel();
        lp.call_soon_threadsafe(move || tx.send(()).unwrap())
            .unwrap();
        rx.recv().unwrap();
        assert_eq!(lp.stats().wakeups, 1);
        lp.stop();
        thread.join().unwrap();
    });
}

#[test]
fn pool_builder_options() {
    let pool = ThreadPoolExecutor::builder()
        .max_workers(0) // clamped to 1
        .thread_name_prefix("custom")
        .stack_size(256 * 1024)
        .keep_alive(Duration::from_secs(1))
        .build();
    assert_eq!(pool.max_workers(), 1);
    let name = pool
        .submit(|| std::thread::current().name().unwrap().to_string())
        .unwrap()
        .result(None)
        .unwrap();
    assert_eq!(name, "custom-0");
    assert!(format!("{pool:?}").contains("max_workers: 1"));
    pool.shutdown(true);
    assert_eq!(
        ThreadPoolExecutor::default().max_workers(),
        evloop::default_max_workers()
    );
}

#[test]
fn errors_display_with_asyncio_wording() {
    use evloop::Error;
    let cases = [
        (Error::Closed, "Event loop is closed"),
        (Error::AlreadyRunning, "This event loop is already running"),
        (
            Error::AnotherLoopRunning,
            "Cannot run the event loop while another loop is running",
        ),
        (Error::CloseRunning, "Cannot close a running event loop"),
        (
            Error::StoppedBeforeComplete,
            "Event loop stopped before Future completed.",
        ),
        (Error::NoRunningLoop, "no running event loop"),
        (
            Error::ExecutorShutdown,
            "cannot schedule new futures after shutdown",
        ),
        (Error::InvalidFd(-1), "Invalid file descriptor: -1"),
    ];
    for (e, text) in cases {
        assert_eq!(e.to_string(), text);
    }
    let io: Error = std::io::Error::from_raw_os_error(libc::EBADF).into();
    assert!(std::error::Error::source(&io).is_some());
}
