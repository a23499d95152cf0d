//! Streams over loopback: open_connection / start_server, the reader's
//! methods and their errors (asyncio's wording), the writer's drain and
//! close, flow control both ways, Unix streams, and the futures-io traits.

mod common;

use common::net::peer;
use common::{record_exceptions, within};
use evloop::{Error, EventLoop, ServerOptions, StreamReader, TcpListener, TcpStream};
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn a_line_echo_server_and_client_talk_through_streams() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let out = lp
            .run_until_complete(async {
                let server = lp
                    .start_server(
                        |mut reader, writer| async move {
                            loop {
                                let line = reader.readline().await.unwrap();
                                if line.is_empty() {
                                    break;
                                }
                                writer.write(&line).unwrap();
                                writer.drain().await.unwrap();
                            }
                            writer.close();
                        },
                        Some("127.0.0.1"),
                        0,
                    )
                    .await?;
                let port = server.sockets()[0].as_socket().unwrap().port();
                let (mut reader, writer) = lp.open_connection("127.0.0.1", port).await?;
                let mut got = Vec::new();
                for i in 0..100 {
                    writer.write(format!("line {i}\n").as_bytes())?;
                    writer.drain().await?;
                    got.push(reader.readline().await?);
                }
                writer.write_eof()?;
                // The server closes after our EOF: the reader sees EOF.
                assert_eq!(reader.read(100).await?, b"");
                assert!(reader.at_eof());
                writer.close();
                writer.wait_closed().await?;
                server.close();
                server.wait_closed().await;
                Ok::<_, Error>(got)
            })
            .unwrap()
            .unwrap();
        assert_eq!(out.len(), 100);
        assert_eq!(out[7], b"line 7\n");
    });
}

#[test]
fn readexactly_at_eof_gives_the_partial_bytes_in_asyncios_words() {
    within(LIMIT, || {
        let port = peer(|mut c| {
            c.write_all(b"abc").unwrap();
        });
        let lp = EventLoop::new().unwrap();
        let err = lp
            .run_until_complete(async {
                let (mut reader, _writer) = lp.open_connection("127.0.0.1", port).await?;
                reader.readexactly(5).await
            })
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "3 bytes read on a total of 5 expected bytes"
        );
        match err {
            Error::IncompleteRead { partial, expected } => {
                assert_eq!(partial, b"abc");
                assert_eq!(expected, Some(5));
            }
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn readuntil_over_the_limit_keeps_the_buffer_and_readline_drops_the_line() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        lp.run_until_complete(async {
            let mut r = StreamReader::new(&lp, 8).unwrap();
            r.feed_data(b"0123456789abcdef").unwrap();
            let err = r.readuntil(b"\n").await.unwrap_err();
            assert_eq!(
                err.to_string(),
                "Separator is not found, and chunk exceed the limit"
            );
            assert!(matches!(err, Error::LimitOverrun { consumed: 16, .. }));
            // The bytes are all still there.
            assert_eq!(r.buffered(), 16);
            r.feed_data(b"\nnext\n").unwrap();
            let err = r.readuntil(b"\n").await.unwrap_err();
            assert_eq!(
                err.to_string(),
                "Separator is found, but chunk is longer than limit"
            );
            assert!(matches!(err, Error::LimitOverrun { consumed: 16, .. }));
            // readline drops the long line (separator included), as asyncio.
            assert!(r.readline().await.is_err());
            assert_eq!(r.readline().await.unwrap(), b"next\n");
            r.feed_data(b"tail").unwrap();
            r.feed_eof().unwrap();
            // At EOF readline returns the partial line, then nothing.
            assert_eq!(r.readline().await.unwrap(), b"tail");
            assert_eq!(r.readline().await.unwrap(), b"");
            assert!(r.at_eof());
        })
        .unwrap();
    });
}

#[test]
fn readuntil_with_several_separators_returns_the_shortest_chunk() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        lp.run_until_complete(async {
            let mut r = StreamReader::new(&lp, 1024).unwrap();
            r.feed_data(b"key=value;rest\r\n").unwrap();
            assert_eq!(r.readuntil_any(&[b"\r\n", b";"]).await.unwrap(), b"key=value;");
            assert_eq!(r.readuntil_any(&[b"\r\n", b";"]).await.unwrap(), b"rest\r\n");
            assert!(matches!(
                r.readuntil(b"").await,
                Err(Error::InvalidArgument(m)) if m == "Separator should be at least one-byte string"
            ));
            r.feed_eof().unwrap();
            assert!(matches!(r.feed_data(b"late"), Err(Error::InvalidState(_))));
            let err = r.readuntil(b"\n").await.unwrap_err();
            assert_eq!(err.to_string(), "0 bytes read on a total of undefined expected bytes");
        })
        .unwrap();
    });
}

