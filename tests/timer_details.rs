//! Timer details the main tests leave open: timers cancelled on other
//! threads purged while a live timer heads the queue (so only the purge,
//! not the pop of cancelled timers off the top, can remove them), the
//! exact `cancelled_timers` count after a known number of foreign
//! cancellations, asyncio's purge threshold to the timer, and
//! destructors run by the loop that call `close()` or `run_*` on it.

mod common;

use common::{DropCounter, run_one_iteration, within};
use evloop::{Error, EventLoop, TimerHandle};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);

/// Cancels every handle on a thread of its own, and waits for it.
fn cancel_elsewhere(handles: Vec<TimerHandle>) -> Vec<TimerHandle> {
    let n = handles.len();
    cancel_range_elsewhere(handles, 0..n)
}

/// `n` timers an hour or two away whose closures each hold a token of
/// `drops`.
fn far_timers(lp: &EventLoop, n: usize, delay: Duration, drops: &DropCounter) -> Vec<TimerHandle> {
    (0..n)
        .map(|_| {
            let token = drops.token();
            lp.call_later(delay, move || drop(token)).unwrap()
        })
        .collect()
}

const HOUR: Duration = Duration::from_secs(3600);
const TWO_HOURS: Duration = Duration::from_secs(7200);

// ----- 1. the purge with a live timer at the top of the heap ---------------------------------

#[test]
fn timers_cancelled_elsewhere_are_purged_while_a_live_timer_heads_the_queue() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let (live, cancelled) = (DropCounter::new(), DropCounter::new());
        // The head of the heap: live, due in an hour, earlier than all
        // the others. Cancelled timers below it are never popped off
        // the top; only asyncio's purge can take them out.
        let head = far_timers(&lp, 1, HOUR, &live);
        let handles = far_timers(&lp, 1000, TWO_HOURS, &cancelled);
        // Files them (an idle loop's stats sort its inbox in).
        assert_eq!(lp.stats().timers, 1001);

        // The loop runs on its own thread and sleeps toward the head's
        // deadline.
        let (started_tx, started_rx) = mpsc::channel();
        lp.call_soon(move || started_tx.send(()).unwrap()).unwrap();
        let runner = lp.clone();
        let thread = std::thread::spawn(move || runner.run_forever().unwrap());
        started_rx.recv_timeout(LIMIT).unwrap();
        // Seen from here, the running loop's published queue size: once
        // it shows all 1001, a smaller one can only come from a purge.
        let deadline = Instant::now() + LIMIT;
        while lp.stats().timers != 1001 {
            assert!(Instant::now() < deadline, "{:?}", lp.stats());
            std::thread::sleep(Duration::from_millis(1));
        }

        let handles = cancel_elsewhere(handles);
        // asyncio's rule (over half of a heap of more than 100) counts
        // these: each purge at least halves the heap, so all but at most
        // 100 leave the queue without any deadline coming. The queue's
        // size is what the loop publishes (stats from another thread);
        // it shrinks only by purges here.
        let deadline = Instant::now() + LIMIT;
        while lp.stats().timers > 101 {
            assert!(
                Instant::now() < deadline,
                "the loop did not purge: {:?}, {} closures dropped",
                lp.stats(),
                cancelled.dropped()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // With them went their closures (and what those capture).
        let deadline = Instant::now() + LIMIT;
        while cancelled.dropped() < 900 {
            assert!(
                Instant::now() < deadline,
                "purged, but only {} closures dropped",
                cancelled.dropped()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(live.dropped(), 0, "the live timer was dropped");

        lp.stop();
        thread.join().unwrap();
        // One more iteration counts any cancellation reported after the
        // loop's last look; then the idle loop's stats are exact.
        run_one_iteration(&lp);
        let stats = lp.stats();
        // What is left: the live head and the stragglers, cancelled after
        // the last purge; every purged closure is gone.
        assert!((1..=101).contains(&stats.timers), "{stats:?}");
        assert!(
            cancelled.dropped() >= 1000 - (stats.timers - 1),
            "{stats:?}, {} dropped",
            cancelled.dropped()
        );
        // Every straggler was cancelled elsewhere and is counted.
        assert!(stats.cancelled_timers >= stats.timers - 1, "{stats:?}");
        assert!(stats.cancelled_timers <= stats.timers, "{stats:?}");
        assert!(!head[0].cancelled());
        assert_eq!(live.dropped(), 0);
        drop(handles);
        lp.close().unwrap();
        assert_eq!((live.dropped(), cancelled.dropped()), (1, 1000));
    });
}

// ----- 2. the exact count, and the threshold -------------------------------------------------

#[test]
fn foreign_cancellations_are_counted_exactly_and_purged_at_asyncios_threshold() {
    // The same steps in CPython 3.11 (cancels made between runs) give
    // len(loop._scheduled), loop._timer_cancelled_count = (301, 150), then
    // (150, 0) after the 151st cancellation.
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let (live, cancelled) = (DropCounter::new(), DropCounter::new());
        let head = far_timers(&lp, 1, HOUR, &live);
        let mut handles = far_timers(&lp, 300, TWO_HOURS, &cancelled);
        let stats = lp.stats();
        assert_eq!((stats.timers, stats.cancelled_timers), (301, 0));

        // 100 cancelled on another thread, 50 on the loop's own.
        let rest = handles.split_off(100);
        let first = cancel_elsewhere(handles);
        let (tx, rx) = mpsc::channel();
        lp.call_soon(move || {
            for h in &rest[..50] {
                h.cancel();
            }
            tx.send(rest).unwrap();
        })
        .unwrap();
        run_one_iteration(&lp);
        let rest = rx.recv_timeout(LIMIT).unwrap();
        // The next iteration has taken in the foreign reports.
        run_one_iteration(&lp);
        let stats = lp.stats();
        // 150 of 301: not over half, no purge; every one counted.
        assert_eq!(
            (stats.timers, stats.cancelled_timers),
            (301, 150),
            "{stats:?}"
        );

        // The 151st, from another thread: 151 of 301 is over half.
        let mut rest = rest;
        let mut uncancelled = rest.split_off(50);
        let one = cancel_elsewhere(vec![uncancelled.remove(0)]);
        run_one_iteration(&lp);
        let stats = lp.stats();
        assert_eq!(
            (stats.timers, stats.cancelled_timers),
            (150, 0),
            "{stats:?}"
        );
        assert_eq!(
            cancelled.dropped(),
            151,
            "the purged closures were not dropped"
        );
        assert_eq!(live.dropped(), 0);
        assert!(!head[0].cancelled());
        assert!(uncancelled.iter().all(|h| !h.cancelled()));
        assert_eq!(uncancelled.len(), 149);
        drop((first, rest, one));
        lp.close().unwrap();
        assert_eq!((live.dropped(), cancelled.dropped()), (1, 300));
    });
}

