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
    // asyncio: ValueError for a number outside signal.valid_signals()
    // (32 and 33 belong to glibc's threads), RuntimeError for one that
    // cannot be caught.
    for sig in [0, 65, 32, 33, -1] {
        let err = lp.add_signal_handler(sig, || ()).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        assert_eq!(err.to_string(), format!("invalid signal number {sig}"));
        let err = lp.remove_signal_handler(sig).unwrap_err();
        assert_eq!(err.to_string(), format!("invalid signal number {sig}"));
    }
    for (sig, msg) in [
        (libc::SIGKILL, "sig 9 cannot be caught"),
        (libc::SIGSTOP, "sig 19 cannot be caught"),
    ] {
        let err = lp.add_signal_handler(sig, || ()).unwrap_err();
        assert!(matches!(err, Error::Runtime(_)), "{err:?}");
        assert_eq!(err.to_string(), msg);
        // Never registered, so nothing to remove.
        assert!(!lp.remove_signal_handler(sig).unwrap());
    }
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

/// In a child (exact counts of a process-wide signal): `body` must exit
/// the process with status 0.
fn passes_in_child(name: &str, body: fn()) {
    if let Some((status, out)) = run_in_child(name, LIMIT, body) {
        assert!(status.success(), "{status:?}\n{out}");
    }
}

#[test]
fn the_handler_runs_once_per_delivered_signal() {
    passes_in_child("the_handler_runs_once_per_delivered_signal", || {
        let lp = EventLoop::new().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        lp.add_signal_handler(libc::SIGUSR1, move || {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        // Delivered back to back (raise returns after the handler ran),
        // before the loop looks: CPython calls the handler twice.
        raise(libc::SIGUSR1);
        raise(libc::SIGUSR1);
        run_until(&lp, || calls.load(Ordering::SeqCst) >= 2);
        // Nothing more comes.
        common::run_one_iteration(&lp);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        lp.close().unwrap();
        std::process::exit(0);
    });
}

#[test]
fn two_threads_adding_a_handler_for_one_signal_leave_one() {
    passes_in_child(
        "two_threads_adding_a_handler_for_one_signal_leave_one",
        || {
            for _ in 0..50 {
                let lp = EventLoop::new().unwrap();
                let calls = Arc::new(AtomicUsize::new(0));
                let barrier = Arc::new(std::sync::Barrier::new(2));
                let adders: Vec<_> = (0..2)
                    .map(|_| {
                        let (lp, calls, barrier) = (lp.clone(), calls.clone(), barrier.clone());
                        std::thread::spawn(move || {
                            barrier.wait();
                            lp.add_signal_handler(libc::SIGUSR1, move || {
                                calls.fetch_add(1, Ordering::SeqCst);
                            })
                            .unwrap();
                        })
                    })
                    .collect();
                for a in adders {
                    a.join().unwrap();
                }
                raise(libc::SIGUSR1);
                run_until(&lp, || calls.load(Ordering::SeqCst) >= 1);
                common::run_one_iteration(&lp);
                assert_eq!(calls.load(Ordering::SeqCst), 1, "one handler, one call");
                assert!(lp.remove_signal_handler(libc::SIGUSR1).unwrap());
                assert!(!lp.remove_signal_handler(libc::SIGUSR1).unwrap());
                lp.close().unwrap();
            }
            std::process::exit(0);
        },
    );
}

#[test]
fn a_handler_added_from_another_thread_while_the_loop_runs_gets_the_signal() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let (tx, rx) = mpsc::channel();
        let runner = lp.clone();
        let thread = std::thread::spawn(move || runner.run_forever().unwrap());
        while !lp.is_running() {
            std::thread::yield_now();
        }
        let stopper = lp.clone();
        lp.add_signal_handler(libc::SIGWINCH, move || {
            let _ = tx.send(());
            stopper.stop();
        })
        .unwrap();
        // Raised once, maybe before the loop's thread has registered the
        // handler's socket: the byte waits in it and is reported then.
        raise(libc::SIGWINCH);
        rx.recv_timeout(LIMIT)
            .expect("a signal raised before registration reaches the handler");
        thread.join().unwrap();
        assert!(lp.remove_signal_handler(libc::SIGWINCH).unwrap());
        lp.close().unwrap();
    });
}

#[test]
fn a_removed_handler_gives_its_socket_back() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        lp.add_signal_handler(libc::SIGURG, || ()).unwrap();
        common::run_one_iteration(&lp);
        assert_eq!(lp.stats().io_sources, 1);
        // Replacing keeps one; removing leaves none once the loop has seen
        // the closed pipe.
        lp.add_signal_handler(libc::SIGURG, || ()).unwrap();
        run_until(&lp, || lp.stats().io_sources == 1);
        assert!(lp.remove_signal_handler(libc::SIGURG).unwrap());
        run_until(&lp, || lp.stats().io_sources == 0);
        lp.close().unwrap();
    });
}
