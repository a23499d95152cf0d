//! What the network benches share: a server on a thread of its own whose
//! CPU time can be read on that thread, a load generator (a tokio
//! current-thread runtime on another thread, the same for both sides),
//! and the paired report (rounds alternating which side goes first;
//! median and range of requests per second and of the server thread's CPU
//! per request).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Requests per measured run, over all connections.
pub const MESSAGES: usize = 20_000;
/// Size of an echo message: 1 KiB, one line (its last byte is `\n`).
pub const MESSAGE: usize = 1024;

/// CPU time (user + system) that `getrusage(who)` reports.
fn rusage_cpu(who: libc::c_int) -> Duration {
    // Safety: getrusage writes into the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut usage) };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time (user + system) of the calling thread.
pub fn thread_cpu() -> Duration {
    rusage_cpu(libc::RUSAGE_THREAD)
}

/// CPU time (user + system) of the whole process, children excluded.
pub fn process_cpu() -> Duration {
    rusage_cpu(libc::RUSAGE_SELF)
}

/// The echo protocol of the TCP and TLS echo benches' evloop side.
#[derive(Default)]
pub struct Echo {
    transport: Option<evloop::Transport>,
}

impl evloop::Protocol for Echo {
    fn connection_made(&mut self, transport: evloop::Transport) {
        self.transport = Some(transport);
    }
    fn data_received(&mut self, data: &[u8]) {
        if let Some(t) = &self.transport {
            t.write(data).unwrap();
        }
    }
}

/// A running server: its address, a way to read its thread's CPU time,
/// and a way to stop it.
pub struct ServerThread {
    pub addr: SocketAddr,
    pub cpu: Box<dyn Fn() -> Duration>,
    /// The server runs on several threads: its CPU is the process's less
    /// the load generator's (`cpu` is then unused).
    pub whole_process: bool,
    pub stop: Option<Box<dyn FnOnce()>>,
    pub thread: Option<std::thread::JoinHandle<()>>,
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

/// What an evloop side's `serve` returns for an `evloop::Server`: its
/// address, and closing it as the cleanup.
pub fn served(server: evloop::Server) -> (SocketAddr, Box<dyn FnOnce() + Send>) {
    let addr = server.sockets()[0].as_socket().unwrap();
    (addr, Box::new(move || server.close()))
}

/// A server on evloop: `serve` runs on the loop's thread inside
/// `run_until_complete` and returns the address it listens on; the loop
/// then runs until the bench stops it.
pub fn evloop_server<F, Fut>(serve: F) -> ServerThread
where
    F: FnOnce(evloop::EventLoop) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = (SocketAddr, Box<dyn FnOnce() + Send>)> + 'static,
{
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("server-evloop".into())
        .spawn(move || {
            let lp = evloop::EventLoop::new().unwrap();
            let (addr, cleanup) = lp.run_until_complete(serve(lp.clone())).unwrap();
            tx.send((addr, lp.clone())).unwrap();
            lp.run_forever().unwrap();
            cleanup();
            // Connection tasks still waiting at the end are destroyed by
            // close; asyncio's report of each would only clutter the tables.
            lp.set_exception_handler(Some(std::sync::Arc::new(|_, _| {})));
            lp.close().unwrap();
        })
        .unwrap();
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
        whole_process: false,
    }
}

/// A server on a tokio current-thread runtime: `serve_conn` serves each
/// accepted connection (TCP_NODELAY set) as a task.
pub fn tokio_server<F, Fut>(serve_conn: F) -> ServerThread
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    type Probe = mpsc::Sender<Duration>;
    let (tx, rx) = mpsc::channel();
    let (probe_tx, mut probe_rx) = tokio::sync::mpsc::unbounded_channel::<Probe>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("server-tokio".into())
        .spawn(move || {
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
                        let (conn, _) = listener.accept().await.unwrap();
                        conn.set_nodelay(true).unwrap();
                        tokio::spawn(serve_conn(conn));
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stop_rx => {}
                }
            });
        })
        .unwrap();
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
        whole_process: false,
    }
}

