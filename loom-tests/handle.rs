//! loom model of a callback's two shares (src/handle.rs): the loop runs or
//! discards the callback while another thread cancels or drops the handle.
//! The closure runs at most once, never after a cancellation the loop had
//! seen, and its captured value is dropped exactly once.
#![cfg(loom)]

use evloop::loom_api::callback;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn run_on_the_loop_while_the_handle_is_dropped_elsewhere() {
    loom::model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let runs = Arc::new(AtomicUsize::new(0));
        let (c, r) = (Counted(drops.clone()), runs.clone());
        let (queued, handle) = callback(move || {
            let _c = c;
            r.fetch_add(1, Ordering::SeqCst);
        });
        let user = thread::spawn(move || drop(handle));
        queued.run();
        user.join().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn cancel_from_another_thread_races_the_run() {
    loom::model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let runs = Arc::new(AtomicUsize::new(0));
        let (c, r) = (Counted(drops.clone()), runs.clone());
        let (queued, handle) = callback(move || {
            let _c = c;
            r.fetch_add(1, Ordering::SeqCst);
        });
        let user = thread::spawn(move || {
            handle.cancel();
            assert!(handle.cancelled());
        });
        queued.run();
        user.join().unwrap();
        assert!(runs.load(Ordering::SeqCst) <= 1);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn discard_on_close_while_the_handle_is_dropped_elsewhere() {
    loom::model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let c = Counted(drops.clone());
        let (queued, handle) = callback(move || drop(c));
        let user = thread::spawn(move || drop(handle));
        drop(queued);
        user.join().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    });
}
