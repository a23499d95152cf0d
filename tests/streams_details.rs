//! Details of asyncio's Streams that tests/streams.rs leaves open: the
//! fast path (buffered bytes answer on the first poll), `drain`'s two
//! marks, `readexactly` beyond the limit, what a reset does to bytes
//! already received, the 64 KiB default limit, and the error of a stream
//! whose loop closed. Each expectation was checked against CPython 3.11's
//! asyncio first (the scripts' results are quoted where they matter).

mod common;

use common::net::peer;
use common::{run_one_iteration, within};
use evloop::{ConnectOptions, DEFAULT_LIMIT, Error, EventLoop, StreamReader, StreamWriter};
use futures::FutureExt;
use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);
/// How long a test waits for one condition before it fails.
const WAIT: Duration = Duration::from_secs(10);

/// Closes `c` with a reset (RST) instead of a FIN: linger 0.
fn reset(c: std::net::TcpStream) {
    socket2::SockRef::from(&c)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(c);
}

/// Lets the loop run (from a task of it) until `done` holds; fails the
/// test after [`WAIT`].
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        evloop::sleep(Duration::from_millis(1)).await.unwrap();
    }
}

/// `n` bytes of a pattern that shows a lost or reordered byte.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn io_kind(e: &Error) -> Option<ErrorKind> {
    e.os_error().map(|e| e.kind())
}

// ----- the fast path ------------------------------------------------------------------

#[test]
fn a_read_whose_bytes_are_buffered_answers_on_its_first_poll_without_the_loop() {
    within(LIMIT, || {
        let payload = b"first line\nsecond;rest\nABCDEFGH";
        let (bye_tx, bye_rx) = mpsc::channel::<()>();
        // The peer keeps the connection open: no EOF ever answers a read.
        let port = peer(move |mut c| {
            c.write_all(payload).unwrap();
            let _ = bye_rx.recv_timeout(LIMIT);
        });
        let lp = EventLoop::new().unwrap();
        let (reader, _writer) = lp
            .run_until_complete(async {
                let (reader, writer) = lp.open_connection("127.0.0.1", port).await.unwrap();
                until("the payload is buffered", || {
                    reader.buffered() == payload.len()
                })
                .await;
                (reader, writer)
            })
            .unwrap();
        // From a plain callback, which cannot wait: each read is polled
        // once, with a waker that does nothing.
        let (tx, rx) = mpsc::channel();
        lp.call_soon(move || {
            let mut r = reader;
            let polled = vec![
                r.readline().now_or_never(),
                r.readuntil(b";").now_or_never(),
                r.readexactly(5).now_or_never(),
                // Not all buffered: this one needs the loop, and leaves
                // the buffer as it was.
                r.readexactly(100).now_or_never(),
                r.read(100).now_or_never(),
                // Nothing left and no EOF: needs the loop too.
                r.read(100).now_or_never(),
            ];
            tx.send((polled, r)).unwrap();
        })
        .unwrap();
        run_one_iteration(&lp);
        let (polled, mut reader) = rx.recv_timeout(WAIT).expect("the callback ran");
        let polled: Vec<Option<Vec<u8>>> =
            polled.into_iter().map(|p| p.map(|r| r.unwrap())).collect();
        let ready = |b: &[u8]| Some(b.to_vec());
        assert_eq!(
            polled,
            [
                ready(b"first line\n"),
                ready(b"second;"),
                ready(b"rest\n"),
                None,
                ready(b"ABCDEFGH"),
                None,
            ]
        );

        // In a task: a read of buffered bytes does not yield to the loop,
        // so no iteration ends while it runs.
        lp.run_until_complete(async {
            reader.feed_data(b"fed line\nmore").unwrap();
            let before = lp.stats().iterations;
            let line = reader.readline().await.unwrap();
            let more = reader.readexactly(4).await.unwrap();
            assert_eq!(lp.stats().iterations, before);
            assert_eq!(line, b"fed line\n");
            assert_eq!(more, b"more");
            // The converse, so that the check can fail: a read that must
            // wait lets iterations run.
            let waiting = evloop::wait_for(reader.read(1), Duration::from_millis(20)).await;
            assert!(matches!(waiting, Err(Error::Timeout)), "{waiting:?}");
            assert!(lp.stats().iterations > before);
        })
        .unwrap();
        bye_tx.send(()).unwrap();
    });
}