/// A server on `n` evloop loops, one thread each, every loop with its own
/// listening socket on one port (SO_REUSEPORT; the kernel spreads the
/// connections): `serve(loop, port)` binds (port 0 for the first loop,
/// then the port it got) and returns the address and its cleanup.
pub fn evloop_loops_server<F, Fut>(n: usize, serve: F) -> ServerThread
where
    F: Fn(evloop::EventLoop, u16) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = (SocketAddr, Box<dyn FnOnce() + Send>)> + 'static,
{
    let mut loops = Vec::new();
    let mut threads = Vec::new();
    let mut port = 0;
    let mut addr = None;
    for i in 0..n {
        let (tx, rx) = mpsc::channel();
        let serve = serve.clone();
        let thread = std::thread::Builder::new()
            .name(format!("server-evloop-{i}"))
            .spawn(move || {
                let lp = evloop::EventLoop::new().unwrap();
                let (addr, cleanup) = lp.run_until_complete(serve(lp.clone(), port)).unwrap();
                tx.send((addr, lp.clone())).unwrap();
                lp.run_forever().unwrap();
                cleanup();
                lp.set_exception_handler(Some(std::sync::Arc::new(|_, _| {})));
                lp.close().unwrap();
            })
            .unwrap();
        let (a, lp) = rx.recv().unwrap();
        port = a.port();
        addr.get_or_insert(a);
        loops.push(lp);
        threads.push(thread);
    }
    ServerThread {
        addr: addr.expect("n > 0"),
        cpu: Box::new(|| Duration::ZERO),
        stop: Some(Box::new(move || {
            for lp in &loops {
                lp.stop();
            }
            for t in threads {
                t.join().unwrap();
            }
        })),
        thread: None,
        whole_process: true,
    }
}

/// A server on a tokio multi-thread runtime of `workers` threads:
/// `serve_conn` serves each accepted connection (TCP_NODELAY set) as a
/// task.
pub fn tokio_mt_server<F, Fut>(workers: usize, serve_conn: F) -> ServerThread
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        let accept = async move {
            loop {
                let (conn, _) = listener.accept().await.unwrap();
                conn.set_nodelay(true).unwrap();
                tokio::spawn(serve_conn(conn));
            }
        };
        tokio::select! {
            _ = accept => {}
            _ = stop_rx => {}
        }
    });
    ServerThread {
        addr,
        cpu: Box::new(|| Duration::ZERO),
        stop: Some(Box::new(move || {
            let _ = stop_tx.send(());
            rt.shutdown_timeout(Duration::from_secs(5));
        })),
        thread: None,
        whole_process: true,
    }
}

/// The client configuration the load generator uses for
/// [`Exchange::TlsEcho`] (set once by the TLS bench).
pub static TLS_CLIENT: std::sync::OnceLock<std::sync::Arc<rustls::ClientConfig>> =
    std::sync::OnceLock::new();

/// A load generator's connection: plain TCP, or TLS over it.
trait Conn: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Conn for T {}

/// What each connection of the load generator does per request.
#[derive(Clone, Copy)]
pub enum Exchange {
    /// Sends a 1 KiB line, reads its echo.
    Echo,
    /// [`Exchange::Echo`] over TLS (tokio-rustls, [`TLS_CLIENT`], server
    /// name "localhost").
    TlsEcho,
    /// Sends a keep-alive `GET /`, reads the response up to its body
    /// "Hello, World!".
    HttpGet,
}

