//! Cross-thread wake-ups (issue 2, section 5).

mod common;

use common::{Log, capture_tracing, within};
use evloop::EventLoop;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

/// Starts `lp` on its own thread; returns the join handle.
fn run_in_thread(lp: &EventLoop) -> std::thread::JoinHandle<()> {
    let lp = lp.clone();
    std::thread::spawn(move || lp.run_forever().unwrap())
}

/// Waits until the loop has blocked in its poller `n` times in all (so a
/// post seen after this finds it parked).
fn wait_until_parked(lp: &EventLoop, n: u64) {
    let start = Instant::now();
    while lp.stats().parks < n {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "loop never parked"
        );
        std::thread::yield_now();
    }
}

fn wait_until_running(lp: &EventLoop) {
    let start = Instant::now();
    while !lp.is_running() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "loop never started"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_blocked_loop_wakes_promptly_for_a_post() {
    within(Duration::from_secs(30), || {
        let lp = EventLoop::new().unwrap();
        lp.set_spin_before_park(Duration::ZERO);
        let thread = run_in_thread(&lp);
        // Blocked in the poller with nothing to do.
        wait_until_parked(&lp, 1);
        let writes_before = lp.stats().wakeups;
        let (tx, rx) = std::sync::mpsc::channel();
        lp.call_soon_threadsafe(move || tx.send(()).unwrap())
            .unwrap();
        rx.recv_timeout(Duration::from_secs(10))
            .expect("wake-up lost");
        // A parked loop is woken by exactly one eventfd write.
        assert_eq!(lp.stats().wakeups, writes_before + 1);
        lp.stop();
        thread.join().unwrap();
    });
}

#[test]
fn stop_from_another_thread_wakes_a_blocked_loop() {
    within(Duration::from_secs(30), || {
        let lp = EventLoop::new().unwrap();
        let thread = run_in_thread(&lp);
        wait_until_parked(&lp, 1);
        lp.stop();
        thread.join().unwrap();
        assert!(!lp.is_running());
    });
}

#[test]
fn a_burst_while_the_loop_is_awake_writes_no_eventfd() {
    within(Duration::from_secs(60), || {
        let lp = EventLoop::new().unwrap();
        lp.set_spin_before_park(Duration::ZERO);
        let busy = Arc::new(Barrier::new(2));
        let release = Arc::new(Barrier::new(2));
        let (b, r) = (busy.clone(), release.clone());
        // The loop sits in this callback, awake, during the burst.
        lp.call_soon(move || {
            b.wait();
            r.wait();
        })
        .unwrap();
        let thread = run_in_thread(&lp);
        busy.wait();
        let before = lp.stats().wakeups;
        let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..100_000 {
            let c = counter.clone();
            lp.call_soon_threadsafe(move || {
                c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            })
            .unwrap();
        }
        assert_eq!(lp.stats().wakeups, before, "no write while awake");
        release.wait();
        let stopper = lp.clone();
        lp.call_soon_threadsafe(move || stopper.stop()).unwrap();
        thread.join().unwrap();
        assert_eq!(counter.load(std::sync::atomic::Ordering::Relaxed), 100_000);
        assert!(lp.stats().wakeups <= before + 1);
    });
}

#[test]
fn eight_threads_a_hundred_thousand_posts_each_exactly_once_in_order() {
    const THREADS: usize = 8;
    const POSTS: u64 = 100_000;
    within(Duration::from_secs(240), || {
        let lp = EventLoop::new().unwrap();
        let last = Arc::new(Mutex::new(vec![0u64; THREADS]));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let loop_thread = run_in_thread(&lp);
        let start = Arc::new(Barrier::new(THREADS));
        let producers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (lp, last, errors, start) =
                    (lp.clone(), last.clone(), errors.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    for seq in 1..=POSTS {
                        let (last, errors) = (last.clone(), errors.clone());
                        lp.call_soon_threadsafe(move || {
                            let mut last = last.lock().unwrap();
                            if last[t] + 1 != seq {
                                errors.lock().unwrap().push((t, last[t], seq));
                            }
                            last[t] = seq;
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        let stopper = lp.clone();
        lp.call_soon_threadsafe(move || stopper.stop()).unwrap();
        loop_thread.join().unwrap();
        assert!(
            errors.lock().unwrap().is_empty(),
            "{:?}",
            &errors.lock().unwrap()[..5.min(errors.lock().unwrap().len())]
        );
        assert_eq!(*last.lock().unwrap(), vec![POSTS; THREADS]);
        let s = lp.stats();
        assert!(
            s.wakeups < THREADS as u64 * POSTS / 10,
            "eventfd written {} times for {} posts",
            s.wakeups,
            THREADS as u64 * POSTS
        );
    });
}

#[test]
fn call_soon_from_a_foreign_thread_is_correct_and_reported_in_debug_mode() {
    within(Duration::from_secs(30), || {
        let lp = EventLoop::new().unwrap();
        lp.set_debug(true);
        let thread = run_in_thread(&lp);
        wait_until_running(&lp);
        let log = Log::new();
        let (_, logged) = capture_tracing(|| lp.call_soon(log.cb(1)).unwrap());
        assert!(
            logged.contains("call_soon() called from thread"),
            "{logged}"
        );
        assert!(logged.contains("call_soon_threadsafe"), "{logged}");
        // Without debug mode: silent, still correct.
        lp.set_debug(false);
        let (_, quiet) = capture_tracing(|| lp.call_soon(log.cb(2)).unwrap());
        assert!(quiet.is_empty(), "{quiet}");
        let start = Instant::now();
        while log.len() < 2 {
            assert!(start.elapsed() < Duration::from_secs(5));
            std::thread::yield_now();
        }
        assert_eq!(log.get(), vec![1, 2]);
        lp.stop();
        thread.join().unwrap();
    });
}

#[test]
fn ping_pong_between_two_loops_on_two_threads() {
    within(Duration::from_secs(60), || {
        let a = EventLoop::new().unwrap();
        let b = EventLoop::new().unwrap();
        let ta = run_in_thread(&a);
        let tb = run_in_thread(&b);
        let done = evloop::ConcurrentFuture::<u32>::new();
        fn ping(me: EventLoop, peer: EventLoop, n: u32, done: evloop::ConcurrentFuture<u32>) {
            if n == 1000 {
                done.set_result(n);
                return;
            }
            let (me2, peer2) = (me.clone(), peer.clone());
            peer.call_soon_threadsafe(move || ping(peer2, me2, n + 1, done))
                .unwrap();
        }
        let (a2, b2, d) = (a.clone(), b.clone(), done.clone());
        a.call_soon_threadsafe(move || ping(a2, b2, 0, d)).unwrap();
        assert_eq!(done.result(Some(Duration::from_secs(30))).unwrap(), 1000);
        a.stop();
        b.stop();
        ta.join().unwrap();
        tb.join().unwrap();
    });
}
