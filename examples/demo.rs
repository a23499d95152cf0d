//! The showcase: every part of evloop that works today, in one run.
//!
//! `cargo run --release --example demo`

use evloop::{
    EventLoop, ExceptionContext, TaskError, ThreadPoolExecutor, get_event_loop, new_event_loop,
    set_event_loop,
};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn section(title: &str) {
    println!("\n== {title}");
}

fn callbacks_and_timers(lp: &EventLoop) -> Result<(), evloop::Error> {
    section("callbacks and timers");
    let log = Arc::new(Mutex::new(Vec::new()));
    for i in 0..3 {
        let log = log.clone();
        lp.call_soon(move || log.lock().unwrap().push(format!("call_soon #{i}")))?;
    }
    let start = lp.time();
    for ms in [30u64, 10, 20] {
        let log = log.clone();
        lp.call_later(Duration::from_millis(ms), move || {
            log.lock().unwrap().push(format!("call_later({ms} ms)"))
        })?;
    }
    let cancelled = {
        let log = log.clone();
        lp.call_later(Duration::from_millis(15), move || {
            log.lock().unwrap().push("never".into())
        })?
    };
    cancelled.cancel();
    let stopper = lp.clone();
    lp.call_at(start + Duration::from_millis(40), move || stopper.stop())?;
    lp.run_forever()?;
    for line in log.lock().unwrap().iter() {
        println!("  {line}");
    }
    println!("  (a cancelled 15 ms timer never ran; timers fire in deadline order)");
    Ok(())
}

fn tasks_and_futures(lp: &EventLoop) -> Result<(), evloop::Error> {
    section("tasks, futures, gather, wait_for, cancel");
    let lp2 = lp.clone();
    lp.run_until_complete(async move {
        let squares = evloop::gather((1..=5u64).map(|n| async move {
            evloop::sleep(Duration::from_millis(10 * (6 - n)))
                .await
                .unwrap();
            n * n
        }))
        .await;
        println!("  gather (results in input order): {squares:?}");

        let fut = lp2.create_future::<&str>();
        let setter = fut.clone();
        fut.add_done_callback(|f| println!("  done callback sees {:?}", f.result().unwrap()))
            .unwrap();
        std::thread::spawn(move || setter.set_result("set from another thread").unwrap());
        println!("  awaited LoopFuture: {:?}", fut.await.unwrap());

        let slow = evloop::wait_for(
            evloop::sleep(Duration::from_secs(60)),
            Duration::from_millis(20),
        );
        println!(
            "  wait_for(sleep(60 s), 20 ms) -> {:?}",
            slow.await.unwrap_err()
        );

        let task = lp2
            .create_task_named(evloop::sleep(Duration::from_secs(60)), "sleeper")
            .unwrap();
        task.add_done_callback(|done| {
            println!(
                "  task done callback: {} ended {:?}",
                done.info.name, done.outcome
            )
        })
        .unwrap();
        evloop::sleep(Duration::ZERO).await.unwrap();
        task.cancel();
        let name = task.get_name();
        println!(
            "  task '{name}' after cancel(): {:?}",
            task.await.unwrap_err()
        );

        // As in asyncio, cancelling a task cancels what it awaits.
        let inner = lp2
            .create_task_named(evloop::sleep(Duration::from_secs(60)), "inner")
            .unwrap();
        inner
            .add_done_callback(|done| {
                println!(
                    "  '{}' ended {:?} with its awaiter",
                    done.info.name, done.outcome
                )
            })
            .unwrap();
        // A Task is itself a future: `outer` just awaits `inner`.
        let outer = lp2.create_task_named(inner, "outer").unwrap();
        evloop::sleep(Duration::ZERO).await.unwrap();
        let names: Vec<String> = evloop::all_tasks()
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        let me = evloop::current_task().unwrap().unwrap().name;
        println!("  all_tasks() from {me}: {names:?}");
        outer.cancel();
        let _ = outer.await;
        evloop::sleep(Duration::ZERO).await.unwrap();
    })?;
    Ok(())
}