#[test]
fn read_returns_what_is_buffered_and_read_until_eof_waits_for_eof() {
    within(LIMIT, || {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let port = peer(move |mut c| {
            c.write_all(b"hello").unwrap();
            rx.recv().unwrap();
            c.write_all(b" world").unwrap();
        });
        let lp = EventLoop::new().unwrap();
        let (first, rest) = lp
            .run_until_complete(async {
                let (mut reader, _w) = lp.open_connection("127.0.0.1", port).await?;
                let first = reader.read(100).await?;
                tx.send(()).unwrap();
                let rest = reader.read_until_eof().await?;
                Ok::<_, Error>((first, rest))
            })
            .unwrap()
            .unwrap();
        assert_eq!(first, b"hello");
        assert_eq!(rest, b" world");
    });
}

#[test]
fn a_reset_peer_fails_reads_and_drain_and_wait_closed_reports_it_every_time() {
    within(LIMIT, || {
        // The reset waits until the connection is open on our side (a
        // reset before would fail the connect itself).
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let port = peer(move |c| {
            go_rx.recv().unwrap();
            // RST instead of FIN: linger 0.
            socket2::SockRef::from(&c)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(c);
        });
        let lp = EventLoop::new().unwrap();
        lp.run_until_complete(async {
            let (mut reader, writer) = lp.open_connection("127.0.0.1", port).await.unwrap();
            go_tx.send(()).unwrap();
            let err = reader.read(10).await.unwrap_err();
            assert_eq!(
                err.os_error().map(|e| e.kind()),
                Some(std::io::ErrorKind::ConnectionReset)
            );
            assert!(reader.exception().is_some());
            // drain raises the reader's exception.
            assert!(writer.drain().await.is_err());
            let a = writer.wait_closed().await.unwrap_err();
            let b = writer.wait_closed().await.unwrap_err();
            assert_eq!(a.to_string(), b.to_string());
        })
        .unwrap();
    });
}

#[test]
fn readuntil_and_readexactly_fail_with_the_reset_when_the_peer_resets_mid_line() {
    within(LIMIT, || {
        for exact in [false, true] {
            let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
            let port = peer(move |mut c| {
                go_rx.recv().unwrap();
                c.write_all(b"partial line without its end").unwrap();
                socket2::SockRef::from(&c)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
                drop(c);
            });
            let lp = EventLoop::new().unwrap();
            let err = lp
                .run_until_complete(async {
                    let (mut reader, _w) = lp.open_connection("127.0.0.1", port).await?;
                    go_tx.send(()).unwrap();
                    if exact {
                        reader.readexactly(100).await
                    } else {
                        reader.readuntil(b"\n").await
                    }
                })
                .unwrap()
                .unwrap_err();
            assert_eq!(
                err.os_error().map(|e| e.kind()),
                Some(std::io::ErrorKind::ConnectionReset),
                "{err:?}"
            );
        }
    });
}

#[test]
fn drain_after_the_peer_closed_cleanly_is_connection_lost() {
    within(LIMIT, || {
        let port = peer(drop);
        let lp = EventLoop::new().unwrap();
        lp.run_until_complete(async {
            let (mut reader, writer) = lp.open_connection("127.0.0.1", port).await.unwrap();
            assert_eq!(reader.read(10).await.unwrap(), b"");
            writer.close();
            writer.wait_closed().await.unwrap();
            writer.wait_closed().await.unwrap();
            let err = writer.drain().await.unwrap_err();
            assert_eq!(err.to_string(), "Connection lost");
            assert_eq!(
                err.os_error().map(|e| e.kind()),
                Some(std::io::ErrorKind::ConnectionReset)
            );
        })
        .unwrap();
    });
}