// ----- 3. destructors run by the loop that use the loop ----------------------------------

/// What a destructor does with the loop that dropped it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Action {
    Close,
    RunUntilComplete,
    /// `stop()` first on an idle loop (one iteration); bare on a running
    /// one, where it must be refused (a stop would end the outer run).
    RunForever {
        stop_first: bool,
    },
}

fn act(lp: &EventLoop, action: Action) -> Result<(), Error> {
    match action {
        Action::Close => lp.close(),
        Action::RunUntilComplete => lp.run_until_complete(async { 7 }).map(|v| assert_eq!(v, 7)),
        Action::RunForever { stop_first } => {
            if stop_first {
                lp.stop();
            }
            lp.run_forever()
        }
    }
}

/// Does `action` on its loop when dropped, and sends the result.
struct UsesLoop {
    lp: EventLoop,
    action: Action,
    done: mpsc::Sender<Result<(), Error>>,
}

impl Drop for UsesLoop {
    fn drop(&mut self) {
        let _ = self.done.send(act(&self.lp, self.action));
    }
}

/// From another thread: a callback (a timer if `timer`) holding a
/// [`UsesLoop`], posted to `lp` and cancelled before the loop has taken
/// it in, so that the loop discards it when it gets there.
fn post_cancelled(
    lp: &EventLoop,
    timer: bool,
    action: Action,
) -> mpsc::Receiver<Result<(), Error>> {
    let (tx, rx) = mpsc::channel();
    let poster = lp.clone();
    let weak = lp.downgrade();
    std::thread::spawn(move || {
        let guard = UsesLoop {
            lp: weak.upgrade().unwrap(),
            action,
            done: tx,
        };
        if timer {
            let t = poster
                .call_later(Duration::from_secs(60), move || drop(guard))
                .unwrap();
            t.cancel();
        } else {
            let h = poster.call_soon(move || drop(guard)).unwrap();
            h.cancel();
        }
    })
    .join()
    .unwrap();
    rx
}

