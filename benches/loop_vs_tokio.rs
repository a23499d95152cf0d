//! evloop and tokio side by side, in one binary, on equal terms: the same
//! work, the same worker counts, the two sides alternated.
//!
//! Two reports:
//! 1. criterion's, one group per case (`evloop` and `tokio` in each);
//! 2. then a paired table: for every case, `ROUNDS` rounds, each timing
//!    both sides back to back (which side goes first alternates), with
//!    wall time and CPU time (user + system of the whole process, which
//!    only the side being measured uses; the other side's threads are
//!    gone or parked). It prints, per operation, the median and the range
//!    over the rounds, and the ratio of the medians (below 1.0: evloop
//!    is faster / cheaper).
//!
//! Run: `cargo bench --bench loop_vs_tokio` (criterion filters such as
//! `-- ping_pong` restrict both reports; `EVLOOP_BENCH_ROUNDS=n` sets the
//! number of rounds, default 5).

mod harness;

use criterion::{Criterion, Throughput};
use evloop::EventLoop;
use harness::process_cpu;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const BATCH: usize = 10_000;
const CHAIN: usize = 10_000;
const POSTS: usize = 100_000;
const ROUND_TRIPS: usize = 2_000;
const PACED_ROUND_TRIPS: usize = 300;
const PACE: Duration = Duration::from_millis(1);
const TIMERS: usize = 200_000;
const SPREAD_TIMERS: usize = 30_000;
const TICKS: usize = 200;
const JOBS: usize = 100_000;
const JOB_CHUNK: usize = 1_000;
const CPU_JOBS: usize = 64;
const FD_HOPS: usize = 20_000;

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Completion signal: the bench thread blocks (rather than spins, which
/// would steal a core from the loops).
#[derive(Default)]
struct Done {
    flag: Mutex<bool>,
    cond: Condvar,
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
        *f = false;
    }
}

/// One side of a case, set up: each call does the case's work once.
/// Dropping it tears the side down (joins its threads).
type Runner = Box<dyn FnMut()>;

struct Case {
    name: &'static str,
    /// What one operation is, for the per-op columns.
    op: &'static str,
    /// Operations per run.
    ops: usize,
    /// Runs per timed sample in the paired report.
    runs: usize,
    evloop: fn() -> Runner,
    tokio: fn() -> Runner,
}

// ----- call_soon, batched: N callbacks scheduled from the loop, run in one go -------

