//! Stream transports and servers over loopback: the protocol callbacks
//! and their order, the transport's methods, flow control, half-close,
//! servers' lifecycle.

mod common;

use common::net::{Collect, Echo, Ev, Rec, connect_rec, lost, reading_peer, received, run_until};
use common::{Log, record_exceptions, within};
use evloop::{Error, EventLoop, ExtraInfo, Protocol, ServerOptions, Transport};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

fn port_of(server: &evloop::Server) -> u16 {
    server.sockets()[0].as_socket().unwrap().port()
}

/// A server on 127.0.0.1 with protocols from `factory`.
fn serve<P: Protocol, F: Fn() -> P + Send + Sync + 'static>(
    lp: &EventLoop,
    factory: F,
) -> evloop::Server {
    lp.run_until_complete(lp.create_server(factory, Some("127.0.0.1"), 0))
        .unwrap()
        .unwrap()
}

#[test]
fn echo_round_trip_calls_the_protocol_in_asyncio_order() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let server = serve(&lp, Echo::default);
        let port = port_of(&server);
        let log = Log::new();
        let (tx, rx) = mpsc::channel();
        let mut rec = Rec::new(&log).sending(&tx);
        rec.greeting = b"hello".to_vec();
        let t = lp
            .run_until_complete(lp.create_connection(move || rec, "127.0.0.1", port))
            .unwrap()
            .unwrap();
        let made: Transport = rx.recv_timeout(LIMIT).unwrap();
        assert_eq!(made.peername(), t.peername());
        run_until(&lp, LIMIT, || received(&log) == b"hello");
        t.close();
        run_until(&lp, LIMIT, || lost(&log).is_some());
        let events = log.get();
        assert_eq!(events.first(), Some(&Ev::Made));
        assert_eq!(events.last(), Some(&Ev::Lost(None)));
        assert!(t.is_closing());
        server.close();
        lp.run_until_complete(server.wait_closed()).unwrap();
        assert!(!server.is_serving());
        assert_eq!(lp.stats().io_sources, 0, "every registration is gone");
    });
}

#[test]
fn transport_reports_addresses_socket_and_limits() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let server = serve(&lp, Echo::default);
        let port = port_of(&server);
        let log = Log::new();
        let rec = Rec::new(&log);
        let t = lp
            .run_until_complete(lp.create_connection(move || rec, "127.0.0.1", port))
            .unwrap()
            .unwrap();
        match t.get_extra_info("peername") {
            Some(ExtraInfo::Address(a)) => assert_eq!(a.as_socket().unwrap().port(), port),
            other => panic!("peername: {other:?}"),
        }
        assert!(matches!(
            t.get_extra_info("sockname"),
            Some(ExtraInfo::Address(_))
        ));
        let Some(ExtraInfo::Socket(sock)) = t.get_extra_info("socket") else {
            panic!("socket: {:?}", t.get_extra_info("socket"));
        };
        assert!(sock.is_socket());
        assert!(t.get_extra_info("cipher").is_none());
        assert_eq!(t.get_write_buffer_limits(), (16 * 1024, 64 * 1024));
        t.set_write_buffer_limits(Some(1000), None).unwrap();
        assert_eq!(t.get_write_buffer_limits(), (250, 1000));
        t.set_write_buffer_limits(None, Some(100)).unwrap();
        assert_eq!(t.get_write_buffer_limits(), (100, 400));
        let err = t.set_write_buffer_limits(Some(10), Some(20)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "high (10) must be >= low (20) must be >= 0"
        );
        assert!(t.can_write_eof());
        // asyncio sets TCP_NODELAY on TCP transports. The socket is
        // reachable on the loop's thread only.
        assert_eq!(t.with_socket(|s| s.tcp_nodelay().unwrap()), None);
        let nodelay = lp
            .run_until_complete(async { t.with_socket(|s| s.tcp_nodelay().unwrap()) })
            .unwrap();
        assert_eq!(nodelay, Some(true));
        assert_eq!(t.get_loop().unwrap(), lp);
        assert!(t.is_reading());
        // The socket is lent while the transport is open, on the loop's
        // thread: its own address, through the handle.
        assert!(sock.with_socket(|s| s.local_addr().unwrap()).is_none());
        let addr = lp
            .run_until_complete(async { sock.with_socket(|s| s.local_addr().unwrap()) })
            .unwrap()
            .unwrap();
        assert_eq!(Some(addr), t.sockname());
        t.abort();
        run_until(&lp, LIMIT, || lost(&log).is_some());
        // Closed: no number that may name another connection by now.
        assert!(t.get_extra_info("socket").is_none());
        let after = lp
            .run_until_complete(async {
                (
                    sock.with_socket(|s| s.local_addr().is_ok()),
                    sock.with_fd(|_| ()),
                )
            })
            .unwrap();
        assert_eq!(after, (None, None));
        server.close();
    });
}

