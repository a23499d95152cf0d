//! Network faults and bad input: reset peers, writes after close, refused
//! and unresolvable connections, addresses in use, timeouts, Unix socket
//! files, closed loops.

mod common;

use common::net::{Echo, Ev, Rec, connect_rec, lost, reading_peer, received, run_until};
use common::{Log, capture_tracing, within};
use evloop::{ConnectOptions, Error, EventLoop, ServerOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// What a report to the exception handler said: the message, the error's
/// text, and whether it named the stream transport involved.
#[derive(Debug, Clone, PartialEq)]
struct Report {
    message: String,
    error: Option<String>,
    transport: bool,
}

fn record_reports(lp: &EventLoop) -> Log<Report> {
    let log = Log::new();
    let l = log.clone();
    lp.set_exception_handler(Some(std::sync::Arc::new(move |_, ctx| {
        l.push(Report {
            message: ctx.message.clone(),
            error: ctx.error.as_ref().map(|e| e.to_string()),
            transport: ctx
                .transport
                .as_ref()
                .and_then(|t| t.downcast::<evloop::Transport>())
                .is_some(),
        });
    })));
    log
}

#[test]
fn a_reset_by_the_peer_reaches_connection_lost_with_the_error() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let reports = record_reports(&lp);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let peer = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            go_rx.recv().unwrap();
            // Unread data plus SO_LINGER 0: close sends RST.
            let s = socket2::Socket::from(s);
            s.set_linger(Some(Duration::ZERO)).unwrap();
            drop(s);
        });
        let (t, log) = connect_rec(&lp, port);
        lp.run_until_complete(async { t.write(b"unread").unwrap() })
            .unwrap();
        go_tx.send(()).unwrap();
        peer.join().unwrap();
        run_until(&lp, LIMIT, || lost(&log).is_some());
        assert_eq!(lost(&log), Some(Some(ErrorKind::ConnectionReset)));
        assert!(t.is_closing());
        // A peer gone is an OSError: asyncio only logs it, in debug mode.
        assert!(reports.get().is_empty(), "{:?}", reports.get());
    });
}

#[test]
fn writes_after_abort_are_dropped_counted_and_warned_from_the_fifth() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let server = lp
            .run_until_complete(lp.create_server(Echo::default, Some("127.0.0.1"), 0))
            .unwrap()
            .unwrap();
        let port = server.sockets()[0].as_socket().unwrap().port();
        let log = Log::new();
        let rec = Rec::new(&log);
        let t = lp
            .run_until_complete(lp.create_connection(move || rec, "127.0.0.1", port))
            .unwrap()
            .unwrap();
        t.abort();
        run_until(&lp, LIMIT, || lost(&log).is_some());
        let (_, four) = capture_tracing(|| {
            lp.run_until_complete(async {
                for _ in 0..4 {
                    t.write(b"gone").unwrap();
                }
            })
            .unwrap()
        });
        assert!(!four.contains("socket.send() raised exception."), "{four}");
        let (_, fifth) = capture_tracing(|| {
            lp.run_until_complete(async { t.write(b"gone").unwrap() })
                .unwrap()
        });
        assert!(fifth.contains("socket.send() raised exception."), "{fifth}");
        assert_eq!(t.get_write_buffer_size(), 0);
        server.close();
    });
}

