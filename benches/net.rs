//! A TCP echo server on evloop (protocol API) and on tokio (current-thread
//! runtime, `TcpListener` + `read` / `write_all`), each on a thread of its
//! own, driven by the same load generator on another thread: C
//! connections (10 and 100), each sending a 1 KiB message and waiting for
//! its echo before the next, a fixed number of messages in all.
//!
//! Two reports:
//! 1. criterion's, one group per connection count (`evloop` and `tokio`);
//! 2. a paired table: `ROUNDS` rounds, each running both sides back to
//!    back (which goes first alternates), reporting requests per second
//!    and the server thread's CPU time per request (user + system of that
//!    thread alone, from `getrusage(RUSAGE_THREAD)` taken on it): median
//!    and range over the rounds, and the ratio of the medians (req/s
//!    above 1.0 and CPU below 1.0: evloop is better).
//!
//! Both servers set TCP_NODELAY (evloop's transports do, as asyncio's;
//! the tokio server sets it on each accepted stream). The load generator
//! is a tokio current-thread runtime for both sides.
//!
//! Run: `cargo bench --bench net` (`EVLOOP_BENCH_ROUNDS=n`, default 5;
//! a filter such as `-- c100` restricts both reports).

use criterion::{Criterion, Throughput};
use evloop::{EventLoop, Protocol, Transport};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MESSAGE: usize = 1024;
/// Messages per measured run, over all connections.
const MESSAGES: usize = 20_000;

// ----- the servers ----------------------------------------------------------------------

/// CPU time (user + system) of the calling thread.
fn thread_cpu() -> Duration {
    // Safety: getrusage writes into the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// A running server: its address, a way to read its thread's CPU time,
/// and a way to stop it.
struct ServerThread {
    addr: SocketAddr,
    cpu: Box<dyn Fn() -> Duration>,
    stop: Option<Box<dyn FnOnce()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

#[derive(Default)]
struct Echo {
    transport: Option<Transport>,
}

impl Protocol for Echo {
    fn connection_made(&mut self, transport: Transport) {
        self.transport = Some(transport);
    }
    fn data_received(&mut self, data: &[u8]) {
        if let Some(t) = &self.transport {
            t.write(data).unwrap();
        }
    }
}

fn evloop_server() -> ServerThread {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let lp = EventLoop::new().unwrap();
        let server = lp
            .run_until_complete(lp.create_server(Echo::default, Some("127.0.0.1"), 0))
            .unwrap()
            .unwrap();
        let addr = server.sockets()[0].as_socket().unwrap();
        tx.send((addr, lp.clone())).unwrap();
        lp.run_forever().unwrap();
        server.close();
        lp.close().unwrap();
    });
    let (addr, lp) = rx.recv().unwrap();
    let probe = lp.clone();
    ServerThread {
        addr,
        cpu: Box::new(move || {
            let (tx, rx) = mpsc::channel();
            probe
                .call_soon_threadsafe(move || tx.send(thread_cpu()).unwrap())
                .unwrap();
            rx.recv().unwrap()
        }),
        stop: Some(Box::new(move || lp.stop())),
        thread: Some(thread),
    }
}

fn tokio_server() -> ServerThread {
    type Probe = mpsc::Sender<Duration>;
    let (tx, rx) = mpsc::channel();
    let (probe_tx, mut probe_rx) = tokio::sync::mpsc::unbounded_channel::<Probe>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            // CPU probes run on this (the runtime's only) thread.
            tokio::spawn(async move {
                while let Some(reply) = probe_rx.recv().await {
                    let _ = reply.send(thread_cpu());
                }
            });
            let accept = async move {
                loop {
                    let (mut conn, _) = listener.accept().await.unwrap();
                    conn.set_nodelay(true).unwrap();
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 4096];
                        loop {
                            match conn.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => {
                                    if conn.write_all(&buf[..n]).await.is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                    });
                }
            };
            tokio::select! {
                _ = accept => {}
                _ = stop_rx => {}
            }
        });
    });
    let addr = rx.recv().unwrap();
    ServerThread {
        addr,
        cpu: Box::new(move || {
            let (tx, rx) = mpsc::channel();
            probe_tx.send(tx).unwrap();
            rx.recv().unwrap()
        }),
        stop: Some(Box::new(move || {
            let _ = stop_tx.send(());
        })),
        thread: Some(thread),
    }
}

// ----- the load generator -------------------------------------------------------------------

