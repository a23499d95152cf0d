//! Exception handler and debug mode (issue 2, section 7).

mod common;

use common::{Log, capture_tracing, record_exceptions, run_one_iteration};
use evloop::{EventLoop, ExceptionContext};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn set_get_and_restore_the_exception_handler() {
    let lp = EventLoop::new().unwrap();
    assert!(lp.get_exception_handler().is_none());
    let errors = record_exceptions(&lp);
    assert!(lp.get_exception_handler().is_some());
    lp.call_exception_handler(ExceptionContext::new("custom report"));
    assert_eq!(errors.get()[0].0, "custom report");
    lp.set_exception_handler(None);
    assert!(lp.get_exception_handler().is_none());
    // The default handler logs through tracing::error!.
    let (_, logged) = capture_tracing(|| {
        lp.call_exception_handler(
            ExceptionContext::new("default report")
                .with_error(Arc::new(std::io::Error::other("eio"))),
        )
    });
    assert!(logged.contains("ERROR"), "{logged}");
    assert!(
        logged.contains("default report") && logged.contains("eio"),
        "{logged}"
    );
    assert_eq!(errors.len(), 1);
}

#[test]
fn default_handler_logs_a_panicking_callback() {
    let lp = EventLoop::new().unwrap();
    lp.call_soon(|| panic!("logged panic")).unwrap();
    let (_, logged) = capture_tracing(|| run_one_iteration(&lp));
    assert!(logged.contains("Exception in callback"), "{logged}");
    assert!(logged.contains("logged panic"), "{logged}");
}

#[test]
fn a_panicking_handler_is_reported_and_does_not_stop_the_loop() {
    let lp = EventLoop::new().unwrap();
    lp.set_exception_handler(Some(Arc::new(|_lp, _ctx| panic!("handler broke"))));
    let log = Log::new();
    lp.call_soon(|| panic!("first")).unwrap();
    lp.call_soon(log.cb("still running")).unwrap();
    let (_, logged) = capture_tracing(|| run_one_iteration(&lp));
    assert!(
        logged.contains("Unhandled error in exception handler"),
        "{logged}"
    );
    assert!(
        logged.contains("handler broke") && logged.contains("first"),
        "{logged}"
    );
    assert_eq!(log.get(), vec!["still running"]);
}

#[test]
fn handler_receives_the_loop_and_task_info() {
    let lp = EventLoop::new().unwrap();
    let seen = Log::new();
    let s = seen.clone();
    let expected = lp.clone();
    lp.set_exception_handler(Some(Arc::new(move |lp, ctx| {
        assert_eq!(*lp, expected);
        let task = ctx.task.as_ref().unwrap();
        s.push((task.name.clone(), task.created_at.file().to_string()));
    })));
    let t = lp
        .create_task_named(async { panic!("x") }, "worker")
        .unwrap();
    drop(t);
    run_one_iteration(&lp);
    assert_eq!(
        seen.get(),
        vec![("worker".to_string(), file!().to_string())]
    );
}

#[test]
fn debug_mode_toggles_and_logs_slow_callbacks_with_their_origin() {
    let lp = EventLoop::new().unwrap();
    assert_eq!(lp.slow_callback_duration(), Duration::from_millis(100));
    lp.set_debug(true);
    assert!(lp.get_debug());
    lp.set_slow_callback_duration(Duration::from_millis(20));
    assert_eq!(lp.slow_callback_duration(), Duration::from_millis(20));
    let line = line!() + 1;
    lp.call_soon(|| std::thread::sleep(Duration::from_millis(40)))
        .unwrap();
    lp.call_soon(|| ()).unwrap();
    let (_, logged) = capture_tracing(|| run_one_iteration(&lp));
    assert!(logged.contains("WARN"), "{logged}");
    assert!(
        logged.contains("Executing <Handle scheduled at"),
        "{logged}"
    );
    // The slow callback is named by where it was scheduled. (The trivial
    // one may be reported too on a loaded machine; nothing asserts that
    // it is fast.)
    assert!(logged.contains(&format!("{}:{line}", file!())), "{logged}");
    // A slow task step is reported too, with the task's name.
    let t = lp
        .create_task_named(
            async { std::thread::sleep(Duration::from_millis(40)) },
            "slowpoke",
        )
        .unwrap();
    let (_, logged) = capture_tracing(|| lp.run_until_complete(t).unwrap().unwrap());
    assert!(logged.contains("slowpoke"), "{logged}");
    // Off: nothing is timed.
    lp.set_debug(false);
    lp.call_soon(|| std::thread::sleep(Duration::from_millis(40)))
        .unwrap();
    let (_, logged) = capture_tracing(|| run_one_iteration(&lp));
    assert!(!logged.contains("Executing"), "{logged}");
}