#[test]
fn connecting_to_a_closed_port_is_refused_with_the_os_error() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        // A port nobody listens on: bind, note it, close.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = lp
            .run_until_complete(lp.create_connection(Echo::default, "127.0.0.1", port))
            .unwrap()
            .unwrap_err();
        assert_eq!(err.os_error().unwrap().kind(), ErrorKind::ConnectionRefused);
        assert_eq!(
            err.to_string(),
            format!("[Errno 111] Connect call failed ('127.0.0.1', {port})")
        );
        // all_errors lists every attempt.
        let err = lp
            .run_until_complete(lp.create_connection_with(
                Echo::default,
                Some("127.0.0.1"),
                port,
                ConnectOptions {
                    all_errors: true,
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap_err();
        match err {
            Error::Multiple { errors, .. } => {
                assert_eq!(errors.len(), 1);
                assert_eq!(
                    errors[0].os_error().unwrap().kind(),
                    ErrorKind::ConnectionRefused
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(lp.stats().io_sources, 0);
    });
}

#[test]
fn a_local_address_of_another_family_is_not_bound_and_named_in_the_error() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // An IPv6 local address for an IPv4 peer: asyncio skips it, and with
        // no local address of the peer's family left, fails the attempt.
        let err = lp
            .run_until_complete(lp.create_connection_with(
                Echo::default,
                Some("127.0.0.1"),
                port,
                ConnectOptions {
                    local_addr: Some("[::1]:0".parse().unwrap()),
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no matching local address with family=<AddressFamily.AF_INET: 2> found"
        );
        assert_eq!(lp.stats().io_sources, 0);
    });
}

#[test]
fn an_unresolvable_host_is_an_address_lookup_error() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let err = lp
            .run_until_complete(lp.create_connection(Echo::default, "nonexistent.invalid", 80))
            .unwrap()
            .unwrap_err();
        match &err {
            Error::AddressLookup { code, message } => {
                assert!(*code < 0, "{code}");
                assert!(!message.is_empty());
                assert!(err.to_string().starts_with(&format!("[Errno {code}] ")));
            }
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn an_address_in_use_is_a_typed_error_naming_the_address() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let err = lp
            .run_until_complete(lp.create_server(Echo::default, Some("127.0.0.1"), port))
            .unwrap()
            .unwrap_err();
        assert_eq!(err.os_error().unwrap().kind(), ErrorKind::AddrInUse);
        assert_eq!(
            err.to_string(),
            format!(
                "[Errno 98] error while attempting to bind on address ('127.0.0.1', {port}): address already in use"
            )
        );
        // local_addr in use for a connection: the same wording.
        let err = lp
            .run_until_complete(lp.create_connection_with(
                Echo::default,
                Some("127.0.0.1"),
                port,
                ConnectOptions {
                    local_addr: Some(taken.local_addr().unwrap()),
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err.os_error().unwrap().kind(),
            ErrorKind::AddrInUse,
            "{err}"
        );
    });
}

#[test]
fn a_connect_timeout_through_wait_for_leaves_nothing_behind() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        // A listener that never accepts, its queue filled: further
        // handshakes get no answer and connects hang.
        let listener =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        listener
            .bind(
                &"127.0.0.1:0"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            )
            .unwrap();
        listener.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        let mut fillers = Vec::new();
        let outcome = loop {
            let attempt = lp
                .run_until_complete(evloop::wait_for(
                    lp.create_connection(Echo::default, "127.0.0.1", addr.port()),
                    Duration::from_millis(200),
                ))
                .unwrap();
            match attempt {
                Ok(Ok(t)) => {
                    fillers.push(t);
                    assert!(fillers.len() < 64, "the listen queue never filled");
                }
                other => break other,
            }
        };
        assert!(matches!(outcome, Err(Error::Timeout)), "{outcome:?}");
        for t in &fillers {
            t.abort();
        }
        common::run_one_iteration(&lp);
        common::run_one_iteration(&lp);
        assert_eq!(
            lp.stats().io_sources,
            0,
            "the cancelled connect deregistered"
        );
    });
}

