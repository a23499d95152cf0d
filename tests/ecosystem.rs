//! The Rust ecosystem on evloop (features `tokio-io` and `hyper`), with no
//! tokio runtime anywhere in the process: tokio-util's codecs,
//! tokio-rustls and hyper-util's `TokioIo` over evloop's `TcpStream` and
//! streams, and hyper's `rt::Read` / `rt::Write` on `StreamReader` /
//! `StreamWriter`, called directly and serving hyper.
#![cfg(all(feature = "tokio-io", feature = "hyper"))]

mod common;

use bytes::Bytes;
use common::tls::pki;
use common::within;
use evloop::rustls;
use evloop::rustls::pki_types::ServerName;
use evloop::{
    EventLoop, HyperTimer, ServerOptions, StreamReader, StreamWriter, TcpListener, TcpStream,
};
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use std::convert::Infallible;
use std::future::poll_fn;
use std::io::{self, IoSlice, Read, Write};
use std::pin::Pin;
use std::sync::mpsc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::{Framed, FramedRead, FramedWrite, LinesCodec};

const LIMIT: Duration = Duration::from_secs(30);

/// Fails unless the calling thread is outside any tokio runtime: what
/// runs here runs on evloop alone.
fn assert_no_tokio_runtime() {
    assert!(
        tokio::runtime::Handle::try_current().is_err(),
        "a tokio runtime is running"
    );
}

/// `n` bytes of a pattern that shows a lost or reordered byte.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// A loop on a thread of its own running `serve` (given the loop and a
/// listener on 127.0.0.1) to its end. Returns the port and the thread.
fn serve_on_own_loop<F, Fut>(serve: F) -> (u16, std::thread::JoinHandle<()>)
where
    F: FnOnce(EventLoop, TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let (port_tx, port_rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let lp = EventLoop::new().unwrap();
        let lp2 = lp.clone();
        lp.run_until_complete(async move {
            let listener = TcpListener::bind(&lp2, "127.0.0.1:0".parse().unwrap(), false).unwrap();
            port_tx
                .send(listener.local_addr().unwrap().as_socket().unwrap().port())
                .unwrap();
            serve(lp2, listener).await;
        })
        .unwrap();
    });
    let port = port_rx.recv_timeout(LIMIT).expect("the server started");
    (port, thread)
}

// ----- tokio-util codecs ----------------------------------------------------------------

#[test]
fn tokio_util_lines_codec_frames_evloop_tcp_streams_and_streams() {
    within(LIMIT, || {
        // The server: Framed<TcpStream, LinesCodec> on its own loop,
        // answering each line until "bye".
        let (port, server) = serve_on_own_loop(|lp, listener| async move {
            assert_no_tokio_runtime();
            let (stream, _) = listener.accept(&lp).await.unwrap();
            let mut lines = Framed::new(stream, LinesCodec::new());
            while let Some(line) = lines.next().await {
                let line = line.unwrap();
                if line == "bye" {
                    lines.send("bye").await.unwrap();
                    break;
                }
                lines
                    .send(format!("{} {}", line.len(), line.to_uppercase()))
                    .await
                    .unwrap();
            }
            // Closing the sink shuts the write side down: the client reads
            // the end of the stream.
            SinkExt::<String>::close(&mut lines).await.unwrap();
        });
        // The client: FramedRead / FramedWrite over an evloop
        // StreamReader / StreamWriter, on the test's loop.
        let lp = EventLoop::new().unwrap();
        let long = "x".repeat(200_000);
        let replies = lp
            .run_until_complete(async {
                assert_no_tokio_runtime();
                let (reader, writer) = lp.open_connection("127.0.0.1", port).await.unwrap();
                let mut rx = FramedRead::new(reader, LinesCodec::new());
                let mut tx = FramedWrite::new(writer, LinesCodec::new());
                let mut replies = Vec::new();
                for line in ["hello", "evloop", long.as_str()] {
                    tx.send(line).await.unwrap();
                    replies.push(rx.next().await.unwrap().unwrap());
                }
                // "\r\n" line endings are accepted too.
                tx.get_ref().write(b"crlf\r\nbye\n").unwrap();
                replies.push(rx.next().await.unwrap().unwrap());
                replies.push(rx.next().await.unwrap().unwrap());
                assert!(rx.next().await.is_none(), "the server closed");
                replies
            })
            .unwrap();
        server.join().unwrap();
        assert_eq!(replies[0], "5 HELLO");
        assert_eq!(replies[1], "6 EVLOOP");
        assert_eq!(replies[2], format!("200000 {}", long.to_uppercase()));
        assert_eq!(replies[3], "4 CRLF");
        assert_eq!(replies[4], "bye");
    });
}

