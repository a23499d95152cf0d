//! "Hello, World!" over HTTP/1.1 with hyper, on evloop: one loop per core,
//! each on its own thread (created and set through the policy, as
//! asyncio's `new_event_loop` / `set_event_loop`), each with its own
//! listening socket on the same port (SO_REUSEPORT: the kernel spreads the
//! connections). No tokio runtime anywhere: hyper's I/O, timers and tasks
//! are evloop's (feature `hyper`).
//!
//! ```text
//! cargo run --release --features hyper --example http_hello
//! # then load it with a standard HTTP load tool, e.g.
//! wrk -t2 -c100 -d10s http://127.0.0.1:8080/
//! oha -z 10s -c 100 http://127.0.0.1:8080/
//! ```
//!
//! `EVLOOP_HTTP_ADDR=host:port` picks another address; `--self-test`
//! serves, sends one request of its own, checks the answer and exits.

use bytes::Bytes;
use evloop::{EventLoop, HyperTimer, TcpListener};
use http_body_util::Full;
use hyper::{Request, Response};
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;

async fn hello(_req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"Hello, World!",
    ))))
}

/// Accepts connections on this thread's loop and serves each as a task.
async fn serve(lp: EventLoop, listener: TcpListener) {
    loop {
        let stream = match listener.accept(&lp).await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("accept failed: {e}");
                continue;
            }
        };
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(HyperTimer)
            .serve_connection(stream, hyper::service::service_fn(hello));
        let _ = lp.create_task(async move {
            if let Err(e) = conn.await {
                eprintln!("connection error: {e}");
            }
        });
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let self_test = std::env::args().any(|a| a == "--self-test");
    let addr: SocketAddr = std::env::var("EVLOOP_HTTP_ADDR")
        .unwrap_or_else(|_| {
            if self_test {
                "127.0.0.1:0"
            } else {
                "127.0.0.1:8080"
            }
            .into()
        })
        .parse()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

    // The first listener picks the port (if 0); the others share it.
    let mut port = addr.port();
    for i in 0..threads {
        let mut addr = addr;
        addr.set_port(port);
        // Each thread reports its bound port, or why it could not bind.
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(format!("http-loop-{i}"))
            .spawn(move || {
                let lp = match evloop::new_event_loop() {
                    Ok(lp) => lp,
                    Err(e) => return drop(port_tx.send(Err(e))),
                };
                evloop::set_event_loop(Some(lp.clone()));
                let lp2 = lp.clone();
                let _ = lp.run_until_complete(async move {
                    // Sources register with a running loop: bind inside it.
                    let bound = TcpListener::bind(&lp2, addr, true).and_then(|l| {
                        let port = l.local_addr()?.as_socket().map_or(0, |a| a.port());
                        Ok((l, port))
                    });
                    match bound {
                        Ok((listener, port)) => {
                            let _ = port_tx.send(Ok(port));
                            serve(lp2, listener).await;
                        }
                        Err(e) => drop(port_tx.send(Err(e))),
                    }
                });
            })?;
        port = port_rx.recv()??;
    }
    println!("{threads} loops serving on http://{}:{port}/", addr.ip());

    if self_test {
        let mut conn = std::net::TcpStream::connect((addr.ip(), port))?;
        conn.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut reply = String::new();
        conn.read_to_string(&mut reply)?;
        assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
        assert!(reply.ends_with("Hello, World!"), "{reply}");
        println!("self-test: {}", reply.lines().next().unwrap_or(""));
        // The loops' threads end with the process.
        return Ok(());
    }
    loop {
        std::thread::park();
    }
}
