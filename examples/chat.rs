//! A line-based chat server on streams: every line a client sends goes to
//! every other client. Back-pressure is per client: after a broadcast the
//! sender waits for each peer's `drain`, and a peer that does not drain
//! within five seconds (it stopped reading) is disconnected rather than
//! allowed to hold everyone up or grow its buffer without bound.
//!
//! ```text
//! cargo run --example chat                   # listens on 127.0.0.1:8889
//! nc 127.0.0.1 8889                          # in two other terminals
//! ```
//!
//! `EVLOOP_CHAT_ADDR=host:port` picks another address; `--self-test` runs
//! the server and two clients of its own, checks a message goes across,
//! and exits.

use evloop::{Error, EventLoop, StreamReader, StreamWriter};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The connected clients. Everything runs on the loop's thread; the mutex
/// only satisfies `Send` for the client tasks and is never held across an
/// await.
#[derive(Clone, Default)]
struct Room {
    clients: Arc<Mutex<HashMap<u64, StreamWriter>>>,
    next_id: Arc<AtomicU64>,
}

impl Room {
    fn join(&self, writer: StreamWriter) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.clients.lock().unwrap().insert(id, writer);
        id
    }

    fn leave(&self, id: u64) {
        self.clients.lock().unwrap().remove(&id);
    }

    /// Sends `line` to everyone but `from`, then waits for each to drain.
    async fn broadcast(&self, from: u64, line: &[u8]) {
        let peers: Vec<(u64, StreamWriter)> = self
            .clients
            .lock()
            .unwrap()
            .iter()
            .filter(|(id, _)| **id != from)
            .map(|(id, w)| (*id, w.clone()))
            .collect();
        for (_, w) in &peers {
            let _ = w.write(line);
        }
        for (id, w) in peers {
            match evloop::wait_for(w.drain(), Duration::from_secs(5)).await {
                Ok(Ok(())) => {}
                // Gone, or not reading: drop it.
                _ => {
                    w.close();
                    self.leave(id);
                }
            }
        }
    }
}

async fn client(room: Room, mut reader: StreamReader, writer: StreamWriter) {
    let name = writer
        .transport()
        .peername()
        .and_then(|a| a.as_socket())
        .map_or_else(|| "someone".to_string(), |a| a.to_string());
    let _ = writer.write(format!("welcome, {name}\n").as_bytes());
    let id = room.join(writer.clone());
    room.broadcast(id, format!("* {name} joined\n").as_bytes())
        .await;
    loop {
        match reader.readline().await {
            Ok(line) if line.is_empty() => break,
            Ok(line) => {
                let mut msg = format!("[{name}] ").into_bytes();
                msg.extend_from_slice(&line);
                if !msg.ends_with(b"\n") {
                    msg.push(b'\n');
                }
                room.broadcast(id, &msg).await;
            }
            // A line over the limit: tell the sender, carry on.
            Err(Error::LimitOverrun { .. }) => {
                let _ = writer.write(b"* line too long, dropped\n");
            }
            Err(_) => break,
        }
    }
    room.leave(id);
    room.broadcast(id, format!("* {name} left\n").as_bytes())
        .await;
    writer.close();
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("EVLOOP_CHAT_ADDR").unwrap_or_else(|_| "127.0.0.1:8889".into());
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or("EVLOOP_CHAT_ADDR is host:port")?;
    let port: u16 = port.parse()?;
    let self_test = std::env::args().any(|a| a == "--self-test");

    let lp = EventLoop::new()?;
    let lp2 = lp.clone();
    let host = host.to_string();
    lp.run_until_complete(async move {
        let lp = lp2;
        let room = Room::default();
        let server = lp
            .start_server(
                move |reader, writer| client(room.clone(), reader, writer),
                Some(&host),
                if self_test { 0 } else { port },
            )
            .await?;
        for a in server.sockets() {
            println!("chat on {:?}", a.as_socket());
        }
        if !self_test {
            return server.serve_forever().await;
        }
        let port = server.sockets()[0].as_socket().map_or(0, |a| a.port());
        let (mut ra, wa) = lp.open_connection(&host, port).await?;
        ra.readline().await?; // welcome
        let (mut rb, wb) = lp.open_connection(&host, port).await?;
        rb.readline().await?; // welcome
        ra.readline().await?; // "* b joined"
        wa.write(b"hello from a\n")?;
        let got = rb.readline().await?;
        let got = String::from_utf8_lossy(&got);
        println!("self-test: b got {got:?}");
        assert!(got.ends_with("] hello from a\n"));
        wa.close();
        wb.close();
        server.close();
        server.wait_closed().await;
        Ok::<(), Error>(())
    })??;
    Ok(())
}
