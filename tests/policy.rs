//! The policy: which loop a thread uses (issue 2, section 2). Tests here
//! change the process-wide policy, so they take a lock.

use evloop::{
    DefaultEventLoopPolicy, Error, EventLoop, EventLoopPolicy, get_event_loop,
    get_event_loop_policy, get_running_loop, new_event_loop, set_event_loop, set_event_loop_policy,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn no_implicit_loop_and_the_error_names_the_thread() {
    let _g = serial();
    let r = std::thread::Builder::new()
        .name("worker-7".into())
        .spawn(|| get_event_loop().unwrap_err())
        .unwrap()
        .join()
        .unwrap();
    assert!(matches!(&r, Error::NoCurrentLoop { thread } if thread == "worker-7"));
    assert_eq!(
        r.to_string(),
        "There is no current event loop in thread 'worker-7'."
    );
}

#[test]
fn set_event_loop_is_per_thread() {
    let _g = serial();
    let lp = new_event_loop().unwrap();
    set_event_loop(Some(lp.clone()));
    assert_eq!(get_event_loop().unwrap(), lp);
    let seen_elsewhere = std::thread::spawn(get_event_loop).join().unwrap();
    assert!(seen_elsewhere.is_err());
    set_event_loop(None);
    assert!(get_event_loop().is_err());
}

#[test]
fn a_finished_threads_loop_is_not_inherited() {
    let _g = serial();
    // thread_local::ThreadLocal reuses a finished thread's slot.
    for _ in 0..4 {
        std::thread::spawn(|| set_event_loop(Some(EventLoop::new().unwrap())))
            .join()
            .unwrap();
        assert!(std::thread::spawn(get_event_loop).join().unwrap().is_err());
    }
}

#[test]
fn two_policies_never_see_each_others_loops() {
    let a = DefaultEventLoopPolicy::new();
    let b = DefaultEventLoopPolicy::new();
    let lp = a.new_event_loop().unwrap();
    a.set_event_loop(Some(lp.clone()));
    assert_eq!(a.get_event_loop().unwrap(), lp);
    assert!(b.get_event_loop().is_err());
}

#[test]
fn the_running_loop_wins_over_the_policy() {
    let _g = serial();
    let set = EventLoop::new().unwrap();
    set_event_loop(Some(set.clone()));
    let running = EventLoop::new().unwrap();
    let (inner, set2) = (running.clone(), set.clone());
    running
        .run_until_complete(async move {
            assert_eq!(get_event_loop().unwrap(), inner);
            assert_eq!(get_running_loop().unwrap(), inner);
            assert_ne!(get_event_loop().unwrap(), set2);
        })
        .unwrap();
    assert_eq!(get_event_loop().unwrap(), set);
    assert!(matches!(get_running_loop(), Err(Error::NoRunningLoop)));
    set_event_loop(None);
}

/// A policy of the test's own: one loop shared by every thread, and a
/// count of the loops it made.
#[derive(Default)]
struct SharedLoopPolicy {
    current: Mutex<Option<EventLoop>>,
    made: AtomicUsize,
}

impl EventLoopPolicy for SharedLoopPolicy {
    fn get_event_loop(&self) -> Result<EventLoop, Error> {
        self.current
            .lock()
            .unwrap()
            .clone()
            .ok_or(Error::NoCurrentLoop {
                thread: "any".into(),
            })
    }
    fn set_event_loop(&self, event_loop: Option<EventLoop>) {
        *self.current.lock().unwrap() = event_loop;
    }
    fn new_event_loop(&self) -> Result<EventLoop, Error> {
        self.made.fetch_add(1, Ordering::SeqCst);
        EventLoop::new()
    }
}

#[test]
fn a_custom_policy_drives_the_free_functions() {
    let _g = serial();
    let policy = Arc::new(SharedLoopPolicy::default());
    set_event_loop_policy(Some(policy.clone()));
    let lp = new_event_loop().unwrap();
    assert_eq!(policy.made.load(Ordering::SeqCst), 1);
    set_event_loop(Some(lp.clone()));
    // Shared across threads, as this policy wants.
    let other = std::thread::spawn(get_event_loop).join().unwrap().unwrap();
    assert_eq!(other, lp);
    // evloop::run goes through the policy too.
    evloop::run(async {}).unwrap();
    assert_eq!(policy.made.load(Ordering::SeqCst), 2);
    let installed = get_event_loop_policy();
    assert!(std::ptr::addr_eq(
        Arc::as_ptr(&installed),
        Arc::as_ptr(&policy)
    ));
    set_event_loop_policy(None);
    assert!(get_event_loop().is_err(), "the default policy is back");
}

#[test]
fn set_event_loop_policy_none_installs_a_fresh_default_policy() {
    let _g = serial();
    let lp = new_event_loop().unwrap();
    set_event_loop(Some(lp.clone()));
    assert_eq!(get_event_loop().unwrap(), lp);
    // asyncio: set_event_loop_policy(None) drops the policy; the next one
    // is new and knows no loops.
    set_event_loop_policy(None);
    assert!(matches!(get_event_loop(), Err(Error::NoCurrentLoop { .. })));
    set_event_loop(Some(lp.clone()));
    assert_eq!(get_event_loop().unwrap(), lp);
    set_event_loop(None);
}

#[test]
fn a_thread_that_exits_releases_the_loop_it_set() {
    // No global state: a policy object of our own, alive throughout.
    let policy = Arc::new(DefaultEventLoopPolicy::new());
    let dropped = Arc::new(AtomicUsize::new(0));
    struct Token(Arc<AtomicUsize>);
    impl Drop for Token {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    // `join` (unlike a scope's end) waits for the thread's thread-locals
    // to be torn down.
    let spawn_setting = |loops: usize| {
        let (policy, dropped) = (policy.clone(), dropped.clone());
        std::thread::spawn(move || {
            for _ in 0..loops {
                let lp = policy.new_event_loop().unwrap();
                let token = Token(dropped.clone());
                lp.call_later(std::time::Duration::from_secs(3600), move || drop(token))
                    .unwrap();
                policy.set_event_loop(Some(lp));
            }
        })
        .join()
        .unwrap();
    };
    spawn_setting(1);
    // The thread is gone: its loop was closed, its callback dropped, while
    // the policy lives on.
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    assert!(policy.get_event_loop().is_err());
    // A thread that replaces its loop before exiting releases both.
    spawn_setting(2);
    assert_eq!(dropped.load(Ordering::SeqCst), 3);
}