#[test]
fn unix_servers_replace_stale_sockets_refuse_other_files_and_clean_up() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let dir = std::env::temp_dir().join(format!("evloop-unix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("server.sock");
        let _ = std::fs::remove_file(&path);
        // A stale socket file, left by a listener that is gone.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let server = lp
            .run_until_complete(lp.create_unix_server(
                Echo::default,
                &path,
                ServerOptions::default(),
            ))
            .unwrap()
            .unwrap();
        let log = Log::new();
        let (tx, rx) = mpsc::channel();
        let rec = Rec::new(&log).sending(&tx);
        lp.run_until_complete(lp.create_unix_connection(move || rec, &path))
            .unwrap()
            .unwrap();
        let t = rx.recv_timeout(LIMIT).unwrap();
        lp.run_until_complete(async { t.write(b"unix").unwrap() })
            .unwrap();
        run_until(&lp, LIMIT, || received(&log) == b"unix");
        assert!(t.peername().unwrap().as_pathname().is_some());
        t.close();
        server.close();
        lp.run_until_complete(server.wait_closed()).unwrap();
        assert!(!path.exists(), "the socket file is removed on close");

        // A server whose file was replaced by another server's leaves the
        // newer file alone when it closes (asyncio 3.13 compares inodes).
        let first = lp
            .run_until_complete(lp.create_unix_server(
                Echo::default,
                &path,
                ServerOptions::default(),
            ))
            .unwrap()
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        let second = lp
            .run_until_complete(lp.create_unix_server(
                Echo::default,
                &path,
                ServerOptions::default(),
            ))
            .unwrap()
            .unwrap();
        first.close();
        lp.run_until_complete(first.wait_closed()).unwrap();
        assert!(path.exists(), "the newer server's file stays");
        lp.run_until_complete(lp.create_unix_connection(Echo::default, &path))
            .unwrap()
            .unwrap()
            .close();
        second.close();
        lp.run_until_complete(second.wait_closed()).unwrap();
        assert!(!path.exists());

        // A regular file is not a stale socket: refused, left alone.
        std::fs::write(&path, b"data").unwrap();
        let err = lp
            .run_until_complete(lp.create_unix_server(
                Echo::default,
                &path,
                ServerOptions::default(),
            ))
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err.os_error().unwrap().kind(),
            ErrorKind::AddrInUse,
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
        std::fs::remove_dir_all(&dir).unwrap();

        // Nobody listening.
        let err = lp
            .run_until_complete(lp.create_unix_connection(Echo::default, dir.join("none.sock")))
            .unwrap()
            .unwrap_err();
        assert_eq!(err.os_error().unwrap().kind(), ErrorKind::NotFound, "{err}");
    });
}

#[test]
fn a_closed_loop_refuses_network_operations() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        lp.close().unwrap();
        let err = lp.run_until_complete(lp.create_connection(Echo::default, "127.0.0.1", port));
        assert!(matches!(err, Err(Error::Closed)), "{err:?}");
        let other = EventLoop::new().unwrap();
        let err = other
            .run_until_complete(lp.create_connection(Echo::default, "127.0.0.1", port))
            .unwrap();
        assert!(err.is_err());
    });
}

/// Runs a loop with a `reuse_port` echo server on `port` (0: any) on a new
/// thread; reports the bound port (or the error) and serves until `stop`.
fn reuse_port_server(
    port: u16,
    bound: mpsc::Sender<Result<u16, String>>,
    stop: mpsc::Receiver<()>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let lp = EventLoop::new().unwrap();
        let server = lp
            .run_until_complete(lp.create_server_with(
                Echo::default,
                &["127.0.0.1"],
                port,
                ServerOptions {
                    reuse_port: true,
                    ..Default::default()
                },
            ))
            .unwrap();
        let server = match server {
            Ok(s) => s,
            Err(e) => {
                let _ = bound.send(Err(e.to_string()));
                return;
            }
        };
        let _ = bound.send(Ok(server.sockets()[0].as_socket().unwrap().port()));
        // The stop request arrives through the loop's own thread-safe call.
        let done = lp.create_future::<()>();
        let d = done.clone();
        let lp2 = lp.clone();
        std::thread::spawn(move || {
            let _ = stop.recv();
            let _ = lp2.call_soon_threadsafe(move || {
                let _ = d.set_result(());
            });
        });
        lp.run_until_complete(&done).unwrap().unwrap();
        server.close();
    })
}

#[test]
fn several_loops_share_a_port_with_reuse_port() {
    within(LIMIT, || {
        let (bound_tx, bound_rx) = mpsc::channel();
        let (stop1, stop1_rx) = mpsc::channel();
        let (stop2, stop2_rx) = mpsc::channel();
        let first = reuse_port_server(0, bound_tx.clone(), stop1_rx);
        let port = bound_rx.recv().unwrap().unwrap();
        let second = reuse_port_server(port, bound_tx, stop2_rx);
        assert_eq!(
            bound_rx.recv().unwrap(),
            Ok(port),
            "the second loop binds the same port"
        );
        // Every connection is served, by one loop or the other.
        for _ in 0..20 {
            let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            c.write_all(b"ping").unwrap();
            let mut buf = [0u8; 4];
            c.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"ping");
        }
        stop1.send(()).unwrap();
        stop2.send(()).unwrap();
        first.join().unwrap();
        second.join().unwrap();
    });
}

