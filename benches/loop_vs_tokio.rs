//! evloop and tokio side by side, in one binary, on the same machine in
//! the same run. After criterion's own report, prints the ratio
//! evloop-time / tokio-time for each pair (below 1.0: evloop is faster).
//!
//! Run: `cargo bench --bench loop_vs_tokio` (add a filter such as
//! `-- call_soon` for one group).

use criterion::{BenchmarkId, Criterion, Throughput};
use evloop::EventLoop;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const BATCH: usize = 10_000;
const CHAIN: usize = 10_000;
const POSTS: usize = 100_000;
const ROUND_TRIPS: usize = 2_000;
const TIMERS: usize = 200_000;
const JOBS: usize = 100_000;
const JOB_CHUNK: usize = 1_000;
const CPU_JOBS: usize = 64;

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Completion signal shared by both sides of a pair: the bench thread
/// blocks (rather than spins, which would steal a core from the loops).
#[derive(Default)]
struct Done {
    flag: std::sync::Mutex<bool>,
    cond: std::sync::Condvar,
}

impl Done {
    fn set(&self) {
        *self.flag.lock().unwrap() = true;
        self.cond.notify_one();
    }
    fn wait(&self) {
        let mut f = self.flag.lock().unwrap();
        while !*f {
            f = self.cond.wait(f).unwrap();
        }
    }
}

// ----- call_soon, batched: N callbacks scheduled from the loop, run in one go -------

fn call_soon_batched(c: &mut Criterion) {
    let mut g = c.benchmark_group("call_soon_batched");
    g.throughput(Throughput::Elements(BATCH as u64));
    let lp = EventLoop::new().unwrap();
    g.bench_function("evloop", |b| {
        let counter = Arc::new(AtomicUsize::new(0));
        b.iter(|| {
            let (lp2, counter) = (lp.clone(), counter.clone());
            lp.run_until_complete(async move {
                for _ in 0..BATCH {
                    let c = counter.clone();
                    drop(lp2.call_soon(move || {
                        c.fetch_add(1, Ordering::Relaxed);
                    }));
                }
                evloop::sleep(Duration::ZERO).await.unwrap();
            })
            .unwrap();
        })
    });
    let rt = current_thread();
    g.bench_function("tokio", |b| {
        let counter = Arc::new(AtomicUsize::new(0));
        b.iter(|| {
            let counter = counter.clone();
            rt.block_on(async move {
                let target = counter.load(Ordering::Relaxed) + BATCH;
                for _ in 0..BATCH {
                    let c = counter.clone();
                    drop(tokio::spawn(async move {
                        c.fetch_add(1, Ordering::Relaxed);
                    }));
                }
                while counter.load(Ordering::Relaxed) < target {
                    tokio::task::yield_now().await;
                }
            })
        })
    });
    g.finish();
}

// ----- call_soon, chained: each callback schedules the next ---------------------------

fn chain(lp: EventLoop, left: usize) {
    if left == 0 {
        lp.stop();
        return;
    }
    let next = lp.clone();
    drop(lp.call_soon(move || chain(next, left - 1)));
}

fn spawn_chain(left: usize, done: Arc<tokio::sync::Notify>) {
    if left == 0 {
        done.notify_one();
        return;
    }
    drop(tokio::spawn(async move { spawn_chain(left - 1, done) }));
}

fn call_soon_chained(c: &mut Criterion) {
    let mut g = c.benchmark_group("call_soon_chained");
    g.throughput(Throughput::Elements(CHAIN as u64));
    let lp = EventLoop::new().unwrap();
    g.bench_function("evloop", |b| {
        b.iter(|| {
            let first = lp.clone();
            lp.call_soon(move || chain(first, CHAIN)).unwrap();
            lp.run_forever().unwrap();
        })
    });
    let rt = current_thread();
    g.bench_function("tokio", |b| {
        b.iter(|| {
            rt.block_on(async {
                let done = Arc::new(tokio::sync::Notify::new());
                spawn_chain(CHAIN, done.clone());
                done.notified().await;
            })
        })
    });
    g.finish();
}

// ----- create_task, chained: each task creates the next -------------------------------

