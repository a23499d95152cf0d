//! Unix signals: `add_signal_handler` / `remove_signal_handler`.
//!
//! Signals are process-wide, so the tests that run here side by side use
//! signals whose default action is to do nothing (`SIGURG`, `SIGWINCH`):
//! one arriving between two tests harms nobody. What needs a signal that
//! kills (restoring the default disposition) runs in a child process.

mod common;

use common::{record_exceptions, run_in_child, within};
use evloop::{Error, EventLoop};
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// Runs `lp` until `done()` holds (bounded by the caller's `within`).
fn run_until(lp: &EventLoop, done: impl Fn() -> bool) {
    while !done() {
        let stopper = lp.clone();
        lp.call_later(Duration::from_millis(5), move || stopper.stop())
            .unwrap();
        lp.run_forever().unwrap();
    }
}

fn raise(sig: i32) {
    signal_hook::low_level::raise(sig).unwrap();
}

#[test]
fn a_handler_runs_on_the_loops_thread_and_survives_a_panic() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let errors = record_exceptions(&lp);
        let calls = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let c = calls.clone();
        lp.add_signal_handler(libc::SIGURG, move || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            tx.send(std::thread::current().id()).unwrap();
            if n == 0 {
                panic!("first signal handler call fails");
            }
        })
        .unwrap();
        raise(libc::SIGURG);
        run_until(&lp, || calls.load(Ordering::SeqCst) >= 1);
        assert_eq!(rx.recv().unwrap(), std::thread::current().id());
        // The panic was reported; the handler stays.
        assert!(!errors.get().is_empty());
        raise(libc::SIGURG);
        run_until(&lp, || calls.load(Ordering::SeqCst) >= 2);
        assert!(lp.remove_signal_handler(libc::SIGURG).unwrap());
        assert!(!lp.remove_signal_handler(libc::SIGURG).unwrap());
    });
}

#[test]
fn a_signal_that_arrives_while_the_loop_is_not_running_is_delivered_on_the_next_run() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        lp.add_signal_handler(libc::SIGWINCH, move || {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        raise(libc::SIGWINCH);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        run_until(&lp, || calls.load(Ordering::SeqCst) >= 1);
        lp.close().unwrap();
    });
}

#[test]
fn every_loop_that_registered_a_signal_gets_it() {
    within(LIMIT, || {
        let calls = Arc::new(AtomicUsize::new(0));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let done_rx = Arc::new(std::sync::Mutex::new(done_rx));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (calls, ready_tx, done_rx) = (calls.clone(), ready_tx.clone(), done_rx.clone());
                std::thread::spawn(move || {
                    let lp = EventLoop::new().unwrap();
                    let seen = Arc::new(AtomicUsize::new(0));
                    let (c, s) = (calls.clone(), seen.clone());
                    lp.add_signal_handler(libc::SIGURG, move || {
                        // Count each loop once.
                        if s.fetch_add(1, Ordering::SeqCst) == 0 {
                            c.fetch_add(1, Ordering::SeqCst);
                        }
                    })
                    .unwrap();
                    ready_tx.send(()).unwrap();
                    run_until(&lp, || seen.load(Ordering::SeqCst) >= 1);
                    // Keep the handler until both loops saw the signal.
                    let _ = done_rx.lock().unwrap().recv();
                    lp.close().unwrap();
                })
            })
            .collect();
        ready_rx.recv().unwrap();
        ready_rx.recv().unwrap();
        raise(libc::SIGURG);
        while calls.load(Ordering::SeqCst) < 2 {
            std::thread::yield_now();
        }
        drop(done_tx);
        for t in threads {
            t.join().unwrap();
        }
    });
}

#[test]
fn bad_signals_get_asyncios_errors() {
    let lp = EventLoop::new().unwrap();
    for (sig, msg) in [
        (0, "sig 0 out of range(1, 65)"),
        (65, "sig 65 out of range(1, 65)"),
        (libc::SIGKILL, "sig 9 cannot be caught"),
        (libc::SIGSTOP, "sig 19 cannot be caught"),
    ] {
        let err = lp.add_signal_handler(sig, || ()).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        assert_eq!(err.to_string(), msg);
    }
    assert!(matches!(
        lp.remove_signal_handler(0),
        Err(Error::InvalidArgument(_))
    ));
    lp.close().unwrap();
    assert!(matches!(
        lp.add_signal_handler(libc::SIGURG, || ()),
        Err(Error::Closed)
    ));
}

/// In a child: the default action of `SIGUSR2` (terminate) is back once
/// the handler is removed (or the loop closed), so raising it kills the
/// child by that signal.
fn dies_by_sigusr2(name: &str, body: fn()) {
    if let Some((status, out)) = run_in_child(name, LIMIT, body) {
        assert_eq!(status.signal(), Some(libc::SIGUSR2), "{status:?}\n{out}");
    }
}

#[test]
fn removing_the_last_handler_restores_the_default_action() {
    dies_by_sigusr2(
        "removing_the_last_handler_restores_the_default_action",
        || {
            let lp = EventLoop::new().unwrap();
            let calls = Arc::new(AtomicUsize::new(0));
            let c = calls.clone();
            lp.add_signal_handler(libc::SIGUSR2, move || {
                c.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
            // Handled, not fatal, while registered.
            raise(libc::SIGUSR2);
            run_until(&lp, || calls.load(Ordering::SeqCst) >= 1);
            assert!(lp.remove_signal_handler(libc::SIGUSR2).unwrap());
            raise(libc::SIGUSR2);
            unreachable!("SIGUSR2 should have killed the process");
        },
    );
}

#[test]
fn closing_the_loop_removes_its_handlers() {
    dies_by_sigusr2("closing_the_loop_removes_its_handlers", || {
        let lp = EventLoop::new().unwrap();
        lp.add_signal_handler(libc::SIGUSR2, || ()).unwrap();
        lp.close().unwrap();
        raise(libc::SIGUSR2);
        unreachable!("SIGUSR2 should have killed the process");
    });
}