#[test]
fn a_slow_reader_pauses_the_transport_and_a_fast_writer_is_held_by_drain() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let limit = 16 * 1024;
        lp.run_until_complete(async {
            let accepted = lp.create_future::<(StreamReader, evloop::StreamWriter)>();
            let acc = accepted.clone();
            let server = lp
                .start_server_with(
                    move |reader, writer| {
                        let acc = acc.clone();
                        async move {
                            let _ = acc.set_result((reader, writer));
                        }
                    },
                    &["127.0.0.1"],
                    0,
                    ServerOptions::default(),
                    limit,
                )
                .await
                .unwrap();
            let port = server.sockets()[0].as_socket().unwrap().port();
            let (_r, writer) = lp.open_connection("127.0.0.1", port).await.unwrap();
            let (mut reader, server_writer) = accepted.await.unwrap();
            // Write while the server side reads nothing, one loop iteration
            // per chunk: its transport stops reading once twice the limit
            // is buffered.
            let chunk = vec![7u8; 64 * 1024];
            let mut written = 0usize;
            while server_writer.transport().is_reading() {
                writer.write(&chunk).unwrap();
                written += chunk.len();
                evloop::sleep(Duration::ZERO).await.unwrap();
            }
            assert!(reader.buffered() > 2 * limit);
            assert!(
                reader.buffered() <= 2 * limit + 256 * 1024,
                "{}",
                reader.buffered()
            );
            // Now the kernel's buffers fill, then the writer's: drain holds
            // the writer once it is over the high-water mark, so its buffer
            // stays bounded.
            loop {
                writer.write(&chunk).unwrap();
                written += chunk.len();
                let size = writer.transport().get_write_buffer_size();
                assert!(size <= 64 * 1024 + chunk.len(), "{size}");
                let mut drain = std::pin::pin!(writer.drain());
                if futures::poll!(drain.as_mut()).is_pending() {
                    break;
                }
            }
            // Reading everything lets the writer go on.
            let mut total = 0;
            let reading = async {
                while total < written {
                    total += reader.read(1 << 20).await.unwrap().len();
                }
            };
            let draining = async {
                writer.drain().await.unwrap();
            };
            futures::join!(reading, draining);
            assert_eq!(total, written);
            server.close();
        })
        .unwrap();
    });
}

#[test]
fn a_server_task_that_drops_its_writer_still_reads_its_connection() {
    // asyncio's protocol keeps the server-side writer until the connection
    // is lost; dropping the task's own copy must not close the transport.
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let got = lp
            .run_until_complete(async {
                let done = lp.create_future::<Vec<u8>>();
                let d = done.clone();
                let server = lp
                    .start_server(
                        move |mut reader, _writer| {
                            let d = d.clone();
                            async move {
                                let _ = d.set_result(reader.read_until_eof().await.unwrap());
                            }
                        },
                        Some("127.0.0.1"),
                        0,
                    )
                    .await?;
                let port = server.sockets()[0].as_socket().unwrap().port();
                let (_r, writer) = lp.open_connection("127.0.0.1", port).await?;
                writer.write(b"hello")?;
                writer.write_eof()?;
                let got = done.await.unwrap();
                server.close();
                Ok::<_, Error>(got)
            })
            .unwrap()
            .unwrap();
        assert_eq!(got, b"hello");
    });
}

#[test]
fn an_open_connection_given_up_halfway_leaves_no_connection_open() {
    // Given up after its transport exists but before connection_made ran
    // (a timeout or a cancelled task at that moment), the connection must
    // still end: nobody else holds the transport.
    within(LIMIT, || {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server_side, _) = listener.accept().unwrap();
        let lp = EventLoop::new().unwrap();
        let lp2 = lp.clone();
        lp.run_until_complete(async move {
            let options = evloop::ConnectOptions {
                sock: Some(client.into()),
                ..Default::default()
            };
            {
                let mut opening = std::pin::pin!(lp2.open_connection_with(
                    None,
                    0,
                    options,
                    evloop::DEFAULT_LIMIT
                ));
                // One poll: the transport is made, connection_made queued.
                assert!(futures::poll!(opening.as_mut()).is_pending());
            }
            for _ in 0..3 {
                evloop::sleep(Duration::ZERO).await.unwrap();
            }
        })
        .unwrap();
        // EOF: the transport was aborted. A leaked one would leave this
        // read blocked until the test's time limit.
        let mut buf = [0u8; 16];
        assert_eq!(server_side.read(&mut buf).unwrap_or(0), 0);
        lp.close().unwrap();
    });
}