async fn exchange(s: &mut Box<dyn Conn>, kind: Exchange, buf: &mut Vec<u8>) {
    match kind {
        Exchange::Echo | Exchange::TlsEcho => {
            let mut msg = [b'x'; MESSAGE];
            msg[MESSAGE - 1] = b'\n';
            s.write_all(&msg).await.unwrap();
            buf.resize(MESSAGE, 0);
            s.read_exact(buf).await.unwrap();
        }
        Exchange::HttpGet => {
            s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .await
                .unwrap();
            buf.clear();
            let mut chunk = [0u8; 1024];
            while !buf.ends_with(b"Hello, World!") {
                let n = s.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the server closed the connection");
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

/// What one measured run of the load generator saw.
pub struct Run {
    pub wall: Duration,
    /// The 99th percentile of the requests' latency (send to full answer).
    pub p99: Duration,
    /// The load generator thread's CPU time.
    pub load_cpu: Duration,
}

/// A load generator thread with `conns` connections to `addr`: `run(n)`
/// sends `n` messages in all (each connection waits for its echo before
/// sending again) and returns how long that took.
pub struct Load {
    go: mpsc::Sender<Option<usize>>,
    done: mpsc::Receiver<Run>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    pub fn connect(addr: SocketAddr, conns: usize, kind: Exchange) -> Load {
        let (go_tx, go_rx) = mpsc::channel::<Option<usize>>();
        let (done_tx, done_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("load".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let mut streams = rt.block_on(async {
                    let mut v: Vec<Box<dyn Conn>> = Vec::new();
                    for _ in 0..conns {
                        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
                        s.set_nodelay(true).unwrap();
                        match kind {
                            Exchange::TlsEcho => {
                                let config = TLS_CLIENT.get().expect("TLS_CLIENT set").clone();
                                let name = rustls::pki_types::ServerName::try_from("localhost")
                                    .unwrap()
                                    .to_owned();
                                let tls = tokio_rustls::TlsConnector::from(config)
                                    .connect(name, s)
                                    .await
                                    .unwrap();
                                v.push(Box::new(tls));
                            }
                            _ => v.push(Box::new(s)),
                        }
                    }
                    v
                });
                while let Ok(Some(total)) = go_rx.recv() {
                    let per = total / conns;
                    let cpu0 = thread_cpu();
                    let start = Instant::now();
                    let mut latencies = Vec::with_capacity(per * conns);
                    streams = rt.block_on(async {
                        let tasks: Vec<_> = streams
                            .into_iter()
                            .map(|mut s| {
                                tokio::spawn(async move {
                                    let mut buf = Vec::new();
                                    let mut lat = Vec::with_capacity(per);
                                    for _ in 0..per {
                                        let t0 = Instant::now();
                                        exchange(&mut s, kind, &mut buf).await;
                                        lat.push(t0.elapsed());
                                    }
                                    (s, lat)
                                })
                            })
                            .collect();
                        let mut out = Vec::new();
                        for t in tasks {
                            let (s, lat) = t.await.unwrap();
                            latencies.extend(lat);
                            out.push(s);
                        }
                        out
                    });
                    let wall = start.elapsed();
                    latencies.sort_unstable();
                    let p99 = latencies
                        .get(latencies.len() * 99 / 100)
                        .copied()
                        .unwrap_or_default();
                    done_tx
                        .send(Run {
                            wall,
                            p99,
                            load_cpu: thread_cpu() - cpu0,
                        })
                        .unwrap();
                }
            })
            .unwrap();
        Load {
            go: go_tx,
            done: done_rx,
            thread: Some(thread),
        }
    }

    pub fn run(&self, total: usize) -> Duration {
        self.run_measured(total).wall
    }

    /// [`Load::run`], with the 99th percentile of the requests' latency
    /// and the load generator's own CPU time.
    pub fn run_measured(&self, total: usize) -> Run {
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
pub struct Sample {
    req_per_s: f64,
    /// Server thread CPU per request.
    cpu: Duration,
    /// 99th percentile of the requests' latency.
    p99: Duration,
}

/// Starts a server, connects, warms up, then measures one run of
/// `MESSAGES` messages.
pub fn sample(server: fn() -> ServerThread, conns: usize, kind: Exchange) -> Sample {
    let server = server();
    let load = Load::connect(server.addr, conns, kind);
    load.run(MESSAGES / 10);
    let cpu0 = (server.cpu)();
    let process0 = process_cpu();
    let run = load.run_measured(MESSAGES);
    // A server of several threads is measured as the process's CPU less
    // the load generator's (nothing else runs meanwhile).
    let cpu = if server.whole_process {
        (process_cpu() - process0).saturating_sub(run.load_cpu)
    } else {
        (server.cpu)() - cpu0
    };
    drop(load);
    drop(server);
    let requests = (MESSAGES / conns * conns) as f64;
    Sample {
        req_per_s: requests / run.wall.as_secs_f64(),
        cpu: cpu.div_f64(requests),
        p99: run.p99,
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

/// The paired table for `title`: `sides` = (evloop's server, tokio's).
pub fn paired_report(
    title: &str,
    kind: Exchange,
    evloop_side: fn() -> ServerThread,
    tokio_side: fn() -> ServerThread,
    filter: Option<&str>,
) {
    let rounds: usize = std::env::var("EVLOOP_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    println!(
        "\n{title}, {MESSAGES} requests per run; {rounds} paired rounds, sides alternated; \
         median (min–max). CPU = the server's user + system per request; p99 = the \
         requests' 99th percentile latency."
    );
    println!(
        "{:<6} {:>26} {:>26} {:>22} {:>22} {:>8} {:>7} {:>20} {:>20}",
        "conns",
        "evloop req/s",
        "tokio req/s",
        "evloop cpu/req",
        "tokio cpu/req",
        "req/s ×",
        "cpu ×",
        "evloop p99",
        "tokio p99"
    );
    for conns in [10usize, 100] {
        if filter.is_some_and(|f| !format!("c{conns}").contains(f)) {
            continue;
        }
        let (mut ev, mut tk) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            if round % 2 == 0 {
                ev.push(sample(evloop_side, conns, kind));
                tk.push(sample(tokio_side, conns, kind));
            } else {
                tk.push(sample(tokio_side, conns, kind));
                ev.push(sample(evloop_side, conns, kind));
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
        let p99 = |xs: &[Sample]| {
            let v: Vec<Duration> = xs.iter().map(|s| s.p99).collect();
            let (lo, hi) = range(&v);
            let us = |d: Duration| d.as_secs_f64() * 1e6;
            format!("{:.0} µs ({:.0}–{:.0})", us(median(v)), us(lo), us(hi))
        };
        let (er, ers) = rps(&ev);
        let (tr, trs) = rps(&tk);
        let (ec, ecs) = cpu(&ev);
        let (tc, tcs) = cpu(&tk);
        println!(
            "{:<6} {:>26} {:>26} {:>22} {:>22} {:>8.2} {:>7.2} {:>20} {:>20}",
            conns,
            ers,
            trs,
            ecs,
            tcs,
            er / tr,
            ec.as_secs_f64() / tc.as_secs_f64().max(1e-12),
            p99(&ev),
            p99(&tk)
        );
    }
}

/// criterion's groups and then the paired report, for one bench binary.
pub fn run(
    name: &str,
    title: &str,
    kind: Exchange,
    evloop_side: fn() -> ServerThread,
    tokio_side: fn() -> ServerThread,
) {
    let mut c = criterion::Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10)
        .configure_from_args();
    // criterion's positional filter restricts the paired report too.
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-') && a.parse::<f64>().is_err());
    for conns in [10usize, 100] {
        let mut g = c.benchmark_group(format!("{name}_c{conns}"));
        g.throughput(criterion::Throughput::Elements(MESSAGES as u64));
        for (side, server) in [("evloop", evloop_side), ("tokio", tokio_side)] {
            g.bench_function(side, |b| {
                b.iter_custom(|iters| {
                    let server = server();
                    let load = Load::connect(server.addr, conns, kind);
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
    paired_report(title, kind, evloop_side, tokio_side, filter.as_deref());
}
