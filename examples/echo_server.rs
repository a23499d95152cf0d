//! A TCP echo server with the protocol API (asyncio's "TCP Echo Server"
//! example): every connection gets an `Echo` protocol, which writes back
//! what it receives.
//!
//! ```text
//! cargo run --example echo_server            # listens on 127.0.0.1:8888
//! cargo run --example echo_client            # in another terminal
//! ```
//!
//! `EVLOOP_ECHO_ADDR=host:port` picks another address; `--once` serves a
//! single connection and exits (what CI runs).

use evloop::{EventLoop, Protocol, Transport};

/// Writes back whatever arrives; closes when the peer does.
#[derive(Default)]
struct Echo {
    transport: Option<Transport>,
    once: bool,
}

impl Protocol for Echo {
    fn connection_made(&mut self, transport: Transport) {
        if let Some(peer) = transport.peername().and_then(|a| a.as_socket()) {
            println!("connection from {peer}");
        }
        self.transport = Some(transport);
    }

    fn data_received(&mut self, data: &[u8]) {
        println!("data received: {:?}", String::from_utf8_lossy(data));
        if let Some(t) = &self.transport {
            // Sends at once if it can, buffers the rest.
            if let Err(e) = t.write(data) {
                eprintln!("write failed: {e}");
            }
        }
    }

    fn eof_received(&mut self) -> bool {
        // false: the transport closes itself (after sending what is left).
        false
    }

    fn connection_lost(&mut self, error: Option<std::io::Error>) {
        match error {
            Some(e) => println!("connection lost: {e}"),
            None => println!("connection closed"),
        }
        if self.once {
            if let Some(lp) = self.transport.as_ref().and_then(|t| t.get_loop()) {
                lp.stop();
            }
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("EVLOOP_ECHO_ADDR").unwrap_or_else(|_| "127.0.0.1:8888".into());
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or("EVLOOP_ECHO_ADDR is host:port")?;
    let port: u16 = port.parse()?;
    let once = std::env::args().any(|a| a == "--once");

    let lp = EventLoop::new()?;
    let server = lp.run_until_complete(lp.create_server(
        move || Echo {
            transport: None,
            once,
        },
        Some(host),
        port,
    ))??;
    for a in server.sockets() {
        println!("serving on {:?}", a.as_socket());
    }
    if once {
        // Until the first connection ends (its protocol stops the loop).
        lp.run_forever()?;
        server.close();
        lp.run_until_complete(server.wait_closed())?;
    } else {
        lp.run_until_complete(server.serve_forever())??;
    }
    Ok(())
}