#[test]
fn clones_of_a_writer_flush_through_futures_io_side_by_side() {
    use futures::io::AsyncWriteExt;
    within(LIMIT, || {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let port = peer(move |mut c| {
            // Read nothing until both flushes wait, then everything.
            ready_rx.recv().unwrap();
            let mut sink = Vec::new();
            let _ = c.read_to_end(&mut sink);
        });
        let lp = EventLoop::new().unwrap();
        lp.run_until_complete(async {
            let (_r, writer) = lp.open_connection("127.0.0.1", port).await.unwrap();
            let (mut w1, mut w2) = (writer.clone(), writer.clone());
            let chunk = vec![1u8; 1 << 20];
            for _ in 0..8 {
                writer.write(&chunk).unwrap();
            }
            assert!(writer.transport().get_write_buffer_size() > 0);
            let mut f1 = std::pin::pin!(w1.flush());
            let mut f2 = std::pin::pin!(w2.flush());
            assert!(futures::poll!(f1.as_mut()).is_pending());
            assert!(futures::poll!(f2.as_mut()).is_pending());
            ready_tx.send(()).unwrap();
            let (a, b) = futures::join!(f1, f2);
            a.unwrap();
            b.unwrap();
            writer.close();
        })
        .unwrap();
    });
}

#[test]
fn a_panicking_client_task_is_reported_and_its_connection_closed() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let exceptions = record_exceptions(&lp);
        let got = lp
            .run_until_complete(async {
                let server = lp
                    .start_server(
                        |_reader, _writer| async move {
                            panic!("client handler failed");
                        },
                        Some("127.0.0.1"),
                        0,
                    )
                    .await?;
                let port = server.sockets()[0].as_socket().unwrap().port();
                let (mut reader, _w) = lp.open_connection("127.0.0.1", port).await?;
                let got = reader.read(10).await;
                server.close();
                Ok::<_, Error>(got)
            })
            .unwrap()
            .unwrap();
        assert_eq!(got.unwrap(), b"");
        let ex = exceptions.get();
        assert!(
            ex.iter()
                .any(|(m, _)| m == "Unhandled exception in client_connected_cb"),
            "{ex:?}"
        );
    });
}

#[test]
fn a_reader_refuses_other_threads_and_a_closed_loop_fails_cleanly() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let reader = StreamReader::new(&lp, 1024).unwrap();
        assert!(matches!(
            StreamReader::new(&lp, 0),
            Err(Error::InvalidArgument(_))
        ));
        let reader = std::thread::spawn(move || {
            assert!(matches!(reader.feed_data(b"x"), Err(Error::WrongThread)));
            reader
        })
        .join()
        .unwrap();
        // Off a run: refused, never a race; once the loop closed, as closed.
        let mut reader = reader;
        let out = futures::executor::block_on(reader.read(1));
        assert!(matches!(out, Err(Error::WrongThread)), "{out:?}");
        lp.close().unwrap();
        let out = futures::executor::block_on(reader.read(1));
        assert!(matches!(out, Err(Error::Closed)), "{out:?}");
        // A stream whose loop closed under it.
        let port = peer(|mut c| {
            let mut b = [0u8; 1];
            let _ = c.read(&mut b);
        });
        let lp = EventLoop::new().unwrap();
        let (mut reader, writer) = lp
            .run_until_complete(lp.open_connection("127.0.0.1", port))
            .unwrap()
            .unwrap();
        lp.close().unwrap();
        assert!(writer.is_closing());
        assert!(futures::executor::block_on(reader.read(1)).is_err());
        assert!(futures::executor::block_on(writer.drain()).is_err());
    });
}