// ----- tokio-rustls -------------------------------------------------------------------

#[test]
fn a_tokio_rustls_client_on_an_evloop_tcp_stream_talks_to_an_evloop_tls_server() {
    const BULK: usize = 300_000;
    within(LIMIT, || {
        let pki = pki();
        let lp = EventLoop::new().unwrap();
        let client_config = pki.client.clone();
        let got = lp
            .run_until_complete(async {
                assert_no_tokio_runtime();
                // evloop's own TLS server (asyncio's ssl=) on streams:
                // answers a line in upper case, then echoes a bulk
                // payload, then closes once the client ends its side.
                let server = lp
                    .start_server_with(
                        |mut reader, writer| async move {
                            let line = reader.readline().await.unwrap();
                            writer.write(&line.to_ascii_uppercase()).unwrap();
                            let bulk = reader.readexactly(BULK).await.unwrap();
                            writer.write(&bulk).unwrap();
                            writer.drain().await.unwrap();
                            assert_eq!(reader.read(1).await.unwrap(), b"");
                            writer.close();
                        },
                        &["127.0.0.1"],
                        0,
                        ServerOptions {
                            ssl: Some(pki.server.clone()),
                            ..Default::default()
                        },
                        evloop::DEFAULT_LIMIT,
                    )
                    .await
                    .unwrap();
                let port = server.sockets()[0].as_socket().unwrap().port();

                // The client: tokio-rustls over an evloop TcpStream.
                let tcp = TcpStream::connect(&lp, "127.0.0.1", port).await.unwrap();
                let connector = tokio_rustls::TlsConnector::from(client_config);
                let name = ServerName::try_from("localhost").unwrap();
                let mut tls = connector.connect(name, tcp).await.unwrap();
                assert_eq!(
                    tls.get_ref().1.protocol_version(),
                    Some(rustls::ProtocolVersion::TLSv1_3)
                );
                tls.write_all(b"hello over tokio-rustls\n").await.unwrap();
                let mut line = vec![0u8; 24];
                tls.read_exact(&mut line).await.unwrap();
                // Both ways at once: the server echoes while we still send.
                let payload = pattern(BULK);
                let (mut rd, mut wr) = tokio::io::split(tls);
                let sending = async {
                    wr.write_all(&payload).await.unwrap();
                    wr.flush().await.unwrap();
                };
                let receiving = async {
                    let mut back = vec![0u8; BULK];
                    rd.read_exact(&mut back).await.unwrap();
                    back
                };
                let ((), back) = futures::join!(sending, receiving);
                // close_notify and EOF from us; the server then closes,
                // with its own close_notify: a clean end, no truncation.
                wr.shutdown().await.unwrap();
                let mut rest = Vec::new();
                rd.read_to_end(&mut rest).await.unwrap();
                server.close();
                server.wait_closed().await;
                (line, back == payload, rest)
            })
            .unwrap();
        assert_eq!(got.0, b"HELLO OVER TOKIO-RUSTLS\n");
        assert!(got.1, "the bulk payload came back changed");
        assert!(got.2.is_empty(), "{:?}", got.2);
    });
}

// ----- hyper-util's TokioIo -----------------------------------------------------------

