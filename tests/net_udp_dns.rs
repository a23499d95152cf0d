//! Datagram endpoints and name resolution, over loopback.

mod common;

use common::net::{Dg, DgRec, run_until};
use common::{Log, capture_tracing, within};
use evloop::{AddrInfoHints, DatagramOptions, Error, EventLoop};
use socket2::{Domain, SockAddr, Type};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

fn dg(log: &Log<Dg>, echo: bool) -> DgRec {
    DgRec {
        log: log.clone(),
        echo,
        transport: None,
    }
}

fn datagrams(log: &Log<Dg>) -> Vec<Vec<u8>> {
    log.get()
        .into_iter()
        .filter_map(|e| match e {
            Dg::Datagram(d, _) => Some(d),
            _ => None,
        })
        .collect()
}

fn local(port: u16) -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], port)))
}

#[test]
fn udp_echo_between_two_endpoints() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let server_log = Log::new();
        let s = dg(&server_log, true);
        let server = lp
            .run_until_complete(lp.create_datagram_endpoint(
                move || s,
                DatagramOptions {
                    local_addr: local(0),
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap();
        let server_addr = server.sockname().unwrap().as_socket().unwrap();
        assert!(server.peername().is_none());
        let client_log = Log::new();
        let c = dg(&client_log, false);
        let client = lp
            .run_until_complete(lp.create_datagram_endpoint(
                move || c,
                DatagramOptions {
                    remote_addr: Some(server_addr),
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap();
        assert_eq!(client.peername().unwrap().as_socket(), Some(server_addr));
        lp.run_until_complete(async {
            for i in 0..10u8 {
                client.sendto(&[i; 100], None).unwrap();
            }
        })
        .unwrap();
        run_until(&lp, LIMIT, || datagrams(&client_log).len() == 10);
        let got = datagrams(&client_log);
        assert!(got.iter().all(|d| d.len() == 100));
        // Loopback keeps the order.
        assert_eq!(
            got.iter().map(|d| d[0]).collect::<Vec<_>>(),
            (0..10).collect::<Vec<u8>>()
        );
        // The server saw the client's address.
        let from = server_log.get().into_iter().find_map(|e| match e {
            Dg::Datagram(_, a) => Some(a),
            _ => None,
        });
        assert_eq!(
            from.unwrap().as_socket(),
            client.sockname().unwrap().as_socket()
        );
        assert_eq!(client.get_write_buffer_size(), 0);
        // A connected endpoint refuses another destination, in asyncio's words.
        let other = SockAddr::from(SocketAddr::from(([127, 0, 0, 1], 9)));
        let err = lp
            .run_until_complete(async { client.sendto(b"x", Some(other)) })
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "Invalid address: must be None or ('127.0.0.1', {})",
                server_addr.port()
            )
        );
        client.close();
        server.close();
        run_until(&lp, LIMIT, || {
            matches!(client_log.get().last(), Some(Dg::Lost))
                && matches!(server_log.get().last(), Some(Dg::Lost))
        });
        assert!(client.is_closing());
        assert_eq!(lp.stats().io_sources, 0);
    });
}

#[test]
fn an_unreachable_peer_reaches_error_received_and_the_endpoint_stays_open() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        // A port with nobody behind it.
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = Log::new();
        let c = dg(&log, false);
        let t = lp
            .run_until_complete(lp.create_datagram_endpoint(
                move || c,
                DatagramOptions {
                    remote_addr: local(port),
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap();
        // Each send draws an ICMP port unreachable; the error comes back
        // on the socket.
        run_until(&lp, LIMIT, || {
            let _ = t.sendto(b"anyone?", None);
            log.get()
                .iter()
                .any(|e| matches!(e, Dg::Error(std::io::ErrorKind::ConnectionRefused)))
        });
        assert!(!t.is_closing());
        t.abort();
        run_until(&lp, LIMIT, || matches!(log.get().last(), Some(Dg::Lost)));
        // Sends after that are dropped, and warned about from the fifth.
        let (_, text) = capture_tracing(|| {
            lp.run_until_complete(async {
                for _ in 0..5 {
                    t.sendto(b"late", None).unwrap();
                }
            })
            .unwrap()
        });
        assert_eq!(
            text.matches("socket.send() raised exception.").count(),
            1,
            "{text}"
        );
    });
}

#[test]
fn sends_from_another_thread_are_posted_to_the_loop_in_order() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = receiver.local_addr().unwrap();
        let log = Log::new();
        let c = dg(&log, false);
        let t = lp
            .run_until_complete(lp.create_datagram_endpoint(
                move || c,
                DatagramOptions {
                    local_addr: local(0),
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap();
        let t2 = t.clone();
        std::thread::spawn(move || {
            for i in 0..5u8 {
                t2.sendto(&[i], Some(SockAddr::from(to))).unwrap();
            }
        })
        .join()
        .unwrap();
        common::run_one_iteration(&lp);
        receiver.set_read_timeout(Some(LIMIT)).unwrap();
        let mut buf = [0u8; 16];
        for i in 0..5u8 {
            let (n, _) = receiver.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[i]);
        }
        t.close();
        run_until(&lp, LIMIT, || matches!(log.get().last(), Some(Dg::Lost)));
    });
}

