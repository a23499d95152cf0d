//! TLS (asyncio's `ssl=` and `start_tls`) on rustls, with certificates
//! made in the test (rcgen): handshakes both ways, data both ways through
//! protocols and streams, close_notify, ALPN, what get_extra_info tells,
//! and the faults: a certificate that does not verify, a silent peer
//! (handshake timeout), a peer that sends garbage, options without ssl.

mod common;

use common::net::{Echo, Ev, Rec, lost, received, run_until};
use common::tls::{pki, pki_with_alpn, provider, tls_client_options, tls_server_options};
use common::{Log, capture_tracing, within};
use evloop::rustls::pki_types::CertificateDer;
use evloop::rustls::{self, ClientConfig, RootCertStore};
use evloop::{
    ConnectOptions, Error, EventLoop, ExtraInfo, ServerOptions, StartTlsOptions, TlsContext,
    Transport,
};
use std::io::{Read, Write};
use std::sync::{Arc, mpsc};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// A TLS server on 127.0.0.1 serving protocols from `factory`.
fn serve_tls<P, F>(lp: &EventLoop, options: ServerOptions, factory: F) -> evloop::Server
where
    P: evloop::Protocol,
    F: Fn() -> P + Send + Sync + 'static,
{
    lp.run_until_complete(lp.create_server_with(factory, &["127.0.0.1"], 0, options))
        .unwrap()
        .unwrap()
}

/// A connection to 127.0.0.1:`port` with `options`, the protocol from
/// `factory`.
fn connect_tls<P, F>(
    lp: &EventLoop,
    port: u16,
    options: ConnectOptions,
    factory: F,
) -> Result<Transport, Error>
where
    P: evloop::Protocol,
    F: FnOnce() -> P,
{
    lp.run_until_complete(lp.create_connection_with(factory, Some("127.0.0.1"), port, options))
        .unwrap()
}

fn port_of(server: &evloop::Server) -> u16 {
    server.sockets()[0].as_socket().unwrap().port()
}

#[test]
fn a_tls_echo_through_protocols_with_extra_info_and_close_notify() {
    within(LIMIT, || {
        let pki = pki();
        let lp = EventLoop::new().unwrap();
        let server = serve_tls(&lp, tls_server_options(&pki), Echo::default);
        let log = Log::new();
        let (tx, rx) = mpsc::channel();
        let rec = Rec::new(&log).sending(&tx);
        let t = connect_tls(&lp, port_of(&server), tls_client_options(&pki), move || rec).unwrap();
        // Returned once the handshake completed and connection_made ran.
        assert_eq!(log.get(), vec![Ev::Made]);
        let _made: Transport = rx.recv_timeout(LIMIT).unwrap();
        assert!(t.is_tls());
        assert!(!t.can_write_eof());
        // asyncio: NotImplementedError, a RuntimeError.
        assert!(
            matches!(t.write_eof(), Err(Error::Runtime(m)) if m == "SSL doesn't support half-closes")
        );
        match t.get_extra_info("peercert") {
            Some(ExtraInfo::Certificates(chain)) => assert_eq!(chain[0], pki.cert.as_ref()),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(t.get_extra_info("cipher"), Some(ExtraInfo::Text(s)) if s.starts_with("TLS"))
        );
        assert!(
            matches!(t.get_extra_info("tls_version"), Some(ExtraInfo::Text(s)) if s == "TLSv1.3")
        );
        assert!(t.get_extra_info("alpn_protocol").is_none());
        lp.run_until_complete(async {
            t.write(b"hello over tls").unwrap();
            t.writelines([&b" and "[..], b"more"]).unwrap();
        })
        .unwrap();
        run_until(&lp, LIMIT, || received(&log) == b"hello over tls and more");
        // close sends close_notify: the echo server sees its peer's end
        // and closes too.
        t.close();
        // After close_notify nothing more goes: dropped, as asyncio.
        lp.run_until_complete(async { t.write(b"too late").unwrap() })
            .unwrap();
        run_until(&lp, LIMIT, || lost(&log).is_some());
        assert_eq!(lost(&log), Some(None));
        lp.run_until_complete(async {
            server.close();
            server.wait_closed().await
        })
        .unwrap();
    });
}