fn cross_thread(lp: &EventLoop) -> Result<(), evloop::Error> {
    section("cross-thread: call_soon_threadsafe and run_coroutine_threadsafe");
    let runner = lp.clone();
    let thread = std::thread::spawn(move || runner.run_forever());
    while !lp.is_running() {
        std::thread::yield_now();
    }
    let before = lp.stats().wakeups;
    let ran = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let producers: Vec<_> = (0..4)
        .map(|_| {
            let (lp, ran) = (lp.clone(), ran.clone());
            std::thread::spawn(move || {
                for _ in 0..250_000 {
                    let ran = ran.clone();
                    lp.call_soon_threadsafe(move || {
                        ran.fetch_add(1, Ordering::Relaxed);
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    producers.into_iter().for_each(|p| p.join().unwrap());
    let answer = evloop::run_coroutine_threadsafe(
        async {
            evloop::sleep(Duration::from_millis(1)).await.unwrap();
            42
        },
        lp,
    )?;
    let answer = answer.result(Some(Duration::from_secs(10))).unwrap();
    let took = start.elapsed();
    println!(
        "  1,000,000 posts from 4 threads ran {} callbacks in {took:?}, with {} wake-ups of the sleeping loop",
        ran.load(Ordering::Relaxed),
        lp.stats().wakeups - before
    );
    println!("  a plain thread blocked on run_coroutine_threadsafe(...) and got {answer}");
    lp.stop();
    thread.join().unwrap()?;
    Ok(())
}

fn ping_pong() -> Result<(), evloop::Error> {
    section("ping-pong between loops on two threads");
    let a = EventLoop::new()?;
    let b = EventLoop::new()?;
    let threads: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .map(|lp| std::thread::spawn(move || lp.run_forever()))
        .collect();
    fn ping(me: EventLoop, peer: EventLoop, left: u32, done: evloop::ConcurrentFuture<Instant>) {
        if left == 0 {
            done.set_result(Instant::now());
            return;
        }
        let (me2, peer2) = (me.clone(), peer.clone());
        peer.call_soon_threadsafe(move || ping(peer2, me2, left - 1, done))
            .unwrap();
    }
    let done = evloop::ConcurrentFuture::new();
    let (a2, b2, d) = (a.clone(), b.clone(), done.clone());
    let start = Instant::now();
    a.call_soon_threadsafe(move || ping(a2, b2, 20_000, d))?;
    let end = done.result(Some(Duration::from_secs(30))).unwrap();
    println!(
        "  10,000 round trips: {:.2} us each (the loops spin up to {:?} before sleeping, \
         when the peer is awake)",
        (end - start).as_secs_f64() * 1e6 / 10_000.0,
        a.spin_before_park()
    );
    a.stop();
    b.stop();
    for t in threads {
        t.join().unwrap()?;
    }
    Ok(())
}

fn watch_fd(lp: &EventLoop) -> Result<(), evloop::Error> {
    section("watching a file descriptor (level-triggered, like asyncio)");
    let (rsock, mut wsock) = UnixStream::pair()?;
    rsock.set_nonblocking(true)?;
    let fd = rsock.as_raw_fd();
    wsock.write_all(b"evloop")?;
    let got = Arc::new(Mutex::new(String::new()));
    let (g, reader_loop) = (got.clone(), lp.clone());
    let rsock = Mutex::new(rsock);
    lp.add_reader(fd, move || {
        // One byte per call: the reader is called again while data remains.
        let mut byte = [0u8; 1];
        if rsock.lock().unwrap().read(&mut byte).unwrap_or(0) == 1 {
            g.lock().unwrap().push(byte[0] as char);
        }
        if g.lock().unwrap().len() == 6 {
            reader_loop.remove_reader(fd);
            reader_loop.stop();
        }
    })?;
    lp.run_forever()?;
    println!("  read one byte per callback: {:?}", got.lock().unwrap());
    Ok(())
}

/// Echoes what it receives, and counts its connections.
struct DemoEcho {
    transport: Option<evloop::Transport>,
    served: Arc<AtomicUsize>,
}

impl evloop::Protocol for DemoEcho {
    fn connection_made(&mut self, transport: evloop::Transport) {
        self.served.fetch_add(1, Ordering::Relaxed);
        self.transport = Some(transport);
    }
    fn data_received(&mut self, data: &[u8]) {
        if let Some(t) = &self.transport {
            let _ = t.write(data);
        }
    }
}

/// Sends a line, collects the echo, and reports it when the server closes.
struct DemoClient {
    line: String,
    echoed: Vec<u8>,
    done: evloop::LoopFuture<String>,
}

impl evloop::Protocol for DemoClient {
    fn connection_made(&mut self, transport: evloop::Transport) {
        let _ = transport.write(self.line.as_bytes());
        // Half-close: the server sees EOF and closes after echoing.
        let _ = transport.write_eof();
    }
    fn data_received(&mut self, data: &[u8]) {
        self.echoed.extend_from_slice(data);
    }
    fn connection_lost(&mut self, _error: Option<std::io::Error>) {
        let _ = self
            .done
            .set_result(String::from_utf8_lossy(&self.echoed).into_owned());
    }
}

fn networking(lp: &EventLoop) -> Result<(), Box<dyn std::error::Error>> {
    section("networking: servers, transports and protocols, UDP, DNS, sendfile");
    let served = Arc::new(AtomicUsize::new(0));
    let s = served.clone();
    let server = lp.run_until_complete(lp.create_server(
        move || DemoEcho {
            transport: None,
            served: s.clone(),
        },
        Some("127.0.0.1"),
        0,
    ))??;
    let port = server.sockets()[0].as_socket().ok_or("no address")?.port();
    // Three clients at once: each a protocol, each awaiting its echo.
    let lines: Vec<String> = lp.run_until_complete(async {
        let mut echoes = Vec::new();
        for i in 0..3 {
            let done = lp.create_future::<String>();
            let client = DemoClient {
                line: format!("hello #{i}"),
                echoed: Vec::new(),
                done: done.clone(),
            };
            lp.create_connection(move || client, "127.0.0.1", port)
                .await?;
            echoes.push(done);
        }
        let mut lines = Vec::new();
        for e in echoes {
            lines.push(
                e.await
                    .map_err(|e| evloop::Error::InvalidArgument(e.to_string()))?,
            );
        }
        Ok::<_, evloop::Error>(lines)
    })??;
    println!(
        "  echo server on 127.0.0.1:{port} served {} connections: {lines:?}",
        served.load(Ordering::Relaxed)
    );
    server.close();
    lp.run_until_complete(server.wait_closed())?;

    // Low-level socket calls on a socket of our own.
    let (a, b) = UnixStream::pair()?;
    a.set_nonblocking(true)?;
    b.set_nonblocking(true)?;
    let got = lp.run_until_complete(async {
        lp.sock_sendall(&a, b"sock_sendall -> sock_recv").await?;
        lp.sock_recv(&b, 64).await
    })??;
    println!("  {}", String::from_utf8_lossy(&got));

    // sendfile(2) over a socket: this example's own source.
    let me = std::fs::File::open(file!()).or_else(|_| std::fs::File::open("examples/demo.rs"));
    if let Ok(file) = me {
        let reader = std::thread::spawn(move || {
            let mut b = b;
            b.set_nonblocking(false).ok();
            let mut n = 0;
            let mut buf = [0u8; 8192];
            while let Ok(k) = b.read(&mut buf) {
                if k == 0 {
                    break;
                }
                n += k;
            }
            n
        });
        let sent = lp.run_until_complete(async {
            let n = lp.sock_sendfile(&a, &file, 0, None, true).await;
            drop(a);
            n
        })??;
        let read = reader.join().map_err(|_| "reader panicked")?;
        println!("  sock_sendfile sent {sent} bytes of demo.rs; the peer read {read}");
    }

    // UDP: one datagram there and back through a connected endpoint.
    let echo_udp = lp.run_until_complete(lp.create_datagram_endpoint(
        || UdpEcho(None),
        evloop::DatagramOptions {
            local_addr: Some("127.0.0.1:0".parse()?),
            ..Default::default()
        },
    ))??;
    let udp_addr = echo_udp
        .sockname()
        .and_then(|a| a.as_socket())
        .ok_or("no address")?;
    let reply = lp.create_future::<Vec<u8>>();
    let r = reply.clone();
    let client = lp.run_until_complete(lp.create_datagram_endpoint(
        move || UdpClient(r),
        evloop::DatagramOptions {
            remote_addr: Some(udp_addr),
            ..Default::default()
        },
    ))??;
    let back = lp.run_until_complete(evloop::wait_for(&reply, Duration::from_secs(5)))???;
    println!(
        "  UDP datagram echoed: {:?}",
        String::from_utf8_lossy(&back)
    );
    client.close();
    echo_udp.close();

    // DNS through the executor (a literal is answered without a lookup).
    let found = lp.run_until_complete(lp.getaddrinfo(
        Some("localhost"),
        80,
        evloop::AddrInfoHints {
            socktype: Some(socket2::Type::STREAM),
            ..Default::default()
        },
    ))??;
    let addrs: Vec<_> = found.iter().filter_map(|i| i.addr.as_socket()).collect();
    println!("  getaddrinfo(\"localhost\", 80): {addrs:?}");
    Ok(())
}

struct UdpEcho(Option<evloop::DatagramTransport>);

impl evloop::DatagramProtocol for UdpEcho {
    fn connection_made(&mut self, t: evloop::DatagramTransport) {
        self.0 = Some(t);
    }
    fn datagram_received(&mut self, data: &[u8], addr: socket2::SockAddr) {
        if let Some(t) = &self.0 {
            let _ = t.sendto(data, Some(addr));
        }
    }
}

struct UdpClient(evloop::LoopFuture<Vec<u8>>);

impl evloop::DatagramProtocol for UdpClient {
    fn connection_made(&mut self, t: evloop::DatagramTransport) {
        let _ = t.sendto(b"ping over UDP", None);
    }
    fn datagram_received(&mut self, data: &[u8], _addr: socket2::SockAddr) {
        let _ = self.0.set_result(data.to_vec());
    }
}

fn streams(lp: &EventLoop) -> Result<(), evloop::Error> {
    section("streams: start_server / open_connection, readline, drain, futures-io");
    let lp2 = lp.clone();
    lp.run_until_complete(async move {
        let lp = lp2;
        // A line-upper-casing server, one task per connection.
        let server = lp
            .start_server(
                |mut reader, writer| async move {
                    while let Ok(line) = reader.readline().await {
                        if line.is_empty() {
                            break;
                        }
                        let _ = writer.write(&line.to_ascii_uppercase());
                        if writer.drain().await.is_err() {
                            break;
                        }
                    }
                    writer.close();
                },
                Some("127.0.0.1"),
                0,
            )
            .await?;
        let port = server.sockets()[0].as_socket().map_or(0, |a| a.port());
        let (mut reader, writer) = lp.open_connection("127.0.0.1", port).await?;
        writer.writelines([&b"hello "[..], b"streams\n", b"second line\n", b"third\n"])?;
        writer.drain().await?;
        println!(
            "readline: {:?}",
            String::from_utf8_lossy(&reader.readline().await?)
        );
        println!(
            "readuntil: {:?}",
            String::from_utf8_lossy(&reader.readuntil(b" ").await?)
        );
        let rest = reader.readexactly(5).await?;
        println!("readexactly(5): {:?}", String::from_utf8_lossy(&rest));
        // The same reader through the ecosystem's trait (futures-io).
        let mut tail = String::new();
        futures::io::AsyncBufReadExt::read_line(&mut reader, &mut tail)
            .await
            .map_err(evloop::Error::Io)?;
        println!("futures-io read_line: {tail:?}");
        writer.write_eof()?;
        match reader.readexactly(1).await {
            Err(e) => println!("readexactly at EOF: {e}"),
            Ok(b) => println!("unexpected: {b:?}"),
        }
        writer.close();
        writer.wait_closed().await?;
        server.close();
        server.wait_closed().await;
        Ok::<(), evloop::Error>(())
    })?
}

fn signals(lp: &EventLoop) -> Result<(), evloop::Error> {
    section("Unix signals: add_signal_handler runs the callback on the loop's thread");
    let (tx, rx) = std::sync::mpsc::channel();
    let stopper = lp.clone();
    lp.add_signal_handler(libc::SIGUSR1, move || {
        let _ = tx.send(std::thread::current().name().map(str::to_owned));
        stopper.stop();
    })?;
    signal_hook::low_level::raise(libc::SIGUSR1).map_err(evloop::Error::Io)?;
    lp.run_forever()?; // the handler stops it
    println!(
        "SIGUSR1 handled on thread {:?}",
        rx.try_recv().ok().flatten().unwrap_or_default()
    );
    println!("removed: {}", lp.remove_signal_handler(libc::SIGUSR1)?);
    Ok(())
}

fn subprocesses(lp: &EventLoop) -> Result<(), Box<dyn std::error::Error>> {
    section("pipes and subprocesses: streams to a child, exit codes, pipe transports");
    lp.run_until_complete(async {
        let options = evloop::SubprocessOptions {
            stdin: Some(evloop::Stdio::Pipe),
            stdout: Some(evloop::Stdio::Pipe),
            ..Default::default()
        };
        let mut child = lp
            .create_subprocess_exec("tr", ["a-z", "A-Z"], options)
            .await?;
        let (out, _) = child.communicate(Some(b"shouted through a pipe")).await?;
        println!(
            "tr a-z A-Z -> {:?}, exit code {:?}",
            String::from_utf8_lossy(&out.unwrap_or_default()),
            child.returncode()
        );
        let sleeper = lp
            .create_subprocess_exec("sleep", ["60"], evloop::SubprocessOptions::default())
            .await?;
        sleeper.kill()?;
        println!("sleep 60, killed: return code {}", sleeper.wait().await?);

        // connect_read_pipe: any pipe, here a child's stdout taken by hand.
        let mut cmd = std::process::Command::new("echo");
        let mut spawned = cmd
            .arg("read through connect_read_pipe")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(evloop::Error::Io)?;
        let stdout = spawned.stdout.take().expect("piped");
        let all = lp.create_future::<Vec<u8>>();
        let done = all.clone();
        lp.connect_read_pipe(move || Collect(Vec::new(), done), stdout)
            .await?;
        let line = (&all)
            .await
            .map_err(|e| evloop::Error::Io(std::io::Error::other(e.to_string())))?;
        println!(
            "pipe transport got {:?}",
            String::from_utf8_lossy(&line).trim_end()
        );
        let _ = spawned.wait();
        Ok::<_, evloop::Error>(())
    })??;
    Ok(())
}

/// Collects a pipe's bytes; completes the future when the pipe ends.
struct Collect(Vec<u8>, evloop::LoopFuture<Vec<u8>>);

impl evloop::Protocol for Collect {
    fn data_received(&mut self, data: &[u8]) {
        self.0.extend_from_slice(data);
    }
    fn connection_lost(&mut self, _error: Option<std::io::Error>) {
        let _ = self.1.set_result(std::mem::take(&mut self.0));
    }
}

fn tls(lp: &EventLoop) -> Result<(), Box<dyn std::error::Error>> {
    use evloop::rustls::{self, pki_types};
    section("TLS: ssl= on a server and a connection (rustls, a certificate made here)");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    let key = pki_types::PrivateKeyDer::Pkcs8(pki_types::PrivatePkcs8KeyDer::from(
        ck.signing_key.serialize_der(),
    ));
    let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone())?;
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    lp.run_until_complete(async {
        let options = evloop::ServerOptions {
            ssl: Some(Arc::new(server_config)),
            ..Default::default()
        };
        let server = lp
            .start_server_with(
                |mut reader, writer| async move {
                    if let Ok(line) = reader.readline().await {
                        let _ = writer.write(&line);
                    }
                    writer.close();
                },
                &["127.0.0.1"],
                0,
                options,
                evloop::DEFAULT_LIMIT,
            )
            .await?;
        let port = server.sockets()[0].as_socket().map_or(0, |a| a.port());
        let options = evloop::ConnectOptions {
            ssl: Some(Arc::new(client_config)),
            server_hostname: Some("localhost".into()),
            ..Default::default()
        };
        let (mut reader, writer) = lp
            .open_connection_with(Some("127.0.0.1"), port, options, evloop::DEFAULT_LIMIT)
            .await?;
        writer.write(b"secret\n")?;
        let echoed = reader.readline().await?;
        let cipher = match writer.get_extra_info("cipher") {
            Some(evloop::ExtraInfo::Text(c)) => c,
            _ => "?".into(),
        };
        println!(
            "echoed {:?} over {cipher}",
            String::from_utf8_lossy(&echoed).trim_end()
        );
        writer.close();
        server.close();
        server.wait_closed().await;
        Ok::<_, evloop::Error>(())
    })??;
    Ok(())
}

fn executor(lp: &EventLoop) -> Result<(), evloop::Error> {
    section("run_in_executor: the loop stays on time while the pool works");
    let worst = Arc::new(Mutex::new(Duration::ZERO));
    let cpu_pool = ThreadPoolExecutor::builder()
        .max_workers(num_cpus().saturating_sub(1).max(1))
        .build();
    let lp2 = lp.clone();
    let w = worst.clone();
    let (sum, slept) = lp.run_until_complete(async move {
        // A 5 ms ticker measuring its own lateness.
        let ticker = evloop::spawn(async move {
            loop {
                let due = Instant::now() + Duration::from_millis(5);
                evloop::sleep(Duration::from_millis(5)).await.unwrap();
                let late = Instant::now().saturating_duration_since(due);
                let mut worst = w.lock().unwrap();
                *worst = (*worst).max(late);
            }
        })
        .unwrap();
        let cpu: Vec<_> = (0..6u64)
            .map(|i| {
                lp2.run_in_executor(Some(&cpu_pool), move || {
                    (0..20_000_000u64).fold(i, |h, x| h.wrapping_mul(31).wrapping_add(x))
                })
                .unwrap()
            })
            .collect();
        let sleeps: Vec<_> = (0..8)
            .map(|_| {
                lp2.run_in_executor(None, || {
                    std::thread::sleep(Duration::from_millis(50));
                })
                .unwrap()
            })
            .collect();
        let sum = evloop::gather(cpu)
            .await
            .into_iter()
            .fold(0u64, |a, r| a ^ r.unwrap());
        let slept = evloop::gather(sleeps).await.len();
        ticker.cancel();
        cpu_pool.shutdown(true);
        (sum, slept)
    })?;
    println!("  6 CPU jobs -> {sum:016x}; {slept} blocking sleeps done");
    println!(
        "  worst lateness of a 5 ms ticker meanwhile: {:?}",
        *worst.lock().unwrap()
    );
    Ok(())
}

fn errors_and_debug(lp: &EventLoop) -> Result<(), evloop::Error> {
    section("errors go to the exception handler; debug mode reports slow callbacks");
    // The panics below are caught by the loop; keep Rust's default hook from
    // printing each one before the handler sees it.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    lp.set_exception_handler(Some(Arc::new(|_lp, ctx: &ExceptionContext| {
        println!(
            "  handler: {} ({})",
            ctx.message.lines().next().unwrap_or(""),
            ctx.panic_message().unwrap_or("-")
        );
    })));
    lp.call_soon(|| panic!("a callback failed"))?;
    drop(lp.create_task(async { panic!("a detached task failed") })?);
    let kept = lp.create_task(async { panic!("an awaited task failed") })?;
    lp.set_debug(true);
    lp.set_slow_callback_duration(Duration::from_millis(20));
    lp.call_soon(|| std::thread::sleep(Duration::from_millis(30)))?;
    let outcome = lp.run_until_complete(kept)?;
    if let Err(TaskError::Panicked(p)) = outcome {
        println!(
            "  the awaited task's panic came back through its handle: {:?}",
            evloop::panic_message(&p)
        );
    }
    lp.set_debug(false);
    lp.set_exception_handler(None);
    std::panic::set_hook(default_hook);
    Ok(())
}

fn policy() -> Result<(), evloop::Error> {
    section("a loop per thread through the policy");
    let handles: Vec<_> = (0..3)
        .map(|i| {
            std::thread::spawn(move || {
                set_event_loop(Some(new_event_loop().unwrap()));
                let lp = get_event_loop().unwrap();
                let out = lp
                    .run_until_complete(async move {
                        evloop::sleep(Duration::from_millis(5)).await.unwrap();
                        i * 10
                    })
                    .unwrap();
                set_event_loop(None);
                lp.close().unwrap();
                out
            })
        })
        .collect();
    let outs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    println!("  three threads, three loops: {outs:?}");
    println!(
        "  this thread has no loop set: {}",
        get_event_loop().unwrap_err()
    );
    Ok(())
}

fn throughput(lp: &EventLoop) -> Result<(), evloop::Error> {
    section("raw speed (see `cargo bench` for the comparison with tokio)");
    let lp2 = lp.clone();
    let n = 1_000_000;
    let took = lp.run_until_complete(async move {
        let count = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        for _ in 0..n {
            let c = count.clone();
            drop(lp2.call_soon(move || {
                c.fetch_add(1, Ordering::Relaxed);
            }));
        }
        evloop::sleep(Duration::ZERO).await.unwrap();
        assert_eq!(count.load(Ordering::Relaxed), n);
        start.elapsed()
    })?;
    println!(
        "  {n} call_soon callbacks scheduled and run: {:.0} ns each",
        took.as_secs_f64() * 1e9 / n as f64
    );
    let s = lp.stats();
    println!(
        "  stats: {} iterations, {} ready, {} timers, {} tasks",
        s.iterations, s.ready, s.timers, s.tasks
    );
    Ok(())
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Debug-mode reports and the default exception handler log through
    // `tracing`; print them.
    tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .init();
    let lp = EventLoop::new()?;
    callbacks_and_timers(&lp)?;
    tasks_and_futures(&lp)?;
    cross_thread(&lp)?;
    ping_pong()?;
    watch_fd(&lp)?;
    networking(&lp)?;
    streams(&lp)?;
    signals(&lp)?;
    subprocesses(&lp)?;
    tls(&lp)?;
    executor(&lp)?;
    errors_and_debug(&lp)?;
    policy()?;
    throughput(&lp)?;
    let result = evloop::run(async { "evloop::run: new loop, run, cancel leftovers, close" })?;
    println!("\n{result}");
    lp.close()?;
    Ok(())
}