#[test]
fn writelines_sends_every_buffer_in_order() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let (port, reader) = reading_peer(None);
        let log = Log::new();
        let rec = Rec::new(&log);
        let t = lp
            .run_until_complete(lp.create_connection(move || rec, "127.0.0.1", port))
            .unwrap()
            .unwrap();
        t.writelines([&b"ab"[..], b"", b"cd", b"ef"]).unwrap();
        t.writelines(vec![vec![b'g'; 200_000], vec![b'h'; 3]])
            .unwrap();
        t.close();
        run_until(&lp, LIMIT, || lost(&log).is_some());
        let all = reader.join().unwrap();
        assert_eq!(&all[..6], b"abcdef");
        assert_eq!(all.len(), 6 + 200_000 + 3);
        assert!(all[6..200_006].iter().all(|&b| b == b'g'));
        assert_eq!(&all[200_006..], b"hhh");
    });
}

#[test]
fn buffered_protocol_reads_into_its_own_buffer() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let l = log.clone();
        let server = lp
            .run_until_complete(lp.create_buffered_server(
                move || Collect {
                    buf: Vec::new(),
                    filled: 0,
                    log: l.clone(),
                },
                &["127.0.0.1"],
                0,
                ServerOptions::default(),
            ))
            .unwrap()
            .unwrap();
        let port = port_of(&server);
        let writer = std::thread::spawn(move || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(&vec![5u8; 100_000]).unwrap();
        });
        run_until(&lp, LIMIT, || lost(&log).is_some());
        writer.join().unwrap();
        assert_eq!(received(&log), vec![5u8; 100_000]);
        let events = log.get();
        assert_eq!(events[0], Ev::Made);
        assert_eq!(events[events.len() - 2], Ev::Eof);
        assert_eq!(events[events.len() - 1], Ev::Lost(None));
        server.close();
    });
}

#[test]
fn a_peer_that_never_reads_pauses_the_writer_and_bounds_the_buffer() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let (start_tx, start_rx) = mpsc::channel::<()>();
        // Reads nothing until told to.
        let (port, reader) = reading_peer(Some(start_rx));
        let log = Log::new();
        let (tx, rx) = mpsc::channel();
        let rec = Rec::new(&log).sending(&tx);
        let t = lp
            .run_until_complete(lp.create_connection(move || rec, "127.0.0.1", port))
            .unwrap()
            .unwrap();
        let _ = rx.recv_timeout(LIMIT).unwrap();
        // A writer honouring pause_writing: writes 16 KiB chunks until paused.
        let chunk = vec![1u8; 16 * 1024];
        let mut written = 0usize;
        let mut max_buffer = 0;
        lp.run_until_complete(async {
            while !log.get().contains(&Ev::Pause) {
                t.write(&chunk).unwrap();
                written += chunk.len();
                max_buffer = max_buffer.max(t.get_write_buffer_size());
                evloop::sleep(Duration::ZERO).await.unwrap();
            }
        })
        .unwrap();
        // Paused as soon as the buffer passed 64 KiB, not later.
        assert!(
            max_buffer > 64 * 1024 && max_buffer <= 64 * 1024 + chunk.len(),
            "{max_buffer}"
        );
        start_tx.send(()).unwrap();
        run_until(&lp, LIMIT, || log.get().contains(&Ev::Resume));
        assert!(t.get_write_buffer_size() <= 16 * 1024);
        t.close();
        run_until(&lp, LIMIT, || lost(&log).is_some());
        assert_eq!(reader.join().unwrap().len(), written);
        let events = log.get();
        let pause = events.iter().position(|e| *e == Ev::Pause).unwrap();
        let resume = events.iter().position(|e| *e == Ev::Resume).unwrap();
        assert!(pause < resume);
    });
}

