//! A TCP echo server on evloop (protocol API) and on tokio (current-thread
//! runtime, `TcpListener` + `read` / `write_all`), each on a thread of its
//! own, driven by the same load generator on another thread: C
//! connections (10 and 100), each sending a 1 KiB message and waiting for
//! its echo before the next, a fixed number of messages in all.
//!
//! Two reports (see `harness`): criterion's, one group per connection
//! count, and a paired table of requests per second and the server
//! thread's CPU time per request (ratios of medians: req/s above 1.0 and
//! CPU below 1.0 mean evloop is better).
//!
//! Both servers set TCP_NODELAY (evloop's transports do, as asyncio's; the
//! tokio server sets it on each accepted stream).
//!
//! Run: `cargo bench --bench net` (`EVLOOP_BENCH_ROUNDS=n`, default 5; a
//! filter such as `-- c100` restricts both reports).

mod harness;

use harness::{Echo, Exchange, ServerThread};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn evloop_side() -> ServerThread {
    harness::evloop_server(|lp| async move {
        let server = lp
            .create_server(Echo::default, Some("127.0.0.1"), 0)
            .await
            .unwrap();
        harness::served(server)
    })
}

fn tokio_side() -> ServerThread {
    harness::tokio_server(|mut conn| async move {
        let mut buf = vec![0u8; 4096];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if conn.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
}

fn main() {
    harness::run(
        "tcp_echo",
        "TCP echo (protocol API against TcpStream read/write_all), 1 KiB messages",
        Exchange::Echo,
        evloop_side,
        tokio_side,
    );
}
