//! tokio's I/O traits on evloop's streams (feature `tokio-io`): tokio's
//! own extension methods (`read_line`, `write_all`, `copy`) run on an
//! evloop loop, with no tokio runtime.
#![cfg(feature = "tokio-io")]

mod common;

use common::within;
use evloop::{EventLoop, TcpListener, TcpStream};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

#[test]
fn tokio_extension_methods_drive_evloop_streams() {
    within(Duration::from_secs(30), || {
        let lp = EventLoop::new().unwrap();
        let lp2 = lp.clone();
        let got = lp
            .run_until_complete(async move {
                let listener = TcpListener::bind(&lp2, "127.0.0.1:0".parse().unwrap(), false)?;
                let port = listener.local_addr()?.as_socket().unwrap().port();
                let lp3 = lp2.clone();
                // An echo server on TcpStream through tokio::io::copy.
                let server = lp2.create_task(async move {
                    let (conn, _) = listener.accept(&lp3).await.unwrap();
                    let (mut r, mut w) = tokio::io::split(conn);
                    tokio::io::copy(&mut r, &mut w).await.unwrap();
                    w.shutdown().await.unwrap();
                })?;
                let (mut reader, mut writer) = lp2.open_connection("127.0.0.1", port).await?;
                writer.write_all(b"hello\nworld").await.unwrap();
                writer.flush().await.unwrap();
                let mut line = String::new();
                reader.read_line(&mut line).await.unwrap();
                AsyncWriteExt::shutdown(&mut writer).await.unwrap();
                let mut rest = Vec::new();
                reader.read_to_end(&mut rest).await.unwrap();
                server.await.unwrap();
                // A plain TcpStream client too.
                let _ = TcpStream::connect(&lp2, "127.0.0.1", port).await;
                Ok::<_, evloop::Error>((line, rest))
            })
            .unwrap()
            .unwrap();
        assert_eq!(got.0, "hello\n");
        assert_eq!(got.1, b"world");
    });
}