#[test]
fn tls_streams_carry_megabytes_both_ways_with_back_pressure() {
    within(LIMIT, || {
        let pki = pki();
        let lp = EventLoop::new().unwrap();
        let server = lp
            .run_until_complete(lp.start_server_with(
                |mut reader, writer| async move {
                    // Echo in chunks, draining (back-pressure end to end).
                    loop {
                        let chunk = match reader.read(64 * 1024).await {
                            Ok(c) if !c.is_empty() => c,
                            _ => break,
                        };
                        if writer.write(&chunk).is_err() || writer.drain().await.is_err() {
                            break;
                        }
                    }
                    writer.close();
                },
                &["127.0.0.1"],
                0,
                tls_server_options(&pki),
                evloop::DEFAULT_LIMIT,
            ))
            .unwrap()
            .unwrap();
        let port = port_of(&server);
        let payload: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
        let echoed = lp
            .run_until_complete(async {
                let (mut reader, writer) = lp
                    .open_connection_with(
                        Some("127.0.0.1"),
                        port,
                        tls_client_options(&pki),
                        evloop::DEFAULT_LIMIT,
                    )
                    .await?;
                let sender = writer.clone();
                let data = payload.clone();
                let feed = lp.create_task(async move {
                    for chunk in data.chunks(100_000) {
                        sender.write(chunk)?;
                        sender.drain().await?;
                    }
                    Ok::<_, Error>(())
                })?;
                let got = reader.readexactly(payload.len()).await?;
                feed.await.unwrap()?;
                writer.close();
                Ok::<_, Error>(got)
            })
            .unwrap()
            .unwrap();
        assert!(echoed == payload, "the echo differs");
        server.close();
    });
}

#[test]
fn alpn_is_negotiated_and_reported_on_both_sides() {
    within(LIMIT, || {
        let pki = pki_with_alpn(&[b"h2", b"http/1.1"], &[b"http/1.1"]);
        let lp = EventLoop::new().unwrap();
        let (tx, rx) = mpsc::channel();
        let server_log = Log::new();
        let slog = server_log.clone();
        let server = serve_tls(&lp, tls_server_options(&pki), move || {
            Rec::new(&slog).sending(&tx)
        });
        let t = connect_tls(&lp, port_of(&server), tls_client_options(&pki), || {
            Rec::new(&Log::new())
        })
        .unwrap();
        let alpn = |t: &Transport| match t.get_extra_info("alpn_protocol") {
            Some(ExtraInfo::Bytes(p)) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(alpn(&t), b"http/1.1");
        run_until(&lp, LIMIT, || server_log.len() == 1);
        let accepted = rx.recv_timeout(LIMIT).unwrap();
        assert_eq!(alpn(&accepted), b"http/1.1");
        // The server has no client certificate to show.
        assert!(accepted.get_extra_info("peercert").is_none());
        t.close();
        server.close();
    });
}

#[test]
fn a_certificate_that_does_not_verify_is_a_typed_error_and_the_server_protocol_hears_nothing() {
    within(LIMIT, || {
        let stranger = pki(); // a different self-signed certificate
        let pki = pki();
        let lp = EventLoop::new().unwrap();
        let server_log = Log::new();
        let slog = server_log.clone();
        let server = serve_tls(&lp, tls_server_options(&pki), move || Rec::new(&slog));
        let client_log = Log::new();
        let clog = client_log.clone();
        let err = connect_tls(
            &lp,
            port_of(&server),
            tls_client_options(&stranger),
            move || Rec::new(&clog),
        )
        .unwrap_err();
        assert!(
            matches!(err, Error::Tls(rustls::Error::InvalidCertificate(_))),
            "{err:?}"
        );
        assert!(err.to_string().starts_with("[SSL] "), "{err}");
        assert_eq!(
            client_log.get(),
            vec![],
            "the client protocol heard nothing"
        );
        // The wrong name fails the same way.
        let err = lp
            .run_until_complete(lp.create_connection_with(
                || Rec::new(&Log::new()),
                Some("127.0.0.1"),
                port_of(&server),
                ConnectOptions {
                    ssl: Some(pki.client.clone()),
                    server_hostname: Some("example.com".into()),
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, Error::Tls(_)), "{err:?}");
        for _ in 0..3 {
            common::run_one_iteration(&lp);
        }
        assert_eq!(
            server_log.get(),
            vec![],
            "the server protocol heard nothing"
        );
        server.close();
    });
}

#[test]
fn a_silent_peer_times_the_handshake_out() {
    within(LIMIT, || {
        let pki = pki();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Accepts and holds the connection, saying nothing.
        let holder = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut sink = Vec::new();
            let _ = conn.read_to_end(&mut sink);
        });
        let lp = EventLoop::new().unwrap();
        let mut options = tls_client_options(&pki);
        options.ssl_handshake_timeout = Some(Duration::from_millis(200));
        let err = connect_tls(&lp, port, options, || Rec::new(&Log::new())).unwrap_err();
        let io = err.os_error().expect("an I/O error");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionAborted);
        assert_eq!(
            io.to_string(),
            "SSL handshake is taking longer than 0.2 seconds: aborting the connection"
        );
        // The connection was closed: the holder reads EOF.
        holder.join().unwrap();
    });
}