/// Answers with the method, the path and the request body reversed.
async fn reverse(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let head = format!("{} {} ", req.method(), req.uri().path());
    let mut body = req.into_body().collect().await.unwrap().to_bytes().to_vec();
    body.reverse();
    let mut out = head.into_bytes();
    out.extend_from_slice(&body);
    Ok(Response::new(Full::new(Bytes::from(out))))
}

/// Sends `body` to `path` and returns the response's body.
async fn post<B>(
    sender: &mut hyper::client::conn::http1::SendRequest<B>,
    path: &str,
    body: B,
) -> Vec<u8>
where
    B: hyper::body::Body + 'static,
{
    let req = Request::post(path)
        .header("host", "localhost")
        .body(body)
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    res.into_body().collect().await.unwrap().to_bytes().to_vec()
}

fn reversed(prefix: &str, body: &[u8]) -> Vec<u8> {
    let mut want = prefix.as_bytes().to_vec();
    want.extend(body.iter().rev());
    want
}

#[test]
fn hyper_through_hyper_utils_tokio_io_on_evloop_tcp_streams() {
    within(LIMIT, || {
        // The server: TokioIo<TcpStream> on its own loop.
        let (port, server) = serve_on_own_loop(|lp, listener| async move {
            assert_no_tokio_runtime();
            let (stream, _) = listener.accept(&lp).await.unwrap();
            hyper::server::conn::http1::Builder::new()
                .timer(HyperTimer)
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(
                    hyper_util::rt::TokioIo::new(stream),
                    hyper::service::service_fn(reverse),
                )
                .await
                .unwrap();
        });
        // The client: TokioIo<TcpStream> on the test's loop.
        let lp = EventLoop::new().unwrap();
        let big = pattern(500_000);
        let bodies = lp
            .run_until_complete(async {
                assert_no_tokio_runtime();
                let stream = TcpStream::connect(&lp, "127.0.0.1", port).await.unwrap();
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                        .unwrap();
                let driver = lp
                    .create_task(async move {
                        conn.await.unwrap();
                    })
                    .unwrap();
                // Two requests on one kept-alive connection.
                let small = post(&mut sender, "/one", Full::new(Bytes::from("abc"))).await;
                let large = post(&mut sender, "/two", Full::new(Bytes::from(big.clone()))).await;
                // Dropping the sender ends the connection cleanly.
                drop(sender);
                driver.await.unwrap();
                (small, large)
            })
            .unwrap();
        server.join().unwrap();
        assert_eq!(bodies.0, b"POST /one cba");
        assert!(bodies.1 == reversed("POST /two ", &big), "the large body");
    });
}

#[test]
fn https_hyper_over_tokio_rustls_over_evloop_tcp_streams() {
    within(LIMIT, || {
        let pki = pki();
        // The server: TlsAcceptor, then hyper through TokioIo, on its own
        // loop.
        let server_config = pki.server.clone();
        let (port, server) = serve_on_own_loop(move |lp, listener| async move {
            assert_no_tokio_runtime();
            let (stream, _) = listener.accept(&lp).await.unwrap();
            let tls = tokio_rustls::TlsAcceptor::from(server_config)
                .accept(stream)
                .await
                .unwrap();
            hyper::server::conn::http1::Builder::new()
                .timer(HyperTimer)
                .serve_connection(
                    hyper_util::rt::TokioIo::new(tls),
                    hyper::service::service_fn(reverse),
                )
                .await
                .unwrap();
        });
        let lp = EventLoop::new().unwrap();
        let body = pattern(100_000);
        let got = lp
            .run_until_complete(async {
                assert_no_tokio_runtime();
                let tcp = TcpStream::connect(&lp, "127.0.0.1", port).await.unwrap();
                let tls = tokio_rustls::TlsConnector::from(pki.client.clone())
                    .connect(ServerName::try_from("localhost").unwrap(), tcp)
                    .await
                    .unwrap();
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                        .await
                        .unwrap();
                let driver = lp
                    .create_task(async move {
                        conn.await.unwrap();
                    })
                    .unwrap();
                let got = post(&mut sender, "/secure", Full::new(Bytes::from(body.clone()))).await;
                drop(sender);
                driver.await.unwrap();
                got
            })
            .unwrap();
        server.join().unwrap();
        assert!(got == reversed("POST /secure ", &body), "the body");
    });
}

