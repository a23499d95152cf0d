//! loom model of the awaiter slot (src/atomic_waker.rs): a completion that
//! races a registration is never lost.
#![cfg(loom)]

use evloop::loom_api::AtomicWaker;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use std::task::{Wake, Waker};

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn completion_racing_registration_is_not_lost() {
    loom::model(|| {
        let slot = Arc::new(AtomicWaker::default());
        let done = Arc::new(AtomicBool::new(false));
        let flag = std::sync::Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let (s, d) = (slot.clone(), done.clone());
        let completer = thread::spawn(move || {
            d.store(true, Ordering::SeqCst);
            s.wake();
        });
        // The awaiter: register, then re-check (as Task::poll does).
        slot.register(&waker);
        let saw_done = done.load(Ordering::SeqCst);
        completer.join().unwrap();
        assert!(saw_done || flag.0.load(Ordering::SeqCst), "wake-up lost");
    });
}

#[test]
fn re_registering_a_new_waker_while_waking() {
    loom::model(|| {
        let slot = Arc::new(AtomicWaker::default());
        let done = Arc::new(AtomicBool::new(false));
        let first = std::sync::Arc::new(Flag(AtomicBool::new(false)));
        let second = std::sync::Arc::new(Flag(AtomicBool::new(false)));
        slot.register(&Waker::from(first.clone()));
        let (s, d) = (slot.clone(), done.clone());
        let completer = thread::spawn(move || {
            d.store(true, Ordering::SeqCst);
            s.wake();
        });
        slot.register(&Waker::from(second.clone()));
        let saw_done = done.load(Ordering::SeqCst);
        completer.join().unwrap();
        assert!(
            saw_done || second.0.load(Ordering::SeqCst),
            "the current waker was not woken"
        );
    });
}