#[test]
fn a_peer_that_sends_garbage_fails_the_handshake_with_a_tls_error() {
    within(LIMIT, || {
        let pki = pki();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let peer = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\nnot tls at all");
            let mut sink = Vec::new();
            let _ = conn.read_to_end(&mut sink);
        });
        let lp = EventLoop::new().unwrap();
        let err = connect_tls(
            &lp,
            port,
            tls_client_options(&pki),
            || Rec::new(&Log::new()),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Tls(_)), "{err:?}");
        peer.join().unwrap();
    });
}

#[test]
fn a_tls_server_survives_a_plain_client_sending_garbage() {
    within(LIMIT, || {
        let pki = pki();
        let lp = EventLoop::new().unwrap();
        let server_log = Log::new();
        let slog = server_log.clone();
        let server = serve_tls(&lp, tls_server_options(&pki), move || Rec::new(&slog));
        let port = port_of(&server);
        let garbage = std::thread::spawn(move || {
            let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            // The server answers with an alert, or closes: either way EOF.
            let mut sink = Vec::new();
            let _ = conn.read_to_end(&mut sink);
        });
        let lp2 = lp.clone();
        lp.run_until_complete(async move {
            for _ in 0..1000 {
                if garbage.is_finished() {
                    break;
                }
                evloop::sleep(Duration::from_millis(1)).await.unwrap();
            }
            assert!(
                garbage.is_finished(),
                "the server did not close the connection"
            );
            garbage.join().unwrap();
            // A TLS client still gets served.
            let t = lp2
                .create_connection_with(
                    || Rec::new(&Log::new()),
                    Some("127.0.0.1"),
                    port,
                    tls_client_options(&pki),
                )
                .await
                .unwrap();
            t.close();
        })
        .unwrap();
        run_until(&lp, LIMIT, || server_log.get().contains(&Ev::Made));
        assert_eq!(
            server_log.get().first(),
            Some(&Ev::Made),
            "only the TLS client reached the protocol"
        );
        server.close();
    });
}

