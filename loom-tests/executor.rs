//! loom model of the executor's park/notify protocol
//! (src/executor/sleepers.rs), searcher included: no job is lost, no
//! wake-up is lost, workers are started on demand up to the limit, and
//! shutdown lets every worker exit (a worker that never exits shows up as
//! a deadlock at join).
#![cfg(loom)]

use evloop::loom_api::{Gate, Notify, Park, Sleepers};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread::{self, JoinHandle};
use std::collections::VecDeque;

const MAX_WORKERS: usize = 2;

struct Pool {
    queue: Mutex<VecDeque<usize>>,
    sleepers: Sleepers,
    ran: Vec<AtomicUsize>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// Job 0 runs until job 1 has run (a job that needs a second worker).
    zero_waits_for_one: bool,
    /// Per job, whether it ran (for blocking waits).
    finished: Mutex<Vec<usize>>,
    finished_cv: loom::sync::Condvar,
}

impl Pool {
    fn pop(&self) -> Option<usize> {
        self.queue.lock().unwrap().pop_front()
    }

    fn run(&self, job: usize) {
        if job == 0 && self.zero_waits_for_one {
            // Blocks (no spinning: a stranded job 1 is then a deadlock,
            // which loom reports with every thread's state).
            let mut finished = self.finished.lock().unwrap();
            while finished[1] == 0 {
                finished = self.finished_cv.wait(finished).unwrap();
            }
        }
        self.ran[job].fetch_add(1, Ordering::SeqCst);
        self.finished.lock().unwrap()[job] += 1;
        self.finished_cv.notify_all();
    }

    /// Blocks until every job ran.
    fn wait_all(&self) {
        let mut finished = self.finished.lock().unwrap();
        while finished.contains(&0) {
            finished = self.finished_cv.wait(finished).unwrap();
        }
    }

    fn work(pool: &Arc<Pool>) {
        let this = &**pool;
        // As `Pool::work`: after searching, the first job taken comes with
        // a look at the queue and a sibling woken for what is left.
        let mut searched = false;
        loop {
            while let Some(job) = this.pop() {
                if std::mem::take(&mut searched) && !this.queue.lock().unwrap().is_empty() {
                    wake_sibling(pool);
                }
                this.run(job);
            }
            // Search once as the pool's searcher (if none is), as
            // `Pool::search` does before parking; submitters that see the
            // searcher wake nobody.
            if this.sleepers.try_search() {
                let found = !this.queue.lock().unwrap().is_empty();
                this.sleepers.end_search();
                searched = true;
                if found {
                    continue;
                }
            }
            match this
                .sleepers
                .park(|| !this.queue.lock().unwrap().is_empty())
            {
                Park::Work => continue,
                Park::Shutdown => {
                    while let Some(job) = this.pop() {
                        this.run(job);
                    }
                    this.sleepers.exit();
                    return;
                }
                Park::Retire => return,
            }
        }
    }
}

fn wake_sibling(pool: &Arc<Pool>) {
    if pool.sleepers.notify(MAX_WORKERS) == Notify::Spawn {
        spawn(pool);
    }
}

fn spawn(pool: &Arc<Pool>) {
    let p = pool.clone();
    let handle = thread::spawn(move || Pool::work(&p));
    pool.workers.lock().unwrap().push(handle);
}

fn submit(pool: &Arc<Pool>, job: usize) {
    pool.queue.lock().unwrap().push_back(job);
    if pool.sleepers.notify(MAX_WORKERS) == Notify::Spawn {
        spawn(pool);
    }
}

fn pool(jobs: usize) -> Arc<Pool> {
    pool_with(jobs, false)
}

fn pool_with(jobs: usize, zero_waits_for_one: bool) -> Arc<Pool> {
    Arc::new(Pool {
        queue: Mutex::new(VecDeque::new()),
        sleepers: Sleepers::default(),
        ran: (0..jobs).map(|_| AtomicUsize::new(0)).collect(),
        workers: Mutex::new(Vec::new()),
        zero_waits_for_one,
        finished: Mutex::new(vec![0; jobs]),
        finished_cv: loom::sync::Condvar::new(),
    })
}

