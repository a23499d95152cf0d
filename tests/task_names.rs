//! asyncio's default task names: a process-wide counter that only tasks
//! created without a name advance. One test in this binary, because the
//! counter is process-wide.

use evloop::EventLoop;

#[test]
fn default_task_names_follow_asyncios_counter() {
    // The sequence checked against CPython 3.11:
    //   t = loop.create_task(f())            -> Task-1
    //   loop.run_until_complete(t)           (no number: it is a task)
    //   loop.run_until_complete(f())         -> Task-2 (the wrapping task)
    //   loop.create_task(f(), name='x')      (no number)
    //   loop.create_task(f())                -> Task-3
    let lp = EventLoop::new().unwrap();
    let name = || evloop::current_task().unwrap().unwrap().name;
    let t1 = lp.create_task(async move { name() }).unwrap();
    assert_eq!(t1.get_name(), "Task-1");
    assert_eq!(lp.run_until_complete(t1).unwrap().unwrap(), "Task-1");
    assert_eq!(
        lp.run_until_complete(async move { name() }).unwrap(),
        "Task-2"
    );
    let named = lp.create_task_named(async {}, "x").unwrap();
    assert_eq!(named.get_name(), "x");
    let t3 = lp.create_task(async {}).unwrap();
    assert_eq!(t3.get_name(), "Task-3");
    // A driver task whose name nobody asked for consumed no number.
    lp.run_until_complete(async {}).unwrap();
    assert_eq!(lp.create_task(async {}).unwrap().get_name(), "Task-4");
    lp.run_until_complete(async {}).unwrap();

    // A future stopped before it finished, then the loop closed: CPython
    // prints nothing and numbers nothing for a future; evloop's driver
    // goes without a report and without a number.
    let lp = EventLoop::new().unwrap();
    let reports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let r = reports.clone();
    lp.set_exception_handler(Some(std::sync::Arc::new(move |_, ctx| {
        r.lock().unwrap().push(ctx.message.clone())
    })));
    let stopper = lp.clone();
    lp.call_soon(move || stopper.stop()).unwrap();
    let stopped = lp.run_until_complete(std::future::pending::<()>());
    assert!(matches!(stopped, Err(evloop::Error::StoppedBeforeComplete)));
    assert!(lp.all_tasks().unwrap().is_empty(), "the driver is gone");
    lp.close().unwrap();
    assert!(
        reports.lock().unwrap().is_empty(),
        "{:?}",
        reports.lock().unwrap()
    );
    let lp = EventLoop::new().unwrap();
    assert_eq!(lp.create_task(async {}).unwrap().get_name(), "Task-5");
    lp.close().unwrap();
}