// ----- drain and the write buffer's marks ---------------------------------------------

/// What the drain test's peer is told.
enum Cmd {
    /// Read exactly this many bytes, then acknowledge.
    Read(usize),
    /// Read until EOF and return everything read.
    ReadToEnd,
}

#[test]
fn drain_returns_below_high_waits_above_and_wakes_only_at_or_under_low() {
    const HIGH: usize = 64 * 1024;
    const LOW: usize = 16 * 1024;
    const CHUNK: usize = 1000;
    const STEP: usize = 2048;
    within(LIMIT, || {
        // Small, fixed kernel buffers on both sides (a buffer size set by
        // hand turns Linux's autotuning off), so that each of the peer's
        // reads lets only a few KiB out of the transport's buffer and the
        // span between the marks is seen on the way down.
        let listener =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        listener.set_recv_buffer_size(4096).unwrap();
        listener
            .bind(
                &"127.0.0.1:0"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            )
            .unwrap();
        listener.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        let client =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        client.set_send_buffer_size(4096).unwrap();
        client.connect(&addr).unwrap();
        let (cmd_tx, cmd_rx) = mpsc::channel::<Cmd>();
        let (ack_tx, mut ack_rx) = futures::channel::mpsc::unbounded::<usize>();
        let peer = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut conn: std::net::TcpStream = conn.into();
            let mut all = Vec::new();
            while let Ok(cmd) = cmd_rx.recv() {
                match cmd {
                    Cmd::Read(n) => {
                        let mut buf = vec![0u8; n];
                        conn.read_exact(&mut buf).unwrap();
                        all.extend_from_slice(&buf);
                        ack_tx.unbounded_send(all.len()).unwrap();
                    }
                    Cmd::ReadToEnd => {
                        conn.read_to_end(&mut all).unwrap();
                        break;
                    }
                }
            }
            all
        });

        let lp = EventLoop::new().unwrap();
        let sent = lp
            .run_until_complete(async {
                let options = ConnectOptions {
                    sock: Some(client),
                    ..Default::default()
                };
                let (_reader, writer) = lp
                    .open_connection_with(None, 0, options, DEFAULT_LIMIT)
                    .await
                    .unwrap();
                let transport = writer.transport().clone();
                transport
                    .set_write_buffer_limits(Some(HIGH), Some(LOW))
                    .unwrap();
                assert_eq!(transport.get_write_buffer_limits(), (LOW, HIGH));
                let data = pattern(4 << 20);
                let mut written = 0usize;
                let write_chunk = |w: &StreamWriter, written: &mut usize| {
                    assert!(*written + CHUNK <= data.len(), "the kernel never filled");
                    w.write(&data[*written..*written + CHUNK]).unwrap();
                    *written += CHUNK;
                };

                // Nothing buffered: drain answers at once.
                assert!(matches!(writer.drain().now_or_never(), Some(Ok(()))));
                // Fill the kernel's buffers (the peer reads nothing) until
                // the transport starts buffering.
                while transport.get_write_buffer_size() == 0 {
                    write_chunk(&writer, &mut written);
                    evloop::sleep(Duration::ZERO).await.unwrap();
                }
                // Bytes are buffered but fewer than the high mark: drain
                // still answers at once, at every size up to the mark.
                // (No yield in this loop: nothing is flushed meanwhile.)
                while transport.get_write_buffer_size() <= HIGH {
                    let size = transport.get_write_buffer_size();
                    assert!(
                        matches!(writer.drain().now_or_never(), Some(Ok(()))),
                        "drain waited at {size} bytes, under the high mark"
                    );
                    write_chunk(&writer, &mut written);
                }
                // Over the high mark: drain waits.
                assert!(transport.get_write_buffer_size() > HIGH);
                assert!(writer.drain().now_or_never().is_none());

                // A task waits in drain and records the buffer's size when
                // it is let go.
                let woke = Arc::new(AtomicBool::new(false));
                let size_at_wake = Arc::new(AtomicUsize::new(usize::MAX));
                let drain_task = {
                    let (w, woke, at) = (writer.clone(), woke.clone(), size_at_wake.clone());
                    lp.create_task(async move {
                        w.drain().await.unwrap();
                        at.store(w.transport().get_write_buffer_size(), Ordering::SeqCst);
                        woke.store(true, Ordering::SeqCst);
                    })
                    .unwrap()
                };
                evloop::sleep(Duration::ZERO).await.unwrap();
                assert!(!woke.load(Ordering::SeqCst));

                // The peer reads a little at a time; the buffer comes down
                // through the span between the marks, where drain must
                // still wait.
                let mut read = 0usize;
                let mut between = 0usize;
                let deadline = Instant::now() + WAIT;
                while !woke.load(Ordering::SeqCst) {
                    assert!(Instant::now() < deadline, "drain never returned");
                    assert!(
                        read < written,
                        "the peer read everything and drain still waits"
                    );
                    let n = STEP.min(written - read);
                    cmd_tx.send(Cmd::Read(n)).unwrap();
                    read = evloop::wait_for(futures::StreamExt::next(&mut ack_rx), WAIT)
                        .await
                        .expect("the peer read")
                        .unwrap();
                    // Let the loop see the socket's writability.
                    for _ in 0..3 {
                        evloop::sleep(Duration::ZERO).await.unwrap();
                    }
                    let size = transport.get_write_buffer_size();
                    if !woke.load(Ordering::SeqCst) && size > LOW && size < HIGH {
                        between += 1;
                    }
                }
                drain_task.await.unwrap();
                let at = size_at_wake.load(Ordering::SeqCst);
                assert!(at <= LOW, "drain returned with {at} bytes buffered");
                assert!(
                    between > 0,
                    "the buffer was never seen between the marks while drain waited"
                );
                // Afterwards, under the high mark, drain answers at once.
                assert!(matches!(writer.drain().now_or_never(), Some(Ok(()))));
                cmd_tx.send(Cmd::ReadToEnd).unwrap();
                writer.close();
                writer.wait_closed().await.unwrap();
                written
            })
            .unwrap();
        let all = peer.join().unwrap();
        assert_eq!(all.len(), sent);
        assert!(all == pattern(sent), "the peer got other bytes");
    });
}

