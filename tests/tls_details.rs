//! TLS details the main TLS tests leave open: flow control end to end
//! (a peer that stops reading pauses the writing protocol, and its
//! reading again resumes it, with the write buffer bounded), the
//! `close_notify` an explicit `close()` sends (seen by a rustls peer as a
//! clean end, which an `abort()` is not), and a second `start_tls` on a
//! transport that is already TLS, refused with a typed error.
//!
//! The peer is plain rustls over a blocking `std` socket on a thread of
//! its own, driven by channels: it tells `close_notify` (`read` returns
//! `Ok(0)`) from a bare end of the TCP stream (`UnexpectedEof`).

mod common;

use common::net::{Ev, run_until};
use common::tls::{Pki, localhost, pki, tls_client_options};
use common::{Log, within};
use evloop::rustls::{self, ServerConfig};
use evloop::{Error, EventLoop, Protocol, ServerOptions, StartTlsOptions, TlsContext, Transport};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);

// ----- the rustls peer -------------------------------------------------------------------

/// How the peer's read loop ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// `read` returned `Ok(0)`: the TLS session was closed with
    /// `close_notify` (and rustls confirms `peer_has_closed`).
    CloseNotify,
    /// The TCP stream ended without `close_notify` (rustls's
    /// `UnexpectedEof`).
    BareEof,
    /// Anything else.
    Failed(io::ErrorKind, String),
}

/// What the peer read after its greeting, and how the stream ended.
struct Heard {
    data: Vec<u8>,
    end: End,
}

/// A blocking rustls server on a thread: accepts one connection on a new
/// 127.0.0.1 listener, completes the handshake, reads "ping\n" and answers
/// "pong\n" (after which the client has read everything the peer sent,
/// session tickets included, so closing it never resets the connection).
/// Then, once `go` fires (at once if `None`), reads until the stream ends.
/// After a `close_notify` it answers with its own.
fn tls_peer(
    config: Arc<ServerConfig>,
    go: Option<mpsc::Receiver<()>>,
) -> (u16, std::thread::JoinHandle<Heard>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let peer = std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        // A peer left waiting fails instead of hanging.
        sock.set_read_timeout(Some(LIMIT)).unwrap();
        let conn = rustls::ServerConnection::new(config).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, sock);
        let mut ping = [0u8; 5];
        tls.read_exact(&mut ping).unwrap();
        assert_eq!(&ping, b"ping\n");
        tls.write_all(b"pong\n").unwrap();
        tls.flush().unwrap();
        if let Some(go) = go {
            go.recv_timeout(LIMIT).expect("the test never said go");
        }
        let mut data = Vec::new();
        let mut buf = vec![0u8; 256 * 1024];
        let end = loop {
            match tls.read(&mut buf) {
                Ok(0) => {
                    let state = tls.conn.process_new_packets().unwrap();
                    assert!(state.peer_has_closed(), "Ok(0) without close_notify");
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                    break End::CloseNotify;
                }
                Ok(n) => data.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break End::BareEof,
                Err(e) => break End::Failed(e.kind(), e.to_string()),
            }
        };
        Heard { data, end }
    });
    (port, peer)
}

// ----- the client side -------------------------------------------------------------------

/// Records every callback, and the write buffer's size at each
/// `pause_writing` / `resume_writing`; `paused` mirrors the last of them.
struct Writer {
    log: Log<Ev>,
    marks: Log<(Ev, usize)>,
    paused: Arc<AtomicBool>,
    transport: Option<Transport>,
}

impl Writer {
    fn new(log: &Log<Ev>, marks: &Log<(Ev, usize)>, paused: &Arc<AtomicBool>) -> Writer {
        Writer {
            log: log.clone(),
            marks: marks.clone(),
            paused: paused.clone(),
            transport: None,
        }
    }
    fn size(&self) -> usize {
        self.transport
            .as_ref()
            .map_or(usize::MAX, Transport::get_write_buffer_size)
    }
}

impl Protocol for Writer {
    fn connection_made(&mut self, transport: Transport) {
        self.log.push(Ev::Made);
        self.transport = Some(transport);
    }
    fn data_received(&mut self, data: &[u8]) {
        self.log.push(Ev::Data(data.to_vec()));
    }
    fn eof_received(&mut self) -> bool {
        self.log.push(Ev::Eof);
        false
    }
    fn connection_lost(&mut self, error: Option<io::Error>) {
        self.log.push(Ev::Lost(error.map(|e| e.kind())));
    }
    fn pause_writing(&mut self) {
        self.paused.store(true, Ordering::SeqCst);
        self.log.push(Ev::Pause);
        self.marks.push((Ev::Pause, self.size()));
    }
    fn resume_writing(&mut self) {
        self.paused.store(false, Ordering::SeqCst);
        self.log.push(Ev::Resume);
        self.marks.push((Ev::Resume, self.size()));
    }
}