#[test]
fn endpoint_options_reuse_port_broadcast_and_errors() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let opts = |port| DatagramOptions {
            local_addr: local(port),
            reuse_port: true,
            allow_broadcast: true,
            ..Default::default()
        };
        let a = lp
            .run_until_complete(lp.create_datagram_endpoint(|| dg(&Log::new(), false), opts(0)))
            .unwrap()
            .unwrap();
        let port = a.sockname().unwrap().as_socket().unwrap().port();
        let b = lp
            .run_until_complete(lp.create_datagram_endpoint(|| dg(&Log::new(), false), opts(port)))
            .unwrap()
            .unwrap();
        assert_eq!(b.sockname().unwrap().as_socket().unwrap().port(), port);
        let flags = lp
            .run_until_complete(async {
                b.with_socket(|s| (s.broadcast().unwrap(), s.reuse_port().unwrap()))
            })
            .unwrap();
        assert_eq!(flags, Some((true, true)));
        // Without reuse_port the port is taken.
        let err = lp
            .run_until_complete(lp.create_datagram_endpoint(
                || dg(&Log::new(), false),
                DatagramOptions {
                    local_addr: local(port),
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err.os_error().unwrap().kind(),
            std::io::ErrorKind::AddrInUse,
            "{err}"
        );
        // Families that disagree.
        let err = lp
            .run_until_complete(lp.create_datagram_endpoint(
                || dg(&Log::new(), false),
                DatagramOptions {
                    local_addr: local(0),
                    remote_addr: Some("[::1]:9".parse().unwrap()),
                    ..Default::default()
                },
            ))
            .unwrap();
        match err {
            Err(Error::InvalidArgument(m)) => assert_eq!(m, "can not get address information"),
            other => panic!("{other:?}"),
        }
        // A given socket must be a datagram socket.
        let tcp = socket2::Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let err = lp
            .run_until_complete(lp.create_datagram_endpoint(
                || dg(&Log::new(), false),
                DatagramOptions {
                    sock: Some(tcp),
                    ..Default::default()
                },
            ))
            .unwrap();
        assert!(matches!(err, Err(Error::InvalidArgument(_))), "{err:?}");
        a.abort();
        b.abort();
        common::run_one_iteration(&lp);
    });
}

