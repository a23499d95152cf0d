//! Spawn-and-wait of a trivial child (`true`) on evloop
//! (`create_subprocess_exec` + `wait`) against tokio's
//! `process::Command` (`spawn` + `wait`) on a current-thread runtime: one child at a
//! time, and batches of 8 children at once. Both sides run on one thread
//! with the same work.
//!
//! Two reports: criterion's groups, then a paired table (rounds
//! alternating which side goes first) with the median and range of the
//! wall time and of this process's CPU time (user + system, without the
//! children's) per child. CPython's figure for the same loop is measured
//! separately (see the README).
//!
//! Run: `cargo bench --bench process` (`EVLOOP_BENCH_ROUNDS=n`).

mod harness;

use criterion::Criterion;
use evloop::{EventLoop, SubprocessOptions};
use harness::process_cpu;
use std::time::{Duration, Instant};

/// Children per measured run.
const CHILDREN: usize = 400;

fn evloop_spawns(lp: &EventLoop, n: usize, batch: usize) {
    lp.run_until_complete(async {
        for _ in 0..n / batch {
            let mut children = Vec::with_capacity(batch);
            for _ in 0..batch {
                children.push(
                    lp.create_subprocess_exec("true", [""; 0], SubprocessOptions::default())
                        .await
                        .unwrap(),
                );
            }
            for child in &children {
                assert_eq!(child.wait().await.unwrap(), 0);
            }
        }
    })
    .unwrap();
}

fn tokio_spawns(rt: &tokio::runtime::Runtime, n: usize, batch: usize) {
    rt.block_on(async {
        for _ in 0..n / batch {
            let mut children = Vec::with_capacity(batch);
            for _ in 0..batch {
                children.push(tokio::process::Command::new("true").spawn().unwrap());
            }
            for child in &mut children {
                assert!(child.wait().await.unwrap().success());
            }
        }
    });
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// (wall, cpu) per child of one run of `CHILDREN`.
fn measure(f: impl FnOnce()) -> (Duration, Duration) {
    let (c0, t0) = (process_cpu(), Instant::now());
    f();
    let (wall, cpu) = (t0.elapsed(), process_cpu() - c0);
    (wall / CHILDREN as u32, cpu / CHILDREN as u32)
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn show(xs: &[Duration]) -> String {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (lo, hi) = (xs.iter().min().unwrap(), xs.iter().max().unwrap());
    format!(
        "{:.1} µs ({:.1}–{:.1})",
        us(median(xs.to_vec())),
        us(*lo),
        us(*hi)
    )
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10)
        .configure_from_args();
    let lp = EventLoop::new().unwrap();
    let rt = tokio_runtime();
    for batch in [1usize, 8] {
        let mut g = c.benchmark_group(format!("spawn_wait_batch{batch}"));
        g.throughput(criterion::Throughput::Elements(CHILDREN as u64));
        g.bench_function("evloop", |b| b.iter(|| evloop_spawns(&lp, CHILDREN, batch)));
        g.bench_function("tokio", |b| b.iter(|| tokio_spawns(&rt, CHILDREN, batch)));
        g.finish();
    }
    c.final_summary();

    let rounds: usize = std::env::var("EVLOOP_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    println!(
        "\nspawn and wait `true`, {CHILDREN} children per run; {rounds} paired rounds, sides \
         alternated; per child, median (min–max). CPU = this process's user + system."
    );
    println!(
        "{:<7} {:>24} {:>24} {:>24} {:>24} {:>7} {:>7}",
        "batch", "evloop wall", "tokio wall", "evloop cpu", "tokio cpu", "wall ×", "cpu ×"
    );
    for batch in [1usize, 8] {
        let (mut ew, mut ec, mut tw, mut tc) = (vec![], vec![], vec![], vec![]);
        for round in 0..rounds {
            let mut ev = || {
                let (w, c) = measure(|| evloop_spawns(&lp, CHILDREN, batch));
                ew.push(w);
                ec.push(c);
            };
            let mut tk = || {
                let (w, c) = measure(|| tokio_spawns(&rt, CHILDREN, batch));
                tw.push(w);
                tc.push(c);
            };
            if round % 2 == 0 {
                ev();
                tk();
            } else {
                tk();
                ev();
            }
        }
        let ratio = |a: &[Duration], b: &[Duration]| {
            median(a.to_vec()).as_secs_f64() / median(b.to_vec()).as_secs_f64()
        };
        println!(
            "{:<7} {:>24} {:>24} {:>24} {:>24} {:>7.2} {:>7.2}",
            batch,
            show(&ew),
            show(&tw),
            show(&ec),
            show(&tc),
            ratio(&ew, &tw),
            ratio(&ec, &tc)
        );
    }
}
