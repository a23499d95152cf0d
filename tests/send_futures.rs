//! Every future evloop's API returns is `Send`, so that a task may hold
//! it: the common asyncio shape, `create_task(client())` where the client
//! opens a connection, compiles. This file is mostly a compile test (each
//! future is handed to a function that demands `Send`); one test runs the
//! shape end to end.

mod common;

use common::net::Echo;
use evloop::{
    AddrInfoHints, ConnectOptions, DatagramOptions, EventLoop, Process, Server, ServerOptions,
    StreamReader, StreamWriter, SubprocessOptions, SubprocessTransport, TcpListener, TcpStream,
    TlsContext, Transport,
};
use std::future::Future;
use std::time::Duration;

/// Demands `Send` of `f` (a compile-time check; the future is dropped
/// unpolled).
fn send<F: Future + Send>(f: F) {
    drop(f);
}

#[derive(Default)]
struct Quiet;
impl evloop::SubprocessProtocol for Quiet {}
impl evloop::DatagramProtocol for Quiet {}

/// The futures of the loop's own methods.
#[test]
fn the_futures_of_the_loops_io_methods_are_send() {
    let lp = EventLoop::new().unwrap();
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let addr = socket2::SockAddr::from("127.0.0.1:1".parse::<std::net::SocketAddr>().unwrap());
    let file = common::file_with("send-futures", b"x");
    let mut buf = [0u8; 4];
    send(lp.create_connection(Echo::default, "127.0.0.1", 1));
    send(lp.create_connection_with(
        Echo::default,
        Some("127.0.0.1"),
        1,
        ConnectOptions::default(),
    ));
    send(lp.create_unix_connection(Echo::default, "/tmp/evloop-none"));
    send(lp.create_server(Echo::default, Some("127.0.0.1"), 0));
    send(lp.create_server_with(Echo::default, &["127.0.0.1"], 0, ServerOptions::default()));
    send(lp.create_unix_server(Echo::default, "/tmp/evloop-none", ServerOptions::default()));
    send(lp.create_datagram_endpoint(Quiet::default, DatagramOptions::default()));
    send(lp.getaddrinfo(Some("localhost"), 80, AddrInfoHints::default()));
    send(lp.getnameinfo(&addr, 0));
    send(lp.sock_recv(&sock, 4));
    send(lp.sock_recv_into(&sock, &mut buf));
    send(lp.sock_sendall(&sock, b"x"));
    send(lp.sock_connect(&sock, &addr));
    send(lp.sock_accept(&sock));
    send(lp.sock_sendfile(&sock, &file, 0, None, true));
    send(lp.open_connection("127.0.0.1", 1));
    send(lp.open_unix_connection("/tmp/evloop-none", evloop::DEFAULT_LIMIT));
    send(lp.start_server(|_r, _w| async {}, Some("127.0.0.1"), 0));
    send(lp.start_unix_server(
        |_r, _w| async {},
        "/tmp/evloop-none",
        ServerOptions::default(),
        evloop::DEFAULT_LIMIT,
    ));
    send(lp.subprocess_exec(
        Quiet::default,
        "true",
        [""; 0],
        SubprocessOptions::default(),
    ));
    send(lp.subprocess_shell(Quiet::default, "true", SubprocessOptions::default()));
    send(lp.create_subprocess_exec("true", [""; 0], SubprocessOptions::default()));
    send(lp.create_subprocess_shell("true", SubprocessOptions::default()));
    send(lp.shutdown_default_executor(None));
    send(TcpStream::connect(&lp, "127.0.0.1", 1));
    let _ = (
        objects_futures as fn(&EventLoop, &Transport, &Server, &std::fs::File),
        stream_futures as fn(&mut StreamReader, &StreamWriter, &mut TcpStream, &TcpListener),
        process_futures as fn(&Process, &SubprocessTransport),
    );
    lp.close().unwrap();
}