/// A connection (its protocol logging to the returned log) to a peer
/// that reads nothing until the sender fires, then everything until EOF,
/// which its thread returns.
fn connect_to_a_stalled_reader(
    lp: &EventLoop,
) -> (
    evloop::Transport,
    Log<Ev>,
    mpsc::Sender<()>,
    std::thread::JoinHandle<Vec<u8>>,
) {
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (port, peer) = reading_peer(Some(go_rx));
    let (t, log) = connect_rec(lp, port);
    (t, log, go_tx, peer)
}

#[test]
fn sendfile_sends_the_range_moves_the_offset_and_guards_the_transport() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        // Not reading until the test has seen sendfile in progress.
        let (t, log, go_tx, peer) = connect_to_a_stalled_reader(&lp);
        // More than any socket buffer: the send cannot finish unread.
        let content: Vec<u8> = (0..32_000_000u32).map(|i| (i % 251) as u8).collect();
        let path = std::env::temp_dir().join(format!("evloop-sendfile-{}", std::process::id()));
        std::fs::write(&path, &content).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let lp2 = lp.clone();
        let sent = lp
            .run_until_complete(async {
                t.write(b"header:").unwrap();
                let sending = {
                    let (lp3, t3, f3) = (lp2.clone(), t.clone(), file.try_clone().unwrap());
                    lp2.create_task(async move { lp3.sendfile(&t3, &f3, 10, None, true).await })
                        .unwrap()
                };
                evloop::sleep(Duration::ZERO).await.unwrap();
                assert!(!sending.done());
                // Writes are refused while the file goes.
                let refused = t.write(b"x").unwrap_err();
                assert!(
                    matches!(&refused, Error::Runtime(m) if m == "unable to write; sendfile is in progress"),
                    "{refused:?}"
                );
                assert!(!t.is_reading(), "reading pauses during sendfile");
                go_tx.send(()).unwrap();
                let n = sending.await.unwrap().unwrap();
                assert!(t.is_reading());
                t.write(b":trailer").unwrap();
                // A count of 0 is refused, as asyncio.
                let zero = lp2.sendfile(&t, &file, 0, Some(0), true).await.unwrap_err();
                assert!(
                    zero.to_string()
                        .contains("count must be a positive integer")
                );
                n
            })
            .unwrap();
        assert_eq!(sent, content.len() as u64 - 10);
        use std::io::Seek;
        assert_eq!((&file).stream_position().unwrap(), content.len() as u64);
        t.close();
        run_until(&lp, LIMIT, || lost(&log).is_some());
        let got = peer.join().unwrap();
        let mut want = b"header:".to_vec();
        want.extend_from_slice(&content[10..]);
        want.extend_from_slice(b":trailer");
        assert_eq!(got.len(), want.len());
        assert!(got == want);
        // A closing transport is refused.
        let err = lp
            .run_until_complete(lp.sendfile(&t, &file, 0, None, true))
            .unwrap()
            .unwrap_err();
        // asyncio's RuntimeError.
        assert!(
            matches!(&err, Error::Runtime(m) if m == "Transport is closing"),
            "{err:?}"
        );
        std::fs::remove_file(&path).unwrap();
        assert!(log.get().contains(&Ev::Made));
    });
}

// ----- servers and Unix paths: asyncio's classes and words ------------------------------------