#[test]
fn a_destructor_run_by_stats_or_all_tasks_on_an_idle_loop_may_close_or_run_the_loop() {
    // The loop is idle and nobody holds its lock while the destructor
    // runs: close() closes it, run_* run it, as on any idle loop.
    for via_all_tasks in [false, true] {
        for action in [
            Action::Close,
            Action::RunUntilComplete,
            Action::RunForever { stop_first: true },
        ] {
            within(Duration::from_secs(20), move || {
                let lp = EventLoop::new().unwrap();
                let rx = post_cancelled(&lp, true, action);
                // Files the timer, finds it cancelled and drops it.
                if via_all_tasks {
                    assert!(lp.all_tasks().unwrap().is_empty());
                } else {
                    let _ = lp.stats();
                }
                let result = rx
                    .recv_timeout(Duration::from_secs(10))
                    .expect("the destructor did not run");
                assert!(result.is_ok(), "{action:?}: {result:?}");
                if action == Action::Close {
                    assert!(lp.is_closed());
                    assert!(matches!(
                        lp.run_until_complete(async {}),
                        Err(Error::Closed)
                    ));
                } else {
                    // Still a working loop.
                    assert_eq!(lp.run_until_complete(async { 1 }).unwrap(), 1);
                    assert_eq!(lp.stats().timers, 0);
                    lp.close().unwrap();
                }
            });
        }
    }
}

#[test]
fn a_destructor_run_by_a_running_loop_gets_typed_errors_from_close_and_run() {
    // asyncio: "Cannot close a running event loop", "This event loop is
    // already running" (RuntimeError both).
    for timer in [true, false] {
        for (action, expected) in [
            (Action::Close, "CloseRunning"),
            (Action::RunUntilComplete, "AlreadyRunning"),
            (Action::RunForever { stop_first: false }, "AlreadyRunning"),
        ] {
            within(Duration::from_secs(20), move || {
                let lp = EventLoop::new().unwrap();
                let result = lp
                    .run_until_complete(async {
                        let rx = post_cancelled(&lp, timer, action);
                        // The loop takes the cancelled callback in and
                        // drops it on one of its next iterations.
                        let deadline = Instant::now() + Duration::from_secs(10);
                        loop {
                            if let Ok(result) = rx.try_recv() {
                                break result;
                            }
                            assert!(Instant::now() < deadline, "the destructor did not run");
                            evloop::sleep(Duration::from_millis(1)).await.unwrap();
                        }
                    })
                    .unwrap();
                let ok = matches!(
                    (&result, expected),
                    (Err(Error::CloseRunning), "CloseRunning")
                        | (Err(Error::AlreadyRunning), "AlreadyRunning")
                );
                assert!(ok, "timer {timer}, {action:?}: {result:?}");
                // The loop is intact: it runs and closes as usual.
                assert!(!lp.is_running());
                assert_eq!(lp.run_until_complete(async { 1 }).unwrap(), 1);
                lp.close().unwrap();
            });
        }
    }
}

#[test]
fn a_destructor_run_by_close_may_call_close_and_run_again() {
    // close() drops what is still queued; a destructor among them that
    // calls close() finds the loop closed (idempotent, Ok), and one that
    // runs it gets Error::Closed.
    for action in [
        Action::Close,
        Action::RunUntilComplete,
        Action::RunForever { stop_first: true },
    ] {
        within(Duration::from_secs(20), move || {
            let lp = EventLoop::new().unwrap();
            let (tx, rx) = mpsc::channel();
            let guard = UsesLoop {
                lp: lp.clone(),
                action,
                done: tx,
            };
            // A live timer, a pending callback: both dropped by close().
            let (tx2, rx2) = mpsc::channel();
            let guard2 = UsesLoop {
                lp: lp.clone(),
                action,
                done: tx2,
            };
            lp.call_later(HOUR, move || drop(guard)).unwrap();
            lp.call_soon(move || drop(guard2)).unwrap();
            lp.close().unwrap();
            assert!(lp.is_closed());
            for rx in [rx, rx2] {
                let result = rx
                    .recv_timeout(Duration::from_secs(10))
                    .expect("close() did not drop the callback");
                match action {
                    Action::Close => assert!(result.is_ok(), "{result:?}"),
                    _ => assert!(
                        matches!(result, Err(Error::Closed)),
                        "{action:?}: {result:?}"
                    ),
                }
            }
        });
    }
}

