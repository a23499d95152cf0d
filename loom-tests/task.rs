//! loom model of a task's state word (src/task/state.rs) driven as the
//! loop and wakers drive it: a task is never queued twice, a wake-up
//! during or after a poll is never lost, cancellation always completes the
//! task, and the allocation is freed exactly once.
#![cfg(loom)]

use evloop::loom_api::{Start, TaskState, WakeByVal};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

struct Model {
    state: TaskState,
    /// Run-queue entries (each holds one reference).
    queue: Mutex<usize>,
    /// Events the "future" is waiting for; it completes once it saw `need`.
    events: AtomicUsize,
    frees: AtomicUsize,
}

impl Model {
    fn new() -> Arc<Model> {
        // A new task is queued once, holding its one reference.
        Arc::new(Model {
            state: TaskState::default(),
            queue: Mutex::new(1),
            events: AtomicUsize::new(0),
            frees: AtomicUsize::new(0),
        })
    }

    fn enqueue(&self) {
        let mut q = self.queue.lock().unwrap();
        *q += 1;
        assert!(*q <= 1, "task queued twice");
    }

    fn release(&self) {
        if self.state.ref_dec() {
            self.frees.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// One run of the queued task, as the loop does it.
    fn run(&self, need: usize) {
        match self.state.start_run() {
            Start::Skip => self.release(),
            Start::Cancel => {
                self.state.complete(true);
                self.release();
            }
            Start::Poll => {
                if self.events.load(Ordering::SeqCst) >= need {
                    self.state.complete(false);
                    self.release();
                } else if self.state.end_run() {
                    self.enqueue();
                } else {
                    self.release();
                }
            }
        }
    }

    /// Runs queued entries until the queue is empty and `finished` says so.
    fn drive(&self, need: usize, finished: impl Fn() -> bool) {
        loop {
            let queued = {
                let mut q = self.queue.lock().unwrap();
                if *q > 0 {
                    *q -= 1;
                    true
                } else {
                    false
                }
            };
            if queued {
                self.run(need);
            } else if finished() {
                return;
            } else {
                thread::yield_now();
            }
        }
    }

    fn drop_handle(&self) {
        match self.state.drop_handle_if_incomplete() {
            Ok(free) => {
                if free {
                    self.frees.fetch_add(1, Ordering::SeqCst);
                }
            }
            Err(()) => {
                if self.state.drop_handle() {
                    self.frees.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }
}

#[test]
fn wakers_racing_the_poll_never_lose_a_wakeup() {
    loom::model(|| {
        let m = Model::new();
        // Two wakers, each holding a reference (cloned wakers).
        m.state.ref_inc();
        m.state.ref_inc();
        let done = Arc::new(AtomicUsize::new(0));
        let wakers: Vec<_> = (0..2)
            .map(|i| {
                let (m, done) = (m.clone(), done.clone());
                thread::spawn(move || {
                    m.events.fetch_add(1, Ordering::SeqCst);
                    if i == 0 {
                        match m.state.wake_by_val() {
                            WakeByVal::Enqueue => m.enqueue(),
                            WakeByVal::Dealloc => {
                                m.frees.fetch_add(1, Ordering::SeqCst);
                            }
                            WakeByVal::Nothing => {}
                        }
                    } else {
                        if m.state.wake_by_ref() {
                            m.enqueue();
                        }
                        m.release();
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        let d = done.clone();
        m.drive(2, move || d.load(Ordering::SeqCst) == 2);
        for w in wakers {
            w.join().unwrap();
        }
        m.drive(2, || true);
        assert!(m.state.is_complete(), "a wake-up was lost");
        m.drop_handle();
        assert_eq!(m.frees.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn cancel_from_another_thread_always_completes_the_task() {
    loom::model(|| {
        let m = Model::new();
        let m2 = m.clone();
        let canceller = thread::spawn(move || {
            if m2.state.request_cancel() && m2.state.wake_by_ref() {
                m2.enqueue();
            }
        });
        // The future never becomes ready on its own: only cancellation ends it.
        let m3 = m.clone();
        let c = Arc::new(AtomicUsize::new(0));
        let c2 = c.clone();
        let watcher = thread::spawn(move || {
            let _ = &m3;
            c2.store(1, Ordering::SeqCst);
        });
        m.drive(usize::MAX, || false_after(&c));
        canceller.join().unwrap();
        watcher.join().unwrap();
        m.drive(usize::MAX, || true);
        assert!(m.state.is_complete() && m.state.is_cancelled());
        m.drop_handle();
        assert_eq!(m.frees.load(Ordering::SeqCst), 1);
    });
}

fn false_after(c: &AtomicUsize) -> bool {
    c.load(Ordering::SeqCst) == 1
}

#[test]
fn closing_a_waiting_task_races_a_remote_wake() {
    loom::model(|| {
        let m = Model::new();
        // First poll: pending, registers a waker (one reference).
        m.drive(1, || true);
        m.state.ref_inc(); // the registry's reference
        m.state.ref_inc(); // the waker's
        let m2 = m.clone();
        let waker = thread::spawn(move || match m2.state.wake_by_val() {
            // The loop is closed: the queue entry is discarded at once,
            // which closes the task (discard = claim + complete + release).
            WakeByVal::Enqueue => {
                if m2.state.try_claim() {
                    m2.state.complete(true);
                }
                m2.release();
            }
            WakeByVal::Dealloc => {
                m2.frees.fetch_add(1, Ordering::SeqCst);
            }
            WakeByVal::Nothing => {}
        });
        // close(): the registry closes its task and drops its reference.
        if m.state.try_claim() {
            m.state.complete(true);
        }
        m.release();
        waker.join().unwrap();
        assert!(m.state.is_complete());
        m.drop_handle();
        assert_eq!(m.frees.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn done_callbacks_added_while_the_task_completes_run_exactly_once() {
    // Two threads add a done callback while the loop completes the task.
    // Each callback must be scheduled exactly once: by the completer if it
    // was in the list, otherwise by its adder.
    loom::model(|| {
        let state = Arc::new(TaskState::default());
        let list = Arc::new(Mutex::new(Vec::<usize>::new()));
        let scheduled = Arc::new(Mutex::new(Vec::<usize>::new()));
        let adders: Vec<_> = (0..2)
            .map(|i| {
                let (state, list, scheduled) = (state.clone(), list.clone(), scheduled.clone());
                thread::spawn(move || {
                    let mut l = list.lock().unwrap();
                    if state.mark_done_callbacks() {
                        l.push(i);
                    } else {
                        drop(l);
                        scheduled.lock().unwrap().push(i);
                    }
                })
            })
            .collect();
        if state.complete_finds_callbacks() {
            let taken = std::mem::take(&mut *list.lock().unwrap());
            scheduled.lock().unwrap().extend(taken);
        }
        for a in adders {
            a.join().unwrap();
        }
        let mut got = scheduled.lock().unwrap().clone();
        got.sort();
        assert_eq!(got, vec![0, 1], "a done callback was lost or doubled");
        assert!(list.lock().unwrap().is_empty());
    });
}
