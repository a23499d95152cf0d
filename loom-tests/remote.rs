//! loom model of the remote inbox and the park/notify protocol
//! (src/remote.rs): every post is delivered exactly once, in per-producer
//! order, and a loop that parks is always woken for a post or a signalled
//! flag (a lost wake-up shows up as a deadlock of the model).
#![cfg(loom)]

use evloop::loom_api::{ClosingInbox, Inbox, Popped};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

/// The eventfd: a flag the loop sleeps on.
#[derive(Default)]
struct EventFd {
    set: Mutex<bool>,
    cond: Condvar,
}

impl EventFd {
    fn write(&self) {
        *self.set.lock().unwrap() = true;
        self.cond.notify_one();
    }
    fn wait(&self) {
        let mut set = self.set.lock().unwrap();
        while !*set {
            set = self.cond.wait(set).unwrap();
        }
        *set = false;
    }
}

/// Pops everything available; returns the values (spinning over `Busy`).
fn drain(inbox: &Inbox, got: &mut Vec<usize>) {
    loop {
        match inbox.pop() {
            Popped::Item(item) => got.push(item.value()),
            Popped::Empty => return,
            Popped::Busy => thread::yield_now(),
        }
    }
}

#[test]
fn posts_are_delivered_exactly_once_in_order_without_lost_wakeups() {
    loom::model(|| {
        let inbox = Arc::new(Inbox::default());
        let efd = Arc::new(EventFd::default());
        let producers: Vec<_> = (0..2)
            .map(|p| {
                let (inbox, efd) = (inbox.clone(), efd.clone());
                thread::spawn(move || {
                    for seq in 0..2 {
                        if inbox.push(p * 10 + seq) {
                            efd.write();
                        }
                    }
                })
            })
            .collect();
        let mut got = Vec::new();
        while got.len() < 4 {
            drain(&inbox, &mut got);
            if got.len() == 4 {
                break;
            }
            if inbox.park_begin(|| false) {
                efd.wait();
                inbox.park_end();
            }
        }
        for p in producers {
            p.join().unwrap();
        }
        drain(&inbox, &mut got);
        assert_eq!(got.len(), 4, "{got:?}");
        for p in 0..2 {
            let mine: Vec<_> = got.iter().copied().filter(|v| v / 10 == p).collect();
            assert_eq!(mine, vec![p * 10, p * 10 + 1], "per-producer order");
        }
    });
}

#[test]
fn a_signalled_flag_wakes_a_parking_loop() {
    loom::model(|| {
        let inbox = Arc::new(Inbox::default());
        let efd = Arc::new(EventFd::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (i, e, s) = (inbox.clone(), efd.clone(), stop.clone());
        let stopper = thread::spawn(move || {
            s.store(true, Ordering::Relaxed);
            if i.signal() {
                e.write();
            }
        });
        while !stop.load(Ordering::Relaxed) {
            if inbox.park_begin(|| stop.load(Ordering::Relaxed)) {
                efd.wait();
                inbox.park_end();
            }
        }
        stopper.join().unwrap();
    });
}

#[test]
fn a_burst_claims_at_most_one_wakeup_per_sleep() {
    loom::model(|| {
        let inbox = Arc::new(Inbox::default());
        let writes = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let efd = Arc::new(EventFd::default());
        // The loop parks once before anything arrives.
        assert!(inbox.park_begin(|| false));
        let producers: Vec<_> = (0..2)
            .map(|p| {
                let (inbox, efd, writes) = (inbox.clone(), efd.clone(), writes.clone());
                thread::spawn(move || {
                    if inbox.push(p) {
                        writes.fetch_add(1, Ordering::Relaxed);
                        efd.write();
                    }
                })
            })
            .collect();
        efd.wait();
        assert!(inbox.park_end(), "the wake-up was claimed");
        for p in producers {
            p.join().unwrap();
        }
        assert_eq!(
            writes.load(Ordering::Relaxed),
            1,
            "two posts, one eventfd write"
        );
        let mut got = Vec::new();
        drain(&inbox, &mut got);
        got.sort();
        assert_eq!(got, vec![0, 1]);
    });
}

#[test]
fn closing_drops_every_post_the_loop_did_not_run_exactly_once() {
    // A producer posts while the loop runs what it finds and then closes
    // the inbox (as `close()` does): each post is either refused, run, or
    // dropped by whoever saw the inbox closed — exactly once, never leaked.
    loom::model(|| {
        let inbox = Arc::new(ClosingInbox::default());
        let done = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let (i, d) = (inbox.clone(), done.clone());
        let producer = thread::spawn(move || {
            let mut accepted = 0;
            for _ in 0..2 {
                if i.post(&d) {
                    accepted += 1;
                }
            }
            accepted
        });
        inbox.run_one();
        inbox.close();
        let accepted = producer.join().unwrap();
        // Refused posts were dropped at once; accepted ones by the run,
        // the close, or the producer itself.
        assert_eq!(done.load(Ordering::SeqCst), 2, "accepted {accepted}");
    });
}
