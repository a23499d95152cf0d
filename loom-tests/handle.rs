//! loom model of a callback's two shares (src/handle.rs), with the real
//! callback code run by a mock loop (loom_api::MockLoop) that marks its
//! thread as the loop's, so the loop-thread fast paths (plain loads and
//! stores instead of read-modify-writes) are checked too. The closure runs
//! at most once, never after a cancellation the loop had seen, and its
//! captured value is dropped exactly once.
#![cfg(loom)]

use evloop::loom_api::MockLoop;
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
        let lp = MockLoop::default();
        let drops = Arc::new(AtomicUsize::new(0));
        let runs = Arc::new(AtomicUsize::new(0));
        let (c, r) = (Counted(drops.clone()), runs.clone());
        let handle = lp.call_soon(move || {
            let _c = c;
            r.fetch_add(1, Ordering::SeqCst);
        });
        let user = thread::spawn(move || drop(handle));
        lp.driver().run_queued();
        user.join().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn cancel_from_another_thread_races_the_run_and_the_handles_drop_on_the_loop() {
    // The handle is shared: another thread cancels through it while the
    // loop runs the callback, and the loop thread drops the last reference
    // to the handle (its loop-thread path, a plain store).
    loom::model(|| {
        let lp = MockLoop::default();
        let drops = Arc::new(AtomicUsize::new(0));
        let runs = Arc::new(AtomicUsize::new(0));
        let (c, r) = (Counted(drops.clone()), runs.clone());
        let handle = Arc::new(lp.call_soon(move || {
            let _c = c;
            r.fetch_add(1, Ordering::SeqCst);
        }));
        let h = handle.clone();
        let canceller = thread::spawn(move || h.cancel());
        let driver = lp.driver();
        driver.run_queued();
        canceller.join().unwrap();
        assert!(handle.cancelled());
        // Dropped on the loop thread, after the loop released its share.
        drop(handle);
        assert!(runs.load(Ordering::SeqCst) <= 1);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn a_cancel_seen_by_the_loop_stops_the_run_and_drops_the_captures() {
    loom::model(|| {
        let lp = MockLoop::default();
        let drops = Arc::new(AtomicUsize::new(0));
        let runs = Arc::new(AtomicUsize::new(0));
        let (c, r) = (Counted(drops.clone()), runs.clone());
        let handle = lp.call_soon(move || {
            let _c = c;
            r.fetch_add(1, Ordering::SeqCst);
        });
        let canceller = thread::spawn(move || {
            handle.cancel();
            handle
        });
        let handle = canceller.join().unwrap();
        lp.driver().run_queued();
        // Cancelled before the run: never runs, and the captures are gone
        // although the handle is still alive.
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        drop(handle);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn cancel_on_the_loop_thread_races_a_foreign_cancel() {
    // A callback on the loop thread cancels a queued callback (the plain
    // load-and-store path) while another thread cancels it through a
    // shared handle (the read-modify-write path): the target never runs
    // and its captures are dropped exactly once.
    loom::model(|| {
        let lp = MockLoop::default();
        let drops = Arc::new(AtomicUsize::new(0));
        let runs = Arc::new(AtomicUsize::new(0));
        let slot: Arc<loom::sync::Mutex<Option<Arc<evloop::Handle>>>> = Default::default();
        let s = slot.clone();
        let _canceller = lp.call_soon(move || {
            if let Some(h) = s.lock().unwrap().take() {
                h.cancel();
            }
        });
        let (c, r) = (Counted(drops.clone()), runs.clone());
        let target = Arc::new(lp.call_soon(move || {
            let _c = c;
            r.fetch_add(1, Ordering::SeqCst);
        }));
        *slot.lock().unwrap() = Some(target.clone());
        let t = target.clone();
        let other = thread::spawn(move || t.cancel());
        lp.driver().run_queued();
        other.join().unwrap();
        drop(target);
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    });
}
