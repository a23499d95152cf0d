//! loom model of ConcurrentFuture's one transition (src/concurrent.rs):
//! `cancel` and a worker's `set_running_or_notify_cancel` race; the job
//! runs if and only if the cancel failed.
#![cfg(loom)]

use evloop::ConcurrentFuture;
use loom::thread;

#[test]
fn cancel_and_a_starting_worker_never_both_win() {
    loom::model(|| {
        let fut = ConcurrentFuture::<u8>::new();
        let worker_side = fut.clone();
        let worker = thread::spawn(move || {
            let started = worker_side.set_running_or_notify_cancel();
            if started {
                worker_side.set_result(1);
            }
            started
        });
        let cancelled = fut.cancel();
        let started = worker.join().unwrap();
        assert_ne!(cancelled, started, "exactly one of them wins");
        assert_eq!(fut.cancelled(), cancelled);
    });
}
