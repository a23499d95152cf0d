//! hyper 1.x on evloop (feature `hyper`): a hyper HTTP/1.1 server and a
//! hyper client on two evloop loops, on two threads, exchange requests
//! over loopback with no tokio runtime in the process.
#![cfg(feature = "hyper")]

mod common;

use bytes::Bytes;
use common::within;
use evloop::{EventLoop, HyperExecutor, HyperTimer, TcpListener, TcpStream};
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response};
use std::convert::Infallible;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn a_hyper_server_and_client_on_two_evloop_loops_exchange_requests() {
    within(LIMIT, || {
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let server = std::thread::spawn(move || {
            let lp = EventLoop::new().unwrap();
            let lp2 = lp.clone();
            lp.run_until_complete(async move {
                let listener =
                    TcpListener::bind(&lp2, "127.0.0.1:0".parse().unwrap(), false).unwrap();
                port_tx
                    .send(listener.local_addr().unwrap().as_socket().unwrap().port())
                    .unwrap();
                let (stream, _) = listener.accept(&lp2).await.unwrap();
                let service =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let body = format!("Hello, {}!", req.uri().path().trim_start_matches('/'));
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                    });
                // Served to the end: the client closes after its requests.
                hyper::server::conn::http1::Builder::new()
                    .timer(HyperTimer)
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(stream, service)
                    .await
                    .unwrap();
            })
            .unwrap();
        });
        let port = port_rx.recv().unwrap();
        let lp = EventLoop::new().unwrap();
        let lp2 = lp.clone();
        let bodies = lp
            .run_until_complete(async move {
                let stream = TcpStream::connect(&lp2, "127.0.0.1", port).await.unwrap();
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(stream).await.unwrap();
                // hyper's connection driver runs as a task of this loop.
                let exec = HyperExecutor::current().unwrap();
                hyper::rt::Executor::execute(&exec, async move {
                    let _ = conn.await;
                });
                let mut bodies = Vec::new();
                for name in ["World", "evloop", "hyper"] {
                    let req = Request::get(format!("/{name}"))
                        .header("host", "localhost")
                        .body(Empty::<Bytes>::new())
                        .unwrap();
                    let res = sender.send_request(req).await.unwrap();
                    assert_eq!(res.status(), 200);
                    let body = res.into_body().collect().await.unwrap().to_bytes();
                    bodies.push(String::from_utf8(body.to_vec()).unwrap());
                }
                bodies
            })
            .unwrap();
        assert_eq!(bodies, ["Hello, World!", "Hello, evloop!", "Hello, hyper!"]);
        // Dropping the client's loop closes its connection: the server's
        // serve_connection ends cleanly.
        drop(lp);
        server.join().unwrap();
    });
}

#[test]
fn hyper_executor_needs_a_loop_and_drops_futures_once_it_is_gone() {
    assert!(matches!(
        HyperExecutor::current(),
        Err(evloop::Error::NoRunningLoop)
    ));
    let lp = EventLoop::new().unwrap();
    let exec = HyperExecutor::new(&lp);
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r = ran.clone();
    hyper::rt::Executor::execute(&exec, async move {
        r.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    lp.run_until_complete(evloop::sleep(Duration::ZERO))
        .unwrap()
        .unwrap();
    assert!(ran.load(std::sync::atomic::Ordering::SeqCst));
    drop(lp);
    // The loop is gone: the future is dropped, not run, and nothing hangs.
    let dropped = common::DropCounter::new();
    let token = dropped.token();
    hyper::rt::Executor::execute(&exec, async move {
        drop(token);
    });
    assert_eq!(dropped.dropped(), 1);
}

#[test]
fn hyper_timers_fire_on_the_loop() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let started = std::time::Instant::now();
        lp.run_until_complete(async {
            hyper::rt::Timer::sleep(&HyperTimer, Duration::from_millis(20)).await;
        })
        .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(20));
    });
}