#[test]
fn start_tls_upgrades_a_plain_stream_on_both_sides() {
    within(LIMIT, || {
        let pki = pki();
        let lp = EventLoop::new().unwrap();
        let server_config = pki.server.clone();
        let server = lp
            .run_until_complete(lp.start_server(
                move |mut reader, writer| {
                    let config = server_config.clone();
                    async move {
                        // A plain line, then the upgrade, then TLS.
                        let line = reader.readline().await.unwrap();
                        assert_eq!(line, b"STARTTLS\n");
                        writer.write(b"GO\n").unwrap();
                        writer
                            .start_tls(TlsContext::Server(config), StartTlsOptions::default())
                            .await
                            .unwrap();
                        assert!(writer.transport().is_tls());
                        let line = reader.readline().await.unwrap();
                        writer.write(&line).unwrap();
                        writer.close();
                    }
                },
                Some("127.0.0.1"),
                0,
            ))
            .unwrap()
            .unwrap();
        let port = port_of(&server);
        let answer = lp
            .run_until_complete(async {
                let (mut reader, writer) = lp.open_connection("127.0.0.1", port).await?;
                writer.write(b"STARTTLS\n")?;
                assert_eq!(reader.readline().await?, b"GO\n");
                writer
                    .start_tls(
                        TlsContext::Client(pki.client.clone()),
                        StartTlsOptions {
                            server_hostname: Some("localhost".into()),
                            ..Default::default()
                        },
                    )
                    .await?;
                assert!(matches!(
                    writer.get_extra_info("peercert"),
                    Some(ExtraInfo::Certificates(_))
                ));
                writer.write(b"secret line\n")?;
                let answer = reader.readline().await?;
                // The server closed with close_notify: the reader sees EOF.
                assert_eq!(reader.read_until_eof().await?, b"");
                Ok::<_, Error>(answer)
            })
            .unwrap()
            .unwrap();
        assert_eq!(answer, b"secret line\n");
        // A client without a name is refused (upgrading twice: see
        // tests/tls_details.rs).
        lp.run_until_complete(async {
            let (_reader, writer) = lp.open_connection("127.0.0.1", port).await.unwrap();
            let err = lp
                .start_tls(
                    writer.transport(),
                    TlsContext::Client(pki.client.clone()),
                    StartTlsOptions::default(),
                )
                .await
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                "You must set server_hostname when using ssl without a host"
            );
            writer.close();
        })
        .unwrap();
        server.close();
    });
}

