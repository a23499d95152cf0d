//! loom model of an fd watcher's flags (src/reactor.rs, `WatcherFlags`):
//! the loop queues a watcher at most once at a time, and a run that begins
//! after a removal happened-before it never calls the callback.
#![cfg(loom)]

use evloop::loom_api::WatcherFlags;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::thread;

#[test]
fn a_removal_seen_before_a_run_stops_it_and_queueing_is_unique() {
    loom::model(|| {
        let flags = Arc::new(WatcherFlags::default());
        let removed = Arc::new(AtomicBool::new(false));
        let (f, r) = (flags.clone(), removed.clone());
        let remover = thread::spawn(move || {
            f.cancel();
            r.store(true, Ordering::Release);
        });
        let queued = AtomicUsize::new(0);
        // The loop: the fd fires twice before the entry runs, then again.
        for _ in 0..2 {
            if flags.try_queue() {
                queued.fetch_add(1, Ordering::SeqCst);
            }
        }
        assert_eq!(queued.load(Ordering::SeqCst), 1, "queued twice");
        let saw_removal = removed.load(Ordering::Acquire);
        let may_call = flags.start_run();
        if saw_removal {
            assert!(!may_call, "ran after a removal it had seen");
        }
        assert!(flags.try_queue(), "re-queued after the run");
        remover.join().unwrap();
        assert!(!flags.start_run());
    });
}