// ----- hyper's rt traits on StreamReader / StreamWriter -------------------------------

/// One `rt::Read::poll_read` into a buffer of `room` bytes: what it read
/// (empty at EOF).
async fn rt_read(reader: &mut StreamReader, room: usize) -> io::Result<Vec<u8>> {
    let mut storage = vec![0u8; room];
    let n = poll_fn(|cx| {
        let mut buf = hyper::rt::ReadBuf::new(&mut storage);
        ready!(hyper::rt::Read::poll_read(
            Pin::new(&mut *reader),
            cx,
            buf.unfilled()
        ))?;
        Poll::Ready(Ok::<_, io::Error>(buf.filled().len()))
    })
    .await?;
    storage.truncate(n);
    Ok(storage)
}

/// One `rt::Write::poll_write` (or `poll_write_vectored` when given
/// several slices): how many bytes it took.
async fn rt_write(writer: &mut StreamWriter, bufs: &[&[u8]]) -> io::Result<usize> {
    poll_fn(|cx| {
        let w = Pin::new(&mut *writer);
        match bufs {
            [one] => hyper::rt::Write::poll_write(w, cx, one),
            _ => {
                let slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
                hyper::rt::Write::poll_write_vectored(w, cx, &slices)
            }
        }
    })
    .await
}

#[test]
fn hyper_rt_read_and_write_called_directly_on_stream_reader_and_writer() {
    const BULK: usize = 1 << 20;
    within(LIMIT, || {
        // The peer: sends two lines, reads until our EOF, then answers
        // with a digest of what it got and closes.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let peer = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            c.write_all(b"hello rt::Read\nthe rest\n").unwrap();
            let mut got = Vec::new();
            c.read_to_end(&mut got).unwrap();
            c.write_all(format!("peer got {} bytes", got.len()).as_bytes())
                .unwrap();
            got
        });
        let lp = EventLoop::new().unwrap();
        let (first, line, rest, reply, buffered_after_flush) = lp
            .run_until_complete(async {
                assert_no_tokio_runtime();
                let (mut reader, mut writer) = lp.open_connection("127.0.0.1", port).await.unwrap();
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while reader.buffered() < 24 {
                    assert!(std::time::Instant::now() < deadline, "the lines never came");
                    evloop::sleep(Duration::from_millis(1)).await.unwrap();
                }
                // rt::Read into a 5-byte buffer takes 5 bytes; the rest
                // stays for the asyncio methods.
                let first = rt_read(&mut reader, 5).await.unwrap();
                let line = reader.readline().await.unwrap();
                let mut rest = Vec::new();
                while rest.len() < b"the rest\n".len() {
                    let got = rt_read(&mut reader, 1024).await.unwrap();
                    assert!(!got.is_empty(), "EOF too early");
                    rest.extend(got);
                }

                // rt::Write: one slice, several slices, a large one.
                assert!(hyper::rt::Write::is_write_vectored(&writer));
                assert_eq!(rt_write(&mut writer, &[b"one "]).await.unwrap(), 4);
                assert_eq!(
                    rt_write(&mut writer, &[b"two ", b"three "]).await.unwrap(),
                    10
                );
                let bulk = pattern(BULK);
                let mut sent = 0;
                while sent < BULK {
                    sent += rt_write(&mut writer, &[&bulk[sent..]]).await.unwrap();
                }
                // poll_flush: done once the transport's buffer is empty.
                poll_fn(|cx: &mut Context<'_>| {
                    hyper::rt::Write::poll_flush(Pin::new(&mut writer), cx)
                })
                .await
                .unwrap();
                let buffered_after_flush = writer.transport().get_write_buffer_size();
                // poll_shutdown: EOF to the peer, our read side stays open.
                poll_fn(|cx: &mut Context<'_>| {
                    hyper::rt::Write::poll_shutdown(Pin::new(&mut writer), cx)
                })
                .await
                .unwrap();
                let mut reply = Vec::new();
                loop {
                    let got = rt_read(&mut reader, 7).await.unwrap();
                    if got.is_empty() {
                        break;
                    }
                    assert!(got.len() <= 7);
                    reply.extend(got);
                }
                assert!(reader.at_eof());
                (first, line, rest, reply, buffered_after_flush)
            })
            .unwrap();
        let got = peer.join().unwrap();
        assert_eq!(first, b"hello");
        assert_eq!(line, b" rt::Read\n");
        assert_eq!(rest, b"the rest\n");
        assert_eq!(buffered_after_flush, 0);
        let mut want = b"one two three ".to_vec();
        want.extend(pattern(BULK));
        assert_eq!(got.len(), want.len());
        assert!(got == want, "the peer got other bytes");
        assert_eq!(
            String::from_utf8(reply).unwrap(),
            format!("peer got {} bytes", want.len())
        );
    });
}

