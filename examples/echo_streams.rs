//! The echo server of `echo_server.rs`, written with streams (asyncio's
//! "TCP echo server using streams"): each connection is a task that reads
//! lines and writes them back, with `drain` for back-pressure.
//!
//! ```text
//! cargo run --example echo_streams           # listens on 127.0.0.1:8888
//! cargo run --example echo_client            # in another terminal
//! ```
//!
//! `EVLOOP_ECHO_ADDR=host:port` picks another address; `--self-test`
//! serves, connects a client of its own, checks the echo and exits.

use evloop::{Error, EventLoop, StreamReader, StreamWriter};

async fn handle_echo(mut reader: StreamReader, writer: StreamWriter) {
    let peer = writer.transport().peername().and_then(|a| a.as_socket());
    loop {
        // Up to 100 bytes, as in asyncio's example; empty means EOF.
        let data = match reader.read(100).await {
            Ok(data) if !data.is_empty() => data,
            Ok(_) => break,
            Err(e) => {
                println!("{peer:?}: {e}");
                break;
            }
        };
        println!(
            "received {:?} from {peer:?}",
            String::from_utf8_lossy(&data)
        );
        if writer.write(&data).is_err() || writer.drain().await.is_err() {
            break;
        }
    }
    println!("close the connection with {peer:?}");
    writer.close();
    let _ = writer.wait_closed().await;
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("EVLOOP_ECHO_ADDR").unwrap_or_else(|_| "127.0.0.1:8888".into());
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or("EVLOOP_ECHO_ADDR is host:port")?;
    let port: u16 = port.parse()?;
    let self_test = std::env::args().any(|a| a == "--self-test");

    let lp = EventLoop::new()?;
    let lp2 = lp.clone();
    let host = host.to_string();
    lp.run_until_complete(async move {
        let lp = lp2;
        // Port 0 in a self-test: any free port.
        let port = if self_test { 0 } else { port };
        let server = lp.start_server(handle_echo, Some(&host), port).await?;
        for a in server.sockets() {
            println!("serving on {:?}", a.as_socket());
        }
        if !self_test {
            return server.serve_forever().await;
        }
        let port = server.sockets()[0].as_socket().map_or(0, |a| a.port());
        let (mut reader, writer) = lp.open_connection(&host, port).await?;
        writer.write(b"Hello World!")?;
        let echoed = reader.readexactly(12).await?;
        assert_eq!(echoed, b"Hello World!");
        println!("self-test: echoed {:?}", String::from_utf8_lossy(&echoed));
        writer.close();
        writer.wait_closed().await?;
        server.close();
        server.wait_closed().await;
        Ok::<(), Error>(())
    })??;
    Ok(())
}
