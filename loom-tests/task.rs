//! loom models of real tasks (src/task/raw.rs and src/task/state.rs), run
//! by a mock loop (loom_api::MockLoop) while other threads wake, cancel,
//! and drop their handles: a task is never queued twice, a wake-up during
//! or after a poll is never lost, cancellation always completes the task,
//! its future and output are dropped exactly once, and done callbacks run
//! exactly once.
#![cfg(loom)]

use evloop::loom_api::{AtomicWaker, MockLoop};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::thread;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Becomes ready once `ready` is set by another thread, which then wakes
/// whoever registered.
#[derive(Default)]
struct Event {
    ready: AtomicBool,
    waker: AtomicWaker,
}

impl Event {
    fn set(&self) {
        self.ready.store(true, Ordering::SeqCst);
        self.waker.wake();
    }
}

struct WaitEvent(Arc<Event>);

impl Future for WaitEvent {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.ready.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        self.0.waker.register(cx.waker());
        if self.0.ready.load(Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_wake_from_another_thread_is_never_lost_and_the_output_arrives_once() {
    loom::model(|| {
        let lp = MockLoop::default();
        let event = Arc::new(Event::default());
        let drops = Arc::new(AtomicUsize::new(0));
        let (e, d) = (event.clone(), drops.clone());
        let task = lp.spawn(async move {
            WaitEvent(e).await;
            Counted(d)
        });
        let setter = thread::spawn(move || event.set());
        let driver = lp.driver();
        driver.run_until(|| task.done());
        setter.join().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 0, "the output is kept");
        drop(task);
        assert_eq!(drops.load(Ordering::SeqCst), 1, "and dropped once");
        assert_eq!(driver.run_queued(), 0, "nothing queued twice");
    });
}

#[test]
fn cancel_from_another_thread_always_completes_the_task() {
    loom::model(|| {
        let lp = MockLoop::default();
        let drops = Arc::new(AtomicUsize::new(0));
        let held = Counted(drops.clone());
        let task = Arc::new(lp.spawn(async move {
            let _held = held;
            std::future::pending::<()>().await
        }));
        let t = task.clone();
        let canceller = thread::spawn(move || assert!(t.cancel()));
        let driver = lp.driver();
        driver.run_until(|| task.done());
        canceller.join().unwrap();
        assert!(task.cancelled());
        assert_eq!(drops.load(Ordering::SeqCst), 1, "the future was dropped");
    });
}

#[test]
fn the_handle_dropped_elsewhere_while_the_task_completes_frees_once() {
    loom::model(|| {
        let lp = MockLoop::default();
        let drops = Arc::new(AtomicUsize::new(0));
        let d = drops.clone();
        let task = lp.spawn(async move { Counted(d) });
        let dropper = thread::spawn(move || drop(task));
        let driver = lp.driver();
        driver.run_queued();
        dropper.join().unwrap();
        // Whoever finished last dropped the output, exactly once.
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_eq!(lp.exceptions(), 0);
    });
}

#[test]
fn closing_a_waiting_task_races_a_remote_wake() {
    loom::model(|| {
        let lp = MockLoop::default();
        let event = Arc::new(Event::default());
        let drops = Arc::new(AtomicUsize::new(0));
        let (e, held) = (event.clone(), Counted(drops.clone()));
        let task = lp.spawn(async move {
            let _held = held;
            WaitEvent(e).await
        });
        let driver = lp.driver();
        driver.run_queued(); // first poll: pending, waker registered
        let setter = thread::spawn(move || event.set());
        // The loop closes while the wake-up may be queueing the task.
        driver.close();
        setter.join().unwrap();
        // A wake that queued the task after the close leaves an entry
        // whose drop closes nothing twice.
        lp.driver().close();
        assert!(task.done());
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn done_callbacks_added_while_the_task_completes_run_exactly_once() {
    // Another thread adds a done callback while the loop completes the
    // task: it is scheduled exactly once, by the completer if it was in
    // the list, otherwise by its adder.
    loom::model(|| {
        let lp = MockLoop::default();
        let task = Arc::new(lp.spawn(async { 1 }));
        let calls = Arc::new(AtomicUsize::new(0));
        let (t, c) = (task.clone(), calls.clone());
        let adder = thread::spawn(move || {
            t.add_done_callback(move |_| {
                c.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        });
        let driver = lp.driver();
        driver.run_queued();
        adder.join().unwrap();
        driver.run_queued();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    });
}