#[test]
fn unix_streams_connect_and_serve() {
    within(LIMIT, || {
        let dir = std::env::temp_dir().join(format!("evloop-streams-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let lp = EventLoop::new().unwrap();
        let p = path.clone();
        let lp2 = lp.clone();
        let got = lp
            .run_until_complete(async move {
                let lp = lp2;
                let server = lp
                    .start_unix_server(
                        |mut reader, writer| async move {
                            let data = reader.readexactly(4).await.unwrap();
                            writer.write(&data).unwrap();
                            writer.close();
                        },
                        &p,
                        ServerOptions::default(),
                        evloop::DEFAULT_LIMIT,
                    )
                    .await?;
                let (mut reader, writer) =
                    lp.open_unix_connection(&p, evloop::DEFAULT_LIMIT).await?;
                writer.write(b"ping")?;
                let got = reader.read_until_eof().await?;
                server.close();
                server.wait_closed().await;
                Ok::<_, Error>(got)
            })
            .unwrap()
            .unwrap();
        assert_eq!(got, b"ping");
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn streams_and_tcp_streams_speak_futures_io() {
    use futures::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let served = Arc::new(AtomicUsize::new(0));
        let s2 = served.clone();
        let lp2 = lp.clone();
        let out = lp
            .run_until_complete(async move {
                // A TcpListener echo server written against futures-io.
                let listener = TcpListener::bind(&lp2, "127.0.0.1:0".parse().unwrap(), false)?;
                let port = listener.local_addr()?.as_socket().unwrap().port();
                let lp3 = lp2.clone();
                let server = lp2.create_task(async move {
                    let (mut conn, _) = listener.accept(&lp3).await.unwrap();
                    let mut buf = [0u8; 1024];
                    loop {
                        let n = AsyncReadExt::read(&mut conn, &mut buf).await.unwrap();
                        if n == 0 {
                            break;
                        }
                        AsyncWriteExt::write_all(&mut conn, &buf[..n])
                            .await
                            .unwrap();
                        s2.fetch_add(n, Ordering::SeqCst);
                    }
                })?;
                // The client: asyncio streams used through futures-io.
                let (mut reader, mut writer) = lp2.open_connection("127.0.0.1", port).await?;
                writer.write_all(b"one\ntwo\n").await.unwrap();
                writer.flush().await.unwrap();
                let mut line = String::new();
                reader.read_line(&mut line).await.unwrap();
                let mut rest = [0u8; 4];
                reader.read_exact(&mut rest).await.unwrap();
                // A TcpStream client too.
                // (The server accepts once; this client only connects.)
                let plain = TcpStream::connect(&lp2, "127.0.0.1", port).await?;
                assert!(plain.peer_addr().is_ok());
                drop(plain);
                AsyncWriteExt::close(&mut writer).await.unwrap();
                server.await.unwrap();
                Ok::<_, Error>((line, rest))
            })
            .unwrap()
            .unwrap();
        assert_eq!(out.0, "one\n");
        assert_eq!(&out.1, b"two\n");
        assert_eq!(served.load(Ordering::SeqCst), 8);
    });
}

#[test]
fn tcp_streams_read_write_and_shut_down_through_their_own_methods() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let lp2 = lp.clone();
        lp.run_until_complete(async move {
            let lp = lp2;
            // A listener built from a socket of our own.
            let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = std_listener.local_addr().unwrap().port();
            let listener = TcpListener::from_socket(&lp, std_listener).unwrap();
            let mut client = TcpStream::connect(&lp, "127.0.0.1", port).await.unwrap();
            let (mut server, peer) = listener.accept(&lp).await.unwrap();
            assert_eq!(client.local_addr().unwrap().as_socket(), peer.as_socket());
            assert_eq!(
                client.peer_addr().unwrap().as_socket().unwrap().port(),
                port
            );
            client.set_nodelay(false).unwrap();
            client.write_all(&vec![5u8; 300_000]).await.unwrap();
            client.shutdown(std::net::Shutdown::Write).unwrap();
            let mut total = 0;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = server.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                assert!(buf[..n].iter().all(|&b| b == 5));
                total += n;
            }
            assert_eq!(total, 300_000);
            assert!(server.write(b"bye").await.unwrap() > 0);
            let mut back = [0u8; 3];
            let mut got = 0;
            while got < 3 {
                got += client.read(&mut back[got..]).await.unwrap();
            }
            assert_eq!(&back, b"bye");
            // A datagram socket is not a stream.
            let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            assert!(matches!(
                TcpStream::from_socket(&lp, udp),
                Err(Error::InvalidArgument(_))
            ));
        })
        .unwrap();
        // Off a running loop, registering is refused.
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(matches!(
            TcpListener::from_socket(&lp, std_listener),
            Err(Error::WrongThread)
        ));
    });
}

