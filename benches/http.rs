//! hyper 1.x HTTP/1.1 "Hello, World!" on evloop (`TcpListener` /
//! `TcpStream`, `HyperTimer`, connections as loop tasks) against the same
//! hyper server on a tokio current-thread runtime (hyper-util's
//! `TokioIo`), driven by the same load generator: C keep-alive
//! connections (10 and 100), each sending `GET /` and reading the
//! response before the next. Needs the `hyper` feature.
//!
//! Reports as `benches/net.rs` (see `harness`). Run: `cargo bench
//! --features hyper --bench http`.

mod harness;

use bytes::Bytes;
use evloop::{HyperTimer, TcpListener};
use harness::{Exchange, ServerThread};
use http_body_util::Full;
use hyper::{Request, Response};
use std::convert::Infallible;

async fn hello(_req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"Hello, World!",
    ))))
}

fn evloop_side() -> ServerThread {
    harness::evloop_server(|lp| async move {
        let listener = TcpListener::bind(&lp, "127.0.0.1:0".parse().unwrap(), false).unwrap();
        serve_hyper(lp, listener)
    })
}

/// Serves hyper on `listener`, a task per connection; the address and the
/// cleanup.
fn serve_hyper(
    lp: evloop::EventLoop,
    listener: TcpListener,
) -> (std::net::SocketAddr, Box<dyn FnOnce() + Send>) {
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let lp2 = lp.clone();
    let acceptor = lp
        .create_task(async move {
            while let Ok((stream, _)) = listener.accept(&lp2).await {
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(HyperTimer)
                    .serve_connection(stream, hyper::service::service_fn(hello));
                let _ = lp2.create_task(async move {
                    let _ = conn.await;
                });
            }
        })
        .unwrap();
    (
        addr,
        Box::new(move || {
            acceptor.cancel();
        }),
    )
}

fn tokio_side() -> ServerThread {
    harness::tokio_server(|conn| async move {
        let _ = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .serve_connection(
                hyper_util::rt::TokioIo::new(conn),
                hyper::service::service_fn(hello),
            )
            .await;
    })
}

/// hyper on `EVLOOP_BENCH_LOOPS` loops (default 2), one thread each, each
/// with its own listener on one port (SO_REUSEPORT): what
/// `examples/http_hello.rs` runs.
fn evloop_loops_side() -> ServerThread {
    harness::evloop_loops_server(loops(), |lp, port| async move {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let listener = TcpListener::bind(&lp, addr, true).unwrap();
        serve_hyper(lp, listener)
    })
}

/// hyper on a tokio multi-thread runtime with as many workers.
fn tokio_mt_side() -> ServerThread {
    harness::tokio_mt_server(loops(), |conn| async move {
        let _ = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .serve_connection(
                hyper_util::rt::TokioIo::new(conn),
                hyper::service::service_fn(hello),
            )
            .await;
    })
}

fn loops() -> usize {
    std::env::var("EVLOOP_BENCH_LOOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

fn main() {
    harness::run(
        "http_hello",
        "hyper HTTP/1.1 keep-alive GET (evloop against a tokio current-thread runtime)",
        Exchange::HttpGet,
        evloop_side,
        tokio_side,
    );
    harness::run(
        "http_hello_loops",
        "hyper HTTP/1.1 keep-alive GET on EVLOOP_BENCH_LOOPS (default 2) loops with SO_REUSEPORT \
         against a tokio multi-thread runtime with as many workers",
        Exchange::HttpGet,
        evloop_loops_side,
        tokio_mt_side,
    );
}
