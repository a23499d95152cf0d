//! Serves a file to every client with `loop.sendfile` (zero-copy
//! `sendfile(2)` where the kernel allows it, read/write otherwise), then
//! closes the connection.
//!
//! ```text
//! cargo run --example sendfile_server -- [FILE]   # default: Cargo.toml
//! nc 127.0.0.1 8889 > copy                      # in another terminal
//! ```
//!
//! `EVLOOP_SENDFILE_ADDR=host:port` picks the address; `--once` serves one
//! client, checks what it received from inside the example, and exits
//! (what CI runs).

use evloop::{EventLoop, Protocol, Transport};
use std::io::Read;
use std::path::PathBuf;

/// Hands each new connection to a task that sends the file.
struct Serve {
    path: PathBuf,
}

impl Protocol for Serve {
    fn connection_made(&mut self, transport: Transport) {
        let Some(lp) = transport.get_loop() else {
            return;
        };
        let path = self.path.clone();
        let lp2 = lp.clone();
        let sending = lp.create_task(async move {
            let file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("cannot open {}: {e}", path.display());
                    transport.close();
                    return;
                }
            };
            match lp2.sendfile(&transport, &file, 0, None, true).await {
                Ok(n) => println!("sent {n} bytes of {}", path.display()),
                Err(e) => eprintln!("sendfile failed: {e}"),
            }
            transport.close();
        });
        if let Err(e) = sending {
            eprintln!("could not start sending: {e}");
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
    let once = std::env::args().any(|a| a == "--once");
    let addr = std::env::var("EVLOOP_SENDFILE_ADDR").unwrap_or_else(|_| {
        // --once picks a free port; a served demo uses a fixed one.
        if once {
            "127.0.0.1:0"
        } else {
            "127.0.0.1:8889"
        }
        .into()
    });
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or("EVLOOP_SENDFILE_ADDR is host:port")?;
    let port: u16 = port.parse()?;

    let lp = EventLoop::new()?;
    let p = path.clone();
    let server = lp.run_until_complete(lp.create_server(
        move || Serve { path: p.clone() },
        Some(host),
        port,
    ))??;
    let bound = server.sockets()[0].as_socket().ok_or("no address")?;
    println!("serving {} on {bound}", path.display());

    if once {
        // A plain blocking client on another thread: it reads until the
        // server closes, and the loop stops when it is done.
        let lp2 = lp.clone();
        let client = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
            let mut conn = std::net::TcpStream::connect(bound)?;
            let mut got = Vec::new();
            let read = conn.read_to_end(&mut got);
            lp2.call_soon_threadsafe(|| {
                if let Ok(lp) = evloop::get_running_loop() {
                    lp.stop();
                }
            })
            .ok();
            read.map(|_| got)
        });
        lp.run_forever()?;
        let got = client.join().map_err(|_| "client thread panicked")??;
        let want = std::fs::read(&path)?;
        println!(
            "client received {} bytes: {}",
            got.len(),
            if got == want {
                "identical to the file"
            } else {
                "DIFFERENT from the file"
            }
        );
        server.close();
        lp.run_until_complete(server.wait_closed())?;
        if got != want {
            return Err("the copy differs".into());
        }
    } else {
        lp.run_until_complete(server.serve_forever())??;
    }
    Ok(())
}