#[test]
fn getaddrinfo_answers_literals_at_once_and_resolves_names() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let stream = AddrInfoHints {
            socktype: Some(Type::STREAM),
            ..Default::default()
        };
        let v4 = lp
            .run_until_complete(lp.getaddrinfo(Some("127.0.0.1"), 80, stream))
            .unwrap()
            .unwrap();
        assert_eq!(v4.len(), 1);
        assert_eq!(v4[0].family, Domain::IPV4);
        assert_eq!(v4[0].protocol, libc::IPPROTO_TCP);
        assert_eq!(
            v4[0].addr.as_socket(),
            Some("127.0.0.1:80".parse().unwrap())
        );
        let v6 = lp
            .run_until_complete(lp.getaddrinfo(Some("::1"), 80, stream))
            .unwrap()
            .unwrap();
        assert_eq!(v6[0].family, Domain::IPV6);
        // No type: one entry per socket type, as the C library answers.
        let both = lp
            .run_until_complete(lp.getaddrinfo(Some("127.0.0.1"), 53, AddrInfoHints::default()))
            .unwrap()
            .unwrap();
        assert!(both.iter().any(|i| i.socktype == Type::STREAM));
        assert!(both.iter().any(|i| i.socktype == Type::DGRAM));
        // A name goes through the resolver (on the executor).
        let named = lp
            .run_until_complete(lp.getaddrinfo(Some("localhost"), 8080, stream))
            .unwrap()
            .unwrap();
        assert!(
            named
                .iter()
                .any(|i| i.addr.as_socket().unwrap().ip().is_loopback())
        );
        assert!(
            named
                .iter()
                .all(|i| i.addr.as_socket().unwrap().port() == 8080)
        );
        // A literal of the other family: the C library's error, as asyncio.
        let err = lp
            .run_until_complete(lp.getaddrinfo(
                Some("127.0.0.1"),
                80,
                AddrInfoHints {
                    family: Some(Domain::IPV6),
                    ..stream
                },
            ))
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, Error::AddressLookup { .. }), "{err:?}");
        // Passive, no host: the wildcard a server binds.
        let any = lp
            .run_until_complete(lp.getaddrinfo(
                None,
                0,
                AddrInfoHints {
                    family: Some(Domain::IPV4),
                    flags: libc::AI_PASSIVE,
                    ..stream
                },
            ))
            .unwrap()
            .unwrap();
        assert!(any[0].addr.as_socket().unwrap().ip().is_unspecified());
        // A NUL inside a name is bad input, not a crash.
        let err = lp
            .run_until_complete(lp.getaddrinfo(Some("a\0b"), 80, AddrInfoHints::default()))
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    });
}

#[test]
fn getnameinfo_names_an_address() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let addr = SockAddr::from(SocketAddr::from(([127, 0, 0, 1], 80)));
        let numeric = lp
            .run_until_complete(lp.getnameinfo(&addr, libc::NI_NUMERICHOST | libc::NI_NUMERICSERV))
            .unwrap()
            .unwrap();
        assert_eq!(numeric, ("127.0.0.1".to_string(), "80".to_string()));
        let named = lp
            .run_until_complete(lp.getnameinfo(&addr, 0))
            .unwrap()
            .unwrap();
        assert!(!named.0.is_empty());
        assert_eq!(named.1, "http");
        // NI_NAMEREQD on an address without a name is a lookup error.
        let nameless = SockAddr::from(SocketAddr::from(([192, 0, 2, 1], 80)));
        let r = lp
            .run_until_complete(lp.getnameinfo(&nameless, libc::NI_NAMEREQD))
            .unwrap();
        assert!(matches!(r, Err(Error::AddressLookup { .. })), "{r:?}");
    });
}