#[test]
fn eof_received_false_closes_and_true_keeps_writing() {
    within(LIMIT, || {
        for keep_open in [false, true] {
            let lp = EventLoop::new().unwrap();
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let peer = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                s.write_all(b"request").unwrap();
                s.shutdown(std::net::Shutdown::Write).unwrap();
                let mut reply = Vec::new();
                s.read_to_end(&mut reply).unwrap();
                reply
            });
            let log = Log::new();
            let (tx, rx) = mpsc::channel();
            let mut rec = Rec::new(&log).sending(&tx);
            rec.keep_open = keep_open;
            lp.run_until_complete(lp.create_connection(move || rec, "127.0.0.1", port))
                .unwrap()
                .unwrap();
            let t = rx.recv_timeout(LIMIT).unwrap();
            run_until(&lp, LIMIT, || log.get().contains(&Ev::Eof));
            if keep_open {
                // Half-open: the write side still works.
                assert!(!t.is_closing());
                lp.run_until_complete(async {
                    t.write(b"reply").unwrap();
                    t.write_eof().unwrap();
                    // asyncio's RuntimeError.
                    assert!(
                        matches!(t.write(b"more"), Err(Error::Runtime(m)) if m == "Cannot call write() after write_eof()"),
                        "write after write_eof is refused"
                    );
                })
                .unwrap();
                run_until(&lp, LIMIT, || peer.is_finished());
                assert_eq!(peer.join().unwrap(), b"reply");
                t.close();
            } else {
                assert!(t.is_closing());
                run_until(&lp, LIMIT, || peer.is_finished());
                assert_eq!(peer.join().unwrap(), b"");
            }
            run_until(&lp, LIMIT, || lost(&log).is_some());
            assert_eq!(
                log.get(),
                vec![
                    Ev::Made,
                    Ev::Data(b"request".to_vec()),
                    Ev::Eof,
                    Ev::Lost(None)
                ]
            );
        }
    });
}

#[test]
fn pause_reading_holds_data_until_resume_reading() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let peer = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            go_rx.recv().unwrap();
            s.write_all(b"while paused").unwrap();
            // Keep the connection until the test says so.
            go_rx.recv().unwrap();
        });
        let (t, log) = connect_rec(&lp, port);
        // On the loop's thread, so that it acts at once (from elsewhere it
        // is posted, and races with the data).
        lp.run_until_complete(async { t.pause_reading() }).unwrap();
        assert!(!t.is_reading());
        go_tx.send(()).unwrap();
        // The bytes are there: a raw peek on the socket sees them, the
        // protocol does not.
        run_until(&lp, LIMIT, || {
            let mut b = [std::mem::MaybeUninit::new(0u8); 16];
            t.with_socket(|s| s.peek(&mut b).unwrap_or(0)) == Some(12)
        });
        for _ in 0..10 {
            common::run_one_iteration(&lp);
        }
        assert_eq!(received(&log), b"");
        t.resume_reading();
        assert!(t.is_reading());
        run_until(&lp, LIMIT, || received(&log) == b"while paused");
        go_tx.send(()).unwrap();
        peer.join().unwrap();
        t.abort();
        run_until(&lp, LIMIT, || lost(&log).is_some());
    });
}