fn task_chain(left: usize, done: evloop::LoopFuture<()>) {
    if left == 0 {
        done.set_result(()).unwrap();
        return;
    }
    drop(evloop::spawn(async move { task_chain(left - 1, done) }).unwrap());
}

fn create_task_chained(c: &mut Criterion) {
    let mut g = c.benchmark_group("create_task_chained");
    g.throughput(Throughput::Elements(CHAIN as u64));
    let lp = EventLoop::new().unwrap();
    g.bench_function("evloop", |b| {
        b.iter(|| {
            let done = lp.create_future::<()>();
            let d = done.clone();
            lp.run_until_complete(async move {
                task_chain(CHAIN, d);
                done.await.unwrap();
            })
            .unwrap();
        })
    });
    let rt = current_thread();
    g.bench_function("tokio", |b| {
        b.iter(|| {
            rt.block_on(async {
                let done = Arc::new(tokio::sync::Notify::new());
                spawn_chain(CHAIN, done.clone());
                done.notified().await;
            })
        })
    });
    g.finish();
}

// ----- call_soon_threadsafe throughput from another thread ----------------------------

fn call_soon_threadsafe(c: &mut Criterion) {
    let mut g = c.benchmark_group("call_soon_threadsafe");
    g.throughput(Throughput::Elements(POSTS as u64));
    g.sample_size(20);

    let lp = EventLoop::new().unwrap();
    let runner = lp.clone();
    let thread = std::thread::spawn(move || runner.run_forever().unwrap());
    g.bench_function("evloop", |b| {
        b.iter(|| {
            let counter = Arc::new(AtomicUsize::new(0));
            let done = Arc::new(Done::default());
            for _ in 0..POSTS {
                let (c, d) = (counter.clone(), done.clone());
                drop(lp.call_soon_threadsafe(move || {
                    if c.fetch_add(1, Ordering::Relaxed) + 1 == POSTS {
                        d.set();
                    }
                }));
            }
            done.wait();
        })
    });
    lp.stop();
    thread.join().unwrap();

    // tokio's fastest cross-thread path for closures: an unbounded mpsc
    // drained by a task on a current-thread runtime.
    type Job = Box<dyn FnOnce() + Send>;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
    let thread = std::thread::spawn(move || {
        current_thread().block_on(async move {
            while let Some(job) = rx.recv().await {
                job();
            }
        })
    });
    g.bench_function("tokio", |b| {
        b.iter(|| {
            let counter = Arc::new(AtomicUsize::new(0));
            let done = Arc::new(Done::default());
            for _ in 0..POSTS {
                let (c, d) = (counter.clone(), done.clone());
                tx.send(Box::new(move || {
                    if c.fetch_add(1, Ordering::Relaxed) + 1 == POSTS {
                        d.set();
                    }
                }))
                .unwrap();
            }
            done.wait();
        })
    });
    drop(tx);
    thread.join().unwrap();
    g.finish();
}

// ----- ping-pong between two loops on two threads -------------------------------------

fn ping(me: EventLoop, peer: EventLoop, left: usize, done: Arc<Done>) {
    if left == 0 {
        done.set();
        return;
    }
    let (me2, peer2) = (me.clone(), peer.clone());
    drop(peer.call_soon_threadsafe(move || ping(peer2, me2, left - 1, done)));
}

