//! The loop's low-level socket operations (`sock_*`), on the caller's own
//! non-blocking sockets, over loopback.

mod common;

use common::net::tcp_pair;
use common::{Log, within};
use evloop::{Error, EventLoop};
use socket2::{Domain, SockAddr, Socket, Type};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

#[test]
fn recv_and_sendall_move_bytes_both_ways_and_wait_when_needed() {
    within(Duration::from_secs(30), || {
        let lp = EventLoop::new().unwrap();
        let (a, b) = tcp_pair();
        let lp2 = lp.clone();
        let got = lp
            .run_until_complete(async move {
                // Nothing there yet: the receive waits for the send below.
                let reader = {
                    let (lp3, b) = (lp2.clone(), b.try_clone().unwrap());
                    lp2.create_task(async move { lp3.sock_recv(&b, 1 << 20).await })
                        .unwrap()
                };
                evloop::sleep(Duration::from_millis(1)).await.unwrap();
                // More than a socket buffer: sendall waits for room.
                let big = vec![7u8; 4 << 20];
                let sender = {
                    let (lp3, a) = (lp2.clone(), a.try_clone().unwrap());
                    lp2.create_task(async move { lp3.sock_sendall(&a, &big).await })
                        .unwrap()
                };
                let first = reader.await.unwrap().unwrap();
                let mut total = first.len();
                while total < 4 << 20 {
                    total += lp2.sock_recv(&b, 1 << 20).await.unwrap().len();
                }
                sender.await.unwrap().unwrap();
                total
            })
            .unwrap();
        assert_eq!(got, 4 << 20);
        // Every temporary registration is gone.
        assert_eq!(lp.stats().io_sources, 0);
    });
}

#[test]
fn a_blocking_socket_is_refused_with_asyncios_words() {
    let lp = EventLoop::new().unwrap();
    let (a, _b) = tcp_pair();
    a.set_nonblocking(false).unwrap();
    let err = lp
        .run_until_complete(async { lp.sock_recv(&a, 10).await })
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert_eq!(err.to_string(), "the socket must be non-blocking");
}

#[test]
fn a_cancelled_receive_leaves_the_socket_usable_and_the_loop_clean() {
    within(Duration::from_secs(30), || {
        let lp = EventLoop::new().unwrap();
        let (mut a, b) = tcp_pair();
        let lp2 = lp.clone();
        let r = lp
            .run_until_complete(async move {
                let timed_out =
                    evloop::wait_for(lp2.sock_recv(&b, 100), Duration::from_millis(10)).await;
                assert!(matches!(timed_out, Err(Error::Timeout)));
                assert_eq!(lp2.stats().io_sources, 0);
                a.write_all(b"after").unwrap();
                lp2.sock_recv(&b, 100).await
            })
            .unwrap()
            .unwrap();
        assert_eq!(r, b"after");
        assert_eq!(lp.stats().io_sources, 0);
    });
}

#[test]
fn connect_and_accept_with_socket2_sockets() {
    within(Duration::from_secs(30), || {
        let lp = EventLoop::new().unwrap();
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        listener
            .bind(&SockAddr::from(
                "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
            ))
            .unwrap();
        listener.listen(16).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let lp2 = lp.clone();
        let (echoed, peer_port, client_port) = lp
            .run_until_complete(async move {
                let accepting = {
                    let lp3 = lp2.clone();
                    lp2.create_task(async move { lp3.sock_accept(&listener).await })
                        .unwrap()
                };
                let client = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
                client.set_nonblocking(true).unwrap();
                lp2.sock_connect(&client, &addr).await.unwrap();
                let (conn, peer) = accepting.await.unwrap().unwrap();
                lp2.sock_sendall(&client, b"hello").await.unwrap();
                let got = lp2.sock_recv(&conn, 5).await.unwrap();
                let client_port = client.local_addr().unwrap().as_socket().unwrap().port();
                (got, peer.as_socket().unwrap().port(), client_port)
            })
            .unwrap();
        assert_eq!(echoed, b"hello");
        assert_eq!(peer_port, client_port);
    });
}