/// A load generator thread with `conns` connections to `addr`: `run(n)`
/// sends `n` messages in all (each connection waits for its echo before
/// sending again) and returns how long that took.
struct Load {
    go: mpsc::Sender<Option<usize>>,
    done: mpsc::Receiver<Duration>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn connect(addr: SocketAddr, conns: usize) -> Load {
        let (go_tx, go_rx) = mpsc::channel::<Option<usize>>();
        let (done_tx, done_rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let mut streams = rt.block_on(async {
                let mut v = Vec::new();
                for _ in 0..conns {
                    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
                    s.set_nodelay(true).unwrap();
                    v.push(s);
                }
                v
            });
            while let Ok(Some(total)) = go_rx.recv() {
                let per = total / conns;
                let start = Instant::now();
                streams = rt.block_on(async {
                    let tasks: Vec<_> = streams
                        .into_iter()
                        .map(|mut s| {
                            tokio::spawn(async move {
                                let msg = [7u8; MESSAGE];
                                let mut back = [0u8; MESSAGE];
                                for _ in 0..per {
                                    s.write_all(&msg).await.unwrap();
                                    s.read_exact(&mut back).await.unwrap();
                                }
                                s
                            })
                        })
                        .collect();
                    let mut out = Vec::new();
                    for t in tasks {
                        out.push(t.await.unwrap());
                    }
                    out
                });
                done_tx.send(start.elapsed()).unwrap();
            }
        });
        Load {
            go: go_tx,
            done: done_rx,
            thread: Some(thread),
        }
    }

    fn run(&self, total: usize) -> Duration {
        self.go.send(Some(total)).unwrap();
        self.done.recv().unwrap()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.go.send(None);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

// ----- measurement ------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Sample {
    req_per_s: f64,
    /// Server thread CPU per request.
    cpu: Duration,
}

/// Starts a server, connects, warms up, then measures one run of
/// `MESSAGES` messages.
fn sample(server: fn() -> ServerThread, conns: usize) -> Sample {
    let server = server();
    let load = Load::connect(server.addr, conns);
    load.run(MESSAGES / 10);
    let cpu0 = (server.cpu)();
    let wall = load.run(MESSAGES);
    let cpu = (server.cpu)() - cpu0;
    drop(load);
    drop(server);
    let requests = (MESSAGES / conns * conns) as f64;
    Sample {
        req_per_s: requests / wall.as_secs_f64(),
        cpu: cpu.div_f64(requests),
    }
}

fn median<T: PartialOrd + Copy>(mut xs: Vec<T>) -> T {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

fn range<T: PartialOrd + Copy>(xs: &[T]) -> (T, T) {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[0], v[v.len() - 1])
}

fn paired_report(filter: Option<&str>) {
    let rounds: usize = std::env::var("EVLOOP_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    println!(
        "\nTCP echo, 1 KiB messages, {MESSAGES} per run; {rounds} paired rounds, sides alternated; \
         median (min–max). CPU = the server thread's user + system per request."
    );
    println!(
        "{:<6} {:>26} {:>26} {:>22} {:>22} {:>8} {:>7}",
        "conns",
        "evloop req/s",
        "tokio req/s",
        "evloop cpu/req",
        "tokio cpu/req",
        "req/s ×",
        "cpu ×"
    );
    for conns in [10usize, 100] {
        if filter.is_some_and(|f| !format!("c{conns}").contains(f)) {
            continue;
        }
        let (mut ev, mut tk) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            if round % 2 == 0 {
                ev.push(sample(evloop_server, conns));
                tk.push(sample(tokio_server, conns));
            } else {
                tk.push(sample(tokio_server, conns));
                ev.push(sample(evloop_server, conns));
            }
        }
        let rps = |xs: &[Sample]| {
            let v: Vec<f64> = xs.iter().map(|s| s.req_per_s).collect();
            let (lo, hi) = range(&v);
            (
                median(v),
                format!(
                    "{:.0} ({:.0}–{:.0})",
                    median(xs.iter().map(|s| s.req_per_s).collect()),
                    lo,
                    hi
                ),
            )
        };
        let cpu = |xs: &[Sample]| {
            let v: Vec<Duration> = xs.iter().map(|s| s.cpu).collect();
            let (lo, hi) = range(&v);
            let m = median(v);
            let us = |d: Duration| d.as_secs_f64() * 1e6;
            (m, format!("{:.2} µs ({:.2}–{:.2})", us(m), us(lo), us(hi)))
        };
        let (er, ers) = rps(&ev);
        let (tr, trs) = rps(&tk);
        let (ec, ecs) = cpu(&ev);
        let (tc, tcs) = cpu(&tk);
        println!(
            "{:<6} {:>26} {:>26} {:>22} {:>22} {:>8.2} {:>7.2}",
            conns,
            ers,
            trs,
            ecs,
            tcs,
            er / tr,
            ec.as_secs_f64() / tc.as_secs_f64().max(1e-12)
        );
    }
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10)
        .configure_from_args();
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-') && a.parse::<f64>().is_err());
    for conns in [10usize, 100] {
        let mut g = c.benchmark_group(format!("tcp_echo_c{conns}"));
        g.throughput(Throughput::Elements(MESSAGES as u64));
        for (side, server) in [
            ("evloop", evloop_server as fn() -> ServerThread),
            ("tokio", tokio_server),
        ] {
            g.bench_function(side, |b| {
                b.iter_custom(|iters| {
                    let server = server();
                    let load = Load::connect(server.addr, conns);
                    load.run(MESSAGES / 10);
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += load.run(MESSAGES);
                    }
                    total
                })
            });
        }
        g.finish();
    }
    c.final_summary();
    paired_report(filter.as_deref());
}