/// The futures of connections, servers and TLS (type-checked only: they
/// need live objects).
fn objects_futures(lp: &EventLoop, t: &Transport, server: &Server, file: &std::fs::File) {
    send(lp.sendfile(t, file, 0, None, true));
    send(
        lp.start_tls(
            t,
            TlsContext::Client(std::sync::Arc::new(
                evloop::rustls::ClientConfig::builder()
                    .with_root_certificates(evloop::rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            )),
            Default::default(),
        ),
    );
    send(server.serve_forever());
    send(server.start_serving());
    send(server.wait_closed());
}

/// The futures of streams and plain sockets.
fn stream_futures(r: &mut StreamReader, w: &StreamWriter, s: &mut TcpStream, l: &TcpListener) {
    send(r.read(1));
    send(r.readline());
    send(r.readexactly(1));
    send(r.readuntil(b"\n"));
    send(w.drain());
    send(w.wait_closed());
    send(s.read(&mut []));
    send(s.write(b""));
    send(s.readable());
    send(l.accept(&EventLoop::new().unwrap()));
}

/// The futures of subprocesses.
fn process_futures(p: &Process, t: &SubprocessTransport) {
    send(p.wait());
    send(t.wait());
}

/// asyncio's `create_task(client())`: a task that opens a connection, talks
/// and closes, created with `create_task` (which demands `Send`).
#[test]
fn a_task_may_open_a_connection() {
    common::within(Duration::from_secs(30), || {
        let lp = EventLoop::new().unwrap();
        let server = lp
            .run_until_complete(lp.start_server(
                |mut r, w| async move {
                    let line = r.readline().await.unwrap();
                    w.write(&line).unwrap();
                    w.drain().await.unwrap();
                },
                Some("127.0.0.1"),
                0,
            ))
            .unwrap()
            .unwrap();
        let port = server.sockets()[0].as_socket().unwrap().port();
        let client = lp
            .create_task(async move {
                let lp = evloop::get_running_loop()?;
                let (mut reader, writer) = lp.open_connection("127.0.0.1", port).await?;
                writer.write(b"hello\n")?;
                writer.drain().await?;
                let echoed = reader.readline().await?;
                writer.close();
                Ok::<_, evloop::Error>(echoed)
            })
            .unwrap();
        let echoed = lp.run_until_complete(client).unwrap().unwrap().unwrap();
        assert_eq!(echoed, b"hello\n");
        server.close();
        lp.close().unwrap();
    });
}

/// `create_task_local` / `spawn_local` take futures (and outputs) that are
/// not `Send`, on the loop's own thread.
#[test]
fn local_tasks_take_futures_that_are_not_send() {
    common::within(Duration::from_secs(30), || {
        let lp = EventLoop::new().unwrap();
        let shared = std::rc::Rc::new(std::cell::Cell::new(0));
        let s = shared.clone();
        let outer = lp
            .create_task_local(async move {
                // A local task spawned from inside the loop, holding an Rc
                // across an await, returning an Rc.
                let inner = evloop::spawn_local({
                    let s = s.clone();
                    async move {
                        evloop::sleep(Duration::from_millis(1)).await.unwrap();
                        s.set(s.get() + 1);
                        s
                    }
                })
                .unwrap();
                let rc = inner.await.unwrap();
                rc.set(rc.get() + 1);
                rc
            })
            .unwrap();
        let rc = lp.run_until_complete(outer).unwrap().unwrap();
        assert_eq!(rc.get(), 2);
        assert_eq!(shared.get(), 2);
        assert!(matches!(
            evloop::spawn_local(async {}),
            Err(evloop::Error::NoRunningLoop)
        ));
        lp.close().unwrap();
        assert!(matches!(
            lp.create_task_local(async {}),
            Err(evloop::Error::Closed)
        ));
    });
}

/// A local task whose loop is run on another thread: its step there ends
/// it as a reported panic, and its future is neither polled nor dropped
/// off the thread that created it.
#[test]
fn a_local_task_is_never_touched_off_its_thread() {
    common::within(Duration::from_secs(30), || {
        use std::sync::{Arc, Mutex};
        /// Records the thread it is dropped on (not Send: the marker).
        struct Marker(
            Arc<Mutex<Option<std::thread::ThreadId>>>,
            std::marker::PhantomData<std::rc::Rc<()>>,
        );
        impl Drop for Marker {
            fn drop(&mut self) {
                *self.0.lock().unwrap() = Some(std::thread::current().id());
            }
        }
        let dropped_on = Arc::new(Mutex::new(None));
        let lp = EventLoop::new().unwrap();
        let reports = common::record_exceptions(&lp);
        let marker = Marker(dropped_on.clone(), std::marker::PhantomData);
        let task = lp
            .create_task_local(async move {
                let _m = marker;
                std::future::pending::<()>().await
            })
            .unwrap();
        drop(task);
        let runner = lp.clone();
        std::thread::spawn(move || {
            let stopper = runner.clone();
            runner.call_soon(move || stopper.stop()).unwrap();
            runner.run_forever().unwrap();
            runner.close().unwrap();
        })
        .join()
        .unwrap();
        assert_eq!(
            *dropped_on.lock().unwrap(),
            None,
            "leaked, not dropped elsewhere"
        );
        let reports = reports.get();
        assert!(
            reports
                .iter()
                .any(|(_, panic)| panic.as_deref().is_some_and(|p| p.contains("local task"))),
            "{reports:?}"
        );
    });
}
