//! loom models of the helpers' small protocols (src/runners.rs): a sleep's
//! `fired` flag against its timer, and gather's per-child wake flags
//! against the gather's poll. No wake-up is lost.
#![cfg(loom)]

use evloop::loom_api::{GatherWake, SleepState};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use std::task::{Wake, Waker};

/// Counts its wake-ups.
#[derive(Default)]
struct Flag(std::sync::atomic::AtomicUsize);

impl Wake for Flag {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_sleep_polled_while_its_timer_fires_sees_it_or_is_woken() {
    loom::model(|| {
        let state = Arc::new(SleepState::default());
        let s = state.clone();
        let timer = thread::spawn(move || s.fire());
        let flag = std::sync::Arc::new(Flag::default());
        let waker = Waker::from(flag.clone());
        let fired = state.poll_fired(&waker);
        timer.join().unwrap();
        assert!(
            fired || flag.0.load(std::sync::atomic::Ordering::SeqCst) > 0,
            "the timer fired and nobody noticed"
        );
    });
}

#[test]
fn a_child_woken_while_the_gather_polls_it_is_polled_again() {
    // The child's "event" is a counter: the gather polls the child by
    // reading it. A wake after the gather took the child's flag must put
    // the child back in the woken list, or the parent must have seen the
    // event.
    loom::model(|| {
        let wake = Arc::new(GatherWake::new(1));
        let parent = std::sync::Arc::new(Flag::default());
        wake.register_parent(&Waker::from(parent.clone()));
        let event = Arc::new(AtomicUsize::new(0));
        let (w, e) = (wake.clone(), event.clone());
        let child_waker = thread::spawn(move || {
            e.store(1, Ordering::SeqCst);
            w.wake_child(0);
        });
        // The gather's poll: take the woken children, poll each once.
        let woken = wake.take_woken();
        assert_eq!(woken, vec![0]); // every child is woken at the start
        let seen = event.load(Ordering::SeqCst);
        child_waker.join().unwrap();
        let again = wake.take_woken();
        assert!(
            seen == 1 || again == vec![0],
            "the child's wake-up was lost"
        );
    });
}
