//! An echo server written with streams on evloop (`start_server`,
//! `readline`, `write`, `drain`) against tokio's `TcpStream` with a
//! `BufReader` (`read_line`, `write_all`) on a current-thread runtime,
//! driven by the same load generator: C connections (10 and 100), each
//! sending a 1 KiB line and waiting for its echo.
//!
//! Then the echo a stream user writes, chunk by chunk: evloop's
//! `read(65536)`, `write`, `drain` (a task per connection) against
//! tokio's `BufReader` / `BufWriter` (`fill_buf`, `write_all`, `flush`),
//! the shape a tokio user writes; `benches/net.rs` has the same echo on
//! evloop's protocol API, the floor the streams layer adds to.
//!
//! Reports as `benches/net.rs` (see `harness`). Run: `cargo bench --bench
//! streams` (`EVLOOP_BENCH_ROUNDS=n`, a filter such as `-- c10`).

mod harness;

use harness::{Exchange, ServerThread};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

fn evloop_chunks_side() -> ServerThread {
    harness::evloop_server(|lp| async move {
        let server = lp
            .start_server(
                |mut reader, writer| async move {
                    while let Ok(data) = reader.read(65536).await {
                        if data.is_empty()
                            || writer.write(&data).is_err()
                            || writer.drain().await.is_err()
                        {
                            break;
                        }
                    }
                    writer.close();
                },
                Some("127.0.0.1"),
                0,
            )
            .await
            .unwrap();
        harness::served(server)
    })
}

fn tokio_buffered_side() -> ServerThread {
    harness::tokio_server(|conn| async move {
        let (r, w) = conn.into_split();
        let mut reader = tokio::io::BufReader::new(r);
        let mut writer = tokio::io::BufWriter::new(w);
        loop {
            let n = match reader.fill_buf().await {
                Ok(data) if !data.is_empty() => {
                    if writer.write_all(data).await.is_err() {
                        return;
                    }
                    data.len()
                }
                _ => return,
            };
            reader.consume(n);
            if writer.flush().await.is_err() {
                return;
            }
        }
    })
}

fn evloop_side() -> ServerThread {
    harness::evloop_server(|lp| async move {
        let server = lp
            .start_server(
                |mut reader, writer| async move {
                    while let Ok(line) = reader.readline().await {
                        if line.is_empty()
                            || writer.write(&line).is_err()
                            || writer.drain().await.is_err()
                        {
                            break;
                        }
                    }
                    writer.close();
                },
                Some("127.0.0.1"),
                0,
            )
            .await
            .unwrap();
        harness::served(server)
    })
}

fn tokio_side() -> ServerThread {
    harness::tokio_server(|conn| async move {
        let (r, mut w) = conn.into_split();
        let mut reader = tokio::io::BufReader::new(r);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if w.write_all(line.as_bytes()).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
}

fn main() {
    harness::run(
        "streams_echo",
        "Line echo (evloop streams against tokio TcpStream + BufReader::read_line), 1 KiB lines",
        Exchange::Echo,
        evloop_side,
        tokio_side,
    );
    harness::run(
        "streams_chunk_echo",
        "Chunk echo (evloop streams read/write/drain against tokio BufReader + BufWriter), 1 KiB messages",
        Exchange::Echo,
        evloop_chunks_side,
        tokio_buffered_side,
    );
}