#[test]
fn a_closed_server_lists_no_sockets_and_serve_forever_says_why_it_refuses() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let server = lp
            .run_until_complete(lp.create_server(Echo::default, Some("127.0.0.1"), 0))
            .unwrap()
            .unwrap();
        let port = server.sockets()[0].as_socket().unwrap().port();
        assert_eq!(
            server.to_string(),
            format!("<Server sockets=(('127.0.0.1', {port}),)>")
        );
        // A second serve_forever while one runs: asyncio's RuntimeError.
        let s = server.clone();
        let first = lp
            .create_task(async move { s.serve_forever().await })
            .unwrap();
        let second = lp
            .run_until_complete({
                let s = server.clone();
                async move {
                    evloop::sleep(Duration::ZERO).await.unwrap();
                    s.serve_forever().await
                }
            })
            .unwrap()
            .unwrap_err();
        assert!(matches!(second, Error::Runtime(_)), "{second:?}");
        assert_eq!(
            second.to_string(),
            format!(
                "server <Server sockets=(('127.0.0.1', {port}),)> is already being awaited on serve_forever()"
            )
        );
        server.close();
        // asyncio: `server.sockets` is an empty tuple once closed.
        assert!(server.sockets().is_empty());
        lp.run_until_complete(first).unwrap().unwrap().unwrap();
        let closed = lp
            .run_until_complete({
                let s = server.clone();
                async move { s.serve_forever().await }
            })
            .unwrap()
            .unwrap_err();
        assert!(matches!(closed, Error::Runtime(_)), "{closed:?}");
        assert_eq!(closed.to_string(), "server <Server sockets=()> is closed");
        lp.close().unwrap();
    });
}

#[test]
fn create_unix_server_refuses_a_path_with_sockets_and_serves_given_sockets() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let dir = std::env::temp_dir().join(format!("evloop-unix-given-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("s");
        let bound = || {
            let sock =
                socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
            let p = dir.join(format!("given-{}", rand_suffix()));
            sock.bind(&socket2::SockAddr::unix(&p).unwrap()).unwrap();
            (sock, p)
        };
        let (sock, _) = bound();
        let err = lp
            .run_until_complete(lp.create_unix_server(
                Echo::default,
                &path,
                ServerOptions {
                    sockets: vec![sock],
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "path and sock can not be specified at the same time"
        );
        assert!(!path.exists(), "nothing was bound at the path");
        let err = lp
            .run_until_complete(lp.create_unix_server(Echo::default, "", ServerOptions::default()))
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "path was not specified, and no sock specified"
        );
        let tcp = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let err = lp
            .run_until_complete(lp.create_unix_server(
                Echo::default,
                "",
                ServerOptions {
                    sockets: vec![tcp],
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("A UNIX Domain Stream Socket was expected, got"),
            "{err}"
        );
        // A socket bound by the caller is served, and echoes.
        let (sock, given) = bound();
        let server = lp
            .run_until_complete(lp.create_unix_server(
                Echo::default,
                "",
                ServerOptions {
                    sockets: vec![sock],
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap();
        let mut client = std::os::unix::net::UnixStream::connect(&given).unwrap();
        client.write_all(b"ping").unwrap();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4];
            client.read_exact(&mut buf).unwrap();
            buf
        });
        run_until(&lp, LIMIT, || reader.is_finished());
        assert_eq!(&reader.join().unwrap(), b"ping");
        server.close();
        lp.close().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    });
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn unix_path_errors_read_as_pythons() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let long = std::path::PathBuf::from(format!("/tmp/{}", "y".repeat(200)));
        let err = lp
            .run_until_complete(lp.create_unix_connection(Echo::default, &long))
            .unwrap()
            .unwrap_err();
        assert_eq!(err.to_string(), "AF_UNIX path too long");
        let err = lp
            .run_until_complete(lp.create_unix_server(
                Echo::default,
                &long,
                ServerOptions::default(),
            ))
            .unwrap()
            .unwrap_err();
        assert_eq!(err.to_string(), "AF_UNIX path too long");
        let err = lp
            .run_until_complete(lp.create_unix_connection(Echo::default, "/nonexistent-evloop/zz"))
            .unwrap()
            .unwrap_err();
        assert_eq!(err.to_string(), "[Errno 2] No such file or directory");
        assert_eq!(err.os_error().unwrap().kind(), ErrorKind::NotFound);
        // A file that is not a socket stays, and the bind says so.
        let plain = std::env::temp_dir().join(format!("evloop-plain-{}", std::process::id()));
        std::fs::write(&plain, b"keep me").unwrap();
        let err = lp
            .run_until_complete(lp.create_unix_server(
                Echo::default,
                &plain,
                ServerOptions::default(),
            ))
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("[Errno 98] Address '{}' is already in use", plain.display())
        );
        assert_eq!(std::fs::read(&plain).unwrap(), b"keep me");
        std::fs::remove_file(&plain).unwrap();
        lp.close().unwrap();
    });
}

