//! One loop per thread, chosen through the policy: worker threads each get
//! their own loop with `new_event_loop` + `set_event_loop` and find it again
//! with `get_event_loop`; the main loop hands them work with
//! `call_soon_threadsafe` and gathers the results back as futures of its own.

use evloop::{EventLoop, LoopFuture, get_event_loop, new_event_loop, set_event_loop};
use std::sync::mpsc;
use std::time::Duration;

const WORKERS: usize = 3;

/// A worker thread: its own loop, set as the thread's loop.
fn start_worker(id: usize, ready: mpsc::Sender<EventLoop>) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name(format!("worker-{id}"))
        .spawn(move || {
            let lp = new_event_loop().expect("a loop");
            set_event_loop(Some(lp.clone()));
            ready.send(lp.clone()).expect("main is waiting");
            // Code on this thread finds its loop through the policy.
            get_event_loop().unwrap().run_forever().unwrap();
            set_event_loop(None);
            lp.close().unwrap();
        })
        .expect("spawn worker")
}

/// Work done on a worker loop: a bit of waiting, a bit of computing.
async fn square_slowly(n: u64) -> (String, u64) {
    evloop::sleep(Duration::from_millis(10 * n)).await.unwrap();
    let name = std::thread::current().name().unwrap_or("?").to_string();
    (name, n * n)
}

fn main() -> Result<(), evloop::Error> {
    let (tx, rx) = mpsc::channel();
    let threads: Vec<_> = (0..WORKERS).map(|i| start_worker(i, tx.clone())).collect();
    let workers: Vec<EventLoop> = (0..WORKERS).map(|_| rx.recv().unwrap()).collect();

    let main_loop = new_event_loop()?;
    set_event_loop(Some(main_loop.clone()));
    let results = main_loop.run_until_complete(async {
        let main_loop = evloop::get_running_loop().unwrap();
        let mut pending: Vec<LoopFuture<(String, u64)>> = Vec::new();
        for n in 1..=6u64 {
            // A future of the main loop, completed from the worker's thread.
            let result = main_loop.create_future();
            let reply = result.clone();
            let worker = &workers[n as usize % WORKERS];
            let target = worker.clone();
            worker
                .call_soon_threadsafe(move || {
                    target
                        .create_task(async move {
                            let _ = reply.set_result(square_slowly(n).await);
                        })
                        .expect("worker loop is open");
                })
                .unwrap();
            pending.push(result);
        }
        evloop::gather(pending).await
    })?;
    for r in results {
        let (thread, square) = r.expect("every worker answered");
        println!("{square:>3} computed on {thread}");
    }

    for w in &workers {
        w.stop();
    }
    for t in threads {
        t.join().unwrap();
    }
    set_event_loop(None);
    main_loop.close()
}