#[test]
fn transport_methods_from_another_thread_are_posted_in_order() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let (port, peer) = reading_peer(None);
        let log = Log::new();
        let rec = Rec::new(&log);
        let t = lp
            .run_until_complete(lp.create_connection(move || rec, "127.0.0.1", port))
            .unwrap()
            .unwrap();
        let t2 = t.clone();
        std::thread::spawn(move || {
            for i in 0..100u8 {
                t2.write(&[i]).unwrap();
            }
            t2.close();
        })
        .join()
        .unwrap();
        run_until(&lp, LIMIT, || lost(&log).is_some());
        assert_eq!(peer.join().unwrap(), (0..100u8).collect::<Vec<_>>());
    });
}

#[test]
fn set_protocol_routes_later_data_to_the_new_protocol() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let peer = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"first").unwrap();
            go_rx.recv().unwrap();
            s.write_all(b"second").unwrap();
        });
        let (old, new) = (Log::new(), Log::new());
        let (tx, rx) = mpsc::channel();
        let rec = Rec::new(&old).sending(&tx);
        lp.run_until_complete(lp.create_connection(move || rec, "127.0.0.1", port))
            .unwrap()
            .unwrap();
        let t = rx.recv_timeout(LIMIT).unwrap();
        run_until(&lp, LIMIT, || received(&old) == b"first");
        t.set_protocol(Rec::new(&new));
        lp.run_until_complete(async {
            assert_eq!(t.with_protocol(|p: &mut Rec| p.keep_open), Some(false));
            assert_eq!(t.with_protocol(|_: &mut Echo| ()), None, "not an Echo");
        })
        .unwrap();
        // Off the loop's thread the protocol is not reachable.
        assert_eq!(t.with_protocol(|p: &mut Rec| p.keep_open), None);
        go_tx.send(()).unwrap();
        run_until(&lp, LIMIT, || lost(&new).is_some());
        peer.join().unwrap();
        assert_eq!(received(&new), b"second");
        assert_eq!(received(&old), b"first");
        assert!(lost(&old).is_none(), "the old protocol is not told");
    });
}

#[test]
fn a_panicking_protocol_is_reported_and_its_transport_closed() {
    struct Bad(Log<Ev>);
    impl Protocol for Bad {
        fn data_received(&mut self, _data: &[u8]) {
            panic!("bad protocol");
        }
        fn connection_lost(&mut self, error: Option<std::io::Error>) {
            self.0.push(Ev::Lost(error.map(|e| e.kind())));
        }
    }
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let errors = record_exceptions(&lp);
        let log = Log::new();
        let l = log.clone();
        let server = serve(&lp, move || Bad(l.clone()));
        let port = port_of(&server);
        let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        client.write_all(b"x").unwrap();
        run_until(&lp, LIMIT, || lost(&log).is_some());
        assert_eq!(lost(&log), Some(Some(std::io::ErrorKind::Other)));
        let errors = errors.get();
        assert_eq!(
            errors[0].0,
            "Fatal error: protocol.data_received() call failed."
        );
        assert_eq!(errors[0].1.as_deref(), Some("bad protocol"));
        // The server still serves.
        assert!(server.is_serving());
        server.close();
    });
}

