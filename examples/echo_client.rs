//! A TCP echo client with the protocol API (asyncio's "TCP Echo Client"
//! example): sends a message, prints the echo, and ends when the server
//! closes the connection. Run `cargo run --example echo_server` first.
//!
//! `EVLOOP_ECHO_ADDR=host:port` picks the server (default
//! 127.0.0.1:8888). Without a server listening there, it prints the
//! connection error and exits.

use evloop::{EventLoop, LoopFuture, Protocol, Transport};

struct Client {
    message: String,
    /// Completed when the connection ends.
    done: LoopFuture<()>,
    transport: Option<Transport>,
}

impl Protocol for Client {
    fn connection_made(&mut self, transport: Transport) {
        transport.write(self.message.as_bytes()).unwrap();
        println!("data sent: {:?}", self.message);
        // The server closes once it has echoed everything we sent.
        transport.write_eof().unwrap();
        self.transport = Some(transport);
    }

    fn data_received(&mut self, data: &[u8]) {
        println!("data received: {:?}", String::from_utf8_lossy(data));
    }

    fn connection_lost(&mut self, _error: Option<std::io::Error>) {
        println!("the server closed the connection");
        let _ = self.done.set_result(());
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("EVLOOP_ECHO_ADDR").unwrap_or_else(|_| "127.0.0.1:8888".into());
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or("EVLOOP_ECHO_ADDR is host:port")?;
    let port: u16 = port.parse()?;

    let lp = EventLoop::new()?;
    let done = lp.create_future::<()>();
    let client = Client {
        message: "Hello World!".into(),
        done: done.clone(),
        transport: None,
    };
    let connected = lp.run_until_complete(async {
        // A connect that hangs (a filtered port) gives up after 5 s.
        evloop::wait_for(
            lp.create_connection(move || client, host, port),
            std::time::Duration::from_secs(5),
        )
        .await
    })?;
    match connected {
        Ok(Ok(_transport)) => {
            lp.run_until_complete(&done)??;
        }
        Ok(Err(e)) | Err(e) => println!("could not connect to {addr}: {e}"),
    }
    Ok(())
}