#[test]
fn a_writer_answers_asyncios_getters() {
    within(LIMIT, || {
        let port = peer(|mut c| {
            let mut all = Vec::new();
            let _ = c.read_to_end(&mut all);
            c.write_all(&all).unwrap();
        });
        let lp = EventLoop::new().unwrap();
        let lp2 = lp.clone();
        lp.run_until_complete(async move {
            let lp = lp2;
            let (mut reader, writer) = lp
                .open_connection_with(
                    Some("127.0.0.1"),
                    port,
                    evloop::ConnectOptions::default(),
                    1000,
                )
                .await
                .unwrap();
            assert_eq!(reader.limit(), 1000);
            assert!(writer.can_write_eof());
            assert_eq!(writer.get_loop().unwrap(), lp);
            match writer.get_extra_info("peername") {
                Some(evloop::ExtraInfo::Address(a)) => {
                    assert_eq!(a.as_socket().unwrap().port(), port)
                }
                other => panic!("{other:?}"),
            }
            assert!(writer.get_extra_info("nonsense").is_none());
            writer.writelines([&b"a"[..], b"bc", b"d"]).unwrap();
            writer.write_eof().unwrap();
            assert_eq!(reader.read_until_eof().await.unwrap(), b"abcd");
            assert!(format!("{reader:?}").contains("StreamReader"));
            assert!(format!("{writer:?}").contains("StreamWriter"));
        })
        .unwrap();
    });
}

// ----- one TcpStream, one TcpListener, several tasks -------------------------------------