// ----- readexactly beyond the limit --------------------------------------------------

#[test]
fn readexactly_beyond_the_limit_reads_it_all_on_plain_tcp() {
    // CPython: readexactly(1_000_000) with the default limit and
    // readexactly(100_000) with limit=1024 both return every byte (the
    // limit bounds readline/readuntil, and only pauses the transport).
    within(LIMIT, || {
        for (n, limit) in [(1_000_000, DEFAULT_LIMIT), (100_000, 1024)] {
            let (bye_tx, bye_rx) = mpsc::channel::<()>();
            let port = peer(move |mut c| {
                c.write_all(&pattern(n + 3)).unwrap();
                // Open until the reader is done: its read is answered by
                // bytes, never by EOF.
                let _ = bye_rx.recv_timeout(LIMIT);
            });
            let lp = EventLoop::new().unwrap();
            lp.run_until_complete(async {
                let (mut reader, _writer) = lp
                    .open_connection_with(Some("127.0.0.1"), port, ConnectOptions::default(), limit)
                    .await
                    .unwrap();
                assert_eq!(reader.limit(), limit);
                let got = reader.readexactly(n).await.unwrap();
                assert_eq!(got.len(), n);
                assert!(got == pattern(n), "bytes lost or reordered");
                // The three after them are still there.
                let tail = reader.readexactly(3).await.unwrap();
                assert_eq!(tail, &pattern(n + 3)[n..]);
            })
            .unwrap();
            bye_tx.send(()).unwrap();
        }
    });
}

// ----- a reset after data -------------------------------------------------------------