#[test]
fn server_lifecycle_start_serving_close_clients_and_wait_closed() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let l = log.clone();
        let server = lp
            .run_until_complete(lp.create_server_with(
                move || Rec::new(&l),
                &["127.0.0.1"],
                0,
                ServerOptions {
                    start_serving: false,
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap();
        assert!(!server.is_serving());
        assert_eq!(server.get_loop().unwrap(), lp);
        let port = port_of(&server);
        // Connections queue in the backlog until serving starts.
        let clients: Vec<TcpStream> = (0..3)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        for _ in 0..5 {
            common::run_one_iteration(&lp);
        }
        assert!(log.get().is_empty());
        lp.run_until_complete(server.start_serving())
            .unwrap()
            .unwrap();
        assert!(server.is_serving());
        run_until(&lp, LIMIT, || {
            log.get().iter().filter(|e| **e == Ev::Made).count() == 3
        });
        server.close();
        assert!(!server.is_serving());
        // Accepted connections outlive close(); wait_closed waits for them.
        let waiter = {
            let s = server.clone();
            lp.create_task(async move { s.wait_closed().await })
                .unwrap()
        };
        for _ in 0..5 {
            common::run_one_iteration(&lp);
        }
        assert!(!waiter.done());
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "no longer listening"
        );
        server.close_clients();
        lp.run_until_complete(waiter).unwrap().unwrap();
        assert_eq!(
            log.get()
                .iter()
                .filter(|e| matches!(e, Ev::Lost(None)))
                .count(),
            3
        );
        // The clients see EOF.
        for mut c in clients {
            let mut buf = [0u8; 1];
            assert_eq!(c.read(&mut buf).unwrap(), 0);
        }
        let again = lp.run_until_complete(server.start_serving()).unwrap();
        assert!(again.is_err(), "a closed server does not serve again");
    });
}

#[test]
fn abort_clients_resets_connections_and_serve_forever_ends_on_close() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let l = log.clone();
        let server = lp
            .run_until_complete(lp.create_server_with(
                move || {
                    let mut r = Rec::new(&l);
                    r.greeting = vec![9u8; 4 << 20];
                    r
                },
                &["127.0.0.1"],
                0,
                ServerOptions {
                    start_serving: false,
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap();
        let port = port_of(&server);
        let forever = {
            let s = server.clone();
            lp.create_task(async move { s.serve_forever().await })
                .unwrap()
        };
        let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        run_until(&lp, LIMIT, || log.get().contains(&Ev::Made));
        let second = {
            let s = server.clone();
            lp.run_until_complete(async move { s.serve_forever().await })
                .unwrap()
        };
        assert!(second.is_err(), "only one serve_forever at a time");
        // The greeting (4 MiB) is buffered: abort drops it.
        server.abort_clients();
        run_until(&lp, LIMIT, || lost(&log).is_some());
        let s = server.clone();
        lp.call_soon(move || s.close()).unwrap();
        lp.run_until_complete(forever).unwrap().unwrap().unwrap();
        lp.run_until_complete(server.wait_closed()).unwrap();
        drop(client);
    });
}

#[test]
fn cancelling_serve_forever_closes_the_server() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let server = serve(&lp, Echo::default);
        let s = server.clone();
        let task = lp
            .create_task(async move { s.serve_forever().await })
            .unwrap();
        common::run_one_iteration(&lp);
        task.cancel();
        assert!(lp.run_until_complete(task).unwrap().is_err());
        assert!(!server.is_serving());
        lp.run_until_complete(server.wait_closed()).unwrap();
    });
}

#[test]
fn connect_accepted_socket_and_sock_option_wrap_existing_connections() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut outside = TcpStream::connect(addr).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let log = Log::new();
        let rec = Rec::new(&log);
        let t = lp
            .run_until_complete(lp.connect_accepted_socket(move || rec, accepted))
            .unwrap()
            .unwrap();
        outside.write_all(b"in").unwrap();
        run_until(&lp, LIMIT, || received(&log) == b"in");
        // Posted from this thread (the loop is not running): sent once it
        // runs.
        t.write(b"out").unwrap();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 3];
            outside.read_exact(&mut buf).unwrap();
            buf
        });
        run_until(&lp, LIMIT, || reader.is_finished());
        assert_eq!(&reader.join().unwrap(), b"out");
        t.close();
        run_until(&lp, LIMIT, || lost(&log).is_some());

        // A datagram socket is refused.
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let err = lp
            .run_until_complete(lp.connect_accepted_socket(Echo::default, udp))
            .unwrap()
            .unwrap_err();
        assert!(
            err.to_string().contains("A Stream Socket was expected"),
            "{err}"
        );

        // create_connection(sock=...) with an already connected socket.
        let conn = TcpStream::connect(addr).unwrap();
        let (mut other, _) = listener.accept().unwrap();
        let log2 = Log::new();
        let rec2 = Rec::new(&log2);
        let t2 = lp
            .run_until_complete(lp.create_connection_with(
                move || rec2,
                None,
                0,
                evloop::ConnectOptions {
                    sock: Some(conn.into()),
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap();
        other.write_all(b"sock=").unwrap();
        run_until(&lp, LIMIT, || received(&log2) == b"sock=");
        t2.abort();
        run_until(&lp, LIMIT, || lost(&log2).is_some());
    });
}

