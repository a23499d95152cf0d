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
}