fn ping_pong(c: &mut Criterion) {
    let mut g = c.benchmark_group("ping_pong");
    g.throughput(Throughput::Elements(ROUND_TRIPS as u64));
    g.sample_size(20);

    let a = EventLoop::new().unwrap();
    let bl = EventLoop::new().unwrap();
    let threads: Vec<_> = [a.clone(), bl.clone()]
        .into_iter()
        .map(|lp| std::thread::spawn(move || lp.run_forever().unwrap()))
        .collect();
    g.bench_function("evloop", |b| {
        b.iter(|| {
            let done = Arc::new(Done::default());
            let (a2, b2, d) = (a.clone(), bl.clone(), done.clone());
            a.call_soon_threadsafe(move || ping(a2, b2, 2 * ROUND_TRIPS, d))
                .unwrap();
            done.wait();
        })
    });
    a.stop();
    bl.stop();
    threads.into_iter().for_each(|t| t.join().unwrap());

    // Two current-thread runtimes on two threads, mpsc channels between.
    let (to_b, mut b_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let (to_a, mut a_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let (start_tx, mut start_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Arc<Done>)>();
    let to_b2 = to_b.clone();
    let ta = std::thread::spawn(move || {
        current_thread().block_on(async move {
            while let Some((n, done)) = start_rx.recv().await {
                to_b2.send(n).unwrap();
                while let Some(left) = a_rx.recv().await {
                    if left == 0 {
                        break;
                    }
                    to_b2.send(left - 1).unwrap();
                }
                done.set();
            }
        })
    });
    let tb = std::thread::spawn(move || {
        current_thread().block_on(async move {
            while let Some(left) = b_rx.recv().await {
                if to_a.send(left.saturating_sub(1)).is_err() {
                    break;
                }
            }
        })
    });
    g.bench_function("tokio", |b| {
        b.iter(|| {
            let done = Arc::new(Done::default());
            start_tx.send((2 * ROUND_TRIPS - 1, done.clone())).unwrap();
            done.wait();
        })
    });
    drop(start_tx);
    drop(to_b);
    ta.join().unwrap();
    tb.join().unwrap();
    g.finish();
}

// ----- timers: 200,000 scheduled, half cancelled, the rest fired ----------------------

fn timers(c: &mut Criterion) {
    let mut g = c.benchmark_group("timers");
    g.throughput(Throughput::Elements(TIMERS as u64));
    g.sample_size(10);
    let lp = EventLoop::new().unwrap();
    g.bench_function("evloop", |b| {
        b.iter(|| {
            let lp2 = lp.clone();
            lp.run_until_complete(async move {
                let fired = Arc::new(AtomicUsize::new(0));
                let mut cancel = Vec::with_capacity(TIMERS / 2);
                for i in 0..TIMERS {
                    let f = fired.clone();
                    let delay = Duration::from_micros((i % 1000) as u64);
                    let t = lp2
                        .call_later(delay, move || {
                            f.fetch_add(1, Ordering::Relaxed);
                        })
                        .unwrap();
                    if i % 2 == 1 {
                        cancel.push(t);
                    }
                }
                cancel.iter().for_each(|t| t.cancel());
                while fired.load(Ordering::Relaxed) < TIMERS / 2 {
                    evloop::sleep(Duration::from_micros(500)).await.unwrap();
                }
            })
            .unwrap();
        })
    });
    let rt = current_thread();
    g.bench_function("tokio", |b| {
        b.iter(|| {
            rt.block_on(async {
                let fired = Arc::new(AtomicUsize::new(0));
                let mut cancel = Vec::with_capacity(TIMERS / 2);
                for i in 0..TIMERS {
                    let f = fired.clone();
                    let delay = Duration::from_micros((i % 1000) as u64);
                    let t = tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        f.fetch_add(1, Ordering::Relaxed);
                    });
                    if i % 2 == 1 {
                        cancel.push(t);
                    }
                }
                cancel.iter().for_each(|t| t.abort());
                while fired.load(Ordering::Relaxed) < TIMERS / 2 {
                    tokio::time::sleep(Duration::from_micros(500)).await;
                }
            })
        })
    });
    g.finish();
}

// ----- run_in_executor: trivial jobs awaited in chunks --------------------------------

fn run_in_executor(c: &mut Criterion) {
    let mut g = c.benchmark_group("run_in_executor");
    g.throughput(Throughput::Elements(JOBS as u64));
    g.sample_size(10);
    let lp = EventLoop::new().unwrap();
    g.bench_function("evloop", |b| {
        b.iter(|| {
            let lp2 = lp.clone();
            lp.run_until_complete(async move {
                let mut sum = 0usize;
                for chunk in 0..JOBS / JOB_CHUNK {
                    let futs: Vec<_> = (0..JOB_CHUNK)
                        .map(|i| lp2.run_in_executor(None, move || chunk + i).unwrap())
                        .collect();
                    for f in futs {
                        sum += f.await.unwrap();
                    }
                }
                sum
            })
            .unwrap()
        })
    });
    let rt = current_thread();
    g.bench_function("tokio", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut sum = 0usize;
                for chunk in 0..JOBS / JOB_CHUNK {
                    let futs: Vec<_> = (0..JOB_CHUNK)
                        .map(|i| tokio::task::spawn_blocking(move || chunk + i))
                        .collect();
                    for f in futs {
                        sum += f.await.unwrap();
                    }
                }
                sum
            })
        })
    });
    g.finish();
}