#[test]
fn a_reader_waiting_when_data_and_a_reset_arrive_gets_the_data_then_the_reset() {
    // CPython: with the reader already waiting in readexactly(10), a peer
    // that sends 10 bytes and resets at once gives the 10 bytes (three
    // runs out of three); the next read raises ConnectionResetError.
    within(LIMIT, || {
        for _ in 0..3 {
            let (go_tx, go_rx) = mpsc::channel::<()>();
            let port = peer(move |mut c| {
                go_rx.recv().unwrap();
                c.write_all(b"0123456789").unwrap();
                reset(c);
            });
            let lp = EventLoop::new().unwrap();
            lp.run_until_complete(async {
                let (mut reader, writer) = lp.open_connection("127.0.0.1", port).await.unwrap();
                go_tx.send(()).unwrap();
                // Polled before the loop can see either.
                let got = reader.readexactly(10).await;
                assert_eq!(got.unwrap(), b"0123456789");
                let err = reader.read(10).await.unwrap_err();
                assert_eq!(io_kind(&err), Some(ErrorKind::ConnectionReset), "{err:?}");
                assert!(reader.exception().is_some());
                let err = writer.wait_closed().await.unwrap_err();
                assert_eq!(io_kind(&err), Some(ErrorKind::ConnectionReset), "{err:?}");
            })
            .unwrap();
        }
    });
}

#[test]
fn bytes_still_buffered_when_the_reset_is_processed_give_way_to_the_error_as_in_asyncio() {
    // CPython: 10 bytes received, 5 read, then the peer resets; once the
    // reader's exception is set, read(100) and readexactly(5) both raise
    // ConnectionResetError although 5 bytes are still in its buffer
    // (asyncio's reads look at the exception first). evloop matches.
    within(LIMIT, || {
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let port = peer(move |mut c| {
            c.write_all(b"0123456789").unwrap();
            go_rx.recv().unwrap();
            reset(c);
        });
        let lp = EventLoop::new().unwrap();
        lp.run_until_complete(async {
            let (mut reader, writer) = lp.open_connection("127.0.0.1", port).await.unwrap();
            assert_eq!(reader.readexactly(5).await.unwrap(), b"01234");
            until("the other 5 bytes are buffered", || reader.buffered() == 5).await;
            go_tx.send(()).unwrap();
            until("the reset is processed", || reader.exception().is_some()).await;
            assert_eq!(reader.buffered(), 5);
            for err in [
                reader.read(100).await.unwrap_err(),
                reader.readexactly(5).await.unwrap_err(),
                reader.readline().await.unwrap_err(),
                writer.drain().await.unwrap_err(),
            ] {
                assert_eq!(io_kind(&err), Some(ErrorKind::ConnectionReset), "{err:?}");
            }
            assert!(!reader.at_eof());
        })
        .unwrap();
    });
}

// ----- the default limit ----------------------------------------------------------------