/// Two tasks read one shared stream (`readable` + `try_read`): each byte
/// goes to one of them and neither is left waiting with data in the
/// socket. (With one waker per direction, the second reader evicted the
/// first, which then hung with "y" unread.)
#[test]
fn two_tasks_reading_one_shared_stream_both_get_their_bytes() {
    within(Duration::from_secs(30), || {
        let lp = EventLoop::new().unwrap();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = std_listener.local_addr().unwrap().port();
        let l = lp.clone();
        let stream = Arc::new(
            lp.run_until_complete(async move { TcpStream::connect(&l, "127.0.0.1", port).await })
                .unwrap()
                .unwrap(),
        );
        let (mut peer, _) = std_listener.accept().unwrap();
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (stream, got) = (stream.clone(), got.clone());
                lp.create_task(async move {
                    let mut buf = [0u8; 16];
                    loop {
                        stream.readable().await.unwrap();
                        match stream.try_read(&mut buf) {
                            Ok(n) => {
                                got.lock().unwrap().extend_from_slice(&buf[..n]);
                                return;
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                })
                .unwrap()
            })
            .collect();
        // Both wait (their first polls ran), then "x", then "y".
        common::run_one_iteration(&lp);
        common::run_one_iteration(&lp);
        peer.write_all(b"x").unwrap();
        while got.lock().unwrap().is_empty() {
            common::run_one_iteration(&lp);
        }
        peer.write_all(b"y").unwrap();
        for r in readers {
            lp.run_until_complete(r).unwrap().unwrap();
        }
        let mut got = got.lock().unwrap().clone();
        got.sort();
        assert_eq!(got, b"xy");
        lp.close().unwrap();
    });
}

/// A wait dropped before readiness (a timeout) leaves nothing behind, and
/// `try_read` / `try_write` say `WouldBlock` when the stream is not
/// ready.
#[test]
fn a_dropped_readable_wait_leaves_nothing_and_try_io_would_block() {
    within(Duration::from_secs(30), || {
        let lp = EventLoop::new().unwrap();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = std_listener.local_addr().unwrap().port();
        let l = lp.clone();
        lp.run_until_complete(async move {
            let stream = TcpStream::connect(&l, "127.0.0.1", port).await.unwrap();
            let (mut peer, _) = std_listener.accept().unwrap();
            let mut buf = [0u8; 8];
            for _ in 0..100 {
                let timed_out = evloop::wait_for(stream.readable(), Duration::from_millis(1)).await;
                assert!(matches!(timed_out, Err(Error::Timeout)));
            }
            assert_eq!(
                stream.try_read(&mut buf).unwrap_err().kind(),
                std::io::ErrorKind::WouldBlock
            );
            stream.writable().await.unwrap();
            assert_eq!(stream.try_write(b"hi").unwrap(), 2);
            let mut two = [0u8; 2];
            peer.read_exact(&mut two).unwrap();
            assert_eq!(&two, b"hi");
            peer.write_all(b"ok").unwrap();
            stream.readable().await.unwrap();
            assert_eq!(stream.try_read(&mut buf).unwrap(), 2);
        })
        .unwrap();
        lp.close().unwrap();
    });
}

/// Two tasks accept on one listener: each of two connections reaches one
/// of them.
#[test]
fn two_tasks_accepting_on_one_listener_each_get_a_connection() {
    within(Duration::from_secs(30), || {
        let lp = EventLoop::new().unwrap();
        let l = lp.clone();
        let listener = Arc::new(
            lp.run_until_complete(async move {
                TcpListener::bind(&l, "127.0.0.1:0".parse().unwrap(), false)
            })
            .unwrap()
            .unwrap(),
        );
        let port = listener.local_addr().unwrap().as_socket().unwrap().port();
        let acceptors: Vec<_> = (0..2)
            .map(|_| {
                let (listener, l) = (listener.clone(), lp.clone());
                lp.create_task(async move { listener.accept(&l).await.map(|_| ()) })
                    .unwrap()
            })
            .collect();
        common::run_one_iteration(&lp);
        common::run_one_iteration(&lp);
        let _a = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _b = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        for a in acceptors {
            lp.run_until_complete(a).unwrap().unwrap().unwrap();
        }
        lp.close().unwrap();
    });
}

/// A stream protocol of one's own: feeds what arrives into a reader, as
/// asyncio's StreamReaderProtocol does, and hands its transport out.
struct Feed {
    feeder: evloop::StreamFeeder,
    transports: std::sync::mpsc::Sender<evloop::Transport>,
}

impl evloop::Protocol for Feed {
    fn connection_made(&mut self, transport: evloop::Transport) {
        self.feeder.set_transport(&transport).unwrap();
        // asyncio asserts that a transport is set once.
        assert!(matches!(
            self.feeder.set_transport(&transport),
            Err(Error::InvalidState("Transport already set"))
        ));
        self.transports.send(transport).unwrap();
    }
    fn data_received(&mut self, data: &[u8]) {
        self.feeder.feed_data(data).unwrap();
    }
    fn eof_received(&mut self) -> bool {
        self.feeder.feed_eof().unwrap();
        false
    }
    fn connection_lost(&mut self, error: Option<std::io::Error>) {
        match error {
            Some(e) => self.feeder.set_exception(e).unwrap(),
            None => self.feeder.feed_eof().unwrap(),
        }
    }
}

/// A reader of `limit` fed by a [`Feed`] over a connection to `port`;
/// the connection's transport.
fn fed_reader(lp: &EventLoop, port: u16, limit: usize) -> (StreamReader, evloop::Transport) {
    let reader = StreamReader::new(lp, limit).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let feed = Feed {
        feeder: reader.feeder(),
        transports: tx,
    };
    lp.run_until_complete(lp.create_connection(move || feed, "127.0.0.1", port))
        .unwrap()
        .unwrap();
    (reader, rx.recv_timeout(LIMIT).unwrap())
}

#[test]
fn a_protocol_of_ones_own_feeds_a_reader_with_asyncios_flow_control() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let content: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 253) as u8).collect();
        let sent = content.clone();
        let port = peer(move |mut s| {
            s.write_all(b"first line\n").unwrap();
            s.write_all(&sent).unwrap();
            // Open until the reader has all of it, then EOF.
            done_rx.recv_timeout(LIMIT).unwrap();
        });
        let (mut reader, t) = fed_reader(&lp, port, 1024);
        lp.run_until_complete(async {
            assert_eq!(reader.readline().await.unwrap(), b"first line\n");
            // More than twice the limit buffered: the transport stops
            // reading until the reader catches up.
            while t.is_reading() {
                evloop::sleep(Duration::from_millis(1)).await.unwrap();
            }
            assert!(reader.buffered() > 2 * 1024);
            let got = reader.readexactly(content.len()).await.unwrap();
            assert!(got == content, "the bytes arrived changed");
            assert!(t.is_reading(), "reading resumed as the reader drained");
            done_tx.send(()).unwrap();
            assert_eq!(reader.read_until_eof().await.unwrap(), b"");
            assert!(reader.at_eof());
        })
        .unwrap();
    });
}

#[test]
fn a_fed_reader_fails_with_the_error_its_protocol_was_lost_with() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let port = peer(move |s| {
            // Once the client is connected (a reset before would fail the
            // connect itself), SO_LINGER 0: the close resets the
            // connection.
            go_rx.recv_timeout(LIMIT).unwrap();
            let s = socket2::Socket::from(s);
            s.set_linger(Some(Duration::ZERO)).unwrap();
        });
        let (mut reader, _t) = fed_reader(&lp, port, 1024);
        go_tx.send(()).unwrap();
        let err = lp
            .run_until_complete(async { reader.read(100).await })
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&err, Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "{err:?}"
        );
        assert!(reader.exception().is_some());
    });
}