fn received(log: &Log<Ev>) -> Vec<u8> {
    common::net::received(log)
}

fn lost(log: &Log<Ev>) -> Option<Option<io::ErrorKind>> {
    common::net::lost(log)
}

/// The payload's bytes from `offset` on: every byte tells its position.
fn payload(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len).map(|i| (i % 251) as u8).collect()
}

/// A TLS client on 127.0.0.1:`port` with a [`Writer`] protocol, after
/// the ping/pong with [`tls_peer`].
fn connect_writer(
    lp: &EventLoop,
    pki: &Pki,
    port: u16,
    log: &Log<Ev>,
    marks: &Log<(Ev, usize)>,
    paused: &Arc<AtomicBool>,
) -> Transport {
    let writer = Writer::new(log, marks, paused);
    let t = lp
        .run_until_complete(lp.create_connection_with(
            move || writer,
            Some("127.0.0.1"),
            port,
            tls_client_options(pki),
        ))
        .unwrap()
        .unwrap();
    assert!(t.is_tls());
    lp.run_until_complete(async { t.write(b"ping\n").unwrap() })
        .unwrap();
    run_until(lp, LIMIT, || received(log) == b"pong\n");
    t
}

// ----- 1. flow control end to end ---------------------------------------------------------

const HIGH: usize = 64 * 1024;
const LOW: usize = 16 * 1024;
/// One TLS record's worth of plaintext per write.
const CHUNK: usize = 16 * 1024;
/// What one chunk may grow to as ciphertext (record header, tag, type).
const CHUNK_CIPHER: usize = CHUNK + 64;

#[test]
fn a_peer_that_stops_reading_pauses_the_writer_and_reading_again_resumes_it() {
    within(LIMIT, || {
        let pki = pki();
        let (go_tx, go_rx) = mpsc::channel();
        let (port, peer) = tls_peer(pki.server.clone(), Some(go_rx));
        let lp = EventLoop::new().unwrap();
        let (log, marks) = (Log::new(), Log::new());
        let paused = Arc::new(AtomicBool::new(false));
        let t = connect_writer(&lp, &pki, port, &log, &marks, &paused);
        t.set_write_buffer_limits(Some(HIGH), Some(LOW)).unwrap();
        assert_eq!(t.get_write_buffer_limits(), (LOW, HIGH));

        // Writes one chunk at a time while the protocol is not paused,
        // as a protocol honouring pause_writing does, until `until` bytes
        // went or (with `stop_at_pause`) the first pause. Returns the
        // bytes written and the largest write buffer seen.
        let pump = |from: usize, until: usize, stop_at_pause: bool| {
            let (t, paused) = (t.clone(), paused.clone());
            lp.run_until_complete(async move {
                let deadline = Instant::now() + LIMIT;
                let (mut written, mut largest) = (from, 0);
                while written < until {
                    if paused.load(Ordering::SeqCst) {
                        if stop_at_pause {
                            break;
                        }
                        assert!(Instant::now() < deadline, "never resumed");
                        evloop::sleep(Duration::from_millis(1)).await.unwrap();
                        continue;
                    }
                    t.write(&payload(written, CHUNK)).unwrap();
                    written += CHUNK;
                    largest = largest.max(t.get_write_buffer_size());
                    // Let the loop send what the socket takes.
                    evloop::sleep(Duration::ZERO).await.unwrap();
                }
                (written, largest)
            })
            .unwrap()
        };

        // The peer reads nothing: the socket fills, the ciphertext piles
        // up in the transport's buffer, and past the high mark the
        // protocol is paused. (Loopback socket buffers hold a few MiB.)
        let (sent, largest) = pump(0, 64 * 1024 * 1024, true);
        assert!(
            paused.load(Ordering::SeqCst),
            "no pause_writing after {sent} bytes"
        );
        let at_pause = marks.get();
        assert_eq!(at_pause.len(), 1, "{at_pause:?}");
        assert_eq!(at_pause[0].0, Ev::Pause);
        assert!(at_pause[0].1 > HIGH, "paused at {} bytes", at_pause[0].1);
        // Bounded: the protocol stopped at the pause, so the buffer holds
        // at most the high mark plus the last chunk's ciphertext.
        assert!(
            largest <= HIGH + CHUNK_CIPHER,
            "the buffer grew to {largest}"
        );

        // Still not reading: the loop runs on, nothing drains, no resume.
        lp.run_until_complete(evloop::sleep(Duration::from_millis(20)))
            .unwrap()
            .unwrap();
        assert_eq!(marks.len(), 1, "{:?}", marks.get());
        assert!(t.get_write_buffer_size() > LOW);

        // The peer reads: the buffer drains below the low mark and the
        // protocol is resumed.
        go_tx.send(()).unwrap();
        run_until(&lp, LIMIT, || !paused.load(Ordering::SeqCst));
        let marks_now = marks.get();
        assert_eq!(marks_now[1].0, Ev::Resume, "{marks_now:?}");
        assert!(marks_now[1].1 <= LOW, "resumed at {} bytes", marks_now[1].1);

        // Another 2 MiB, honouring pauses: still bounded.
        let total = sent + 2 * 1024 * 1024;
        let (written, largest) = pump(sent, total, false);
        assert_eq!(written, total);
        assert!(
            largest <= HIGH + CHUNK_CIPHER,
            "the buffer grew to {largest}"
        );
        // Pauses and resumes alternate, each at its mark.
        for (i, (ev, size)) in marks.get().into_iter().enumerate() {
            if i % 2 == 0 {
                assert_eq!(ev, Ev::Pause);
                assert!(size > HIGH, "pause {i} at {size}");
            } else {
                assert_eq!(ev, Ev::Resume);
                assert!(size <= LOW, "resume {i} at {size}");
            }
        }

        t.close();
        run_until(&lp, LIMIT, || lost(&log).is_some());
        assert_eq!(lost(&log), Some(None));
        let heard = peer.join().unwrap();
        assert_eq!(heard.end, End::CloseNotify);
        assert_eq!(heard.data.len(), total);
        assert!(heard.data == payload(0, total), "the peer read other bytes");
    });
}