#[test]
fn a_write_eof_during_sendfile_takes_effect_once_the_file_went() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let (t, log, go_tx, peer) = connect_to_a_stalled_reader(&lp);
        // More than any socket buffer: the send cannot finish unread.
        let content: Vec<u8> = (0..32_000_000u32).map(|i| (i % 241) as u8).collect();
        let file = common::file_with("sendfile-eof", &content);
        let lp2 = lp.clone();
        let sent = lp
            .run_until_complete(async {
                let sending = {
                    let (lp3, t3) = (lp2.clone(), t.clone());
                    lp2.create_task(async move { lp3.sendfile(&t3, &file, 0, None, true).await })
                        .unwrap()
                };
                evloop::sleep(Duration::ZERO).await.unwrap();
                assert!(!sending.done());
                // The half-close waits for the file: shutting the write
                // side now would cut it short.
                t.write_eof().unwrap();
                go_tx.send(()).unwrap();
                sending.await.unwrap()
            })
            .unwrap();
        assert_eq!(sent.unwrap(), content.len() as u64);
        // The peer's read ends at the EOF that followed the file.
        let got = peer.join().unwrap();
        assert_eq!(got.len(), content.len());
        assert!(got == content);
        t.close();
        run_until(&lp, LIMIT, || lost(&log).is_some());
    });
}

/// A buffered protocol whose `get_buffer` has no room to give.
struct NoRoom(Log<Ev>);

impl evloop::BufferedProtocol for NoRoom {
    fn get_buffer(&mut self, _size_hint: usize) -> &mut [u8] {
        &mut []
    }
    fn buffer_updated(&mut self, _nbytes: usize) {
        self.0.push(Ev::Data(Vec::new()));
    }
    fn connection_lost(&mut self, error: Option<std::io::Error>) {
        self.0.push(Ev::Lost(error.map(|e| e.kind())));
    }
}

#[test]
fn an_empty_buffer_from_get_buffer_is_a_reported_fatal_error() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let reports = record_reports(&lp);
        let port = common::net::peer(|mut s| {
            s.write_all(b"data").unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        });
        let log = Log::new();
        let l = log.clone();
        let t = lp
            .run_until_complete(lp.create_buffered_connection(
                move || NoRoom(l),
                Some("127.0.0.1"),
                port,
                ConnectOptions::default(),
            ))
            .unwrap()
            .unwrap();
        run_until(&lp, LIMIT, || lost(&log).is_some());
        // asyncio: RuntimeError('get_buffer() returned an empty buffer'),
        // through _fatal_error to the exception handler.
        assert_eq!(
            reports.get(),
            vec![Report {
                message: "Fatal error: protocol.get_buffer() call failed.".into(),
                error: Some("get_buffer() returned an empty buffer".into()),
                transport: true,
            }]
        );
        assert_eq!(log.get(), vec![Ev::Lost(Some(ErrorKind::Other))]);
        assert!(t.is_closing());
    });
}

#[test]
fn a_read_pipe_reports_a_failed_read_that_a_socket_would_only_log() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let reports = record_reports(&lp);
        let (ours, theirs) = common::net::tcp_pair();
        let log = Log::new();
        let rec = Rec::new(&log);
        let t = lp
            .run_until_complete(lp.connect_read_pipe(move || rec, ours))
            .unwrap()
            .unwrap();
        // SO_LINGER 0: the close resets the connection, and our read
        // fails with ECONNRESET.
        let theirs = socket2::Socket::from(theirs);
        theirs.set_linger(Some(Duration::ZERO)).unwrap();
        drop(theirs);
        run_until(&lp, LIMIT, || lost(&log).is_some());
        // asyncio's _UnixReadPipeTransport reports every read error but
        // EIO (its socket transport would only log this one).
        assert_eq!(lost(&log), Some(Some(ErrorKind::ConnectionReset)));
        let reports = reports.get();
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(reports[0].message, "Fatal read error on pipe transport");
        assert!(reports[0].transport);
        assert!(t.is_closing());
    });
}