/// A stream's two halves as one hyper I/O object: each trait call goes
/// straight to the half's own `rt::Read` / `rt::Write`.
struct Halves {
    reader: StreamReader,
    writer: StreamWriter,
}

impl hyper::rt::Read for Halves {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        hyper::rt::Read::poll_read(Pin::new(&mut self.get_mut().reader), cx, buf)
    }
}

impl hyper::rt::Write for Halves {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        hyper::rt::Write::poll_write(Pin::new(&mut self.get_mut().writer), cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        hyper::rt::Write::poll_flush(Pin::new(&mut self.get_mut().writer), cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        hyper::rt::Write::poll_shutdown(Pin::new(&mut self.get_mut().writer), cx)
    }
}

#[test]
fn a_hyper_server_runs_on_the_rt_traits_of_a_streams_reader_and_writer() {
    within(LIMIT, || {
        let lp = EventLoop::new().unwrap();
        let body = pattern(200_000);
        let got = lp
            .run_until_complete(async {
                assert_no_tokio_runtime();
                // start_server's streams, served by hyper.
                let served = lp.create_future::<()>();
                let s = served.clone();
                let server = lp
                    .start_server(
                        move |reader, writer| {
                            let s = s.clone();
                            async move {
                                // hyper ends with poll_shutdown (EOF);
                                // closing is the handler's job, as in
                                // asyncio (the server keeps a writer).
                                let closer = writer.clone();
                                hyper::server::conn::http1::Builder::new()
                                    .timer(HyperTimer)
                                    .serve_connection(
                                        Halves { reader, writer },
                                        hyper::service::service_fn(reverse),
                                    )
                                    .await
                                    .unwrap();
                                closer.close();
                                let _ = s.set_result(());
                            }
                        },
                        Some("127.0.0.1"),
                        0,
                    )
                    .await
                    .unwrap();
                let port = server.sockets()[0].as_socket().unwrap().port();
                let stream = TcpStream::connect(&lp, "127.0.0.1", port).await.unwrap();
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(stream).await.unwrap();
                let driver = lp
                    .create_task(async move {
                        conn.await.unwrap();
                    })
                    .unwrap();
                let a = post(&mut sender, "/a", Full::new(Bytes::from("xyz"))).await;
                let b = post(&mut sender, "/b", Full::new(Bytes::from(body.clone()))).await;
                drop(sender);
                driver.await.unwrap();
                // The server's connection ended without an error.
                evloop::wait_for(served, Duration::from_secs(10))
                    .await
                    .unwrap()
                    .unwrap();
                server.close();
                server.wait_closed().await;
                (a, b)
            })
            .unwrap();
        assert_eq!(got.0, b"POST /a zyx");
        assert!(got.1 == reversed("POST /b ", &body), "the large body");
    });
}