// ----- CPU-bound fan-out across all cores --------------------------------------------

/// About 100 µs of integer hashing.
fn cpu_work(seed: u64) -> u64 {
    let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
    for i in 0..40_000u64 {
        h = (h ^ i).wrapping_mul(0x0100_0000_01b3).rotate_left(5);
    }
    h
}

fn cpu_fan_out(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu_fan_out");
    g.throughput(Throughput::Elements(CPU_JOBS as u64));
    g.sample_size(20);
    let lp = EventLoop::new().unwrap();
    let workers = num_cpus::get();
    let pool = Arc::new(
        evloop::ThreadPoolExecutor::builder()
            .max_workers(workers)
            .build(),
    );
    g.bench_function(BenchmarkId::new("evloop", workers), |b| {
        b.iter(|| {
            let (lp2, pool) = (lp.clone(), pool.clone());
            lp.run_until_complete(async move {
                let futs: Vec<_> = (0..CPU_JOBS as u64)
                    .map(|i| {
                        lp2.run_in_executor(Some(&*pool), move || cpu_work(i))
                            .unwrap()
                    })
                    .collect();
                let mut x = 0;
                for f in futs {
                    x ^= f.await.unwrap();
                }
                x
            })
            .unwrap()
        })
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(workers)
        .build()
        .unwrap();
    g.bench_function(BenchmarkId::new("tokio", workers), |b| {
        b.iter(|| {
            rt.block_on(async {
                let futs: Vec<_> = (0..CPU_JOBS as u64)
                    .map(|i| tokio::task::spawn_blocking(move || cpu_work(i)))
                    .collect();
                let mut x = 0;
                for f in futs {
                    x ^= f.await.unwrap();
                }
                x
            })
        })
    });
    g.finish();
}

/// Reads criterion's mean estimate (ns) for one benchmark of this run.
fn mean_ns(group: &str, id: &str) -> Option<f64> {
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let path = format!("{dir}/criterion/{group}/{id}/new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let mean = &text[text.find("\"mean\"")?..];
    let est = &mean[mean.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
    let end = est.find([',', '}'])?;
    est[..end].trim().parse().ok()
}

fn print_ratios() {
    let workers = num_cpus::get().to_string();
    let pairs: [(&str, String, String); 8] = [
        ("call_soon_batched", "evloop".into(), "tokio".into()),
        ("call_soon_chained", "evloop".into(), "tokio".into()),
        ("create_task_chained", "evloop".into(), "tokio".into()),
        ("call_soon_threadsafe", "evloop".into(), "tokio".into()),
        ("ping_pong", "evloop".into(), "tokio".into()),
        ("timers", "evloop".into(), "tokio".into()),
        ("run_in_executor", "evloop".into(), "tokio".into()),
        (
            "cpu_fan_out",
            format!("evloop/{workers}"),
            format!("tokio/{workers}"),
        ),
    ];
    println!("\nevloop / tokio (mean time per iteration; below 1.0 = evloop faster)");
    for (group, ours, theirs) in pairs {
        if let (Some(a), Some(b)) = (mean_ns(group, &ours), mean_ns(group, &theirs)) {
            println!(
                "{group:<22} evloop {:>12.1} us   tokio {:>12.1} us   ratio {:.2}",
                a / 1e3,
                b / 1e3,
                a / b
            );
        }
    }
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    call_soon_batched(&mut c);
    call_soon_chained(&mut c);
    create_task_chained(&mut c);
    call_soon_threadsafe(&mut c);
    ping_pong(&mut c);
    timers(&mut c);
    run_in_executor(&mut c);
    cpu_fan_out(&mut c);
    c.final_summary();
    print_ratios();
}