#[test]
fn the_default_limit_is_64_kib_for_readline_and_readuntil() {
    // CPython (asyncio.streams._DEFAULT_LIMIT == 65536): readline of
    // 65,535 bytes + "\n" returns 65,536 bytes, of 65,536 + "\n" returns
    // 65,537; 65,537 bytes without "\n" (connection open) make readuntil
    // raise LimitOverrunError("Separator is not found, and chunk exceed
    // the limit", consumed=65537) with the buffer intact, and readline
    // raise ValueError (the same message) having dropped the buffer.
    const K: usize = 64 * 1024;
    assert_eq!(DEFAULT_LIMIT, K);
    within(LIMIT, || {
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let port = peer(move |mut c| {
            let mut first = vec![b'a'; K - 1];
            first.push(b'\n');
            first.extend(std::iter::repeat_n(b'b', K));
            first.push(b'\n');
            c.write_all(&first).unwrap();
            go_rx.recv().unwrap();
            c.write_all(&vec![b'c'; K + 1]).unwrap();
            go_rx.recv().unwrap();
            c.write_all(b"tail\n").unwrap();
            let _ = go_rx.recv();
        });
        let lp = EventLoop::new().unwrap();
        lp.run_until_complete(async {
            let served_limit = lp.create_future::<usize>();
            let s = served_limit.clone();
            let server = lp
                .start_server(
                    move |reader, writer| {
                        let s = s.clone();
                        async move {
                            let _ = s.set_result(reader.limit());
                            writer.close();
                        }
                    },
                    Some("127.0.0.1"),
                    0,
                )
                .await
                .unwrap();
            let (mut reader, _writer) = lp.open_connection("127.0.0.1", port).await.unwrap();
            assert_eq!(reader.limit(), K);
            assert_eq!(StreamReader::new(&lp, DEFAULT_LIMIT).unwrap().limit(), K);

            let line = reader.readline().await.unwrap();
            assert_eq!(line.len(), K);
            assert!(line[..K - 1].iter().all(|&b| b == b'a') && line[K - 1] == b'\n');
            // A line exactly at the limit (its separator right after it).
            let line = reader.readline().await.unwrap();
            assert_eq!(line.len(), K + 1);

            go_tx.send(()).unwrap();
            let err = reader.readuntil(b"\n").await.unwrap_err();
            assert_eq!(
                err.to_string(),
                "Separator is not found, and chunk exceed the limit"
            );
            assert!(
                matches!(err, Error::LimitOverrun { consumed, .. } if consumed == K + 1),
                "{err:?}"
            );
            assert_eq!(reader.buffered(), K + 1);
            let err = reader.readline().await.unwrap_err();
            assert!(
                matches!(err, Error::LimitOverrun { consumed, .. } if consumed == K + 1),
                "{err:?}"
            );
            assert_eq!(reader.buffered(), 0);
            // The stream goes on after the dropped line.
            go_tx.send(()).unwrap();
            assert_eq!(reader.readline().await.unwrap(), b"tail\n");

            // The server's readers get the same limit.
            let port = server.sockets()[0].as_socket().unwrap().port();
            let (mut r, _w) = lp.open_connection("127.0.0.1", port).await.unwrap();
            assert_eq!(served_limit.await.unwrap(), K);
            assert_eq!(r.read_until_eof().await.unwrap(), b"");
            server.close();
            server.wait_closed().await;
        })
        .unwrap();
        let _ = go_tx.send(());
    });
}

// ----- a stream whose loop closed -----------------------------------------------------

#[test]
fn a_stream_used_after_its_loop_closed_says_the_loop_is_closed() {
    // No loop holds the stream's state any more: every use is refused
    // with asyncio's "Event loop is closed", from any thread.
    within(LIMIT, || {
        let (bye_tx, bye_rx) = mpsc::channel::<()>();
        let port = peer(move |mut c| {
            c.write_all(b"buffered\n").unwrap();
            let _ = bye_rx.recv_timeout(LIMIT);
        });
        let lp = EventLoop::new().unwrap();
        let (mut reader, writer) = lp
            .run_until_complete(async {
                let (reader, writer) = lp.open_connection("127.0.0.1", port).await.unwrap();
                until("the line is buffered", || reader.buffered() == 9).await;
                (reader, writer)
            })
            .unwrap();
        lp.close().unwrap();
        assert!(writer.is_closing());
        use futures::executor::block_on as block;
        assert!(matches!(block(reader.read(1)), Err(Error::Closed)));
        assert!(matches!(block(reader.readline()), Err(Error::Closed)));
        assert!(matches!(block(reader.readexactly(1)), Err(Error::Closed)));
        assert!(matches!(block(reader.readuntil(b"\n")), Err(Error::Closed)));
        assert!(matches!(block(reader.read_until_eof()), Err(Error::Closed)));
        assert!(matches!(reader.feed_data(b"x"), Err(Error::Closed)));
        assert!(matches!(block(writer.drain()), Err(Error::Closed)));
        assert!(matches!(block(writer.wait_closed()), Err(Error::Closed)));
        // The same inside a task of another loop.
        let other = EventLoop::new().unwrap();
        other
            .run_until_complete(async {
                assert!(matches!(reader.readline().await, Err(Error::Closed)));
                assert!(matches!(writer.drain().await, Err(Error::Closed)));
            })
            .unwrap();
        bye_tx.send(()).unwrap();
    });
}