fn call_soon_batched_evloop() -> Runner {
    let lp = EventLoop::new().unwrap();
    let counter = Arc::new(AtomicUsize::new(0));
    Box::new(move || {
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
}

fn call_soon_batched_tokio() -> Runner {
    let rt = current_thread();
    let counter = Arc::new(AtomicUsize::new(0));
    Box::new(move || {
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

fn call_soon_chained_evloop() -> Runner {
    let lp = EventLoop::new().unwrap();
    Box::new(move || {
        let first = lp.clone();
        lp.call_soon(move || chain(first, CHAIN)).unwrap();
        lp.run_forever().unwrap();
    })
}

fn spawn_chained_tokio() -> Runner {
    let rt = current_thread();
    Box::new(move || {
        rt.block_on(async {
            let done = Arc::new(tokio::sync::Notify::new());
            spawn_chain(CHAIN, done.clone());
            done.notified().await;
        })
    })
}

// ----- create_task, chained: each task creates the next -------------------------------

fn task_chain(left: usize, done: evloop::LoopFuture<()>) {
    if left == 0 {
        done.set_result(()).unwrap();
        return;
    }
    drop(evloop::spawn(async move { task_chain(left - 1, done) }).unwrap());
}

fn create_task_chained_evloop() -> Runner {
    let lp = EventLoop::new().unwrap();
    Box::new(move || {
        let done = lp.create_future::<()>();
        let d = done.clone();
        lp.run_until_complete(async move {
            task_chain(CHAIN, d);
            done.await.unwrap();
        })
        .unwrap();
    })
}

// ----- call_soon_threadsafe from another thread ---------------------------------------

/// A loop running on its own thread; stopped and joined on drop.
struct LoopThread {
    lp: EventLoop,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LoopThread {
    fn start() -> LoopThread {
        let lp = EventLoop::new().unwrap();
        let runner = lp.clone();
        let thread = std::thread::spawn(move || runner.run_forever().unwrap());
        LoopThread {
            lp,
            thread: Some(thread),
        }
    }
}

impl Drop for LoopThread {
    fn drop(&mut self) {
        self.lp.stop();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let _ = self.lp.close();
    }
}

/// A current-thread tokio runtime on its own thread, draining a channel of
/// boxed closures (tokio's fastest cross-thread path for closures).
struct TokioThread {
    tx: Option<tokio::sync::mpsc::UnboundedSender<Box<dyn FnOnce() + Send>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TokioThread {
    fn start() -> TokioThread {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Box<dyn FnOnce() + Send>>();
        let thread = std::thread::spawn(move || {
            current_thread().block_on(async move {
                while let Some(job) = rx.recv().await {
                    job();
                }
            })
        });
        TokioThread {
            tx: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for TokioThread {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn threadsafe_evloop() -> Runner {
    let lt = LoopThread::start();
    let done = Arc::new(Done::default());
    Box::new(move || {
        let counter = Arc::new(AtomicUsize::new(0));
        for _ in 0..POSTS {
            let (c, d) = (counter.clone(), done.clone());
            drop(lt.lp.call_soon_threadsafe(move || {
                if c.fetch_add(1, Ordering::Relaxed) + 1 == POSTS {
                    d.set();
                }
            }));
        }
        done.wait();
    })
}

fn threadsafe_tokio() -> Runner {
    let tt = TokioThread::start();
    let done = Arc::new(Done::default());
    Box::new(move || {
        let counter = Arc::new(AtomicUsize::new(0));
        let tx = tt.tx.as_ref().unwrap();
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
}

static ZERO_CAPTURE_COUNT: AtomicUsize = AtomicUsize::new(0);

/// A callback that captures nothing (tokio's boxed closure then allocates
/// nothing either).
fn bump() {
    ZERO_CAPTURE_COUNT.fetch_add(1, Ordering::Relaxed);
}

fn threadsafe_zero_capture_evloop() -> Runner {
    let lt = LoopThread::start();
    let done = Arc::new(Done::default());
    Box::new(move || {
        for _ in 0..POSTS - 1 {
            drop(lt.lp.call_soon_threadsafe(bump));
        }
        let d = done.clone();
        drop(lt.lp.call_soon_threadsafe(move || d.set()));
        done.wait();
    })
}

fn threadsafe_zero_capture_tokio() -> Runner {
    let tt = TokioThread::start();
    let done = Arc::new(Done::default());
    Box::new(move || {
        let tx = tt.tx.as_ref().unwrap();
        for _ in 0..POSTS - 1 {
            tx.send(Box::new(bump)).unwrap();
        }
        let d = done.clone();
        tx.send(Box::new(move || d.set())).unwrap();
        done.wait();
    })
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

fn ping_pong_evloop() -> Runner {
    let (a, b) = (LoopThread::start(), LoopThread::start());
    let done = Arc::new(Done::default());
    Box::new(move || {
        let (a2, b2, d) = (a.lp.clone(), b.lp.clone(), done.clone());
        a.lp.call_soon_threadsafe(move || ping(a2, b2, 2 * ROUND_TRIPS, d))
            .unwrap();
        done.wait();
    })
}

/// Two current-thread runtimes on two threads, an mpsc channel each way.
struct TokioPair {
    start: Option<tokio::sync::mpsc::UnboundedSender<(usize, Arc<Done>)>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl TokioPair {
    fn start(pace: Option<Duration>) -> TokioPair {
        let (to_b, mut b_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
        let (to_a, mut a_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
        let (start_tx, mut start_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Arc<Done>)>();
        let ta = std::thread::spawn(move || {
            current_thread().block_on(async move {
                while let Some((n, done)) = start_rx.recv().await {
                    let mut interval = pace.map(tokio::time::interval);
                    for left in (0..n).rev() {
                        if let Some(i) = interval.as_mut() {
                            i.tick().await;
                        }
                        to_b.send(left).unwrap();
                        a_rx.recv().await.unwrap();
                    }
                    done.set();
                }
            })
        });
        let tb = std::thread::spawn(move || {
            current_thread().block_on(async move {
                while let Some(left) = b_rx.recv().await {
                    if to_a.send(left).is_err() {
                        break;
                    }
                }
            })
        });
        TokioPair {
            start: Some(start_tx),
            threads: vec![ta, tb],
        }
    }
}

impl Drop for TokioPair {
    fn drop(&mut self) {
        self.start.take();
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
    }
}

fn ping_pong_tokio() -> Runner {
    let pair = TokioPair::start(None);
    let done = Arc::new(Done::default());
    Box::new(move || {
        let start = pair.start.as_ref().unwrap();
        start.send((ROUND_TRIPS, done.clone())).unwrap();
        done.wait();
    })
}

/// Paced traffic: one round trip per millisecond, started by a timer on
/// loop A (the light-traffic regime where spinning would waste CPU).
fn paced_evloop() -> Runner {
    let (a, b) = (LoopThread::start(), LoopThread::start());
    let done = Arc::new(Done::default());
    // Ticks at fixed deadlines (start + k * PACE), as tokio's interval.
    fn tick(a: EventLoop, b: EventLoop, due: Instant, left: usize, done: Arc<Done>) {
        if left == 0 {
            done.set();
            return;
        }
        let (a2, b2) = (a.clone(), b.clone());
        drop(b.call_soon_threadsafe(move || {
            let (a3, b3) = (a2.clone(), b2);
            drop(a2.call_soon_threadsafe(move || {
                // The reply is in: the next round trip at the next tick.
                let a4 = a3.clone();
                let next = due + PACE;
                drop(a3.call_at(next, move || tick(a4, b3, next, left - 1, done)));
            }));
        }));
    }
    Box::new(move || {
        let (a2, b2, d) = (a.lp.clone(), b.lp.clone(), done.clone());
        a.lp.call_soon_threadsafe(move || tick(a2, b2, Instant::now(), PACED_ROUND_TRIPS, d))
            .unwrap();
        done.wait();
    })
}

fn paced_tokio() -> Runner {
    let pair = TokioPair::start(Some(PACE));
    let done = Arc::new(Done::default());
    Box::new(move || {
        let start = pair.start.as_ref().unwrap();
        start.send((PACED_ROUND_TRIPS, done.clone())).unwrap();
        done.wait();
    })
}

// ----- two readers on one loop passing a byte back and forth --------------------------

/// Two socket pairs on one loop: the reader of each writes a byte into the
/// other pair, so every hop is an fd becoming ready on a loop that has
/// nothing else to do (the case a spin blind to fds would slow down).
fn fd_hop_evloop() -> Runner {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    let lp = EventLoop::new().unwrap();
    let (a_tx, a_rx) = UnixStream::pair().unwrap();
    let (b_tx, b_rx) = UnixStream::pair().unwrap();
    for s in [&a_tx, &a_rx, &b_tx, &b_rx] {
        s.set_nonblocking(true).unwrap();
    }
    let left = Arc::new(AtomicUsize::new(0));
    let reader =
        |mut rx: UnixStream, mut tx: UnixStream, count: Option<(Arc<AtomicUsize>, EventLoop)>| {
            move || {
                let mut byte = [0u8; 1];
                if rx.read(&mut byte).is_err() {
                    return;
                }
                if let Some((left, lp)) = &count {
                    if left.fetch_sub(1, Ordering::Relaxed) == 1 {
                        lp.stop();
                        return;
                    }
                }
                tx.write_all(&byte).unwrap();
            }
        };
    let kick = a_tx.try_clone().unwrap();
    lp.add_reader(
        a_rx.as_raw_fd(),
        reader(a_rx.try_clone().unwrap(), b_tx, None),
    )
    .unwrap();
    lp.add_reader(
        b_rx.as_raw_fd(),
        reader(
            b_rx.try_clone().unwrap(),
            a_tx,
            Some((left.clone(), lp.clone())),
        ),
    )
    .unwrap();
    // The readers hold clones; the originals keep the fds registered.
    let keep = (a_rx, b_rx);
    Box::new(move || {
        let _ = &keep;
        left.store(FD_HOPS / 2, Ordering::Relaxed);
        (&kick).write_all(&[1]).unwrap();
        lp.run_forever().unwrap();
    })
}

fn fd_hop_tokio() -> Runner {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;
    let rt = current_thread();
    Box::new(move || {
        rt.block_on(async {
            let (mut a_tx, mut a_rx) = UnixStream::pair().unwrap();
            let (mut b_tx, mut b_rx) = UnixStream::pair().unwrap();
            let echo = tokio::spawn(async move {
                let mut byte = [0u8; 1];
                while a_rx.read_exact(&mut byte).await.is_ok() {
                    if b_tx.write_all(&byte).await.is_err() {
                        break;
                    }
                }
            });
            let mut byte = [1u8; 1];
            a_tx.write_all(&byte).await.unwrap();
            for left in (0..FD_HOPS / 2).rev() {
                b_rx.read_exact(&mut byte).await.unwrap();
                if left > 0 {
                    a_tx.write_all(&byte).await.unwrap();
                }
            }
            drop(a_tx);
            echo.await.unwrap();
        })
    })
}

// ----- the same hops through sock_recv / sock_sendall ---------------------------------

/// Two tasks pass a byte through two socket pairs with `sock_recv` and
/// `sock_sendall`: every receive waits (the byte is not there yet), so
/// this measures a blocked `sock_*` wait. tokio's side is `fd_hop_tokio`
/// (its `UnixStream`s stay registered, as evloop now keeps a socket's
/// registration between waits).
fn sock_hop_evloop() -> Runner {
    use std::os::unix::net::UnixStream;
    let lp = EventLoop::new().unwrap();
    Box::new(move || {
        let lp2 = lp.clone();
        lp.run_until_complete(async move {
            let (a_tx, a_rx) = UnixStream::pair().unwrap();
            let (b_tx, b_rx) = UnixStream::pair().unwrap();
            for s in [&a_tx, &a_rx, &b_tx, &b_rx] {
                s.set_nonblocking(true).unwrap();
            }
            let lp3 = lp2.clone();
            let echo = lp2
                .create_task(async move {
                    loop {
                        let byte = lp3.sock_recv(&a_rx, 1).await.unwrap();
                        if byte.is_empty() {
                            return;
                        }
                        lp3.sock_sendall(&b_tx, &byte).await.unwrap();
                    }
                })
                .unwrap();
            lp2.sock_sendall(&a_tx, &[1]).await.unwrap();
            for left in (0..FD_HOPS / 2).rev() {
                let byte = lp2.sock_recv(&b_rx, 1).await.unwrap();
                if left > 0 {
                    lp2.sock_sendall(&a_tx, &byte).await.unwrap();
                }
            }
            drop(a_tx);
            echo.await.unwrap();
        })
        .unwrap();
    })
}

// ----- timers ---------------------------------------------------------------------------

/// `n` timers at `delay(i)`, half cancelled, the rest awaited.
fn timers_evloop_with(n: usize, delay: fn(usize) -> Duration) -> Runner {
    let lp = EventLoop::new().unwrap();
    Box::new(move || {
        let lp2 = lp.clone();
        lp.run_until_complete(async move {
            let fired = Arc::new(AtomicUsize::new(0));
            let mut cancel = Vec::with_capacity(n / 2);
            for i in 0..n {
                let f = fired.clone();
                let t = lp2
                    .call_later(delay(i), move || {
                        f.fetch_add(1, Ordering::Relaxed);
                    })
                    .unwrap();
                if i % 2 == 1 {
                    cancel.push(t);
                }
            }
            cancel.iter().for_each(|t| t.cancel());
            while fired.load(Ordering::Relaxed) < n / 2 {
                evloop::sleep(Duration::from_micros(500)).await.unwrap();
            }
        })
        .unwrap();
    })
}

fn timers_tokio_with(n: usize, delay: fn(usize) -> Duration) -> Runner {
    let rt = current_thread();
    Box::new(move || {
        rt.block_on(async {
            let fired = Arc::new(AtomicUsize::new(0));
            let mut cancel = Vec::with_capacity(n / 2);
            for i in 0..n {
                let f = fired.clone();
                let d = delay(i);
                let t = tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    f.fetch_add(1, Ordering::Relaxed);
                });
                if i % 2 == 1 {
                    cancel.push(t);
                }
            }
            cancel.iter().for_each(|t| t.abort());
            while fired.load(Ordering::Relaxed) < n / 2 {
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
        })
    })
}

/// Delays under 1 ms: everything is due almost at once.
fn due_delay(i: usize) -> Duration {
    Duration::from_micros((i % 1000) as u64)
}

/// Delays spread over 1, 10 and 100 ms.
fn spread_delay(i: usize) -> Duration {
    Duration::from_millis([1, 10, 100][i % 3])
}

fn timers_due_evloop() -> Runner {
    timers_evloop_with(TIMERS, due_delay)
}
fn timers_due_tokio() -> Runner {
    timers_tokio_with(TIMERS, due_delay)
}
fn timers_spread_evloop() -> Runner {
    timers_evloop_with(SPREAD_TIMERS, spread_delay)
}
fn timers_spread_tokio() -> Runner {
    timers_tokio_with(SPREAD_TIMERS, spread_delay)
}

/// A loop whose only work is a 1 ms repeating timer: the CPU it costs.
fn ticker_evloop() -> Runner {
    let lp = EventLoop::new().unwrap();
    Box::new(move || {
        let lp2 = lp.clone();
        lp.run_until_complete(async move {
            let done = lp2.create_future::<()>();
            // Fixed deadlines (start + k * PACE), as tokio's interval.
            fn tick(lp: EventLoop, due: Instant, left: usize, done: evloop::LoopFuture<()>) {
                if left == 0 {
                    done.set_result(()).unwrap();
                    return;
                }
                let lp2 = lp.clone();
                let next = due + PACE;
                drop(lp.call_at(next, move || tick(lp2, next, left - 1, done)));
            }
            tick(lp2, Instant::now(), TICKS, done.clone());
            done.await.unwrap();
        })
        .unwrap();
    })
}

fn ticker_tokio() -> Runner {
    let rt = current_thread();
    Box::new(move || {
        rt.block_on(async {
            let mut interval = tokio::time::interval(PACE);
            interval.tick().await;
            for _ in 0..TICKS {
                interval.tick().await;
            }
        })
    })
}

// ----- run_in_executor: trivial jobs awaited in chunks --------------------------------

/// Both pools get evloop's default size (asyncio's `min(32, cpus + 4)`).
fn pool_size() -> usize {
    evloop::default_max_workers()
}

fn run_in_executor_evloop() -> Runner {
    let lp = EventLoop::new().unwrap();
    Box::new(move || {
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
        .unwrap();
    })
}

fn spawn_blocking_tokio() -> Runner {
    let rt = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(pool_size())
        .build()
        .unwrap();
    Box::new(move || {
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
        });
    })
}

// ----- CPU-bound fan-out across all cores --------------------------------------------

/// About 35 µs of integer hashing.
fn cpu_work(seed: u64) -> u64 {
    let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
    for i in 0..40_000u64 {
        h = (h ^ i).wrapping_mul(0x0100_0000_01b3).rotate_left(5);
    }
    h
}

fn cpu_fan_out_evloop() -> Runner {
    let lp = EventLoop::new().unwrap();
    let pool = Arc::new(
        evloop::ThreadPoolExecutor::builder()
            .max_workers(num_cpus::get())
            .build(),
    );
    Box::new(move || {
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
        .unwrap();
    })
}

fn cpu_fan_out_tokio() -> Runner {
    let rt = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(num_cpus::get())
        .build()
        .unwrap();
    Box::new(move || {
        rt.block_on(async {
            let futs: Vec<_> = (0..CPU_JOBS as u64)
                .map(|i| tokio::task::spawn_blocking(move || cpu_work(i)))
                .collect();
            let mut x = 0;
            for f in futs {
                x ^= f.await.unwrap();
            }
            x
        });
    })
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "call_soon_batched",
            op: "callback",
            ops: BATCH,
            runs: 20,
            evloop: call_soon_batched_evloop,
            tokio: call_soon_batched_tokio,
        },
        Case {
            name: "call_soon_chained",
            op: "callback",
            ops: CHAIN,
            runs: 20,
            evloop: call_soon_chained_evloop,
            tokio: spawn_chained_tokio,
        },
        Case {
            name: "create_task_chained",
            op: "task",
            ops: CHAIN,
            runs: 20,
            evloop: create_task_chained_evloop,
            tokio: spawn_chained_tokio,
        },
        Case {
            name: "call_soon_threadsafe",
            op: "post",
            ops: POSTS,
            runs: 5,
            evloop: threadsafe_evloop,
            tokio: threadsafe_tokio,
        },
        Case {
            name: "call_soon_threadsafe_zero_capture",
            op: "post",
            ops: POSTS,
            runs: 5,
            evloop: threadsafe_zero_capture_evloop,
            tokio: threadsafe_zero_capture_tokio,
        },
        Case {
            name: "ping_pong_continuous",
            op: "round trip",
            ops: ROUND_TRIPS,
            runs: 5,
            evloop: ping_pong_evloop,
            tokio: ping_pong_tokio,
        },
        Case {
            name: "ping_pong_paced_1ms",
            op: "round trip",
            ops: PACED_ROUND_TRIPS,
            runs: 1,
            evloop: paced_evloop,
            tokio: paced_tokio,
        },
        Case {
            name: "fd_hop_one_loop",
            op: "hop",
            ops: FD_HOPS,
            runs: 5,
            evloop: fd_hop_evloop,
            tokio: fd_hop_tokio,
        },
        Case {
            name: "sock_hop_one_loop",
            op: "hop",
            ops: FD_HOPS,
            runs: 5,
            evloop: sock_hop_evloop,
            tokio: fd_hop_tokio,
        },
        Case {
            name: "timers_all_due",
            op: "timer",
            ops: TIMERS,
            runs: 1,
            evloop: timers_due_evloop,
            tokio: timers_due_tokio,
        },
        Case {
            name: "timers_1_10_100ms",
            op: "timer",
            ops: SPREAD_TIMERS,
            runs: 1,
            evloop: timers_spread_evloop,
            tokio: timers_spread_tokio,
        },
        Case {
            name: "idle_loop_1ms_timer",
            op: "tick",
            ops: TICKS,
            runs: 1,
            evloop: ticker_evloop,
            tokio: ticker_tokio,
        },
        Case {
            name: "run_in_executor",
            op: "job",
            ops: JOBS,
            runs: 1,
            evloop: run_in_executor_evloop,
            tokio: spawn_blocking_tokio,
        },
        Case {
            name: "cpu_fan_out",
            op: "job",
            ops: CPU_JOBS,
            runs: 10,
            evloop: cpu_fan_out_evloop,
            tokio: cpu_fan_out_tokio,
        },
    ]
}

// ----- measurement ------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Sample {
    /// Per operation.
    wall: Duration,
    cpu: Duration,
}

/// Sets a side up, warms it up with one run, times `case.runs` runs, and
/// tears it down.
fn sample(case: &Case, setup: fn() -> Runner) -> Sample {
    let mut runner = setup();
    runner();
    let (wall0, cpu0) = (Instant::now(), process_cpu());
    for _ in 0..case.runs {
        runner();
    }
    let (wall, cpu) = (wall0.elapsed(), process_cpu() - cpu0);
    drop(runner);
    let ops = (case.ops * case.runs) as u32;
    Sample {
        wall: wall / ops,
        cpu: cpu / ops,
    }
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn fmt_d(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns >= 10_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{ns} ns")
    }
}

fn summary(xs: &[Sample], pick: fn(&Sample) -> Duration) -> (Duration, String) {
    let v: Vec<Duration> = xs.iter().map(pick).collect();
    let m = median(v.clone());
    let (lo, hi) = (*v.iter().min().unwrap(), *v.iter().max().unwrap());
    (m, format!("{} ({}–{})", fmt_d(m), fmt_d(lo), fmt_d(hi)))
}

fn paired_report(filter: Option<&str>) {
    let rounds: usize = std::env::var("EVLOOP_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    println!(
        "\nPaired rounds: {rounds} per case, sides alternated; per operation, median (min–max); \
         CPU = user + system of the process."
    );
    println!(
        "{:<34} {:<11} {:>30} {:>30} {:>30} {:>30} {:>7} {:>7}",
        "case", "op", "evloop wall", "tokio wall", "evloop cpu", "tokio cpu", "wall ×", "cpu ×"
    );
    for case in cases() {
        if filter.is_some_and(|f| !case.name.contains(f)) {
            continue;
        }
        let (mut ev, mut tk) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            if round % 2 == 0 {
                ev.push(sample(&case, case.evloop));
                tk.push(sample(&case, case.tokio));
            } else {
                tk.push(sample(&case, case.tokio));
                ev.push(sample(&case, case.evloop));
            }
        }
        let (ew, ews) = summary(&ev, |s| s.wall);
        let (tw, tws) = summary(&tk, |s| s.wall);
        let (ec, ecs) = summary(&ev, |s| s.cpu);
        let (tc, tcs) = summary(&tk, |s| s.cpu);
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-12);
        println!(
            "{:<34} {:<11} {:>30} {:>30} {:>30} {:>30} {:>7.2} {:>7.2}",
            case.name,
            case.op,
            ews,
            tws,
            ecs,
            tcs,
            ratio(ew, tw),
            ratio(ec, tc)
        );
    }
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10)
        .configure_from_args();
    // criterion's positional filter restricts the paired report too.
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-') && a.parse::<f64>().is_err());
    for case in cases() {
        let mut g = c.benchmark_group(case.name);
        g.throughput(Throughput::Elements(case.ops as u64));
        for (side, setup) in [("evloop", case.evloop), ("tokio", case.tokio)] {
            g.bench_function(side, |b| {
                b.iter_custom(|iters| {
                    let mut runner = setup();
                    let start = Instant::now();
                    for _ in 0..iters {
                        runner();
                    }
                    start.elapsed()
                })
            });
        }
        g.finish();
    }
    c.final_summary();
    paired_report(filter.as_deref());
}