// ----- 2. close() sends close_notify ---------------------------------------------------------

#[test]
fn close_sends_close_notify_which_the_peer_sees_as_a_clean_end() {
    within(LIMIT, || {
        let pki = pki();
        let (port, peer) = tls_peer(pki.server.clone(), None);
        let lp = EventLoop::new().unwrap();
        let (log, marks) = (Log::new(), Log::new());
        let paused = Arc::new(AtomicBool::new(false));
        let t = connect_writer(&lp, &pki, port, &log, &marks, &paused);
        lp.run_until_complete(async {
            t.write(b"last words").unwrap();
            // On the loop's thread close() takes effect at once.
            t.close();
            assert!(t.is_closing());
        })
        .unwrap();
        run_until(&lp, LIMIT, || lost(&log).is_some());
        assert_eq!(lost(&log), Some(None));
        let heard = peer.join().unwrap();
        assert_eq!(heard.data, b"last words");
        // rustls: Ok(0) with peer_has_closed, not UnexpectedEof (a FIN
        // alone).
        assert_eq!(heard.end, End::CloseNotify);
    });
}

#[test]
fn close_with_a_backlog_sends_close_notify_after_all_of_it() {
    within(LIMIT, || {
        let pki = pki();
        let (go_tx, go_rx) = mpsc::channel();
        let (port, peer) = tls_peer(pki.server.clone(), Some(go_rx));
        let lp = EventLoop::new().unwrap();
        let (log, marks) = (Log::new(), Log::new());
        let paused = Arc::new(AtomicBool::new(false));
        let t = connect_writer(&lp, &pki, port, &log, &marks, &paused);
        // More than the socket buffers hold while the peer is not reading.
        let total = 16 * 1024 * 1024;
        lp.run_until_complete(async {
            t.write(&payload(0, total)).unwrap();
            assert!(t.get_write_buffer_size() > 0, "nothing was left buffered");
            t.close();
            assert!(t.is_closing());
            // Writes after close are dropped (asyncio), not sent after
            // the close_notify.
            t.write(b"too late").unwrap();
        })
        .unwrap();
        assert_eq!(lost(&log), None, "lost before the backlog was sent");
        go_tx.send(()).unwrap();
        run_until(&lp, LIMIT, || lost(&log).is_some());
        assert_eq!(lost(&log), Some(None));
        assert_eq!(t.get_write_buffer_size(), 0);
        let heard = peer.join().unwrap();
        assert_eq!(heard.end, End::CloseNotify);
        assert_eq!(heard.data.len(), total);
        assert!(heard.data == payload(0, total), "the peer read other bytes");
    });
}

#[test]
fn abort_sends_no_close_notify() {
    // The other side of the peer's check: without close_notify the same
    // peer sees a bare end of the stream (asyncio's abort() sends none
    // either).
    within(LIMIT, || {
        let pki = pki();
        let (port, peer) = tls_peer(pki.server.clone(), None);
        let lp = EventLoop::new().unwrap();
        let (log, marks) = (Log::new(), Log::new());
        let paused = Arc::new(AtomicBool::new(false));
        let t = connect_writer(&lp, &pki, port, &log, &marks, &paused);
        t.abort();
        run_until(&lp, LIMIT, || lost(&log).is_some());
        assert_eq!(lost(&log), Some(None));
        let heard = peer.join().unwrap();
        assert_eq!(heard.data, b"");
        assert_eq!(heard.end, End::BareEof);
    });
}

