//! `EventLoop::set_idle_hook`: the hook wraps idle periods only, learns
//! when a signal interrupted the sleep, and a hooked loop (which sleeps in
//! the poller, never on a futex) still wakes for posts from other threads.

mod common;

use common::within;
use evloop::{EventLoop, IdleHook};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);

/// A hook that counts idle periods and records what `wait` returned.
fn counting_hook() -> (IdleHook, Arc<AtomicUsize>, Arc<Mutex<Vec<bool>>>) {
    let count = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new(Vec::new()));
    let (c, r) = (count.clone(), results.clone());
    let hook: IdleHook = Arc::new(move |wait: &mut dyn FnMut() -> bool| {
        c.fetch_add(1, Ordering::SeqCst);
        let interrupted = wait();
        r.lock().unwrap().push(interrupted);
    });
    (hook, count, results)
}

#[test]
fn hook_wraps_idle_periods_not_busy_iterations() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let (hook, count, results) = counting_hook();
        lp.set_idle_hook(Some(hook));

        // A chain of 100 callbacks, each scheduling the next: every iteration
        // has work ready, so the loop never idles between the first and the
        // last. (The first arrives through the inbox, posted from outside the
        // run, which the loop may notice while idle.)
        struct Chain {
            lp: EventLoop,
            count: Arc<AtomicUsize>,
            at_start: usize,
            idle_during: Arc<Mutex<Option<usize>>>,
        }
        fn chain(c: Chain, left: u32) {
            if left == 0 {
                let idle = c.count.load(Ordering::SeqCst) - c.at_start;
                *c.idle_during.lock().unwrap() = Some(idle);
                c.lp.stop();
                return;
            }
            let lp = c.lp.clone();
            lp.call_soon(move || chain(c, left - 1)).unwrap();
        }
        let idle_during = Arc::new(Mutex::new(None));
        let (first, c, d) = (lp.clone(), count.clone(), idle_during.clone());
        lp.call_soon(move || {
            let at_start = c.load(Ordering::SeqCst);
            let state = Chain {
                lp: first,
                count: c,
                at_start,
                idle_during: d,
            };
            chain(state, 100)
        })
        .unwrap();
        lp.run_forever().unwrap();
        assert_eq!(*idle_during.lock().unwrap(), Some(0));

        // A timer in the future: the loop idles until it fires, inside the hook.
        let stopper = lp.clone();
        lp.call_later(Duration::from_millis(20), move || stopper.stop())
            .unwrap();
        lp.run_forever().unwrap();
        assert!(count.load(Ordering::SeqCst) >= 1);
        assert!(
            results
                .lock()
                .unwrap()
                .iter()
                .all(|&interrupted| !interrupted)
        );

        // Removed: the next run idles without it.
        lp.set_idle_hook(None);
        let before = count.load(Ordering::SeqCst);
        let stopper = lp.clone();
        lp.call_later(Duration::from_millis(5), move || stopper.stop())
            .unwrap();
        lp.run_forever().unwrap();
        assert_eq!(count.load(Ordering::SeqCst), before);
        lp.close().unwrap();
    });
}

extern "C" fn noop_handler(_: libc::c_int) {}

/// Runs a no-op on `lp` every `period`, re-arming itself, so no sleep of
/// the loop's lasts longer than that.
fn tick_every(lp: &EventLoop, period: Duration) {
    let again = lp.clone();
    // Fails only once the loop is closed, which ends the ticking.
    let _ = lp.call_later(period, move || tick_every(&again, period));
}

#[test]
fn wait_reports_a_signal_that_interrupted_the_sleep() {
    // A handler without SA_RESTART for SIGUSR1: delivered to the loop's
    // thread while it sleeps in the poller, it interrupts epoll_wait.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = noop_handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        action.sa_flags = 0;
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
            0
        );
    }
    let lp = EventLoop::new().unwrap();
    let interrupted = Arc::new(AtomicBool::new(false));
    let (sleeping_tx, sleeping_rx) = mpsc::channel();
    let (seen, stopper) = (interrupted.clone(), lp.clone());
    lp.set_idle_hook(Some(Arc::new(move |wait: &mut dyn FnMut() -> bool| {
        // Tells the test the loop is about to sleep: its cue to signal.
        let _ = sleeping_tx.send(());
        if wait() {
            seen.store(true, Ordering::SeqCst);
            stopper.stop();
        }
    })));
    // A signal that lands between the cue and the poller's sleep
    // interrupts nothing; this tick ends every sleep, so such a miss costs
    // one more cue instead of a sleep that never ends.
    tick_every(&lp, Duration::from_millis(1));
    let (tid_tx, tid_rx) = mpsc::channel();
    let runner = {
        let lp = lp.clone();
        std::thread::spawn(move || {
            tid_tx.send(unsafe { libc::pthread_self() }).unwrap();
            lp.run_forever().unwrap();
            // Drops the hook and its sender: the test's cue channel ends.
            lp.set_idle_hook(None);
        })
    };
    let tid = tid_rx.recv().unwrap();
    // Signal on each cue until the loop stops; bounded, so a hook that
    // never hears of an interrupted sleep fails instead of hanging.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match sleeping_rx.recv_timeout(left) {
            Ok(()) => unsafe {
                libc::pthread_kill(tid, libc::SIGUSR1);
            },
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("the hook never saw an interrupted sleep")
            }
        }
    }
    assert!(interrupted.load(Ordering::SeqCst));
    runner.join().unwrap();
    assert!(!lp.is_running());
    lp.close().unwrap();
}

#[test]
fn hooked_loop_without_sources_wakes_for_posts() {
    let lp = EventLoop::new().unwrap();
    let (hook, count, _) = counting_hook();
    lp.set_idle_hook(Some(hook));
    let (done_tx, done_rx) = mpsc::channel();
    let runner = {
        let lp = lp.clone();
        std::thread::spawn(move || {
            lp.run_forever().unwrap();
            done_tx.send(()).unwrap();
        })
    };
    // Wait (bounded) until the loop has parked, then post its stop.
    let deadline = Instant::now() + Duration::from_secs(20);
    while lp.stats().parks == 0 {
        assert!(Instant::now() < deadline, "the loop never parked");
        std::thread::yield_now();
    }
    let stopper = lp.clone();
    lp.call_soon_threadsafe(move || stopper.stop()).unwrap();
    done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a post must wake a hooked loop");
    runner.join().unwrap();
    assert!(count.load(Ordering::SeqCst) >= 1);
    assert!(lp.stats().wakeups >= 1);
    lp.close().unwrap();
}