#[test]
fn connecting_to_a_closed_port_is_refused_with_the_os_error() {
    let lp = EventLoop::new().unwrap();
    // A port nobody listens on: bind, note it, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let client = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    client.set_nonblocking(true).unwrap();
    let err = lp
        .run_until_complete(async { lp.sock_connect(&client, &port.into()).await })
        .unwrap()
        .unwrap_err();
    match err {
        Error::Io(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_reset_peer_reaches_the_receiver_as_an_error() {
    within(Duration::from_secs(30), || {
        let lp = EventLoop::new().unwrap();
        let (a, b) = tcp_pair();
        // Unread data plus linger 0: close sends a reset.
        socket2::SockRef::from(&a)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        let mut b2 = b.try_clone().unwrap();
        b2.write_all(b"unread").unwrap();
        let lp2 = lp.clone();
        let r = lp
            .run_until_complete(async move {
                let reader = {
                    let lp3 = lp2.clone();
                    lp2.create_task(async move {
                        loop {
                            match lp3.sock_recv(&b, 100).await {
                                Ok(d) if d.is_empty() => return Ok(d),
                                Ok(_) => continue,
                                Err(e) => return Err(e),
                            }
                        }
                    })
                    .unwrap()
                };
                evloop::sleep(Duration::from_millis(5)).await.unwrap();
                let mut a = a;
                let mut sink = [0u8; 16];
                let _ = a.read(&mut sink);
                drop(a);
                reader.await.unwrap()
            })
            .unwrap();
        // Linger 0 makes the close a reset, never a FIN: asyncio's
        // ConnectionResetError, not an EOF.
        match r {
            Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn udp_sendto_and_recvfrom() {
    within(Duration::from_secs(30), || {
        let lp = EventLoop::new().unwrap();
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        let b_addr: SockAddr = b.local_addr().unwrap().into();
        let a_port = a.local_addr().unwrap().port();
        let (data, from) = lp
            .run_until_complete(async {
                let receiving = lp.sock_recvfrom(&b, 100);
                let n = lp.sock_sendto(&a, b"datagram", &b_addr).await.unwrap();
                assert_eq!(n, 8);
                receiving.await.unwrap()
            })
            .unwrap();
        assert_eq!(data, b"datagram");
        assert_eq!(from.as_socket().unwrap().port(), a_port);
        let mut buf = [0u8; 4];
        lp.run_until_complete(async {
            lp.sock_sendto(&a, b"xy", &b_addr).await.unwrap();
            let (n, _) = lp.sock_recvfrom_into(&b, &mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"xy");
        })
        .unwrap();
    });
}

#[test]
fn sendfile_sends_a_range_of_a_file_and_refuses_datagram_sockets() {
    within(Duration::from_secs(30), || {
        let lp = EventLoop::new().unwrap();
        let path = std::env::temp_dir().join(format!("evloop-sendfile-{}", std::process::id()));
        let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let (a, b) = tcp_pair();
        let lp2 = lp.clone();
        let got = lp
            .run_until_complete(async move {
                let reader = {
                    let lp3 = lp2.clone();
                    lp2.create_task(async move {
                        let mut all = Vec::new();
                        loop {
                            let d = lp3.sock_recv(&b, 1 << 16).await.unwrap();
                            if d.is_empty() {
                                return all;
                            }
                            all.extend(d);
                        }
                    })
                    .unwrap()
                };
                let n = lp2
                    .sock_sendfile(&a, &file, 1000, Some(200_000), true)
                    .await
                    .unwrap();
                assert_eq!(n, 200_000);
                drop(a);
                reader.await.unwrap()
            })
            .unwrap();
        assert_eq!(got, &content[1000..201_000]);
        // A UDP socket is refused, in asyncio's words.
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        u.connect(u.local_addr().unwrap()).unwrap();
        u.set_nonblocking(true).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let r = lp
            .run_until_complete(async { lp.sock_sendfile(&u, &file, 0, Some(10), false).await })
            .unwrap();
        let _ = std::fs::remove_file(&path);
        match r {
            Err(Error::InvalidArgument(m)) => {
                assert_eq!(m, "only SOCK_STREAM type sockets are supported")
            }
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn sendfile_falls_back_to_read_and_write_where_the_kernel_refuses() {
    within(Duration::from_secs(30), || {
        let lp = EventLoop::new().unwrap();
        // A /proc file: sendfile(2) refuses it on some kernels (EINVAL),
        // and its content is read the ordinary way for comparison.
        let proc_file = "/proc/self/stat";
        let (a, b) = tcp_pair();
        let native = lp
            .run_until_complete(async {
                let f = std::fs::File::open(proc_file).unwrap();
                lp.sock_sendfile(&a, &f, 0, Some(16), false).await
            })
            .unwrap();
        match native {
            Ok(n) => assert!(n > 0),
            Err(Error::SendfileNotAvailable(_)) => {}
            Err(e) => panic!("{e:?}"),
        }
        let lp2 = lp.clone();
        let sent = lp
            .run_until_complete(async move {
                let f = std::fs::File::open(proc_file).unwrap();
                let n = lp2.sock_sendfile(&a, &f, 0, Some(16), true).await.unwrap();
                drop(a);
                n
            })
            .unwrap();
        assert!(sent > 0 && sent <= 16);
        // Whatever went, native or not, is the file's first bytes.
        b.set_nonblocking(false).unwrap();
        let mut all = Vec::new();
        (&b).read_to_end(&mut all).unwrap();
        let tail = &all[all.len() - sent as usize..];
        let start = std::fs::read(proc_file).unwrap();
        // /proc/self/stat changes between reads only past its first field
        // (the pid), which is what a prefix of 5 bytes covers.
        assert_eq!(&tail[..5.min(tail.len())], &start[..5.min(tail.len())]);
    });
}

#[test]
fn waiting_off_the_loops_thread_is_refused() {
    let lp = EventLoop::new().unwrap();
    let (a, _b) = tcp_pair();
    // Polled by another executor, with nothing to read: it would have to
    // register with the loop, which only its own thread may do.
    let r = futures::executor::block_on(lp.sock_recv(&a, 10));
    assert!(matches!(r, Err(Error::WrongThread)), "{r:?}");
}

// ----- the registration a socket keeps between sock_* waits ---------------------------------

/// A socket's registration is kept between `sock_*` waits, and none of it
/// outlives the socket: closing it closes the connection (the peer reads
/// EOF at once: no duplicate of the fd keeps it open), and a new socket
/// that gets the same fd number is waited on as itself.
#[test]
fn a_kept_registration_follows_its_socket_and_not_its_fd_number() {
    within(Duration::from_secs(30), || {
        let lp = EventLoop::new().unwrap();
        for round in 0..3u8 {
            let (a, mut b) = UnixStream::pair().unwrap();
            a.set_nonblocking(true).unwrap();
            let fd = a.as_raw_fd();
            // Two waits on the socket, each for data that comes later.
            for i in 0..2u8 {
                let (got, ()) = lp
                    .run_until_complete(async {
                        futures::join!(lp.sock_recv(&a, 8), async {
                            evloop::sleep(Duration::ZERO).await.unwrap();
                            b.write_all(&[round, i]).unwrap();
                        })
                    })
                    .unwrap();
                assert_eq!(got.unwrap(), [round, i]);
            }
            drop(a);
            // Closed for real: the peer reads EOF.
            b.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut byte = [0u8; 1];
            assert_eq!(b.read(&mut byte).unwrap(), 0, "the connection closed");
            // The next round's socket most likely reuses `fd`.
            let _ = fd;
        }
        assert_eq!(lp.stats().io_sources, 0);
        lp.close().unwrap();
    });
}

/// Several tasks wait on one socket at once; each gets what it waits for.
#[test]
fn several_sock_recv_on_one_socket_each_get_a_message() {
    within(Duration::from_secs(30), || {
        let lp = EventLoop::new().unwrap();
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let a = std::sync::Arc::new(a);
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let (lp2, a) = (lp.clone(), a.clone());
                lp.create_task(async move { lp2.sock_recv(&*a, 1).await.unwrap() })
                    .unwrap()
            })
            .collect();
        common::run_one_iteration(&lp);
        common::run_one_iteration(&lp);
        for byte in [1u8, 2, 3] {
            b.write_all(&[byte]).unwrap();
        }
        let mut got: Vec<u8> = tasks
            .into_iter()
            .flat_map(|t| lp.run_until_complete(t).unwrap().unwrap())
            .collect();
        got.sort();
        assert_eq!(got, [1, 2, 3]);
        lp.close().unwrap();
    });
}

/// A socket waited on by `sock_*` can then become a transport (asyncio:
/// `sock_connect` then `create_connection(sock=...)`), and one watched by
/// `add_reader` can still be waited on by `sock_recv`.
#[test]
fn a_socket_used_by_sock_calls_can_become_a_transport_or_be_watched_too() {
    within(Duration::from_secs(30), || {
        let lp = EventLoop::new().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = socket2::SockAddr::from(listener.local_addr().unwrap());
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_nonblocking(true).unwrap();
        lp.run_until_complete(lp.sock_connect(&sock, &addr))
            .unwrap()
            .unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        // A wait through the kept registration first.
        let (got, ()) = lp
            .run_until_complete(async {
                futures::join!(lp.sock_recv(&sock, 4), async {
                    evloop::sleep(Duration::ZERO).await.unwrap();
                    peer.write_all(b"one").unwrap();
                })
            })
            .unwrap();
        assert_eq!(got.unwrap(), b"one");
        let log = Log::new();
        let rec = common::net::Rec::new(&log);
        let transport = lp
            .run_until_complete(lp.connect_accepted_socket(move || rec, sock))
            .unwrap()
            .unwrap();
        peer.write_all(b"two").unwrap();
        common::net::run_until(&lp, Duration::from_secs(20), || {
            common::net::received(&log) == b"two"
        });
        transport.close();

        // add_reader and sock_recv on one socket.
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        lp.add_reader(a.as_raw_fd(), || ()).unwrap();
        let (got, ()) = lp
            .run_until_complete(async {
                futures::join!(lp.sock_recv(&a, 4), async {
                    evloop::sleep(Duration::ZERO).await.unwrap();
                    b.write_all(b"hey").unwrap();
                })
            })
            .unwrap();
        assert_eq!(got.unwrap(), b"hey");
        assert!(lp.remove_reader(a.as_raw_fd()));
        lp.close().unwrap();
    });
}