fn shutdown_and_join(pool: &Arc<Pool>) {
    pool.sleepers.shutdown();
    loop {
        let handle = pool.workers.lock().unwrap().pop();
        match handle {
            Some(h) => h.join().unwrap(),
            None => break,
        }
    }
    assert_eq!(pool.sleepers.live(), 0);
}

#[test]
fn jobs_from_two_submitters_each_run_once_and_shutdown_joins() {
    loom::model(|| {
        let pool = pool(2);
        let submitters: Vec<_> = (0..2)
            .map(|job| {
                let pool = pool.clone();
                thread::spawn(move || submit(&pool, job))
            })
            .collect();
        for s in submitters {
            s.join().unwrap();
        }
        shutdown_and_join(&pool);
        for r in &pool.ran {
            assert_eq!(r.load(Ordering::SeqCst), 1);
        }
    });
}

#[test]
fn a_job_submitted_while_the_only_worker_parks_is_not_stranded() {
    loom::model(|| {
        let pool = pool(2);
        submit(&pool, 0);
        // The worker may be running, parking or parked while this arrives.
        let p = pool.clone();
        let late = thread::spawn(move || submit(&p, 1));
        late.join().unwrap();
        // Wait (without shutdown) until both jobs ran: a stranded job would
        // spin here forever, which loom reports.
        while pool.ran.iter().any(|r| r.load(Ordering::SeqCst) == 0) {
            thread::yield_now();
        }
        shutdown_and_join(&pool);
        for r in &pool.ran {
            assert_eq!(r.load(Ordering::SeqCst), 1);
        }
    });
}

#[test]
fn a_worker_retiring_at_its_keep_alive_never_strands_a_job() {
    // The keep-alive expires (a clock the model drives) at every point of
    // a submission: either the worker sees the wake-up token, or the
    // submitter sees it gone and starts another worker.
    loom::model(|| {
        let pool = pool(2);
        submit(&pool, 0);
        let p = pool.clone();
        let clock = thread::spawn(move || p.sleepers.expire_keep_alive());
        submit(&pool, 1);
        clock.join().unwrap();
        while pool.ran.iter().any(|r| r.load(Ordering::SeqCst) == 0) {
            thread::yield_now();
        }
        shutdown_and_join(&pool);
        for r in &pool.ran {
            assert_eq!(r.load(Ordering::SeqCst), 1);
        }
    });
}

#[test]
fn a_submission_past_the_gate_is_queued_before_shutdown_returns() {
    // `accepting` (src/executor/gate.rs): a job accepted while shutdown
    // closes the gate is in the queue by the time `close` returns, so the
    // draining workers run it; a refused one is not.
    loom::model(|| {
        let gate = Arc::new(Gate::default());
        let queue = Arc::new(Mutex::new(Vec::new()));
        let (g, q) = (gate.clone(), queue.clone());
        let submitter = thread::spawn(move || g.submit(|| q.lock().unwrap().push(1)));
        gate.close();
        let queued_at_close = queue.lock().unwrap().len();
        let accepted = submitter.join().unwrap();
        assert_eq!(queued_at_close, usize::from(accepted));
    });
}

#[test]
fn a_searcher_that_takes_a_long_job_wakes_a_sibling_for_the_next() {
    // Two jobs arrive while the only worker searches (submitters then wake
    // nobody); the first runs until the second has run, so the second
    // needs another worker. Were it left queued, job 0 would wait forever,
    // which loom reports.
    loom::model(|| {
        let pool = pool_with(2, true);
        // A worker is running (it will search once the queue is empty).
        spawn_started(&pool);
        let p = pool.clone();
        let submitter = thread::spawn(move || {
            submit(&p, 0);
            submit(&p, 1);
        });
        submitter.join().unwrap();
        pool.wait_all();
        shutdown_and_join(&pool);
    });
}

/// Starts one worker as `notify` would (counted live first).
fn spawn_started(pool: &Arc<Pool>) {
    assert_eq!(pool.sleepers.notify(MAX_WORKERS), Notify::Spawn);
    spawn(pool);
}