/// Cancels `handles[range]` on a thread of its own, and hands them back.
fn cancel_range_elsewhere(
    handles: Vec<TimerHandle>,
    range: std::ops::Range<usize>,
) -> Vec<TimerHandle> {
    std::thread::spawn(move || {
        for h in &handles[range] {
            h.cancel();
        }
        handles
    })
    .join()
    .unwrap()
}

#[test]
fn stats_on_an_idle_loop_counts_timers_cancelled_on_other_threads() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let drops = DropCounter::new();
        let _head = lp.call_later(Duration::from_secs(3600), || ()).unwrap();
        let handles: Vec<_> = (0..300)
            .map(|_| {
                let t = drops.token();
                lp.call_later(Duration::from_secs(7200), move || drop(t))
                    .unwrap()
            })
            .collect();
        let stats = lp.stats();
        assert_eq!((stats.timers, stats.cancelled_timers), (301, 0));
        let handles = cancel_range_elsewhere(handles, 0..150);
        let stats = lp.stats();
        assert_eq!(
            (stats.timers, stats.cancelled_timers),
            (301, 150),
            "idle stats() missed the foreign cancellations"
        );
        let handles = cancel_range_elsewhere(handles, 150..151);
        let stats = lp.stats();
        assert_eq!(
            (stats.timers, stats.cancelled_timers),
            (150, 0),
            "idle stats() did not apply asyncio's purge rule"
        );
        assert_eq!(drops.dropped(), 151);
        drop(handles);
    });
}

// ----- timers posted from outside the running loop ------------------------------------------

/// Timers scheduled before the loop runs travel through its inbox; all of
/// them must reach the heap before due timers run, or a due timer still
/// in the inbox fires after later deadlines (a regression: the inbox's
/// per-iteration budget used to hold back timers too).
#[test]
fn timers_posted_before_the_loop_runs_fire_in_deadline_order_at_100k() {
    within(LIMIT, || {
        const N: u32 = 100_000;
        let lp = EventLoop::new().unwrap();
        let fired = std::sync::Arc::new(std::sync::Mutex::new(Vec::with_capacity(N as usize)));
        let base = Instant::now();
        // Latest deadline first: arrival order is the reverse of deadline
        // order, and every deadline is due when the loop starts.
        for i in (0..N).rev() {
            let f = fired.clone();
            lp.call_at(base + Duration::from_micros(u64::from(i)), move || {
                f.lock().unwrap().push(i)
            })
            .unwrap();
        }
        while base.elapsed() < Duration::from_micros(u64::from(N)) {
            std::thread::yield_now();
        }
        run_until_stopped_after(&lp, N as usize, &fired);
        let fired = fired.lock().unwrap();
        assert_eq!(fired.len(), N as usize);
        assert!(
            fired.windows(2).all(|w| w[0] < w[1]),
            "out of deadline order: first entries {:?}",
            &fired[..8]
        );
    });
}

/// Runs `lp` until `fired` holds `n` entries.
fn run_until_stopped_after(lp: &EventLoop, n: usize, fired: &std::sync::Mutex<Vec<u32>>) {
    while fired.lock().unwrap().len() < n {
        run_one_iteration(lp);
    }
}

/// A flood of callbacks posted ahead of a due timer does not let a later
/// due timer overtake it.
#[test]
fn a_due_timer_posted_behind_a_flood_of_callbacks_keeps_its_deadline_order() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let fired = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let now = Instant::now();
        let f = fired.clone();
        lp.call_at(now, move || f.lock().unwrap().push(2)).unwrap();
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..5000 {
            let r = ran.clone();
            lp.call_soon(move || {
                r.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            })
            .unwrap();
        }
        let f = fired.clone();
        lp.call_at(now - Duration::from_millis(1), move || {
            f.lock().unwrap().push(1)
        })
        .unwrap();
        run_until_stopped_after(&lp, 2, &fired);
        assert_eq!(*fired.lock().unwrap(), [1, 2]);
        // The callbacks held back by the budget run in later iterations
        // (the budget still bounds each one), all of them.
        assert!(lp.stats().ready > 0);
        while lp.stats().ready > 0 {
            run_one_iteration(&lp);
        }
        assert_eq!(ran.load(std::sync::atomic::Ordering::Relaxed), 5000);
    });
}