// ----- 3. start_tls on a transport that is TLS already ---------------------------------------

fn is_already_tls(result: &Result<(), Error>) -> bool {
    matches!(result, Err(Error::InvalidState(what)) if *what == "the transport is already TLS")
}

#[test]
fn start_tls_on_a_tls_connection_is_refused_and_the_session_goes_on() {
    within(LIMIT, || {
        let pki = pki();
        let lp = EventLoop::new().unwrap();
        let server_config = pki.server.clone();
        let (refused_tx, refused_rx) = mpsc::channel();
        let server = lp
            .run_until_complete(lp.start_server_with(
                move |mut reader, writer| {
                    let config = server_config.clone();
                    let refused = refused_tx.clone();
                    async move {
                        // The accepted side: already TLS (ssl=).
                        let again = writer
                            .start_tls(TlsContext::Server(config), StartTlsOptions::default())
                            .await;
                        refused.send(is_already_tls(&again)).unwrap();
                        // Then an echo of lines over the same session.
                        while let Ok(line) = reader.readline().await {
                            if line.is_empty() || writer.write(&line).is_err() {
                                break;
                            }
                        }
                        writer.close();
                    }
                },
                &["127.0.0.1"],
                0,
                ServerOptions {
                    ssl: Some(pki.server.clone()),
                    ..Default::default()
                },
                evloop::DEFAULT_LIMIT,
            ))
            .unwrap()
            .unwrap();
        let port = server.sockets()[0].as_socket().unwrap().port();
        lp.run_until_complete(async {
            let (mut reader, writer) = lp
                .open_connection_with(
                    Some("127.0.0.1"),
                    port,
                    tls_client_options(&pki),
                    evloop::DEFAULT_LIMIT,
                )
                .await?;
            assert!(writer.transport().is_tls());
            // Both ways in: the loop method and the stream writer's.
            let again = lp
                .start_tls(
                    writer.transport(),
                    TlsContext::Client(pki.client.clone()),
                    localhost(),
                )
                .await
                .map(drop);
            assert!(is_already_tls(&again), "{again:?}");
            let again = writer
                .start_tls(TlsContext::Client(pki.client.clone()), localhost())
                .await;
            assert!(is_already_tls(&again), "{again:?}");
            // The refusals left the session alone: data still goes both
            // ways through it.
            assert!(!writer.is_closing());
            writer.write(b"still here\n")?;
            assert_eq!(reader.readline().await?, b"still here\n");
            writer.close();
            assert_eq!(reader.read_until_eof().await?, b"");
            Ok::<_, Error>(())
        })
        .unwrap()
        .unwrap();
        assert!(
            refused_rx.recv_timeout(LIMIT).unwrap(),
            "the server side's second start_tls was not refused as already TLS"
        );
        server.close();
    });
}

#[test]
fn a_second_start_tls_after_an_upgrade_is_refused() {
    within(LIMIT, || {
        let pki = pki();
        let lp = EventLoop::new().unwrap();
        let server_config = pki.server.clone();
        let server = lp
            .run_until_complete(lp.start_server(
                move |mut reader, writer| {
                    let config = server_config.clone();
                    async move {
                        let line = reader.readline().await.unwrap();
                        assert_eq!(line, b"STARTTLS\n");
                        writer.write(b"GO\n").unwrap();
                        writer
                            .start_tls(TlsContext::Server(config), StartTlsOptions::default())
                            .await
                            .unwrap();
                        while let Ok(line) = reader.readline().await {
                            if line.is_empty() || writer.write(&line).is_err() {
                                break;
                            }
                        }
                        writer.close();
                    }
                },
                Some("127.0.0.1"),
                0,
            ))
            .unwrap()
            .unwrap();
        let port = server.sockets()[0].as_socket().unwrap().port();
        lp.run_until_complete(async {
            let (mut reader, writer) = lp.open_connection("127.0.0.1", port).await?;
            assert!(!writer.transport().is_tls());
            writer.write(b"STARTTLS\n")?;
            assert_eq!(reader.readline().await?, b"GO\n");
            let upgraded = lp
                .start_tls(
                    writer.transport(),
                    TlsContext::Client(pki.client.clone()),
                    localhost(),
                )
                .await?;
            assert!(upgraded.is_tls());
            let again = lp
                .start_tls(
                    &upgraded,
                    TlsContext::Client(pki.client.clone()),
                    localhost(),
                )
                .await
                .map(drop);
            assert!(is_already_tls(&again), "{again:?}");
            assert!(!writer.is_closing());
            writer.write(b"secret line\n")?;
            assert_eq!(reader.readline().await?, b"secret line\n");
            writer.close();
            Ok::<_, Error>(())
        })
        .unwrap()
        .unwrap();
        server.close();
    });
}
