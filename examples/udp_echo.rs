//! A UDP echo server and client on one loop (asyncio's "UDP Echo Server"
//! and "UDP Echo Client" examples): the client sends three datagrams, the
//! server sends each back, and the client stops once it has all three.

use evloop::{DatagramOptions, DatagramProtocol, DatagramTransport, EventLoop, LoopFuture};
use socket2::SockAddr;

/// Sends every datagram back where it came from.
#[derive(Default)]
struct EchoServer {
    transport: Option<DatagramTransport>,
}

impl DatagramProtocol for EchoServer {
    fn connection_made(&mut self, transport: DatagramTransport) {
        self.transport = Some(transport);
    }

    fn datagram_received(&mut self, data: &[u8], addr: SockAddr) {
        println!(
            "server: {:?} from {:?}",
            String::from_utf8_lossy(data),
            addr.as_socket()
        );
        if let Some(t) = &self.transport {
            t.sendto(data, Some(addr)).unwrap();
        }
    }
}

struct EchoClient {
    expected: usize,
    got: usize,
    done: LoopFuture<()>,
}

impl DatagramProtocol for EchoClient {
    fn connection_made(&mut self, transport: DatagramTransport) {
        for i in 0..self.expected {
            // Connected endpoint: `None` sends to the peer.
            transport
                .sendto(format!("ping {i}").as_bytes(), None)
                .unwrap();
        }
    }

    fn datagram_received(&mut self, data: &[u8], _addr: SockAddr) {
        println!("client: echo {:?}", String::from_utf8_lossy(data));
        self.got += 1;
        if self.got == self.expected {
            let _ = self.done.set_result(());
        }
    }

    fn error_received(&mut self, error: std::io::Error) {
        println!("client: error {error}");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lp = EventLoop::new()?;
    let server = lp.run_until_complete(lp.create_datagram_endpoint(
        EchoServer::default,
        DatagramOptions {
            local_addr: Some("127.0.0.1:0".parse()?),
            ..Default::default()
        },
    ))??;
    let server_addr = server
        .sockname()
        .and_then(|a| a.as_socket())
        .ok_or("no address")?;
    println!("server listening on {server_addr}");

    let done = lp.create_future::<()>();
    let d = done.clone();
    let client = lp.run_until_complete(lp.create_datagram_endpoint(
        move || EchoClient {
            expected: 3,
            got: 0,
            done: d,
        },
        DatagramOptions {
            remote_addr: Some(server_addr),
            ..Default::default()
        },
    ))??;
    // UDP may drop datagrams (not on loopback, in practice): give up after
    // a while rather than wait forever.
    let outcome =
        lp.run_until_complete(evloop::wait_for(&done, std::time::Duration::from_secs(5)))?;
    match outcome {
        Ok(_) => println!("all echoes back"),
        Err(e) => println!("gave up: {e}"),
    }
    client.close();
    server.close();
    // One more iteration delivers connection_lost.
    lp.run_until_complete(evloop::sleep(std::time::Duration::ZERO))??;
    Ok(())
}