#[test]
fn servers_bind_every_address_a_host_resolves_to() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        // No host: every interface, IPv4 and (when the machine has it) IPv6.
        let server = lp
            .run_until_complete(lp.create_server_with(
                Echo::default,
                &[],
                0,
                ServerOptions::default(),
            ))
            .unwrap()
            .unwrap();
        let addrs = server.sockets();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().any(|a| a.is_ipv4()));
        let port = addrs[0].as_socket().unwrap().port();
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(b"any").unwrap();
        let mut buf = [0u8; 3];
        let lp2 = lp.clone();
        let reader = std::thread::spawn(move || {
            c.read_exact(&mut buf).unwrap();
            buf
        });
        run_until(&lp2, LIMIT, || reader.is_finished());
        assert_eq!(&reader.join().unwrap(), b"any");
        // Two named hosts: both bound.
        let two = lp
            .run_until_complete(lp.create_server_with(
                Echo::default,
                &["127.0.0.1", "127.0.0.2"],
                0,
                ServerOptions::default(),
            ))
            .unwrap()
            .unwrap();
        assert_eq!(two.sockets().len(), 2);
        server.close();
        two.close();
    });
}

#[test]
fn writelines_with_more_buffers_than_the_kernel_takes_at_once() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let (port, peer) = reading_peer(None);
        let log = Log::new();
        let rec = Rec::new(&log);
        let t = lp
            .run_until_complete(lp.create_connection(move || rec, "127.0.0.1", port))
            .unwrap()
            .unwrap();
        // More than IOV_MAX (1024) buffers in one call.
        let buffers: Vec<Vec<u8>> = (0..3000u32).map(|i| i.to_le_bytes().to_vec()).collect();
        lp.run_until_complete(async { t.writelines(&buffers).unwrap() })
            .unwrap();
        t.close();
        run_until(&lp, LIMIT, || lost(&log).is_some());
        assert_eq!(lost(&log), Some(None), "the connection was not failed");
        assert_eq!(peer.join().unwrap(), buffers.concat());
    });
}

#[test]
fn a_panicking_protocol_factory_is_reported_and_the_server_keeps_serving() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let errors = record_exceptions(&lp);
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = calls.clone();
        let server = serve(&lp, move || {
            if c.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                panic!("factory failed");
            }
            Echo::default()
        });
        let port = port_of(&server);
        // The first connection meets the panic and is closed.
        let mut first = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 1];
            first.read(&mut buf).map(|n| n == 0)
        });
        run_until(&lp, LIMIT, || reader.is_finished());
        assert!(
            matches!(reader.join().unwrap(), Ok(true)),
            "EOF (or a reset)"
        );
        let errors = errors.get();
        assert_eq!(
            errors[0].0,
            "Error on transport creation for incoming connection"
        );
        assert_eq!(errors[0].1.as_deref(), Some("factory failed"));
        // The next one is served.
        let mut second = TcpStream::connect(("127.0.0.1", port)).unwrap();
        second.write_all(b"still here").unwrap();
        let echo = std::thread::spawn(move || {
            let mut buf = [0u8; 10];
            second.read_exact(&mut buf).unwrap();
            buf
        });
        run_until(&lp, LIMIT, || echo.is_finished());
        assert_eq!(&echo.join().unwrap(), b"still here");
        assert!(server.is_serving());
        server.close();
    });
}