#[test]
fn tls_options_without_ssl_are_refused_with_asyncios_words() {
    // asyncio's defaults.
    assert_eq!(evloop::DEFAULT_HANDSHAKE_TIMEOUT, Duration::from_secs(60));
    assert_eq!(evloop::DEFAULT_SHUTDOWN_TIMEOUT, Duration::from_secs(30));
    // A connection's error typed: rustls's inside becomes Error::Tls, any
    // other stays Error::Io.
    let plain = Error::from_connection(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
    assert!(matches!(plain, Error::Io(ref e) if e.kind() == std::io::ErrorKind::ConnectionReset));
    let tls = Error::from_connection(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        rustls::Error::DecryptError,
    ));
    assert!(
        matches!(tls, Error::Tls(rustls::Error::DecryptError)),
        "{tls:?}"
    );
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let err = lp
            .run_until_complete(lp.create_connection_with(
                || Rec::new(&Log::new()),
                Some("127.0.0.1"),
                1,
                ConnectOptions {
                    server_hostname: Some("localhost".into()),
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "server_hostname is only meaningful with ssl"
        );
        let err = lp
            .run_until_complete(lp.create_connection_with(
                || Rec::new(&Log::new()),
                Some("127.0.0.1"),
                1,
                ConnectOptions {
                    ssl_handshake_timeout: Some(Duration::from_secs(1)),
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "ssl_handshake_timeout is only meaningful with ssl"
        );
        let err = lp
            .run_until_complete(lp.create_server_with(
                || Rec::new(&Log::new()),
                &["127.0.0.1"],
                0,
                ServerOptions {
                    ssl_shutdown_timeout: Some(Duration::from_secs(1)),
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "ssl_shutdown_timeout is only meaningful with ssl"
        );
        let pki = pki();
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let err = lp
            .run_until_complete(lp.create_connection_with(
                || Rec::new(&Log::new()),
                None,
                0,
                ConnectOptions {
                    ssl: Some(pki.client.clone()),
                    sock: Some(sock),
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "You must set server_hostname when using ssl without a host"
        );
    });
}

/// A TLS server transport left closing: its client stops reading, and it
/// writes far more than the socket buffers hold, then closes. Returns
/// the server, the client, the server's transport and its log.
fn stuck_closing(
    lp: &EventLoop,
    options: ServerOptions,
    pki: &common::tls::Pki,
) -> (evloop::Server, Transport, Transport, Log<Ev>) {
    let server_log = Log::new();
    let slog = server_log.clone();
    let (tx, rx) = mpsc::channel();
    let server = serve_tls(lp, options, move || Rec::new(&slog).sending(&tx));
    let client = connect_tls(lp, port_of(&server), tls_client_options(pki), || {
        Rec::new(&Log::new())
    })
    .unwrap();
    client.pause_reading();
    run_until(lp, LIMIT, || server_log.len() == 1);
    let accepted = rx.recv_timeout(LIMIT).unwrap();
    lp.run_until_complete(async {
        accepted.write(&vec![9u8; 16 * 1024 * 1024]).unwrap();
        accepted.close();
    })
    .unwrap();
    assert!(accepted.is_closing() && accepted.get_write_buffer_size() > 0);
    (server, client, accepted, server_log)
}

#[test]
fn a_closing_tls_connection_whose_peer_stops_reading_is_aborted_after_the_shutdown_timeout() {
    within(LIMIT, || {
        let pki = pki();
        let lp = EventLoop::new().unwrap();
        let mut options = tls_server_options(&pki);
        options.ssl_shutdown_timeout = Some(Duration::from_millis(200));
        let (server, client, accepted, server_log) = stuck_closing(&lp, options, &pki);
        // Without the timeout this would wait for the client forever.
        run_until(&lp, LIMIT, || lost(&server_log).is_some());
        assert_eq!(lost(&server_log), Some(Some(std::io::ErrorKind::TimedOut)));
        assert_eq!(accepted.get_write_buffer_size(), 0);
        client.abort();
        server.close();
    });
}

#[test]
fn a_tls_server_times_out_a_client_that_never_says_hello() {
    within(LIMIT, || {
        let pki = pki();
        let lp = EventLoop::new().unwrap();
        let server_log = Log::new();
        let slog = server_log.clone();
        let mut options = tls_server_options(&pki);
        options.ssl_handshake_timeout = Some(Duration::from_millis(200));
        let server = serve_tls(&lp, options, move || Rec::new(&slog));
        let port = port_of(&server);
        let silent = std::thread::spawn(move || {
            let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let mut sink = Vec::new();
            // Ends when the server gives up on the handshake.
            let _ = conn.read_to_end(&mut sink);
        });
        lp.run_until_complete(async {
            for _ in 0..10_000 {
                if silent.is_finished() {
                    break;
                }
                evloop::sleep(Duration::from_millis(1)).await.unwrap();
            }
        })
        .unwrap();
        assert!(silent.is_finished(), "the server kept the silent client");
        silent.join().unwrap();
        assert_eq!(server_log.get(), vec![], "the protocol heard nothing");
        server.close();
    });
}

#[test]
fn a_peer_sending_data_and_close_notify_together_then_waiting_gets_our_end() {
    within(LIMIT, || {
        let pki = pki();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let config = pki.server.clone();
        // A blocking rustls server that, as asyncio's and OpenSSL's do,
        // sends its last data and close_notify in one go and then waits,
        // TCP still open, for the client's close_notify.
        let peer = std::thread::spawn(move || {
            let (sock, _) = listener.accept().unwrap();
            sock.set_read_timeout(Some(LIMIT)).unwrap();
            let conn = rustls::ServerConnection::new(config).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, sock);
            let mut line = [0u8; 5];
            tls.read_exact(&mut line).unwrap();
            assert_eq!(&line, b"ping\n");
            tls.conn.writer().write_all(b"bye\n").unwrap();
            tls.conn.send_close_notify();
            tls.flush().unwrap();
            // Our close_notify ends this read with Ok(0).
            let mut rest = Vec::new();
            tls.read_to_end(&mut rest).unwrap();
            rest
        });
        let lp = EventLoop::new().unwrap();
        let log = Log::new();
        let rec = Rec::new(&log);
        let t = connect_tls(&lp, port, tls_client_options(&pki), move || rec).unwrap();
        lp.run_until_complete(async { t.write(b"ping\n").unwrap() })
            .unwrap();
        run_until(&lp, LIMIT, || lost(&log).is_some());
        assert_eq!(received(&log), b"bye\n");
        let events = log.get();
        assert_eq!(&events[events.len() - 2..], &[Ev::Eof, Ev::Lost(None)]);
        assert_eq!(peer.join().unwrap(), b"");
    });
}

#[test]
fn sendfile_over_tls_goes_through_the_session() {
    within(LIMIT, || {
        let pki = pki();
        let lp = EventLoop::new().unwrap();
        let server_log = Log::new();
        let slog = server_log.clone();
        let server = serve_tls(&lp, tls_server_options(&pki), move || Rec::new(&slog));
        let t = connect_tls(&lp, port_of(&server), tls_client_options(&pki), || {
            Rec::new(&Log::new())
        })
        .unwrap();
        let content: Vec<u8> = (0..600_000).map(|i| (i % 241) as u8).collect();
        let file = common::file_with("tls-sendfile", &content);
        let err = lp
            .run_until_complete(lp.sendfile(&t, &file, 0, None, false))
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&err, Error::Runtime(m) if m.starts_with("fallback is disabled and native sendfile is not supported for transport")),
            "{err:?}"
        );
        let sent = lp
            .run_until_complete(lp.sendfile(&t, &file, 100, None, true))
            .unwrap()
            .unwrap();
        assert_eq!(sent, content.len() as u64 - 100);
        // The file's offset ends past what was sent, as asyncio.
        use std::io::Seek;
        assert_eq!((&file).stream_position().unwrap(), content.len() as u64);
        run_until(&lp, LIMIT, || {
            received(&server_log).len() == content.len() - 100
        });
        assert!(
            received(&server_log) == content[100..],
            "the file arrived changed"
        );
        t.close();
        server.close();
    });
}

/// A certificate verifier that panics (a user's callback gone wrong).
#[derive(Debug)]
struct PanickingVerifier(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for PanickingVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        panic!("the verifier panicked");
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[test]
fn a_panicking_certificate_verifier_fails_the_connection_not_the_loop() {
    within(LIMIT, || {
        let pki = pki();
        let lp = EventLoop::new().unwrap();
        let reports = Log::new();
        let r = reports.clone();
        lp.set_exception_handler(Some(Arc::new(move |_, ctx| {
            r.push((
                ctx.message.clone(),
                ctx.error.as_ref().map(|e| e.to_string()),
                ctx.transport
                    .as_ref()
                    .and_then(|t| t.downcast::<evloop::Transport>())
                    .is_some(),
            ));
        })));
        let server = serve_tls(&lp, tls_server_options(&pki), Echo::default);
        let mut roots = RootCertStore::empty();
        roots.add(pki.cert.clone()).unwrap();
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .unwrap();
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PanickingVerifier(webpki)))
            .with_no_client_auth();
        let err = lp
            .run_until_complete(lp.create_connection_with(
                || Rec::new(&Log::new()),
                Some("127.0.0.1"),
                port_of(&server),
                ConnectOptions {
                    ssl: Some(Arc::new(client)),
                    server_hostname: Some("localhost".into()),
                    ..Default::default()
                },
            ))
            .unwrap()
            .unwrap_err();
        assert_eq!(err.to_string(), "a TLS callback panicked", "{err:?}");
        // Not an OSError: asyncio's _fatal_error reports it.
        let reports = reports.get();
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(reports[0].0, "SSL handshake failed");
        assert_eq!(reports[0].1.as_deref(), Some("a TLS callback panicked"));
        assert!(reports[0].2, "the report names the transport");
        // The loop goes on: a good client still connects.
        let t = connect_tls(&lp, port_of(&server), tls_client_options(&pki), || {
            Rec::new(&Log::new())
        })
        .unwrap();
        t.close();
        server.close();
    });
}

#[test]
fn writes_after_a_tls_close_are_warned_as_asyncios_ssl_transport_counts_them() {
    within(LIMIT, || {
        let pki = pki();
        let lp = EventLoop::new().unwrap();
        // The server's close cannot finish: its transport stays closing
        // (asyncio's SHUTDOWN state).
        let (server, client, accepted, server_log) =
            stuck_closing(&lp, tls_server_options(&pki), &pki);
        let warning = "SSL connection is closed";
        let write = |n: usize| {
            capture_tracing(|| {
                lp.run_until_complete(async {
                    for _ in 0..n {
                        accepted.write(b"late").unwrap();
                    }
                })
                .unwrap()
            })
            .1
        };
        // Closing, not yet lost: asyncio's counter starts at 0.
        let five = write(5);
        assert!(!five.contains(warning), "{five}");
        let sixth = write(1);
        assert!(sixth.contains(warning), "{sixth}");
        assert!(lost(&server_log).is_none());
        client.abort();
        server.close();
    });
}