#[test]
fn an_error_while_the_protocol_is_busy_reaches_error_received_after_it_returns() {
    /// Answers every datagram with one too large to send.
    struct Oversize(Log<Dg>, Option<evloop::DatagramTransport>);
    impl evloop::DatagramProtocol for Oversize {
        fn connection_made(&mut self, t: evloop::DatagramTransport) {
            self.1 = Some(t);
        }
        fn datagram_received(&mut self, _data: &[u8], addr: SockAddr) {
            self.0.push(Dg::Made);
            // EMSGSIZE at once, while this callback runs.
            self.1
                .as_ref()
                .unwrap()
                .sendto(&vec![0u8; 70_000], Some(addr))
                .unwrap();
            self.0.push(Dg::Lost);
        }
        fn error_received(&mut self, error: std::io::Error) {
            self.0.push(Dg::Error(error.kind()));
        }
    }
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let l = log.clone();
        let t = lp
            .run_until_complete(lp.create_datagram_endpoint(
                move || Oversize(l, None),
                DatagramOptions {
                    local_addr: local(0),
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap();
        let to = t.sockname().unwrap().as_socket().unwrap();
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .send_to(b"hi", to)
            .unwrap();
        run_until(&lp, LIMIT, || log.len() == 3);
        let events = log.get();
        // Inside the callback (Made .. Lost here mark its start and end),
        // then the error, delivered once the callback returned.
        assert!(matches!(events[0], Dg::Made));
        assert!(matches!(events[1], Dg::Lost));
        assert!(matches!(events[2], Dg::Error(_)), "{events:?}");
        assert!(!t.is_closing());
        t.abort();
    });
}

#[test]
fn set_protocol_switches_where_datagrams_go_and_with_protocol_reaches_it() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let first_log = Log::new();
        let first = dg(&first_log, false);
        let endpoint = lp
            .run_until_complete(lp.create_datagram_endpoint(
                move || first,
                DatagramOptions {
                    local_addr: local(0),
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap();
        let addr = endpoint.sockname().unwrap().as_socket().unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.send_to(b"one", addr).unwrap();
        run_until(&lp, LIMIT, || datagrams(&first_log) == [b"one".to_vec()]);
        // Off a run, the state is out of reach; on the loop, the protocol
        // is reachable by its type.
        assert!(endpoint.with_protocol(|p: &mut DgRec| p.echo).is_none());
        let e = endpoint.clone();
        let (echo, other) = lp
            .run_until_complete(async move {
                (
                    e.with_protocol(|p: &mut DgRec| p.echo),
                    e.with_protocol(|_: &mut String| ()),
                )
            })
            .unwrap();
        assert_eq!(echo, Some(false));
        assert!(other.is_none());

        let second_log = Log::new();
        endpoint.set_protocol(dg(&second_log, true));
        // Posted from another thread, the switch still lands on the loop.
        let third_log = Log::new();
        let e2 = endpoint.clone();
        let third = dg(&third_log, false);
        std::thread::spawn(move || e2.set_protocol(third))
            .join()
            .unwrap();
        common::run_one_iteration(&lp);
        peer.send_to(b"two", addr).unwrap();
        run_until(&lp, LIMIT, || datagrams(&third_log) == [b"two".to_vec()]);
        assert_eq!(datagrams(&first_log), [b"one".to_vec()]);
        assert!(datagrams(&second_log).is_empty());
        // The new protocol hears the end, the old ones do not.
        endpoint.close();
        run_until(&lp, LIMIT, || {
            third_log.get().iter().any(|e| matches!(e, Dg::Lost))
        });
        assert!(!first_log.get().iter().any(|e| matches!(e, Dg::Lost)));
    });
}

#[test]
fn a_datagram_endpoint_lends_its_socket_only_while_open() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let d = dg(&log, false);
        let t = lp
            .run_until_complete(lp.create_datagram_endpoint(
                move || d,
                DatagramOptions {
                    local_addr: local(0),
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap();
        let Some(evloop::ExtraInfo::Socket(sock)) = t.get_extra_info("socket") else {
            panic!("socket: {:?}", t.get_extra_info("socket"));
        };
        let addr = lp
            .run_until_complete(async { sock.with_socket(|s| s.local_addr().unwrap()) })
            .unwrap();
        assert_eq!(addr, t.sockname());
        t.close();
        run_until(&lp, LIMIT, || {
            log.get().iter().any(|e| matches!(e, Dg::Lost))
        });
        assert!(t.get_extra_info("socket").is_none());
        let after = lp
            .run_until_complete(async { sock.with_socket(|_| ()) })
            .unwrap();
        assert!(after.is_none(), "the closed socket is lent no more");
    });
}

/// Records flow control.
struct Flow(Log<&'static str>);

impl evloop::DatagramProtocol for Flow {
    fn pause_writing(&mut self) {
        self.0.push("pause");
    }
    fn resume_writing(&mut self) {
        self.0.push("resume");
    }
}

#[test]
fn datagrams_sent_from_another_thread_count_at_once_and_drive_flow_control() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        let log = Log::new();
        let l = log.clone();
        let t = lp
            .run_until_complete(lp.create_datagram_endpoint(
                move || Flow(l),
                DatagramOptions {
                    remote_addr: Some(sink.local_addr().unwrap()),
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap();
        // The loop is held while another thread sends 80 KiB, over the
        // 64 KiB mark; the socket would take each datagram at once.
        let t2 = t.clone();
        let sender = common::while_loop_held(&lp, move || {
            for _ in 0..80 {
                t2.sendto(&[1; 1024], None).unwrap();
            }
            t2.get_write_buffer_size()
        });
        run_until(&lp, LIMIT, || sender.is_finished());
        assert_eq!(sender.join().unwrap(), 80 * 1024);
        run_until(&lp, LIMIT, || log.len() == 2);
        assert_eq!(log.get(), vec!["pause", "resume"]);
        assert_eq!(t.get_write_buffer_size(), 0);
        t.close();
    });
}
