//! Offloading to the thread pool: while CPU-heavy hashing and blocking
//! sleeps run in `run_in_executor`, a 10 ms ticker on the loop keeps its
//! schedule. Prints the ticker's worst lateness and the results.

use evloop::{EventLoop, ThreadPoolExecutor};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// FNV-1a over `rounds` megabytes of generated data: about 1 ms a round.
fn hash_work(seed: u64, rounds: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for i in 0..rounds * (1 << 20) {
        h ^= i & 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Re-schedules itself every `period`, recording how late each tick ran.
fn tick(lp: EventLoop, due: Instant, period: Duration, worst: Arc<Mutex<Duration>>) {
    let late = lp.time().saturating_duration_since(due);
    {
        let mut w = worst.lock().unwrap();
        *w = (*w).max(late);
    }
    let next = due + period;
    let again = lp.clone();
    let _ = lp.call_at(next, move || tick(again, next, period, worst));
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn main() -> Result<(), evloop::Error> {
    let lp = EventLoop::new()?;
    let worst = Arc::new(Mutex::new(Duration::ZERO));
    let period = Duration::from_millis(10);
    let first = lp.time() + period;
    let (t, w) = (lp.clone(), worst.clone());
    lp.call_at(first, move || tick(t, first, period, w))?;

    // CPU-bound work gets a pool that leaves the loop's thread a core of its
    // own; blocking calls (which use no CPU while they wait) go to the
    // loop's default pool, sized like asyncio's: min(32, cpus + 4).
    let cpu_pool = ThreadPoolExecutor::builder()
        .max_workers(num_cpus().saturating_sub(1).max(1))
        .thread_name_prefix("cpu")
        .build();
    let lp2 = lp.clone();
    let (hashes, slept) = lp.run_until_complete(async move {
        let started = Instant::now();
        let hashes: Vec<_> = (0..8)
            .map(|i| {
                lp2.run_in_executor(Some(&cpu_pool), move || hash_work(i, 20))
                    .unwrap()
            })
            .collect();
        let sleeps: Vec<_> = (0..4)
            .map(|i| {
                lp2.run_in_executor(None, move || {
                    std::thread::sleep(Duration::from_millis(100 + 20 * i));
                    i
                })
                .unwrap()
            })
            .collect();
        let hashes: Vec<u64> = evloop::gather(hashes)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        let slept: Vec<u64> = evloop::gather(sleeps)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        cpu_pool.shutdown(true);
        println!("all offloaded work done in {:?}", started.elapsed());
        (hashes, slept)
    })?;
    for (i, h) in hashes.iter().enumerate() {
        println!("hash #{i}: {h:016x}");
    }
    println!("blocking jobs finished: {slept:?}");
    println!(
        "worst ticker lateness while the pool was busy: {:?}",
        *worst.lock().unwrap()
    );
    lp.close()
}
